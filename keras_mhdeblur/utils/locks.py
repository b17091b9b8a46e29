"""A folder used by one process at a time: a lock file that names its owner.

    with folder_lock(run_folder / "train.lock", "training run"):
        ...  # a second process gets FolderInUse naming the first one's pid and host

The file holds the owner's pid, host and start time, for the message. The lock itself is the
kernel's `flock` on that file, so it goes away when its process dies, however it dies (SIGKILL
included): a lock file left by a dead process is taken over without asking. Over NFS, Linux
maps `flock` to the server's byte-range locks, so it also holds across hosts.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from pathlib import Path


class FolderInUse(RuntimeError):
    """Another live process holds the lock; the message says which."""


def _owner_text(path):
    try:
        owner = json.loads(Path(path).read_text())
        return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def folder_lock(path, what="folder"):
    """Holds the lock file `path` (its folder is created if missing) for the `with` block.

    Yields:
        None, or the owner ("pid N on HOST, since ...") of a lock file left behind by a process
        that died holding it, now taken over.

    Raises:
        FolderInUse: a live process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise FolderInUse(f"{path.parent}: this {what} is in use by {_owner_text(path)} "
                              f"(lock file {path.name}); wait for it to finish or stop it first"
                              ) from None
        # The previous owner may have removed the file between our open and our lock: then we
        # hold a lock on a deleted file, and try again on the current one.
        try:
            same_file = os.stat(path).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(handle)
    left_by = _owner_text(path) if os.fstat(handle).st_size else None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps(owner).encode())
        os.fsync(handle)
        yield left_by
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still locked, so nobody takes over a file being removed
        os.close(handle)
