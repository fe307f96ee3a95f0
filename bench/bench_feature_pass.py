"""The frozen-feature pass on CPU: memory layout and batch size, per packaged backbone.

Features of the same random covers (uint8, each backbone at its own resolution: lite0 224 px,
lite1 240, lite2 260) through `embeddings.compute`, as the train and evaluate stages call it;
CPU seconds of this process (less disturbed by other load than wall time), ratios against the
contiguous batch-128 pass of the same backbone in the same run, and the largest difference in
the features (channels_last must give the same numbers).

    PYTHONPATH=src nice -n 10 python bench/bench_feature_pass.py --covers 96
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--covers", type=int, default=96)
    ap.add_argument("--backbones", nargs="+", default=["lite0"], choices=list(BACKBONES))
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, tiny data: does it still run? (4 covers, lite0 at 32 px)")
    args = ap.parse_args()
    if args.smoke:
        args.covers, args.backbones = 4, ["lite0"]
        BACKBONES["lite0"] = (BACKBONES["lite0"][0], 32)
    print(f"torch threads: {torch.get_num_threads()}; {args.covers} covers\n")
    print("| backbone | layout, batch | CPU s | vs contiguous, 128 | max |Δ features| |")
    print("|---|---|---|---|---|")
    for name in args.backbones:
        model_name, size = BACKBONES[name]
        w = resolve_weights(model_name, "package")
        model = CoverRegressor(model_name, size, w.mean, w.std, "linear", 0, weights=w).eval()
        x = torch.randint(0, 256, (args.covers, 3, size, size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
        embeddings.compute(model, x[:8], torch.device("cpu"), progress=False)  # warm up
        base = base_cpu = None
        for layout, batch in (("contiguous", 128), ("contiguous", 32), ("channels_last", 128),
                              ("channels_last", 32)):
            cl = layout == "channels_last"
            model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            t0 = time.process_time()
            feats = embeddings.compute(model, x, torch.device("cpu"), batch_size=batch,
                                       channels_last=cl, progress=False)
            cpu = time.process_time() - t0
            if base is None:
                base, base_cpu = feats, cpu
            diff = (feats - base).abs().max().item()
            print(f"| {name} {size} px | {layout}, {batch} | {cpu:.1f} | {base_cpu / cpu:.2f}× | "
                  f"{diff:.1e} |", flush=True)
            if args.smoke and not (feats.shape[0] == args.covers and diff < 1e-3):
                raise SystemExit(f"bench_feature_pass: {layout}, {batch}: features of shape "
                                 f"{tuple(feats.shape)}, {diff:.1e} from the contiguous pass")


if __name__ == "__main__":
    main()
