"""bench/time_stages.py (the per-stage timings docs/speed.md quotes) in its smoke mode (the only
run of it: tests/test_bench_smoke.py leaves it to this test)."""

import json

import pytest
from conftest import ROOT
from test_bench_smoke import run_smoke

pytestmark = pytest.mark.slow


def test_time_stages_smoke_times_each_stage_in_order(tmp_path):
    out = tmp_path / "rows.json"
    proc = run_smoke(ROOT / "bench/time_stages.py", tmp_path, "--work", str(tmp_path / "work"),
                     "--json", str(out))
    rows = json.loads(out.read_text())["stages"]
    assert [r["stage"] for r in rows] == ["inputs", "fetch_csv", "select_tracks"]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in rows)
    assert (tmp_path / "work/repo/data/selected.csv").is_file()  # the stages really ran
    assert proc.stdout.splitlines()[-1].startswith("total")
