"""Export to SavedModel and TFLite / LiteRT, verified in the interpreter before it is written.

    model (B, H, W, 3) in [0, 1]
      -> final stage (`model.final_output`) -> all K' outputs, or one (`heads`)
      -> layout "heads" (1, K', H, W, 3) or "channels" (1, H, W, 3K') (head-major, METHOD 2)
      -> optional uint8 I/O: x / 255 in, round(clip(y, 0, 1) * 255) out

The same serving function is traced for the SavedModel (batch and H, W dynamic, input "image",
output "output") and for TFLite (batch 1, H and W dynamic or fixed). TFLite goes through a
temporary SavedModel (the converter freezes its variables) and is restricted to builtin ops, so a
graph that would need TF (Flex) kernels fails at export rather than on the phone.

Every export is verified: the written file runs in the LiteRT interpreter (`ai-edge-litert`, or
`tf.lite.Interpreter` without it) on a random image and a synthetic-blur image, at the fixed size
or, for dynamic sizes, at two sizes (one not a multiple of the padding). The result is compared
with the Keras model through the same serving function, and `ExportVerificationError` is raised
when it is further off than the mode's tolerance:

Tolerances (outputs in [0, 1]; PSNR of the exported output against the Keras output, peak 1).
float32 ("none") must reproduce Keras up to float rounding: max abs error 2e-4 (measured ~1e-6),
or 1 level with uint8 I/O (a value sitting on a rounding boundary may round either way).
Quantized modes are judged by PSNR against Keras, with a margin below what the tiny test NAFNet
and the width-32 benchmark model (random weights, beta/gamma off zero) measure: float16 83-90 dB,
dynamic range 58-72 dB, full int8 42-48 dB. Limits: float16 >= 60 dB (float16 weights are all
it changes; anything lower is a broken conversion), dynamic >= 40 dB and int8 >= 30 dB (weight
and activation rounding, which trained weights with outliers can make worse; 30 dB against the
float model is an error of ~3% rms, still below a typical deblurring gain). A model that
quantizes worse fails loudly; pass `tolerance=` (`--max-error` / `--min-psnr`) to accept it.
"""

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_mhdeblur.models.surgery import rebuilt, with_tlc
from keras_mhdeblur.utils.files import write_folder_atomically

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
LAYOUTS = ("heads", "channels")
#: H x W used to verify dynamic-size exports: a multiple of 16 and a size that needs padding.
VERIFY_SIZES = ((48, 64), (40, 56))
#: Calibration crops for int8 when the export has no fixed input size.
CALIBRATION_SIZE = (128, 128)


class ExportError(ValueError):
    """The export cannot be done as asked: says which argument or file is wrong and why."""


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with the Keras model by more than the tolerance."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


# ---- tolerances and reports -------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """Limits for one export: max abs error (in output units) and/or min PSNR (dB, vs Keras)."""

    max_abs_error: float = None
    min_psnr: float = None

    def accepts(self, max_abs_error, psnr):
        if self.max_abs_error is not None and not max_abs_error <= self.max_abs_error:
            return False
        return self.min_psnr is None or psnr >= self.min_psnr

    def __str__(self):
        parts = []
        if self.max_abs_error is not None:
            parts.append(f"max abs error <= {self.max_abs_error:g}")
        if self.min_psnr is not None:
            parts.append(f"PSNR >= {self.min_psnr:g} dB")
        return " and ".join(parts)


_MIN_PSNR = {"float16": 60.0, "dynamic": 40.0, "int8": 30.0}


def default_tolerance(quantize, uint8_io=False):
    """The tolerance of a quantization mode (see the module doc for why these values)."""
    _check_choice("quantize", quantize, QUANTIZATIONS)
    if quantize == "none":
        return Tolerance(max_abs_error=1.0 if uint8_io else 2e-4)
    return Tolerance(min_psnr=_MIN_PSNR[quantize])


@dataclass
class Comparison:
    """One verification input: exported output vs Keras output."""

    name: str
    input_shape: tuple
    max_abs_error: float
    psnr: float
    passed: bool = True


