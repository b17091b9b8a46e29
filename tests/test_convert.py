"""Official configs and PyTorch weight import: errors, YAML options, single-head checkpoints."""

import numpy as np
import pytest

import keras_mhdeblur
from helpers import load_fixture
from keras_mhdeblur.convert import WeightImportError, official_parameter_map


def test_every_official_parameter_has_a_place_and_back():
    metadata, state_dict, _, _ = load_fixture("nafnet_mh_w8_k4_comb")
    model = keras_mhdeblur.from_official_config(metadata["official_class"],
                                                **metadata["constructor_kwargs"])
    assert set(official_parameter_map(model)) == set(state_dict)


def test_import_errors_list_missing_unexpected_and_mis_shaped_keys():
    metadata, state_dict, _, _ = load_fixture("nafnet_mh_w8_k4_comb")
    model = keras_mhdeblur.from_official_config(metadata["official_class"],
                                                **metadata["constructor_kwargs"])
    broken = dict(state_dict)
    del broken["intro.bias"]
    broken["extra.weight"] = np.zeros(3)
    broken["downs.0.weight"] = np.zeros((1, 2, 3, 4))
    with pytest.raises(WeightImportError) as error:
        keras_mhdeblur.load_torch_weights(model, broken)
    message = str(error.value)
    assert "missing (1):\n    intro.bias" in message
    assert "unexpected (1):\n    extra.weight" in message
    assert "mis-shaped (1):\n    downs.0.weight" in message


def test_checkpoint_wrappers_and_ddp_prefixes_are_accepted():
    metadata, state_dict, inputs, expected = load_fixture("nafnet_single_w8")
    model = keras_mhdeblur.from_official_config(metadata["official_class"],
                                                **metadata["constructor_kwargs"])
    wrapped = {"params": {f"module.{name}": value for name, value in state_dict.items()}}
    keras_mhdeblur.load_torch_weights(model, wrapped)
    np.testing.assert_allclose(np.asarray(model(inputs)), expected["image"], atol=1e-4)


def test_single_head_checkpoint_fine_tunes_into_heads():
    metadata, state_dict, inputs, expected = load_fixture("nafnet_single_w8")
    kwargs = {k: v for k, v in metadata["constructor_kwargs"].items() if k != "img_channel"}
    multi = keras_mhdeblur.from_official_config("MHNAFNet", n_heads=3, combinate_heads=True,
                                                **kwargs)
    with pytest.raises(WeightImportError, match="from_single_head=True"):
        keras_mhdeblur.load_torch_weights(multi, state_dict)
    keras_mhdeblur.load_torch_weights(multi, state_dict, from_single_head=True)
    outputs = np.asarray(multi(inputs))
    np.testing.assert_allclose(outputs[:, 0], expected["image"], atol=1e-4)  # head 0 is exact
    differences = [np.abs(outputs[:, k] - expected["image"]).max() for k in (2, 5)]
    assert all(1e-5 < d < 0.1 for d in differences), differences  # perturbed, but close


def test_official_yaml_options(tmp_path):
    options = tmp_path / "MHNAFNet-width8.yml"
    options.write_text(
        "name: test\nnetwork_g:\n  type: MHNAFNetLocal\n  width: 8\n  enc_blk_nums: [1, 1]\n"
        "  middle_blk_num: 1\n  dec_blk_nums: [1, 1]\n  n_heads: 2\n  combinate_heads: true\n")
    model = keras_mhdeblur.from_official_options(options)
    assert (model.heads, model.num_outputs, model.width) == (2, 3, 8)
    assert model.tlc_train_size == (256, 256)  # the Local default train_size


def test_unknown_official_names_are_refused():
    with pytest.raises(ValueError, match="Unknown official class"):
        keras_mhdeblur.from_official_config("UNet")
    with pytest.raises(ValueError, match="unknown constructor arguments"):
        keras_mhdeblur.from_official_config("NAFNet", widht=8)
    with pytest.raises(ValueError, match="RGB"):
        keras_mhdeblur.from_official_config("NAFNet", img_channel=1)
