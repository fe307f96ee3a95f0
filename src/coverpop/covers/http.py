"""HTTP for the scrapers: one pooled client with a whole-request deadline, a body-size cap and
checked redirects; a request-rate cap shared by all threads; and the retry policy (transient
failures retried with backoff, 429s waited out or turned into a stop).

Every request, whatever it is for (token, track, oEmbed, image), goes through `HttpClient.request`:
- it must be complete within `scrape.timeout` seconds, connect, redirects, headers and body
  together (core/net.py cuts the connection at the deadline; a trickling server is a timeout);
- its body may not exceed `scrape.max_bytes`, declared (Content-Length) or actual after
  decompression (read in small pieces, so a gzip bomb stops at the cap without being inflated);
- redirects are followed by hand (at most MAX_REDIRECTS): a loop, a non-http(s) target and, for
  images, a host outside `scrape.allowed_hosts` each get their own reason;
- the failure is named for what it was: `connection` only when no connection could be made or it
  dropped before any answer, `truncated` when the answer stopped short, `timeout`, `server_error`
  for every 5xx, `too_large`, ...; URLs in messages are redacted (no credentials).

Why tenacity on whole requests rather than urllib3's Retry: retries inside urllib3 would bypass our
rate cap, urllib3 sleeps the full Retry-After of a 429 (hours for a daily quota), and it cannot
retry a body cut short. So urllib3 makes exactly one try, every real response reaches our code, and
tenacity re-runs the request (through the rate cap again) with jittered exponential backoff.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import tenacity
from requests.structures import CaseInsensitiveDict

from coverpop.core import net
from coverpop.core.redact import redact_url
from coverpop.covers.answers import parse_json
from coverpop.covers.hosts import HostPolicy
from coverpop.covers.types import CoverError, StopScrape

T = TypeVar("T")
MAX_REDIRECTS = 5
CHUNK = 64 * 1024            # body read size: the most a gzip bomb inflates past the cap
DEFAULT_RETRY_AFTER = 1.0    # a 429 without a usable Retry-After waits this long
RETRYABLE_4XX = frozenset({408})   # request timeout; every 5xx is retryable as well


class Transient(Exception):
    """A 5xx, a timeout, a dropped connection or a cut-short answer: worth another try."""

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
    attempts: int                  # tries in all for one request hit by 5xx/timeouts
    backoff: float                 # first wait in seconds; doubles per try, plus jitter
    max_retry_after: float         # a 429 asking for a longer wait stops the run instead
    max_backoff: float = 8.0
    max_waits: int = 20            # short 429s in a row for one request before we give up the run

    @classmethod
    def from_settings(cls, s) -> RetryPolicy:
        return cls(attempts=s.retries + 1, backoff=s.backoff, max_retry_after=s.max_retry_after)


class RateLimiter:
    """Request-rate cap shared across threads (a token bucket in its GCRA form).

    `rate` requests per second on average, bursts of up to `burst`; rate <= 0 means no cap. A
    429's Retry-After pauses every thread (`pause`), and `stop` makes every later `acquire` or
    `sleep` raise StopScrape, so one quota hit (or Ctrl-C) ends the whole run promptly.
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

    def sleep(self, seconds: float) -> None:
        """A backoff wait that a stop cuts short."""
        self._wake.wait(seconds)
        if self._stopped:
            raise StopScrape(self._stopped)

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


@dataclass
class Answer:
    """A complete HTTP answer: status, headers, the whole (decoded, capped) body, final URL."""

    status: int
    headers: CaseInsensitiveDict
    body: bytes
    url: str
    where: str

    def json(self) -> Any:
        return parse_json(self.body, self.headers.get("Content-Type", ""), self.where)


def where_of(url: str) -> str:
    """How a URL is named in messages: redacted, and short."""
    text = redact_url(url)
    return text if len(text) <= 160 else text[:157] + "..."