@dataclass
class VerificationReport:
    """All comparisons of one export; `passed` when every one is within `tolerance`."""

    runtime: str
    tolerance: Tolerance
    comparisons: list = field(default_factory=list)

    @property
    def passed(self):
        return all(c.passed for c in self.comparisons)

    def __str__(self):
        lines = [f"verified in {self.runtime} against Keras (tolerance: {self.tolerance}):"]
        for c in self.comparisons:
            shape = "x".join(str(d) for d in c.input_shape)
            lines.append(f"  {c.name:<10} {shape:<14} max abs error {c.max_abs_error:.3g}  "
                         f"PSNR {c.psnr:6.2f} dB  {'ok' if c.passed else 'FAILED'}")
        return "\n".join(lines)


@dataclass
class ExportResult:
    """What was written: path, size in bytes, input/output shapes (-1: dynamic), verification."""

    path: Path
    size_bytes: int
    input_shape: tuple
    input_dtype: str
    output_shape: tuple
    verification: VerificationReport

    def __str__(self):
        return (f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB): input {self.input_dtype} "
                f"{self.input_shape} -> output {self.output_shape}\n{self.verification}")


def psnr(a, b, peak=1.0):
    """PSNR in dB between two arrays of the same shape (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


# ---- runtime --------------------------------------------------------------------------------
def interpreter_class():
    """(Interpreter class, runtime name): LiteRT's `ai_edge_litert` when installed (the
    `litert` extra), else TensorFlow's bundled `tf.lite.Interpreter`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "LiteRT (ai-edge-litert)"
    except ImportError:
        import tensorflow as tf
        return tf.lite.Interpreter, "tf.lite.Interpreter"


def make_interpreter(model_path=None, model_content=None, num_threads=None):
    """A LiteRT interpreter over a .tflite file or its bytes (XNNPACK, the default CPU path)."""
    interpreter_type, _ = interpreter_class()
    interpreter = interpreter_type(model_path=None if model_path is None else str(model_path),
                                   model_content=model_content, num_threads=num_threads)
    if all(-1 not in entry["shape_signature"] for entry in interpreter.get_input_details()):
        interpreter.allocate_tensors()  # dynamic inputs are allocated once resized
    return interpreter


def run_interpreter(interpreter, image):
    """Runs a single-input, single-output interpreter on `image` (1, H, W, 3), resizing the
    input first when its size differs (dynamic H, W). Returns the output array."""
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    if tuple(entry["shape"]) != image.shape:
        interpreter.resize_tensor_input(entry["index"], list(image.shape), strict=True)
        interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(exit_["index"])


# ---- arguments ------------------------------------------------------------------------------
def add_output_arguments(parser):
    """Adds the flags the export tools share to an argparse parser: --heads, --layout,
    --uint8-io, --overwrite (see `serving_function`)."""
    parser.add_argument("--heads", default=None,
                        help="all, selected, auto (the scoring branch's fusion; the selected "
                        "output without one) or an output index (default: selected when the "
                        "model has a selected output, else all)")
    parser.add_argument("--layout", choices=LAYOUTS, default="heads",
                        help="heads: (1, K', H, W, 3) like Keras; channels: (1, H, W, 3K'), "
                        "output k in channels 3k..3k+2, for mobile GPU delegates (default: heads)")
    parser.add_argument("--uint8-io", action="store_true",
                        help="uint8 RGB input and output, scaling and clamping built in")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ExportError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def parse_size(text, what="--input-size"):
    """"HxW" (or "H,W", or one number for a square) -> (H, W) positive ints."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"{what}: expected a size as HEIGHTxWIDTH of positive integers "
                          f"(e.g. 720x1280); got {text!r}")
    return size


def _as_model(model):
    """A model, or the one in a .keras file (errors as ExportError)."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    from keras_mhdeblur.saving import ModelFileError, load_model

    try:
        return load_model(model, compile=False)
    except ModelFileError as error:
        raise ExportError(str(error)) from None


