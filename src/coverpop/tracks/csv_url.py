"""Whole files over http(s) (the tracks CSV): streamed to disk atomically, sha256 checked.

Kept apart from the scraper's HTTP code so that fetch_csv does not depend on the scrape engine;
the deadline machinery is shared from core/net.py. Each try must finish within DEADLINE_S (the
Kaggle file, ~170 MB, needs about 100 KB/s); a server that stalls is given up on after
READ_TIMEOUT_S without a byte, one that trickles at the deadline. Redirects are followed by hand
(http/https only, MAX_REDIRECTS, no loops), and no more than MAX_BYTES are written (after
decompression). On a link too slow for that, download the file yourself and give its local path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
from tqdm import tqdm

from coverpop.core import net
from coverpop.core.atomic import atomic_path
from coverpop.core.errors import CoverpopError
from coverpop.core.redact import redact_url

DEADLINE_S = 1800.0          # one whole try
READ_TIMEOUT_S = 60.0        # no byte for this long: the try is over
MAX_BYTES = 4 * 10**9        # the Kaggle CSV is ~170 MB; this is not a CSV we want
MAX_REDIRECTS = 5
ATTEMPTS = 3
CHUNK = 1 << 20


class _Retry(Exception):
    """A 5xx, 429, a timeout, a dropped connection or a download cut short: worth another try."""


def _final_response(session: requests.Session, url: str, shown: str, guard: net.Guard):
    """GET `url`, following redirects by hand; the response (body not read yet)."""
    seen = {url}
    for _ in range(MAX_REDIRECTS + 1):
        left = min(guard.remaining(), READ_TIMEOUT_S)
        resp = session.get(url, stream=True, timeout=(left, left), allow_redirects=False)
        target = session.get_redirect_target(resp) if resp.is_redirect else None
        if target is None:
            return resp
        resp.close()                          # a redirect's body is never read
        url = urljoin(resp.url, target)
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise CoverpopError(f"cannot download {shown}: it redirects to a URL that is not "
                                "http(s); check the URL or give a local path")
        if url in seen:
            raise CoverpopError(f"cannot download {shown}: it redirects in a loop; check the URL "
                                "or give a local path")
        seen.add(url)
    raise CoverpopError(f"cannot download {shown}: more than {MAX_REDIRECTS} redirects; check the "
                        "URL or give a local path")


def _fetch(url: str, dest: Path, deadline_s: float, max_bytes: int) -> str:
    """One try: stream `url` to `dest` (atomic), return the sha256 of what was written."""
    shown = redact_url(url)
    digest = hashlib.sha256()
    started = False
    with net.make_session(1) as session, net.deadline(deadline_s) as guard:
        try:
            with _final_response(session, url, shown, guard) as resp:
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise _Retry(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise CoverpopError(f"cannot download {shown}: HTTP {resp.status_code}; "
                                        "check the URL or give a local path")
                try:
                    declared = int(resp.headers.get("Content-Length") or 0)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    raise CoverpopError(f"cannot download {shown}: it announces {declared:,} "
                                        f"bytes, more than the {max_bytes:,} a tracks CSV may be")
                with atomic_path(dest) as tmp, tmp.open("wb") as f, tqdm(
                        total=declared or None, unit="B", unit_scale=True, desc=dest.name,
                        disable=None, leave=False) as bar:
                    started, size = True, 0
                    while chunk := resp.raw.read(CHUNK, decode_content=True):
                        size += len(chunk)
                        if size > max_bytes:
                            raise CoverpopError(f"cannot download {shown}: more than {max_bytes:,}"
                                                " bytes (after decompression); not a tracks CSV")
                        f.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                    if guard.fired:   # without Content-Length, the cut looks like the end
                        raise _Retry(f"no complete download within {deadline_s:g} s")
        except (CoverpopError, _Retry):
            raise
        except Exception as err:   # requests, urllib3, http.client, ssl or zlib, in any phase
            if guard.fired:
                raise _Retry(f"no complete download within {deadline_s:g} s") from None
            raise _Retry(net.describe(err, "the server", body_started=started)[1]) from None
    return digest.hexdigest()


def fetch_csv_url(url: str, dest: str | Path, sha256: str = "", *, deadline_s: float = DEADLINE_S,
                  max_bytes: int = MAX_BYTES, attempts: int = ATTEMPTS, backoff: float = 1.0
                  ) -> Path:
    """Download `url` to `dest` (retrying transient failures); check its sha256 when given."""
    dest = Path(dest)
    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retry),
                                 stop=tenacity.stop_after_attempt(attempts),
                                 wait=tenacity.wait_exponential_jitter(multiplier=backoff),
                                 reraise=True)
    try:
        got = retrying(_fetch, url, dest, deadline_s, max_bytes)
    except _Retry as err:
        raise CoverpopError(f"cannot download {redact_url(url)}: {err} ({attempts} tries); check "
                            "the URL and the network, or download it yourself and give a local "
                            "path") from None
    if sha256 and got != sha256.lower():
        dest.unlink(missing_ok=True)
        raise CoverpopError(f"{redact_url(url)}: sha256 is {got}, but data.csv.sha256 expects "
                            f"{sha256}")
    return dest
