"""Resolvers: for each track, where its cover is and its bytes. The engine does the rest.

One registry keyed by `scrape.resolver`. A new resolver is a class with `name`, `resolve(row)`
and `fetch(ref)` (the Resolver protocol in covers/types.py) plus a factory registered with
`@resolver("<name>")`; `auto` picks the resolver named like `data.source` when there is one.
"""

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import CoverError, CoverRef, Resolver
from coverpop.tracks import demo
from coverpop.tracks.inputs import local_images_dir

# name -> factory(tracks, data_params, settings: ScrapeSettings, environ, image_hashes) -> Resolver;
# image_hashes: name -> sha256 of a local source's files (the `inputs` stage), else {}
Factory = Callable[[pd.DataFrame, dict, ScrapeSettings, dict, dict], Resolver]
RESOLVERS: dict[str, Factory] = {}


def resolver(name: str):
    """Register a resolver factory as `scrape.resolver: name`."""
    def register(factory: Factory) -> Factory:
        RESOLVERS[name] = factory
        return factory
    return register


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


def local_cover_id(name: str, content_sha256: str = "") -> str:
    """A file-safe key that stays unique when two folders hold files of the same name, and
    changes when the file's content does (so a replaced picture is a new cover)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(name).stem)[:48]
    key = f"{stem}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"{key}-{content_sha256[:8]}" if content_sha256 else key


class LocalResolver:
    """A user's own images: column `image` names a file inside the images folder.

    `image_hashes` (name -> sha256, from the `inputs` stage) put each file's content into its
    cover id: a picture replaced under the same name gets a new id, and `drop_stale_covers`
    removes the stored cover of the old one so the scrape fetches the new one.
    """

    name = "local"

    def __init__(self, images_dir: str | Path, image_hashes: dict[str, str] | None = None):
        self.root = Path(images_dir).resolve()
        self.hashes = image_hashes or {}

    def resolve(self, row: dict) -> CoverRef:
        name = str(row["image"])
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise CoverError("bad_path", f"{name} is outside {self.root}")
        content = self.hashes.get(Path(os.path.normpath(name)).as_posix(), "")
        cover_id = local_cover_id(name, content)
        album = row.get("album_id")
        return CoverRef(cover_id=cover_id, album_id=album if isinstance(album, str) and album else "",
                        album_name=str(row.get("album_name") or ""), url=str(path))

    def cover_ids(self, rows: list[dict]) -> set[str]:
        """The cover ids the rows' current files map to."""
        wanted = set()
        for row in rows:
            try:
                wanted.add(self.resolve(row).cover_id)
            except CoverError:
                continue
        return wanted

    def drop_stale_covers(self, images_dir: str | Path, rows: list[dict]) -> int:
        """Delete stored covers (images_dir/<cover id>.jpg) that no row's current file maps to:
        the covers of replaced (or no longer selected) pictures. Returns how many went."""
        wanted = self.cover_ids(rows)
        stale = [p for p in Path(images_dir).glob("*.jpg") if p.stem not in wanted]
        for path in stale:
            path.unlink()
        return len(stale)

    def fetch(self, ref: CoverRef) -> bytes:
        try:
            return Path(ref.url).read_bytes()
        except FileNotFoundError:
            raise CoverError("missing_file", ref.url) from None
        except OSError as err:
            raise CoverError("unreadable_file", f"{ref.url}: {err.strerror}") from None


# The network resolvers are imported when chosen: requests and pydantic cost start-up time.

@resolver("demo")
def _demo(tracks, data_params, settings, environ, image_hashes):
    return DemoResolver(tracks)


@resolver("local")
def _local(tracks, data_params, settings, environ, image_hashes):
    return LocalResolver(local_images_dir(data_params["local"]), image_hashes)


@resolver("url")
def _url(tracks, data_params, settings, environ, image_hashes):
    from coverpop.covers.url_column import UrlResolver
    column = settings.url_column
    if column not in tracks.columns:
        raise CoverpopError(f"params.yaml: scrape.url_column={column!r} is not a column of the "
                            f"tracks table (has: {', '.join(tracks.columns)})")
    return UrlResolver.from_settings(settings, environ)


@resolver("oembed")
def _oembed(tracks, data_params, settings, environ, image_hashes):
    from coverpop.covers.oembed import OEmbedResolver
    return OEmbedResolver.from_settings(settings, environ)


@resolver("spotify_api")
def _spotify_api(tracks, data_params, settings, environ, image_hashes):
    from coverpop.covers.spotify import SpotifyApiResolver
    return SpotifyApiResolver.from_settings(settings, environ)


def auto_resolver(source: str, environ=os.environ) -> str:
    """`auto`: the resolver named like the source when there is one (demo renders, local reads
    the user's folder); a Kaggle-schema table goes to the Spotify API when credentials are in
    the environment, else to oEmbed (no credentials)."""
    if source in RESOLVERS:
        return source
    has_keys = environ.get("SPOTIPY_CLIENT_ID") and environ.get("SPOTIPY_CLIENT_SECRET")
    return "spotify_api" if has_keys else "oembed"


def make_resolver(settings: ScrapeSettings, tracks: pd.DataFrame, data_params: dict,
                  environ=os.environ, image_hashes: dict[str, str] | None = None) -> Resolver:
    """The resolver `settings.resolver` names (checked by the params schema; `auto` resolved
    against data.source). `image_hashes`: name -> sha256 of a local source's files, from the
    `inputs` stage."""
    name = settings.resolver
    if name == "auto":
        name = auto_resolver(data_params["source"], environ)
    return RESOLVERS[name](tracks, data_params, settings, environ, image_hashes or {})
