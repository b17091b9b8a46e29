"""ChannelLayerNorm: a float32 LayerNorm to ~1e-7 that stays finite in float16 (NAFNet's residual
stream is large; a plain float16 LayerNorm overflows at |x - mean| > 256)."""

import keras
import numpy as np
import pytest

from keras_mhdeblur import NAFNetMH
from keras_mhdeblur.convert.torch_weights import official_parameter_map
from keras_mhdeblur.layers import ChannelLayerNorm, channel_layer_norm


def reference(x, epsilon=1e-6):
    x = np.asarray(x, np.float64)
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + epsilon)


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 300.0])
def test_float32_matches_keras_layer_norm(magnitude):
    rng = np.random.default_rng(0)
    x = (magnitude * rng.standard_normal((2, 8, 8, 32))).astype("float32")
    ours = ChannelLayerNorm(epsilon=1e-6, gamma_initializer="random_normal",
                            beta_initializer="random_normal")
    plain = keras.layers.LayerNormalization(epsilon=1e-6)
    ours.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(ours.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)),
                               keras.ops.convert_to_numpy(plain(x)), atol=1e-5)


@pytest.mark.parametrize("magnitude", [1e-2, 1.0, 300.0])
def test_gradient_matches_keras_layer_norm(magnitude):
    """The per-pixel scale is outside the gradient (the result does not depend on it), and the
    input gradient is still the LayerNorm's."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x = tf.constant((magnitude * rng.standard_normal((2, 4, 4, 16))).astype("float32"))
    weights = tf.constant(rng.standard_normal((2, 4, 4, 16)).astype("float32"))
    plain = keras.layers.LayerNormalization(epsilon=1e-6)
    plain.build(x.shape)
    gradients = []
    for norm in (lambda v: channel_layer_norm(v, epsilon=1e-6), plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(weights * norm(x))
        gradients.append(tape.gradient(total, x).numpy())
    scale = np.abs(gradients[1]).max()
    np.testing.assert_allclose(gradients[0], gradients[1], atol=1e-4 * scale)


def test_float16_stays_finite_on_large_features():
    rng = np.random.default_rng(1)
    x = 300 * rng.standard_normal((1024, 512)) + 300 * rng.standard_normal((1024, 1))
    x[0] = 0.0  # an all-zero pixel
    x[1] = 1000.0  # a constant pixel: variance 0, float16 epsilon flushes to 0
    half = x.astype(np.float16)
    with np.errstate(over="ignore"):  # the plain formula overflows here: (x - mean)^2 > 65504
        assert not np.isfinite(np.square(half - half.mean(-1, keepdims=True))).all()
    y = keras.ops.convert_to_numpy(channel_layer_norm(keras.ops.convert_to_tensor(x, "float16")))
    assert y.dtype == np.float16 and np.isfinite(y).all()
    np.testing.assert_allclose(y.astype(np.float64), reference(x), atol=2e-2)


def test_nafnet_uses_it_and_keeps_official_names():
    model = NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
    names = official_parameter_map(model)
    assert {"encoders.0.0.norm1.weight", "encoders.0.0.norm2.bias"} <= set(names)


def _op_types(concrete):
    graph = concrete.graph.as_graph_def()
    return {node.op for node in graph.node} | {
        node.op for function in graph.library.function for node in function.node_def}


def test_float32_takes_the_plain_form_except_where_exports_trace():
    """Inside Keras a float32 norm needs no overflow guard (its per-pixel max |x| is a third of
    the graph); exported graphs may run in float16, so the exports trace the guarded form."""
    import tensorflow as tf

    from keras_mhdeblur.export.serving import prepare_export
    from keras_mhdeblur.layers import overflow_safe_norms

    x = tf.TensorSpec((2, 4, 4, 16), "float32")
    plain = tf.function(lambda v: channel_layer_norm(v)).get_concrete_function(x)
    with overflow_safe_norms():
        guarded = tf.function(lambda v: channel_layer_norm(v)).get_concrete_function(x)
    assert "Abs" not in _op_types(plain) and "Abs" in _op_types(guarded)
    values = np.random.default_rng(3).standard_normal((2, 4, 4, 16)).astype("float32") * 50
    np.testing.assert_allclose(plain(tf.constant(values)).numpy(),
                               guarded(tf.constant(values)).numpy(), atol=1e-5)

    model = NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
    assert "Abs" in _op_types(prepare_export(model).trace(batch=1))
