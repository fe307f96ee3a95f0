"""fetch_csv: where the tracks table comes from (demo, a user's own CSV + images, a Kaggle-schema CSV)."""

import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError
from coverpop.core.fingerprint import sha256_file
from coverpop.core.params import one_of
from coverpop.tracks import demo
from coverpop.tracks.inputs import (  # noqa: F401 (local_images_dir: the covers' resolver too)
    SOURCES,
    downloaded,
    is_url,
    local_csv,
    local_images_dir,
)
from coverpop.tracks.tables import LOCAL_REQUIRED, read_tracks, validate_tracks


def fetch_tracks(data_params: dict, inputs: dict | None = None) -> pd.DataFrame:
    """Build the tracks table for `data.source`; every source ends in the same validated schema.
    `inputs`: the `inputs` stage's fingerprint of the tracks CSV, when there is one (a CSV by URL
    is then read from the download it already made, and must have its content)."""
    source = one_of(data_params.get("source"), SOURCES, "data.source")
    if source == "demo":
        p = data_params.get("demo", {})
        df = demo.make_tracks(n_albums=int(p.get("n_albums", 2000)), seed=int(p.get("seed", 0)))
        return validate_tracks(df, "demo")
    if source == "local":
        return _local(data_params)
    if source == "kaggle":
        return _kaggle(data_params.get("kaggle") or {})
    return _csv(data_params.get("csv") or {}, ((inputs or {}).get("csv") or {}).get("sha256", ""))


def _local(data_params: dict) -> pd.DataFrame:
    local_images_dir(data_params)
    return read_tracks(local_csv(data_params), LOCAL_REQUIRED)


def _csv(p: dict, fingerprint: str = "") -> pd.DataFrame:
    """data.csv.path: a local file or an http(s) URL; data.csv.sha256 is checked when set."""
    path, want = str(p.get("path") or ""), str(p.get("sha256") or "").lower()
    if not path:
        raise CoverpopError("params.yaml: data.csv.path must be set for data.source=csv "
                            "(a local path or an http(s) URL)")
    if is_url(path) and downloaded(fingerprint):
        if want and fingerprint != want:
            raise CoverpopError(f"{path}: sha256 is {fingerprint}, but data.csv.sha256 expects "
                                f"{want}")
        return read_tracks(downloaded(fingerprint))
    if not is_url(path):
        if want and Path(path).is_file():
            got = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            if got != want:
                raise CoverpopError(f"{path}: sha256 is {got}, but data.csv.sha256 expects {want}")
        return read_tracks(path)
    from coverpop.tracks.csv_url import fetch_csv_url

    with tempfile.TemporaryDirectory(prefix="coverpop-csv-") as tmp:
        local = fetch_csv_url(path, Path(tmp) / "tracks.csv", sha256=want)
        if fingerprint and sha256_file(local) != fingerprint:
            raise CoverpopError(f"{path} changed after the inputs stage read it: run `dvc repro` "
                                "again")
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
