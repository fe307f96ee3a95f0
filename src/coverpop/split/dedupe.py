"""One row per album, then one row per cover: exact copies by content hash, near-copies by
perceptual hash, collapsed across albums so no cover can sit in two splits."""

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from coverpop.core.errors import CoverpopError

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


def parse_phashes(tracks: pd.DataFrame) -> np.ndarray:
    """The manifest's `phash` column (16 hex digits, computed once per cover where the scrape
    stores it) as uint64; a missing or malformed hash is a one-line error naming the track."""
    column = tracks["phash"].astype(str)
    bad = ~column.str.fullmatch(r"[0-9a-f]{16}").to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise CoverpopError(f"manifest: track {tracks['track_id'].iloc[i]} has no valid phash "
                            f"({column.iloc[i]!r}); run `dvc repro -f -s scrape_images`")
    return np.array([int(h, 16) for h in column], dtype=np.uint64)


# Near-duplicate search by the pigeonhole principle (multi-index hashing, Norouzi et al. 2012):
# cut the 64 bits into m blocks; two hashes within distance t differ in at most t blocks, so they
# agree exactly on at least m - t of them. Each choice of m - t blocks is a key; only hashes that
# share a key are compared (a popcount). With keys of ~16-24 bits almost every candidate is a
# true near pair, so the work is about (number of keys) x n log n, not n².
MAX_KEYS = 512           # C(m, t) keys for m blocks: the m chosen below stays under this
PAIRS_PER_CHUNK = 1 << 22  # candidate pairs checked at once (bounds memory for crowded keys)


def _block_masks(m: int) -> list[int]:
    edges = [round(64 * i / m) for i in range(m + 1)]
    return [((1 << (b - a)) - 1) << a for a, b in zip(edges, edges[1:])]


def _plan(n: int, t: int) -> int:
    """The number of blocks m (> t) with the least expected work for n uniform hashes: C(m, t)
    sorts of n (one costs about as much as checking 4n candidates), plus the chance candidates,
    n² / 2^(key bits) per key."""
    def cost(m: int) -> float:
        key_bits = (64 // m) * (m - t)
        return comb(m, t) * (4 * n + n * n / 2.0 ** min(key_bits, 64))
    options = [m for m in range(t + 1, 65) if comb(m, t) <= MAX_KEYS] or [t + 1]
    return min(options, key=cost)


def _candidate_pairs(keys: np.ndarray):
    """Index pairs (i < j in sort order) of equal keys, in chunks of about PAIRS_PER_CHUNK."""
    order = np.argsort(keys)
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    crowded = ends - starts > 1
    starts, ends = starts[crowded], ends[crowded]
    if not len(starts):
        return
    # every position in a run pairs with the positions after it in that run
    lengths = ends - starts
    offset = np.arange(lengths.sum()) - np.repeat(lengths.cumsum() - lengths, lengths)
    pos = np.repeat(starts, lengths) + offset          # the sorted positions in crowded runs
    after = np.repeat(ends, lengths) - pos - 1
    total = np.cumsum(after)
    cuts = np.searchsorted(total, np.arange(PAIRS_PER_CHUNK, total[-1], PAIRS_PER_CHUNK))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(pos)]):
        p, k = pos[lo:hi], after[lo:hi]
        k_total = int(k.sum())
        if not k_total:
            continue
        left = np.repeat(p, k)
        right = left + 1 + np.arange(k_total) - np.repeat(np.cumsum(k) - k, k)
        yield order[left], order[right]


def first_seen_labels(labels: np.ndarray) -> np.ndarray:
    """Group labels renumbered 0, 1, ... in order of each group's first row."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def near_duplicate_groups(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Group labels (0, 1, ... by first row) of the connected components of 'Hamming distance <=
    threshold': exactly the groups an all-pairs comparison finds, in about n log n."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if threshold >= 64 or len(hashes) == 0:
        return np.zeros(len(hashes), dtype=np.int64)
    unique, inverse = np.unique(hashes, return_inverse=True)   # equal hashes: one node
    n, t = len(unique), int(threshold)
    edges = np.zeros(0, dtype=np.int64)          # near pairs (i < j) as i * n + j
    if t > 0 and n > 1:
        m = _plan(n, t)
        found, pending = [], 0
        for chosen in combinations(_block_masks(m), m - t):
            for i, j in _candidate_pairs(unique & np.uint64(sum(chosen))):
                near = np.bitwise_count(unique[i] ^ unique[j]) <= t
                i, j = i[near], j[near]
                found.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
                pending += len(i)
            if pending > PAIRS_PER_CHUNK:   # a close pair shares many keys: keep it once
                found, pending = [np.unique(np.concatenate(found))], 0
        edges = np.unique(np.concatenate([edges, *found]))
    r, c = np.divmod(edges, n)
    graph = coo_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n, n))
    components = connected_components(graph, directed=False)[1]
    return first_seen_labels(components[inverse.ravel()])


def dedupe(tracks: pd.DataFrame, rule: str, threshold: int, seed: int = 0
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """tracks: selected rows joined with their ok manifest rows (sha256, phash, album_id).
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
    groups = pd.Series(near_duplicate_groups(parse_phashes(tracks), threshold))
    tracks = drop(pick(tracks, groups, rule, seed), groups, "near_duplicate")
    return tracks, pd.concat(removed, ignore_index=True)
