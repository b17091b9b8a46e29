"""`mhdeblur train`: run folders, atomic checkpoints, exact resume, refusals with clear messages."""

import json
import os
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from helpers import REPO_ROOT
from keras_mhdeblur.cli import main
from keras_mhdeblur.saving import load_model

TINY = ["--synthetic", "--width", "8", "--override", "enc_blocks=1,1", "--override",
        "dec_blocks=1,1", "--crop", "32", "--batch", "2", "--heads", "2", "--no-jit-compile"]


def _weights(path):
    return load_model(path, compile=False).get_weights()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 6-step run twice: straight through, and stopped at step 3 then resumed."""
    root = tmp_path_factory.mktemp("runs")
    common = TINY + ["--steps", "6", "--checkpoint-every", "3", "--val-every", "3",
                     "--val-synthetic", "2", "--keep", "1"]
    assert main(["train", "--out", str(root / "straight")] + common) == 0
    assert main(["train", "--out", str(root / "split")] + common + ["--stop-at", "3"]) == 0
    split = root / "split"
    stopped = {"model": (split / "model.keras").exists(),
               "checkpoints": [p.name for p in (split / "checkpoints").iterdir()]}
    # Resuming needs no flags: the run's settings come from its config.json.
    assert main(["train", "--out", str(split), "--resume"]) == 0
    return root, stopped


def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(runs):
    root, stopped = runs
    split = root / "split"
    assert stopped == {"model": False, "checkpoints": ["step-0000003.keras"]}
    straight, resumed = _weights(root / "straight" / "model.keras"), _weights(
        split / "model.keras")
    for expected, actual in zip(straight, resumed):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-7)

    state = json.loads((split / "state.json").read_text())
    assert state["finished"] and state["step"] == 6
    assert state["checkpoints"] == ["step-0000006.keras"]  # --keep 1
    assert [record["step"] for record in state["validation"]] == [3, 6]
    assert state["best"]["best_overall_psnr"] == max(
        record["best_overall_psnr"] for record in state["validation"])
    assert (split / "best.keras").exists() and (split / "logs" / "metrics.csv").exists()
    config = json.loads((split / "config.json").read_text())
    assert config["heads"] == 2 and config["overrides"]["enc_blocks"] == [1, 1]
    model = load_model(split / "checkpoints" / "step-0000006.keras")
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6


def test_pydataset_pipeline_trains_on_the_same_pairs_and_resumes_exactly(runs, tmp_path):
    """--pipeline pydataset (what a machine without TensorFlow uses) in worker processes,
    stopped and resumed, ends where the tf.data run ended; the flag is not part of the run."""
    root, _ = runs
    run = tmp_path / "pydataset"
    common = TINY + ["--steps", "6", "--checkpoint-every", "3", "--val-every", "3",
                     "--val-synthetic", "2", "--keep", "1"]
    flags = ["--pipeline", "pydataset", "--data-workers", "2"]
    assert main(["train", "--out", str(run)] + common + flags + ["--stop-at", "3"]) == 0
    assert main(["train", "--out", str(run), "--resume"] + flags) == 0
    for expected, actual in zip(_weights(root / "straight" / "model.keras"),
                                _weights(run / "model.keras")):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    config = json.loads((run / "config.json").read_text())
    assert "pipeline" not in config and "data_workers" not in config


def test_pipeline_choice_is_checked():
    from keras_mhdeblur.training import TrainConfig, resolve_pipeline, training_data

    assert resolve_pipeline("auto") == "tf.data"  # TensorFlow is installed here
    with pytest.raises(ValueError, match="pipeline must be one of auto, tf.data, pydataset"):
        resolve_pipeline("torch")
    config = TrainConfig(synthetic=True, crop=16, batch=2, steps=2)
    with pytest.raises(ValueError, match="across processes reads its batches with tf.data"):
        training_data(config, shard=(0, 2), pipeline="pydataset")
    expected = list(training_data(config, start_step=1, pipeline="tf.data").take(3))
    for workers in (1, 2):
        stream = training_data(config, start_step=1, pipeline="pydataset", workers=workers)
        for index in (0, 2, 1):  # asked in any order: batch i is step 1 + i
            np.testing.assert_array_equal(stream[index][0], expected[index][0].numpy())
        stream.close()


def test_refusals_name_the_problem(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)

    assert main(["train", "--out", str(run), "--steps", "2"] + TINY) == 1
    assert "already holds a training run; pass --resume" in capsys.readouterr().err

    assert main(["train", "--out", str(run), "--resume", "--heads", "3", "--width", "16"]) == 1
    error = capsys.readouterr().err
    assert "heads: run has 2, now given 3" in error and "width: run has 8, now given 16" in error

    # A checkpoint from another architecture (here: config.json edited by hand).
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "heads": 3}))
    assert main(["train", "--out", str(run), "--resume"]) == 1
    error = capsys.readouterr().err
    assert "step-0000006.keras: checkpoint does not match" in error and "heads=2" in error

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(other), "--steps", "2"] + TINY) == 1
    assert "folder is not empty" in capsys.readouterr().err

    assert main(["train", "--out", str(tmp_path / "new"), "--steps", "2"]) == 1
    assert "--data DIR (paired folders) or --synthetic" in capsys.readouterr().err

    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 1
    assert "no run to resume" in capsys.readouterr().err


def test_ctrl_c_says_where_to_resume(runs, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("keras_mhdeblur.training.train", interrupted)
    run = runs[0] / "split"
    assert main(["train", "--out", str(run), "--resume"]) == 130
    error = capsys.readouterr().err
    assert f"the last checkpoint is {run / 'checkpoints' / 'step-0000006.keras'} (step 6)" in error
    assert f"mhdeblur train --out {run} --resume" in error


def test_config_file_with_flags_overriding(tmp_path, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text("model: nafnet-w32\nheads: 3\nwidth: 8\nsynthetic: true\ncrop: 32\n"
                        "batch: 2\nsteps: 2\ncheckpoint-every: 2\njit_compile: false\n"
                        "overrides: {enc_blocks: [1], dec_blocks: [1]}\n")
    run = tmp_path / "run"
    assert main(["train", "--config", str(settings), "--out", str(run), "--heads", "2",
                 "--no-combine"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["heads"], config["combine_heads"], config["crop"]) == (2, False, 32)
    assert load_model(run / "model.keras").num_outputs == 2
    capsys.readouterr()

    settings.write_text("heads: 2\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(settings), "--out", str(tmp_path / "x")]) == 1
    assert "unknown setting(s) learning_rate" in capsys.readouterr().err


def _train_process(run, steps):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "keras_mhdeblur", "train", "--out", str(run),
               "--steps", str(steps), "--checkpoint-every", "2", "--keep", "2"] + TINY
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO_ROOT)


def _wait_for_checkpoints(process, run, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step-*.keras")):
            time.sleep(1.0)  # let it get into the next checkpoints
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early:\n{process.stderr.read()[-3000:]}")
        time.sleep(0.2)
    process.kill()
    pytest.fail("no checkpoint was written in time")


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    process = _train_process(run, steps=100_000)
    _wait_for_checkpoints(process, run)
    process.kill()  # SIGKILL: no handler runs, possibly in the middle of writing a checkpoint
    process.communicate(timeout=60)
    (step, last), *_ = sorted(((int(p.stem[5:]), p) for p in (run / "checkpoints").glob(
        "step-*.keras")), reverse=True)
    assert load_model(last).optimizer.iterations.numpy() == step  # intact after the kill
    assert main(["train", "--out", str(run), "--resume", "--stop-at", str(step + 2)]) == 0
    assert f"resuming {run} from step {step}" in capsys.readouterr().out
    names = [p.name for p in (run / "checkpoints").iterdir()]
    assert f"step-{step + 2:07d}.keras" in names
    assert not [name for name in names if name.startswith(".")]  # leftovers removed


JAX_TRAIN = """
import collections, json, sys
import jax
events = collections.Counter()
jax.monitoring.register_event_listener(lambda event, **kwargs: events.update([event]))
from keras_mhdeblur.cli import main
code = main(ARGV)
print(json.dumps({"code": code, "hits": events["/jax/compilation_cache/cache_hits"]}))
"""


@pytest.mark.slow
def test_resumed_jax_run_loads_its_compiled_train_step(tmp_path):
    """On JAX the run folder keeps compiled programs: a resumed run (a new process) loads the
    train step from compile_cache/ instead of compiling it again."""
    from helpers import run_python

    out = tmp_path / "jax-run"
    args = [a for a in TINY if a != "--no-jit-compile"]
    args += ["--out", str(out), "--steps", "4", "--checkpoint-every", "2", "--val-every", "4",
             "--val-synthetic", "2"]
    first = json.loads(run_python(f"ARGV = {['train', *args, '--stop-at', '2']!r}\n" + JAX_TRAIN,
                                  backend="jax").strip().splitlines()[-1])
    assert first["code"] == 0 and any((out / "compile_cache").iterdir())
    resumed = json.loads(run_python(f"ARGV = {['train', '--out', str(out), '--resume']!r}\n" +
                                    JAX_TRAIN, backend="jax").strip().splitlines()[-1])
    assert resumed["code"] == 0
    assert resumed["hits"] > first["hits"], (first, resumed)


def test_synthetic_blur_settings_come_from_the_config_file_and_are_checked(tmp_path, capsys):
    settings = tmp_path / "run.yaml"
    settings.write_text("width: 8\nsynthetic: true\ncrop: 32\nbatch: 2\nsteps: 1\nheads: 2\n"
                        "checkpoint-every: 1\njit_compile: false\nsource: 'builtin:train'\n"
                        "overrides: {enc_blocks: [1], dec_blocks: [1]}\n"
                        "synthetic-blur: {blur_pixels: [2, 12], jpeg_quality: [80, 90], "
                        "highlight_gain: [1, 2], blur_length_scale: log}\n"
                        "source-options: {dead_leaves_count: 5}\n")
    from keras_mhdeblur.cli import build_parser
    from keras_mhdeblur.commands.train import resolve
    from keras_mhdeblur.training import synthetic_stream

    args = build_parser().parse_args(["train", "--config", str(settings), "--out",
                                      str(tmp_path / "run")])
    config, _ = resolve(args)  # the settings `mhdeblur train` would run with
    assert config.synthetic_blur["blur_pixels"] == [2, 12]
    stream = synthetic_stream(config)
    assert stream.settings.blur_pixels == (2, 12) and stream.settings.jpeg_quality == (80, 90)
    assert stream.settings.blur_length_scale == "log" and stream.source.dead_leaves_count == 5
    assert stream.source.photo_paths and all(  # builtin:train keeps the held-out photos out
        path.name not in ("chelsea.png", "coffee.png") for path in stream.source.photo_paths)
    for bad, message in (("{blur_length: 3}", "synthetic_blur: unknown setting(s) blur_length"),
                         ("{highlight_gain: 0.5}", "synthetic_blur: highlight_gain must be >= 1"),
                         ("{blur_length_scale: cubic}", "blur_length_scale must be one of"),
                         ("{}\nsource-options: {pool: 3}",
                          "source_options: unknown option(s) pool for a builtin source")):
        settings.write_text(f"synthetic: true\nsynthetic-blur: {bad}\n")
        assert main(["train", "--config", str(settings), "--out", str(tmp_path / "x")]) == 1
        assert message in capsys.readouterr().err


def test_init_from_fine_tunes_a_model_with_its_architecture(tmp_path, capsys):
    from keras_mhdeblur.training import TrainConfig, architecture_of, build_training_model

    from keras_mhdeblur.models import build_model
    from keras_mhdeblur.saving import save_model

    keras.utils.set_random_seed(7)
    source_file = tmp_path / "source.keras"
    save_model(build_model("nafnet-w32", heads=2, width=8, enc_blocks=[1, 1],
                           dec_blocks=[1, 1]), source_file)
    source = load_model(source_file, compile=False)
    architecture = architecture_of(source)
    assert architecture == {"model": "nafnet-w32", "heads": 2, "combine_heads": True, "width": 8,
                            "overrides": {"enc_blocks": [1, 1], "dec_blocks": [1, 1]}}
    # No architecture flags: they come from the source, and training starts from its weights.
    tuned = tmp_path / "tuned"
    assert main(["train", "--out", str(tuned), "--init-from", str(source_file),
                 "--synthetic", "--crop", "32", "--batch", "2", "--steps", "1",
                 "--checkpoint-every", "1", "--no-jit-compile"]) == 0
    config = TrainConfig.from_dict(json.loads((tuned / "config.json").read_text()))
    assert (config.width, config.heads) == (8, 2)
    start = build_training_model(config)
    for started, original in zip(start.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(started, original)
    fresh = build_training_model(TrainConfig(**{**config.__dict__, "init_from": None}))
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), source.get_weights()))
    # A checkpoint of an annealed run carries its schedule's step: the weights come over, the
    # step does not (the new run anneals from its own step 0).
    annealed = build_model("nafnet-w32", heads=2, width=8, enc_blocks=[1, 1], dec_blocks=[1, 1],
                           schedule_step=True)
    for target, value in zip([w for w in annealed.weights if w is not annealed.loss_step],
                             source.weights):
        target.assign(value)
    annealed.loss_step.assign(500)
    save_model(annealed, tmp_path / "annealed.keras")
    tuned_annealed = build_training_model(TrainConfig(**{
        **config.__dict__, "init_from": str(tmp_path / "annealed.keras"), "temperature": 2.0}))
    assert int(tuned_annealed.loss_step.numpy()) == 0
    for started, original in zip([w for w in tuned_annealed.weights
                                  if w is not tuned_annealed.loss_step], source.weights):
        np.testing.assert_array_equal(np.asarray(started), np.asarray(original))
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "bad"), "--init-from", str(source_file),
                 "--synthetic", "--width", "16"]) == 1
    assert "fixes the architecture; drop width=16 (it has 8)" in capsys.readouterr().err
    # A recipe may spell out what the model has, defaults included; only a different value is
    # a conflict.
    from keras_mhdeblur.cli import build_parser
    from keras_mhdeblur.commands import CommandError
    from keras_mhdeblur.commands.train import resolve

    def resolved(*extra):
        return resolve(build_parser().parse_args([
            "train", "--out", str(tmp_path / "r"), "--init-from", str(source_file),
            "--synthetic", *extra]))[0]

    agreeing = resolved("--width", "8", "--override", "middle_blocks=1",  # the default
                        "--override", "dec_blocks=[1,1]")
    assert agreeing.width == 8 and agreeing.overrides == {"enc_blocks": [1, 1],
                                                          "dec_blocks": [1, 1]}
    with pytest.raises(CommandError, match=r"drop overrides \{'enc_blocks': \[1\]\} \(it has "
                                           r"\{'enc_blocks': \[1, 1\]\}\)"):
        resolved("--override", "enc_blocks=[1]")
    # More blocks per level than the source: the run grows it, starting from what it computes.
    deeper = resolved("--override", "middle_blocks=2", "--override", "enc_blocks=1,3",
                      "--crop", "32", "--no-jit-compile")
    assert deeper.overrides == {"enc_blocks": [1, 3], "dec_blocks": [1, 1], "middle_blocks": 2}
    images = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(build_training_model(deeper)(images)),
                               np.asarray(source(images)), atol=1e-5)
    # A single-head model has nothing to combine: a twin's next stage, started from it with the
    # multi-head recipe and --heads 1 with or without --no-combine, agrees with it.
    save_model(build_model("nafnet-w32", heads=1, combine_heads=False, width=8,
                           enc_blocks=[1, 1], dec_blocks=[1, 1]), source_file)
    for extra in ((), ("--no-combine",)):
        single = resolved("--heads", "1", *extra)
        assert single.heads == 1
    # ... and grows into K heads: output 0 starts as the single head, the others as
    # perturbed copies, so that winner-takes-all can pull them apart.
    grown = resolved("--heads", "4")
    assert (grown.heads, grown.combine_heads) == (4, True)
    assert resolved("--heads", "2", "--no-combine").combine_heads is False
    single_model = load_model(source_file, compile=False)
    grown = TrainConfig(**{**grown.__dict__, "steps": 1, "crop": 16, "batch": 2})
    started = build_training_model(grown)
    image = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype("float32")
    outputs = keras.ops.convert_to_numpy(started(image))
    np.testing.assert_allclose(outputs[:, 0], keras.ops.convert_to_numpy(single_model(image)),
                               atol=1e-6)
    assert outputs.shape[1] == 10 and not np.allclose(outputs[:, 2], outputs[:, 0], atol=1e-6)
    np.testing.assert_allclose(outputs[:, 2], outputs[:, 0], atol=0.05)  # a small perturbation
