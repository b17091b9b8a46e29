"""The scoring branch and the "auto" output: training target, fusion, frozen-backbone training,
and `which="auto"` through restore, evaluate, deblur and export (with the fallback for models
without a branch)."""

import keras
import numpy as np
import pytest

import keras_mhdeblur
from helpers import TINY_NAFNET_ONE_LEVEL, fixture_parity_error, load_fixture, random_images, run_python
from keras_mhdeblur.evaluation import evaluate_model, psnr_uint8
from keras_mhdeblur.data.io import to_uint8
from keras_mhdeblur.inference import restore
from keras_mhdeblur.scoring import (OutputScorer, fit_scorer, patch_winners, scorer_loss,
                                    with_output_scorer)

TINY = TINY_NAFNET_ONE_LEVEL


@pytest.fixture(scope="module")
def trained():
    """A tiny 2-head model and the same network with a scoring branch trained for 40 steps."""
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, selected_output=1, **TINY)
    scored = with_output_scorer(model, patch_size=8, width=8)
    blurry = random_images((8, 32, 32, 3), seed=1)
    sharp = np.clip(blurry + 0.05, 0, 1)
    losses = [_scorer_loss(scored, blurry, sharp)]
    fit_scorer(scored, _batches(blurry, sharp), steps=40)
    losses.append(_scorer_loss(scored, blurry, sharp))
    return model, scored, blurry, sharp, losses


def _scorer_loss(model, blurry, sharp):
    outputs, features = model.outputs_and_features(blurry)
    logits = model.output_scorer(blurry, outputs, features)
    return float(scorer_loss(logits, patch_winners(outputs, sharp, 8)))


def _batches(blurry, sharp, size=4):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 1000

        def __getitem__(self, index):
            start = (index % (len(blurry) // size)) * size
            return blurry[start:start + size], sharp[start:start + size]

    return Batches()


def test_patch_winners_is_the_lowest_mse_output_of_each_patch():
    target = np.zeros((1, 16, 16, 3), np.float32)
    outputs = np.full((1, 3, 16, 16, 3), 0.5, np.float32)
    outputs[0, 0, :8, :8] = 0.01   # output 0 is right in the top-left patch
    outputs[0, 2, 8:, :] = 0.0     # output 2 in the bottom row of patches
    outputs[0, 1, :8, 8:] = 0.2    # output 1 in the top-right one
    winners = keras.ops.convert_to_numpy(patch_winners(outputs, target, 8))
    np.testing.assert_array_equal(winners, [[[0, 1], [2, 2]]])


def test_scorer_loss_is_the_cross_entropy_of_the_winner():
    logits = np.random.default_rng(0).normal(size=(2, 3, 2, 2)).astype("float32")
    winners = np.array([[[0, 1], [2, 0]], [[1, 1], [2, 2]]], np.int32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean([log_softmax[b, winners[b, i, j], i, j]
                         for b in range(2) for i in range(2) for j in range(2)])
    np.testing.assert_allclose(float(scorer_loss(logits, winners)), expected, rtol=1e-5)


@pytest.mark.parametrize("fusion", ["soft", "pick"])
def test_fusion_weights_sum_to_one_and_follow_confident_scores(fusion):
    scorer = OutputScorer(3, patch_size=8, fusion=fusion)
    logits = np.full((1, 3, 2, 2), -20.0, np.float32)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 2, 1, :] = 20.0
    weights = keras.ops.convert_to_numpy(scorer.weights_per_pixel(logits, 16, 13))
    assert weights.shape == (1, 3, 16, 13)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    # inside a patch (away from the ramps between patch centres) the winner has all the weight
    np.testing.assert_allclose(weights[0, 0, 1, 1], 1.0, atol=1e-5)
    np.testing.assert_allclose(weights[0, 2, 14, 2], 1.0, atol=1e-5)
    # across a patch border the weights ramp, they do not jump
    assert np.abs(np.diff(weights[0, 0, 2, :], axis=-1)).max() <= 1 / 8 + 1e-5


def test_the_branch_trains_with_the_backbone_frozen(trained):
    model, scored, blurry, sharp, losses = trained
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scored(blurry)),
                               keras.ops.convert_to_numpy(model(blurry)), atol=1e-6)
    assert all(layer.trainable for layer in scored.layers)  # restored after fit_scorer
    assert scored.selected_output == 1


