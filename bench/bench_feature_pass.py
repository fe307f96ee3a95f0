"""The frozen-feature pass on CPU: the path before (plain forward) and now (BatchNorm folded into
the convs), by memory layout and batch size, per packaged backbone.

Features of the same random covers (uint8, each backbone at its own resolution: lite0 224 px,
lite1 240, lite2 260) through `embeddings.compute`, as the train and evaluate stages call it
(the folded path's one-time cost, a copy and three 2-image forwards, included); CPU seconds of
this process (less disturbed by other load than wall time), ratios against the path before
(channels_last, batch 128, plain forward: what the probe ran) in the same run, and the largest
difference in the features from the plain contiguous pass (every path must give the same
numbers to rounding).

    PYTHONPATH=src nice -n 10 python bench/bench_feature_pass.py --covers 256
    PYTHONPATH=src python bench/bench_feature_pass.py --smoke   # seconds, tiny data: still runs?
"""

from __future__ import annotations

import argparse
import time

import torch

from coverpop.train import embeddings
from coverpop.train.models import CoverRegressor
from coverpop.train.pretrained import resolve_weights

BACKBONES = {"lite0": ("tf_efficientnet_lite0", 224), "lite1": ("tf_efficientnet_lite1", 240),
             "lite2": ("tf_efficientnet_lite2", 260)}
# (layout, batch, BatchNorm folded); the first is the reference for |Δ features|, the second
# the path before (the ratios' baseline)
PATHS = (("contiguous", 128, False), ("channels_last", 128, False),
         ("channels_last", 128, True), ("channels_last", 32, True), ("contiguous", 128, True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--covers", type=int, default=256)
    ap.add_argument("--backbones", nargs="+", default=["lite0"], choices=list(BACKBONES))
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, tiny data: does it still run? (4 covers, lite0 at 32 px)")
    args = ap.parse_args()
    if args.smoke:
        args.covers, args.backbones = 4, ["lite0"]
        BACKBONES["lite0"] = (BACKBONES["lite0"][0], 32)
    print(f"torch threads: {torch.get_num_threads()}; {args.covers} covers\n")
    print("| backbone | layout, batch, BatchNorm | CPU s | vs before (channels_last, 128, "
          "plain) | max |Δ features| |")
    print("|---|---|---|---|---|")
    for name in args.backbones:
        model_name, size = BACKBONES[name]
        w = resolve_weights(model_name, "package")
        model = CoverRegressor(model_name, size, w.mean, w.std, "linear", 0, weights=w).eval()
        x = torch.randint(0, 256, (args.covers, 3, size, size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        embeddings.compute(model, x[:8], torch.device("cpu"), progress=False)  # warm up
        ref = before = None
        for layout, batch, fold in PATHS:
            cl = layout == "channels_last"
            model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            t0 = time.process_time()
            feats = embeddings.compute(model, x, torch.device("cpu"), batch_size=batch,
                                       channels_last=cl, progress=False, fold=fold)
            cpu = time.process_time() - t0
            ref = feats if ref is None else ref
            if (layout, batch, fold) == PATHS[1]:
                before = cpu
            ratio = f"{before / cpu:.2f}×" if before else "–"
            print(f"| {name} {size} px | {layout}, {batch}, {'folded' if fold else 'plain'} | "
                  f"{cpu:.1f} | {ratio} | {(feats - ref).abs().max().item():.1e} |", flush=True)
            diff = (feats - ref).abs().max().item()
            if args.smoke and not (feats.shape[0] == args.covers and diff < 1e-3):
                raise SystemExit(f"bench_feature_pass: {layout}, {batch}: features of shape "
                                 f"{tuple(feats.shape)}, {diff:.1e} from the first pass")


if __name__ == "__main__":
    main()
