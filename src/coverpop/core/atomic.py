"""Atomic writes: a temp file in the same folder, fsynced, then os.replace, so neither a kill nor a
power cut leaves a half (or zeroed) file under the final name.

Temp files and temp folders carry their owner's pid in their name, so that a later run can clean
up what a killed run left behind without ever touching the temp files of a process still alive.

Every write of the project goes through `atomic_path` (covers, journal, manifest, caches, stage
outputs, checkpoints, figures), so this is also where a failing disk is named: ENOSPC, a
read-only or unwritable folder, a quota, an I/O error become one DiskError line naming the final
path (never the temp file), the cause and what to do; the temp file is removed and the old file,
if any, is untouched, so the next run after the fix resumes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from coverpop.core.errors import DiskError, disk_error

if TYPE_CHECKING:  # pandas is not imported here: cheap stages (inputs) need none of it
    import pandas as pd

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")   # .NAME.PID.tmp, as atomic_path names them


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (ours included); pid reuse errs on the safe side."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, owned by another user
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and replaces `path`, on error it
    is removed. The fsync comes before the rename: otherwise a crash can leave the new name
    pointing at blocks never written (a zeroed or truncated file that looks finished)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with disk_errors(path, tmp):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:      # a read-only folder: there is no temp file to remove either
            pass


@contextmanager
def disk_errors(path: str | Path, *also: str | Path) -> Iterator[None]:
    """Turn a failed write of `path` (or of its temp files `also`) in the block into one
    DiskError line naming `path`. An OSError about another file (the source of a copy, say) or
    of another kind passes through as it is."""
    try:
        yield
    except DiskError:
        raise
    except OSError as err:
        found = disk_error(err, path) if _about(err, (path, *also)) else None
        if found is None:
            raise
        raise found from None


def _about(err: OSError, paths) -> bool:
    """Is this error about writing one of `paths` (or making a folder above them)?"""
    if err.filename is None:       # write(), fsync(): the file being written
        return True
    try:   # filename2: the destination of a copy or rename (shutil names the source first)
        failed = [Path(os.fsdecode(f)) for f in (err.filename, err.filename2) if f is not None]
        return any(Path(p) == f or Path(p).is_relative_to(f) for p in paths for f in failed)
    except (TypeError, ValueError):
        return False


def clean_dead_temps(folder: str | Path) -> int:
    """Remove the temp files in `folder` whose owner process is gone; return how many."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if m and not pid_alive(int(m["pid"])):
            try:
                entry.unlink(missing_ok=True)
                removed += 1
            except OSError:   # a read-only folder: the write that follows says so in one line
                pass
    return removed


@contextmanager
def owned_tempdir(prefix: str) -> Iterator[Path]:
    """A temp folder named PREFIX-PID-XXXX, removed on exit; the folders of dead owners with the
    same prefix (left by a killed run) are removed first."""
    root = Path(tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}-(?P<pid>\d+)-")
    for entry in root.glob(f"{prefix}-*"):
        m = pattern.match(entry.name)
        if m and entry.is_dir() and not pid_alive(int(m["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-{os.getpid()}-") as tmp:
        yield Path(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    # "\n" endings everywhere: DVC hashes bytes as they are.
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")
