"""The tracks table: the Kaggle "spotify-1million-tracks" schema, read and validated."""

from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError

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


def read_tracks(path: str | Path, required: tuple[str, ...] = REQUIRED) -> pd.DataFrame:
    """Read a tracks CSV and validate it; extra columns are kept."""
    path = Path(path)
    if not path.is_file():
        raise CoverpopError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""],
                         low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise CoverpopError(f"{path}: not a readable CSV: {str(err).splitlines()[0]}") from None
    df = df.drop(columns=[c for c in df.columns if c == "" or c.startswith("Unnamed:")])
    return validate_tracks(df, path, required)


def _line(df: pd.DataFrame, mask) -> int:
    """CSV line number of the first row where mask is true (the header is line 1)."""
    return int(mask.to_numpy().nonzero()[0][0]) + 2


def validate_tracks(df: pd.DataFrame, path, required=REQUIRED) -> pd.DataFrame:
    for col in required:
        if col not in df.columns:
            raise CoverpopError(f"{path}: missing column '{col}' (has: {', '.join(df.columns)})")
    if df.empty:
        raise CoverpopError(f"{path}: no rows")
    for col in required:
        missing = df[col].isna()
        if missing.any():
            raise CoverpopError(f"{path}: column '{col}' is empty at line {_line(df, missing)}")
    pop = pd.to_numeric(df["popularity"], errors="coerce")
    bad = pop.isna()
    if bad.any():
        line = _line(df, bad)
        raise CoverpopError(f"{path}: column 'popularity' at line {line}: "
                            f"{df['popularity'].iloc[line - 2]!r} is not a number")
    bad = (pop < 0) | (pop > 100)
    if bad.any():
        line = _line(df, bad)
        raise CoverpopError(f"{path}: column 'popularity' at line {line}: "
                            f"{pop.iloc[line - 2]:g} is outside 0-100")
    dup = df["track_id"].duplicated()
    if dup.any():
        line = _line(df, dup)
        raise CoverpopError(f"{path}: column 'track_id' at line {line}: "
                            f"duplicate id {df['track_id'].iloc[line - 2]!r}")
    if "year" in df.columns:
        year = pd.to_numeric(df["year"], errors="coerce")
        bad = year.isna() & df["year"].notna()
        if bad.any():
            line = _line(df, bad)
            raise CoverpopError(f"{path}: column 'year' at line {line}: "
                                f"{df['year'].iloc[line - 2]!r} is not a number")
        df["year"] = year.astype("Int64")
    df["popularity"] = pop.astype(float)
    return df
