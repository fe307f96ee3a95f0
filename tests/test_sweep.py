"""A sweep through DVC's experiment queue, as the README tells a user to run one."""

import json
import time

import pytest
from conftest import copy_built, run
from test_pipeline import experiments

pytestmark = pytest.mark.slow


def test_queue_a_tiny_grid_and_compare(built_pristine, tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))  # shared by the queued runs
    repo = copy_built(built_pristine, tmp_path / "repo")  # the tiny demo after `dvc repro`
    run("git add -A && git -c user.name=t -c user.email=t@t commit -qm baseline", repo)

    run(["dvc", "exp", "run", "--queue", "-S", "model=resnet10t,test_resnet"], repo)
    assert run(["dvc", "queue", "status"], repo).stdout.count("Queued") == 2
    run(["dvc", "queue", "start", "--jobs", "1"], repo)
    deadline = time.time() + 600
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)   # each look is a dvc start (~1 CPU s, taken from the queued runs)
    run(["dvc", "queue", "stop", "--kill"], repo, check=False)
    assert "Failed" not in status and "Success" in status, status

    records = experiments(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    grid = {}
    for r in records:
        grid[r["params"]["params.yaml"]["data"]["model"]] = \
            r["metrics"]["metrics/train/metrics.json"]["data"]
    assert {"resnet10t", "test_resnet"} <= set(grid)
    for metrics in grid.values():  # each run reports its own model next to its blank baseline
        assert set(metrics) == {"best_val_mae", "blank_val_mae"}
    assert grid["resnet10t"]["best_val_mae"] != grid["test_resnet"]["best_val_mae"]
