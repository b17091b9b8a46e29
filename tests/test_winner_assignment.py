"""The winner-assignment options in models and runs: the step an annealing schedule reads, on
TF and JAX, per stage, under mixed precision, through save/load and an exact resume."""

import json

import keras
import numpy as np
import pytest

import keras_mhdeblur
from helpers import TINY_NAFNET_ONE_LEVEL, blurred_pairs, run_python
from keras_mhdeblur.cli import main
from keras_mhdeblur.losses import MinOverHeads
from keras_mhdeblur.saving import load_model

TINY = TINY_NAFNET_ONE_LEVEL


def test_annealing_step_follows_the_optimiser_and_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY)
    official_weights = len(model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=MinOverHeads("psnr", temperature=2.0, anneal_steps=6))
    assert len(model.weights) == official_weights + 1  # the step, added by compile only
    blurry, sharp = blurred_pairs()
    model.fit(blurry, sharp, batch_size=4, epochs=2, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.loss_step)) == 4
    model.evaluate(blurry, sharp, batch_size=4, verbose=0)  # evaluation does not count
    assert int(keras.ops.convert_to_numpy(model.loss_step)) == 4
    model.save(tmp_path / "annealed.keras")
    loaded = keras.models.load_model(tmp_path / "annealed.keras")
    assert int(keras.ops.convert_to_numpy(loaded.loss_step)) == 4
    assert loaded.restoration_loss.anneal_steps == 6
    for_inference = keras.models.load_model(tmp_path / "annealed.keras", compile=False)
    assert int(keras.ops.convert_to_numpy(for_inference.loss_step)) == 4
    loaded.fit(blurry, sharp, batch_size=4, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(loaded.loss_step)) == int(
        keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 6


def test_every_stage_and_mixed_precision_train_with_the_options():
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_mhdeblur.HINetMH(heads=2, width=8, depth=2, hin_position_left=1,
                                       hin_position_right=2)
    finally:
        keras.config.set_dtype_policy(previous)
    loss = MinOverHeads("psnr", weight=0.5, relaxation=0.1)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss)
    blurry, sharp = blurred_pairs()
    history = model.fit(blurry, sharp, batch_size=4, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]
    # both stages contribute: the loss is the sum of the relaxed loss of each
    outputs = model(blurry[:4])
    per_stage = [float(loss(sharp[:4], stage)) for stage in model.stage_outputs(outputs)]
    total = float(model.compute_loss(blurry[:4], sharp[:4], outputs, training=False))
    np.testing.assert_allclose(total, sum(per_stage), rtol=1e-4)


# Slow (-m slow): the JAX fit of test_training.py keeps JAX in the default run.
@pytest.mark.slow
def test_annealed_fit_on_jax_counts_steps_inside_the_compiled_step():
    out = run_python("""
        import keras, numpy as np, keras_mhdeblur
        from keras_mhdeblur.losses import MinOverHeads
        keras.utils.set_random_seed(0)
        model = keras_mhdeblur.NAFNetMH(heads=2, width=8, enc_blocks=(1,), dec_blocks=(1,))
        loss = MinOverHeads("psnr", temperature=2.0, anneal_steps=4)
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss)
        rng = np.random.default_rng(0)
        sharp = rng.uniform(0.2, 0.8, size=(8, 16, 16, 3)).astype("float32")
        blurry = (sharp + np.roll(sharp, 1, axis=2)) / 2
        losses = model.fit(blurry, sharp, batch_size=4, epochs=4, verbose=0).history["loss"]
        # past step 4 the temperature is 0: the training loss is the official one
        official = float(MinOverHeads("psnr")(sharp, model(blurry)))
        annealed = float(model.compute_loss(blurry, sharp, model(blurry), training=False))
        print(int(model.loss_step.value), losses[0], losses[-1], official, annealed)
    """, backend="jax")
    step, first, last, official, annealed = out.split()
    assert int(step) == 8 and float(last) < float(first)
    np.testing.assert_allclose(float(annealed), float(official), rtol=1e-5)


TINY_RUN = ["--synthetic", "--width", "8", "--override", "enc_blocks=[1]", "--override",
            "dec_blocks=[1]", "--crop", "16", "--batch", "2", "--heads", "2", "--no-jit-compile",
            "--steps", "6", "--checkpoint-every", "3", "--val-every", "6", "--keep", "1",
            "--temperature", "3", "--anneal-steps", "4"]


def test_a_resumed_annealed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    assert main(["train", "--out", str(tmp_path / "straight")] + TINY_RUN) == 0
    assert main(["train", "--out", str(tmp_path / "split")] + TINY_RUN + ["--stop-at", "3"]) == 0
    assert main(["train", "--out", str(tmp_path / "split"), "--resume"]) == 0
    straight = load_model(tmp_path / "straight" / "model.keras")
    resumed = load_model(tmp_path / "split" / "model.keras")
    for expected, actual in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-7)
    assert int(keras.ops.convert_to_numpy(resumed.loss_step)) == 6
    assert resumed.restoration_loss.temperature == 3.0
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert (config["temperature"], config["anneal_steps"], config["relaxation"]) == (3, 4, 0.0)


def test_bad_assignment_flags_are_refused(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "both")] + TINY_RUN + ["--relaxation", "0.1"])
    assert code != 0 and "not both" in capsys.readouterr().err
    code = main(["train", "--out", str(tmp_path / "eps"), "--synthetic", "--relaxation", "1.5"])
    assert code != 0 and "relaxation must be in [0, 1)" in capsys.readouterr().err


def test_recommended_heads_is_one_flag_and_the_others_override_it(tmp_path):
    from keras_mhdeblur.cli import build_parser
    from keras_mhdeblur.commands.train import resolve
    from keras_mhdeblur.training import RECOMMENDED_HEADS

    def config_of(*flags):
        args = build_parser().parse_args(["train", "--out", str(tmp_path), "--synthetic", *flags])
        return resolve(args)[0]

    assert config_of().temperature == 0 and config_of().relaxation == 0  # official by default
    assert config_of("--recommended-heads").temperature == RECOMMENDED_HEADS["temperature"]
    assert config_of("--recommended-heads", "--temperature", "4").temperature == 4
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("recommended-heads: true\nsteps: 10\n")
    config = config_of("--config", str(recipe))
    assert config.temperature == RECOMMENDED_HEADS["temperature"] and config.steps == 10


def test_an_anchor_is_a_flag_recorded_in_the_run_and_needs_several_heads(tmp_path, capsys):
    from keras_mhdeblur.training import TrainConfig, training_loss

    flags = TINY_RUN[:TINY_RUN.index("--temperature")]
    assert main(["train", "--out", str(tmp_path / "anchored")] + flags + ["--anchor", "1"]) == 0
    config = json.loads((tmp_path / "anchored" / "config.json").read_text())
    assert config["anchor"] == 1.0
    model = load_model(tmp_path / "anchored" / "model.keras")
    assert model.restoration_loss.anchor == 1.0
    assert training_loss(model, TrainConfig.from_dict(config)).anchor == 1.0
    # an old run folder, written before the option existed, resumes as unanchored
    del config["anchor"]
    assert TrainConfig.from_dict(config).anchor == 0.0
    code = main(["train", "--out", str(tmp_path / "one")] + flags + ["--heads", "1", "--anchor",
                                                                      "1"])
    assert code != 0 and "anchor needs several heads" in capsys.readouterr().err
    code = main(["train", "--out", str(tmp_path / "minus"), "--synthetic", "--anchor", "-0.5"])
    assert code != 0 and "anchor must be a number >= 0" in capsys.readouterr().err
