"""Covers through Spotify's Web API (spotipy, client credentials), and the i.scdn.co URL scheme.

Development-mode apps (every new app since February 2026) may only call GET /v1/tracks/{id}, one
track per request, under a rolling rate limit and a daily quota; the batch call GET /v1/tracks?ids=
answers 403 for them, so it is used only when asked for (`scrape.batch`) and dropped after the
first 403.
"""

from __future__ import annotations

import logging
import os
import threading

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOauthError

from coverpop.core.errors import CoverpopError
from coverpop.covers import http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.types import CoverError, CoverRef, StopScrape

API_URL = "https://api.spotify.com/v1/"
TOKEN_URL = "https://accounts.spotify.com/api/token"
BATCH_SIZE = 50

log = logging.getLogger(__name__)


def choose_image(images: list[dict], size: int) -> str | None:
    """URL of the image closest to `size` px: exact width, else derived from the size code,
    else the smallest one at least that wide, else the widest."""
    images = [i for i in images or [] if i.get("url")]
    if not images:
        return None
    for img in images:
        if img.get("width") == size:
            return img["url"]
    for img in images:
        derived = sized_url(img["url"], size)
        if derived != img["url"]:
            return derived
    wide = [i for i in images if (i.get("width") or 0) >= size]
    if wide:
        return min(wide, key=lambda i: i["width"])["url"]
    return max(images, key=lambda i: i.get("width") or 0)["url"]


