"""The tracks table: the Kaggle "spotify-1million-tracks" schema, read and validated."""

from pathlib import Path

import numpy as np
import pandas as pd

from coverpop.core.errors import CoverpopError, file_problem
from coverpop.core.redact import redact_url

# Column order of the Kaggle CSV (its first, unnamed column is a row index we drop).
KAGGLE_COLUMNS = [
    "artist_name", "track_name", "track_id", "popularity", "year", "genre",
    "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo", "duration_ms", "time_signature",
]
REQUIRED = ("track_id", "popularity")
LOCAL_REQUIRED = ("track_id", "popularity", "image")
TEXT_COLUMNS = {"track_id": str, "artist_name": str, "track_name": str, "genre": str,
                "album_id": str, "image": str, "image_url": str}


# Every numeric column of the schema: (whole numbers only, lowest, highest). Checked whenever the
# column is present, all the same way; blanks are allowed except in required columns. The ranges
# are Spotify's documented ones, widened where the real Kaggle file goes beyond them (loudness up
# to +6 dB, time_signature 0 and 1).
NUMERIC = {
    "popularity": (False, 0, 100),
    "year": (True, 1000, 2999),
    "danceability": (False, 0, 1), "energy": (False, 0, 1), "speechiness": (False, 0, 1),
    "acousticness": (False, 0, 1), "instrumentalness": (False, 0, 1),
    "liveness": (False, 0, 1), "valence": (False, 0, 1),
    "key": (True, -1, 11),                 # pitch class; -1 = no key detected
    "loudness": (False, -100, 50),         # dB
    "mode": (True, 0, 1),
    "tempo": (False, 0, 1000),             # BPM
    "duration_ms": (True, 0, 86_400_000),  # up to a day
    "time_signature": (True, 0, 12),
}
DUPLICATES = ("error", "first")


def read_tracks(path: str | Path, required: tuple[str, ...] = REQUIRED, *, name: str = "",
                duplicates: str = "error") -> pd.DataFrame:
    """Read a tracks CSV and validate it; extra columns are kept. `name` is what errors call the
    file (a URL it was downloaded from, say); `duplicates`: see validate_tracks."""
    path = Path(path)
    name = redact_url(name) if name else str(path)   # a URL's token never reaches an error
    problem = file_problem(path)
    if problem:
        raise CoverpopError(f"{name}: {problem}")
    try:
        df = pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""],
                         low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise CoverpopError(f"{name}: not a readable CSV: {str(err).splitlines()[0]}") from None
    df = df.drop(columns=[c for c in df.columns if c == "" or c.startswith("Unnamed:")])
    return validate_tracks(df, name, required, duplicates)


def _line(df: pd.DataFrame, mask) -> int:
    """CSV line number of the first row where mask is true (the header is line 1)."""
    return int(np.asarray(mask).nonzero()[0][0]) + 2


def _check_numeric(df: pd.DataFrame, col: str, path) -> pd.Series:
    """The column as numbers, or a one-line error naming file, column, line and value."""
    whole, lo, hi = NUMERIC[col]
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = (num.isna() | ~np.isfinite(num)) & raw.notna()
    if bad.any():
        line = _line(df, bad)
        raise CoverpopError(f"{path}: column '{col}' at line {line}: "
                            f"{str(raw.iloc[line - 2])!r} is not a number")
    bad = (num < lo) | (num > hi)
    if bad.any():
        line = _line(df, bad)
        raise CoverpopError(f"{path}: column '{col}' at line {line}: "
                            f"{num.iloc[line - 2]:g} is outside "
                            f"{f'{lo}-{hi}' if lo >= 0 else f'{lo} to {hi}'}")
    if whole:
        bad = num.notna() & (num != np.floor(num))
        if bad.any():
            line = _line(df, bad)
            raise CoverpopError(f"{path}: column '{col}' at line {line}: "
                                f"{num.iloc[line - 2]:g} is not a whole number")
        return num.astype("Int64")
    return num


def _drop_duplicates(df: pd.DataFrame, path, policy: str) -> tuple[pd.DataFrame, dict]:
    """Rows sharing a track_id. "error": the first repeat is an error naming its line. "first":
    rows identical to an earlier row collapse; of conflicting rows the first in file order is
    kept (no preference that could bias popularity); both counted."""
    dup = df["track_id"].duplicated()
    if not dup.any():
        return df, {}
    if policy == "error":
        line = _line(df, dup)
        raise CoverpopError(f"{path}: column 'track_id' at line {line}: duplicate id "
                            f"{df['track_id'].iloc[line - 2]!r} (each track may appear once)")
    identical = df.duplicated()
    kept = df[~identical]
    conflicting = kept["track_id"].duplicated()
    counts = {"identical": int(identical.sum()), "conflicting": int(conflicting.sum()),
              "conflicting_ids": int(kept.loc[conflicting, "track_id"].nunique())}
    return kept[~conflicting].reset_index(drop=True), counts


def duplicates_note(df: pd.DataFrame) -> str:
    """What read_tracks(..., duplicates="first") dropped, as one line ('' when nothing)."""
    d = df.attrs.get("duplicates") or {}
    if not d:
        return ""
    return (f"dropped {d['identical'] + d['conflicting']} rows with a repeated track_id: "
            f"{d['identical']} identical to an earlier row, {d['conflicting']} conflicting "
            f"({d['conflicting_ids']} track ids; the first row of each kept)")


def validate_tracks(df: pd.DataFrame, path, required=REQUIRED,
                    duplicates: str = "error") -> pd.DataFrame:
    """Check the schema; `duplicates` is the policy for repeated track ids ("error" | "first")."""
    for col in required:
        if col not in df.columns:
            raise CoverpopError(f"{path}: missing column '{col}' (has: {', '.join(df.columns)})")
    if df.empty:
        raise CoverpopError(f"{path}: no rows")
    for col in required:
        missing = df[col].isna()
        if missing.any():
            raise CoverpopError(f"{path}: column '{col}' is empty at line {_line(df, missing)}")
    for col in NUMERIC:
        if col in df.columns:
            df[col] = _check_numeric(df, col, path)
    df["popularity"] = df["popularity"].astype(float)
    df, dropped = _drop_duplicates(df, path, duplicates)
    df.attrs["duplicates"] = dropped
    return df
