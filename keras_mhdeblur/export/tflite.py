"""TFLite / LiteRT export: the serving function converted to a flatbuffer, optionally quantized,
and written only once it runs in the interpreter as the Keras model does.

Conversion goes through a temporary SavedModel (the converter freezes its variables) and is
restricted to the TFLite builtin ops, so a graph that would need TF (Flex) kernels fails at
export rather than on the phone.
"""

import tempfile
from pathlib import Path

import tensorflow as tf

from keras_mhdeblur.data import DataError, folder_crops, synthetic_blurry_images
from keras_mhdeblur.export.errors import ExportError, check_choice
from keras_mhdeblur.export.saved_model import write_saved_model
from keras_mhdeblur.export.serving import (check_destination, prepare_export, serving_input,
                                           size_argument)
from keras_mhdeblur.export.verify import (QUANTIZATIONS, ExportResult, tflite_signature,
                                          verify_tflite)
from keras_mhdeblur.utils.files import write_file_atomically

#: Calibration crops for int8 when the export has no fixed input size.
CALIBRATION_SIZE = (128, 128)


def export_tflite(model, out_path, *, output=None, layout="heads", input_size=None, tlc=None,
                  quantize="none", uint8_io=False, representative=None, calibration_samples=16,
                  calibration_size=None, tolerance=None, overwrite=False, seed=0):
    """Converts a model to a verified .tflite file, written atomically.

    Args:
        model: a keras_mhdeblur model, or a .keras file or preset (name or folder).
        out_path: the .tflite file to write; an existing one needs `overwrite=True`.
        output: which output to export (`keras_mhdeblur.inference.output_choice`): None (the
            shipped output when the model has a scoring branch or a selected output, else all),
            "all", "shipped", "selected", "auto" (the scoring branch's fusion) or an index.
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
        overwrite: replace an existing `out_path`.
        seed: seed of the verification and calibration images.
    Returns:
        `ExportResult`. Raises `ExportError` for bad arguments or unsupported ops and
        `ExportVerificationError` (nothing written) when the file disagrees with Keras.
    """
    check_choice("quantize", quantize, QUANTIZATIONS)
    out_path = check_destination(out_path, overwrite)
    prepared = prepare_export(model, output, layout, input_size, uint8_io, tlc)
    calibration = None
    if quantize == "int8":
        if calibration_size is not None:
            crop = size_argument(calibration_size, "--calibration-size")
        else:
            crop = CALIBRATION_SIZE if prepared.dynamic_size else prepared.input_size
        images = calibration_images(calibration_samples, crop, representative, seed)
        calibration = serving_input(images, uint8_io)
    serve = prepared.trace(batch=1)
    content = convert_to_tflite(serve, prepared.model, quantize, calibration)
    report = None

    def write_and_verify(temporary):
        # The file is verified under its temporary name: one that fails never takes `out_path`.
        nonlocal report
        Path(temporary).write_bytes(content)
        report = verify_tflite(temporary, serve, prepared.input_size, uint8_io, tolerance,
                               quantize, seed)

    write_file_atomically(out_path, write_and_verify)
    input_shape, input_dtype, output_shape = tflite_signature(out_path)
    return ExportResult(out_path, len(content), input_shape, input_dtype, output_shape, report)


def calibration_images(count, size, representative=None, seed=0):
    """(count, H, W, 3) float images in [0, 1] to calibrate int8 on: crops of the images in the
    folder `representative`, else synthetic blur (seed + 1, so not the verification images)."""
    if count < 1:
        raise ExportError(f"--calibration-samples must be at least 1, got {count}")
    if representative is None:
        return synthetic_blurry_images(count, size, seed + 1)
    try:
        return folder_crops(representative, count, size, seed)
    except DataError as error:
        raise ExportError(f"--representative: {error}") from None


def convert_to_tflite(serve, model, quantize="none", calibration=None):
    """TFLite flatbuffer bytes of `serve` (a serving function traced for batch 1).

    calibration: (N, H, W, 3) inputs for quantize="int8" (in the input dtype).
    Raises ExportError when the graph needs ops outside the TFLite builtins.
    """
    check_choice("quantize", quantize, QUANTIZATIONS)
    with tempfile.TemporaryDirectory(prefix="mhdeblur-export-") as directory:
        write_saved_model(serve, model, directory)
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
            raise _conversion_error(str(error), quantize) from error


def _conversion_error(message, quantize):
    """The converter's long log as an ExportError: the ops TFLite lacks, else its error lines."""
    for line in message.splitlines():
        flex = line.split(":", 1)[1].strip() if line.strip().startswith("TF Select ops:") else ""
        if flex:
            return ExportError(
                f"the model needs TensorFlow ops that the TFLite builtins do not have ({flex}); "
                "they would need the Flex delegate on the phone, which this export does not "
                "allow. Replace those ops in the model.")
    detail = "\n".join(line for line in message.splitlines() if "error" in line.lower())
    return ExportError(f"TFLite conversion (quantize={quantize}) failed:\n"
                       f"{(detail or message)[-3000:]}")
