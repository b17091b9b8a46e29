"""Export to SavedModel and TFLite / LiteRT, verified against the Keras model before it is written.

    from keras_mhdeblur.export import export_tflite
    export_tflite("model.keras", "model.tflite", quantize="float16", input_size="720x1280")

or `mhdeblur export MODEL OUT` (keras_mhdeblur.commands.export). One concern per module:

- `serving`: the serving function every export traces (output choice, layout, uint8 I/O) and
  the preparation before it (arguments, destination, scanned blocks unrolled, TLC).
- `tflite`: conversion to a TFLite flatbuffer (quantization, calibration) and `export_tflite`.
- `saved_model`: `export_saved_model`.
- `verify`: tolerances and why, reports, the LiteRT interpreter helpers, verification.
- `errors`: `ExportError` (cannot be done as asked) and `ExportVerificationError` (disagrees).

Every export needs the TensorFlow backend; this package imports TensorFlow.
"""

from keras_mhdeblur.export.errors import ExportError, ExportVerificationError
from keras_mhdeblur.export.saved_model import export_saved_model, write_saved_model
from keras_mhdeblur.export.serving import (LAYOUTS, PreparedExport, prepare_export,
                                           serving_function)
from keras_mhdeblur.export.tflite import (CALIBRATION_SIZE, calibration_images,
                                          convert_to_tflite, export_tflite)
from keras_mhdeblur.export.verify import (QUANTIZATIONS, VERIFY_SIZES, Comparison, ExportResult,
                                          Tolerance, VerificationReport, default_tolerance,
                                          interpreter_class, make_interpreter, run_interpreter,
                                          verify_saved_model, verify_tflite)

__all__ = [
    "CALIBRATION_SIZE", "LAYOUTS", "QUANTIZATIONS", "VERIFY_SIZES", "Comparison", "ExportError",
    "ExportResult", "ExportVerificationError", "PreparedExport", "Tolerance",
    "VerificationReport", "calibration_images", "convert_to_tflite", "default_tolerance",
    "export_saved_model", "export_tflite", "interpreter_class", "make_interpreter",
    "prepare_export", "run_interpreter", "serving_function", "verify_saved_model",
    "verify_tflite", "write_saved_model",
]