def resolve_output(model, heads=None):
    """The output index to export, or None for all of them.

    heads: None (the selected output once `model.selected_output` is set, else all), "all",
        "selected", "auto" (the scoring branch's fusion, keras_mhdeblur.scoring; the selected
        output for a model without one), or an index (int or digit string) in [0, K').
    Returns None (all), an index, or "auto".
    """
    if heads == "auto" and not model.single_output:
        if model.output_scorer is not None:
            return "auto"
        heads = "selected" if model.selected_output is not None else 0
    if model.single_output:
        if heads in (None, "all", "selected", 0, "0"):
            return None
        raise ExportError(f"--heads {heads}: {model.name} has a single output (no heads to pick)")
    if heads is None:
        heads = "all" if model.selected_output is None else "selected"
    if heads == "all":
        return None
    if heads == "selected":
        if model.selected_output is None:
            raise ExportError("--heads selected: the model has no selected output "
                              "(model.selected_output is None); choose one on a validation set "
                              "first, or pass an index or 'all'")
        return model.selected_output
    if not str(heads).isdigit():
        raise ExportError(f"--heads must be all, selected, auto or an output index; got "
                          f"{heads!r}")
    index = int(heads)
    if not 0 <= index < model.num_outputs:
        raise ExportError(f"--heads {index}: the model has {model.num_outputs} outputs "
                          f"(indices 0..{model.num_outputs - 1})")
    return index


def serving_function(model, output=None, layout="heads", uint8_io=False):
    """f(image) -> restored image(s), the function every export traces (TensorFlow ops).

    image: (B, H, W, 3) float32 in [0, 1], or uint8 with `uint8_io`.
    Returns (B, K', H, W, 3) (all outputs, layout "heads"), (B, H, W, 3K') (layout "channels",
    output k in channels 3k..3k+2), or (B, H, W, 3) (one output, or a single-head model); float32,
    or uint8 rounded from clip(y, 0, 1) * 255 with `uint8_io`.
    """
    import tensorflow as tf

    _check_choice("layout", layout, LAYOUTS)

    def restore(image):
        x = tf.cast(image, tf.float32) / 255.0 if uint8_io else image
        y = model.final_output(model(x, training=False))
        if output == "auto":
            from keras_mhdeblur.scoring import auto_output

            y = auto_output(model, x, y)
        elif output is not None:
            y = y[:, output]
        if uint8_io:
            y = _to_uint8(tf.clip_by_value(y, 0.0, 1.0))
        if layout == "channels" and len(y.shape) == 5:
            shape = tf.shape(y)
            y = tf.reshape(tf.transpose(y, (0, 2, 3, 1, 4)),
                           (shape[0], shape[2], shape[3], 3 * model.num_outputs))
        return y

    return restore


def _to_uint8(image):
    """[0, 1] float (..., 3) -> uint8 levels. The x255 is a 3x3 matmul on purpose: the TFLite
    int8 quantizer gives a multiply-by-constant's input the scale of its output, which rounds
    [0, 1] to {0, 1} (all outputs 0 or 255, measured); a FULLY_CONNECTED keeps both scales."""
    import tensorflow as tf

    levels = tf.einsum("...c,cd->...d", image, tf.constant(255.0 * np.eye(3, dtype=np.float32)))
    return tf.cast(tf.round(levels), tf.uint8)


def _check_backend():
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"export needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                          f"this process runs {keras.backend.backend()!r}")


def _trace(function, input_shape, input_dtype):
    """`function` traced once for this input spec: a concrete function image -> {"output": y}."""
    import tensorflow as tf

    spec = tf.TensorSpec(input_shape, input_dtype, name="image")
    # autograph=False: the graph is plain TF ops (Python branches only on static values).
    return tf.function(lambda image: {"output": function(image)}, input_signature=[spec],
                       autograph=False).get_concrete_function()


def _write_saved_model(serve, model, directory):
    """Writes the traced `serve` as the "serving_default" signature (and `.serve`). A plain
    tf.Module holding the model's variables: Keras' ExportArchive does the same with more
    tracing (3x slower here)."""
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve})


# ---- inputs for verification and calibration ----------------------------------------------
def synthetic_images(count, size, seed=0, max_side=256):
    """(count, H, W, 3) float32 blurry images in [0, 1] from keras_mhdeblur.data's GoPro-style
    synthetic blur (no download). Drawn at most `max_side` per side (drawing 720x1280 takes ~25 s
    on 2 cores) and resized up beyond that."""
    import tensorflow as tf

    from keras_mhdeblur.data import make_synthetic_set

    drawn = tuple(min(side, max_side) for side in size)
    blurry, _ = make_synthetic_set(count, size=drawn, seed=seed, workers=2)
    if drawn != tuple(size):
        blurry = np.clip(tf.image.resize(blurry, size).numpy(), 0, 1)
    return blurry.astype(np.float32)


