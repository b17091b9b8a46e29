"""HINet / MHHINet: the common backbone checks, parity with the official code, the official
classes and defaults, single-head weights, the default loss."""

import inspect

import keras
import numpy as np
import pytest
from helpers import TINY_HINET, fixture_parity_error, random_images, run_backbone_test

import keras_mhdeblur


# JAX runs in a fresh process (40-80 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_backbone(backend, tmp_path):
    run_backbone_test(keras_mhdeblur.HINetMH, keras_mhdeblur.HINet, TINY_HINET, tmp_path,
                      backend=backend, fixture="hinet_mh_wf8_d3_k4_comb")


def test_fixture_parity_every_stage():
    errors, model, _ = fixture_parity_error("hinet_mh_wf8_d3_k4_comb")
    assert isinstance(model, keras_mhdeblur.HINetMH)
    assert set(errors) == {"stage1", "stage2"}
    assert max(errors.values()) <= 1e-4, errors


def test_default_parameter_counts_match_the_paper():
    assert keras_mhdeblur.HINet().count_params() == 88_668_806
    assert keras_mhdeblur.build_model("hinet", heads=4).count_params() == 88_684_376


def test_official_classes_and_defaults():
    local = keras_mhdeblur.from_official_config("MHHINetLocal", wf=8, depth=3, n_heads=2,
                                                combinate_heads=True, train_size=(1, 3, 64, 64))
    assert (type(local), local.width, local.heads, local.num_outputs) == (
        keras_mhdeblur.HINetMH, 8, 2, 3)
    single = keras_mhdeblur.from_official_config("HINetLocal", wf=8, depth=2)
    assert type(single) is keras_mhdeblur.HINet
    # The official constructor puts HIN on levels 0..4; the GoPro config on 3..4.
    assert (single.hin_position_left, single.hin_position_right) == (0, 4)
    defaults = inspect.signature(keras_mhdeblur.HINetMH).parameters
    assert (defaults["hin_position_left"].default, defaults["hin_position_right"].default) == (3, 4)
    with pytest.raises(ValueError, match="RGB"):
        keras_mhdeblur.from_official_config("HINet", in_chn=1, wf=8, depth=2)
    with pytest.raises(ValueError, match="unknown constructor arguments"):
        keras_mhdeblur.from_official_config("HINet", width=8)


def test_single_head_weights_reproduce_single_head_outputs():
    """from_single_head with no perturbation: every head equals the single-head model, through
    SAM's conv3 (which reads all heads, so its input weights are divided by K)."""
    single = keras_mhdeblur.HINet(**TINY_HINET)
    state_dict = {}
    for name, (variable, *_) in keras_mhdeblur.convert.official_parameter_map(
            single).items():
        value = keras.ops.convert_to_numpy(variable)
        state_dict[name] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.reshape(-1)
    model = keras_mhdeblur.HINetMH(heads=3, combine_heads=True, **TINY_HINET)
    keras_mhdeblur.load_torch_weights(model, state_dict, from_single_head=True, perturbation=0)
    image = random_images((1, 16, 24, 3))
    for expected, actual in zip(single(image), model(image)):
        np.testing.assert_allclose(np.asarray(actual), np.repeat(
            np.asarray(expected)[:, None], 6, axis=1), atol=1e-5)


def test_default_loss_is_half_psnr_per_stage():
    model = keras_mhdeblur.HINetMH(heads=2, **TINY_HINET)
    loss = model.default_loss()
    assert (loss.base, loss.weight) == ("psnr", 0.5)
    gt = random_images((2, 8, 8, 3))
    stages = [random_images((2, 3, 8, 8, 3), seed) for seed in (1, 2)]
    expected = sum(float(loss(gt, stage)) for stage in stages)
    assert np.isclose(float(model.compute_loss(y=gt, y_pred=stages)), expected, rtol=1e-6)
