"""bench/time_stages.py (the per-stage timings docs/speed.md quotes) in its smoke mode."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, env

pytestmark = pytest.mark.slow


def test_time_stages_smoke_times_each_stage_in_order(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/time_stages.py"), "--work",
                           str(tmp_path / "work"), "--smoke", "--json", str(out)],
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["stages"]
    assert [r["stage"] for r in rows] == ["inputs", "fetch_csv", "select_tracks"]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in rows)
    assert (tmp_path / "work/repo/data/selected.csv").is_file()  # the stages really ran
    assert proc.stdout.splitlines()[-1].startswith("total")
