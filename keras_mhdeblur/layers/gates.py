"""NAFNet's SimpleGate: the activation-free gating that replaces GELU."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class SimpleGate(keras.layers.Layer):
    """Splits channels into halves `a`, `b` (first, second) and returns `a * b`.

    (B, H, W, 2C) -> (B, H, W, C).
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % 2:
            raise ValueError(
                f"SimpleGate needs an even number of channels to split in two; got input shape "
                f"{tuple(input_shape)} ({channels} channels). Use an even width.")
        super().build(input_shape)

    def call(self, x):
        first, second = ops.split(x, 2, axis=-1)
        return first * second

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)
