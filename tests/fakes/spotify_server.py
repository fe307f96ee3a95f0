"""A local stand-in for Spotify's Accounts service, Web API, oEmbed and image CDN.

It speaks real HTTP on 127.0.0.1 (stdlib ThreadingHTTPServer in a background thread, ephemeral
port), with the response shapes of November 2026 (see shared/notes/data-sources.md), so the real
spotipy client and the real requests/urllib3 stack run against it unchanged.

    with FakeSpotify(latency=(0.03, 0.05)) as fake:
        fake.api_url, fake.token_url, fake.oembed_url      # point the resolvers here
        fake.fault(track_id, "500", times=2)                # scripted faults per track ...
        fake.quota_after(30)                                # ... or per request count
        fake.reshape(track_id, lambda body: {**body, "album": "x"})   # malformed answers
        fake.token_fault("no_access_token", skip=1)         # token endpoint faults
        fake.revoke_after(10)                               # tokens revoked mid-run (401)
        fake.counts["track"], fake.image_hits[image_id]     # counters for assertions

Hostile faults (for the reliability tests): trickling headers or bodies, bodies cut short, gzip
bombs, absurd Content-Length, redirect loops and redirects to other schemes or hosts, a 307 to any
URL (`redirect_to`, target in `fake.redirect_to`: e.g. a loopback-only service), captive-portal
HTML, 520, error bodies in other shapes ({"error": "Bad Gateway"}), any Retry-After string, JSON
in Latin-1 declared as such (`latin1`, album names "Café ...") or UTF-8 with a BOM (`bom`).

Run it on its own (for the benchmark or by hand):
    python tests/fakes/spotify_server.py --latency 0.03 0.05
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import shutil
import string
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
SIZE_CODES = {640: "b273", 300: "1e02", 64: "4851"}   # i.scdn.co size codes
CODE_SIZES = {code: size for size, code in SIZE_CODES.items()}
IMAGE_PREFIX = "ab67616d0000"
QUOTA_RETRY_AFTER = 48925

# Fault kinds. Metadata faults hit the track endpoint and oEmbed; image faults hit the CDN.
HOSTILE = {"trickle", "trickle_headers", "cut", "bomb", "huge_declared", "redirect_loop",
           "redirect_chain", "redirect_file", "html", "520", "raw", "redirect_to"}
# Answers in another encoding: Latin-1 bytes declared as such, UTF-8 with a BOM and no charset.
CHARSETS = {"latin1": ("iso-8859-1", "application/json; charset=iso-8859-1"),
            "bom": ("utf-8-sig", "application/json")}
METADATA_FAULTS = {"429", "quota", "500", "502", "503", "slow", "404", "no_images",
                   "bad_gateway", "shape"} | HOSTILE | set(CHARSETS)
IMAGE_FAULTS = {"corrupt_jpeg", "truncated_jpeg", "image_404", "image_500", "image_slow",
                "redirect_host"} | {f"image_{k}" for k in HOSTILE}
TOKEN_FAULTS = {"500", "html", "invalid_json", "no_access_token", "bad_expires", "refuse",
                "trickle", "json_list", "redirect_to"} | set(CHARSETS)
PORTAL = (b"<!DOCTYPE html><html><head><title>Welcome to CityWiFi</title></head><body>"
          b"<form action='/login'>Please accept the terms to continue</form></body></html>")

_BOMB: dict[int, bytes] = {}


def gzip_bomb(mb: int) -> bytes:
    """`mb` MB of zeros, gzip-compressed (about 1/1000 the size), built without holding them:
    one MB deflated once and ended by a full flush (byte-aligned, history reset) is the same
    bytes every time, so the stream is that piece `mb` times (compressing 200 MB takes a second)."""
    if mb not in _BOMB:
        zeros = bytes(1 << 20)
        z = zlib.compressobj(9, zlib.DEFLATED, -15)           # raw deflate: the gzip frame is ours
        piece = z.compress(zeros) + z.flush(zlib.Z_FULL_FLUSH)
        crc = 0
        for _ in range(mb):
            crc = zlib.crc32(zeros, crc)
        _BOMB[mb] = (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + piece * mb + z.flush()
                     + struct.pack("<II", crc, (mb << 20) & 0xFFFFFFFF))
    return _BOMB[mb]

_BASE62 = string.digits + string.ascii_letters


def make_track_ids(n: int, seed: int = 0) -> list[str]:
    """n distinct, well-formed Spotify track ids (22 base62 characters)."""
    rng = random.Random(seed)
    ids: set[str] = set()
    while len(ids) < n:
        ids.add("".join(rng.choice(_BASE62) for _ in range(22)))
    return sorted(ids)


def _hex(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def self_signed_cert(ip: str) -> tuple[bytes, bytes]:
    """A certificate (PEM) for `ip`, and its key: enough for a client told to trust it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-spotify")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def render_jpeg(image_id: str, size: int) -> bytes:
    """A real JPEG whose colours depend on the image id: distinct covers, stable bytes."""
    h = hashlib.sha1(image_id.encode()).digest()
    img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
    draw = ImageDraw.Draw(img)
    for i in range(4):
        x0, y0 = h[3 + i] * size // 256, h[7 + i] * size // 256
        draw.rectangle([x0, y0, x0 + size // 3, y0 + size // 4], fill=(h[11 + i], h[12 + i], h[13 + i]))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class FakeSpotify:
    """The fake services, their catalogue, their scripted faults and their request counters."""

    def __init__(self, latency: tuple[float, float] = (0.0, 0.0), allow_batch: bool = False,
                 retry_after: int | str = 1, slow_seconds: float = 3.0, seed: int = 0,
                 client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 tls: bool = False):
        self.latency = latency
        self.tls = tls                        # https with a self-signed cert; trust ca_file
        self.ca_file = ""
        self.allow_batch = allow_batch
        self.retry_after = retry_after        # Retry-After of the short 429, sent as str(...)
        self.slow_seconds = slow_seconds      # how long a "slow" response stalls
        self.trickle_interval = 0.2           # seconds between the bytes of a trickle
        self.bomb_mb = 200                    # what a gzip bomb inflates to
        self.image_query = ""                 # appended to image URLs (e.g. a signed CDN URL)
        self.basic_auth: Counter = Counter()  # user names seen in Basic auth (API excepted)
        self._shapes: dict[str, object] = {}  # track id -> body mutator for "shape" faults
        self._token_faults: list = []         # [kind, skip, times]
        self._revoke_after: int | None = None
        self._api_requests = 0
        self.raw = b""                         # what a "raw" fault sends, byte for byte
        self.redirect_to = ""                  # where a "redirect_to" fault sends the client (307)
        self.files: dict[str, bytes] = {}      # /files/<name>: plain downloads (a tracks CSV)
        self.file_faults: dict[str, str] = {}  # name -> a HOSTILE fault, every time
        self.client_id, self.client_secret = client_id, client_secret
        self.counts: Counter = Counter()       # per endpoint: token, track, batch, oembed, image
        self.track_hits: Counter = Counter()   # metadata requests per track id
        self.image_hits: Counter = Counter()   # image downloads per 24-hex image id
        self.albums: dict[str, str] = {}       # track id -> album key (shared key = shared cover)
        self.legacy: set[str] = set()          # track ids whose cover has an old 40-hex url
        self._faults: dict[str, list] = {}     # track id -> [kind, remaining or None]
        self._image_faults: dict[str, list] = {}
        self._at_request: dict[int, str] = {}  # metadata request number -> fault kind
        self._quota_after: int | None = None
        self._metadata_requests = 0
        self._tokens: set[str] = set()
        self._jpegs: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._tls_folder: str | None = None
        self._url = ""

    # ---- life cycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeSpotify:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = _Server(("127.0.0.1", port), Handler)
        host, bound = self._server.server_address[:2]
        self._url = f"http://{host}:{bound}"
        if self.tls:
            import ssl
            import tempfile

            cert, key = self_signed_cert(host)
            folder = self._tls_folder = tempfile.mkdtemp(prefix="fake-spotify-tls-")
            self.ca_file = f"{folder}/cert.pem"
            with open(self.ca_file, "wb") as f:
                f.write(cert)
            with open(f"{folder}/key.pem", "wb") as f:
                f.write(key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.ca_file, f"{folder}/key.pem")
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            self._url = f"https://{host}:{bound}"
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        # shutdown() waits for serve_forever's next poll: 0.5 s by default, after every test
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True, name="fake-spotify").start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tls_folder:   # the certificate and key: nothing left behind
            shutil.rmtree(self._tls_folder, ignore_errors=True)
            self._tls_folder = None

    def __enter__(self) -> FakeSpotify:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._url

    @property
    def api_url(self) -> str:
        return self.url + "/v1/"

    @property
    def token_url(self) -> str:
        return self.url + "/api/token"

    @property
    def oembed_url(self) -> str:
        return self.url + "/oembed"

    def env(self) -> dict[str, str]:
        """Environment that points coverpop's resolvers at this fake, credentials included."""
        return {"SPOTIPY_CLIENT_ID": self.client_id, "SPOTIPY_CLIENT_SECRET": self.client_secret,
                "COVERPOP_SPOTIFY_API_URL": self.api_url,
                "COVERPOP_SPOTIFY_TOKEN_URL": self.token_url,
                "COVERPOP_OEMBED_URL": self.oembed_url,
                # the fake's covers live on 127.0.0.1: allowed by name (see covers/hosts.py)
                "COVERPOP_ALLOWED_HOSTS": "127.0.0.1"}

    # ---- scripting ----------------------------------------------------------------------------
    def fault(self, track_id: str, kind: str, times: int | None = None) -> None:
        """Answer requests for this track with a fault, `times` times (None: always)."""
        if kind in METADATA_FAULTS:
            self._faults[track_id] = [kind, times]
        elif kind in IMAGE_FAULTS:
            self._image_faults[self.image_id(track_id)] = [kind, times]
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def fault_at(self, n: int, kind: str) -> None:
        """Answer the n-th metadata request (1-based, counted over track and oEmbed) with a fault."""
        self._at_request[n] = kind

    def reshape(self, track_id: str, mutate) -> None:
        """Answer this track's metadata with `mutate(body)` (any JSON): a malformed answer."""
        self._shapes[track_id] = mutate
        self.fault(track_id, "shape")

    def token_fault(self, kind: str | None, skip: int = 0, times: int | None = None) -> None:
        """The token endpoint answers with a fault after `skip` good answers (None: no fault)."""
        if kind is not None and kind not in TOKEN_FAULTS:
            raise ValueError(f"unknown token fault {kind!r}")
        self._token_faults = [] if kind is None else [kind, skip, times]

    def revoke_after(self, n: int | None) -> None:
        """Revoke every access token when the n-th API request arrives (a 401 mid-run)."""
        self._revoke_after = n

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def quota_after(self, n: int | None) -> None:
        """Every metadata request after the n-th gets 429 QUOTA_EXCEEDED (None: lift the quota)."""
        self._quota_after = n

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._image_faults.clear()
            self._at_request.clear()
            self._quota_after = None
            self._token_faults = []
            self._revoke_after = None

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.track_hits.clear()
            self.image_hits.clear()

    # ---- catalogue ----------------------------------------------------------------------------
    def album_key(self, track_id: str) -> str:
        return self.albums.get(track_id, track_id)

    def image_id(self, track_id: str) -> str:
        if track_id in self.legacy:
            return _hex("legacy" + self.album_key(track_id), 40)
        return _hex("cover" + self.album_key(track_id), 24)

    def image_url(self, track_id: str, size: int) -> str:
        query = f"?{self.image_query}" if self.image_query else ""
        if track_id in self.legacy:
            return f"{self.url}/image/{self.image_id(track_id)}{query}"
        return f"{self.url}/image/{IMAGE_PREFIX}{SIZE_CODES[size]}{self.image_id(track_id)}{query}"

    def track_json(self, track_id: str, images: bool = True) -> dict:
        key = self.album_key(track_id)
        album_id = "".join(_BASE62[b % 62] for b in hashlib.sha1(key.encode()).digest()[:22])
        imgs = [] if not images else (
            [{"url": self.image_url(track_id, 640), "width": 640, "height": 640}]
            if track_id in self.legacy else
            [{"url": self.image_url(track_id, s), "width": s, "height": s} for s in (640, 300, 64)])
        return {
            "album": {"album_type": "album", "id": album_id, "name": f"Album {key[:6]}",
                      "release_date": f"{2000 + int(_hex(key, 4), 16) % 24}-05-17",
                      "release_date_precision": "day", "images": imgs,
                      "uri": f"spotify:album:{album_id}", "type": "album"},
            "artists": [{"id": album_id[::-1], "name": f"Artist {key[:4]}", "type": "artist"}],
            "id": track_id, "name": f"Track {track_id[:6]}", "duration_ms": 200000,
            "uri": f"spotify:track:{track_id}", "type": "track", "is_local": False,
        }

    def jpeg(self, image_id: str, size: int) -> bytes:
        key = (image_id, size)
        if key not in self._jpegs:
            self._jpegs[key] = render_jpeg(image_id, size)
        return self._jpegs[key]

    # ---- fault bookkeeping (called by the handler) ------------------------------------------
    def _take(self, table: dict, key: str) -> str | None:
        with self._lock:
            entry = table.get(key)
            if not entry:
                return None
            kind, left = entry
            if left is not None:
                if left <= 0:
                    return None
                entry[1] = left - 1
            return kind

    def _token_fault(self) -> str | None:
        with self._lock:
            if not self._token_faults:
                return None
            kind, skip, times = self._token_faults
            if skip > 0:
                self._token_faults[1] = skip - 1
                return None
            if times is not None:
                if times <= 0:
                    return None
                self._token_faults[2] = times - 1
            return kind

    def _metadata_fault(self, track_id: str) -> str | None:
        with self._lock:
            self._metadata_requests += 1
            n = self._metadata_requests
            self.track_hits[track_id] += 1
        if self._quota_after is not None and n > self._quota_after:
            return "quota"
        if n in self._at_request:
            return self._at_request[n]
        return self._take(self._faults, track_id)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a deadline, a stop) is part of the game: no traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeSpotify
    protocol_version = "HTTP/1.1"   # keep-alive, like the real services
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stall

    def log_message(self, *args) -> None:  # quiet
        pass

    # ---- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _trickle(self, body: bytes, ctype: str, headers_too: bool = False) -> None:
        """Headers (or the status line itself) and then the body, one byte per interval."""
        fake = self.server_fake
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()   # closed after: never reused
        if not headers_too:
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        self.close_connection = True
        try:
            for i in range(len(head) + len(body)):
                self.wfile.write((head + body)[i:i + 1])
                self.wfile.flush()
                time.sleep(fake.trickle_interval)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    def _cut(self, body: bytes, ctype: str) -> None:
        """Announce the whole body, send two thirds of it, close: a transfer cut short."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) * 2 // 3])
        self.wfile.flush()
        self.close_connection = True

    def _hostile(self, kind: str, body: bytes, ctype: str) -> None:
        """The faults shared by every route (see HOSTILE)."""
        fake = self.server_fake
        if kind == "trickle":
            return self._trickle(body, ctype)
        if kind == "trickle_headers":
            return self._trickle(body, ctype, headers_too=True)
        if kind == "cut":
            return self._cut(body, ctype)
        if kind == "bomb":
            return self._send(200, gzip_bomb(fake.bomb_mb), ctype, {"Content-Encoding": "gzip"})
        if kind == "huge_declared":
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(400 * 10**9))
            self.end_headers()
            self.wfile.write(body[:100])
            self.close_connection = True
            return None
        if kind == "redirect_loop":
            return self._send(302, b"", "text/plain", {"Location": self.path})
        if kind == "redirect_chain":   # a new URL every time: never a loop, never an end
            n = int(parse_qs(urlsplit(self.path).query).get("hop", ["0"])[0]) + 1
            base = re.sub(r"[?&]hop=\d+", "", self.path)
            sep = "&" if "?" in base else "?"
            return self._send(302, b"", "text/plain", {"Location": f"{base}{sep}hop={n}"})
        if kind == "redirect_file":
            return self._send(302, b"", "text/plain", {"Location": "file:///etc/passwd"})
        if kind == "redirect_to":    # 307: the method and body go along (a POST stays a POST)
            return self._send(307, b"", "text/plain", {"Location": fake.redirect_to})
        if kind == "html":           # a captive portal answers everything with its login page
            return self._send(200, PORTAL, "text/html; charset=utf-8")
        if kind == "raw":            # anything at all, as HTTP or not
            self.close_connection = True
            self.wfile.write(fake.raw)
            self.wfile.flush()
            return None
        if kind == "520":
            return self._send(520, b"<html>Web server is returning an unknown error</html>",
                              "text/html")
        raise ValueError(kind)

    def _json(self, status: int, obj, headers: dict | None = None, charset: str = "") -> None:
        if charset in CHARSETS:
            codec, ctype = CHARSETS[charset]
            return self._send(status, json.dumps(obj, ensure_ascii=False).encode(codec), ctype,
                              headers)
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def _error(self, status: int, message: str, headers: dict | None = None) -> None:
        self._json(status, {"error": {"status": status, "message": message}}, headers)

    def _delay(self) -> None:
        lo, hi = self.server_fake.latency
        if hi > 0:
            with self.server_fake._lock:
                d = self.server_fake._rng.uniform(lo, hi)
            time.sleep(d)

    def _count(self, what: str) -> None:
        with self.server_fake._lock:
            self.server_fake.counts[what] += 1

    def _metadata_fault_response(self, kind: str | None, api: bool) -> bool:
        """Send the response for a metadata fault; False when there is none to send."""
        fake = self.server_fake
        if kind is None or kind in ("no_images", "shape") or kind in CHARSETS:
            return False
        if kind in HOSTILE:
            self._hostile(kind, b'{"error": {"status": 200, "message": "' + b"x" * 200 + b'"}}',
                          "application/json")
            return True
        if kind == "bad_gateway":     # a proxy's error body, not Spotify's shape
            self._json(502, {"error": "Bad Gateway"})
            return True
        if kind == "slow":
            time.sleep(fake.slow_seconds)
            return False                          # answers late, if anyone still listens
        if kind == "429":
            self._error(429, "API rate limit exceeded", {"Retry-After": fake.retry_after})
        elif kind == "quota":
            # The daily quota of a development-mode app: body as Spotify sends it.
            self._json(429, {"error": {"status": 429, "message": "Daily quota exceeded",
                                       "reason": "QUOTA_EXCEEDED"}},
                       {"Retry-After": QUOTA_RETRY_AFTER})
        elif kind in ("500", "502", "503"):
            if api:
                self._error(int(kind), "Server error")
            else:
                self._send(int(kind), b"<html>Server error</html>", "text/html")
        elif kind == "404":
            if api:
                self._error(404, "Resource not found")
            else:
                self._send(404, b"Not Found", "text/plain")
        return True

    # ---- routes -------------------------------------------------------------------------------
    def do_POST(self) -> None:
        self._delay()
        length = int(self.headers.get("Content-Length") or 0)
        body = parse_qs(self.rfile.read(length).decode())
        if urlsplit(self.path).path != "/api/token":
            return self._error(404, "Not found")
        self._count("token")
        fake = self.server_fake
        fault = fake._token_fault()
        if fault == "500":
            return self._json(500, {"error": "server_error"})
        if fault == "html":
            return self._send(200, PORTAL, "text/html; charset=utf-8")
        if fault == "invalid_json":
            return self._send(200, b'{"access_token": "BQ', "application/json")
        if fault == "json_list":
            return self._json(200, ["access_token", "BQxyz"])
        if fault == "no_access_token":
            return self._json(200, {"token_type": "Bearer", "expires_in": 3600})
        if fault == "bad_expires":
            return self._json(200, {"access_token": "BQ" + "x" * 40, "expires_in": "soon"})
        if fault == "refuse":
            return self._json(400, {"error": "invalid_client", "error_description": "Invalid"})
        if fault == "trickle":
            return self._trickle(json.dumps({"access_token": "BQ" + "y" * 40}).encode(),
                                 "application/json")
        if fault == "redirect_to":
            return self._hostile(fault, b"", "text/plain")
        expected = base64.b64encode(f"{fake.client_id}:{fake.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            return self._json(400, {"error": "invalid_client",
                                    "error_description": "Invalid client"})
        if body.get("grant_type") != ["client_credentials"]:
            return self._json(400, {"error": "unsupported_grant_type",
                                    "error_description": "grant_type must be client_credentials"})
        token = "BQ" + "".join(random.choice(_BASE62) for _ in range(40))
        with fake._lock:
            fake._tokens.add(token)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        if fault in CHARSETS:
            answer["scope"] = "lecture café"     # one character that is not ASCII
        self._json(200, answer, charset=fault or "")

    def do_GET(self) -> None:
        self._delay()
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path.startswith("/image/"):
            return self._image(path[len("/image/"):])
        if path.startswith("/files/"):
            return self._file(path[len("/files/"):])
        if path == "/oembed":
            return self._oembed(query.get("url", [""])[0])
        if path.startswith("/v1/"):
            fake = self.server_fake
            with fake._lock:
                fake._api_requests += 1
                if fake._revoke_after is not None and fake._api_requests == fake._revoke_after:
                    fake._tokens.clear()
            if not self._authorised():
                return self._error(401, "Invalid access token")
            if path in ("/v1/tracks", "/v1/tracks/"):
                return self._batch(query.get("ids", [""])[0])
            m = re.fullmatch(r"/v1/tracks/([0-9A-Za-z]+)", path)
            if m:
                return self._track(m.group(1))
        self._error(404, "Service not found")

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server_fake._tokens

    def _track(self, track_id: str) -> None:
        self._count("track")
        fault = self.server_fake._metadata_fault(track_id)
        if self._metadata_fault_response(fault, api=True):
            return
        if len(track_id) != 22:
            return self._error(400, "Invalid base62 id")
        body = self.server_fake.track_json(track_id, images=fault != "no_images")
        if fault == "shape":
            body = self.server_fake._shapes[track_id](body)
        if fault in CHARSETS:
            body["album"]["name"] = f"Café {body['album']['name']}"
        self._json(200, body, charset=fault or "")

    def _batch(self, ids: str) -> None:
        self._count("batch")
        fake = self.server_fake
        if not fake.allow_batch:
            return self._error(403, "Forbidden")   # development-mode apps since Feb 2026
        ids_list = [i for i in ids.split(",") if i]
        if not ids_list or len(ids_list) > 50:
            return self._error(400, "Invalid ids: between 1 and 50 ids")
        tracks = []
        for tid in ids_list:
            fault = fake._metadata_fault(tid)
            if fault in ("429", "quota", "500", "502", "503", "slow"):
                self._metadata_fault_response(fault, api=True)
                return
            track = None if fault == "404" else fake.track_json(tid, fault != "no_images")
            tracks.append(fake._shapes[tid](track) if fault == "shape" else track)
        self._json(200, {"tracks": tracks})

    def _oembed(self, url: str) -> None:
        self._count("oembed")
        self._record_basic_auth()
        m = re.fullmatch(r"https://open\.spotify\.com/track/([0-9A-Za-z]{22})", url)
        if not m:
            return self._send(404, b"Not Found", "text/plain")
        track_id = m.group(1)
        fake = self.server_fake
        fault = fake._metadata_fault(track_id)
        if self._metadata_fault_response(fault, api=False):
            return
        body = {"html": f'<iframe src="https://open.spotify.com/embed/track/{track_id}"></iframe>',
                "width": 456, "height": 152, "version": "1.0", "provider_name": "Spotify",
                "provider_url": "https://spotify.com", "type": "rich",
                "title": f"Track {track_id[:6]}", "iframe_url":
                    f"https://open.spotify.com/embed/track/{track_id}"}
        if fault != "no_images":
            size = 640 if track_id in fake.legacy else 300
            body.update(thumbnail_url=fake.image_url(track_id, size),
                        thumbnail_width=size, thumbnail_height=size)
        if fault == "shape":
            body = fake._shapes[track_id](body)
        if fault in CHARSETS:
            body["title"] = f"Café {body['title']}"
        self._json(200, body, charset=fault or "")

    def _file(self, name: str) -> None:
        self._count("file")
        fake = self.server_fake
        if name not in fake.files:
            return self._send(404, b"Not Found", "text/plain")
        if name in fake.file_faults:
            return self._hostile(fake.file_faults[name], fake.files[name], "text/csv")
        self._send(200, fake.files[name], "text/csv")

    def _record_basic_auth(self) -> None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")[0]
            with self.server_fake._lock:
                self.server_fake.basic_auth[user] += 1

    def _image(self, name: str) -> None:
        self._count("image")
        self._record_basic_auth()
        fake = self.server_fake
        m = re.fullmatch(rf"{IMAGE_PREFIX}([0-9a-f]{{4}})([0-9a-f]{{24}})", name)
        if m and m.group(1) in CODE_SIZES:
            image_id, size = m.group(2), CODE_SIZES[m.group(1)]
        elif re.fullmatch(r"[0-9a-f]{40}", name):
            image_id, size = name, 640
        else:
            return self._send(404, b"", "text/plain")
        with fake._lock:
            fake.image_hits[image_id] += 1
        fault = fake._take(fake._image_faults, image_id)
        data = fake.jpeg(image_id, size)
        if fault == "corrupt_jpeg":
            data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + hashlib.sha256(data).digest() * 40
        elif fault == "truncated_jpeg":
            data = data[: len(data) * 2 // 3]
        elif fault == "image_404":
            return self._send(404, b"", "text/plain")
        elif fault == "image_500":
            return self._send(500, b"", "text/plain")
        elif fault == "image_slow":
            time.sleep(fake.slow_seconds)
        elif fault == "redirect_host":   # the same image, on a host that is not allowed
            return self._send(302, b"", "text/plain", {
                "Location": f"http://localhost:{self.server.server_address[1]}{self.path}"})
        elif fault and fault.startswith("image_"):
            return self._hostile(fault[len("image_"):], data, "image/jpeg")
        self._send(200, data, "image/jpeg", {"Cache-Control": "public, max-age=31536000"})


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, nargs=2, default=(0.0, 0.0), metavar=("LO", "HI"))
    ap.add_argument("--allow-batch", action="store_true")
    args = ap.parse_args()
    fake = FakeSpotify(latency=tuple(args.latency), allow_batch=args.allow_batch).start(args.port)
    print(fake.url, flush=True)
    for k, v in fake.env().items():
        print(f"export {k}={v}", flush=True)
    print("ready", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
