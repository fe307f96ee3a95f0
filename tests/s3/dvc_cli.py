"""Run dvc and git in a temp repo the way a user would, and snapshot what is on disk."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def run(args: list[str], cwd: Path, env: dict[str, str], check: bool = True
        ) -> subprocess.CompletedProcess:
    """`dvc ...` (through this interpreter) or `git ...`; stdout+stderr together in .stdout."""
    cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else args
    done = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}) in {cwd}:\n"
                             f"{done.stdout}")
    return done


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root except git's internals and dvc's tmp/lock files."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith((".git/", ".dvc/tmp/")):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
