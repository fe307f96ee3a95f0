"""Covers through Spotify's Web API (client credentials), and the i.scdn.co URL scheme.

Development-mode apps (every new app since February 2026) may only call GET /v1/tracks/{id}, one
track per request, under a rolling rate limit and a daily quota; the batch call GET /v1/tracks?ids=
answers 403 for them, so it is used only when asked for (`scrape.batch`) and dropped after the
first 403.

Two calls are all we need, so they go through our own HttpClient rather than spotipy: spotipy's
transport has no whole-request deadline or body cap, its error handler crashes on error bodies
of another shape ({"error": "Bad Gateway"}), a 200 that is not JSON comes back as None, and a
token answer without `access_token` ends in a KeyError. Here every answer is validated
(covers/answers.py) and every failure has a reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from coverpop.core.errors import CoverpopError
from coverpop.covers import answers, http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import CoverError, CoverRef, StopScrape

BATCH_SIZE = 50
_SINGLE = object()     # a batch left this track out: ask for it alone

log = logging.getLogger(__name__)

# What to check when the token cannot be had, by failure reason.
_TOKEN_HINTS = {
    "connection": "check scrape.token_url (env COVERPOP_SPOTIFY_TOKEN_URL) and the network",
    "tls": "check scrape.token_url (env COVERPOP_SPOTIFY_TOKEN_URL) and the CA certificates "
           "(REQUESTS_CA_BUNDLE)",
    "timeout": "the token endpoint is slow or unreachable: check the network, then run again",
    "truncated": "the connection broke off: run the stage again",
    "server_error": "the token service is failing: run the stage again later",
    "bad_response": "is scrape.token_url (env COVERPOP_SPOTIFY_TOKEN_URL) Spotify's token "
                    "endpoint? On a public network, log in to it first",
    "refused": "check SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET",
}


class _Bearer(requests.auth.AuthBase):
    """Authorization: Bearer (explicit, so userinfo in a mirror's URL cannot replace it)."""

    def __init__(self, token: str):
        self.token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def choose_image(images: list[answers.Image], size: int) -> str | None:
    """URL of the image closest to `size` px: exact width, else derived from the size code,
    else the smallest one at least that wide, else the widest."""
    images = [i for i in images or [] if i.url]
    if not images:
        return None
    for img in images:
        if img.width == size:
            return img.url
    for img in images:
        derived = sized_url(img.url, size)
        if derived != img.url:
            return derived
    wide = [i for i in images if (i.width or 0) >= size]
    if wide:
        return min(wide, key=lambda i: i.width).url
    return max(images, key=lambda i: i.width or 0).url


class SpotifyApiResolver:
    """track row -> GET /v1/tracks/{id} -> album id, name, release date, cover URL."""

    name = "spotify_api"

    def __init__(self, settings: ScrapeSettings, client_id: str, client_secret: str):
        self.settings, self.size = settings, settings.size
        self.net = http.Fetcher(settings)
        self.api_url = settings.api_url.rstrip("/") + "/"
        self.batch = settings.batch
        self._credentials = (client_id, client_secret)
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = threading.Lock()
        self._chunks: dict[str, list[str]] = {}
        self._cache: dict[str, Any] = {}
        self._batch_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ScrapeSettings, environ: Mapping = os.environ
                      ) -> SpotifyApiResolver:
        client_id = environ.get("SPOTIPY_CLIENT_ID", "")
        client_secret = environ.get("SPOTIPY_CLIENT_SECRET", "")
        if not client_id or not client_secret:
            raise CoverpopError(
                "scrape.resolver=spotify_api needs SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET in "
                "the environment (see docs/real-data.md), or use scrape.resolver=oembed (no "
                "credentials)")
        return cls(settings, client_id, client_secret)

    @classmethod
    def from_params(cls, scrape: Mapping, environ: Mapping = os.environ) -> SpotifyApiResolver:
        return cls.from_settings(ScrapeSettings.from_params(scrape, environ), environ)

    def __repr__(self) -> str:   # never show the credentials
        return (f"SpotifyApiResolver(api={http.where_of(self.api_url)!r}, size={self.size}, "
                f"batch={self.batch})")

    # ---- Resolver protocol ------------------------------------------------------------------
    def prepare(self, track_ids: list[str]) -> None:
        """Called once before the workers start: get the access token now (one request; any
        trouble with it is one CoverpopError line before anything else), and group the tracks
        for batch mode."""
        self._access_token()
        if self.batch:
            for i in range(0, len(track_ids), BATCH_SIZE):
                chunk = list(track_ids[i:i + BATCH_SIZE])
                for tid in chunk:
                    self._chunks[tid] = chunk

    def resolve(self, row: dict) -> CoverRef:
        track_id = answers.track_id_of(row["track_id"])
        where = f"{http.where_of(self.api_url)}tracks/{track_id}"
        album = answers.check(answers.Track, self._track_json(track_id, where), where).album
        url = choose_image(album.images or [], self.size)
        if not url:
            raise CoverError("no_image", f"track {track_id}: album has no images")
        return CoverRef(cover_id=cover_id_from_url(url), album_id=album.id or "",
                        album_name=album.name or "", release_date=album.release_date or "",
                        url=http.image_url(url, self.settings.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        return self.net.cover_bytes(ref.url)

    def stop(self, message: str) -> None:
        self.net.stop(message)

    # ---- the access token (client credentials, RFC 6749 section 4.4) -----------------------
    def _access_token(self) -> str:
        with self._token_lock:     # one refresh at a time; the others wait and share it
            if self._token is None or time.monotonic() >= self._token_until:
                self._token, self._token_until = self._new_token()
            return self._token

    def _forget(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:       # not already replaced by another worker
                self._token = None

    def _new_token(self) -> tuple[str, float]:
        url = self.settings.token_url
        where = http.where_of(url)

        def once() -> answers.Token:
            ans = self.net.http.request("POST", url, where=where, auth=self._credentials,
                                        data={"grant_type": "client_credentials"})
            if ans.status in (400, 401, 403):
                raise CoverError("refused", f"{where} refused the client credentials "
                                            f"({_oauth_error(ans)})")
            return answers.check(answers.Token, http.raise_for_status(ans).json(), where)

        try:
            token = http.call_with_retries(once, self.net.policy, self.net.limiter)
        except CoverError as err:
            hint = _TOKEN_HINTS.get(err.reason, "check scrape.token_url (env "
                                                "COVERPOP_SPOTIFY_TOKEN_URL)")
            raise CoverpopError(f"cannot get a Spotify access token: {err.detail}; {hint}"
                                ) from None
        life = token.expires_in if token.expires_in is not None else 3600.0
        return token.access_token, time.monotonic() + max(life - 60, life / 2)

    def _token_or_stop(self) -> str:
        """The token, in a worker: no token means no run, so trouble stops the run."""
        try:
            return self._access_token()
        except CoverpopError as err:
            self.stop(str(err))
            raise StopScrape(str(err)) from None

    # ---- API calls --------------------------------------------------------------------------
    def _api_get(self, url: str, where: str, params: dict | None = None) -> Any:
        def once():
            token = self._token_or_stop()
            ans = self.net.http.request("GET", url, where=where, params=params,
                                        auth=_Bearer(token))
            if ans.status == 401:     # revoked or expired early: one new token, one more try
                self._forget(token)
                ans = self.net.http.request("GET", url, where=where, params=params,
                                            auth=_Bearer(self._token_or_stop()))
                if ans.status == 401:
                    message = (f"the Spotify API rejected a freshly issued access token (HTTP 401 "
                               f"from {where}): check SPOTIPY_CLIENT_ID, SPOTIPY_CLIENT_SECRET "
                               "and scrape.api_url")
                    self.stop(message)
                    raise StopScrape(message)
            if ans.status == 400:
                raise CoverError("bad_id", f"HTTP 400 from {where}: not a Spotify track id")
            return http.raise_for_status(ans).json()

        return http.call_with_retries(once, self.net.policy, self.net.limiter)

    def _track_json(self, track_id: str, where: str) -> Any:
        if self.batch and track_id in self._chunks:
            with self._batch_lock:     # one batch request at a time: the first 403 is the only one
                chunk = self._chunks.pop(track_id, None)
                if chunk is not None and self.batch and track_id not in self._cache:
                    self._fetch_chunk(chunk)
                found = self._cache.pop(track_id, _SINGLE)
            if found is None:
                raise CoverError("not_found", f"track {track_id}: unknown to the API")
            if found is not _SINGLE:
                return found
        return self._api_get(f"{self.api_url}tracks/{track_id}", where)

    def _fetch_chunk(self, chunk: list[str]) -> None:
        where = f"{http.where_of(self.api_url)}tracks?ids=..."
        try:
            answer = self._api_get(f"{self.api_url}tracks", where, params={"ids": ",".join(chunk)})
            tracks = answers.check(answers.Tracks, answer, where).tracks
        except CoverError as err:
            if err.reason == "http_403":
                self.batch = False
                log.warning("GET /v1/tracks?ids= answered 403 (development-mode app): "
                            "falling back to one request per track")
            for tid in chunk:          # either way, these tracks are asked for one by one
                self._chunks.pop(tid, None)
            return
        for tid, track in zip(chunk, tracks, strict=False):
            self._cache[tid] = track


def _oauth_error(ans: http.Answer) -> str:
    """The `error` code of an OAuth error body ({"error": "invalid_client", ...}), if any."""
    try:
        body = ans.json()
        code = body.get("error") if isinstance(body, dict) else None
    except CoverError:
        code = None
    return code if isinstance(code, str) and len(code) < 60 else f"HTTP {ans.status}"
