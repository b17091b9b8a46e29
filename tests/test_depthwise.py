"""`layers.depthwise_conv` / `layers.DepthwiseConv2D`: on JAX's CPU backend they compute the
depthwise convolution as shifted products (XLA's grouped convolution is slow there); values and
gradients equal the framework's convolution for odd and even kernels, "same" and "valid"."""

import json

import pytest

from helpers import run_python

CHECK = """
import json
import numpy as np, keras, jax, jax.numpy as jnp
from keras import ops
from keras_mhdeblur.layers import DepthwiseConv2D, depthwise_conv
from keras_mhdeblur.layers.conv import _grouped_convolution_is_slow

rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(2, 9, 11, 5)).astype("float32"))
worst = 0.0
for size, padding in ((3, "same"), (5, "valid"), (4, "same")):
    k = jnp.asarray(rng.normal(size=(size, size, 5, 1)).astype("float32"))
    ours = lambda x, k: depthwise_conv(x, k, padding=padding)
    theirs = lambda x, k: ops.depthwise_conv(x, k, strides=1, padding=padding)
    a, b = ours(x, k), theirs(x, k)
    assert a.shape == b.shape, (a.shape, b.shape)
    worst = max(worst, float(jnp.abs(a - b).max()))
    for argument in (0, 1):
        ga = jax.grad(lambda x, k: jnp.sum(jnp.sin(ours(x, k))), argument)(x, k)
        gb = jax.grad(lambda x, k: jnp.sum(jnp.sin(theirs(x, k))), argument)(x, k)
        worst = max(worst, float(jnp.abs(ga - gb).max()))
layer = DepthwiseConv2D(3, padding="same")
plain = keras.layers.DepthwiseConv2D(3, padding="same")
layer.build(x.shape), plain.build(x.shape)
plain.set_weights(layer.get_weights())
worst = max(worst, float(jnp.abs(layer(x) - plain(x)).max()))
restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
print(json.dumps({"fast_path": _grouped_convolution_is_slow(), "worst": worst,
                  "class": type(restored).__name__}))
"""


@pytest.mark.slow
def test_shifted_products_equal_the_grouped_convolution_on_jax():
    result = json.loads(run_python(CHECK, backend="jax").strip().splitlines()[-1])
    assert result["fast_path"]  # this machine runs JAX on the CPU: the path under test
    assert result["worst"] < 1e-4, result
    assert result["class"] == "DepthwiseConv2D"