def folder_images(directory, count, size, seed=0):
    """(count, H, W, 3) float32 crops of the images in `directory` (cycled; random crops, smaller
    images resized up), for int8 calibration on the user's own pictures."""
    import tensorflow as tf

    from keras_mhdeblur.data import DataError, read_image
    from keras_mhdeblur.data.datasets import list_images

    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(f"--representative {directory}: not a folder of images")
    paths = sorted(list_images(directory, recursive=True).values())
    if not paths:
        raise ExportError(f"--representative {directory}: no images found (png, jpg, ...)")
    rng = np.random.default_rng(seed)
    height, width = size
    crops = []
    for index in range(count):
        try:
            image = read_image(paths[index % len(paths)])
        except DataError as error:
            raise ExportError(f"--representative: {error}") from error
        if image.shape[0] < height or image.shape[1] < width:
            image = tf.image.resize(image, (max(height, image.shape[0]), max(width, image.shape[1])))
            image = np.asarray(image)
        top = rng.integers(0, image.shape[0] - height + 1)
        left = rng.integers(0, image.shape[1] - width + 1)
        crops.append(image[top:top + height, left:left + width])
    return np.clip(np.stack(crops), 0, 1).astype(np.float32)


def _to_input(images, uint8_io):
    return np.round(images * 255).astype(np.uint8) if uint8_io else images.astype(np.float32)


# ---- TFLite ---------------------------------------------------------------------------------
def _prepare(model, heads, layout, input_size, uint8_io, tlc):
    """Checks the arguments and returns (model, serving function, input shape, input dtype)."""
    import tensorflow as tf

    _check_backend()
    _check_choice("layout", layout, LAYOUTS)
    input_size = None if input_size is None else parse_size(input_size)
    if tlc is not None:
        tlc = parse_size(tlc, "--tlc")
        if input_size is None:
            raise ExportError("--tlc needs a fixed --input-size HxW: TLC's local pooling window "
                              "depends on the feature size, so H and W cannot stay dynamic")
    model = _as_model(model)
    if model.get_config().get("scan_blocks"):
        # TFLite would get a WHILE loop that XNNPACK and GPU delegates cannot take.
        model = rebuilt(model, scan_blocks=False)
    if tlc is not None:
        if "tlc_train_size" not in model.get_config():
            raise ExportError(f"--tlc applies to NAFNet models (they have tlc_train_size); "
                              f"{type(model).__name__} has no TLC version")
        model = with_tlc(model, tlc)
    elif getattr(model, "tlc_train_size", None) is not None and input_size is None:
        raise ExportError("this model uses TLC local pooling, which needs a fixed input size: "
                          "pass --input-size HxW")
    output = resolve_output(model, heads)
    function = serving_function(model, output, layout, uint8_io)
    height, width = input_size or (None, None)
    return model, function, (height, width), tf.uint8 if uint8_io else tf.float32


def _flex_ops(message):
    for line in message.splitlines():
        if line.strip().startswith("TF Select ops:"):
            return line.split(":", 1)[1].strip()
    return None


def convert_to_tflite(serve, model, quantize="none", calibration=None):
    """TFLite flatbuffer bytes of `serve` (`_trace` of a serving function, batch 1).

    calibration: (N, H, W, 3) inputs for quantize="int8" (in the input dtype).
    Raises ExportError when the graph needs ops outside the TFLite builtins.
    """
    import tensorflow as tf

    _check_choice("quantize", quantize, QUANTIZATIONS)
    with tempfile.TemporaryDirectory(prefix="mhdeblur-export-") as directory:
        _write_saved_model(serve, model, directory)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            if calibration is None or not len(calibration):
                raise ExportError("int8 quantization needs calibration images")
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and plain exceptions
            message = str(error)
            flex = _flex_ops(message)
            if flex:
                raise ExportError(
                    f"the model needs TensorFlow ops that the TFLite builtins do not have ({flex}); "
                    "they would need the Flex delegate on the phone, which this export does not "
                    "allow. Replace those ops in the model.") from error
            detail = "\n".join(line for line in message.splitlines() if "error" in line.lower())
            raise ExportError(f"TFLite conversion (quantize={quantize}) failed:\n"
                              f"{(detail or message)[-3000:]}") from error