class SpotifyApiResolver:
    """track row -> GET /v1/tracks/{id} -> album id, name, release date, cover URL."""

    name = "spotify_api"

    def __init__(self, client_id: str, client_secret: str, *, api_url: str = API_URL,
                 token_url: str = TOKEN_URL, size: int = 300, batch: bool = False,
                 timeout: float = 10.0, workers: int = 16, image_host: str = "",
                 policy: http.RetryPolicy | None = None, limiter: http.RateLimiter | None = None):
        # spotipy logs request headers (bearer token, Basic credentials) at DEBUG and every
        # 404 at ERROR; we report failures ourselves, so keep it quiet and the secrets out of logs.
        logging.getLogger("spotipy").setLevel(logging.CRITICAL)
        self.size, self.timeout, self.image_host = size, timeout, image_host
        self.policy = policy or http.RetryPolicy()
        self.limiter = limiter or http.RateLimiter()
        self.images = http.RateLimiter()          # the image CDN has no rate cap; stop() still applies
        self.session = http.make_session(workers)
        auth = SpotifyClientCredentials(client_id=client_id, client_secret=client_secret,
                                        cache_handler=MemoryCacheHandler(),
                                        requests_session=self.session, requests_timeout=timeout)
        auth.OAUTH_TOKEN_URL = token_url         # instance attribute: no global side effect
        # retries=0: see every real 429/5xx ourselves (spotipy would sleep out a quota 429
        # for hours and then report "Max Retries"); our own session makes one try per call.
        self.sp = spotipy.Spotify(auth_manager=auth, requests_session=self.session,
                                  requests_timeout=timeout, retries=0, status_retries=0)
        self.sp.prefix = api_url if api_url.endswith("/") else api_url + "/"
        self.batch = batch
        self._chunks: dict[str, list[str]] = {}
        self._cache: dict[str, dict | None] = {}
        self._batch_lock = threading.Lock()

    @classmethod
    def from_params(cls, scrape: dict, environ=os.environ, workers: int | None = None
                    ) -> SpotifyApiResolver:
        client_id = environ.get("SPOTIPY_CLIENT_ID", "")
        client_secret = environ.get("SPOTIPY_CLIENT_SECRET", "")
        if not client_id or not client_secret:
            raise CoverpopError(
                "scrape.resolver=spotify_api needs SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET in "
                "the environment (see the README, 'Real data'), or use scrape.resolver=oembed (no credentials)")
        return cls(client_id, client_secret,
                   api_url=http.setting(scrape, "api_url", "COVERPOP_SPOTIFY_API_URL", API_URL, environ),
                   token_url=http.setting(scrape, "token_url", "COVERPOP_SPOTIFY_TOKEN_URL",
                                         TOKEN_URL, environ),
                   image_host=http.setting(scrape, "image_host", "COVERPOP_IMAGE_HOST", "", environ),
                   size=int(scrape.get("size", 300)), batch=bool(scrape.get("batch", False)),
                   timeout=float(scrape.get("timeout", 10)),
                   workers=workers or int(scrape.get("workers", 16)),
                   policy=http.policy_from_params(scrape), limiter=http.limiter_from_params(scrape))

    def __repr__(self) -> str:   # never show the credentials
        return f"SpotifyApiResolver(api={self.sp.prefix!r}, size={self.size}, batch={self.batch})"

    # ---- Resolver protocol ------------------------------------------------------------------
    def prepare(self, track_ids: list[str]) -> None:
        """Called once before the workers start: get the access token now (one request, and bad
        credentials stop the run before anything else), and group the tracks for batch mode."""
        auth = self.sp.auth_manager
        self._api(lambda: auth.get_access_token(as_dict=False), auth.OAUTH_TOKEN_URL)
        if self.batch:
            for i in range(0, len(track_ids), BATCH_SIZE):
                chunk = list(track_ids[i:i + BATCH_SIZE])
                for tid in chunk:
                    self._chunks[tid] = chunk

    def resolve(self, row: dict) -> CoverRef:
        track_id = str(row["track_id"])
        track = self._track(track_id)
        if not isinstance(track, dict):
            raise CoverError("bad_response", f"track {track_id}: the API answer is not JSON")
        album = track.get("album") or {}
        url = choose_image(album.get("images") or [], self.size)
        if not url:
            raise CoverError("no_image", f"track {track_id}: album has no images")
        return CoverRef(cover_id=cover_id_from_url(url), album_id=album.get("id") or "",
                        album_name=album.get("name") or "",
                        release_date=album.get("release_date") or "",
                        url=http.rehost(url, self.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        return http.get_cover_bytes(self.session, ref.url, timeout=self.timeout, policy=self.policy,
                            limiter=self.images)

    # ---- API calls --------------------------------------------------------------------------
    def _track(self, track_id: str) -> dict | None:
        if self.batch and track_id in self._chunks:
            with self._batch_lock:       # one batch request at a time: the first 403 is the only one
                if self.batch and track_id not in self._cache:
                    self._fetch_chunk(self._chunks[track_id])
                if track_id in self._cache:
                    del self._chunks[track_id]
                    track = self._cache.pop(track_id)
                    if track is None:
                        raise CoverError("not_found", f"track {track_id}: unknown to the API")
                    return track
        return self._api(lambda: self.sp.track(track_id), f"{self.sp.prefix}tracks/{track_id}")

    def _fetch_chunk(self, chunk: list[str]) -> None:
        try:
            answer = self._api(lambda: self.sp.tracks(chunk), f"{self.sp.prefix}tracks?ids=")
        except CoverError as err:
            if err.reason != "http_403":
                raise
            self.batch = False
            log.warning("GET /v1/tracks?ids= answered 403 (development-mode app): "
                        "falling back to one request per track")
            return
        for tid, track in zip(chunk, (answer or {}).get("tracks") or [], strict=False):
            self._cache[tid] = track

    def _api(self, request, where: str):
        def once():
            try:
                return request()
            except spotipy.SpotifyException as err:
                if err.http_status == 401:
                    self._stop("the Spotify API rejected our access token (HTTP 401): check "
                               "SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET")
                if err.http_status == 400:   # spotipy's own id check, or the API's
                    raise CoverError("bad_id", f"{where}: not a Spotify track id") from None
                http.raise_for_status(err.http_status, err.headers, err.reason, where)
                raise CoverError(f"http_{err.http_status}", where) from None
            except SpotifyOauthError as err:
                if err.error in ("invalid_client", "unsupported_grant_type", "invalid_request",
                                 "unauthorized_client"):
                    self._stop(f"the Spotify token endpoint refused the client credentials "
                               f"({err.error}): check SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET")
                raise http.Transient("server_error", "Spotify token endpoint failed") from None
            except requests.RequestException as err:
                raise http.transient_from(err, http.host_of(where), self.timeout) from None

        return http.call_with_retries(once, self.policy, self.limiter)

    def _stop(self, message: str):
        self.limiter.stop(message)
        raise StopScrape(message)