def test_auto_through_restore_evaluate_and_save(trained, tmp_path):
    model, scored, blurry, sharp, _ = trained
    image = blurry[0]
    outputs = restore(scored, image, which="all")
    auto = restore(scored, image, which="auto")
    expected = keras.ops.convert_to_numpy(scored.output_scorer.fuse(image[None], outputs[None]))
    np.testing.assert_allclose(auto, expected[0], atol=1e-5)
    assert restore(scored, image, which="all+auto").shape == (4, 32, 32, 3)
    tiled = restore(scored, image, which="auto", tile=16, overlap=8)
    assert tiled.shape == auto.shape and np.isfinite(tiled).all()
    summary = evaluate_model(scored, [("a", blurry[0], sharp[0]), ("b", blurry[1], sharp[1])],
                             compute_ssim=False).summary()
    expected_psnr = np.mean([psnr_uint8(to_uint8(restore(scored, blurry[i], which="auto")),
                                        to_uint8(sharp[i])) for i in range(2)])
    np.testing.assert_allclose(summary["auto_psnr"], expected_psnr, rtol=1e-6)
    assert "auto_psnr" not in evaluate_model(model, [("a", blurry[0], sharp[0])],
                                             compute_ssim=False).summary()
    scored.save(tmp_path / "scored.keras")
    loaded = keras.models.load_model(tmp_path / "scored.keras")
    np.testing.assert_allclose(restore(loaded, image, which="auto"), auto, atol=1e-6)


def test_the_fusion_objective_lowers_the_auto_output_error(trained):
    from keras_mhdeblur.scoring import ScorerTrainer

    _, scored, blurry, sharp, _ = trained
    trainer = ScorerTrainer(scored, objective="fusion")
    before = float(trainer.compute_loss(blurry, sharp, trainer(blurry)))
    fused = keras.ops.convert_to_numpy(scored.output_scorer.fuse(blurry, scored(blurry)))
    mse = ((fused - sharp) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(before, np.mean(10 * np.log10(mse + 1e-8)), rtol=1e-4)
    copy = with_output_scorer(scored)
    fit_scorer(copy, _batches(blurry, sharp), steps=30, objective="fusion")
    trainer = ScorerTrainer(copy, objective="fusion")
    assert float(trainer.compute_loss(blurry, sharp, trainer(blurry))) < before
    with pytest.raises(ValueError, match="objective"):
        ScorerTrainer(scored, objective="nope")


def test_a_branch_on_the_backbone_features_trains_frozen_and_exports(trained, tmp_path):
    from keras_mhdeblur.export import export_tflite

    model, _, blurry, sharp, _ = trained
    keras.utils.set_random_seed(3)
    scored = with_output_scorer(model, width=8, inputs="features")
    assert scored.output_scorer.candidate_path is None
    before = _scorer_loss(scored, blurry, sharp)
    fit_scorer(scored, _batches(blurry, sharp), steps=40)
    assert _scorer_loss(scored, blurry, sharp) < before
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scored(blurry)),
                               keras.ops.convert_to_numpy(model(blurry)), atol=1e-6)
    auto = restore(scored, blurry[0], which="auto")
    final, features = scored.outputs_and_features(blurry[:1])
    expected = scored.output_scorer.fuse(blurry[:1], final, features)
    np.testing.assert_allclose(auto, keras.ops.convert_to_numpy(expected)[0], atol=1e-5)
    scored.save(tmp_path / "features.keras")
    loaded = keras.models.load_model(tmp_path / "features.keras")
    assert loaded.output_scorer.inputs == "features"
    np.testing.assert_allclose(restore(loaded, blurry[0], which="auto"), auto, atol=1e-6)
    export_tflite(scored, tmp_path / "features.tflite", output="auto")  # verifies or raises
    with pytest.raises(ValueError, match="features"):
        scored.output_scorer(blurry[:1], final)


