"""Restormer / MHRestormer: parity with the official code, sizes, shapes, saving, training."""

import keras
import numpy as np
import pytest
from helpers import (assert_keras_round_trip, fixture_parity_error, load_fixture,
                     short_fit_losses)

import keras_mhdeblur
from keras_mhdeblur.models.restormer import BiasFreeLayerNorm

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, attention_heads=(1, 2, 2, 4))


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


def test_fixture_parity():
    errors, model, _ = fixture_parity_error("restormer_mh_d8_k4_comb")
    assert isinstance(model, keras_mhdeblur.RestormerMH)
    assert errors["heads"] <= 1e-4, errors


def test_single_head_weights_seed_the_multi_head_model():
    metadata, state_dict, inputs, _ = load_fixture("restormer_mh_d8_k4_comb")
    kwargs = dict(metadata["constructor_kwargs"])
    single_kwargs = {k: v for k, v in kwargs.items() if k not in ("n_heads", "combinate_heads")}
    single_state = {**state_dict, "output.weight": state_dict["output.weight"][:3]}
    single = keras_mhdeblur.from_official_config("Restormer", **single_kwargs)
    keras_mhdeblur.load_torch_weights(single, single_state)
    multi = keras_mhdeblur.from_official_config("MHRestormer", **kwargs)
    with pytest.raises(keras_mhdeblur.WeightImportError, match="from_single_head=True"):
        keras_mhdeblur.load_torch_weights(multi, single_state)
    keras_mhdeblur.load_torch_weights(multi, single_state, from_single_head=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(multi(inputs))[:, 0],
                               keras.ops.convert_to_numpy(single(inputs)), atol=1e-6)


def test_default_parameter_counts_match_method_7():
    assert keras_mhdeblur.Restormer().count_params() == 26_126_644
    assert keras_mhdeblur.build_model("restormer", heads=4).count_params() == 26_134_420


@pytest.mark.parametrize("model_kwargs, expected", [
    (dict(heads=4, combine_heads=True), (2, 10, 37, 51, 3)),
    (dict(heads=2, combine_heads=False), (2, 2, 37, 51, 3)),
])
def test_multi_head_output_shape_odd_size(model_kwargs, expected):
    model = keras_mhdeblur.RestormerMH(**model_kwargs, **TINY)
    assert tuple(model(_images((2, 37, 51, 3))).shape) == expected


def test_single_head_output_shape_odd_size():
    model = keras_mhdeblur.Restormer(**TINY)
    assert tuple(model(_images((1, 37, 51, 3))).shape) == (1, 37, 51, 3)


def test_bias_free_layer_norm_keeps_the_mean():
    x = _images((2, 5, 7, 6)) * 3 - 1
    layer = BiasFreeLayerNorm()
    layer.build(x.shape)
    layer.weight.assign(np.linspace(0.5, 2.0, 6).astype("float32"))
    expected = x / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * np.linspace(0.5, 2.0, 6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_bias_free_has_no_norm_biases():
    with_bias = keras_mhdeblur.Restormer(**TINY)
    bias_free = keras_mhdeblur.Restormer(layer_norm_type="BiasFree", **TINY)
    # Two norms per block; block widths: encoders 8, 16, 32, latent 64, decoders 32, 16, 16,
    # refinement 16.
    widths = (8, 16, 32, 64, 32, 16, 16, 16)
    assert with_bias.count_params() - bias_free.count_params() == 2 * sum(widths)


def test_official_builder_rejects_dual_pixel():
    with pytest.raises(ValueError, match="dual_pixel_task"):
        keras_mhdeblur.from_official_config("Restormer", dual_pixel_task=True)


def test_keras_round_trip(tmp_path):
    model = keras_mhdeblur.RestormerMH(heads=2, combine_heads=True, layer_norm_type="BiasFree",
                                       selected_output=1, **TINY)
    assert_keras_round_trip(model, _images((1, 24, 40, 3)), tmp_path)


FIT = """
import keras, numpy as np
import keras_mhdeblur
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype("float32")
y = 0.6 * x + 0.2
model = keras_mhdeblur.RestormerMH(heads=2, dim=8, num_blocks=(1, 1, 1, 1),
                                   num_refinement_blocks=1, attention_heads=(1, 2, 2, 4))
model.compile(optimizer=keras.optimizers.Adam(1e-3))
losses = model.fit(x, y, batch_size=4, epochs=8, verbose=0).history["loss"]
"""


# JAX runs in a fresh process (20-45 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_short_fit_lowers_the_loss(backend):
    first, last = short_fit_losses(FIT, backend)
    assert last < 0.9 * first, (first, last)


def test_images_smaller_than_the_padding_still_work():
    model = keras_mhdeblur.RestormerMH(heads=2, **TINY)
    out = model(np.random.default_rng(0).uniform(size=(1, 3, 5, 3)).astype("float32"))
    assert tuple(out.shape) == (1, 3, 3, 5, 3)
