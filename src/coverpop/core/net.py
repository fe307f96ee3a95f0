"""HTTP basics shared by fetch_csv and scrape_images: a whole-request deadline, and what went wrong
in plain words.

Why a watchdog: requests' `timeout` bounds each socket read, not the request. A server that sends
its headers (or its status line) a byte at a time is never timed out, and neither is a body that
trickles. So every request runs under a `deadline(...)`: the sockets it opens or reuses are
registered with one watchdog thread, which shuts them down when the deadline passes. The blocked
read then fails at once, in whatever phase it was (TLS, headers, body), and the caller sees
`guard.fired` and reports a timeout. `abort_all()` does the same for every request in flight, so a
stop (quota, Ctrl-C) does not wait for slow servers.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from coverpop.core.redact import redact_library_logs

USER_AGENT = "coverpop/0.1 (python-requests)"

# urllib3 logs each request line (path and query) at DEBUG: never a signature or token there.
redact_library_logs("urllib3.connectionpool", "urllib3.connection", "urllib3.response",
                    "requests")

_local = threading.local()


def _cut(sock) -> None:
    try:   # the plain socket's shutdown, also for an SSLSocket: the reader wakes with an error
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError, TypeError):
        pass


class Guard:
    """One request's deadline and the sockets it uses. `check_peer(ip)` (optional) is called with
    the address of every new direct connection and may raise to refuse it (see covers.hosts)."""

    def __init__(self, deadline: float, check_peer: Callable[[str], None] | None = None,
                 owner: object = None):
        self.deadline, self.check_peer, self.owner = deadline, check_peer, owner
        self.fired = False
        self._done = False
        self._socks: list = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attach(self, sock) -> None:
        with self._lock:
            if self._done:
                return
            if self.fired:
                _cut(sock)
            elif all(s is not sock for s in self._socks):
                self._socks.append(sock)

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._socks:
                _cut(sock)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._socks.clear()


class Watchdog:
    """One daemon thread that fires each guard whose deadline has passed."""

    def __init__(self):
        self._heap: list[tuple[float, int, Guard]] = []
        self._active: set[Guard] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, guard: Guard) -> None:
        with self._cond:
            earliest = self._heap[0][0] if self._heap else math.inf
            heapq.heappush(self._heap, (guard.deadline, next(self._ids), guard))
            self._active.add(guard)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="coverpop-deadlines")
                self._thread.start()
            if guard.deadline < earliest:   # else the thread wakes early enough anyway: a wake
                self._cond.notify()         # per request costs a thread switch

    def remove(self, guard: Guard) -> None:
        guard.finish()
        with self._cond:
            self._active.discard(guard)

    def abort(self, guards: Callable[[Guard], bool] = lambda g: True) -> None:
        with self._cond:
            chosen = [g for g in self._active if guards(g)]
        for guard in chosen:
            guard.fire()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] not in self._active:
                    heapq.heappop(self._heap)             # finished in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)[2]
                guard.fire()


WATCHDOG = Watchdog()


@contextmanager
def deadline(seconds: float, check_peer: Callable[[str], None] | None = None,
             owner: object = None) -> Iterator[Guard]:
    """Run the requests made in this block (this thread) under one deadline, `seconds` from now."""
    guard = Guard(time.monotonic() + seconds, check_peer, owner)
    previous = getattr(_local, "guard", None)
    _local.guard = guard
    WATCHDOG.add(guard)
    try:
        yield guard
    finally:
        _local.guard = previous
        WATCHDOG.remove(guard)


def abort_all(owner: object = None) -> None:
    """Cut every request in flight (of `owner`, or all): they fail at once as timeouts."""
    WATCHDOG.abort(lambda g: owner is None or g.owner is owner)


# ---- connections that report their sockets to the current guard ---------------------------------
class _Guarded:
    def _admit(self, sock) -> None:
        """Register `sock` with this thread's guard, after the guard's peer check (if any)."""
        guard = getattr(_local, "guard", None)
        if guard is None or sock is None:
            return
        if guard.check_peer is not None and not self.proxy:   # behind a proxy, it decides
            guard.check_peer(sock.getpeername()[0])
        guard.attach(sock)

    def _new_conn(self):
        sock = super()._new_conn()
        try:
            self._admit(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def request(self, *args, **kwargs):
        try:
            self._admit(self.sock)            # a reused or TLS-wrapped socket
        except BaseException:
            self.close()
            raise
        return super().request(*args, **kwargs)

    def getresponse(self, *args, **kwargs):
        guard = getattr(_local, "guard", None)
        if guard is not None and self.sock is not None:
            guard.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Guarded, HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter with connections that obey `deadline(...)`; one try per request."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool_keys: dict[tuple, tuple[dict, dict]] = {}

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        # requests stats the CA bundle (REQUESTS_CA_BUNDLE) on every request to build this key;
        # the answer only depends on the origin and the TLS settings, so it is looked up once.
        parts = urlsplit(request.url)
        key = (parts.scheme.lower(), parts.hostname, parts.port, verify,
               tuple(cert) if isinstance(cert, list) else cert)
        if key not in self._pool_keys:
            self._pool_keys[key] = super().build_connection_pool_key_attributes(
                request, verify, cert)
        return self._pool_keys[key]

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.PoolManager):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def make_session(pool_size: int = 16) -> requests.Session:
    """A pooled session whose connections obey `deadline(...)`, making exactly one try per
    request (retries are the caller's, see covers/http.py)."""
    session = requests.Session()
    adapter = GuardedAdapter(pool_connections=8, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


# ---- what went wrong, in plain words ------------------------------------------------------------
def _chain(err: BaseException) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        for nxt in (getattr(err, "reason", None), *getattr(err, "args", ())):
            if isinstance(nxt, BaseException):
                err = nxt
                break
        else:
            err = err.__cause__ or err.__context__


def describe(err: BaseException, where: str, *, body_started: bool) -> tuple[str, str]:
    """(reason, detail) for a failed request: `connection` only when no connection was made or it
    was dropped before any answer; `truncated` when the answer stopped short; `bad_response` for
    an answer that is not HTTP; `timeout`; `tls`; `bad_url`."""
    chain = list(_chain(err))
    kinds = tuple(type(e) for e in chain)

    def has(*types) -> bool:
        return any(issubclass(k, types) for k in kinds)

    # NewConnectionError subclasses ConnectTimeoutError in urllib3: look for it before timeouts.
    if has(urllib3.exceptions.NameResolutionError, socket.gaierror):
        return "connection", f"cannot connect to {where} (host name not found)"
    if has(ConnectionRefusedError):
        return "connection", f"cannot connect to {where} (connection refused)"
    if has(urllib3.exceptions.NewConnectionError):
        return "connection", f"cannot connect to {where}"
    if has(requests.exceptions.SSLError, urllib3.exceptions.SSLError) or any(
            k.__module__ == "ssl" for k in kinds):
        return "tls", f"TLS with {where} failed"
    if has(urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout):
        return "timeout", f"cannot connect to {where} in time"
    if has(requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout):
        return "timeout", f"{where} did not answer in time"
    if body_started:
        return "truncated", f"the answer from {where} was cut short"
    if has(http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return "connection", f"{where} closed the connection without an answer"
    if has(http.client.HTTPException, urllib3.exceptions.InvalidHeader,
           urllib3.exceptions.HeaderParsingError, requests.exceptions.InvalidHeader):
        return "bad_response", f"{where} sent an answer that is not valid HTTP"
    if has(requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
           requests.exceptions.MissingSchema, urllib3.exceptions.LocationParseError):
        return "bad_url", f"{where} is not a usable http(s) URL"
    return "connection", f"{where} closed the connection without a complete answer"
