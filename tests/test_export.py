"""SavedModel and TFLite export: every mode converts and verifies, and the files behave like the
Keras model in the interpreter (sizes, heads, layouts, uint8 I/O, TLC), and bad input fails
clearly, through the library, `mhdeblur export` and the tools/ wrappers. A tiny NAFNetMH (width
8, two levels, K=2 combined: K'=3) keeps it fast."""

import importlib.util
import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT, TINY_NAFNET
import keras_mhdeblur
from keras_mhdeblur import NAFNetMH, export
from keras_mhdeblur.cli import main
from keras_mhdeblur.models.surgery import with_tlc

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="export needs the TensorFlow backend")

TINY = dict(heads=2, combine_heads=True, **TINY_NAFNET)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(seed=0, **overrides):
    """The tiny model with NAFBlock beta/gamma moved off their zero init (else every block is the
    identity and quantization has nothing to get wrong)."""
    keras.utils.set_random_seed(seed)
    model = NAFNetMH(**{**TINY, **overrides})
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.path.endswith(("/beta", "/gamma")) and "norm" not in variable.path:
            variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
    return model


def run(path, image):
    return export.run_interpreter(export.make_interpreter(path), image)


def keras_output(model, image):
    return keras.ops.convert_to_numpy(model.final_output(model(image)))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def dynamic_float32(model_file, tmp_path_factory):
    """A float32 export with dynamic H, W made by the tool script's main(argv)."""
    out = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    assert load_tool("export_tflite").main([str(model_file), str(out)]) == 0
    return out


def test_dynamic_size_resizes_to_two_sizes(model, dynamic_float32):
    interpreter = export.make_interpreter(dynamic_float32)
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [1, -1, -1, 3]
    rng = np.random.default_rng(1)
    for size in ((48, 64), (40, 56)):  # 40x56 is padded to 48x64 inside the graph
        image = rng.random((1, *size, 3), dtype=np.float32)
        actual = export.run_interpreter(interpreter, image)
        assert actual.shape == (1, 3, *size, 3)
        np.testing.assert_allclose(actual, keras_output(model, image), atol=2e-4)


