"""One row per album, then one row per cover: exact copies by content hash, near-copies by
perceptual hash, collapsed across albums so no cover can sit in two splits."""

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

REASONS = ("same_album", "exact_duplicate", "near_duplicate")


def pick(df: pd.DataFrame, group: pd.Series, rule: str, seed: int = 0) -> pd.Series:
    """A boolean mask keeping one row per group: the most popular (max), the median one,
    the first listed, or a seeded random one."""
    order = pd.Series(np.arange(len(df)), index=df.index)
    if rule == "first":
        key = order
    elif rule == "max":
        key = -df["popularity"] + order / (len(df) + 1)  # ties → first listed
    elif rule == "random":
        key = pd.Series(np.random.default_rng(seed).random(len(df)), index=df.index)
    else:  # the row closest to its group's median
        med = df.groupby(group)["popularity"].transform("median")
        key = (df["popularity"] - med).abs() + order / (len(df) + 1)
    keep = key.groupby(group).transform("min") == key
    return keep


def phashes(covers: list, open_image=Image.open) -> np.ndarray:
    """64-bit perceptual hashes as uint64 (open_image(cover) gives the image: a file path by
    default, a cover id with a cover store's open)."""
    out = np.empty(len(covers), dtype=np.uint64)
    for i, f in enumerate(covers):
        with open_image(f) as img:
            bits = imagehash.phash(img).hash.flatten()
        out[i] = np.packbits(bits).view(">u8")[0]
    return out


def near_duplicate_groups(hashes: np.ndarray, threshold: int, chunk: int = 2048) -> np.ndarray:
    """Connected components of 'Hamming distance <= threshold' (chunked: n² bits, not n² memory)."""
    n = len(hashes)
    rows, cols = [], []
    for start in range(0, n, chunk):
        block = hashes[start:start + chunk]
        dist = np.bitwise_count(block[:, None] ^ hashes[None, :])
        i, j = np.nonzero(dist <= threshold)
        rows.append(i + start)
        cols.append(j)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def dedupe(tracks: pd.DataFrame, rule: str, threshold: int, seed: int = 0, store=None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """tracks: selected rows joined with their ok manifest rows (cover_id, sha256, album_id);
    the covers are read from `store` (a CoverStore) by cover id, or from a `file` column.
    Returns (kept, removed) where removed says why and which row stands for it."""
    tracks = tracks.reset_index(drop=True)
    removed = []

    def drop(mask_keep: pd.Series, group: pd.Series, reason: str) -> pd.DataFrame:
        kept_id = tracks.loc[mask_keep].set_index(group[mask_keep])["track_id"]
        gone = tracks.loc[~mask_keep, ["track_id", "cover_id", "album_id", "popularity"]].copy()
        gone["reason"] = reason
        gone["kept_track_id"] = group[~mask_keep].map(kept_id).to_numpy()
        removed.append(gone)
        return tracks.loc[mask_keep].reset_index(drop=True)

    tracks = drop(pick(tracks, tracks["album_id"], rule, seed), tracks["album_id"], "same_album")
    tracks = drop(pick(tracks, tracks["sha256"], rule, seed), tracks["sha256"], "exact_duplicate")
    covers = phashes(tracks["cover_id"].tolist(), store.open) if store is not None \
        else phashes(tracks["file"].tolist())
    groups = pd.Series(near_duplicate_groups(covers, threshold))
    tracks = drop(pick(tracks, groups, rule, seed), groups, "near_duplicate")
    return tracks, pd.concat(removed, ignore_index=True)
