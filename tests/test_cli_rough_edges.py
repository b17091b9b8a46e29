"""The rough edges a new user hit with the commands, one test each: start-up, --version, run
folders left by a failed start, log-friendly progress, file modes, flags named in errors."""

import json
import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_mhdeblur
from helpers import REPO_ROOT, TINY_NAFNET
from keras_mhdeblur.cli import build_parser, main
from keras_mhdeblur.data import write_synthetic_set
from keras_mhdeblur.saving import save_model



def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env={**os.environ, **env})


def test_help_and_version_start_without_tensorflow():
    probe = _run("import sys\n"
                 "from keras_mhdeblur.cli import main\n"
                 "for argv in (['--version'], ['--help'], ['train', '--help']):\n"
                 "    try:\n"
                 "        main(argv)\n"
                 "    except SystemExit:\n"
                 "        pass\n"
                 "print('heavy:', sorted(m for m in ('tensorflow', 'keras', 'jax')"
                 " if m in sys.modules))\n")
    assert probe.returncode == 0, probe.stderr
    assert f"mhdeblur {keras_mhdeblur.__version__}" in probe.stdout
    assert "heavy: []" in probe.stdout


def test_a_command_prints_no_tensorflow_start_up_lines():
    result = _run("import sys\nfrom keras_mhdeblur.cli import main\nsys.exit(main(['presets']))")
    assert result.returncode == 0, result.stderr
    assert "nafnet-w16-mh4" in result.stdout
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr, result.stderr


def test_the_default_output_folders_are_ignored_by_git():
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    subcommands = build_parser()._subparsers._group_actions[0].choices
    for command in ("demo", "deblur"):
        default = subcommands[command].get_default("out")
        assert f"/{default}/" in ignored, (command, default)


TRAIN = ["--synthetic", "--width", "8", "--override", "enc_blocks=1,1", "--override",
         "dec_blocks=1,1", "--override", "middle_blocks=1", "--crop", "32", "--batch", "2",
         "--heads", "2", "--no-jit-compile", "--steps", "1"]


def test_a_failed_start_leaves_a_reusable_folder_and_the_config_names_the_width(
        tmp_path, capsys):
    out = tmp_path / "run"
    missing = ["--data", str(tmp_path / "missing")] + [a for a in TRAIN if a != "--synthetic"]
    assert main(["train", "--out", str(out)] + missing) == 1
    assert "missing" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()  # nothing written before the data was found
    (out / "config.json").parent.mkdir(parents=True, exist_ok=True)
    # A folder an older version left behind (config.json, no checkpoint) is reused too, also
    # through --resume, which starts afresh instead of repeating the old error.
    stale = {"model": "nafnet-w32", "data": str(tmp_path / "missing"), "steps": 1}
    (out / "config.json").write_text(json.dumps(stale))
    (out / "checkpoints").mkdir()
    config = tmp_path / "small.yaml"
    config.write_text("width: 12\n")
    assert main(["train", "--out", str(out), "--resume", "--config", str(config)] + TRAIN) == 0
    printed = capsys.readouterr().out
    assert "starting the run afresh" in printed
    assert "\r" not in printed  # not a terminal: one line per interval, no redrawn bar
    stored = json.loads((out / "config.json").read_text())
    assert stored["model"] == "nafnet-w32" and stored["width"] == 8  # the flag wins
    assert stored["architecture"].startswith("nafnet-w32 with ")
    assert "width=8" in stored["architecture"] and "K=2 + combination" in stored["architecture"]
    assert (out / "model.keras").exists()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rough")
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY_NAFNET)
    save_model(model, root / "model.keras")
    write_synthetic_set(root / "data", 3, size=(32, 32), seed=5, workers=1)
    return root


def test_evaluate_skips_unpaired_images_with_the_flag_its_error_names(tiny_files, capsys):
    data = tiny_files / "data"
    extra = data / "input" / "stray.png"
    extra.write_bytes((data / "input" / "000000.png").read_bytes())
    try:
        assert main(["evaluate", str(tiny_files / "model.keras"), "--data", str(data),
                     "--no-ssim"]) == 1
        assert "--allow-unpaired" in capsys.readouterr().err
        assert main(["evaluate", str(tiny_files / "model.keras"), "--data", str(data),
                     "--no-ssim", "--allow-unpaired"]) == 0
    finally:
        extra.unlink()
    printed = capsys.readouterr().out
    # The progress line ends on the mean that the table reports, not the last image's value.
    progress = [line for line in printed.splitlines() if line.startswith("evaluated: 3/3")]
    assert progress, printed
    mean = float(progress[-1].rsplit(" ", 1)[1])
    best_overall = [line for line in printed.splitlines() if "best overall" in line.lower()]
    assert best_overall and f"{mean:.3f}" in best_overall[0], printed


def test_written_files_get_the_users_umask(tiny_files, tmp_path):
    previous = os.umask(0o022)
    try:
        assert main(["deblur", str(tiny_files / "data" / "input"), "--model",
                     str(tiny_files / "model.keras"), "--out", str(tmp_path / "out"),
                     "--output", "0", "--sheet"]) == 0
        assert main(["make-synthetic", str(tmp_path / "pairs"), "--count", "1", "--size",
                     "16"]) == 0
    finally:
        os.umask(previous)
    written = [*(tmp_path / "out").iterdir(), *(tmp_path / "pairs").rglob("*.*")]
    assert len(written) >= 6
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    np.testing.assert_equal(sorted(p.name for p in (tmp_path / "out").iterdir())[:2],
                            ["000000.png", "000000_sheet.png"])


class _Terminal:
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def test_the_terminal_progress_bar_ends_on_the_mean(capsys):
    from keras_mhdeblur.utils.progress import RunningMean

    bar = RunningMean(3, "best_psnr", stream=_Terminal())
    for value in (10.0, 20.0, 33.0):
        bar.add(value)
    shown = capsys.readouterr().out
    assert shown.rstrip().endswith("best_psnr: 21.0000"), shown[-80:]


def test_json_results_take_numpy_numbers_and_infinite_psnr(tmp_path):
    """Every results file goes through utils.files.write_json: NumPy scalars (float32 figures)
    become numbers, an infinite PSNR (an output equal to its reference) null."""
    from keras_mhdeblur.utils.files import write_json

    out = tmp_path / "deep" / "figures.json"
    write_json(out, {"psnr": np.float32(28.5), "count": np.int64(3),
                     "per_pair": [np.float64(np.inf), 30.0], "mean": np.array(2.0)})
    assert json.loads(out.read_text()) == {"psnr": 28.5, "count": 3, "per_pair": [None, 30.0],
                                           "mean": 2.0}
    assert [path.name for path in out.parent.iterdir()] == ["figures.json"]  # no temporary left
