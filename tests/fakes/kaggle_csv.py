"""A stand-in for the Kaggle "spotify-1million-tracks" CSV: same header, plausible values."""

from pathlib import Path

import numpy as np
import pandas as pd

from coverpop.tracks.tables import KAGGLE_COLUMNS


def kaggle_like_csv(path: Path, rows: int, seed: int = 0) -> None:
    """A CSV with the Kaggle spotify-1million-tracks header and plausible value ranges."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                             dtype="S1")
    ids = alphabet[rng.integers(0, 62, size=(rows, 22))].view("S22").ravel().astype(str)
    pop = np.where(rng.random(rows) < 0.35, 0, np.clip(rng.gamma(2.0, 12.0, rows), 0, 100))
    genres = np.array([f"genre-{i:02d}" for i in range(82)])
    columns = {
        "artist_name": _text(rng.integers(0, 61000, rows), "Artist {}"),
        "track_name": _text(np.arange(rows), "Track {}", repeats=False),
        "track_id": ids, "popularity": pop.astype(int), "year": rng.integers(2000, 2024, rows),
        "genre": genres[rng.integers(0, 82, rows)],
        "danceability": rng.random(rows).round(3), "energy": rng.random(rows).round(3),
        "key": rng.integers(0, 12, rows), "loudness": rng.uniform(-30, 0, rows).round(3),
        "mode": rng.integers(0, 2, rows), "speechiness": rng.random(rows).round(4),
        "acousticness": rng.random(rows).round(4), "instrumentalness": rng.random(rows).round(4),
        "liveness": rng.random(rows).round(4), "valence": rng.random(rows).round(3),
        "tempo": rng.uniform(60, 200, rows).round(3),
        "duration_ms": rng.integers(60000, 400000, rows), "time_signature": rng.integers(3, 6, rows),
    }
    # What pandas' to_csv(index=True) writes (the Kaggle file's unnamed index column first), but
    # each distinct value formatted once: the full-size table (1.2 M rows) in seconds, not 20.
    fields = [_text(np.arange(rows), repeats=False)] + [_text(columns[c]) for c in KAGGLE_COLUMNS]
    with open(path, "w", newline="") as f:
        f.write(",".join(["", *KAGGLE_COLUMNS]) + "\n")
        f.writelines(map("{}\n".format, map(",".join, zip(*fields))))


def _text(values: np.ndarray, fmt: str = "{}", repeats: bool = True) -> np.ndarray:
    """values as CSV text (floats in their shortest round-trip form, as pandas writes them);
    with `repeats`, each distinct value is formatted once."""
    if values.dtype.kind in "UO":   # text already
        return values.astype(object)
    unique, index = np.unique(values, return_inverse=True) if repeats else (values, None)
    prefix, suffix = fmt.split("{}")
    text = np.char.add(np.char.add(prefix, unique.astype(str)), suffix).astype(object)
    return text if index is None else text[index]
