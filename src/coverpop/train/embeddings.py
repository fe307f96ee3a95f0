"""Frozen-backbone embeddings, computed once and cached on disk, so head-only epochs take seconds.

The key holds everything that changes the numbers: model name and build arguments, the weights'
identity, image size, normalisation, the image set (its content hashes), and the precision.
`by_content` keys the backbone alone and stores features per cover (by its sha256): the train
stage pays for the train and val covers, evaluate only for the test covers, and a run on another
split of the same covers for none.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_weights
from tqdm import tqdm

from coverpop.core.atomic import atomic_path
from coverpop.core.cache import cache_root
from coverpop.train.data import digest

_VERSION = "emb-v2"  # v2: BatchNorm folded into the convs (the same features to ~1e-6)
# Below this many covers the one-time cost of folding (a copy, three small forwards) outweighs it.
FOLD_MIN_COVERS = 64
BATCH = 128   # covers per forward (on CPU at most 128 px worth, below)
# On CPU a batch's activations are this process's memory: EfficientNet-Lite0 holds ~730 MB for
# 128 covers of 128 px, ~220 MB for 32 (the same features). So at most 32 covers of 128 px per
# forward (128 at 64 px, as before; 10 at 224 px).
CPU_BATCH_PIXELS = 32 * 128 * 128


def batch_size_for(images, device: torch.device) -> int:
    """Covers per forward: BATCH, on CPU capped at CPU_BATCH_PIXELS pixels per batch."""
    if device.type != "cpu":
        return BATCH
    return max(1, min(BATCH, CPU_BATCH_PIXELS // max(1, images.shape[-1] * images.shape[-2])))


def embedding_key(model: str, weights_key: str, image_size: int, mean, std, image_key: str,
                  build_kwargs: dict, precision: str) -> str:
    return digest(_VERSION, model, weights_key, image_size, list(mean), list(std), image_key,
                  build_kwargs, precision)


class _Folded(torch.nn.Module):
    """What is left of a BatchNorm once folded into the conv before it: its activation (timm's
    BatchNormAct2d: dropout, then the activation), or nothing."""

    def __init__(self, bn: torch.nn.BatchNorm2d):
        super().__init__()
        self.drop = getattr(bn, "drop", torch.nn.Identity())
        self.act = getattr(bn, "act", torch.nn.Identity())

    def forward(self, x):
        return self.act(self.drop(x))


def fold_batchnorm(model: torch.nn.Module, example: torch.Tensor
                   ) -> tuple[torch.nn.Module, int, torch.Tensor]:
    """(an eval-mode copy of `model` with every BatchNorm folded into the conv feeding it, how
    many were folded, `model`'s output on `example`). In eval mode BatchNorm is a per-channel
    affine map, so it can live in the conv's weights and bias: one memory pass less per conv
    (on CPU a third of EfficientNet-Lite's time). A BatchNorm is folded only when the forward
    of `example` shows its input is exactly the output of the conv just before it, nothing
    else ran in between, and each is called once; a functional read of that output elsewhere
    is invisible here, so the caller compares the copy's output with the model's."""
    model = copy.deepcopy(model).eval()
    order: list[tuple[str, torch.nn.Module, object]] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda mod, args, out, name=name: order.append((name, mod, out))))
        elif isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats:
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: order.append((name, mod, args[0]))))
        elif not list(m.children()):  # any other leaf module: it may read a conv's output
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: order.append((name, mod, None))))
    try:
        with torch.no_grad():
            want = model(example)
    finally:
        for h in hooks:
            h.remove()
    calls: dict[str, int] = {}
    for name, _, _ in order:
        calls[name] = calls.get(name, 0) + 1
    pairs = [(c_name, conv, b_name, bn)
             for (c_name, conv, out), (b_name, bn, x) in zip(order, order[1:])
             if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
             and x is out and calls[c_name] == calls[b_name] == 1]
    with torch.no_grad():
        for c_name, conv, b_name, bn in pairs:
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                bn.weight if bn.affine else None, bn.bias if bn.affine else None)
            parent, _, child = b_name.rpartition(".")
            setattr(model.get_submodule(parent), child, _Folded(bn))
    return model.requires_grad_(False), len(pairs), want


def _fast_features(model, example: torch.Tensor):
    """`model.features` through a BatchNorm-folded copy of the backbone when it gives the same
    features on `example` (to 1e-4 relative), else the model's own."""
    if not (hasattr(model, "backbone") and hasattr(model, "normalize")) or not any(
            isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules()):
        return model.features
    with torch.no_grad():
        x = model.normalize(example)
        folded, n, want = fold_batchnorm(model.backbone, x)
        if not n:
            return model.features
        got = folded(x)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
        return model.features
    return lambda x: folded(model.normalize(x))


def compute(model, images: torch.Tensor, device: torch.device, batch_size: int | None = None,
            amp: bool = False, channels_last: bool = False, progress: bool = True,
            fold: bool | None = None) -> torch.Tensor:
    """Pooled features (N, F) of uint8 images (N, 3, S, S): `model.features` with the backbone
    in eval mode (frozen BatchNorm statistics), its BatchNorms folded into the convs (the same
    features to rounding, tests/test_embedding_cache.py). `fold`: None folds from
    FOLD_MIN_COVERS images on, True always, False never. `batch_size`: None is
    batch_size_for(images, device)."""
    batch_size = batch_size or batch_size_for(images, device)
    was_training = model.training
    model.eval()

    def batch(i, n=batch_size):
        x = images[i:i + n].to(device, non_blocking=True).float()
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    fast = len(images) >= FOLD_MIN_COVERS if fold is None else fold and len(images) > 0
    features = _fast_features(model, batch(0, 1)) if fast else model.features
    # Straight into one (N, F) array, not a list of batches and their torch.cat (two copies
    # of 300 MB at 60k covers). numpy: a tensor made here would be an inference tensor.
    out = None
    with torch.inference_mode():
        for i in tqdm(range(0, len(images), batch_size), desc="embeddings", disable=not progress,
                      leave=False):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                part = features(batch(i)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(images), *part.shape[1:]), part.dtype)
            out[i:i + len(part)] = part
    model.train(was_training)
    if out is None:
        raise ValueError("embeddings.compute: no images")
    return torch.from_numpy(out)


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
    where: dict[str, list[int]] = {}   # sha256 -> its rows (a cover may be listed twice)
    for i, h in enumerate(hashes):
        where.setdefault(h, []).append(i)
    # Rows go straight into `out` as each shard is read (a later shard wins, as before), not
    # into a dict of row views and a torch.stack: one copy of the features, not two.
    out, found = None, set()
    for shard in sorted(folder.glob("*.pt")) if folder.is_dir() else ():
        part = torch.load(shard, map_location="cpu", weights_only=True)
        src = [j for j, h in enumerate(part["sha256"]) if h in where]
        if src:
            out = _empty_like_rows(out, len(hashes), part["features"])
            _put(out, part["features"], src, [where[part["sha256"][j]] for j in src])
            found.update(part["sha256"][j] for j in src)
        del part   # before the next shard is loaded
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
        if out is None and len(rows) == len(hashes):   # every row new, none twice: feats is it
            return feats, len(missing)
        out = _empty_like_rows(out, len(hashes), feats)
        _put(out, feats, range(len(new)), [where[h] for h in new])
    if out is None:
        raise ValueError("by_content: no covers")
    return out, len(missing)


def _empty_like_rows(out: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """`out`, or an empty (n, F) tensor with `like`'s row shape and dtype."""
    return torch.empty((n, *like.shape[1:]), dtype=like.dtype) if out is None else out


def _put(out: torch.Tensor, feats: torch.Tensor, src, dst: list[list[int]]) -> None:
    """out[d] = feats[s] for each s in src and each row d of its list in dst, a few thousand
    rows at a time (one gather of every row would be another full-size copy)."""
    pairs = [(s, d) for s, ds in zip(src, dst) for d in ds]
    for i in range(0, len(pairs), 4096):
        s, d = zip(*pairs[i:i + 4096])
        out[torch.tensor(d)] = feats[torch.tensor(s)]
