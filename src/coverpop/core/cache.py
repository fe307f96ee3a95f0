"""The user's cache folder: decoded covers, embeddings, input fingerprints, downloaded CSVs."""

import os
from pathlib import Path


def cache_root() -> Path:
    """$COVERPOP_CACHE, else $XDG_CACHE_HOME/coverpop (~/.cache/coverpop).

    Outside the repo on purpose: `dvc exp run --queue` runs in temporary copies of the repo, and
    all of them should reuse the same decoded covers and fingerprints.
    """
    if os.environ.get("COVERPOP_CACHE"):
        return Path(os.environ["COVERPOP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "coverpop"
