"""Convolutions initialised like PyTorch's defaults (docs/method.md, "Porting notes"), so that
training from scratch starts where the official code starts.

PyTorch draws conv weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = (in_channels / groups) * kh * kw. Keras' glorot/zeros defaults differ, and Keras computes
the wrong fan_in for depthwise kernels, so the bounds are computed here explicitly.
"""

import functools
import math

import keras
from keras import ops


def _uniform(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def torch_conv2d(filters, kernel_size, in_channels, strides=1, padding="same", use_bias=True,
                 name=None, **kwargs):
    """`keras.layers.Conv2D` with PyTorch's default initialisation.

    `in_channels` is needed up front because PyTorch's bias bound depends on the fan-in.
    `padding="same"` with an odd kernel and stride 1 equals PyTorch's `padding=kernel_size // 2`.
    """
    fan_in = in_channels * kernel_size * kernel_size
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=_uniform(fan_in), bias_initializer=_uniform(fan_in), name=name, **kwargs)


@functools.cache
def _grouped_convolution_is_slow():
    """True on JAX on the CPU: there XLA's grouped (depthwise) convolution measured 15-30x slower
    forward and 4-15x slower in the gradient than the same sum written as shifted products
    (`python benchmarks/depthwise.py`); TensorFlow has its own depthwise kernels, and GPUs
    run XLA's convolution fast."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def depthwise_conv(x, kernel, padding="same"):
    """`ops.depthwise_conv(x, kernel, strides=1, padding=padding)`, (B, H, W, C) with a
    (kh, kw, C, 1) kernel; on JAX's CPU backend computed as the kh * kw shifted products it is
    (same arithmetic, one fused loop forward and backward)."""
    kh, kw, _, multiplier = kernel.shape
    if not _grouped_convolution_is_slow() or multiplier != 1:
        return ops.depthwise_conv(x, kernel, strides=1, padding=padding)
    if padding == "same":  # the framework's convention: the odd pixel of padding goes after
        x = ops.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1  # static under jax.jit
    total = None
    for i in range(kh):
        for j in range(kw):
            term = x[:, i:i + height, j:j + width, :] * kernel[i, j, :, 0]
            total = term if total is None else total + term
    return total


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` that takes `depthwise_conv`'s fast path on JAX's CPU
    backend (stride 1, no dilation, multiplier 1); the same layer everywhere else."""

    def call(self, inputs):
        fast = (_grouped_convolution_is_slow() and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and self.depth_multiplier == 1
                and self.data_format == "channels_last")
        if not fast:
            return super().call(inputs)
        outputs = depthwise_conv(inputs, self.kernel, padding=self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs if self.activation is None else self.activation(outputs)


def torch_depthwise_conv2d(kernel_size, padding="same", use_bias=True, name=None, **kwargs):
    """`DepthwiseConv2D` with PyTorch's init (fan_in = kh * kw for groups = channels)."""
    fan_in = kernel_size * kernel_size
    return DepthwiseConv2D(
        kernel_size, padding=padding, use_bias=use_bias,
        depthwise_initializer=_uniform(fan_in), bias_initializer=_uniform(fan_in), name=name,
        **kwargs)


def torch_conv2d_transpose(filters, kernel_size, strides, use_bias=True, name=None, **kwargs):
    """`keras.layers.Conv2DTranspose` ('valid') with PyTorch's init (fan_in = out * kh * kw)."""
    fan_in = filters * kernel_size * kernel_size
    return keras.layers.Conv2DTranspose(
        filters, kernel_size, strides=strides, padding="valid", use_bias=use_bias,
        kernel_initializer=_uniform(fan_in), bias_initializer=_uniform(fan_in), name=name, **kwargs)
