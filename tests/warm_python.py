"""A Python that imports torch, timm and pandas once and runs each script in a fork of itself.

A bench smoke that imports torch spends most of its seconds importing it (5 s of the 7.4 s
`python bench/bench_train.py --smoke` takes on the 2-core VM). Forked from here, the script runs
as `__main__` in a process of its own, with its own argv, environment, cwd, stdout and stderr,
and exits as Python would (a traceback and 1 on an exception), but finds those modules loaded.

The parent (`WarmPython`) writes one JSON request per line on our stdin and reads the exit code
back; we exit when stdin closes (when the test worker that started us exits). Variables that the preloaded modules read at import time
(OMP_NUM_THREADS, HF_HUB_OFFLINE) must be the same in every request as in our own environment.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

PRELOAD = ["torch", "timm", "pandas", "yaml", "PIL.Image", "coverpop.train.loop",
           "coverpop.train.data"]


class WarmPython:
    """`run(...)` is `subprocess.run([sys.executable, script, *args], ...)` with its imports
    already paid."""

    def __init__(self, env: dict):
        self.env = env
        self.proc = subprocess.Popen([sys.executable, __file__], env=env, bufsize=0,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _line(self, timeout: float | None = None) -> str:
        """One reply line, read unbuffered (so select() sees exactly what is left)."""
        data = b""
        while not data.endswith(b"\n"):
            if timeout is not None and not select.select([self.proc.stdout], [], [], timeout)[0]:
                raise TimeoutError
            byte = os.read(self.proc.stdout.fileno(), 1)
            if not byte:
                raise RuntimeError(f"the warm Python exited ({self.proc.wait()})")
            data += byte
        return data.decode()

    def run(self, script: Path, args: list[str], cwd: Path, env: dict,
            timeout: float) -> subprocess.CompletedProcess:
        for name in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "PYTHONPATH"):
            assert env.get(name) == self.env.get(name), f"{name} differs from the warm Python's"
        out, err = Path(cwd) / ".warm-stdout", Path(cwd) / ".warm-stderr"
        self.proc.stdin.write((json.dumps({"argv": [str(script), *args], "cwd": str(cwd),
                                           "env": env, "stdout": str(out),
                                           "stderr": str(err)}) + "\n").encode())
        pid = int(self._line())
        try:
            code = int(self._line(timeout))
        except TimeoutError:
            os.kill(pid, 9)
            self._line()
            raise subprocess.TimeoutExpired([script, *args], timeout) from None
        result = subprocess.CompletedProcess([sys.executable, str(script), *args], code,
                                             out.read_text(), err.read_text())
        out.unlink()
        err.unlink()
        return result


def _child(request: dict) -> None:
    """In the fork: become the script's process, run it, exit as `python script` would."""
    import runpy
    import tempfile
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None   # gettempdir() caches: the request's TMPDIR holds from here on
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdin = open(os.devnull)
    sys.argv = request["argv"]
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))   # as `python script`
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:   # sys.exit("message"): printed, exit 1
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(code)   # a normal exit: the script's atexit handlers and finalizers run


def main() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
