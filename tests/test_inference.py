"""Deblurring photos: tiles equal the whole image, output selection, spread and contact sheets,
and a forward pass that does not retrace when batch or image size changes."""

import json

import keras
import numpy as np
import pytest

import keras_mhdeblur
from keras_mhdeblur.inference import (_edge_weights, is_grey, predictor, pick_outputs, restore,
                                      spread_map, tile_starts)
from keras_mhdeblur.visualize import colormap, contact_sheet

from helpers import TINY_NAFNET, run_python

TINY = TINY_NAFNET


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras_mhdeblur.NAFNetMH(heads=2, **TINY)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)  # needs padding


def test_blend_weights_of_neighbours_sum_to_one():
    overlap = 16
    left = _edge_weights(40, overlap, first=True, last=False)
    right = _edge_weights(40, overlap, first=False, last=True)
    shared = left[-overlap:] + right[:overlap]
    np.testing.assert_allclose(shared, 1.0, atol=1e-6)
    assert left[0] == 1 and left[-4:].max() == 0  # the outer quarter of the overlap is ignored
    assert tile_starts(100, 40, 16) == [0, 24, 48, 60]


def test_tiles_equal_the_whole_image_when_the_overlap_covers_the_receptive_field(model, image):
    # Fresh NAFBlocks are the identity (beta = gamma = 0), leaving convolutions with a receptive
    # field of 5 pixels here; blending ignores overlap // 4 = 6 pixels at each cut.
    whole = restore(model, image, which="all")
    for tile, overlap in ((32, 24), (48, 24)):
        tiled = restore(model, image, which="all", tile=tile, overlap=overlap)
        assert tiled.shape == whole.shape == (3, 37, 53, 3)
        np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_tiles_stay_close_with_active_blocks(image):
    # With non-zero beta/gamma every block adds channel attention over the whole tile (global
    # mean), so tiles differ from the whole image; measured max abs error 3.3e-3 at tile 32 /
    # overlap 16 and 1.9e-3 at 48 / 16 (mean ~1e-4 and ~3e-5).
    active = _active_nafnet()
    whole = restore(active, image, which="all")
    tiled = restore(active, image, which="all", tile=48, overlap=16)
    assert np.abs(tiled - whole).max() < 1e-2
    assert np.abs(tiled - whole).mean() < 2e-4


def _active_nafnet():
    """A tiny NAFNet whose blocks do something (fresh ones are the identity: beta = gamma = 0),
    so its output changes when the input is flipped and turned back."""
    keras.utils.set_random_seed(0)
    active = keras_mhdeblur.NAFNetMH(heads=2, **TINY)
    rng = np.random.default_rng(1)
    for variable in active.weights:
        if variable.path.split("/")[-1] in ("beta", "gamma"):
            variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    return active


def test_self_ensemble_turns_every_copy_back(image):
    active = _active_nafnet()
    single = restore(active, image, which="all")
    mirrored_back = restore(active, image[:, ::-1], which="all")[:, :, ::-1]
    assert np.abs(mirrored_back - single).max() > 1e-3  # the network is not mirror-symmetric
    # The ensemble over a group of flips commutes with every flip of that group: a copy that
    # was not turned back, or turned back wrongly, breaks this.
    pair = restore(active, image, which="all", self_ensemble=2)
    np.testing.assert_allclose(pair, (single + mirrored_back) / 2, atol=1e-6)
    eight = restore(active, image, which="all", self_ensemble=8)
    assert eight.shape == single.shape == (3, 37, 53, 3)
    transposed = restore(active, np.swapaxes(image, 0, 1), which="all", self_ensemble=8)
    np.testing.assert_allclose(np.swapaxes(transposed, 1, 2), eight, atol=1e-5)
    four = restore(active, image[::-1], which=1, self_ensemble=4)
    np.testing.assert_allclose(four[::-1], restore(active, image, which=1, self_ensemble=4),
                               atol=1e-5)
    tiled = restore(active, image, which="all", tile=48, overlap=16, self_ensemble=8)
    assert np.abs(tiled - eight).mean() < 2e-4
    for bad in (0, 3, 16):
        with pytest.raises(ValueError, match=f"self_ensemble must be one of .* got {bad}"):
            restore(active, image, self_ensemble=bad)


def test_a_grey_photo_comes_back_grey(image):
    active = _active_nafnet()
    grey = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    raw = restore(active, grey, which="all", keep_grey=False)
    assert np.ptp(raw, axis=-1).max() > 0.01  # the network tints the grey photo
    kept = restore(active, grey, which="all")
    np.testing.assert_allclose(kept, np.repeat(raw.mean(axis=-1, keepdims=True), 3, axis=-1),
                               atol=1e-6)
    assert is_grey(kept, tolerance=0)
    # Tiles and the self-ensemble keep it grey too.
    assert is_grey(restore(active, grey, which=0, tile=32, overlap=8, self_ensemble=2),
                   tolerance=0)
    # A level between channels (a colour JPEG of a grey photo) is still grey; three are not,
    # and a colour photo comes back as the network made it.
    nearly = grey.copy()
    nearly[..., 0] += 1 / 255
    assert is_grey(nearly) and is_grey(restore(active, nearly, which=0), tolerance=0)
    nearly[..., 0] += 2 / 255
    assert not is_grey(nearly)
    np.testing.assert_array_equal(restore(active, image, which="all"),
                                  restore(active, image, which="all", keep_grey=False))


