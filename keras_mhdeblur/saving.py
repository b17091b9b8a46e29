"""Model files: loading with errors that name the file, and atomic saving.

A `.keras` file is written to a temporary name in the same folder and then renamed over the
destination (`keras_mhdeblur.utils.files`), so a crash, Ctrl-C or SIGKILL mid-write leaves either
the old file or the new one, never a truncated archive.
"""

import zipfile
from pathlib import Path

from keras_mhdeblur.utils.files import write_file_atomically


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names it and says what was expected."""


def load_model(path, compile=True):
    """Loads a `.keras` file holding a keras_mhdeblur model, or a preset (a shipped preset's
    name or a preset folder, keras_mhdeblur.presets), so every command that takes a model file
    takes a preset too.

    Args:
        path: the file, preset name or preset folder.
        compile: restore the optimiser (with its state), loss and metrics when the file has them
            (needed to resume training; inference does not need it).

    Returns:
        a `MultiHeadRestorationModel`.

    Raises:
        ModelFileError: missing file, not a Keras archive, unloadable, or another kind of model.
    """
    import keras

    import keras_mhdeblur
    from keras_mhdeblur.models.base import MultiHeadRestorationModel

    keras_mhdeblur.register_serializables()

    from keras_mhdeblur import presets

    path = Path(path)
    shipped = presets.shipped_presets()
    if presets.is_preset_folder(path) or (not path.exists() and str(path) in shipped):
        try:
            return presets.from_preset(path if path.exists() else str(path))
        except presets.PresetError as error:
            raise ModelFileError(str(error)) from None
    if not path.exists():
        names = ", ".join(shipped)
        raise ModelFileError(f"{path}: no such model file" +
                             (f" or preset (shipped presets: {names})" if names else ""))
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a model file (expected a .keras archive written by "
                             "`mhdeblur train` or model.save('name.keras'))")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types for broken or foreign archives
        raise ModelFileError(f"{path}: could not be loaded as a Keras model "
                             f"({type(error).__name__}: {error})") from None
    if not isinstance(model, MultiHeadRestorationModel):
        raise ModelFileError(f"{path}: holds a {type(model).__name__}, not a keras_mhdeblur "
                             "model (MultiHeadRestorationModel)")
    return model


def save_model(model, path):
    """Saves `model` (weights, config and, if compiled, optimiser state) to a `.keras` file
    atomically: a temporary file in the same folder, then `os.replace`."""
    if Path(path).suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    return write_file_atomically(path, model.save, suffix=".tmp.keras")


# The dtypes a weights file can store its floating-point arrays in. float16 halves a preset;
# a float16 number keeps 11 significant bits, so each weight moves by at most 1/2048 of itself
# and a shipped preset's outputs by about 1/20 of an 8-bit level
# (docs/presets.md, "Weights in float16").
WEIGHT_DTYPES = ("float32", "float16")


def _check_weight_dtype(dtype):
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights dtype {dtype!r}: expected one of {', '.join(WEIGHT_DTYPES)}")


def save_weights(model, path, dtype="float32"):
    """Writes `model`'s weights to the Keras `.weights.h5` file `path` atomically, its float32
    arrays in `dtype`. Keras casts each array back to its variable's dtype when the file is
    loaded (`model.load_weights`), so the file loads like any other; the model then computes
    with `round_weights(model, dtype)`'s weights."""
    import tempfile

    import h5py
    import numpy as np

    _check_weight_dtype(dtype)
    limit = float(np.finfo(dtype).max)

    def copy(source, target):
        target.attrs.update(source.attrs)
        for key, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, target.create_group(key))
                continue
            array = item[()]
            if array.dtype == np.float32 and dtype != "float32":
                largest = float(np.max(np.abs(array))) if array.size else 0.0
                if largest > limit:
                    raise ModelFileError(f"{path}: weight {item.name} reaches {largest:.3g}, "
                                         f"past {dtype}'s largest number ({limit:.3g}); keep "
                                         "float32")
                array = array.astype(dtype)
            target.create_dataset(key, data=array)

    def write(temporary):
        if dtype == "float32":
            model.save_weights(temporary)
            return
        # HDF5 does not give back the room of a replaced array: the cast copy is a new file.
        with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=".weights.",
                                         suffix=".tmp") as folder:
            exact = Path(folder) / "float32.weights.h5"
            model.save_weights(exact)
            with h5py.File(exact, "r") as source, h5py.File(temporary, "w") as target:
                copy(source, target)

    return write_file_atomically(path, write, suffix=".tmp.weights.h5")


def round_weights(model, dtype):
    """Rounds `model`'s float32 weights to `dtype` and back, in place: the weights a
    `save_weights(model, path, dtype)` file gives back, so that what is measured on `model` is
    what that file computes."""
    import keras
    import numpy as np

    _check_weight_dtype(dtype)
    for variable in model.weights:
        if variable.dtype == "float32":
            value = keras.ops.convert_to_numpy(variable)
            variable.assign(value.astype(dtype).astype(np.float32))
    return model
