"""Shared HTTP plumbing: rate cap, Retry-After, retry policy, CSV download over real HTTP."""

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from coverpop.covers import http
from coverpop.covers.types import CoverError, StopScrape


class FakeClock:
    """Drives RateLimiter without real sleeping: waiting advances the clock."""

    def __init__(self, monkeypatch, limiter):
        self.now = 1000.0
        monkeypatch.setattr(http.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(limiter._wake, "wait", self.wait)

    def wait(self, seconds):
        self.now += seconds
        return False


def test_rate_cap_spaces_requests_evenly(monkeypatch):
    limiter = http.RateLimiter(rate=10)
    clock = FakeClock(monkeypatch, limiter)
    start = clock.now
    for _ in range(21):
        limiter.acquire()
    assert clock.now - start == pytest.approx(2.0)     # 20 gaps of 0.1 s


def test_rate_cap_allows_a_burst_then_the_rate(monkeypatch):
    limiter = http.RateLimiter(rate=10, burst=5)
    clock = FakeClock(monkeypatch, limiter)
    start = clock.now
    for _ in range(5):
        limiter.acquire()
    assert clock.now == start
    for _ in range(10):
        limiter.acquire()
    assert clock.now - start == pytest.approx(1.0)


def test_no_cap_still_honours_a_pause(monkeypatch):
    limiter = http.RateLimiter(rate=0)
    clock = FakeClock(monkeypatch, limiter)
    limiter.acquire()
    limiter.pause(7)
    limiter.acquire()
    assert clock.now == pytest.approx(1007.0)


@pytest.mark.timeout(20)
def test_stop_wakes_threads_waiting_out_a_pause():
    limiter = http.RateLimiter()
    limiter.pause(3600)
    errors = []

    def worker():
        try:
            limiter.acquire()
        except StopScrape as err:
            errors.append(str(err))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    limiter.stop("quota: resume after tomorrow")
    for t in threads:
        t.join()
    assert errors == ["quota: resume after tomorrow"] * 4


def test_retry_after_as_seconds_or_http_date():
    assert http.retry_after_seconds({"Retry-After": "48925"}) == 48925
    assert http.retry_after_seconds({}) == 1.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < http.retry_after_seconds({"Retry-After": later}) <= 120


def test_call_retries_transient_errors_then_gives_a_coverror():
    tries = []

    def flaky():
        tries.append(1)
        raise http.Transient("server_error", "HTTP 502 from x")

    with pytest.raises(CoverError) as err:
        http.call_with_retries(flaky, http.RetryPolicy(attempts=3, backoff=0.001, max_retry_after=60), None)
    assert len(tries) == 3 and err.value.reason == "server_error" and err.value.retryable


def test_call_passes_track_errors_through_untried():
    tries = []

    def missing():
        tries.append(1)
        raise CoverError("not_found", "HTTP 404")

    with pytest.raises(CoverError, match="not_found"):
        http.call_with_retries(missing, http.RetryPolicy(attempts=3, backoff=0.001, max_retry_after=60), None)
    assert len(tries) == 1


def test_call_gives_up_the_run_after_too_many_429_in_a_row(monkeypatch):
    limiter = http.RateLimiter()
    FakeClock(monkeypatch, limiter)

    def limited():
        raise http.RateLimited(2, quota=False, where="api")

    with pytest.raises(StopScrape, match="still rate-limited after 5 waits"):
        http.call_with_retries(limited, http.RetryPolicy(attempts=1, backoff=0.1, max_retry_after=60, max_waits=5), limiter)
    assert limiter.stopped
