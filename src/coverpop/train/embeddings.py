"""Frozen-backbone embeddings, computed once and cached on disk, so head-only epochs take seconds.

The key holds everything that changes the numbers: model name and build arguments, the weights'
identity, image size, normalisation, the image set (its content hashes), and the precision.
`by_content` keys the backbone alone and stores features per cover (by its sha256): the train
stage pays for the train and val covers, evaluate only for the test covers, and a run on another
split of the same covers for none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from coverpop.core.atomic import atomic_path
from coverpop.core.cache import cache_root
from coverpop.train.data import digest

_VERSION = "emb-v1"


def embedding_key(model: str, weights_key: str, image_size: int, mean, std, image_key: str,
                  build_kwargs: dict, precision: str) -> str:
    return digest(_VERSION, model, weights_key, image_size, list(mean), list(std), image_key,
                  build_kwargs, precision)


@torch.no_grad()
def compute(model, images: torch.Tensor, device: torch.device, batch_size: int = 128,
            amp: bool = False, channels_last: bool = False, progress: bool = True) -> torch.Tensor:
    """Pooled features (N, F) of uint8 images (N, 3, S, S): `model.features` with the backbone
    in eval mode (frozen BatchNorm statistics)."""
    was_training = model.training
    model.eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="embeddings", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size].to(device, non_blocking=True).float()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(model.features(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def cached(key: str, make, root: Path | None = None) -> tuple[torch.Tensor, bool]:
    """(features, hit): load `key` from the cache, or make() and store it atomically."""
    path = (root or cache_root()) / "embeddings" / f"{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True), True
    feats = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(feats, tmp)
    return feats, False


def by_content(key: str, hashes: list[str], make: Callable[[np.ndarray], torch.Tensor],
               root: Path | None = None) -> tuple[torch.Tensor, int]:
    """(features of the covers with these sha256, rows in order; how many were computed).

    Features are kept per cover under `key` (the backbone's identity, not the image set): shards
    of {"sha256": [...], "features": (n, F)}. The covers no shard holds are computed by
    `make(row indices)` and stored as one new shard, atomically, so an interrupted run loses
    nothing finished and a later run computes only what is still missing."""
    folder = (root or cache_root()) / "embeddings" / key
    wanted = set(hashes)
    found: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.pt")) if folder.is_dir() else ():
        part = torch.load(shard, map_location="cpu", weights_only=True)
        for h, row in zip(part["sha256"], part["features"]):
            if h in wanted:
                found[h] = row
    missing = np.array([i for i, h in enumerate(hashes) if h not in found], dtype=np.int64)
    if len(missing):
        # one row per distinct cover: a cover listed twice is computed once
        first = {}
        for i in missing:
            first.setdefault(hashes[i], int(i))
        rows = np.array(list(first.values()), dtype=np.int64)
        feats = make(rows)
        if len(feats) != len(rows):
            raise ValueError(f"make() returned {len(feats)} rows for {len(rows)} covers")
        new = [hashes[i] for i in rows]
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{digest(new)}.pt") as tmp:
            torch.save({"sha256": new, "features": feats.contiguous()}, tmp)
        found.update(zip(new, feats))
    return torch.stack([found[h] for h in hashes]), len(missing)