class HttpClient:
    """One pooled session with the deadline, the size cap and checked redirects (see above)."""

    def __init__(self, *, timeout: float, max_bytes: int, hosts: HostPolicy | None = None,
                 pool_size: int = 16, endpoints: net.Addresses = net.PUBLIC_ONLY):
        """`endpoints`: the configured base URLs (token, API, oEmbed, mirror), reachable wherever
        they point; any other host a request or a redirect leads to must be public. Covers
        (`image=True`) obey `hosts` (scrape.allowed_hosts) instead."""
        self.timeout, self.max_bytes, self.hosts = timeout, max_bytes, hosts
        self.endpoints = endpoints
        self.session = net.make_session(pool_size)
        self._environment: dict[str, dict] = {}   # origin -> proxies/verify from the environment

    def abort(self) -> None:
        """Cut every request of this client in flight (a stop, Ctrl-C): they fail at once."""
        net.abort_all(owner=self)

    def request(self, method: str, url: str, *, where: str = "", image: bool = False,
                **kwargs) -> Answer:
        """One request, no retries: the complete answer, whatever its status; else Transient
        (timeout, connection, truncated) or CoverError (too_large, redirect_loop, bad_scheme,
        host_not_allowed, private_address, bad_url). `image=True` applies scrape.allowed_hosts."""
        where = where or where_of(url)
        addresses = self.hosts.addresses if image and self.hosts is not None else self.endpoints
        with net.deadline(self.timeout, addresses, owner=self) as guard:
            try:
                return self._request(method, url, where, image, guard, kwargs)
            except net.Refused as err:
                raise CoverError("private_address", f"{where}: {err.detail}",
                                 retryable=True) from None
            except (CoverError, Transient):
                if guard.fired:
                    raise self._late(where) from None
                raise
            except (requests.RequestException, OSError) as err:
                if guard.refused is not None:      # wrapped by a library on its way up
                    raise CoverError("private_address", f"{where}: {guard.refused.detail}",
                                     retryable=True) from None
                if guard.fired:
                    raise self._late(where) from None
                reason, detail = net.describe(err, where, body_started=False)
                if reason == "bad_url":
                    raise CoverError(reason, detail) from None
                raise Transient(reason, detail) from None
            except StopScrape:
                raise
            except Exception as err:   # http.client/urllib3 choking on a malformed answer
                if guard.fired:
                    raise self._late(where) from None
                raise CoverError("bad_response", f"{where} sent an answer that is not valid "
                                                 f"HTTP ({type(err).__name__})",
                                 retryable=True) from None

    def _late(self, where: str) -> Transient:
        return Transient("timeout", f"no complete answer from {where} within "
                                    f"{self.timeout:g} s (scrape.timeout)")

    def _request(self, method, url, where, image, guard, kwargs) -> Answer:
        prep = self.session.prepare_request(requests.Request(method, url, **kwargs))
        seen = {prep.url}
        for hop in range(MAX_REDIRECTS + 1):
            if image and self.hosts is not None:
                self.hosts.check(prep.url)           # every hop: an allowed host
            left = guard.remaining()
            if left <= 0:
                raise self._late(where)
            resp = self.session.send(prep, allow_redirects=False, timeout=(left, left),
                                     **self._environment_for(prep.url))
            target = self.session.get_redirect_target(resp) if resp.is_redirect else None
            if target is None:
                return Answer(resp.status_code, resp.headers, self._body(resp, where, guard),
                              resp.url, where)
            resp.close()
            nxt = urljoin(resp.url, target)
            if urlsplit(nxt).scheme.lower() not in ("http", "https"):
                raise CoverError("bad_scheme", f"{where} redirects to {where_of(nxt)[:80]}: only "
                                               "http and https are followed")
            if nxt in seen or hop == MAX_REDIRECTS:
                raise CoverError("redirect_loop", f"{where} redirects in a loop" if nxt in seen
                                 else f"{where} redirects more than {MAX_REDIRECTS} times",
                                 retryable=True)
            seen.add(nxt)
            prep = self._next_hop(prep, resp, nxt)
        raise AssertionError("unreachable")

    def _environment_for(self, url: str) -> dict:
        """Proxies and CA bundle from the environment, as requests would find them (looked up
        once per origin: scanning the environment per request costs more than the request)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._environment:
            self._environment[origin] = self.session.merge_environment_settings(
                origin + "/", {}, True, None, None)
        return self._environment[origin]

    def _next_hop(self, prep: requests.PreparedRequest, resp: requests.Response, url: str):
        old = prep.url
        nxt = prep.copy()
        nxt.prepare_url(url, None)                  # quoted as requests would
        self.session.rebuild_method(nxt, resp)
        if resp.status_code not in (307, 308):     # the body goes only where it was sent
            for header in ("Content-Length", "Content-Type", "Transfer-Encoding"):
                nxt.headers.pop(header, None)
            nxt.body = None
        if self.session.should_strip_auth(old, url):
            nxt.headers.pop("Authorization", None)   # never hand a token to another host
        nxt.prepare_auth(None, url)
        return nxt

    def _body(self, resp: requests.Response, where: str, guard: net.Guard) -> bytes:
        """The whole body, decoded, at most max_bytes; read in CHUNKs with the deadline on."""
        try:
            declared = int(resp.headers.get("Content-Length") or -1)
        except ValueError:
            declared = -1
        if declared > self.max_bytes:
            resp.close()
            raise CoverError("too_large", f"{where} announces {declared:,} bytes, more than "
                                          f"scrape.max_bytes={self.max_bytes:,}", retryable=True)
        parts, size = [], 0
        try:
            while True:
                chunk = resp.raw.read(CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise CoverError("too_large", f"{where} sent more than scrape.max_bytes="
                                                  f"{self.max_bytes:,} bytes (after decompression)",
                                     retryable=True)   # a later run with a larger cap asks again
                parts.append(chunk)
        except (CoverError, Transient):
            raise
        except Exception as err:   # urllib3/http.client/ssl/zlib errors mid-body
            if guard.fired:
                raise self._late(where) from None
            reason, detail = net.describe(err, where, body_started=True)
            if reason == "truncated" and "decod" in type(err).__name__.lower():
                reason, detail = "bad_response", f"{where} sent a body that does not decode"
            raise Transient(reason, detail) from None
        finally:
            resp.close()
        if guard.fired:      # an answer without Content-Length ends at the cut like a whole one
            raise self._late(where)
        return b"".join(parts)


# ---- statuses and 429s --------------------------------------------------------------------------
def retry_after_seconds(headers: Mapping | None, now: float | None = None) -> float:
    """Retry-After in seconds, in any form seen in the wild: seconds, an HTTP date, or epoch
    seconds / milliseconds (numbers too large to be a wait). Garbage, negative, NaN or missing:
    DEFAULT_RETRY_AFTER. Never raises."""
    value = str((headers or {}).get("Retry-After") or "").strip()
    if not value:
        return DEFAULT_RETRY_AFTER
    now = time.time() if now is None else now
    try:
        n = float(value)
    except ValueError:
        n = None
    if n is not None:
        if not math.isfinite(n) or n < 0:
            return DEFAULT_RETRY_AFTER
        if n >= 1e12:            # epoch milliseconds
            return max(0.0, n / 1000 - now)
        if n >= 1e9:             # epoch seconds (a wait of 30+ years is not meant literally)
            return max(0.0, n - now)
        return n
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return DEFAULT_RETRY_AFTER


def error_reason(answer: Answer) -> str | None:
    """The `reason` of a Spotify error body ({"error": {"reason": ...}}), if it has that shape."""
    try:
        err = answer.json().get("error")
        reason = err.get("reason") if isinstance(err, dict) else None
        return reason if isinstance(reason, str) else None
    except (CoverError, AttributeError):
        return None


def raise_for_status(answer: Answer) -> Answer:
    """Turn an HTTP status into the exception the retry policy and the engine understand."""
    status, where = answer.status, answer.where
    if status < 400:
        return answer
    if status == 429:
        raise RateLimited(retry_after_seconds(answer.headers),
                          error_reason(answer) == "QUOTA_EXCEEDED", where)
    if status >= 500 or status in RETRYABLE_4XX:
        raise Transient("server_error", f"HTTP {status} from {where}")
    if status == 404:
        raise CoverError("not_found", f"HTTP 404 from {where}")
    raise CoverError(f"http_{status}", f"HTTP {status} from {where}")


def resume_message(err: RateLimited, policy: RetryPolicy) -> str:
    why = ("daily quota exceeded (429 QUOTA_EXCEEDED)" if err.quota else
           f"rate-limited for longer than scrape.max_retry_after={policy.max_retry_after:g} s")
    if err.retry_after > 366 * 86400:     # not a date we can print, nor a wait anyone means
        return (f"{err.where}: {why}, Retry-After of more than a year; finished covers are kept: "
                "run the stage again later")
    when = datetime.now(UTC) + timedelta(seconds=err.retry_after)
    return (f"{err.where}: {why}, Retry-After {err.retry_after:.0f} s; finished covers are kept: "
            f"resume after {when:%Y-%m-%d %H:%M} UTC by running the stage again")


def call_with_retries(request: Callable[[], T], policy: RetryPolicy,
                      limiter: RateLimiter | None) -> T:
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
        message = (f"still rate-limited after {policy.max_waits} waits in a row; finished "
                   "covers are kept: run the stage again later (or lower scrape.rate_limit)")
        limiter.stop(message)
        raise StopScrape(message)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential_jitter(multiplier=policy.backoff, max=policy.max_backoff,
                                              jitter=policy.backoff),
        sleep=limiter.sleep, reraise=True)
    try:
        return retrying(attempt)
    except Transient as err:
        raise CoverError(err.reason, f"{err.detail} ({policy.attempts} tries)",
                         retryable=True) from None


def image_url(url: str, image_host: str) -> str:
    """A cover URL from an answer or a table, checked to be http(s), on the mirror if one is set."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise CoverError("bad_scheme", f"the cover URL {where_of(url)[:80]} is not http(s)")
    return rehost(url, image_host)


