"""Stage evaluate: every kept cover out of fold, and the model and baselines on the test split.

Out of fold (evaluate.cv_folds folds; `coverpop/evaluate/crossfit.py`): metadata → + interpretable
cover features (the analyze stage's) → + a frozen backbone's features, each step's gain with a
paired CI, and the covers alone. The test split: the trained checkpoint itself (comparable with
fine-tuned models), the baselines, genre + year with and without the cover.
Writes the headline numbers to the metrics file (`dvc exp show` columns) and the full report,
predictions, the verdict figure, gallery and Grad-CAM overlays to the plots folder.
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from pathlib import Path

import pandas as pd
import torch

from coverpop.core.atomic import write_csv, write_json
from coverpop.core.errors import run_stage
from coverpop.core.metrics import gain_ci, regression_metrics
from coverpop.core.params import load_params, stage_paths
from coverpop.covers.store import CoverStore
from coverpop.evaluate import crossfit
from coverpop.evaluate.baselines import (
    genre_year_baseline,
    mean_baseline,
    random_baseline,
)
from coverpop.evaluate.metadata import (
    cover_features,
    cover_value_report,
    fit_cover_value,
    metadata_columns,
)
from coverpop.evaluate.report import gallery, headline, predictions_frame
from coverpop.evaluate.verdict import verdict_figure
from coverpop.evaluate.saliency import explain_test_covers
from coverpop.train import embeddings
from coverpop.train.checkpoint import load_predictor
from coverpop.train.data import load_covers

GAIN_METRICS = ("mae", "rmse", "r2", "spearman")


def main() -> None:
    args = stage_paths("split", "store", "model", "metrics_out", "plots_dir", "features")
    params = load_params()
    e, seed = params["evaluate"], int(params["seed"])
    plots = Path(args.plots_dir)

    rows = pd.read_csv(args.split, dtype={"track_id": str, "cover_id": str, "album_id": str,
                                          "sha256": str})
    kept = rows[rows["split"].isin(crossfit.KEPT)].reset_index(drop=True)
    kept.attrs["group_by"] = params["split"]["group_by"]
    is_train, is_test = (kept["split"] == "train").to_numpy(), (kept["split"] == "test").to_numpy()
    train, test = kept[is_train], kept[is_test]
    predictor = load_predictor(args.model)
    store = CoverStore(args.store)
    # A frozen backbone: features of every kept cover, from the train stage's per-cover cache
    # (only the test covers are new); the checkpoint's head predicts the test covers from them.
    learned = crossfit.frozen_cover_features(predictor, kept, store, progress=True)
    if learned is not None:
        test_features = torch.from_numpy(learned[is_test]).float()
    else:
        # A fine-tuned backbone: the test covers' features, once; the head predicts from them
        # (model(x) is forward_head(features(x))), and the cover-value ridge below reuses them.
        test_images = load_covers(store, test["cover_id"].tolist(), test["sha256"].tolist(),
                                  predictor.image_size)
        test_features = embeddings.compute(predictor.model, test_images, torch.device("cpu"),
                                           progress=False)
    with torch.no_grad():
        head = predictor.model.forward_head(test_features)
    predicted = head.numpy() * float(predictor.ckpt["target_scale"])
    y = test["popularity"].to_numpy()

    baselines = {"mean": mean_baseline(train, test), "random": random_baseline(train, test, seed)}
    genre_year = genre_year_baseline(train, test, seed)
    if genre_year is not None:
        baselines["genre_year"] = genre_year
    report = {"test_covers": len(test), "model": regression_metrics(y, predicted)}
    for name, base in baselines.items():
        report[f"baseline_{name}"] = regression_metrics(y, base)
    for name, base in baselines.items():
        report[f"gain_vs_{name}"] = {m: gain_ci(y, predicted, base, m, int(e["bootstrap"]), seed)
                                     for m in GAIN_METRICS}
    # Does the cover add anything to genre and year? Ridge on metadata vs cover features + metadata.
    if metadata_columns(train):
        if learned is not None:
            x_train, x_test = learned[is_train], learned[is_test]
        else:
            x_train = cover_features(predictor, args.split, store)
            x_test = test_features.double().numpy()
        value = fit_cover_value(train, test, x_train, x_test, seed)
        value_headline, detail = cover_value_report(y, value, int(e["bootstrap"]), seed)
        report.update(value_headline)
        write_json(plots / "metadata.json", detail)
    else:
        # a declared out (dvc.yaml), so it is always written: here it says why it is empty
        skipped = "the tracks have no genre or year column"
        write_json(plots / "metadata.json", {"metadata_columns": [], "skipped": skipped})
        print(f"evaluate: {skipped}: metadata_only, "
              "model_with_metadata and cover_added_value skipped")
    g = report["gain_vs_mean"]["spearman"]   # the mean's Spearman is 0: the model's own CI
    test_split = ({**g, "value": report["model"]["spearman"], "covers": len(test)}
                  if learned is not None else None)
    oof = out_of_fold(kept, learned, args.features, int(e["cv_folds"]), int(e["bootstrap"]),
                      seed, plots, test_split)
    report["oof"] = oof
    write_json(plots / "report.json", report)
    write_json(args.metrics_out, {**headline(report), "oof": crossfit.headline(oof)})

    write_csv(plots / "predictions.csv", predictions_frame(test, predicted))
    gallery(test, predicted, store, plots / "gallery.png", per_row=int(e["gallery"]))
    # insight: where the model looks on its best- and worst-predicted covers (Grad-CAM)
    explain_test_covers(predictor, test, predicted, store, plots / "saliency.png",
                        n=max(1, int(e["gallery"]) // 2))
    m, g = report["model"], report["gain_vs_mean"]["spearman"]
    print(f"evaluate: test split ({len(test)} covers): MAE {m['mae']:.2f}  RMSE {m['rmse']:.2f}  R² {m['r2']:.3f}  "
          f"Spearman {m['spearman']:.3f} (vs mean: +{g['value']:.3f}, 95% CI "
          f"{g['ci_low']:.3f}..{g['ci_high']:.3f}) -> {args.metrics_out}")
    if "cover_added_value" in report:
        v = report["cover_added_value"]["spearman"]
        print(f"evaluate: genre + year Spearman {report['metadata_only']['spearman']:.3f}, with the "
              f"cover {report['model_with_metadata']['spearman']:.3f} (added: {v['value']:+.3f}, "
              f"95% CI {v['ci_low']:+.3f}..{v['ci_high']:+.3f}; test split)")
    for line in verdict_lines(oof):
        print(line)


def out_of_fold(kept, learned, features_path, folds: int, n_boot: int, seed: int,
                plots: Path, test_split: dict | None) -> dict:
    """Every step's ridge fitted K times, each cover predicted by the fit that never saw it."""
    interp, why = crossfit.interpretable_table(features_path, kept)
    if interp is None:
        print(f"evaluate: out of fold without the interpretable cover features: {why}")
    if learned is None:
        print("evaluate: out of fold without learned cover features: the backbone was "
              "fine-tuned (its features have seen the train covers' targets); a frozen "
              "backbone (train.freeze_backbone: true) is cross-fitted")
    fold = crossfit.split_folds(kept, folds, kept.attrs["group_by"], seed)
    fitted = crossfit.crossfit(kept, fold, learned, interp, seed)
    oof = crossfit.summarize(fitted, n_boot, seed)
    write_csv(plots / "oof_predictions.csv", crossfit.predictions_table(fitted))
    verdict_figure(oof, plots / "verdict.png", test_split)
    return oof


def verdict_lines(oof: dict) -> list[str]:
    lines = []
    for name, m in oof["models"].items():
        s = m["spearman"]
        lines.append(f"evaluate: out of fold ({oof['covers']} covers, {oof['folds']} folds) "
                     f"{name}: Spearman {s['value']:.3f} (95% CI {s['ci_low']:.3f}.."
                     f"{s['ci_high']:.3f}), MAE {m['mae']['value']:.2f}")
    for name, g in oof["gains"].items():
        s = g["spearman"]
        lines.append(f"evaluate: out of fold {name}: {s['value']:+.3f} "
                     f"(95% CI {s['ci_low']:+.3f}..{s['ci_high']:+.3f})")
    return lines


if __name__ == "__main__":
    run_stage(main)
