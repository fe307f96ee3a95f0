"""`dvc exp show` keeps to the headline: at most 16 metric columns over all metrics files."""

import json

import pytest
from conftest import run

from coverpop.evaluate.report import HEADLINE, headline

COLUMN_BUDGET = 16


def numeric_leaves(node, prefix="") -> list[str]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in numeric_leaves(v, f"{prefix}{k}.")]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return [prefix.rstrip(".")]
    return []


def test_headline_picks_dotted_keys_and_skips_missing_ones():
    report = {"test_covers": 9, "model": {"mae": 1.0, "pearson": 0.2},
              "gain_vs_mean": {"spearman": {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2},
                               "mae": {"value": 3.0}}}
    assert headline(report) == {"test_covers": 9, "model": {"mae": 1.0}}
    assert headline(report, ("gain_vs_mean.spearman.ci_low", "model.rmse", "nothing.here")) == \
        {"gain_vs_mean": {"spearman": {"ci_low": 0.0}}}


@pytest.mark.slow
def test_demo_metrics_fit_the_column_budget(built_repo):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], built_repo).stdout)
    (workspace,) = shown.values()   # one revision: the workspace (its key is "" in dvc 3.6x)
    files = workspace["data"]
    columns = {f"{path}:{leaf}" for path, entry in files.items()
               for leaf in numeric_leaves(entry.get("data", {}))}
    assert len(columns) <= COLUMN_BUDGET, sorted(columns)
    # ... and the headline is really there: every evaluate key and both train numbers.
    assert {f"metrics/evaluate.json:{k}" for k in HEADLINE} <= columns
    # the out-of-fold answer (a fine-tuned backbone: genre + year and the cover traits' step)
    assert {"metrics/evaluate.json:oof.covers", "metrics/evaluate.json:oof.metadata_only.spearman",
            "metrics/evaluate.json:oof.interpretable_gain.spearman"} <= columns
    assert {"metrics/train/metrics.json:best_val_mae",
            "metrics/train/metrics.json:blank_val_mae"} <= columns
