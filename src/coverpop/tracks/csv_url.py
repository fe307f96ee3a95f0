"""Whole files over http(s) (the tracks CSV): streamed to disk atomically, sha256 checked.

Kept apart from the scraper's HTTP code so that fetch_csv does not depend on the scrape engine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
import tenacity
from tqdm import tqdm

from coverpop.core.atomic import atomic_path
from coverpop.core.errors import CoverpopError


class _Retry(Exception):
    """A 5xx, a timeout or a dropped connection: worth another try."""


def _fetch(url: str, dest: Path, timeout: float) -> str:
    """One try: stream `url` to `dest` (atomic), return the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=timeout,
                          headers={"User-Agent": "coverpop"}) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise _Retry(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise CoverpopError(f"cannot download {url}: HTTP {resp.status_code}; "
                                    "check the URL or give a local path")
            total = int(resp.headers.get("Content-Length") or 0) or None
            with atomic_path(dest) as tmp, tmp.open("wb") as f, tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=None,
                    leave=False) as bar:
                for chunk in resp.iter_content(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as err:
        raise _Retry(type(err).__name__) from None
    return digest.hexdigest()


def fetch_csv_url(url: str, dest: str | Path, sha256: str = "", timeout: float = 60.0,
                  attempts: int = 3, backoff: float = 1.0) -> Path:
    """Download `url` to `dest` (retrying transient failures); check its sha256 when given."""
    dest = Path(dest)
    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retry),
                                 stop=tenacity.stop_after_attempt(attempts),
                                 wait=tenacity.wait_exponential_jitter(multiplier=backoff),
                                 reraise=True)
    try:
        got = retrying(_fetch, url, dest, timeout)
    except _Retry as err:
        raise CoverpopError(f"cannot download {url}: {err} ({attempts} tries); check the URL "
                            "and the network, or give a local path") from None
    if sha256 and got != sha256.lower():
        dest.unlink(missing_ok=True)
        raise CoverpopError(f"{url}: sha256 is {got}, but data.csv.sha256 expects {sha256}")
    return dest
