"""SavedModel export: the serving function as the "serving_default" signature, in a folder that
appears only once it has been reloaded and agrees with Keras. (TFLite conversion starts from one
too, in a temporary folder.)"""

import tensorflow as tf

from keras_mhdeblur.export.serving import check_destination, prepare_export
from keras_mhdeblur.export.verify import ExportResult, verify_saved_model
from keras_mhdeblur.utils.files import write_folder_atomically


def write_saved_model(serve, model, directory):
    """Writes the traced `serve` as the "serving_default" signature (and `.serve`). A plain
    tf.Module holding the model's variables: Keras' ExportArchive does the same with more
    tracing (3x slower here)."""
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve})


def export_saved_model(model, out_dir, *, output=None, layout="heads", uint8_io=False,
                       overwrite=False, seed=0):
    """Writes a verified SavedModel folder, atomically (temporary folder, then rename).

    Signature "serving_default": input "image" (B, H, W, 3) float32 in [0, 1] (uint8 with
    `uint8_io`), any batch, H and W; output "output" as in `serving_function`. Load it with
    `tf.saved_model.load(out_dir).signatures["serving_default"](image=x)["output"]`.
    Verified before it takes its name by reloading it and comparing with Keras at
    `VERIFY_SIZES` (max abs error 2e-4, 1 level with uint8 I/O).

    Args:
        model: a keras_mhdeblur model, or a .keras file or preset (name or folder).
        out_dir: the folder to write; an existing one needs `overwrite=True`.
        output, layout, uint8_io: as `export_tflite`.
    Returns:
        `ExportResult`. Raises `ExportError` for bad arguments and `ExportVerificationError`
        (nothing written) when the reloaded folder disagrees with Keras.
    """
    out_dir = check_destination(out_dir, overwrite, folder=True)
    prepared = prepare_export(model, output, layout, uint8_io=uint8_io)
    serve = prepared.trace()  # batch, H and W all dynamic
    report = None

    def write_and_verify(folder):
        nonlocal report
        write_saved_model(serve, prepared.model, folder)
        report = verify_saved_model(folder, serve, uint8_io, seed)

    write_folder_atomically(out_dir, write_and_verify)
    size_bytes = sum(path.stat().st_size for path in out_dir.rglob("*") if path.is_file())
    output_shape = tuple(-1 if d is None else d for d in serve.structured_outputs["output"].shape)
    return ExportResult(out_dir, size_bytes, (-1, -1, -1, 3), prepared.input_dtype.name,
                        output_shape, report)
