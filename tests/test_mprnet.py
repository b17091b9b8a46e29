"""MPRNet / MHMPRNet: the common backbone checks, parity with the official code, the official
parameter counts, the shared PReLU, bilinear resampling, configs saved under the old argument
names, and MPRNet's multi-head loss (Charbonnier + 0.05 edge, min over heads per stage)."""

import numpy as np
import pytest
from helpers import TINY_MPRNET, fixture_parity_error, random_images, run_backbone_test

from keras import ops

import keras_mhdeblur
from keras_mhdeblur.layers import downsample_2x, resize, upsample_2x
from keras_mhdeblur.losses import charbonnier_error, edge_error, mprnet_error


# JAX runs in a fresh process (40-80 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_backbone(backend, tmp_path):
    run_backbone_test(keras_mhdeblur.MPRNetMH, keras_mhdeblur.MPRNet, TINY_MPRNET, tmp_path,
                      backend=backend, fixture="mprnet_mh_f8_k4_comb")


def test_fixture_parity_every_stage():
    errors, model, _ = fixture_parity_error("mprnet_mh_f8_k4_comb")
    assert isinstance(model, keras_mhdeblur.MPRNetMH)
    assert set(errors) == {"stage1", "stage2", "stage3"}
    assert max(errors.values()) <= 1e-4, errors


def test_default_parameter_counts_match_the_paper():
    assert keras_mhdeblur.MPRNet().count_params() == 20_127_073
    assert keras_mhdeblur.build_model("mprnet", heads=4).count_params() == 20_140_897


def test_one_prelu_parameter_shared_by_every_cab():
    model = keras_mhdeblur.MPRNetMH(heads=2, **TINY_MPRNET)
    alphas = [v for v in model.weights if v.path.endswith("alpha")]
    assert len(alphas) == 1 and np.isclose(float(alphas[0].numpy().item()), 0.25)
    mapping = keras_mhdeblur.convert.official_parameter_map(model)
    shared = [name for name, (variable, *_) in mapping.items() if variable is alphas[0]]
    # Every CAB's official "body.1.weight" is that one variable: 3 shallow-feature CABs,
    # orb_blocks per ORB (3 ORBs), 6 per encoder and 8 per decoder (2 stages).
    assert len(shared) == 3 + 3 * TINY_MPRNET["orb_blocks"] + 2 * (6 + 8)
    assert all(name.endswith(".body.1.weight") for name in shared)


def test_bilinear_resampling_matches_pytorch_formulas():
    x = random_images((1, 4, 6, 2))
    np.testing.assert_allclose(np.asarray(downsample_2x(x)),
                               x.reshape(1, 2, 2, 3, 2, 2).mean(axis=(2, 4)), atol=1e-6)
    # align_corners=False: source (i + 0.5) / 2 - 0.5, clamped at the borders.
    src = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    low, frac = np.floor(src).astype(int), src - np.floor(src)
    high = np.minimum(low + 1, 3)
    rows = x[:, low] * (1 - frac)[None, :, None, None] + x[:, high] * frac[None, :, None, None]
    src = np.clip((np.arange(12) + 0.5) / 2 - 0.5, 0, 5)
    low, frac = np.floor(src).astype(int), src - np.floor(src)
    high = np.minimum(low + 1, 5)
    expected = rows[:, :, low] * (1 - frac)[None, None, :, None] + rows[:, :, high] * frac[
        None, None, :, None]
    np.testing.assert_allclose(np.asarray(upsample_2x(x)), expected, atol=1e-6)
    # The sliced form the other backends run computes the same samples.
    sliced = resize._upsample_axis(resize._upsample_axis(x, 1), 2)
    np.testing.assert_allclose(np.asarray(sliced), expected, atol=1e-6)


def test_tensorflow_upsampling_keeps_dtype_and_dynamic_sizes():
    import tensorflow as tf

    assert upsample_2x(ops.ones((1, 3, 5, 2), dtype="bfloat16")).dtype == "bfloat16"
    traced = tf.function(upsample_2x, input_signature=[tf.TensorSpec((None, None, None, 4))])
    x = random_images((2, 3, 5, 4))
    np.testing.assert_allclose(traced(x).numpy(), np.asarray(
        resize._upsample_axis(resize._upsample_axis(x, 1), 2)), atol=1e-6)
    assert upsample_2x(ops.ones((1, 3, 5, 2))).shape == (1, 6, 10, 2)  # static where known


