"""Exact 2x bilinear resampling as PyTorch's `Upsample(..., 'bilinear', align_corners=False)`
computes it (docs/method.md, "MPRNet"), written with `keras.ops` so that any backend and dynamic
shapes work.

x0.5 samples at source position 2i + 0.5: the mean of each 2x2 block. x2 samples at
(i + 0.5) / 2 - 0.5: each output pixel is 3/4 of its nearest input pixel and 1/4 of the next one
(the edge pixel itself at the border).
"""

import keras
from keras import ops


def downsample_2x(x):
    """(B, H, W, C) -> (B, H/2, W/2, C), 2x2 means; H and W even."""
    return ops.average_pool(x, 2, strides=2, padding="valid")


def upsample_2x(x):
    """(B, H, W, C) -> (B, 2H, 2W, C), half-pixel bilinear with edge clamping."""
    if keras.backend.backend() == "tensorflow":
        # TensorFlow's own kernel computes the same samples (half-pixel centres, clamped edges;
        # equal to rounding) and its gradient is one pass: the sliced form below spends most of
        # its training time in the slices' gradients, 11x slower at MPRNet's shapes
        # (docs/speed.md, "MPRNet"). The graph keeps one RESIZE_BILINEAR op for TFLite too.
        import tensorflow as tf

        size = [2 * (x.shape[axis] or tf.shape(x)[axis]) for axis in (1, 2)]  # static if known
        # It returns float32 for every input type; mixed precision wants the input's back.
        return ops.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)
    return _upsample_axis(_upsample_axis(x, 1), 2)


def _upsample_axis(x, axis):
    previous = ops.concatenate([_slice(x, axis, 0, 1), _slice(x, axis, None, -1)], axis=axis)
    following = ops.concatenate([_slice(x, axis, 1, None), _slice(x, axis, -1, None)], axis=axis)
    even = 0.75 * x + 0.25 * previous
    odd = 0.75 * x + 0.25 * following
    # Interleave: (..., L, 2, ...) -> (..., 2L, ...).
    stacked = ops.stack([even, odd], axis=axis + 1)
    shape = [ops.shape(x)[i] for i in range(len(x.shape))]
    shape[axis] = 2 * shape[axis]
    shape[0] = -1
    shape[-1] = x.shape[-1]
    return ops.reshape(stacked, shape)


def _slice(x, axis, start, stop):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]
