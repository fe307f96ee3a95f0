"""HTTP basics shared by every request coverpop makes (token, API, oEmbed, covers, the tracks CSV,
Kaggle): one deadline policy, one address policy, and what went wrong in plain words.

Why a watchdog: requests' `timeout` bounds each socket read, not the request. A server that sends
its headers (or its status line) a byte at a time is never timed out, and neither is a body that
trickles. So every request runs under a `deadline(...)`: the sockets it opens or reuses are
registered with one watchdog thread, which shuts them down when a limit passes. The blocked read
then fails at once, in whatever phase it was (TLS, headers, body), and the caller sees
`guard.fired` (and `guard.why`) and reports it. The limits of one guard:
- `seconds`: the whole request (every redirect, the headers, the body);
- `min_rate` (optional, for long downloads): at least that many bytes/s must arrive over every
  `window` seconds, headers and body (counted below the buffering, so a byte a second is seen
  as such); a stalled or trickling server of a 30-minute download ends in `window` seconds.
`abort_all()` cuts every request in flight, so a stop (quota, Ctrl-C) does not wait for servers.

Why an address policy on every connection: a URL we were given may redirect anywhere, and a name
may resolve anywhere. Each new connection made under a guard is checked before it is opened (the
name resolved, every address looked at) and again once connected (the peer's address): a host
named exactly by the configuration (`Addresses`) may be anywhere, any other must be a public
address; loopback, private, link-local, CGNAT and the like are refused. So a redirect from the
configured API on 127.0.0.1:8080 to 127.0.0.1:9000 never reaches port 9000.

`route_requests()` makes third-party code built on requests (kagglehub) use these connections.
"""

from __future__ import annotations

import heapq
import http.client
import io
import ipaddress
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import requests.sessions
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


# ---- which addresses a request may connect to ---------------------------------------------------
class Refused(Exception):
    """A connection the address policy refuses (not an OSError: no retry layer swallows it)."""

    reason = "private_address"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def is_public(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])       # drop an IPv6 zone id
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def origin_of(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return None
    try:
        port = parts.port or _default_port(parts.scheme.lower())
    except ValueError:
        return None
    return host, port


@dataclass(frozen=True)
class Addresses:
    """Hosts a request may reach wherever they point: `origins` (host, port) as named by a
    configured URL, `hosts` on any port (scrape.allowed_hosts' exact entries). Any other host must
    resolve to, and connect to, public addresses only."""

    origins: frozenset = frozenset()
    hosts: frozenset = frozenset()
    hint: str = "name it exactly in the configuration to allow it"

    @classmethod
    def named(cls, urls: Iterable[str] = (), hosts: Iterable[str] = (), hint: str = "") -> Addresses:
        origins = frozenset(o for o in (origin_of(u) for u in urls if u) if o)
        names = frozenset(h.rstrip(".").lower() for h in hosts if h)
        return cls(origins, names, hint or cls.hint)

    def trusted(self, host: str, port: int) -> bool:
        host = (host or "").strip("[]").rstrip(".").lower()
        return host in self.hosts or (host, port) in self.origins

    def _refuse(self, host: str, port: int, ip: str) -> Refused:
        return Refused(f"refused to connect to {host}:{port} ({ip}, a private, loopback or "
                       f"link-local address that was not named; {self.hint})")

    def check_host(self, host: str, port: int) -> None:
        """Before connecting: every address the name resolves to must be public."""
        if self.trusted(host, port):
            return
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return      # the connection itself fails and says so
        for info in infos:
            ip = info[4][0]
            if not is_public(ip):
                raise self._refuse(host, port, ip)

    def check_peer(self, host: str, port: int, ip: str) -> None:
        """Once connected: the peer's address (a name may resolve differently the second time)."""
        if not self.trusted(host, port) and not is_public(ip):
            raise self._refuse(host, port, ip)


PUBLIC_ONLY = Addresses()


# ---- deadlines -----------------------------------------------------------------------------------
class Guard:
    """One request's limits and the sockets it uses (see the module docstring)."""

    def __init__(self, seconds: float, addresses: Addresses | None = None, owner: object = None,
                 *, min_rate: float = 0.0, window: float = 30.0):
        now = time.monotonic()
        self.deadline, self.addresses, self.owner = now + seconds, addresses, owner
        self.min_rate, self.window = float(min_rate), float(window)
        self.fired = False
        self.why = ""            # "deadline", "slow" or "abort" once fired
        self.refused: Refused | None = None   # set when the address policy refused a connection
        self.received = 0        # body and header bytes read (counted only with min_rate)
        self._window_end = now + self.window if self.min_rate > 0 else math.inf
        self._window_start_bytes = 0
        self._done = False
        self._socks: list = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def due(self) -> float:
        return min(self.deadline, self._window_end)

    def attach(self, sock) -> None:
        with self._lock:
            if self._done:
                return
            if self.fired:
                _cut(sock)
            elif all(s is not sock for s in self._socks):
                self._socks.append(sock)

    def fire(self, why: str = "abort") -> None:
        with self._lock:
            if self._done or self.fired:
                return
            self.fired, self.why = True, why
            for sock in self._socks:
                _cut(sock)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._socks.clear()

    def expire(self, now: float) -> bool:
        """The watchdog's look at a due guard: fire it, or move its rate window on. True when
        there is nothing more to watch: it fired, or its request finished meanwhile (fire() then
        does nothing, and a finished guard left due would be looked at again at once, forever)."""
        if self._done:
            return True
        if now >= self.deadline:
            self.fire("deadline")
        elif now >= self._window_end:
            if self.received - self._window_start_bytes < self.min_rate * self.window:
                self.fire("slow")
            else:
                self._window_start_bytes, self._window_end = self.received, now + self.window
        return self.fired or self._done

    def describe(self, seconds: float) -> str:
        """Why it fired, for messages."""
        if self.why == "slow":
            return (f"less than {self.min_rate:,.0f} bytes/s for {self.window:g} s (a stalled or "
                    "trickling server)")
        if self.why == "abort":
            return "stopped"
        return f"no complete answer within {seconds:g} s"


class Watchdog:
    """One daemon thread that looks at each guard when it is due."""

    def __init__(self):
        self._heap: list[tuple[float, int, Guard]] = []
        self._active: set[Guard] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, guard: Guard) -> None:
        with self._cond:
            self._active.add(guard)
            self._push(guard)

    def _push(self, guard: Guard) -> None:
        earliest = self._heap[0][0] if self._heap else math.inf
        due = guard.due()
        heapq.heappush(self._heap, (due, next(self._ids), guard))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="coverpop-deadlines")
            self._thread.start()
        if due < earliest:    # else the thread wakes early enough anyway: a wake per request
            self._cond.notify()   # costs a thread switch

    def remove(self, guard: Guard) -> None:
        guard.finish()
        with self._cond:
            self._active.discard(guard)

    def abort(self, guards: Callable[[Guard], bool] = lambda g: True) -> None:
        with self._cond:
            chosen = [g for g in self._active if guards(g)]
        for guard in chosen:
            guard.fire("abort")

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2] not in self._active:
                    heapq.heappop(self._heap)             # finished in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                wait = self._heap[0][0] - now
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)[2]
                if guard.due() > now:                     # moved on since this entry was made
                    heapq.heappush(self._heap, (guard.due(), next(self._ids), guard))
                elif not guard.expire(now):
                    heapq.heappush(self._heap, (guard.due(), next(self._ids), guard))
                else:
                    self._active.discard(guard)