def test_which_selects_outputs(model, image):
    all_outputs = restore(model, image, which="all")
    np.testing.assert_allclose(restore(model, image, which=1), all_outputs[1], atol=1e-6)
    assert restore(model, image).shape == all_outputs.shape  # nothing selected: every output
    with pytest.raises(ValueError, match="no selected output"):
        restore(model, image, which="selected")
    with pytest.raises(ValueError, match="out of range: the model has 3 outputs"):
        pick_outputs(model, predictor(model)(image[None]), which=7)
    with pytest.raises(ValueError, match="overlap"):
        restore(model, image, tile=16, overlap=16)


def test_spread_map_and_contact_sheet(model, image):
    outputs = restore(model, image, which="all")
    spread = spread_map(outputs)
    assert spread.shape == (37, 53) and spread.min() >= 0
    assert spread_map(np.stack([image, image])).max() == 0
    colours = colormap(np.array([[0.0, 0.5, 1.0]]), vmax=1.0)
    assert colours.dtype == np.uint8 and colours[0, 0].sum() < colours[0, 2].sum()
    sheet = contact_sheet(image, outputs, extra=[("target", image)], columns=3, gap=2)
    # input, 3 outputs, target, spread = 6 panels in 2 rows of 3
    assert sheet.shape == (2 * 37 + 2, 3 * 53 + 4, 3) and sheet.dtype == np.uint8
    small = contact_sheet(np.zeros((600, 300, 3)), np.zeros((600, 300, 3)), panel_size=100)
    assert small.shape[0] == 100  # one output: no spread map; downscaled to the panel size


# (batch, height, width) of successive inference calls; with pad_multiple 4 (two levels) the
# last one falls in the same padded bucket as the second: batch 3 -> 4, 33x35 -> 36x36.
CALLS = [(1, 37, 53), (3, 36, 34), (2, 64, 48), (1, 37, 53), (4, 33, 35)]
PREDICT = """
import json, numpy as np, keras, keras_mhdeblur
from keras_mhdeblur import inference
from keras_mhdeblur.inference import predictor
inference.EAGER_SECONDS = 0.0  # the compiled path from the first call
keras.utils.set_random_seed(0)
TINY = dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
rng = np.random.default_rng(0)
result = {}
variants = {"plain": {}, "tlc": {"tlc_train_size": (32, 32)}}
if keras.backend.backend() == "jax":
    del variants["tlc"]  # JAX takes the bucketed path for every model
for name, extra in variants.items():
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY, **extra)
    errors = []
    for index, (batch, height, width) in enumerate(CALLS):
        images = rng.random((batch, height, width, 3), dtype=np.float32)
        actual = predictor(model)(images)
        assert actual.shape == (batch, 3, height, width, 3), actual.shape
        if keras.backend.backend() == "tensorflow" or index in (1, 4):  # eager JAX is slow
            expected = keras.ops.convert_to_numpy(model(images))
            errors.append(float(np.abs(actual - expected).max()))
    result[name] = {"traces": predictor(model).traces, "error": max(errors)}
print(json.dumps(result))
"""


# JAX runs in a fresh process (20-45 s here), so it is in the slow set (pytest -m slow).
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow)])
def test_inference_does_not_retrace_when_batch_or_size_changes(backend):
    out = run_python(f"CALLS = {CALLS!r}\n" + PREDICT, backend=backend)
    result = json.loads(out.strip().splitlines()[-1])
    # Padded buckets: (1, 40, 56), (4, 36, 36), (2, 64, 48), again the first, again the second.
    buckets = 3
    expected_plain = 1 if backend == "tensorflow" else buckets  # TF: one shape-free trace
    assert result["plain"]["traces"] == expected_plain, result
    assert result["plain"]["error"] < 1e-5, result
    if backend == "tensorflow":
        # TLC's local pool needs static sizes, so TF traces it per bucket (Keras' own predict
        # would retrace it with unknown sizes, and fail).
        assert result["tlc"]["traces"] == buckets and result["tlc"]["error"] < 1e-5, result


def test_predictor_runs_eagerly_until_its_budget_is_spent_then_compiles_once():
    from keras_mhdeblur.inference import Predictor

    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1, 1), middle_blocks=1,
                                    dec_blocks=(1, 1))
    rng = np.random.default_rng(0)
    images = [rng.random((1, 36, 44, 3), dtype=np.float32) for _ in range(4)]
    expected = [keras.ops.convert_to_numpy(model(image)) for image in images]

    patient = Predictor(model)  # the default budget: a tiny model never spends it
    for image, want in zip(images, expected):
        np.testing.assert_allclose(patient(image), want, atol=1e-5)
    assert patient.traces == 0

    hasty = Predictor(model, eager_seconds=1e-9)  # the first call spends it
    results = [hasty(image) for image in images]
    assert hasty.traces == 1
    for result, want in zip(results, expected):
        np.testing.assert_allclose(result, want, atol=1e-5)
