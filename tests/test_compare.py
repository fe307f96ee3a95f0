"""`coverpop compare` on experiment JSON with a known answer.

The JSON has the shape `dvc exp show --json` printed (dvc 3.67) for a tiny repo: a workspace
row, the baseline commit's row, and its experiments, each a list of `revs` whose `data` holds
`params` and `metrics` per file (plus deps/outs, left out here)."""

import json
import math

import pytest
from scipy import stats

from coverpop.cli import main
from coverpop.compare import group_by_all_but_seed, paired, report, runs_from_exp_show, welch
from coverpop.core.errors import CoverpopError


def rev_data(model: str, seed: int, spearman: float, mae: float, lr: float = 0.002) -> dict:
    return {"rev": "x", "timestamp": "2026-11-26T03:40:00",
            "params": {"params.yaml": {"data": {"model": model, "seed": seed, "image_size": 64,
                                                "train": {"epochs": 8, "lr": lr}}}},
            "metrics": {"metrics/evaluate.json": {"data": {
                            "test_covers": 235, "model": {"mae": mae, "spearman": spearman}}},
                        "metrics/train/metrics.json": {"data": {"best_val_mae": mae + 0.5}}},
            "deps": {}, "outs": {}}


def exp_show(runs: list[tuple], baseline: tuple) -> list:
    """runs/baseline: (model, seed, spearman, mae[, lr])."""
    return [
        {"rev": "workspace", "name": None, "data": rev_data(*baseline), "error": None,
         "experiments": None},
        {"rev": "becd78f2baa3a22885809778e823029321242a57", "name": "main",
         "data": rev_data(*baseline), "error": None,
         "experiments": [{"revs": [{"rev": f"{i:040x}", "name": f"exp-{i}", "data": rev_data(*r),
                                    "error": None, "experiments": None}],
                          "executor": None, "name": f"exp-{i}"} for i, r in enumerate(runs)]},
    ]


A = [("resnet18", s, sp, mae) for s, sp, mae in [(0, 0.60, 11.0), (1, 0.62, 12.0), (2, 0.64, 13.0)]]
B = [("mobilenet", s, sp, mae) for s, sp, mae in [(0, 0.70, 12.5), (1, 0.71, 11.5), (2, 0.72, 12.0)]]


def welch_by_hand(a, b):
    """Welch's t interval from its textbook formula (not from scipy's ttest)."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return mb - ma, mb - ma - half, mb - ma + half


def test_groups_are_everything_but_the_seed_and_repeats_count_once():
    # the baseline commit repeats experiment 0 (same params): it must not count twice
    runs = runs_from_exp_show(exp_show(A + B + [("resnet18", 0, 0.5, 14.0, 0.01)], A[0]))
    groups = group_by_all_but_seed(runs)
    sizes = sorted((dict(g.key)["model"], dict(g.key)["train.lr"], len(g.runs)) for g in groups)
    assert sizes == [('"mobilenet"', "0.002", 3), ('"resnet18"', "0.002", 3),
                     ('"resnet18"', "0.01", 1)]
    assert {r.params["seed"] for g in groups for r in g.runs if len(g.runs) == 3} == {0, 1, 2}
    assert runs[0].metrics["evaluate:model.spearman"] == 0.60
    assert runs[0].metrics["train/metrics:best_val_mae"] == 11.5


def test_welch_matches_the_textbook_interval():
    a, b = [r[2] for r in A], [r[2] for r in B]
    d = welch(a, b, "spearman")
    diff, low, high = welch_by_hand(a, b)
    assert (d.diff, d.low, d.high) == pytest.approx((diff, low, high), abs=1e-9)
    assert d.exceeds_noise and 0 < d.low < d.diff < d.high and d.p < 0.05
    m = welch([r[3] for r in A], [r[3] for r in B], "mae")   # 12 ± 1 vs 12 ± 0.5
    assert not m.exceeds_noise and m.low < 0 < m.high


def test_paired_by_seed_matches_the_textbook_interval():
    a = {0: 0.60, 1: 0.62, 2: 0.64, 7: 0.5}          # seed 7 only in a: not paired
    b = {0: 0.63, 1: 0.66, 2: 0.66}
    d = [0.03, 0.04, 0.02]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    got = paired(a, b, "spearman")
    assert (got.diff, got.low, got.high, got.n_a) == pytest.approx((mean, mean - half,
                                                                     mean + half, 3))
    assert got.exceeds_noise
    assert paired({0: 1.0}, {0: 2.0, 1: 3.0}) is None          # one common seed: no interval


def test_report_prints_mean_sd_n_and_the_verdicts():
    text, out = report(runs_from_exp_show(exp_show(A + B, A[0])), ["model.spearman", "model.mae"])
    assert "resnet18" in text and "mobilenet" in text and "n=3" in text
    assert "0.620 ± 0.020" in text and "0.710 ± 0.010" in text   # mean ± sample sd
    spearman = next(d for d in out["differences"] if d["metric"] == "evaluate:model.spearman")
    assert spearman["exceeds_seed_noise"] and {spearman["a"], spearman["b"]} == \
        {"model=resnet18", "model=mobilenet"}
    mae = next(d for d in out["differences"] if d["metric"] == "evaluate:model.mae")
    assert not mae["exceeds_seed_noise"]
    assert spearman["paired"]["n"] == 3   # same seeds in both groups: paired too
    assert "exceeds the seed noise" in text and "within the seed noise" in text
    g = {g["label"]: g for g in out["groups"]}
    assert g["model=resnet18"]["seeds"] == [0, 1, 2]
    assert g["model=resnet18"]["metrics"]["evaluate:model.spearman"]["sd"] == pytest.approx(0.02)


def test_one_seed_per_group_says_it_cannot_judge():
    text, out = report(runs_from_exp_show(exp_show([A[0], B[0]], A[0])), ["spearman"])
    assert "needs at least 2 seeds per group to measure the seed noise (model=mobilenet has 1, " \
           "model=resnet18 has 1)" in text and out["differences"] == []
    with pytest.raises(CoverpopError, match="at least 2 seeds"):
        welch([0.1], [0.2, 0.3])


def test_cli_reads_saved_json(tmp_path, capsys):
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(exp_show(A + B, A[0])))
    assert main(["compare", "--input", str(saved), "--metric", "spearman", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["groups"]) == 2 and len(out["differences"]) == 1
    assert main(["compare", "--input", str(tmp_path / "missing.json")]) == 1
    assert "missing.json: file not found" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([{"rev": "workspace", "data": {"params": {}, "metrics": {}}}]))
    assert main(["compare", "--input", str(empty)]) == 1
    assert "no experiments with metrics" in capsys.readouterr().err