def test_both_inputs_add_the_two_paths_logits(trained):
    model, _, blurry, _, _ = trained
    keras.utils.set_random_seed(4)
    both = with_output_scorer(model, width=8, inputs="both")
    alone = {inputs: with_output_scorer(model, width=8, inputs=inputs).output_scorer
             for inputs in ("candidates", "features")}
    scorer = both.output_scorer
    bias = np.array([0.5, -1.0, 2.0], "float32")
    scorer.output_bias.assign(bias)
    for inputs, path in (("candidates", scorer.candidate_path),
                         ("features", scorer.feature_path)):
        for source, target in zip(path, getattr(alone[inputs], f"{inputs[:-1]}_path")):
            for value, variable in zip(source.weights, target.weights):
                variable.assign(value)
    final, features = both.outputs_and_features(blurry[:2])
    logits = {name: keras.ops.convert_to_numpy(layer(blurry[:2], final, features))
              for name, layer in [("both", scorer), *alone.items()]}
    assert np.abs(logits["features"]).max() > 1e-3 and np.abs(logits["candidates"]).max() > 1e-3
    np.testing.assert_allclose(logits["both"], logits["candidates"] + logits["features"]
                               + bias[None, :, None, None], atol=1e-5)
    with pytest.raises(ValueError, match="inputs"):
        with_output_scorer(model, inputs="pixels")


def test_models_without_a_branch_fall_back_to_the_selected_output(trained):
    model, _, blurry, _, _ = trained
    np.testing.assert_array_equal(restore(model, blurry[0], which="auto"),
                                  restore(model, blurry[0], which=1))
    model.selected_output = None
    try:
        np.testing.assert_array_equal(restore(model, blurry[0], which="auto"),
                                      restore(model, blurry[0], which=0))
    finally:
        model.selected_output = 1


def test_auto_exports_to_tflite_and_verifies(trained, tmp_path):
    from keras_mhdeblur.export import export_tflite
    from keras_mhdeblur.inference import output_choice

    model, scored, _, _, _ = trained
    assert output_choice(scored, None) == "auto"  # what an export writes by default
    assert output_choice(scored, "auto") == "auto"
    assert output_choice(model, "auto") == 1  # no branch: the selected output
    result = export_tflite(scored, tmp_path / "auto.tflite", output="auto")
    assert result.path.exists()  # export_tflite raises if the interpreter disagrees


def test_official_weights_load_with_and_without_a_branch():
    errors, model, metadata = fixture_parity_error("nafnet_mh_w8_k4_comb")
    assert model.output_scorer is None and max(errors.values()) < 1e-5
    _, state_dict, inputs, expected = load_fixture("nafnet_mh_w8_k4_comb")
    scored = with_output_scorer(model)
    keras_mhdeblur.load_torch_weights(scored, state_dict)  # the branch has no official names
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scored(inputs)),
                               next(iter(expected.values())), atol=1e-5)


def test_single_output_models_have_no_branch():
    with pytest.raises(ValueError, match="single output"):
        with_output_scorer(keras_mhdeblur.NAFNet(**TINY))


# Slow (-m slow): the JAX fit of test_training.py keeps JAX in the default run.
@pytest.mark.slow
def test_auto_on_jax_reads_the_current_weights():
    out = run_python("""
        import keras, numpy as np, keras_mhdeblur
        from keras_mhdeblur.inference import restore
        from keras_mhdeblur.scoring import with_output_scorer
        keras.utils.set_random_seed(0)
        model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
        scored = with_output_scorer(model)
        image = np.random.default_rng(0).uniform(size=(24, 32, 3)).astype("float32")
        first = restore(scored, image, which="auto")
        bias = scored.output_scorer.output_bias
        bias.assign(np.array([30.0, -30.0, -30.0], "float32"))  # now output 0 wins everywhere
        second = restore(scored, image, which="auto")
        print(float(np.abs(second - restore(scored, image, which=0)).max()),
              float(np.abs(first - second).max()))
    """, backend="jax")
    to_output_0, changed = map(float, out.split())
    assert to_output_0 < 1e-5 and changed > 1e-4
