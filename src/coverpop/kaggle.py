"""The Kaggle "spotify-1million-tracks" CSV, downloaded with kagglehub at a pinned version."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from coverpop.atomic import atomic_path
from coverpop.errors import CoverpopError

DEFAULT_HANDLE = "amitanshjoshi/spotify-1million-tracks/versions/1"
DEFAULT_FILE = "spotify_data.csv"
CREDENTIALS_HINT = ("KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json; "
                    "see docs/scrape.md)")
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+/versions/\d+$")


def download_kaggle_csv(handle: str, dest: str | Path, file: str = DEFAULT_FILE) -> Path:
    """Download `file` of the dataset `owner/slug/versions/N` and place it at `dest` atomically."""
    if not _PINNED.match(handle or ""):
        raise CoverpopError(f"params.yaml: data.kaggle.handle={handle!r} must pin a version, "
                            f"e.g. {DEFAULT_HANDLE}")
    import kagglehub   # imported here: it sets up logging and reads config on import
    import requests

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".kaggle-") as tmp:
        try:
            folder = Path(kagglehub.dataset_download(handle, output_dir=tmp))
        except requests.ConnectionError:
            raise CoverpopError(
                f"cannot reach Kaggle to download {handle} (no network?): connect to the internet, "
                f"or set data.source=csv and data.csv.path to a local copy or URL of {file}") from None
        except Exception as err:  # noqa: BLE001 - kagglehub's errors are many; we give one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            status = getattr(getattr(err, "response", None), "status_code", None)
            hint = (f"set {CREDENTIALS_HINT}" if status in (401, 403) else
                    "check data.kaggle.handle" if status == 404 else
                    f"check the handle and {CREDENTIALS_HINT}")
            raise CoverpopError(f"Kaggle download of {handle} failed: {first} ({hint})") from None
        found = folder / file if folder.is_dir() else folder
        if not found.is_file():
            have = ", ".join(p.name for p in folder.iterdir()) if folder.is_dir() else folder.name
            raise CoverpopError(f"Kaggle dataset {handle} has no {file} (has: {have}); "
                                f"set data.kaggle.file")
        with atomic_path(dest) as out:
            shutil.move(found, out)
    return dest
