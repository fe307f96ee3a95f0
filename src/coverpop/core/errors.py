"""One exception type for bad input, and a wrapper that turns it into a one-line error.

`run_stage` is every stage's (and the remote helper's) way out: a CoverpopError, a disk failure
of any write (ours or a library's: dvclive, matplotlib), Ctrl-C or SIGTERM all end in one line,
and warnings from libraries are one line each too, not a source excerpt.
"""

from __future__ import annotations

import atexit
import errno
import os
import select
import signal
import stat
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from coverpop.core.redact import redact_text


class CoverpopError(Exception):
    """Bad input or a state the user must fix; the message is one line naming the culprit."""


class DiskError(CoverpopError):
    """One of our writes failed (disk full, read-only, no permission): path, cause, what to do."""


# errno -> (what happened, what to do); `{where}` is the folder that could not be written.
_DISK = {
    errno.ENOSPC: ("no space left on the device", "free some space there (or point the output "
                                                  "elsewhere)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space there or raise the quota"),
    errno.EFBIG: ("file too large for the file system", "use another file system"),
    errno.EROFS: ("read-only file system", "make {where} writable (remount it read-write)"),
    errno.EACCES: ("permission denied", "make {where} writable for this user"),
    errno.EPERM: ("operation not permitted", "make {where} writable for this user"),
    errno.EIO: ("input/output error (a failing disk?)", "check the disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "remove or rename that file"),
    errno.EISDIR: ("a folder is in the way", "remove or rename that folder"),
    errno.EEXIST: ("a file is where a folder should be", "remove or rename that file"),
    errno.ENAMETOOLONG: ("the path is too long", "use a shorter path"),
}
# Only these say for sure that a write failed; the others (EACCES, EIO, ...) happen to reads too.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def disk_error(err: OSError, path: str | Path | None) -> DiskError | None:
    """The one-line DiskError for a failed write of `path` (None: a library's write of a file
    it did not name), or None for an errno that is not about the disk (let it through)."""
    if err.errno not in _DISK:
        return None
    cause, todo = _DISK[err.errno]
    if path is None:
        return DiskError(f"cannot write an output of this stage: {cause} "
                         f"({errno.errorcode.get(err.errno, err.errno)}); "
                         f"{todo.format(where='the output folders')}, then run again: finished "
                         "work is kept and the run resumes")
    path = Path(path)
    where = path.parent if path.name else path
    from coverpop.core.cache import cache_root   # here: cache imports nothing of ours

    try:
        in_cache = path.absolute().is_relative_to(cache_root().absolute())
    except (OSError, ValueError):
        in_cache = False
    todo = todo.format(where=where)
    if in_cache:
        todo += ", or set COVERPOP_CACHE to a folder with room"
    return DiskError(f"cannot write {path}: {cause} ({errno.errorcode.get(err.errno, err.errno)})"
                     f"; {todo}, then run again: finished work is kept and the run resumes")


def file_problem(path: str | Path) -> str:
    """Why `path` cannot be read as a file, in a few words ('' when it can): a folder is not
    'file not found', and neither is a broken link or a FIFO."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is a link to a missing file" if path.is_symlink() else "file not found"
    except PermissionError:
        return "cannot be looked at (permission denied)"
    except (OSError, ValueError) as err:   # ENAMETOOLONG, ELOOP, an embedded NUL ...
        return f"is not a usable path ({getattr(err, 'strerror', None) or err})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, socket or device)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def folder_problem(path: str | Path) -> str:
    """Why `path` cannot be used as a folder ('' when it can)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "does not exist"
    except (OSError, ValueError) as err:
        return f"is not a usable path ({getattr(err, 'strerror', None) or err})"
    return "" if stat.S_ISDIR(st.st_mode) else "is a file, not a folder"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one line ('warning: ... (sklearn)'), not a source excerpt."""
    module = Path(filename).parts
    origin = next((p for p in reversed(module[:-1]) if p not in ("site-packages", "src")), "")
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"warning: {redact_text(text)} ({category.__name__}, {origin or Path(filename).stem})",
          file=file or sys.stderr)


INTERRUPTED = "interrupted: finished work is kept; run the stage again to resume"
GRACE_S = 1.5   # after Ctrl-C, how long the stage may take to leave on its own


def _exit_now(code: int) -> NoReturn:
    """os._exit(code) once what was printed is out: no finalization, no waiting for threads."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


def _exit_interrupted() -> NoReturn:
    print(INTERRUPTED, file=sys.stderr)
    _exit_now(130)   # not sys.exit: a thread stuck in a library call would hold up the exit


def _watch_interrupts() -> None:
    """Ctrl-C within a second or two, even while the main thread sits in C code (a parser, a
    hash, a decoder): Python runs its signal handler only between bytecodes, but the C-level
    handler writes the signal number to the wakeup fd at once. A thread waiting on that fd cuts
    the requests in flight (core/net.py), gives the stage GRACE_S to leave by its
    KeyboardInterrupt (journals are saved then), and ends the process if it has not."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:     # not the main thread: nothing to watch
        return

    def watch() -> None:
        while True:
            select.select([r], [], [])
            if {signal.SIGINT, signal.SIGTERM} & set(os.read(r, 512)):
                break
        net = sys.modules.get("coverpop.core.net")
        if net is not None:
            net.abort_all()
        time.sleep(GRACE_S)
        _exit_interrupted()

    threading.Thread(target=watch, daemon=True, name="coverpop-interrupts").start()


def _left_running(started: set[threading.Thread]) -> bool:
    """Whether threads the stage started still run (covers a failure abandoned in flight)."""
    return any(t.is_alive() for t in threading.enumerate() if t not in started)


def _leave(code: int | str | None, started: set[threading.Thread]) -> NoReturn:
    """sys.exit(code); but when threads the stage started still run, the same exit (handlers
    included) without Python's finalization: that ends each daemon thread still inside C++ code
    (a torch op, a decoder) with pthread_exit, and unwinding through C++ aborts the process
    ('terminate called without an active exception', exit 134) instead of exiting `code`."""
    if not _left_running(started):
        sys.exit(code)   # as before; a caller running the stage in-process sees SystemExit
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()   # temp folders, logging, child processes: as a normal exit does
    _exit_now(code or 0)


def _crash(started: set[threading.Thread]) -> NoReturn:
    """The exception being handled goes on up, as Python would print it and exit 1, unless
    threads the stage started still run: then its traceback and _leave(1)."""
    if not _left_running(started):
        raise   # called from an except block: re-raises the exception it handles
    traceback.print_exc()
    _leave(1, started)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a CoverpopError or a failed write exits 1 with one line (no
    traceback wall); Ctrl-C and SIGTERM exit 130 within a second, whatever threads are left.
    A failure leaves through _leave, so threads it left running cannot turn the exit code into
    an abort."""
    # SIGTERM (a CI timeout, `kill`) stops the stage the way Ctrl-C does, and so does SIGINT even
    # when a shell started us in the background with it ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _watch_interrupts()
    warnings.showwarning = _one_line_warning
    started = set(threading.enumerate())
    try:
        main()
    except CoverpopError as err:
        print(f"error: {redact_text(err)}", file=sys.stderr)   # no credential in any output
        _leave(1, started)
    except OSError as err:   # one that no write of ours caught: a library's, or a read
        named = err.filename2 or err.filename   # a copy or rename: the destination
        name = os.fsdecode(named) if named else None
        if err.errno in WRITE_ERRNOS:
            found = str(disk_error(err, name))
        elif err.errno in _DISK and name:
            found = (f"{name}: {_DISK[err.errno][0]} ({errno.errorcode[err.errno]}); check it "
                     "and the folders above it, then run again")
        else:
            _crash(started)
        print(f"error: {redact_text(found)}", file=sys.stderr)
        _leave(1, started)
    except KeyboardInterrupt:
        _exit_interrupted()
    except SystemExit as stop:   # the stage's own (scrape_images: 130 after Ctrl-C)
        _leave(stop.code, started)
    except BaseException:        # a bug
        _crash(started)
