"""Presets: save/load round trip, `make-preset` from a run, user folders wherever a model file
goes, and clear errors for unknown names and damaged files."""

import json

import keras
import numpy as np
import pytest

import keras_mhdeblur
from helpers import random_images
from keras_mhdeblur.cli import main
from keras_mhdeblur.inference import restore
from keras_mhdeblur.presets import PresetError, from_preset, list_presets, save_preset
from keras_mhdeblur.saving import ModelFileError, load_model

TINY = dict(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, selected_output=1, **TINY)
    folder = save_preset(model, tmp_path_factory.mktemp("presets") / "tiny",
                         {"name": "tiny", "description": "a test"})
    return model, folder


def test_a_preset_folder_loads_with_the_same_outputs(preset):
    model, folder = preset
    image = random_images((1, 24, 40, 3))
    for loaded in (from_preset(folder), keras_mhdeblur.NAFNetMH.from_preset(folder),
                   keras_mhdeblur.from_preset(str(folder)), load_model(folder)):
        assert loaded.selected_output == 1 and loaded.compiled is False
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(image)),
                                      keras.ops.convert_to_numpy(model(image)))
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["name"] == "tiny" and metadata["parameters"] == model.count_params()
    assert metadata["file_bytes"] > 0
    with pytest.raises(PresetError, match="not a HINetMH"):
        keras_mhdeblur.HINetMH.from_preset(folder)


def test_unknown_names_and_damaged_files_say_what_is_wrong(preset, tmp_path):
    _, folder = preset
    with pytest.raises(PresetError, match="no such preset .shipped presets: "):
        from_preset("no-such-preset")
    with pytest.raises(ModelFileError, match="no-such-preset: no such model file"):
        load_model("no-such-preset")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.json", "model.weights.h5", "metadata.json"):
        (damaged / name).write_bytes((folder / name).read_bytes())
    (damaged / "model.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(PresetError, match=r"model.weights.h5: damaged"):
        from_preset(damaged)
    (damaged / "config.json").write_text("{broken")
    with pytest.raises(PresetError, match=r"config.json: damaged, not valid JSON"):
        from_preset(damaged)
    with pytest.raises(PresetError, match="already exists"):
        save_preset(keras_mhdeblur.NAFNetMH(heads=2, **TINY), folder, {"name": "x"})
    for metadata in list_presets():  # whatever ships must describe itself
        assert {"name", "backbone", "parameters", "file_bytes"} <= set(metadata)


def test_make_preset_packs_a_run_and_commands_take_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--synthetic", "--width", "8", "--override",
                 "enc_blocks=[1]", "--override", "dec_blocks=[1]", "--crop", "16", "--batch", "2",
                 "--heads", "2", "--steps", "2", "--checkpoint-every", "2", "--val-every", "2",
                 "--val-synthetic", "2", "--no-jit-compile"]) == 0
    out = tmp_path / "preset"
    assert main(["make-preset", str(run), str(out), "--name", "tiny-run"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["backbone"] == "NAFNetMH" and metadata["heads"] == 2
    assert metadata["training"]["recipe"]["steps"] == 2
    assert metadata["measured"]["validation_best_overall_psnr"] is not None
    best = load_model(run / "best.keras", compile=False)
    image = random_images((16, 16, 3))
    np.testing.assert_array_equal(restore(from_preset(out), image, which="all"),
                                  restore(best, image, which="all"))
    capsys.readouterr()
    assert main(["make-preset", str(run), str(out), "--name", "again"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    photos = tmp_path / "photos"
    photos.mkdir()
    from keras_mhdeblur.data.io import write_png

    write_png(photos / "a.png", image)
    assert main(["deblur", str(out), str(photos / "a.png"), "--out", str(tmp_path / "d")]) == 0
