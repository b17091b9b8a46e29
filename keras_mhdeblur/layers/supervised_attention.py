"""Supervised attention module (SAM), the link between stages of MPRNet and HINet
(docs/method.md, "HINet" and "MPRNet"), in its multi-head form.

SAM predicts the stage's image from the stage's features and uses it to gate those features for
the next stage. With K heads the image is 3K channels, head-major (RGBRGB...), and the gate
reads all heads: `img = conv2(f) + tile(image, K)`, `f' = conv1(f) * sigmoid(conv3(img)) + f`.
"""

import keras
from keras import ops

from keras_mhdeblur.layers.conv import torch_conv2d


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class SupervisedAttention(keras.layers.Layer):
    """Call with (features (B, H, W, C), image (B, H, W, 3)); returns
    (gated features (B, H, W, C), residual (B, H, W, 3K)).

    The residual is `conv2(f)`, the stage's image *without* the input added: the model adds the
    input after head combination (the same thing, since combination averages).

    Args:
        channels: C.
        heads: K.
        kernel_size: 3 in HINet, 1 in MPRNet.
        use_bias: True in HINet, MPRNet's `bias` (False) there.
    """

    def __init__(self, channels, heads=1, kernel_size=3, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.heads = int(channels), int(heads)
        self.kernel_size, self.use_bias = int(kernel_size), bool(use_bias)
        image_channels = 3 * self.heads
        self.conv1 = torch_conv2d(channels, kernel_size, channels, use_bias=use_bias, name="conv1")
        self.conv2 = torch_conv2d(image_channels, kernel_size, channels, use_bias=use_bias,
                                  name="conv2")
        self.conv3 = torch_conv2d(channels, kernel_size, image_channels, use_bias=use_bias,
                                  name="conv3")

    def build(self, features_shape, image_shape=None):
        super().build(features_shape)

    def call(self, features, image):
        residual = self.conv2(features)
        images = residual + ops.tile(ops.cast(image, residual.dtype), (1, 1, 1, self.heads))
        attention = ops.sigmoid(self.conv3(images))
        return self.conv1(features) * attention + features, residual

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "heads": self.heads,
                "kernel_size": self.kernel_size, "use_bias": self.use_bias}
