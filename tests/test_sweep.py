"""A sweep through DVC's experiment queue, as the README tells a user to run one: the session's
grid (conftest.SWEEP, queued and run by the built_with_experiment fixture)."""

import json

import pytest
from conftest import SWEEP, exp_points, run

pytestmark = pytest.mark.slow


def test_the_queued_grid_ran_every_point_and_compares(built_with_experiment):
    repo = built_with_experiment
    names = [f"{SWEEP['name']}-{i}" for i in range(1, len(SWEEP["model"]) + 1)]
    status = run(["dvc", "queue", "status"], repo).stdout
    for name in names:   # one task per point of the grid, each a success
        assert [line.split()[-1] for line in status.splitlines() if name in line.split()] \
            == ["Success"], status

    found = exp_points(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    assert [found[n][0] for n in names] == SWEEP["model"]   # each point ran its own params
    for _, metrics in found.values():   # each run: its model next to its blank baseline
        assert set(metrics) == {"best_val_mae", "blank_val_mae"}
    commit = found["main"]   # the built demo, committed on main
    # the first point is the commit's own config: restored from the run-cache, the same numbers
    assert found[names[0]] == commit
    assert "Stage 'train' didn't change, skipping" in \
        run(["dvc", "queue", "logs", names[0]], repo).stdout
    assert found[names[1]][1]["best_val_mae"] != commit[1]["best_val_mae"]   # another model
