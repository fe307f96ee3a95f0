"""fetch_csv: where the tracks table comes from (demo, a user's own CSV + images, a Kaggle-schema CSV)."""

import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError
from coverpop.core.params import one_of
from coverpop.tracks import demo
from coverpop.tracks.tables import LOCAL_REQUIRED, read_tracks, validate_tracks

SOURCES = ("demo", "local", "csv", "kaggle")


def fetch_tracks(data_params: dict) -> pd.DataFrame:
    """Build the tracks table for `data.source`; every source ends in the same validated schema."""
    source = one_of(data_params.get("source"), SOURCES, "data.source")
    if source == "demo":
        p = data_params.get("demo", {})
        df = demo.make_tracks(n_albums=int(p.get("n_albums", 2000)), seed=int(p.get("seed", 0)),
                              effects=str(p.get("effects", "strong")))
        return validate_tracks(df, "demo")
    if source == "local":
        return _local(data_params)
    if source == "kaggle":
        return _kaggle(data_params.get("kaggle") or {})
    return _csv(data_params.get("csv") or {})


def local_images_dir(data_params: dict) -> Path:
    images = (data_params.get("local") or {}).get("images")
    if not images:
        raise CoverpopError("params.yaml: data.local.images must be set for data.source=local")
    if not Path(images).is_dir():
        raise CoverpopError(f"params.yaml: data.local.images={images!r} is not a folder")
    return Path(images)


def _local(data_params: dict) -> pd.DataFrame:
    local_images_dir(data_params)
    csv = (data_params.get("local") or {}).get("csv")
    if not csv:
        raise CoverpopError("params.yaml: data.local.csv must be set for data.source=local")
    return read_tracks(csv, LOCAL_REQUIRED)


def _csv(p: dict) -> pd.DataFrame:
    """data.csv.path: a local file or an http(s) URL; data.csv.sha256 is checked when set."""
    path, want = str(p.get("path") or ""), str(p.get("sha256") or "").lower()
    if not path:
        raise CoverpopError("params.yaml: data.csv.path must be set for data.source=csv "
                            "(a local path or an http(s) URL)")
    if not path.startswith(("http://", "https://")):
        if want and Path(path).is_file():
            got = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            if got != want:
                raise CoverpopError(f"{path}: sha256 is {got}, but data.csv.sha256 expects {want}")
        return read_tracks(path)
    from coverpop.tracks.csv_url import fetch_csv_url

    with tempfile.TemporaryDirectory(prefix="coverpop-csv-") as tmp:
        local = fetch_csv_url(path, Path(tmp) / "tracks.csv", sha256=want)
        df = read_tracks(local)
    return df


def _kaggle(p: dict) -> pd.DataFrame:
    """data.kaggle.handle (owner/slug/versions/N, pinned) and data.kaggle.file, via kagglehub."""
    from coverpop.tracks.kaggle import DEFAULT_FILE, DEFAULT_HANDLE, fetch_kaggle_csv

    handle, file = p.get("handle") or DEFAULT_HANDLE, p.get("file") or DEFAULT_FILE
    with tempfile.TemporaryDirectory(prefix="coverpop-kaggle-") as tmp:
        local = fetch_kaggle_csv(handle, Path(tmp) / file, file=file)
        df = read_tracks(local)
    return df
