"""Stage train: fit a timm model on the train split, keep the best val epoch, save a checkpoint.

One process:    python stages/train.py data/split.csv data/shards models/model.pt metrics/train/live metrics/train/metrics.json
Data-parallel:  torchrun --standalone --nproc_per_node=N stages/train.py <same arguments>
(same params; train.batch_size is the global batch)

dvclive writes the curves, the first batch and its full summary under the live folder; the
metrics file holds only the two numbers `dvc exp show` needs (best val MAE, blank-input val MAE).
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from coverpop.core.errors import run_stage
from coverpop.core.params import load_params, stage_paths


def main() -> None:
    args = stage_paths("split", "store", "model_out", "live_dir", "metrics_out")
    params = load_params()
    # torch, timm and dvclive load after the params are checked: a bad `-S` answers in a
    # second, not after the 6 s those imports take
    from dvclive import Live

    from coverpop.core.atomic import write_json
    from coverpop.train import distributed as dist
    from coverpop.train.checkpoint import save_checkpoint
    from coverpop.train.data import load_split
    from coverpop.train.loop import TrainConfig, run
    from coverpop.train.probe import run_probe

    cfg = TrainConfig.from_params(params)
    dist.setup()
    try:
        cfg.progress = dist.is_main()
        # rank 0 decodes the covers into the cache first; the other ranks then read it
        data, _ = dist.main_first(lambda: load_split(args.split, args.store, cfg.image_size,
                                                     progress=cfg.progress))
        live = Live(args.live_dir, dvcyaml=None, save_dvc_exp=False) if dist.is_main() else None
        # train.head=ridge: the closed-form probe on frozen embeddings instead of the SGD loop
        result, blank, meta = (run_probe if cfg.head == "ridge" else run)(cfg, data, live=live)
        if live is None:
            return
        live.summary.update({"best_epoch": meta["best_epoch"],
                             "best_val_loss": result.history[result.best_epoch].get("val_loss"),
                             "best": {"val": result.val}, "train_mean": result.train_mean})
        if blank is not None:  # the input-independent baseline, next to the real metrics
            live.summary["blank_baseline"] = {"val": blank.val}
        live.end()
        headline = {"best_val_mae": result.val.get("mae")}
        if blank is not None:
            headline["blank_val_mae"] = blank.val.get("mae")
        write_json(args.metrics_out, {k: round(v, 4) for k, v in headline.items() if v is not None})
        save_checkpoint(args.model_out, result.model, **meta)
        line = (f"train: ridge probe, alpha {meta['probe']['alpha']:.3g}" if "probe" in meta
                else f"train: best epoch {meta['best_epoch']}")
        if result.val:
            line += f" (val MAE {result.val['mae']:.2f}, Spearman {result.val['spearman']:.3f}"
            if blank is not None:
                line += f"; blank inputs: MAE {blank.val['mae']:.2f}"
            line += ")"
        print(f"{line} -> {args.model_out}")
    finally:
        dist.teardown()


if __name__ == "__main__":
    run_stage(main)
