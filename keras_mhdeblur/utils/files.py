"""Atomic writes: every file and folder this library writes appears whole or not at all.

A file is written to a temporary name in its destination folder (same file system) and renamed
over the destination with `os.replace`, so a crash, Ctrl-C or SIGKILL mid-write leaves the old
file or the new one, never a truncated one. The result gets the permissions a plain `open()`
would give it under the user's umask (a temporary file is private, and a rename keeps its mode).
Leftovers of an interrupted write are hidden names containing ".tmp" (`is_temporary`).
"""

import json
import math
import os
import shutil
import tempfile
from pathlib import Path


def current_umask():
    """The process's umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_file_atomically(path, write, suffix=".tmp"):
    """Creates or replaces the file `path` with `write(temporary_path)`.

    Args:
        path: destination; its folder is created if missing.
        write: called with the temporary file's path (str); it writes the whole content there.
        suffix: ending of the temporary name (some writers, e.g. Keras, insist on ".keras").
    Returns:
        `path` as a Path. If `write` raises, the destination is unchanged and nothing is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        os.chmod(temporary, 0o666 & ~current_umask())
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_bytes_atomically(path, content):
    """Writes `content` (bytes) to `path` atomically."""
    return write_file_atomically(path, lambda temporary: Path(temporary).write_bytes(content))


def write_text_atomically(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    return write_file_atomically(
        path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_json(path, value):
    """Writes `value` as indented JSON atomically (infinite floats are written as null)."""
    return write_text_atomically(path, json.dumps(_finite(value), indent=2) + "\n")


def _finite(value):
    """JSON has no infinity (an output equal to its reference has infinite PSNR): -> None.
    NumPy scalars become Python numbers first."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
        os.chmod(temporary, 0o777 & ~current_umask())
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


def is_temporary(path):
    """True for the leftovers of an interrupted atomic write."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name