def _verification_inputs(sizes, uint8_io, seed):
    """[(name, (1, H, W, 3) input)]: a uniform-random and a synthetic-blur image per size."""
    rng = np.random.default_rng(seed)
    largest = tuple(max(size[axis] for size in sizes) for axis in (0, 1))
    synthetic = synthetic_images(1, largest, seed)
    inputs = []
    for height, width in sizes:
        inputs.append(("random", rng.random((1, height, width, 3), dtype=np.float32)))
        inputs.append(("synthetic", synthetic[:, :height, :width]))
    return [(name, _to_input(image, uint8_io)) for name, image in inputs]


def _compare(name, actual, expected, tolerance, peak, input_shape):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    error, quality = float(np.abs(actual - expected).max()), psnr(actual, expected, peak)
    return Comparison(name, tuple(input_shape), error, quality, tolerance.accepts(error, quality))


def verify_tflite(tflite_path, serve, input_size, uint8_io=False, tolerance=None,
                  quantize="none", seed=0):
    """Runs the .tflite file in the interpreter and compares it with `serve` (the traced Keras
    serving function, run by TensorFlow).

    Inputs: one uniform-random and one synthetic-blur image per size (`input_size`, or
    `VERIFY_SIZES` when it is dynamic). Returns a `VerificationReport`; raises
    `ExportVerificationError` when any comparison is outside the tolerance.
    """
    import tensorflow as tf

    tolerance = tolerance or default_tolerance(quantize, uint8_io)
    report = VerificationReport(interpreter_class()[1], tolerance)
    sizes = [tuple(input_size)] if None not in input_size else list(VERIFY_SIZES)
    interpreter = None
    for name, image in _verification_inputs(sizes, uint8_io, seed):
        expected = serve(tf.constant(image))["output"].numpy()
        try:
            interpreter = interpreter or make_interpreter(tflite_path)
            actual = run_interpreter(interpreter, image)
        except (RuntimeError, ValueError) as error:  # what the interpreter raises
            raise ExportVerificationError(
                f"the exported model (quantize={quantize}) does not run in "
                f"{report.runtime} at input {image.shape}: {error}; nothing was written",
                report) from error
        if actual.shape != expected.shape:
            raise ExportVerificationError(
                f"{tflite_path}: output shape {actual.shape} differs from Keras' "
                f"{expected.shape} for input {image.shape}", report)
        report.comparisons.append(_compare(name, actual, expected, tolerance,
                                           255.0 if uint8_io else 1.0, image.shape))
    if not report.passed:
        raise ExportVerificationError(
            f"the exported model disagrees with Keras beyond the tolerance for "
            f"quantize={quantize}; nothing was written.\n{report}", report)
    return report


def _temporary_path(path):
    prefix = f".{path.name}."
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(handle)
    return Path(name)


