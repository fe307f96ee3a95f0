"""fetch_csv: where the tracks table comes from (demo, a user's own CSV + images, a Kaggle-schema CSV).

One registry keyed by `data.source`. A new source is one function that turns its params section
(`data.<name>`) into a tracks table, registered with `@source("<name>")` here or in its own
module imported at the end of this file, plus that section in params.yaml and core/schema.py;
files it reads from outside the repo are fingerprinted in tracks/inputs.py (docs/extending.md).
Its covers come from the resolver of the same name when there is one (covers/resolvers.py),
else from Spotify by track id.
"""

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from coverpop.core.atomic import owned_tempdir
from coverpop.core.errors import CoverpopError
from coverpop.core.fingerprint import sha256_file
from coverpop.core.redact import redact_url
from coverpop.tracks import demo
from coverpop.tracks.inputs import downloaded, is_url, local_csv, local_images_dir
from coverpop.tracks.tables import LOCAL_REQUIRED, read_tracks, validate_tracks

# Repeated track ids: the Kaggle file lists some tracks more than once (public projects drop
# them), so kaggle/csv keep the first row of each id and say how many were dropped; a user's
# own `local` CSV stays strict, since a repeated id there is a mistake only its author can fix
# (which row's image and popularity are right?).
DUPLICATES = "first"
SOURCES: dict[str, Callable[[dict, dict], pd.DataFrame]] = {}


def source(name: str):
    """Register `fn(section, inputs) -> tracks table` as `data.source: name`. `section` is
    `data.<name>`; `inputs` is what the `inputs` stage fingerprinted (tracks/inputs.py), or {}."""
    def register(fn):
        SOURCES[name] = fn
        return fn
    return register


def fetch_tracks(data_params: dict, inputs: dict | None = None) -> pd.DataFrame:
    """Build the tracks table for `data.source`; every source ends in the same validated schema."""
    name = data_params["source"]  # one of SOURCES: the params schema checked it
    return SOURCES[name](data_params.get(name) or {}, inputs or {})


@source("demo")
def _demo(p: dict, inputs: dict) -> pd.DataFrame:
    df = demo.make_tracks(n_albums=p["n_albums"], seed=p["seed"], effects=p["effects"])
    return validate_tracks(df, "demo")


@source("local")
def _local(p: dict, inputs: dict) -> pd.DataFrame:
    local_images_dir(p)
    return read_tracks(local_csv(p), LOCAL_REQUIRED)


@source("csv")
def _csv(p: dict, inputs: dict) -> pd.DataFrame:
    """data.csv.path: a local file or an http(s) URL; data.csv.sha256 is checked when set."""
    path, want = str(p.get("path") or ""), str(p.get("sha256") or "").lower()
    if not path:
        raise CoverpopError("params.yaml: data.csv.path must be set for data.source=csv "
                            "(a local path or an http(s) URL)")
    # A URL the inputs stage already downloaded is read from that download: the same content
    fingerprint = (inputs.get("csv") or {}).get("sha256", "")
    if is_url(path) and downloaded(fingerprint):
        if want and fingerprint != want:
            raise CoverpopError(f"{redact_url(path)}: sha256 is {fingerprint}, but data.csv.sha256 "
                                f"expects {want}")
        return read_tracks(downloaded(fingerprint), name=path, duplicates=DUPLICATES)
    if not is_url(path):
        if want and Path(path).is_file():
            got = sha256_file(path)
            if got != want:
                raise CoverpopError(f"{path}: sha256 is {got}, but data.csv.sha256 expects {want}")
        return read_tracks(path, duplicates=DUPLICATES)
    from coverpop.tracks.csv_url import fetch_csv_url

    # The download's temp folder carries our pid: a run killed mid-download leaves it behind,
    # and the next run removes it (only when its owner is gone).
    with owned_tempdir("coverpop-csv") as tmp:
        local = fetch_csv_url(path, tmp / "tracks.csv", sha256=want)
        if fingerprint and sha256_file(local) != fingerprint:
            raise CoverpopError(f"{redact_url(path)} changed after the inputs stage read it: run "
                                "`dvc repro` again")
        df = read_tracks(local, name=path, duplicates=DUPLICATES)   # errors name the URL
    return df


@source("kaggle")
def _kaggle(p: dict, inputs: dict) -> pd.DataFrame:
    """data.kaggle.handle (owner/slug/versions/N, pinned) and data.kaggle.file, via kagglehub."""
    from coverpop.tracks.kaggle import fetch_kaggle_csv

    handle, file = p["handle"], p["file"]
    with owned_tempdir("coverpop-kaggle") as tmp:
        local = fetch_kaggle_csv(handle, tmp / file, file=file)
        df = read_tracks(local, name=f"{handle}/{file}", duplicates=DUPLICATES)
    return df
