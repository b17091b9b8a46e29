"""The multi-head output: the one piece every backbone shares
(docs/method.md, "Multi-head output").

A backbone's last convolution predicts 3K channels, head-major (head k = channels 3k..3k+2, as in
the official code, so weights convert 1:1). `MultiHeadOutput` turns them into the model output:

    (B, H, W, 3K) --reshape/combine--> (B, K', H, W, 3) --+ input--> output

Head combination averages every unordered pair of heads, self-pairs included, giving
K' = K(K+1)/2 outputs from K physical heads with no new parameters. Output index of the pair
(i, j), j <= i, is i(i+1)/2 + j: for K = 4 the order is (0,0),(1,0),(1,1),(2,0),...,(3,3) and the
physical heads sit at 0, 2, 5, 9.
"""

import keras
import numpy as np
from keras import ops


def num_outputs(heads, combine_heads):
    """K' for K physical heads: K(K+1)/2 with combination, else K."""
    return heads * (heads + 1) // 2 if combine_heads else heads


def output_pairs(heads, combine_heads):
    """The physical heads (i, j) averaged by each output, in output order."""
    if not combine_heads:
        return [(k, k) for k in range(heads)]
    return [(i, j) for i in range(heads) for j in range(i + 1)]


def physical_head_outputs(heads, combine_heads):
    """Output indices that are a single physical head (not an average of two)."""
    return [index for index, (i, j) in enumerate(output_pairs(heads, combine_heads)) if i == j]


def combination_matrix(heads, combine_heads):
    """(K', K) float32 matrix M with output_o = sum_k M[o, k] * head_k."""
    pairs = output_pairs(heads, combine_heads)
    matrix = np.zeros((len(pairs), heads), np.float32)
    for output, (i, j) in enumerate(pairs):
        matrix[output, i] += 0.5
        matrix[output, j] += 0.5
    return matrix


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MultiHeadOutput(keras.layers.Layer):
    """Head reshape, head combination and global residual, as one layer.

    Call with `(head_channels, image)`: head_channels (B, H, W, 3K) from the backbone's last conv
    (the residual, without the input), image (B, H, W, 3) the input. Returns (B, K', H, W, 3).
    The combination is a fixed linear map over the head axis (averaging before or after adding
    the residual is the same, so the residual is added once, after it).
    """

    def __init__(self, heads, combine_heads=True, channels=3, **kwargs):
        super().__init__(**kwargs)
        if int(heads) < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = int(heads)
        self.combine_heads = bool(combine_heads)
        self.channels = int(channels)
        self.outputs = num_outputs(self.heads, self.combine_heads)

    def call(self, head_channels, image):
        shape = ops.shape(head_channels)
        heads = ops.reshape(
            head_channels, (shape[0], shape[1], shape[2], self.heads, self.channels))
        if self.combine_heads and self.heads > 1:
            matrix = ops.convert_to_tensor(
                combination_matrix(self.heads, True), dtype=head_channels.dtype)
            outputs = ops.einsum("bhwkc,ok->bohwc", heads, matrix)
        else:
            outputs = ops.transpose(heads, (0, 3, 1, 2, 4))
        return outputs + ops.cast(image, outputs.dtype)[:, None]

    def compute_output_shape(self, head_channels_shape, image_shape=None):
        b, h, w, _ = head_channels_shape
        return (b, self.outputs, h, w, self.channels)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads,
                "combine_heads": self.combine_heads, "channels": self.channels}


def expand_single_head(array, wanted_shape, heads, perturbation=1e-2, rng=None):
    """A single-head model's weight for the same network with K heads: the axis of 3 image
    channels that the K-head model has as 3K. None when `array` is not such a weight.

    An output axis is replicated per head: head 0 exact, so that output 0 starts as the single
    head, and heads 1.. perturbed by `perturbation` x the weight's std, so that the heads are
    not tied and winner-takes-all can pull them apart. An input axis reading all heads' images
    (a Keras conv kernel's axis 2) is replicated and divided by K, so that identical heads give
    the single head's features.
    """
    array = np.asarray(array, np.float32)
    if array.ndim == 0 or array.ndim != len(wanted_shape):
        return None
    axes = [axis for axis, (have, want) in enumerate(zip(array.shape, wanted_shape))
            if have != want]
    if len(axes) != 1 or wanted_shape[axes[0]] != heads * array.shape[axes[0]]:
        return None
    axis = axes[0]
    is_input_axis = array.ndim == 4 and axis == 2
    rng = np.random.default_rng(0) if rng is None else rng
    copies = []
    for head in range(heads):
        copy = array.copy()
        if is_input_axis:
            copy = copy / heads
        elif head > 0 and perturbation:
            scale = perturbation * (float(np.std(array)) or 1.0)
            copy = copy + rng.normal(0.0, scale, copy.shape).astype(np.float32)
        copies.append(copy)
    return np.concatenate(copies, axis=axis)
