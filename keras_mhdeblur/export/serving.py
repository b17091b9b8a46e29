"""What every export does before converting: the serving function it traces, and the model, the
arguments and the destination made ready for it.

    model (B, H, W, 3) in [0, 1]
      -> final stage (`model.final_output`) -> all K' outputs, or one (`output`)
      -> layout "heads" (1, K', H, W, 3) or "channels" (1, H, W, 3K') (head-major;
         docs/method.md, "Multi-head output")
      -> optional uint8 I/O: x / 255 in, round(clip(y, 0, 1) * 255) out

The same serving function is traced for the SavedModel (batch and H, W dynamic, input "image",
output "output") and for TFLite (batch 1, H and W dynamic or fixed). Before it is traced the
model is made exportable: scanned blocks are unrolled, and a NAFNet gets its TLC version for a
fixed input size when asked.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_mhdeblur.export.errors import ExportError, check_choice
from keras_mhdeblur.inference import output_choice
from keras_mhdeblur.layers import overflow_safe_norms
from keras_mhdeblur.models.surgery import rebuilt, with_tlc
from keras_mhdeblur.saving import ModelFileError, load_model
from keras_mhdeblur.utils.sizes import parse_size

LAYOUTS = ("heads", "channels")


def serving_function(model, output=None, layout="heads", uint8_io=False):
    """f(image) -> restored image(s), the function every export traces (TensorFlow ops).

    Args:
        model: a keras_mhdeblur model.
        output: which output to compute, any `keras_mhdeblur.inference.output_choice` but
            "all+auto": None (the shipped output when the model has a scoring branch or a
            selected output, else all of them), "all", "shipped", "selected", "auto" or an index.
        layout: "heads" or "channels" (see below).
        uint8_io: uint8 image in, uint8 levels out.
    The function takes image (B, H, W, 3) float32 in [0, 1], or uint8 with `uint8_io`, and
    returns (B, K', H, W, 3) (all outputs, layout "heads"), (B, H, W, 3K') (layout "channels",
    output k in channels 3k..3k+2), or (B, H, W, 3) (one output, or a single-output model);
    float32, or uint8 rounded from clip(y, 0, 1) * 255 with `uint8_io`.
    """
    check_choice("layout", layout, LAYOUTS)
    chosen = exported_output(model, output)

    def serve(image):
        x = tf.cast(image, tf.float32) / 255.0 if uint8_io else image
        if chosen == "auto":
            y = model.final_and_auto(x)[1]
        else:
            y = model.final_output(model(x, training=False))
            if chosen is not None:
                y = y[:, chosen]
        if uint8_io:
            y = _to_uint8(tf.clip_by_value(y, 0.0, 1.0))
        if layout == "channels" and len(y.shape) == 5:
            shape = tf.shape(y)
            y = tf.reshape(tf.transpose(y, (0, 2, 3, 1, 4)),
                           (shape[0], shape[2], shape[3], 3 * model.num_outputs))
        return y

    return serve


def exported_output(model, output=None):
    """The output an export computes: None (all of them), an output index, or "auto" (the
    scoring branch's fusion), as `output_choice(model, output)` resolves `output`."""
    try:
        choice = output_choice(model, output)
    except ValueError as error:
        raise ExportError(f"--output {output}: {error}") from None
    if choice == "all+auto":
        raise ExportError(f"--output {output}: an export has one output tensor, so it holds all "
                          "outputs ('all') or the auto output ('auto'), not both; export one "
                          "file of each")
    return None if choice == "all" else choice


def _to_uint8(image):
    """[0, 1] float (..., 3) -> uint8 levels. The x255 is a 3x3 matmul on purpose: the TFLite
    int8 quantizer gives a multiply-by-constant's input the scale of its output, which rounds
    [0, 1] to {0, 1} (all outputs 0 or 255, measured); a FULLY_CONNECTED keeps both scales."""
    levels = tf.einsum("...c,cd->...d", image, tf.constant(255.0 * np.eye(3, dtype=np.float32)))
    return tf.cast(tf.round(levels), tf.uint8)


def serving_input(images, uint8_io):
    """Float images in [0, 1] as the serving function takes them: uint8 levels with `uint8_io`,
    else float32."""
    return np.round(images * 255).astype(np.uint8) if uint8_io else images.astype(np.float32)


@dataclass
class PreparedExport:
    """A model ready to trace: the model as exported, its serving function, and the input it
    takes: (H, W) with None for a dynamic side, and the dtype (uint8 with uint8 I/O)."""

    model: keras.Model
    serve: Callable
    input_size: tuple
    input_dtype: tf.DType

    @property
    def dynamic_size(self):
        return None in self.input_size

    def trace(self, batch=None):
        """The serving function traced once for input (batch, H, W, 3), None for a dynamic
        dimension: a concrete function image -> {"output": y}."""
        spec = tf.TensorSpec((batch, *self.input_size, 3), self.input_dtype, name="image")
        # autograph=False: the graph is plain TF ops (Python branches only on static values).
        # Overflow-safe norms: GPU delegates run the float32 graph in float16.
        with overflow_safe_norms():
            return tf.function(lambda image: {"output": self.serve(image)},
                               input_signature=[spec], autograph=False).get_concrete_function()


def prepare_export(model, output=None, layout="heads", input_size=None, uint8_io=False,
                   tlc=None):
    """Checks the export's arguments and makes `model` exportable (arguments as
    `export_tflite`). Returns a `PreparedExport`; raises ExportError naming the argument."""
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"export needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                          f"this process runs {keras.backend.backend()!r}")
    check_choice("layout", layout, LAYOUTS)
    input_size = None if input_size is None else size_argument(input_size, "--input-size")
    tlc = None if tlc is None else size_argument(tlc, "--tlc")
    if tlc is not None and input_size is None:
        raise ExportError("--tlc needs a fixed --input-size HxW: TLC's local pooling window "
                          "depends on the feature size, so H and W cannot stay dynamic")
    model = loaded_model(model)
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
    return PreparedExport(model=model, serve=serving_function(model, output, layout, uint8_io),
                          input_size=input_size or (None, None),
                          input_dtype=tf.uint8 if uint8_io else tf.float32)


def size_argument(value, flag):
    """`parse_size(value)` for the export argument `flag`, its error as an ExportError."""
    try:
        return parse_size(value, flag)
    except ValueError as error:
        raise ExportError(str(error)) from None


def loaded_model(model):
    """`model` itself, or the model of a .keras file or preset (name or folder) it names."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    try:
        return load_model(model, compile=False)
    except ModelFileError as error:
        raise ExportError(str(error)) from None


def check_destination(path, overwrite, folder=False):
    """The path an export writes, as a Path, once it is free (or `overwrite` allows replacing
    what is there) and of the right kind: a file, or a folder with `folder`. Checked before any
    work, so a wrong destination fails at once."""
    path = Path(path)
    if path.exists():
        if folder != path.is_dir():
            kind = "folder" if path.is_dir() else "file"
            raise ExportError(f"{path}: exists and is a {kind}; choose another output path")
        if not overwrite:
            raise ExportError(f"{path}: already exists; pass --overwrite (overwrite=True) to "
                              "replace it")
    return path
