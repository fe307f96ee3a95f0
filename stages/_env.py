"""Imported first by every stage script, before anything outside the standard library.

DVC runs a stage's `cmd` with whatever `python` the shell finds. From a shell where the
project's virtualenv is not active that is another Python, and the stage would die in a
traceback ending in `ModuleNotFoundError`; this turns it into one line saying what to do.
"""

import sys

_default_hook = sys.excepthook


def _one_line(kind, err, tb):
    if issubclass(kind, ModuleNotFoundError):
        print(f"error: {sys.executable} cannot import {err.name!r}: run dvc with the project's "
              "environment active (`source .venv/bin/activate`, or `make repro`; `make install` "
              "sets it up)", file=sys.stderr)
        return
    _default_hook(kind, err, tb)


sys.excepthook = _one_line
