"""HTTP for the scrapers: one pooled session, a request-rate cap shared by all threads, and the
retry policy (transient errors retried with backoff, 429s waited out or turned into a stop).

Why tenacity on whole requests rather than urllib3's Retry under the session: retries made inside
urllib3 would bypass our rate cap, urllib3 sleeps the full Retry-After of a 429 (hours for a daily
quota), and spotipy reports an exhausted urllib3 retry as "429 Max Retries" with the real status
and reason lost. So urllib3 makes exactly one try, every real response reaches our code, and
tenacity re-runs the request (through the rate cap again) with jittered exponential backoff.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter

from coverpop.covers.types import CoverError, StopScrape

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
USER_AGENT = "coverpop/0.1 (python-requests)"


class Transient(Exception):
    """A 5xx, a timeout or a dropped connection: worth another try."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class RateLimited(Exception):
    """HTTP 429: wait `retry_after` seconds, or stop the run when it is a quota or too long."""

    def __init__(self, retry_after: float, quota: bool, where: str):
        super().__init__(f"HTTP 429 from {where}")
        self.retry_after, self.quota, self.where = retry_after, quota, where


@dataclass
class RetryPolicy:
    attempts: int = 4              # tries in all for one request hit by 5xx/timeouts
    backoff: float = 0.5           # first wait in seconds; doubles per try, plus jitter
    max_backoff: float = 8.0
    max_retry_after: float = 120.0  # a 429 asking for a longer wait stops the run instead
    max_waits: int = 20            # short 429s in a row for one request before we give up the run


class RateLimiter:
    """Request-rate cap shared across threads (a token bucket in its GCRA form).

    `rate` requests per second on average, bursts of up to `burst`; rate <= 0 means no cap. A
    429's Retry-After pauses every thread (`pause`), and `stop` makes every later `acquire`
    raise StopScrape, so one quota hit ends the whole run promptly.
    """

    def __init__(self, rate: float = 0.0, burst: int = 1):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(1, int(burst))
        self._tat = 0.0            # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._stopped: str | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    raise StopScrape(self._stopped)
                now = time.monotonic()
                slot = max(self._tat - (self.burst - 1) * self.interval, now, self._paused_until)
                if slot <= now + 1e-9:   # float slack
                    self._tat = max(self._tat, now) + self.interval
                    return
                wait = slot - now
            self._wake.wait(min(wait, 1.0))   # outside the lock; stop() wakes us early

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def stop(self, message: str) -> None:
        with self._lock:
            self._stopped = self._stopped or message
        self._wake.set()

    @property
    def stopped(self) -> str | None:
        return self._stopped


def make_session(pool_size: int = 16) -> requests.Session:
    """A pooled session that makes exactly one try per request (retries are ours, see above)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def setting(params: dict, key: str, env: str, default: str, environ=os.environ) -> str:
    """A base URL or similar: the environment variable wins over params, then the default."""
    return environ.get(env) or params.get(key) or default


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def rehost(url: str, image_host: str) -> str:
    """Swap scheme and host of an image URL (for mirrors or a local stand-in); '' keeps it."""
    if not image_host:
        return url
    parts = urlsplit(url)
    return image_host.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def retry_after_seconds(headers) -> float:
    """Retry-After as seconds (it may be a number or an HTTP date); 1 s when absent."""
    value = (headers or {}).get("Retry-After")
    if value is None:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return 1.0


def raise_for_status(status: int, headers, reason: str | None, where: str) -> None:
    """Turn an HTTP status into the exception the retry policy and the engine understand."""
    if status < 400:
        return
    if status == 429:
        raise RateLimited(retry_after_seconds(headers), reason == "QUOTA_EXCEEDED", where)
    if status in RETRYABLE_STATUS:
        raise Transient("server_error", f"HTTP {status} from {where}")
    if status == 404:
        raise CoverError("not_found", f"HTTP 404 from {where}")
    raise CoverError(f"http_{status}", f"HTTP {status} from {where}")


def transient_from(err: requests.RequestException, where: str, timeout: float) -> Transient:
    """Classify a requests exception: timeouts and dropped connections are worth a retry."""
    text = str(err)
    if isinstance(err, requests.Timeout) or "timed out" in text.lower():
        return Transient("timeout", f"no answer from {where} within {timeout:g} s")
    return Transient("connection", f"cannot connect to {where}")


def get(session: requests.Session, url: str, *, timeout: float, params: dict | None = None,
        where: str = "") -> requests.Response:
    """One GET, no retries: the response when 2xx, else Transient / RateLimited / CoverError."""
    where = where or host_of(url)
    try:
        resp = session.get(url, params=params, timeout=timeout)
    except requests.RequestException as err:
        raise transient_from(err, where, timeout) from None
    reason = None
    if resp.status_code == 429:
        try:
            reason = resp.json().get("error", {}).get("reason")
        except (ValueError, AttributeError):
            reason = None
    raise_for_status(resp.status_code, resp.headers, reason, where)
    return resp


def resume_message(err: RateLimited, policy: RetryPolicy) -> str:
    when = datetime.now(UTC) + timedelta(seconds=err.retry_after)
    why = ("daily quota exceeded (429 QUOTA_EXCEEDED)" if err.quota else
           f"rate-limited for longer than scrape.max_retry_after={policy.max_retry_after:g} s")
    return (f"{err.where}: {why}, Retry-After {err.retry_after:.0f} s; finished covers are kept: "
            f"resume after {when:%Y-%m-%d %H:%M} UTC by running the stage again")


def call_with_retries(request: Callable[[], T], policy: RetryPolicy, limiter: RateLimiter | None) -> T:
    """Run one request under the rate cap, wait out short 429s, retry transient failures.

    `request()` makes one HTTP call and raises Transient, RateLimited, CoverError or StopScrape.
    Transient failures left after `policy.attempts` tries become CoverError(retryable=True).
    """
    limiter = limiter or RateLimiter()

    def attempt() -> T:
        for _ in range(policy.max_waits):
            limiter.acquire()
            try:
                return request()
            except RateLimited as err:
                if err.quota or err.retry_after > policy.max_retry_after:
                    message = resume_message(err, policy)
                    limiter.stop(message)
                    raise StopScrape(message) from None
                limiter.pause(err.retry_after)   # every thread waits, not just this one
        message = (f"still rate-limited after {policy.max_waits} waits in a row; "
                   "finished covers are kept: run the stage again later (or lower scrape.rate_limit)")
        limiter.stop(message)
        raise StopScrape(message)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential_jitter(multiplier=policy.backoff, max=policy.max_backoff,
                                              jitter=policy.backoff),
        reraise=True)
    try:
        return retrying(attempt)
    except Transient as err:
        raise CoverError(err.reason, f"{err.detail} ({policy.attempts} tries)", retryable=True) from None


def get_cover_bytes(session: requests.Session, url: str, *, timeout: float, policy: RetryPolicy,
             limiter: RateLimiter | None) -> bytes:
    """A cover's bytes, under the retry policy and the rate cap (shared by every resolver)."""
    return call_with_retries(lambda: get(session, url, timeout=timeout).content, policy, limiter)


def policy_from_params(scrape: dict) -> RetryPolicy:
    return RetryPolicy(attempts=int(scrape.get("retries", 3)) + 1,
                       backoff=float(scrape.get("backoff", 0.5)),
                       max_retry_after=float(scrape.get("max_retry_after", 120)))


def limiter_from_params(scrape: dict) -> RateLimiter:
    return RateLimiter(float(scrape.get("rate_limit", 0) or 0))
