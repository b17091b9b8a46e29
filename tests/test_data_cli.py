"""`mhdeblur make-synthetic` (keras_mhdeblur.commands.make_synthetic) end to end through
`keras_mhdeblur.cli.main`."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_mhdeblur.cli import main
from keras_mhdeblur.data import find_pairs


def make(out_dir, *flags):
    return main(["make-synthetic", str(out_dir), "--size", "24x32", "--workers", "2", *flags])


def test_make_synthetic_writes_a_flat_dataset_reproducibly(tmp_path, capsys):
    assert make(tmp_path / "set", "--count", "3", "--seed", "2") == 0
    assert "wrote 3 pairs of 24x32" in capsys.readouterr().out
    pairs = find_pairs(tmp_path / "set")
    assert pairs.layout == "flat" and pairs.names == ["000000.png", "000001.png", "000002.png"]
    assert np.asarray(Image.open(pairs[0].blurry)).shape == (24, 32, 3)
    record = json.loads((tmp_path / "set" / "synthetic.json").read_text())
    assert record["seed"] == 2 and record["label"] == "middle" and record["size"] == [24, 32]
    assert not list((tmp_path / "set").rglob("*.tmp"))
    assert make(tmp_path / "again", "--count", "3", "--seed", "2") == 0
    for name in pairs.names:
        for folder in ("input", "target"):
            assert (tmp_path / "set" / folder / name).read_bytes() == (tmp_path / "again" / folder / name).read_bytes()


def test_make_synthetic_refuses_a_non_empty_folder_without_overwrite(tmp_path, capsys):
    assert make(tmp_path, "--count", "3") == 0
    capsys.readouterr()
    assert make(tmp_path, "--count", "2", "--label", "random") == 1
    assert "not empty" in capsys.readouterr().err
    assert make(tmp_path, "--count", "2", "--label", "random", "--overwrite") == 0
    assert find_pairs(tmp_path).names == ["000000.png", "000001.png"]  # the stale third pair is gone


def test_make_synthetic_from_a_source_folder_and_bad_sources(tmp_path, capsys):
    source = tmp_path / "sharp"
    source.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(source / "a.png")
    assert make(tmp_path / "out", "--count", "2", "--source", str(source)) == 0
    assert len(find_pairs(tmp_path / "out")) == 2
    (source / "a.png").unlink()
    assert make(tmp_path / "out2", "--count", "2", "--source", str(source)) == 1
    assert "no images found" in capsys.readouterr().err


def test_make_synthetic_rejects_bad_arguments(tmp_path, capsys):
    cases = [(["--count", "0"], "--count"),
             (["--count", "2", "--size", "axb"], "expected HEIGHTxWIDTH"),
             (["--count", "2", "--label", "first"], "invalid choice")]
    for flags, message in cases:
        with pytest.raises(SystemExit) as raised:
            main(["make-synthetic", str(tmp_path / "out"), *flags])
        assert raised.value.code == 2
        assert message in capsys.readouterr().err, flags
    (tmp_path / "file").write_text("not a folder")
    cases = [([str(tmp_path / "out"), "--source", str(tmp_path / "missing")], "--source"),
             ([str(tmp_path / "file")], "OUT_DIR")]
    for argv, message in cases:
        assert main(["make-synthetic", *argv, "--count", "2"]) == 1
        error = capsys.readouterr().err
        assert error.startswith("mhdeblur make-synthetic: error:") and message in error, argv
    assert not (tmp_path / "out").exists()


def test_make_synthetic_takes_blur_settings_and_names_unknown_ones(tmp_path, capsys):
    from keras_mhdeblur.data import SyntheticPairs
    from keras_mhdeblur.data.io import read_image

    blur = ["--blur", "blur_pixels=[4, 8]", "--blur", "steady_share=1", "--blur", "noise_sigma=0"]
    assert make(tmp_path / "set", "--count", "2", "--seed", "3", *blur) == 0
    record = json.loads((tmp_path / "set" / "synthetic.json").read_text())
    assert record["steady_share"] == 1 and record["blur_pixels"] == [4, 8]
    expected = SyntheticPairs((24, 32), 3, blur_pixels=(4, 8), steady_share=1.0).pair(1)
    written = find_pairs(tmp_path / "set")[1]
    np.testing.assert_allclose(read_image(written.blurry), expected.blurry, atol=0.5 / 255 + 1e-6)
    assert make(tmp_path / "default", "--count", "2", "--seed", "3") == 0
    assert read_image(find_pairs(tmp_path / "default")[1].blurry).tobytes() != \
        read_image(written.blurry).tobytes()
    capsys.readouterr()
    for flags, message in ((["--blur", "shake=1"], "not a blur setting; known:"),
                           (["--blur", "steady_share=2"], "steady_share must be in [0, 1]"),
                           (["--blur", "steady_share"], "expected KEY=VALUE")):
        assert make(tmp_path / "bad", "--count", "1", *flags) == 1
        error = capsys.readouterr().err
        assert error.startswith("mhdeblur make-synthetic: error: --blur") and message in error
    assert not (tmp_path / "bad").exists()
