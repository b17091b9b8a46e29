"""`mhdeblur demo --quick` end to end, and the quickstart example."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO_ROOT
from keras_mhdeblur.cli import main
from keras_mhdeblur.saving import load_model


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("input (blurry)", "single head", "multi-head output 9: head 3",
                "multi-head best overall (oracle)", "multi-head selected output",
                "multi-head auto (scoring branch, no oracle)", "annealed winner-takes-all",
                "the official PSNR loss is -PSNR in dB"):
        assert row in printed
    # The shipped preset comes first: held-out pairs with the input row, a real photo, 1:1 sheet.
    assert printed.index("a trained preset, out of the box") < printed.index("training the single")
    assert "shipped output:" in printed and "real blurry photo clock_motion.png" in printed
    results = json.loads((out / "results.json").read_text())
    preset = results["preset"]
    assert preset["held_out"]["pairs"] == 2 and preset["photos"][0]["width"] == 400
    assert (out / "preset_sheet.png").stat().st_size > 0
    # What `mhdeblur deblur` does with the real photo: the router's choice, shown in the sheet
    # beside the default's output (input | default | long preset: three 400-px panels).
    assert "deblurs it with nafnet-w16-mh4-long" in printed
    from keras_mhdeblur.data.io import read_image
    assert read_image(out / "preset_sheet.png").shape[1] >= 3 * 400
    # It names the other shipped presets, e.g. the one for long smears, and how to use them.
    assert "also shipped: nafnet-w16-mh4-long" in printed
    assert results["multi_head"]["num_outputs"] == 10 and results["single_head"]["num_outputs"] == 1
    assert sum(results["multi_head"]["wins_psnr"]) == results["multi_head"]["num_images"]
    multi = load_model(out / "multi_head.keras", compile=False)
    assert multi.selected_output == results["selected_output"]
    assert multi.output_scorer is not None and "auto_psnr" in results["multi_head"]
    assert results["multi_head_config"]["temperature"] > 0  # the recommended recipe
    assert load_model(out / "single_head.keras", compile=False).single_output
    assert (out / "sheet.png").stat().st_size > 0
    assert (out / "runs" / "multi-head" / "model.keras").exists()
    if "tflite" in results:
        assert (out / "multi_head.tflite").exists()

    assert main(["demo", "--quick", "--out", str(out)]) == 1
    assert "folder is not empty" in capsys.readouterr().err


@pytest.mark.slow  # 20-25 s; the demo test above runs the same API end to end
def test_quickstart_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "quickstart.py"), "--steps", "3",
         "--out", str(tmp_path / "quick.keras")], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best overall (oracle)" in result.stdout
    assert "all outputs: (10, 64, 64, 3)" in result.stdout
    assert load_model(tmp_path / "quick.keras", compile=False).selected_output is not None
