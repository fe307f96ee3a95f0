"""Issue 12, option 5: does the ridge probe gain from test-time flips or a second backbone?

On the weak-demo workspaces that bench_real_covers.py builds (--work, one per seed), fits the
same ridge probe as `train.head: ridge` (penalty by 5-fold CV on train only) on frozen features:
  lite0                       tf_efficientnet_lite0 at 224 px (the recommended line)
  lite0 + flips               each cover's features averaged with its mirror image's
  lite0 + lite1               the two backbones' features side by side (lite1 at 240 px)
  lite0 + lite1 + flips
and reports, mean ± sd over seeds, test Spearman with popularity and with the demo's planted
cover truth, and the CPU seconds spent on features. Packaged ImageNet weights: offline.

    PYTHONPATH=src python bench/bench_real_covers.py            # the workspaces, first
    PYTHONPATH=src python bench/bench_probe_variants.py --work /tmp/bench-rc
    PYTHONPATH=src python bench/bench_probe_variants.py --smoke   # seconds: one tiny workspace
"""

from __future__ import annotations

import argparse
import os
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
from coverpop.train.models import CoverRegressor
from coverpop.train.pretrained import resolve_weights
from coverpop.train.probe import ridge_cv
from coverpop.tracks.demo import EFFECTS

BACKBONES = {"lite0": ("tf_efficientnet_lite0", 224), "lite1": ("tf_efficientnet_lite1", 240)}
VARIANTS = {"lite0": (["lite0"], False), "lite0 + flips": (["lite0"], True),
            "lite0 + lite1": (["lite0", "lite1"], False),
            "lite0 + lite1 + flips": (["lite0", "lite1"], True)}
SMOKE_PX = 32   # --smoke: every backbone at this size


def features(name: str, covers: tuple, flip: bool) -> tuple[np.ndarray, float]:
    """(features of the covers, or of their mirror images; CPU seconds)."""
    model_name, size = BACKBONES[name]
    weights = resolve_weights(model_name, "package")
    model = CoverRegressor(model_name, size, weights.mean, weights.std, "linear", 0,
                           weights=weights)
    images = load_covers(*covers, size, progress=False)[:]
    if flip:
        images = images.flip(-1)
    t0 = time.process_time()
    feats = embeddings.compute(model, images, torch.device("cpu"), progress=False)
    return feats.double().numpy(), time.process_time() - t0


def one_seed(ws: Path) -> dict[str, dict]:
    rows = pd.read_csv(ws / "data" / "split.csv", dtype={"track_id": str})
    rows = rows[rows["split"].isin(["train", "test"])].reset_index(drop=True)
    covers = (ws / "data" / "shards", list(rows["cover_id"].astype(str)), list(rows["sha256"]))
    e = EFFECTS[yaml.safe_load((ws / "params.yaml").read_text())["data"]["demo"]["effects"]]
    truth = (e.face * rows["demo_face"] + e.saturation * rows["demo_saturation"]
             + e.text * rows["demo_text"]).to_numpy()
    y = rows["popularity"].to_numpy(float)
    tr, te = (rows["split"] == "train").to_numpy(), (rows["split"] == "test").to_numpy()
    feats, cpu = {}, {}
    for name in BACKBONES:
        for flip in (False, True):
            feats[name, flip], cpu[name, flip] = features(name, covers, flip)
    out = {}
    for variant, (names, flips) in VARIANTS.items():
        parts = [(feats[n, False] + feats[n, True]) / 2 if flips else feats[n, False]
                 for n in names]
        x = np.hstack(parts)
        fit = ridge_cv(x[tr], y[tr], seed=0)
        pred = fit.predict(x[te])
        out[variant] = {"spearman": float(spearmanr(pred, y[te]).statistic),
                        "truth": float(spearmanr(pred, truth[te]).statistic),
                        "cpu_s": sum(cpu[n, f] for n in names for f in ((False, True) if flips
                                                                          else (False,)))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="default /tmp/bench-real-covers; with --smoke: a "
                    "temporary one (or this one, kept: its tiny workspace is reused)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if not args.smoke:
        args.work = args.work or Path("/tmp/bench-real-covers")
        return measure(args)
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_real_covers as rc   # builds the workspaces this bench reads

    # bench_real_covers' tiny workspace (no analyze: the probe reads none), both backbones at
    # 32 px, one seed
    args.seeds = [0]
    BACKBONES.update({k: (name, SMOKE_PX) for k, (name, _) in BACKBONES.items()})
    with rc.smoke_work(args.work) as args.work:
        rc.workspace(args.work, 0, args.work / "cache", rc.SMOKE_DEMO, analyze=False)
        results = measure(args)
    bad = [v for v, r in results[0].items() if not (-1 <= r["spearman"] <= 1 and r["cpu_s"] > 0)]
    if bad or list(results[0]) != list(VARIANTS):
        raise SystemExit(f"smoke: no sensible Spearman or CPU time for {bad or 'some variants'}")


def measure(args) -> dict[int, dict[str, dict]]:
    os.environ.setdefault("COVERPOP_CACHE", str(args.work / "cache"))
    results = {}
    for seed in args.seeds:
        results[seed] = one_seed(args.work / f"seed{seed}")
        print(f"seed {seed}: " + "; ".join(f"{v}: {r['spearman']:.3f} / truth {r['truth']:.3f}"
                                           for v, r in results[seed].items()), flush=True)
    print("\n| probe features | test Spearman | ranks the planted cover truth | CPU s for "
          "features (per seed) |\n|---|---|---|---|")
    for variant in VARIANTS:
        rs = [results[s][variant] for s in args.seeds]
        sp, tr = np.array([r["spearman"] for r in rs]), np.array([r["truth"] for r in rs])
        print(f"| {variant} | {sp.mean():.3f} ± {sp.std(ddof=1):.3f} | {tr.mean():.3f} ± "
              f"{tr.std(ddof=1):.3f} | {np.mean([r['cpu_s'] for r in rs]):.0f} |")
    return results


if __name__ == "__main__":
    main()
