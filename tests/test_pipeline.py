"""End to end, as a user runs it: `dvc repro` in a fresh repo, then `dvc exp run -S model=...`."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import EXPERIMENT, TINY_PARAMS, run
from PIL import Image

pytestmark = pytest.mark.slow


def lock_outputs(repo: Path) -> list[Path]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return [repo / out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]


def experiments(show: list) -> list[dict]:
    """Every (params, metrics) record in `dvc exp show --json`, whatever its nesting."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data and node.get("rev") != "workspace":
                found.append(data)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(show)
    return found


def test_repro_gives_every_output_and_a_second_repro_runs_nothing(built_repo):
    repo = built_repo
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(stages) <= set(lock)
    for path in lock_outputs(repo):
        assert path.exists(), path
    report = json.loads((repo / "metrics/eval/report.json").read_text())
    assert {"model", "baseline_mean", "baseline_random", "baseline_genre_year",
            "gain_vs_mean", "gain_vs_genre_year"} <= set(report)
    ci = report["gain_vs_mean"]["spearman"]
    assert ci["ci_low"] <= ci["value"] <= ci["ci_high"]
    headline = json.loads((repo / "metrics/evaluate.json").read_text())
    # the headline is copied, not recomputed
    assert headline["model"]["spearman"] == report["model"]["spearman"]
    assert headline["model"]["mae"] == report["model"]["mae"]
    # out of fold, every kept cover: a fine-tuned resnet has genre + year and the cover traits
    assert headline["oof"]["covers"] == len(pd.read_csv(repo / "data/split.csv"))
    assert headline["oof"]["metadata_only"]["spearman"] == \
        report["oof"]["models"]["metadata_only"]["spearman"]["value"]
    assert Image.open(repo / "metrics/eval/verdict.png").format == "PNG"
    assert Image.open(repo / "metrics/eval/gallery.png").format == "PNG"
    preds = pd.read_csv(repo / "metrics/eval/predictions.csv")
    assert len(preds) == report["test_covers"] and preds["predicted"].between(0, 100).all()
    assert "step" in json.loads((repo / "metrics/train/live/metrics.json").read_text())
    assert "Stage 'train' didn't change" in run(["dvc", "repro"], repo).stdout  # nothing re-runs


def test_an_experiment_with_another_model_carries_its_own_metrics(built_with_experiment):
    # the session's queued grid on the built demo (conftest.SWEEP): its point with another model
    show = json.loads(run(["dvc", "exp", "show", "--json"], built_with_experiment).stdout)
    records = experiments(show)
    models = {r["params"]["params.yaml"]["data"]["model"]: r for r in records}
    assert {TINY_PARAMS["model"], EXPERIMENT["model"]} <= set(models)
    for record in models.values():
        metrics = record["metrics"]["metrics/evaluate.json"]["data"]
        assert "spearman" in metrics["model"]
    a, b = (models[m]["metrics"]["metrics/evaluate.json"]["data"]["model"]
            for m in (TINY_PARAMS["model"], EXPERIMENT["model"]))
    assert a != b  # each experiment carries its own metrics


def test_bad_param_fails_the_stage_with_one_line(tiny_repo):
    from conftest import set_params

    set_params(tiny_repo, {"select.strategy": "best"})
    proc = run(["dvc", "repro", "select_tracks"], tiny_repo, check=False)
    assert proc.returncode != 0
    assert "error: params.yaml: select.strategy='best' is not one of" in proc.stderr
    assert "Traceback" not in proc.stderr
