"""Whole files over http(s) (the tracks CSV): streamed to disk atomically, sha256 checked.

Kept apart from the scraper's HTTP code so that fetch_csv does not depend on the scrape engine;
the deadline and address machinery is shared from core/net.py. Each try must finish within
DEADLINE_S (the Kaggle file, ~170 MB, needs about 100 KB/s), and at least MIN_RATE bytes/s must
arrive over every WINDOW_S seconds: a server that stalls, or trickles its headers or its body,
is given up on after WINDOW_S, not after half an hour. Redirects are followed by hand
(http/https only, MAX_REDIRECTS, no loops); a redirect may lead to the host of the URL itself or
to a public address, never to another internal one. No more than MAX_BYTES are written (after
decompression). On a link too slow for that, download the file yourself and give its local path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
MIN_RATE = 1000.0            # bytes/s over each window, or the try is over
WINDOW_S = 20.0
MAX_BYTES = 4 * 10**9        # the Kaggle CSV is ~170 MB; this is not a CSV we want
MAX_REDIRECTS = 5
ATTEMPTS = 3
BACKOFF_S = 1.0              # first wait between tries (doubles per try, plus up to as much jitter)
CHUNK = 1 << 20
ADDRESS_HINT = ("only the host of data.csv.path itself may be internal; give the final URL, or "
                "download the file and give its local path")


class _Retry(Exception):
    """A 5xx, 429, a timeout, a dropped connection or a download cut short: worth another try."""


@dataclass(frozen=True)
class Download:
    """What one download found: the file (None for a 304 Not Modified) and its validators."""

    path: Path | None
    sha256: str = ""
    size: int = 0
    etag: str = ""
    last_modified: str = ""


def _final_response(session: requests.Session, url: str, shown: str, guard: net.Guard,
                    headers: dict):
    """GET `url`, following redirects by hand; the response (body not read yet)."""
    seen = {url}
    for _ in range(MAX_REDIRECTS + 1):
        left = guard.remaining()
        resp = session.get(url, stream=True, timeout=(left, left), allow_redirects=False,
                           headers=headers)
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


def _fetch(url: str, dest: Path, headers: dict, deadline_s: float, max_bytes: int,
           min_rate: float, window_s: float) -> Download:
    """One try: stream `url` to `dest` (atomic)."""
    shown = redact_url(url)
    digest = hashlib.sha256()
    started = False
    addresses = net.Addresses.named([url], hint=ADDRESS_HINT)
    with net.make_session(1) as session, net.deadline(deadline_s, addresses, min_rate=min_rate,
                                                      window=window_s) as guard:
        try:
            with _final_response(session, url, shown, guard, headers) as resp:
                if resp.status_code == 304 and any(k.startswith("If-") for k in headers):
                    return Download(None)
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
                size = 0
                with atomic_path(dest) as tmp, tmp.open("wb") as f, tqdm(
                        total=declared or None, unit="B", unit_scale=True, desc=dest.name,
                        disable=None, leave=False) as bar:
                    started = True
                    while chunk := resp.raw.read(CHUNK, decode_content=True):
                        size += len(chunk)
                        if size > max_bytes:
                            raise CoverpopError(f"cannot download {shown}: more than {max_bytes:,}"
                                                " bytes (after decompression); not a tracks CSV")
                        f.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                    if guard.fired:   # without Content-Length, the cut looks like the end
                        raise _Retry(late(guard, deadline_s))
                return Download(dest, digest.hexdigest(), size, resp.headers.get("ETag", ""),
                                resp.headers.get("Last-Modified", ""))
        except net.Refused as err:
            raise CoverpopError(f"cannot download {shown}: {err.detail}") from None
        except (CoverpopError, _Retry):
            raise
        except Exception as err:   # requests, urllib3, http.client, ssl or zlib, in any phase
            if guard.refused is not None:
                raise CoverpopError(f"cannot download {shown}: {guard.refused.detail}") from None
            if guard.fired:
                raise _Retry(late(guard, deadline_s)) from None
            raise _Retry(net.describe(err, "the server", body_started=started)[1]) from None


def late(guard: net.Guard, deadline_s: float) -> str:
    """Why a guarded download was given up on, for messages."""
    if guard.why == "slow":
        return f"the server sent {guard.describe(deadline_s)}"
    return f"no complete download within {deadline_s:g} s"


def download(url: str, dest: str | Path, *, headers: dict | None = None,
             deadline_s: float | None = None, max_bytes: int | None = None,
             attempts: int = ATTEMPTS, backoff: float | None = None, min_rate: float | None = None,
             window_s: float | None = None) -> Download:
    """Download `url` to `dest` (retrying transient failures). `headers` may hold conditional
    ones (If-None-Match, If-Modified-Since): a 304 then gives Download(None). Limits left None
    are the module's (DEADLINE_S, MAX_BYTES, MIN_RATE, WINDOW_S, BACKOFF_S)."""
    backoff = BACKOFF_S if backoff is None else backoff
    deadline_s = DEADLINE_S if deadline_s is None else deadline_s
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    min_rate = MIN_RATE if min_rate is None else min_rate
    window_s = WINDOW_S if window_s is None else window_s
    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retry),
                                 stop=tenacity.stop_after_attempt(attempts),
                                 wait=tenacity.wait_exponential_jitter(multiplier=backoff,
                                                                       jitter=backoff),
                                 reraise=True)
    try:
        return retrying(_fetch, url, Path(dest), {"User-Agent": net.USER_AGENT, **(headers or {})},
                        deadline_s, max_bytes, min_rate, window_s)
    except _Retry as err:
        raise CoverpopError(f"cannot download {redact_url(url)}: {err} ({attempts} tries); check "
                            "the URL and the network, or download it yourself and give a local "
                            "path") from None


def fetch_csv_url(url: str, dest: str | Path, sha256: str = "", **limits) -> Path:
    """Download `url` to `dest`; check its sha256 when given. `limits`: see download()."""
    dest = Path(dest)
    got = download(url, dest, **limits)
    if sha256 and got.sha256 != sha256.lower():
        dest.unlink(missing_ok=True)
        raise CoverpopError(f"{redact_url(url)}: sha256 is {got.sha256}, but data.csv.sha256 "
                            f"expects {sha256}")
    return dest
