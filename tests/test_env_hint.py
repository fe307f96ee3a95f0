"""A stage run by a Python that lacks the project's packages (the virtualenv not active) fails
with one line saying what to do, not a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted(p for p in (ROOT / "stages").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", STAGES, ids=lambda p: p.stem)
def test_stage_without_its_packages_says_activate_in_one_line(script, tmp_path):
    # -S: no site-packages, -E: no PYTHONPATH: only the standard library is importable, as in
    # a system Python that never had the project installed.
    proc = subprocess.run([sys.executable, "-S", "-E", str(script), *["x"] * 6], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "cannot import" in lines[0]
    assert "source .venv/bin/activate" in lines[0] and sys.executable in lines[0]
