"""Train stage on a GPU vs this machine's CPU, and whether CUDA training repeats bit for bit.

Runs the library's training loop (no DVC needed, so it runs on a bare GPU machine) on demo
covers rendered in-process. Reports wall time per run as a ratio against the CPU run of the same
process, and the sha256 of two CUDA state dicts trained with the deterministic settings of
docs/training.md (CUBLAS_WORKSPACE_CONFIG, torch.use_deterministic_algorithms).

    python bench/bench_gpu_train.py [--albums 1600] [--epochs 8] [--size 64] [--model resnet18]
    python bench/bench_gpu_train.py --smoke    # seconds, tiny data: does it still run?
"""

import argparse
import hashlib
import io
import os
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # before CUDA starts

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coverpop.tracks import demo  # noqa: E402
from coverpop.train.data import CoverTensors  # noqa: E402
from coverpop.train.loop import TrainConfig, run  # noqa: E402


def demo_covers(n_albums: int, size: int) -> CoverTensors:
    tracks = demo.make_tracks(n_albums=n_albums, seed=0).drop_duplicates("album_id")
    images = np.stack([np.asarray(demo.render_cover(row, size).convert("RGB"))
                       for row in tracks.to_dict("records")])
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    pop = torch.tensor(tracks["popularity"].to_numpy(), dtype=torch.float32)
    idx = torch.randperm(len(tracks), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(tracks))
    return CoverTensors(images, pop, idx[:cut].sort().values, idx[cut:].sort().values,
                        f"gpu-bench-{n_albums}-{size}")


def digest(model: torch.nn.Module) -> str:
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


def train(data: CoverTensors, device: str, args) -> tuple[float, str, dict]:
    cfg = TrainConfig(model=args.model, image_size=args.size, epochs=args.epochs,
                      blank_baseline=False, device=device, progress=False, pretrained=False)
    t0 = time.perf_counter()
    result, _, _ = run(cfg, data)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, digest(result.model), result.val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--albums", type=int, default=1600)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--no-cpu", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if args.smoke:
        args.albums, args.epochs, args.size, args.model = 20, 1, 32, "resnet10t"
    torch.use_deterministic_algorithms(True, warn_only=True)
    data = demo_covers(args.albums, args.size)
    print(f"{len(data.train_idx)} train / {len(data.val_idx)} val covers, {args.model}, "
          f"{args.size} px, {args.epochs} epochs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    runs = {}
    if not args.no_cpu:
        runs["cpu"] = train(data, "cpu", args)
    if torch.cuda.is_available():
        print("GPU:", torch.cuda.get_device_name())
        train(data, "cuda", argparse.Namespace(**{**vars(args), "epochs": 1}))   # warm-up
        runs["cuda"] = train(data, "cuda", args)
        runs["cuda again"] = train(data, "cuda", args)
    base = runs.get("cpu", (None,))[0]
    for name, (seconds, sha, val) in runs.items():
        ratio = f"  {base / seconds:5.1f}x the CPU run" if base else ""
        print(f"{name:>10}: {seconds:7.1f} s{ratio}  state sha256 {sha}  "
              f"val MAE {val.get('mae', float('nan')):.3f} Spearman {val.get('spearman', float('nan')):.3f}")
    bad = [name for name, (_, _, val) in runs.items() if not val.get("mae", -1) >= 0]
    if args.smoke and bad:   # nan or missing: the loop did not train
        raise SystemExit(f"bench_gpu_train: no val MAE from the {bad} run")
    if "cuda again" in runs:
        same = runs["cuda"][1] == runs["cuda again"][1]
        print("CUDA runs bit-identical:", same)


if __name__ == "__main__":
    main()
