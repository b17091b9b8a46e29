"""Every export is checked against Keras before it is written: tolerances, reports, and the
LiteRT interpreter that runs the files.

A TFLite file runs in the LiteRT interpreter (`ai-edge-litert`, or `tf.lite.Interpreter` without
it) on a random image and a synthetic-blur image, at the fixed size or, for dynamic sizes, at two
sizes (one not a multiple of the padding); a SavedModel is reloaded and run on the same images in
a batch of two. The result is compared with the Keras model through the same serving function,
and `ExportVerificationError` is raised when it is further off than the mode's tolerance.

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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mhdeblur.data.samples import synthetic_blurry_images
from keras_mhdeblur.evaluation import psnr
from keras_mhdeblur.export.errors import ExportVerificationError, check_choice
from keras_mhdeblur.export.serving import serving_input

try:  # the `litert` extra; TensorFlow's bundled interpreter runs the same files without it
    from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
except ImportError:
    LiteRTInterpreter = None

#: "none" (float32), "float16" (float16 weights), "dynamic" (int8 weights, dynamic-range
#: activations), "int8" (full integer, calibrated).
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
#: H x W used to verify dynamic-size exports: a multiple of 16 and a size that needs padding.
VERIFY_SIZES = ((48, 64), (40, 56))
#: The least PSNR (dB) against Keras of each quantized mode (the module doc says why).
MIN_PSNR = {"float16": 60.0, "dynamic": 40.0, "int8": 30.0}


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


def default_tolerance(quantize, uint8_io=False):
    """The tolerance of a quantization mode (see the module doc for why these values)."""
    check_choice("quantize", quantize, QUANTIZATIONS)
    if quantize == "none":
        return Tolerance(max_abs_error=1.0 if uint8_io else 2e-4)
    return Tolerance(min_psnr=MIN_PSNR[quantize])


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

    def add(self, name, actual, expected, peak, input_shape):
        """Compares one exported output with the Keras one and records it."""
        actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        error, quality = float(np.abs(actual - expected).max()), psnr(actual, expected, peak)
        self.comparisons.append(Comparison(name, tuple(input_shape), error, quality,
                                           self.tolerance.accepts(error, quality)))

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


# ---- the LiteRT interpreter -------------------------------------------------------------------
def interpreter_class():
    """(Interpreter class, runtime name): LiteRT's `ai_edge_litert` when installed (the
    `litert` extra), else TensorFlow's bundled `tf.lite.Interpreter`."""
    if LiteRTInterpreter is not None:
        return LiteRTInterpreter, "LiteRT (ai-edge-litert)"
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


def tflite_signature(path):
    """(input shape, input dtype name, output shape) of a single-input, single-output .tflite
    file, -1 for a dynamic dimension; read without allocating any tensor."""
    interpreter = interpreter_class()[0](model_path=str(path))
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    return (tuple(int(d) for d in entry["shape_signature"]), np.dtype(entry["dtype"]).name,
            tuple(int(d) for d in exit_["shape_signature"]))


# ---- verification -----------------------------------------------------------------------------
def verification_inputs(sizes, uint8_io, seed):
    """[(name, (1, H, W, 3) input)]: a uniform-random and a synthetic-blur image per size."""
    rng = np.random.default_rng(seed)
    largest = tuple(max(size[axis] for size in sizes) for axis in (0, 1))
    synthetic = synthetic_blurry_images(1, largest, seed)
    inputs = []
    for height, width in sizes:
        inputs.append(("random", rng.random((1, height, width, 3), dtype=np.float32)))
        inputs.append(("synthetic", synthetic[:, :height, :width]))
    return [(name, serving_input(image, uint8_io)) for name, image in inputs]


def verify_tflite(tflite_path, serve, input_size, uint8_io=False, tolerance=None,
                  quantize="none", seed=0):
    """Runs the .tflite file in the interpreter and compares it with `serve` (the traced Keras
    serving function, run by TensorFlow).

    Inputs: one uniform-random and one synthetic-blur image per size (`input_size`, or
    `VERIFY_SIZES` when it is dynamic). Returns a `VerificationReport`; raises
    `ExportVerificationError` when any comparison is outside the tolerance.
    """
    tolerance = tolerance or default_tolerance(quantize, uint8_io)
    report = VerificationReport(interpreter_class()[1], tolerance)
    sizes = [tuple(input_size)] if None not in input_size else list(VERIFY_SIZES)
    interpreter = None
    for name, image in verification_inputs(sizes, uint8_io, seed):
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
        report.add(name, actual, expected, 255.0 if uint8_io else 1.0, image.shape)
    if not report.passed:
        raise ExportVerificationError(
            f"the exported model disagrees with Keras beyond the tolerance for "
            f"quantize={quantize}; nothing was written.\n{report}", report)
    return report


def verify_saved_model(folder, serve, uint8_io=False, seed=0):
    """Reloads the SavedModel in `folder` and compares its "serving_default" signature with
    `serve` at `VERIFY_SIZES`, in batches of two (the batch is dynamic too), to float32's
    tolerance. Returns a `VerificationReport`; raises `ExportVerificationError` when they differ.
    """
    report = VerificationReport("tf.saved_model.load", default_tolerance("none", uint8_io))
    loaded = tf.saved_model.load(str(folder)).signatures["serving_default"]
    for name, image in verification_inputs(VERIFY_SIZES, uint8_io, seed):
        images = tf.constant(np.concatenate([image, image[:, ::-1]]))
        report.add(name, loaded(image=images)["output"], serve(images)["output"],
                   255.0 if uint8_io else 1.0, images.shape)
    if not report.passed:
        raise ExportVerificationError(
            f"the SavedModel disagrees with Keras; nothing was written.\n{report}", report)
    return report
