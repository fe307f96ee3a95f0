"""Resolvers: for each track, where its cover is and its bytes. The engine does the rest."""

import hashlib
import os
import re
from pathlib import Path

import pandas as pd

from coverpop.core.errors import CoverpopError
from coverpop.core.params import one_of
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

    def drop_stale_covers(self, images_dir: str | Path, rows: list[dict]) -> int:
        """Delete stored covers (images_dir/<cover id>.jpg) that no row's current file maps to:
        the covers of replaced (or no longer selected) pictures. Returns how many went."""
        wanted = set()
        for row in rows:
            try:
                wanted.add(self.resolve(row).cover_id)
            except CoverError:
                continue
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


def make_resolver(name: str, tracks: pd.DataFrame, data_params: dict,
                  scrape_params: dict | None = None, environ=os.environ,
                  image_hashes: dict[str, str] | None = None):
    one_of(name, RESOLVERS, "scrape.resolver")
    if name == "auto":
        name = auto_resolver(data_params.get("source"), environ)
    scrape_params = scrape_params or {}
    if name == "demo":
        return DemoResolver(tracks)
    if name == "local":
        return LocalResolver(local_images_dir(data_params), image_hashes)
    if name == "url":
        from coverpop.covers.url_column import UrlResolver
        column = scrape_params.get("url_column", "image_url")
        if column not in tracks.columns:
            raise CoverpopError(f"params.yaml: scrape.url_column={column!r} is not a column of the "
                                f"tracks table (has: {', '.join(tracks.columns)})")
        return UrlResolver.from_params(scrape_params, environ)
    if name == "oembed":
        from coverpop.covers.oembed import OEmbedResolver
        return OEmbedResolver.from_params(scrape_params, environ)
    from coverpop.covers.spotify import SpotifyApiResolver
    return SpotifyApiResolver.from_params(scrape_params, environ)
