"""Channel LayerNorm that stays finite in float16 (NAFNet's LayerNorm2d; docs/method.md, "NAFNet").

NAFNet's residual stream grows large (hundreds in deep blocks), and a LayerNorm computed in
float16 overflows there: (x - mean)^2 passes the float16 maximum (65504) once |x - mean| > 256,
and a variance summed over C channels before dividing does once rms(x - mean) > sqrt(65504 / C)
(11 for the 512 channels of NAFNet-w32's middle). Mobile GPU delegates run exported float32 graphs
in float16, so a plain LayerNorm turns whole pixels into inf/NaN there. Dividing each pixel by its
largest |value| first keeps every intermediate in [-1, 1]; LayerNorm is scale invariant, and
moving epsilon into the scaled units keeps the result exact:

    (x - m) / sqrt(v + eps) = (x/s - m/s) / sqrt(v/s^2 + eps/s^2)        for any s > 0.

That arrangement costs a third more graph nodes, and a float32 LayerNorm inside Keras never
needs it (the models normalise in at least float32 even under mixed precision), so it is taken
where it matters: for float16/bfloat16 inputs, and for every norm traced inside
`overflow_safe_norms()`, which the exports enter (their float32 graphs may run in float16).
Elsewhere a plain float32 LayerNorm runs with the official code's analytic gradient (NAFNet's
LayerNormFunction.backward), which keeps the training graph small: the first training step is
traced and optimised faster, and the backward pass has fewer kernels.
"""

import contextlib
import threading

import keras
import numpy as np
from keras import ops

_SAFE = threading.local()


@contextlib.contextmanager
def overflow_safe_norms():
    """Within it, every `channel_layer_norm` traced takes the overflow-safe arrangement, whatever
    its dtype (see the module doc). The exports trace under it."""
    previous = getattr(_SAFE, "active", False)
    _SAFE.active = True
    try:
        yield
    finally:
        _SAFE.active = previous

# s is at least this, so all-zero pixels divide by a normal number in every float type.
_MIN_SCALE = 1e-3


def channel_layer_norm(x, gamma=None, beta=None, epsilon=1e-6):
    """LayerNorm over the last axis, computed in `x.dtype` without leaving [-1, 1] inside.

    Args:
        x: (..., C) features, any float dtype (float16 included).
        gamma, beta: (C,) affine weight and bias, or None.
        epsilon: added to the variance (in the units of `x`).
    Returns:
        (..., C), same dtype as `x`. Equal to a float32 LayerNorm to ~1e-7 relative in float32.
    """
    dtype = x.dtype
    if (keras.backend.standardize_dtype(dtype) in ("float32", "float64")
            and not getattr(_SAFE, "active", False)):
        outputs = _normalise(x, epsilon)
    else:
        outputs = _normalise_overflow_safe(x, epsilon)
    if gamma is not None:
        outputs = outputs * ops.cast(gamma, dtype)
    if beta is not None:
        outputs = outputs + ops.cast(beta, dtype)
    return outputs


def _normalise(x, epsilon):
    """(x - mean) / sqrt(var + epsilon) over the last axis, with its analytic gradient."""
    @ops.custom_gradient
    def normalise(values):
        centred = values - ops.mean(values, axis=-1, keepdims=True)
        inverse_std = ops.rsqrt(ops.mean(centred * centred, axis=-1, keepdims=True) + epsilon)
        normalised = centred * inverse_std

        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream  # torch passes it by name
            return inverse_std * (upstream - ops.mean(upstream, axis=-1, keepdims=True)
                                  - normalised * ops.mean(upstream * normalised, axis=-1,
                                                          keepdims=True))

        return normalised, gradient

    return normalise(x)


def _normalise_overflow_safe(x, epsilon):
    """`_normalise` with every intermediate in [-1, 1] (the module doc), autodiff gradient."""
    dtype = x.dtype
    # The result does not depend on s (see the module doc), so its gradient is exactly zero:
    # stopping it spares the backward pass the max's masks and keeps fewer activations.
    scale = ops.stop_gradient(ops.maximum(ops.max(ops.abs(x), axis=-1, keepdims=True),
                                          ops.cast(_MIN_SCALE, dtype)))
    # 1/s as rsqrt(s)^2: s^2 would overflow float16 for s > 256, and a division or a square
    # have no int8 kernel in TFLite (they would leave float islands in a full-int8 model).
    inverse_scale = ops.rsqrt(scale)
    inverse_scale = inverse_scale * inverse_scale
    x = x * inverse_scale
    centred = x - ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(centred * centred, axis=-1, keepdims=True)
    scaled_epsilon = ops.cast(np.sqrt(epsilon), dtype) * inverse_scale
    scaled_epsilon = scaled_epsilon * scaled_epsilon
    # A constant pixel has variance 0, and a float16 epsilon flushes to 0 for s > ~4: keep rsqrt
    # finite (the floor is float32's smallest normal in float32, so it changes nothing there).
    tiny = ops.cast(np.finfo(keras.backend.standardize_dtype(dtype)).tiny, dtype)
    return centred * ops.rsqrt(ops.maximum(variance + scaled_epsilon, tiny))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class ChannelLayerNorm(keras.layers.LayerNormalization):
    """LayerNorm over channels of (B, H, W, C), safe to run in float16 (see the module doc).

    A `keras.layers.LayerNormalization(axis=-1)` with the same variables (`gamma`, `beta`),
    config and float32 results (to ~1e-7); only the arithmetic is arranged so that no
    intermediate can overflow float16. Like Keras' layer it computes in at least float32 inside
    Keras (mixed precision is unchanged); the exported graph keeps the safe arrangement for
    runtimes that execute it in float16.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        kwargs.pop("rms_scaling", None)
        if kwargs.get("axis", -1) not in (-1, [-1], (-1,)):
            raise ValueError(
                f"ChannelLayerNorm normalises the last (channel) axis only; got axis="
                f"{kwargs['axis']!r}")
        kwargs["axis"] = -1
        super().__init__(epsilon=epsilon, **kwargs)

    def call(self, inputs):
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        outputs = channel_layer_norm(ops.cast(inputs, compute_dtype), self.gamma, self.beta,
                                     self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
