"""The Kaggle "spotify-1million-tracks" CSV, downloaded with kagglehub at a pinned version."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from coverpop.core import net
from coverpop.core.atomic import atomic_path
from coverpop.core.errors import CoverpopError
from coverpop.tracks import csv_url

DEFAULT_HANDLE = "amitanshjoshi/spotify-1million-tracks/versions/1"
DEFAULT_FILE = "spotify_data.csv"
CREDENTIALS_HINT = ("KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json; "
                    "see the README, 'Real data')")
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+/versions/\d+$")
# kagglehub's own requests run on coverpop's guarded connections: the CSV's deadline and byte rate
# for the whole download, and no redirect to an internal address (Kaggle's API is named here;
# its download redirects to public storage).
KAGGLE_ENDPOINT = "https://www.kaggle.com"
ADDRESSES = net.Addresses.named([KAGGLE_ENDPOINT], hint="Kaggle's downloads come from public "
                                "addresses only")


def fetch_kaggle_csv(handle: str, dest: str | Path, file: str = DEFAULT_FILE) -> Path:
    """Copy `file` of the dataset `owner/slug/versions/N` to `dest` atomically."""
    found = kaggle_file(handle, file)
    dest = Path(dest)
    with atomic_path(dest) as out:
        shutil.copyfile(found, out)
    return dest


def kaggle_file(handle: str, file: str = DEFAULT_FILE) -> Path:
    """The path of `file` of the dataset `owner/slug/versions/N` in kagglehub's cache
    (KAGGLEHUB_CACHE, default ~/.cache/kagglehub), downloaded first if it is not there; a pinned
    version found complete there is returned without any network call, so re-runs work offline.
    """
    if not _PINNED.match(handle or ""):
        raise CoverpopError(f"params.yaml: data.kaggle.handle={handle!r} must pin a version, "
                            f"e.g. {DEFAULT_HANDLE}")
    import kagglehub  # imported here: it sets up logging and reads config on import
    import requests

    try:
        with net.route_requests(), net.deadline(csv_url.DEADLINE_S, ADDRESSES,
                                                min_rate=csv_url.MIN_RATE,
                                                window=csv_url.WINDOW_S) as guard:
            try:
                found = Path(kagglehub.dataset_download(handle, path=file))
            except Exception:
                if guard.refused is not None:
                    raise guard.refused from None
                if guard.fired:
                    raise TimeoutError(csv_url.late(guard, csv_url.DEADLINE_S)) from None
                raise
    except net.Refused as err:
        raise CoverpopError(f"Kaggle download of {handle} refused: {err.detail}") from None
    except TimeoutError as err:
        raise CoverpopError(f"Kaggle download of {handle}: {err}; check the network, or set "
                            f"data.source=csv and data.csv.path to a local copy of {file}") from None
    except requests.ConnectionError:
        raise CoverpopError(
            f"cannot reach Kaggle to download {handle} (no network?): connect to the internet, "
            f"or set data.source=csv and data.csv.path to a local copy or URL of {file}") from None
    except Exception as err:  # noqa: BLE001 - kagglehub's errors are many; we give one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        status = getattr(getattr(err, "response", None), "status_code", None)
        hint = (f"set {CREDENTIALS_HINT}" if status in (401, 403) else
                "check data.kaggle.handle and data.kaggle.file" if status == 404 else
                f"check the handle and {CREDENTIALS_HINT}")
        raise CoverpopError(f"Kaggle download of {handle} failed: {first} ({hint})") from None
    if found.is_dir():
        found = found / file
    if not found.is_file():
        raise CoverpopError(f"Kaggle dataset {handle} has no {file}; set data.kaggle.file")
    return found
