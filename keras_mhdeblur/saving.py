"""Model files: loading with errors that name the file, and atomic saving.

A `.keras` file is written to a temporary name in the same folder and then renamed over the
destination (`os.replace`), so a crash, Ctrl-C or SIGKILL mid-write leaves either the old file or
the new one, never a truncated archive.
"""

import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path


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

    import keras_mhdeblur  # noqa: F401  (registers the model classes for deserialisation)
    from keras_mhdeblur.models.base import MultiHeadRestorationModel

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


def _temporary_beside(path, suffix):
    """A new temporary file next to `path` (same file system, so `os.replace` is atomic), with
    the permissions a normal file would get (mkstemp makes it private)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())
    return temporary


def _write_atomically(path, suffix, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path, suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_folder_atomically(path, write):
    """Creates the folder `path` with `write(temporary_folder)`: the folder is filled beside
    `path` and renamed into place, replacing an existing one only once the new one is complete
    (a rename cannot replace a non-empty folder in one step, so the old one is moved aside
    first and moved back if the rename fails). If `write` raises, nothing is changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(temporary)
        os.chmod(temporary, 0o777 & ~_umask())
        if not path.exists():
            os.rename(temporary, path)
            return path
        backup = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        os.rmdir(backup)
        os.rename(path, backup)
        try:
            os.rename(temporary, path)
        except OSError:
            os.rename(backup, path)
            raise
        shutil.rmtree(backup)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return path


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def save_model(model, path):
    """Saves `model` (weights, config and, if compiled, optimiser state) to a `.keras` file
    atomically: a temporary file in the same folder, then `os.replace`."""
    if Path(path).suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    return _write_atomically(path, ".tmp.keras", model.save)


def write_json(path, value):
    """Writes `value` as indented JSON atomically (infinite floats are written as null)."""
    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(_finite(value), file, indent=2)
            file.write("\n")

    return _write_atomically(path, ".tmp", write)


def _finite(value):
    """JSON has no infinity (an output equal to its reference has infinite PSNR): -> None."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def is_temporary(path):
    """True for the leftovers of an interrupted atomic write (see `_temporary_beside`)."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name
