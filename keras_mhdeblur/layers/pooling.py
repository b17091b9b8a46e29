"""Channel-attention pooling: global average, or TLC's local average (docs/method.md, "TLC").

TLC (test-time local converter) fixes a train/test mismatch: during training on 256 crops the
global pool sees a 256-pixel window, at test time on 720x1280 it would see the whole image. The
"local" version averages over a window 1.5x the training feature size instead, so statistics stay
like those seen in training. On training-size inputs both versions are identical.
"""

import math

from keras import ops


def tlc_kernel_size(train_size, level, pad_multiple=16):
    """The local-pool window of a feature map `level` times downsampled by 2
    (docs/method.md, "TLC").

    Reproduces the official conversion: the dummy forward pass at `train_size` pads to
    `pad_multiple`, the base size is int(1.5 * train_size), and each pool takes
    `feature_size * base // train`.
    """
    sizes = []
    for train in train_size:
        base = int(train * 1.5)
        padded = math.ceil(train / pad_multiple) * pad_multiple
        feature = padded // (2 ** level)
        sizes.append(feature * base // train)
    return tuple(sizes)


def _replicate_pad(x, top, bottom, left, right):
    """Edge-replicate padding of (B, H, W, C); `tf.pad` has no 'edge' mode, concat does."""
    parts = []
    if top:
        parts.append(ops.repeat(x[:, :1], top, axis=1))
    parts.append(x)
    if bottom:
        parts.append(ops.repeat(x[:, -1:], bottom, axis=1))
    x = ops.concatenate(parts, axis=1) if len(parts) > 1 else x
    parts = []
    if left:
        parts.append(ops.repeat(x[:, :, :1], left, axis=2))
    parts.append(x)
    if right:
        parts.append(ops.repeat(x[:, :, -1:], right, axis=2))
    return ops.concatenate(parts, axis=2) if len(parts) > 1 else x


def spatial_mean(x, local_kernel_size=None, name="spatial_mean"):
    """Global mean over H, W: (B, H, W, C) -> (B, 1, 1, C); with `local_kernel_size=(kh, kw)`
    (TLC) the stride-1 box mean over min(H, kh) x min(W, kw) windows, edge-padded back to
    (B, H, W, C).

    The local mean is computed from 2-D cumulative sums in float32 (cost independent of the
    window; a direct average pool with a 384-pixel window would be far too slow). It needs static
    H and W, which Keras `predict` and jit-compiled calls provide.
    """
    if local_kernel_size is None:
        return ops.mean(x, axis=(1, 2), keepdims=True)
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(
            f"{name}: TLC local pooling needs a static height and width, got input shape "
            f"{tuple(x.shape)}. Call the model on a fixed-size input (or export with a fixed "
            "--input-size).")
    kernel_h, kernel_w = local_kernel_size
    if kernel_h >= height and kernel_w >= width:
        return ops.mean(x, axis=(1, 2), keepdims=True)
    kernel_h, kernel_w = min(kernel_h, height), min(kernel_w, width)
    dtype = x.dtype
    sums = ops.cumsum(ops.cumsum(ops.cast(x, "float32"), axis=1), axis=2)
    sums = ops.pad(sums, ((0, 0), (1, 0), (1, 0), (0, 0)))
    window_sums = (sums[:, kernel_h:, kernel_w:] - sums[:, :-kernel_h, kernel_w:]
                   - sums[:, kernel_h:, :-kernel_w] + sums[:, :-kernel_h, :-kernel_w])
    means = ops.cast(window_sums / float(kernel_h * kernel_w), dtype)
    pad_h, pad_w = kernel_h - 1, kernel_w - 1
    return _replicate_pad(means, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
