"""select_tracks: pick N tracks to scrape, seeded, optionally filtered and stratified by popularity."""

import numpy as np
import pandas as pd

from coverpop.core.errors import CoverpopError


def popularity_bins(popularity: pd.Series, n_bins: int) -> pd.Series:
    """Equal-width bins over 0-100 (bin 0 holds the zeros' neighbours, as the skew demands)."""
    return np.minimum((popularity.to_numpy() * n_bins // 101).astype(int), n_bins - 1)


def select_tracks(df: pd.DataFrame, n: int, strategy: str = "random", seed: int = 0,
                  years: list | None = None, genres: list | None = None,
                  n_bins: int = 10) -> pd.DataFrame:
    """N rows of df. `stratified` keeps each popularity bin's share; `balanced` takes equal
    counts per bin (then fills from the rest), so rare high-popularity tracks are not drowned."""
    if years:  # [first, last]: the params schema checked n, strategy and years
        df = df[df["year"].between(years[0], years[1])]
    if genres:
        df = df[df["genre"].isin(genres)]
    if df.empty:
        raise CoverpopError("params.yaml: select.years/select.genres leave no tracks")
    if n >= len(df):
        return df.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        idx = rng.choice(len(df), size=n, replace=False)
    else:
        bins = popularity_bins(df["popularity"], n_bins)
        order = rng.permutation(len(df))
        if strategy == "stratified":
            # Interleave bins by a random key scaled to each bin's size: a prefix of the order
            # then holds every bin in proportion.
            counts = np.bincount(bins, minlength=n_bins)
            rank = np.empty(len(df))
            for b in np.flatnonzero(counts):
                members = order[bins[order] == b]
                rank[members] = (np.arange(len(members)) + rng.random()) / len(members)
            idx = np.argsort(rank, kind="stable")[:n]
        else:
            # Round-robin over bins: the k-th member of every bin comes before any (k+1)-th.
            pos = np.empty(len(df))
            for b in np.unique(bins):
                members = order[bins[order] == b]
                pos[members] = np.arange(len(members)) + rng.random(len(members)) * 1e-3
            idx = np.argsort(pos, kind="stable")[:n]
    return df.iloc[np.sort(idx)].reset_index(drop=True)
