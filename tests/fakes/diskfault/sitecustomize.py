"""A disk that fails, for a machine where the test may not mount a small tmpfs or a read-only
bind: put this folder on PYTHONPATH and set

    COVERPOP_DISK_FAULT=ENOSPC:<bytes>:<folder>   writes under <folder> fail with ENOSPC once
                                                  <bytes> have been written there in all
    COVERPOP_DISK_FAULT=EROFS:0:<folder>          opening a file for writing, making a folder
                                                  or renaming under <folder> fails with EROFS

Python imports sitecustomize at start-up, so a stage run as a subprocess gets the faulty disk
from its first write. Only files opened through open()/io.open/pathlib and os.mkdir/os.replace/
os.rename are affected: that is every write coverpop makes.
"""

import builtins
import errno
import io
import os

_spec = os.environ.get("COVERPOP_DISK_FAULT", "")
if _spec:
    _kind, _budget, _folder = _spec.split(":", 2)
    _code = getattr(errno, _kind)
    _folder = os.path.abspath(_folder) + os.sep
    _left = [int(_budget)]
    _open, _mkdir, _replace, _rename = io.open, os.mkdir, os.replace, os.rename

    def _under(path) -> bool:
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(_folder)
        except TypeError:
            return False     # a file descriptor

    def _fail(path=None):
        raise OSError(_code, os.strerror(_code), *([os.fsdecode(path)] if path else []))

    class _Filling:
        """A file on the failing disk: writes go through until the budget is spent."""

        def __init__(self, f):
            self._f = f

        def write(self, data):
            size = len(data)
            if size > _left[0]:
                if _left[0] > 0:          # what fits is written, like a real disk filling up
                    self._f.write(data[:_left[0]])
                    self._f.flush()
                _left[0] = 0
                _fail()
            _left[0] -= size
            return self._f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __iter__(self):
            return iter(self._f)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def open(file, mode="r", *args, **kwargs):
        if _under(file) and any(c in mode for c in "wax+"):
            if _code != errno.ENOSPC:
                _fail(file)
            return _Filling(_open(file, mode, *args, **kwargs))
        return _open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _code != errno.ENOSPC and _under(path) and not os.path.isdir(path):
            _fail(path)
        return _mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if _code != errno.ENOSPC and _under(dst):
            _fail(src)
        return _replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        if _code != errno.ENOSPC and _under(dst):
            _fail(src)
        return _rename(src, dst, *args, **kwargs)

    builtins.open = io.open = open
    os.mkdir, os.replace, os.rename = mkdir, replace, rename
