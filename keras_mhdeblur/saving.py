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
