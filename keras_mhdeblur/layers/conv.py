"""Convolutions initialised like PyTorch's defaults (docs/method.md, "Porting notes"), so that
training from scratch starts where the official code starts.

PyTorch draws conv weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = (in_channels / groups) * kh * kw. Keras' glorot/zeros defaults differ, and Keras computes
the wrong fan_in for depthwise kernels, so the bounds are computed here explicitly.
"""

import math

import keras


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


def torch_depthwise_conv2d(kernel_size, padding="same", use_bias=True, name=None, **kwargs):
    """`keras.layers.DepthwiseConv2D` with PyTorch's init (fan_in = kh * kw for groups = channels)."""
    fan_in = kernel_size * kernel_size
    return keras.layers.DepthwiseConv2D(
        kernel_size, padding=padding, use_bias=use_bias,
        depthwise_initializer=_uniform(fan_in), bias_initializer=_uniform(fan_in), name=name,
        **kwargs)


def torch_conv2d_transpose(filters, kernel_size, strides, use_bias=True, name=None, **kwargs):
    """`keras.layers.Conv2DTranspose` ('valid') with PyTorch's init (fan_in = out * kh * kw)."""
    fan_in = filters * kernel_size * kernel_size
    return keras.layers.Conv2DTranspose(
        filters, kernel_size, strides=strides, padding="valid", use_bias=use_bias,
        kernel_initializer=_uniform(fan_in), bias_initializer=_uniform(fan_in), name=name, **kwargs)