WATCHDOG = Watchdog()


@contextmanager
def deadline(seconds: float, addresses: Addresses | None = None, owner: object = None, *,
             min_rate: float = 0.0, window: float = 30.0) -> Iterator[Guard]:
    """Run the requests made in this block (this thread) under one guard: the whole block within
    `seconds`, each connection checked against `addresses` (None: no check), and optionally at
    least `min_rate` bytes/s over each `window` seconds."""
    guard = Guard(seconds, addresses, owner, min_rate=min_rate, window=window)
    previous = getattr(_local, "guard", None)
    _local.guard = guard
    WATCHDOG.add(guard)
    try:
        yield guard
    finally:
        _local.guard = previous
        WATCHDOG.remove(guard)


def abort_all(owner: object = None) -> None:
    """Cut every request in flight (of `owner`, or all): they fail at once."""
    WATCHDOG.abort(lambda g: owner is None or g.owner is owner)


# ---- connections that report their sockets to the current guard ---------------------------------
class _Counting(io.RawIOBase):
    """The socket's reader, counting what arrives for the guard's rate window (below the buffer:
    a buffered read of 1 MB from a trickling server is seen a byte at a time)."""

    def __init__(self, raw, guard: Guard):
        self.raw, self.guard = raw, guard

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int | None:
        n = self.raw.readinto(b)
        if n:
            self.guard.received += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class _Response(http.client.HTTPResponse):
    """http.client's response; under a guard with a rate limit, its bytes are counted."""

    def __init__(self, sock, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        guard = getattr(_local, "guard", None)
        if guard is not None and guard.min_rate > 0:   # nothing is read yet: swap the reader
            plain, self.fp = self.fp, io.BufferedReader(_Counting(sock.makefile("rb", 0), guard))
            plain.close()


class _Guarded:
    response_class = _Response

    def _endpoint(self) -> tuple[str, int]:
        return self.host, self.port or self.default_port

    def _admit(self, sock) -> None:
        """Register `sock` with this thread's guard, after the guard's peer check (if any)."""
        guard = getattr(_local, "guard", None)
        if guard is None or sock is None:
            return
        if guard.addresses is not None and not self.proxy:   # behind a proxy, it decides
            try:
                guard.addresses.check_peer(*self._endpoint(), sock.getpeername()[0])
            except Refused as err:
                guard.refused = err
                raise
        guard.attach(sock)

    def _new_conn(self):
        guard = getattr(_local, "guard", None)
        if guard is not None and guard.addresses is not None and not self.proxy:
            try:
                guard.addresses.check_host(*self._endpoint())   # before a byte is sent
            except Refused as err:
                guard.refused = err
                raise
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


@contextmanager
def route_requests() -> Iterator[None]:
    """Within the block, every requests.Session created (by third-party code: kagglehub) uses
    guarded connections, so `deadline(...)` and its address policy apply to it too."""
    original = requests.sessions.HTTPAdapter
    requests.sessions.HTTPAdapter = GuardedAdapter
    try:
        yield
    finally:
        requests.sessions.HTTPAdapter = original


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
