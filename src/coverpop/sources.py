"""fetch_csv: where the tracks table comes from (demo, a user's own CSV + images, a Kaggle-schema CSV)."""

from pathlib import Path

import pandas as pd

from coverpop import demo
from coverpop.errors import CoverpopError
from coverpop.params import choice
from coverpop.tables import LOCAL_REQUIRED, read_tracks, validate_tracks

SOURCES = ("demo", "local", "csv")


def fetch_tracks(data_params: dict) -> pd.DataFrame:
    """Build the tracks table for `data.source`; every source ends in the same validated schema."""
    source = choice(data_params.get("source"), SOURCES, "data.source")
    if source == "demo":
        p = data_params.get("demo", {})
        df = demo.make_tracks(n_albums=int(p.get("n_albums", 2000)), seed=int(p.get("seed", 0)))
        return validate_tracks(df, "demo")
    if source == "local":
        return _local(data_params)
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
    path = p.get("path")
    if not path:
        raise CoverpopError("params.yaml: data.csv.path must be set for data.source=csv")
    return read_tracks(path)