def test_official_classes_and_errors():
    model = keras_mhdeblur.from_official_config("MPRNet", n_feat=8, scale_unetfeats=4,
                                                scale_orsnetfeats=4, num_cab=1)
    assert (type(model), model.width, model.unet_growth, model.orsnet_growth,
            model.orb_blocks) == (keras_mhdeblur.MPRNet, 8, 4, 4, 1)
    with pytest.raises(ValueError, match="RGB"):
        keras_mhdeblur.from_official_config("MHMPRNet", out_c=1, n_feat=8)


def test_configs_saved_under_the_old_argument_names_load():
    """`.keras` files from before the rename of num_cab (now orb_blocks) still load."""
    model = keras_mhdeblur.MPRNetMH(heads=2, **TINY_MPRNET)
    config = model.get_config()
    old = {key: value for key, value in config.items() if key != "orb_blocks"}
    assert keras_mhdeblur.MPRNetMH.from_config({**old, "num_cab": 1}).get_config() == config


def _numpy_laplacian(x):
    taps = np.array([.05, .25, .4, .25, .05])
    kernel = np.outer(taps, taps)

    def blur(image):
        padded = np.pad(image, 2, mode="edge")
        h, w = image.shape
        return sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(5) for j in range(5))

    filtered = blur(x)
    inserted = np.zeros_like(filtered)
    inserted[::2, ::2] = 4 * filtered[::2, ::2]
    return x - blur(inserted)


@pytest.mark.parametrize("size", [(12, 16), (9, 7)])
def test_edge_error_matches_a_direct_implementation(size):
    gt = random_images((2, *size, 3), 1)
    pred = random_images((2, 3, *size, 3), 2)
    expected = np.zeros((2, 3))
    for n in range(2):
        for k in range(3):
            e = np.stack([_numpy_laplacian(pred[n, k, ..., c]) - _numpy_laplacian(gt[n, ..., c])
                          for c in range(3)], axis=-1)
            expected[n, k] = np.mean(np.sqrt(e * e + 1e-6))
    np.testing.assert_allclose(np.asarray(edge_error(gt, pred)), expected, atol=1e-6)


def test_edge_term_vanishes_when_prediction_equals_target():
    gt = random_images((2, 16, 16, 3))
    pred = np.repeat(gt[:, None], 2, axis=1)
    # The Laplacian difference is zero; what is left is the Charbonnier floor sqrt(1e-6).
    np.testing.assert_allclose(np.asarray(edge_error(gt, pred)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mprnet_error(gt, pred)), 1e-3 * 1.05, rtol=1e-6)


def test_loss_takes_its_own_winner_in_every_stage():
    model = keras_mhdeblur.MPRNetMH(heads=3, combine_heads=False, **TINY_MPRNET)
    gt = np.full((1, 16, 16, 3), 0.5, "float32")
    noise = random_images((1, 16, 16, 3), 3) - 0.5
    scales = [[0.1, 0.5, 0.9], [0.9, 0.1, 0.5], [0.5, 0.9, 0.1]]  # winners 0, 1, 2
    stages = [np.stack([gt + s * noise for s in stage], axis=1) for stage in scales]
    per_stage = [np.asarray(mprnet_error(gt, stage))[0] for stage in stages]
    assert [int(np.argmin(e)) for e in per_stage] == [0, 1, 2]
    expected = sum(float(np.min(e)) for e in per_stage)
    assert np.isclose(float(model.compute_loss(y=gt, y_pred=stages)), expected, rtol=1e-6)
    # A single joint winner over the summed stage losses would be larger.
    assert expected < float(np.min(np.sum(per_stage, axis=0))) - 1e-3
    np.testing.assert_allclose(
        per_stage[0], np.asarray(charbonnier_error(gt, stages[0]) + 0.05 * edge_error(
            gt, stages[0]))[0], rtol=1e-6)
