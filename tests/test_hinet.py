"""HINet / MHHINet: parity with the official code, sizes, output formats, saving, training."""

import inspect

import keras
import numpy as np
import pytest
from helpers import (assert_keras_round_trip, fixture_parity_error, random_images,
                     short_fit_losses)

import keras_mhdeblur

TINY = dict(width=8, depth=3, hin_position_left=1, hin_position_right=2)


def test_fixture_parity_every_stage():
    errors, model, _ = fixture_parity_error("hinet_mh_wf8_d3_k4_comb")
    assert isinstance(model, keras_mhdeblur.HINetMH)
    assert set(errors) == {"stage1", "stage2"}
    assert max(errors.values()) <= 1e-4, errors


def test_default_parameter_counts_match_method_7():
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


def test_output_formats_on_odd_sizes():
    image = random_images((2, 37, 51, 3))
    model = keras_mhdeblur.HINetMH(heads=3, combine_heads=True, **TINY)
    outputs = model(image)
    assert isinstance(outputs, list)
    assert [tuple(o.shape) for o in outputs] == [(2, 6, 37, 51, 3)] * 2
    as_dict = keras_mhdeblur.HINetMH(heads=2, combine_heads=False, output_format="dict", **TINY)
    outputs = as_dict(image)
    assert sorted(outputs) == ["stage1", "stage2"]
    assert tuple(as_dict.final_output(outputs).shape) == (2, 2, 37, 51, 3)
    single = keras_mhdeblur.HINet(**TINY)
    assert [tuple(o.shape) for o in single(image)] == [(2, 37, 51, 3)] * 2


def test_single_head_weights_reproduce_single_head_outputs():
    """from_single_head with no perturbation: every head equals the single-head model, through
    SAM's conv3 (which reads all heads, so its input weights are divided by K)."""
    single = keras_mhdeblur.HINet(**TINY)
    state_dict = {}
    for name, (variable, *_) in keras_mhdeblur.convert.official_parameter_map(
            single).items():
        value = keras.ops.convert_to_numpy(variable)
        state_dict[name] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.reshape(-1)
    model = keras_mhdeblur.HINetMH(heads=3, combine_heads=True, **TINY)
    keras_mhdeblur.load_torch_weights(model, state_dict, from_single_head=True, perturbation=0)
    image = random_images((1, 16, 24, 3))
    for expected, actual in zip(single(image), model(image)):
        np.testing.assert_allclose(np.asarray(actual), np.repeat(
            np.asarray(expected)[:, None], 6, axis=1), atol=1e-5)


def test_keras_round_trip(tmp_path):
    model = keras_mhdeblur.HINetMH(heads=2, combine_heads=True, selected_output=1,
                                   output_format="dict", **TINY)
    loaded = assert_keras_round_trip(model, random_images((1, 20, 28, 3)), tmp_path)
    assert (loaded.selected_output, loaded.depth, loaded.hin_position_left) == (1, 3, 1)


def test_default_loss_is_half_psnr_per_stage():
    model = keras_mhdeblur.HINetMH(heads=2, **TINY)
    loss = model.default_loss()
    assert (loss.base, loss.weight) == ("psnr", 0.5)
    gt = random_images((2, 8, 8, 3))
    stages = [random_images((2, 3, 8, 8, 3), seed) for seed in (1, 2)]
    expected = sum(float(loss(gt, stage)) for stage in stages)
    assert np.isclose(float(model.compute_loss(y=gt, y_pred=stages)), expected, rtol=1e-6)


FIT = """
import keras, numpy as np, keras_mhdeblur
keras.utils.set_random_seed(0)
model = keras_mhdeblur.HINetMH(heads=2, width=4, depth=2, hin_position_left=1,
                               hin_position_right=1)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
history = model.fit(x, 0.5 * x + 0.25, batch_size=2, epochs=8, verbose=0)
losses = history.history["loss"]
"""


# JAX runs in a fresh process (20-45 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_short_fit_lowers_the_loss(backend):
    first, last = short_fit_losses(FIT, backend)
    assert last < first - 0.5, (first, last)
