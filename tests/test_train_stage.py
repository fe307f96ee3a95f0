"""stages/train.py as DVC runs it, in one process and as 2 DDP processes through torchrun (gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import pack_covers, write_params
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "stages" / "train.py"


def make_workspace(root: Path, n: int = 32, size: int = 40, **params) -> Path:
    """A repo-shaped folder: data/split.csv + the cover store data/shards (brightness =
    popularity) + params.yaml."""
    images = root / "data" / "covers" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        level = int(rng.integers(0, 256))
        arr = np.clip(level + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        rel = f"data/covers/images/c{i:03d}.jpg"
        Image.fromarray(arr).save(root / rel, quality=95)
        rows.append({"track_id": f"t{i}", "cover_id": f"c{i:03d}", "album_id": f"a{i}",
                     "file": root / rel, "popularity": round(arr.mean() / 2.55, 1),
                     "split": "val" if i % 4 == 3 else "train"})
    shas = pack_covers(root / "data" / "shards", {r["cover_id"]: r.pop("file") for r in rows})
    rows = [{**r, "sha256": shas[r["cover_id"]]} for r in rows]
    pd.DataFrame(rows).to_csv(root / "data" / "split.csv", index=False)
    top = {k: params.pop(k) for k in ("model", "image_size", "normalization", "seed", "pretrained")
           if k in params}
    base = {"model": "test_vit", "pretrained": False, "image_size": 32, "normalization": "imagenet",
            "seed": 0, **top,
            "train": {"epochs": 2, "batch_size": 8, "augment": False, "warmup_epochs": 0,
                      "blank_baseline": True, **params}}
    write_params(root, base)
    return root


def run_stage(root: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    (root / "tmp").mkdir(exist_ok=True)   # torchrun's torchelastic_* folders go here, not /tmp
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COVERPOP_CACHE": str(root / "cache"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(root / "tmp")}
    args = [str(STAGE), "data/split.csv", "data/shards", "models/model.pt", "metrics/train/live",
            "metrics/train/metrics.json"]
    cmd = [sys.executable, *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def read_metrics(root: Path) -> dict:
    """dvclive's full summary (the metrics file holds only the headline)."""
    return json.loads((root / "metrics" / "train" / "live" / "metrics.json").read_text())


def keys(d: dict, prefix="") -> set:
    out = set()
    for k, v in d.items():
        out |= keys(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k}
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("single"))
    proc = run_stage(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_stage_writes_checkpoint_metrics_and_first_batch(single):
    ckpt = torch.load(single / "models" / "model.pt", map_location="cpu", weights_only=False)
    assert {"model", "image_size", "mean", "std", "output", "head_hidden", "target_scale",
            "state_dict"} <= set(ckpt)
    assert ckpt["model"] == "test_vit" and ckpt["image_size"] == 32
    m = read_metrics(single)
    assert {"train/loss", "val/loss", "val/mae", "val/spearman", "best/val/mae", "best_epoch",
            "best_val_loss", "blank_baseline/val/mae", "blank_baseline/val/spearman"} <= keys(m)
    assert m["step"] == 1  # two epochs logged
    headline = json.loads((single / "metrics" / "train" / "metrics.json").read_text())
    assert headline == {"best_val_mae": round(m["best"]["val"]["mae"], 4),
                        "blank_val_mae": round(m["blank_baseline"]["val"]["mae"], 4)}
    live = single / "metrics" / "train" / "live"
    assert (live / "plots" / "images" / "first_batch.png").is_file()
    tsv = live / "plots" / "metrics" / "val" / "mae.tsv"
    assert len(tsv.read_text().splitlines()) == 3  # header + one row per epoch


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_stage_bad_param_is_one_line(tmp_path):
    root = make_workspace(tmp_path, n=8, loss="hinge")
    proc = run_stage(root)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: params.yaml: train.loss='hinge' is not one of mse, huber, l1"]


@pytest.mark.slow
def test_torchrun_two_processes_gloo_same_format_same_numbers(single, tmp_path):
    """Global batch 8 = 2 ranks × 4: with no BatchNorm (a ViT) and no augmentation the averaged
    gradients equal the single-process ones, so the metrics must agree, not just their format."""
    root = make_workspace(tmp_path)
    proc = run_stage(root, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_metrics(single), read_metrics(root)
    assert keys(one) == keys(two)
    for k in ("train/loss", "val/loss", "val/mae", "best/val/rmse", "blank_baseline/val/mae"):
        a, b = one, two
        for part in k.split("/"):
            a, b = a[part], b[part]
        assert b == pytest.approx(a, rel=1e-3, abs=1e-4), k
    assert (root / "models" / "model.pt").is_file()


def cluster_recipe() -> str:
    """The several-machines command of docs/training.md, as one shell line."""
    text = (REPO / "docs" / "training.md").read_text()
    block = text.split("    torchrun --nnodes=", 1)[1].split("\n\n", 1)[0]
    return ("torchrun --nnodes=" + block).replace("\\\n", " ").replace("\n", " ")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_run_the_docs_cluster_recipe_and_match_one_process(single, tmp_path):
    """Two machines, simulated on 127.0.0.1: two torchrun agents (node rank 0 and 1, one gloo
    process each) meet through c10d rendezvous, each in its own copy of the workspace with its
    own cache, running the docs' command word for word."""
    recipe = cluster_recipe()
    assert "$NODE_RANK" in recipe and "--rdzv-backend=c10d" in recipe
    port = free_port()
    procs = []
    for node in (0, 1):
        root = make_workspace(tmp_path / f"node{node}")
        shutil.copytree(REPO / "stages", root / "stages")   # each machine has its clone
        (tmp_path / f"tmp{node}").mkdir()
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": str(REPO / "src"), "COVERPOP_CACHE": str(root / "cache"),
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path / f"tmp{node}"),
               "NNODES": "2", "NODE_RANK": str(node), "NPROC": "1", "HOST": "127.0.0.1",
               "PORT": str(port)}
        procs.append((root, subprocess.Popen(["bash", "-c", recipe], cwd=root, env=env, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
    outs = []
    for root, proc in procs:
        try:
            outs.append(proc.communicate(timeout=600)[0])
        finally:
            proc.kill()
    for (root, proc), out in zip(procs, outs):
        assert proc.returncode == 0, out[-3000:]
    node0, node1 = procs[0][0], procs[1][0]
    one, two = read_metrics(single), read_metrics(node0)
    assert keys(one) == keys(two)
    for k in ("train/loss", "val/loss", "val/mae", "best/val/rmse", "blank_baseline/val/mae"):
        a, b = one, two
        for part in k.split("/"):
            a, b = a[part], b[part]
        assert b == pytest.approx(a, rel=1e-3, abs=1e-4), k
    assert (node0 / "models" / "model.pt").is_file()
    assert not (node1 / "models").exists() and not (node1 / "metrics").exists()  # rank 0 writes
