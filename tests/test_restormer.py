"""Restormer / MHRestormer: the common backbone checks, parity with the official code,
single-head weights, the official parameter counts and block counts, the BiasFree norm, and
configs saved under the old argument names."""

import keras
import numpy as np
import pytest
from helpers import (TINY_RESTORMER, assert_keras_round_trip, fixture_parity_error,
                     load_fixture, random_images, run_backbone_test)

import keras_mhdeblur
from keras_mhdeblur.models.restormer import BiasFreeLayerNorm


# JAX runs in a fresh process (40-80 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_backbone(backend, tmp_path):
    run_backbone_test(keras_mhdeblur.RestormerMH, keras_mhdeblur.Restormer, TINY_RESTORMER,
                      tmp_path, backend=backend, fixture="restormer_mh_d8_k4_comb")


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


def test_default_parameter_counts_match_the_paper():
    assert keras_mhdeblur.Restormer().count_params() == 26_126_644
    assert keras_mhdeblur.build_model("restormer", heads=4).count_params() == 26_134_420


def test_official_block_counts_map_onto_levels():
    """The official num_blocks (4, 6, 6, 8): encoders 4, 6, 6, latent 8, decoders mirrored."""
    model = keras_mhdeblur.from_official_config(
        "Restormer", dim=8, num_blocks=[2, 1, 1, 3], num_refinement_blocks=2, heads=[1, 2, 2, 4],
        bias=True)
    assert (model.width, model.enc_blocks, model.middle_blocks, model.dec_blocks,
            model.refinement_blocks, model.use_bias) == (8, (2, 1, 1), 3, (1, 1, 2), 2, True)
    assert [len(getattr(model, name)) for name in (
        "encoder_level1", "encoder_level2", "encoder_level3", "latent", "decoder_level3",
        "decoder_level2", "decoder_level1", "refinement")] == [2, 1, 1, 3, 1, 1, 2, 2]


def test_bias_free_layer_norm_keeps_the_mean():
    x = random_images((2, 5, 7, 6)) * 3 - 1
    layer = BiasFreeLayerNorm()
    layer.build(x.shape)
    layer.weight.assign(np.linspace(0.5, 2.0, 6).astype("float32"))
    expected = x / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * np.linspace(0.5, 2.0, 6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_bias_free_has_no_norm_biases():
    with_bias = keras_mhdeblur.Restormer(**TINY_RESTORMER)
    bias_free = keras_mhdeblur.Restormer(**{**TINY_RESTORMER, "layer_norm_type": "BiasFree"})
    # Two norms per block; block widths: encoders 8, 16, 32, latent 64, decoders 32, 16, 16,
    # refinement 16.
    widths = (8, 16, 32, 64, 32, 16, 16, 16)
    assert with_bias.count_params() - bias_free.count_params() == 2 * sum(widths)


def test_official_builder_rejects_dual_pixel():
    with pytest.raises(ValueError, match="dual_pixel_task"):
        keras_mhdeblur.from_official_config("Restormer", dual_pixel_task=True)


def test_configs_saved_under_the_old_argument_names_load(tmp_path):
    """`.keras` files from before the renames (dim, num_blocks, num_refinement_blocks, bias)
    still load: `from_config` translates the old names."""
    model = keras_mhdeblur.RestormerMH(
        heads=2, width=8, enc_blocks=(2, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 2),
        refinement_blocks=1, attention_heads=(1, 2, 2, 4), use_bias=True,
        layer_norm_type="BiasFree", selected_output=1)
    assert_keras_round_trip(model, random_images((1, 24, 40, 3)), tmp_path)
    old = {key: value for key, value in model.get_config().items() if key not in (
        "width", "enc_blocks", "middle_blocks", "dec_blocks", "refinement_blocks", "use_bias")}
    old.update(dim=8, num_blocks=[2, 1, 1, 1], num_refinement_blocks=1, bias=True)
    assert keras_mhdeblur.RestormerMH.from_config(old).get_config() == model.get_config()
    single = keras_mhdeblur.Restormer.from_config({**old, "heads": 1, "combine_heads": False,
                                                   "selected_output": None})
    assert (type(single), single.width, single.dec_blocks) == (
        keras_mhdeblur.Restormer, 8, (1, 1, 2))
    with pytest.raises(ValueError, match="renamed"):
        keras_mhdeblur.RestormerMH.from_config({**model.get_config(), "dim": 8})
