"""One writer per folder: an advisory lock (fcntl.flock) on a small file beside the folder.

The kernel drops the lock when its owner dies, however it dies (kill -9 included), so there is no
stale lock to clear by hand. The file holds the owner's pid, so the second writer can say who
holds it. It sits beside the folder, not in it: a DVC output folder must hold only its data.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coverpop.core.atomic import disk_errors
from coverpop.core.errors import CoverpopError


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def exclusive(folder: str | Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold the folder's lock for the block; when it is taken, fail at once naming the holder,
    or (`wait`) wait for it: for short writes that a second writer may simply follow."""
    folder = Path(folder)
    path = lock_path(folder)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CoverpopError(
                f"{folder} is being written by another {what} (pid {owner}); wait for it to "
                f"finish or stop it (kill {owner}), then run again") from None
        pid = f"{os.getpid()}\n".encode()
        try:
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
        except OSError:   # a full disk: the lock holds all the same, only its note is missing
            pass
        yield
    finally:
        os.close(fd)   # releases the lock
