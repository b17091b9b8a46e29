"""PixelShuffle / PixelUnshuffle in PyTorch's channel order (docs/method.md, "Porting notes").

PyTorch reads input channel `c * r*r + i * r + j` for output pixel offset (i, j) of channel c;
`depth_to_space` reads `(i * r + j) * C + c`. Keeping PyTorch's order lets official weights load
without permuting the neighbouring convolutions.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class PixelShuffle(keras.layers.Layer):
    """(B, H, W, C*r*r) -> (B, H*r, W*r, C), PyTorch channel order."""

    def __init__(self, upscale_factor=2, **kwargs):
        super().__init__(**kwargs)
        self.upscale_factor = int(upscale_factor)

    def call(self, x):
        r = self.upscale_factor
        batch, height, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        channels = x.shape[-1] // (r * r)
        x = ops.reshape(x, (batch, height, width, channels, r, r))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3))
        return ops.reshape(x, (batch, height * r, width * r, channels))

    def compute_output_shape(self, input_shape):
        r = self.upscale_factor
        b, h, w, c = input_shape
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self):
        return {**super().get_config(), "upscale_factor": self.upscale_factor}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class PixelUnshuffle(keras.layers.Layer):
    """(B, H*r, W*r, C) -> (B, H, W, C*r*r), PyTorch channel order (inverse of PixelShuffle)."""

    def __init__(self, downscale_factor=2, **kwargs):
        super().__init__(**kwargs)
        self.downscale_factor = int(downscale_factor)

    def call(self, x):
        r = self.downscale_factor
        batch, height, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        channels = x.shape[-1]
        x = ops.reshape(x, (batch, height // r, r, width // r, r, channels))
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4))
        return ops.reshape(x, (batch, height // r, width // r, channels * r * r))

    def compute_output_shape(self, input_shape):
        r = self.downscale_factor
        b, h, w, c = input_shape
        return (b, None if h is None else h // r, None if w is None else w // r, c * r * r)

    def get_config(self):
        return {**super().get_config(), "downscale_factor": self.downscale_factor}