def rehost(url: str, image_host: str) -> str:
    """Swap scheme and host of an image URL (for mirrors or a local stand-in); '' keeps it."""
    if not image_host:
        return url
    parts = urlsplit(url)
    return image_host.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


class Fetcher:
    """What every network resolver shares: the client, the policy, the rate caps, and the cover
    download (images have no rate cap, but a stop still applies)."""

    def __init__(self, settings):
        self.settings = settings
        hosts = HostPolicy(settings.allowed_hosts, trusted=[settings.image_mirror_host])
        endpoints = net.Addresses.named(
            [settings.api_url, settings.token_url, settings.oembed_url, settings.image_host],
            hint="only the hosts of scrape.api_url, token_url, oembed_url and image_host (or "
                 "their environment variables) may be internal")
        self.http = HttpClient(timeout=settings.timeout, max_bytes=settings.max_bytes,
                               hosts=hosts, pool_size=settings.workers, endpoints=endpoints)
        self.policy = RetryPolicy.from_settings(settings)
        self.limiter = RateLimiter(settings.rate_limit)
        self.images = RateLimiter()

    def get_json(self, url: str, *, where: str = "", **kwargs) -> Any:
        """GET a JSON document under the retry policy and the rate cap."""
        def once():
            return raise_for_status(self.http.request("GET", url, where=where, **kwargs)).json()
        return call_with_retries(once, self.policy, self.limiter)

    def cover_bytes(self, url: str, limiter: RateLimiter | None = None) -> bytes:
        """A cover's bytes from an allowed host, under the retry policy."""
        def once():
            return raise_for_status(self.http.request("GET", url, image=True)).body
        return call_with_retries(once, self.policy, limiter or self.images)

    def stop(self, message: str) -> None:
        """Stop the run: no new request starts, waits end, requests in flight are cut."""
        for limiter in (self.limiter, self.images):
            limiter.stop(message)
        self.http.abort()
