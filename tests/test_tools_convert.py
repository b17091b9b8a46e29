"""tools/convert_torch_weights.py end to end on the official fixtures (saved as .npz)."""

import importlib.util
import json

import keras
import numpy as np

from helpers import FIXTURES, REPO_ROOT, load_fixture


def _tool():
    spec = importlib.util.spec_from_file_location(
        "convert_torch_weights", REPO_ROOT / "tools" / "convert_torch_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converts_an_official_checkpoint(tmp_path, capsys):
    metadata, _, inputs, expected = load_fixture("nafnet_mh_w8_k4_comb")
    out = tmp_path / "mh.keras"
    argv = [str(FIXTURES / "nafnet_mh_w8_k4_comb.npz"), str(out), "--class",
            metadata["official_class"], "--kwargs", json.dumps(metadata["constructor_kwargs"])]
    assert _tool().main(argv) == 0
    model = keras.models.load_model(out)
    np.testing.assert_allclose(np.asarray(model(inputs)), expected["heads"], atol=1e-4)
    assert _tool().main(argv) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert _tool().main(argv + ["--overwrite"]) == 0


def test_single_head_checkpoint_into_heads_and_mismatch_errors(tmp_path, capsys):
    metadata, _, inputs, expected = load_fixture("nafnet_single_w8")
    checkpoint = str(FIXTURES / "nafnet_single_w8.npz")
    kwargs = json.dumps(metadata["constructor_kwargs"])
    out = tmp_path / "mh.keras"
    assert _tool().main([checkpoint, str(out), "--class", "NAFNet", "--kwargs", kwargs,
                         "--from-single-head", "--heads", "2"]) == 0
    model = keras.models.load_model(out)
    assert model.num_outputs == 3
    np.testing.assert_allclose(np.asarray(model(inputs))[:, 0], expected["image"], atol=1e-4)
    wrong = json.dumps({**metadata["constructor_kwargs"], "width": 16})
    assert _tool().main([checkpoint, str(tmp_path / "w.keras"), "--class", "NAFNet", "--kwargs",
                         wrong]) == 1
    assert "mis-shaped" in capsys.readouterr().err
    assert not (tmp_path / "w.keras").exists()