def _check_destination(path, overwrite, directory=False):
    path = Path(path)
    if path.exists():
        if directory != path.is_dir():
            kind = "folder" if path.is_dir() else "file"
            raise ExportError(f"{path}: exists and is a {kind}; choose another output path")
        if not overwrite:
            raise ExportError(f"{path}: already exists; pass --overwrite (overwrite=True) to "
                              "replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def export_tflite(model, out_path, *, heads=None, layout="heads", input_size=None, tlc=None,
                  quantize="none", uint8_io=False, representative=None, calibration_samples=16,
                  calibration_size=None, tolerance=None, overwrite=False, seed=0):
    """Converts a model to a verified .tflite file, written atomically.

    Args:
        model: a keras_mhdeblur model, or the path of a .keras file.
        out_path: the .tflite file to write; an existing one needs `overwrite=True`.
        heads: None (selected output if set, else all), "all", "selected" or an index.
        layout: "heads" (1, K', H, W, 3) or "channels" (1, H, W, 3K'); one output: (1, H, W, 3).
        input_size: (H, W) or "HxW" for a fixed size (what GPU delegates need); None keeps H and
            W dynamic (resize the interpreter input with `resize_tensor_input`).
        tlc: training crop (H, W) to export the TLC version of a NAFNet (needs `input_size`).
        quantize: "none" (float32), "float16" (float16 weights), "dynamic" (int8 weights,
            dynamic-range activations) or "int8" (full integer, calibrated).
        uint8_io: uint8 RGB in and out (scaling, clamping and rounding inside the model).
        representative: folder of images for int8 calibration; None uses synthetic blur.
        calibration_samples: number of calibration images for int8.
        calibration_size: (H, W) of calibration crops; default `input_size` or 128x128.
        tolerance: a `Tolerance` overriding `default_tolerance(quantize, uint8_io)`.
    Returns:
        `ExportResult`. Raises `ExportError` for bad arguments or unsupported ops and
        `ExportVerificationError` (nothing written) when the file disagrees with Keras.
    """
    _check_choice("quantize", quantize, QUANTIZATIONS)
    out_path = _check_destination(out_path, overwrite)
    model, function, size, dtype = _prepare(model, heads, layout, input_size, uint8_io, tlc)
    calibration = None
    if quantize == "int8":
        if calibration_samples < 1:
            raise ExportError(f"--calibration-samples must be at least 1, got {calibration_samples}")
        crop = parse_size(calibration_size) if calibration_size else (
            size if None not in size else CALIBRATION_SIZE)
        images = (synthetic_images(calibration_samples, crop, seed + 1) if representative is None
                  else folder_images(representative, calibration_samples, crop, seed))
        calibration = _to_input(images, uint8_io)
    serve = _trace(function, (1, *size, 3), dtype)
    content = convert_to_tflite(serve, model, quantize, calibration)
    temporary = _temporary_path(out_path)
    try:
        temporary.write_bytes(content)
        report = verify_tflite(temporary, serve, size, uint8_io, tolerance, quantize, seed)
        os.replace(temporary, out_path)
    finally:
        temporary.unlink(missing_ok=True)
    interpreter = interpreter_class()[0](model_path=str(out_path))  # shapes only: no allocation
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    return ExportResult(out_path, len(content), tuple(int(d) for d in entry["shape_signature"]),
                        np.dtype(entry["dtype"]).name,
                        tuple(int(d) for d in exit_["shape_signature"]), report)


# ---- SavedModel -----------------------------------------------------------------------------
def export_saved_model(model, out_dir, *, heads=None, layout="heads", uint8_io=False,
                       overwrite=False, seed=0):
    """Writes a verified SavedModel folder, atomically (temporary folder, then rename).

    Signature "serving_default": input "image" (B, H, W, 3) float32 in [0, 1] (uint8 with
    `uint8_io`), any batch, H and W; output "output" as in `serving_function`. Load it with
    `tf.saved_model.load(out_dir).signatures["serving_default"](image=x)["output"]`.
    Verified after writing by reloading it and comparing with Keras at `VERIFY_SIZES`
    (max abs error 2e-4, 1 level with uint8 I/O).
    """
    import tensorflow as tf

    out_dir = _check_destination(out_dir, overwrite, directory=True)
    model, function, _, dtype = _prepare(model, heads, layout, None, uint8_io, None)
    serve = _trace(function, (None, None, None, 3), dtype)
    tolerance = default_tolerance("none", uint8_io)
    report = VerificationReport("tf.saved_model.load", tolerance)

    def write_and_verify(folder):
        _write_saved_model(serve, model, folder)
        loaded = tf.saved_model.load(str(folder)).signatures["serving_default"]
        for name, image in _verification_inputs(VERIFY_SIZES, uint8_io, seed):
            image = np.concatenate([image, image[:, ::-1]])  # batch 2: the batch is dynamic too
            expected = serve(tf.constant(image))["output"]
            actual = loaded(image=tf.constant(image))["output"]
            report.comparisons.append(_compare(name, actual, expected, tolerance,
                                               255.0 if uint8_io else 1.0, image.shape))
        if not report.passed:
            raise ExportVerificationError(
                f"the SavedModel disagrees with Keras; nothing was written.\n{report}", report)

    write_folder_atomically(out_dir, write_and_verify)
    size_bytes = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    output_shape = tuple(-1 if d is None else d for d in serve.structured_outputs["output"].shape)
    return ExportResult(out_dir, size_bytes, (-1, -1, -1, 3), dtype.name, output_shape, report)