@pytest.mark.parametrize("quantize", ["float16", "dynamic", "int8"])
def test_quantized_modes_export_and_verify(model, tmp_path, quantize):
    kwargs = {}
    if quantize == "int8":  # calibrate on a folder of the user's images
        folder = tmp_path / "calibration"
        folder.mkdir()
        for index in range(2):
            pixels = np.random.default_rng(index).integers(0, 256, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
        kwargs = dict(representative=folder, calibration_samples=2)
    result = export.export_tflite(model, tmp_path / "m.tflite", quantize=quantize,
                                  input_size="32x48", **kwargs)
    assert result.verification.passed and len(result.verification.comparisons) == 2
    tolerance = export.default_tolerance(quantize)
    assert all(c.psnr >= tolerance.min_psnr for c in result.verification.comparisons)
    assert result.path.stat().st_size == result.size_bytes
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_selected_head_and_index(model, tmp_path):
    selected = NAFNetMH.from_config({**model.get_config(), "selected_output": 1})
    selected.set_weights(model.get_weights())
    image = np.random.default_rng(2).random((1, 32, 48, 3), dtype=np.float32)
    expected = keras_output(model, image)
    result = export.export_tflite(selected, tmp_path / "selected.tflite", input_size=(32, 48))
    assert result.output_shape == (1, 32, 48, 3)  # the selected head is the default
    np.testing.assert_allclose(run(result.path, image), expected[:, 1], atol=2e-4)
    result = export.export_tflite(model, tmp_path / "index.tflite", output="2",
                                  input_size=(32, 48))
    np.testing.assert_allclose(run(result.path, image), expected[:, 2], atol=2e-4)


def test_layouts_agree(model, tmp_path, dynamic_float32):
    result = export.export_tflite(model, tmp_path / "channels.tflite", layout="channels",
                                  input_size="32x48")
    assert result.output_shape == (1, 32, 48, 9)  # 3 channels x K'=3, head-major
    image = np.random.default_rng(3).random((1, 32, 48, 3), dtype=np.float32)
    heads = run(dynamic_float32, image)
    channels = run(result.path, image).reshape(1, 32, 48, 3, 3).transpose(0, 3, 1, 2, 4)
    np.testing.assert_allclose(channels, heads, atol=1e-6)


def test_uint8_io(model, tmp_path):
    result = export.export_tflite(model, tmp_path / "u8.tflite", uint8_io=True,
                                  layout="channels", input_size="32x48")
    assert result.input_dtype == "uint8" and result.output_shape == (1, 32, 48, 9)
    pixels = np.random.default_rng(4).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    actual = run(result.path, pixels)
    assert actual.dtype == np.uint8
    expected = np.round(np.clip(keras_output(model, pixels / np.float32(255)), 0, 1) * 255)
    expected = expected.transpose(0, 2, 3, 1, 4).reshape(1, 32, 48, 9)
    assert np.abs(actual.astype(int) - expected).max() <= 1


def test_tlc_needs_a_fixed_size_and_matches_keras(model, tmp_path):
    with pytest.raises(export.ExportError, match="--tlc needs a fixed --input-size"):
        export.export_tflite(model, tmp_path / "tlc.tflite", tlc="32x32")
    result = export.export_tflite(model, tmp_path / "tlc.tflite", tlc="32x32",
                                  input_size="48x80")
    tlc_model = with_tlc(model, (32, 32))
    image = np.random.default_rng(5).random((1, 48, 80, 3), dtype=np.float32)
    np.testing.assert_allclose(run(result.path, image), keras_output(tlc_model, image), atol=2e-4)


def test_saved_model_reloads_with_the_same_outputs(model, model_file, tmp_path, capsys):
    import tensorflow as tf

    out = tmp_path / "saved"
    assert main(["export", str(model_file), str(out)]) == 0  # OUT is no .tflite: a SavedModel
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    rng = np.random.default_rng(6)
    for size in ((32, 48), (40, 24)):
        image = rng.random((2, *size, 3), dtype=np.float32)
        actual = serve(image=tf.constant(image))["output"].numpy()
        np.testing.assert_allclose(actual, keras_output(model, image), atol=1e-5)
    tool = load_tool("export_savedmodel")
    assert tool.main([str(model_file), str(out)]) == 1  # exists, no --overwrite
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert tool.main([str(model_file), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no temporary left


def test_mhdeblur_export_writes_a_tflite_file_with_normal_permissions(model, model_file,
                                                                       tmp_path, capsys):
    out = tmp_path / "one.tflite"
    umask = os.umask(0o022)
    try:  # --heads: the old name of --output, still accepted
        assert main(["export", str(model_file), str(out), "--heads", "1",
                     "--input-size", "32x48"]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not the temporary file's private 0o600
    assert "verified in" in capsys.readouterr().out
    image = np.random.default_rng(7).random((1, 32, 48, 3), dtype=np.float32)
    np.testing.assert_allclose(run(out, image), keras_output(model, image)[:, 1], atol=2e-4)
    before = out.read_bytes()
    assert main(["export", str(model_file), str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    strict = tmp_path / "strict.tflite"  # a tolerance no file meets: verification fails
    assert main(["export", str(model_file), str(strict), "--input-size", "32x48",
                 "--min-psnr", "1000"]) == 1
    assert "disagrees with Keras" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tflite"]  # nothing else written


def test_mhdeblur_export_rejects_bad_flags_before_any_work(model, model_file, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(model_file), str(out), "--input-size", "12by4"])
    assert exit_info.value.code == 2 and "--input-size" in capsys.readouterr().err
    assert main(["export", str(model_file), str(tmp_path / "saved"), "--quantize", "int8"]) == 1
    assert "--quantize: only for TFLite files" in capsys.readouterr().err
    assert main(["export", str(model_file), str(out), "--output", "all+auto"]) == 1
    assert "not both" in capsys.readouterr().err
    with pytest.raises(export.ExportError, match="--input-size: expected HEIGHTxWIDTH"):
        export.export_tflite(model, out, input_size="12by4")
    with pytest.raises(export.ExportError, match="--representative: .*not a folder"):
        export.export_tflite(model, out, quantize="int8", representative=tmp_path / "nothing")
    assert not any(tmp_path.iterdir())


def test_the_tools_are_the_command_with_the_format_fixed():
    from keras_mhdeblur.commands import export as command

    assert command.QUANTIZATIONS == export.QUANTIZATIONS and command.LAYOUTS == export.LAYOUTS
    for name in ("export_tflite", "export_savedmodel"):
        done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / f"{name}.py"), "--help"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--overwrite" in done.stdout, done.stderr
        assert ("--quantize" in done.stdout) == (name == "export_tflite")


def test_bad_input_fails_clearly(model_file, dynamic_float32, tmp_path, capsys):
    tool = load_tool("export_tflite")
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    out = str(tmp_path / "out.tflite")
    cases = [
        ([str(tmp_path / "missing.keras"), out], "no such model file"),
        ([str(text), out], "not a model file"),
        ([str(model_file), str(dynamic_float32)], "already exists; pass --overwrite"),
        ([str(model_file), out, "--output", "7"], "has 3 outputs"),
        ([str(model_file), out, "--output", "selected"], "no selected output"),
        ([str(model_file), str(tmp_path)], "exists and is a folder"),
    ]
    for argv, message in cases:
        assert tool.main(argv) == 1, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(model_file), out, "--quantize", "int4"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.parametrize("name, build", [
    ("hinet", lambda: keras_mhdeblur.HINetMH(heads=2, width=8, depth=3, hin_position_left=1,
                                             hin_position_right=2)),
    ("mprnet", lambda: keras_mhdeblur.MPRNetMH(heads=2, width=8, unet_growth=8, orsnet_growth=8,
                                               orb_blocks=1)),
    ("restormer", lambda: keras_mhdeblur.RestormerMH(heads=2, width=8, enc_blocks=(1, 1, 1),
                                                     middle_blocks=1, dec_blocks=(1, 1, 1),
                                                     refinement_blocks=1,
                                                     attention_heads=(1, 2, 2, 4))),
])
def test_every_backbone_exports_and_verifies(name, build, tmp_path):
    """Dynamic-size float32 export of each backbone's final stage, verified in the interpreter
    at two sizes by the export itself; here also checked at an odd size."""
    keras.utils.set_random_seed(0)
    model = build()
    out = tmp_path / f"{name}.tflite"
    result = export.export_tflite(model, out)
    assert out.exists() and result is not None
    image = np.random.default_rng(1).uniform(size=(1, 24, 40, 3)).astype("float32")
    np.testing.assert_allclose(run(out, image), keras_output(model, image), atol=2e-4)
