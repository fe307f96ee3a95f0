"""Resolvers: for each track, where its cover is and its bytes. The engine does the rest."""

import hashlib
import os
import re
from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError
from coverpop.core.params import one_of
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import CoverError, CoverRef
from coverpop.tracks import demo
from coverpop.tracks.sources import local_images_dir

RESOLVERS = ("auto", "demo", "local", "spotify_api", "oembed", "url")


class DemoResolver:
    """Renders the synthetic covers the demo table describes."""

    name = "demo"

    def __init__(self, tracks: pd.DataFrame):
        if "demo_seed" not in tracks.columns:
            raise CoverpopError("scrape.resolver=demo needs the demo table (data.source=demo)")
        self.albums = tracks.drop_duplicates("album_id").set_index("album_id").to_dict("index")

    def resolve(self, row: dict) -> CoverRef:
        return CoverRef(cover_id=row["album_id"], album_id=row["album_id"],
                        album_name=row.get("album_name", ""))

    def fetch(self, ref: CoverRef) -> bytes:
        return demo.cover_bytes(self.albums[ref.album_id])


def local_cover_id(name: str) -> str:
    """A file-safe key that stays unique when two folders hold files of the same name."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(name).stem)[:48]
    return f"{stem}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


class LocalResolver:
    """A user's own images: column `image` names a file inside the images folder."""

    name = "local"

    def __init__(self, images_dir: str | Path):
        self.root = Path(images_dir).resolve()

    def resolve(self, row: dict) -> CoverRef:
        name = str(row["image"])
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise CoverError("bad_path", f"{name} is outside {self.root}")
        cover_id = local_cover_id(name)
        album = row.get("album_id")
        return CoverRef(cover_id=cover_id, album_id=album if isinstance(album, str) and album else "",
                        album_name=str(row.get("album_name") or ""), url=str(path))

    def fetch(self, ref: CoverRef) -> bytes:
        try:
            return Path(ref.url).read_bytes()
        except FileNotFoundError:
            raise CoverError("missing_file", ref.url) from None
        except OSError as err:
            raise CoverError("unreadable_file", f"{ref.url}: {err.strerror}") from None


def auto_resolver(source: str, environ=os.environ) -> str:
    """`auto`: demo renders, local reads the user's folder; a Kaggle-schema table goes to the
    Spotify API when credentials are in the environment, else to oEmbed (no credentials)."""
    if source in ("demo", "local"):
        return source
    if source in ("kaggle", "csv"):
        has_keys = environ.get("SPOTIPY_CLIENT_ID") and environ.get("SPOTIPY_CLIENT_SECRET")
        return "spotify_api" if has_keys else "oembed"
    raise CoverpopError(f"params.yaml: scrape.resolver=auto has no resolver for "
                        f"data.source={source!r}; set scrape.resolver")


def make_resolver(settings: ScrapeSettings, tracks: pd.DataFrame, data_params: dict,
                  environ=os.environ):
    """The resolver `settings.resolver` names (`auto` resolved against data.source)."""
    name = one_of(settings.resolver, RESOLVERS, "scrape.resolver")
    if name == "auto":
        name = auto_resolver(data_params.get("source"), environ)
    if name == "demo":
        return DemoResolver(tracks)
    if name == "local":
        return LocalResolver(local_images_dir(data_params))
    if name == "url":
        from coverpop.covers.url_column import UrlResolver
        if settings.url_column not in tracks.columns:
            raise CoverpopError(f"params.yaml: scrape.url_column={settings.url_column!r} is not a "
                                f"column of the tracks table (has: {', '.join(tracks.columns)})")
        return UrlResolver.from_settings(settings, environ)
    if name == "oembed":
        from coverpop.covers.oembed import OEmbedResolver
        return OEmbedResolver.from_settings(settings, environ)
    from coverpop.covers.spotify import SpotifyApiResolver
    return SpotifyApiResolver.from_settings(settings, environ)
