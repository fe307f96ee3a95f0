"""Resolvers: for each track, where its cover is and its bytes. The engine does the rest.

One registry keyed by `scrape.resolver`. A new resolver is a class with `name`, `resolve(row)`
and `fetch(ref)` (the Resolver protocol in covers/types.py) plus a factory registered with
`@resolver("<name>")`; `auto` picks the resolver named like `data.source` when there is one.
"""

import hashlib
import math
import os
import re
import stat
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
    key = f"{stem}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return f"{key}-{content_sha256[:8]}" if content_sha256 else key


class LocalResolver:
    """A user's own images: column `image` names a file inside the images folder.

    `image_hashes` (name -> sha256, from the `inputs` stage) put each file's content into its
    cover id: a picture replaced under the same name gets a new id, and `drop_stale_covers`
    removes the stored cover of the old one so the scrape fetches the new one.
    """

    name = "local"

    def __init__(self, images_dir: str | Path, image_hashes: dict[str, str] | None = None,
                 max_bytes: int = 0):
        self.root = Path(images_dir).resolve()
        self.hashes = image_hashes or {}
        self.max_bytes = int(max_bytes)     # scrape.max_bytes: a 10 GB file is never read whole

    def resolve(self, row: dict) -> CoverRef:
        name = image_name(row.get("image"))
        path = self._path(name)
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

    def _path(self, name: str) -> Path:
        """The file `name` names inside the images folder; CoverError("bad_path") for a name
        that cannot be one (no OS error or ValueError ever leaves here)."""
        try:
            path = (self.root / name).resolve()
        except (OSError, ValueError, RuntimeError) as err:   # ELOOP, ENAMETOOLONG, ...
            raise CoverError("bad_path", f"{_shown(name)}: not a usable path "
                                         f"({getattr(err, 'strerror', None) or err})") from None
        if not path.is_relative_to(self.root):
            raise CoverError("bad_path", f"{_shown(name)} is outside {self.root}")
        if path == self.root:
            raise CoverError("bad_path", f"{_shown(name)} names the images folder itself")
        return path

    def fetch(self, ref: CoverRef) -> bytes:
        # Opened without blocking and checked before reading: a FIFO would wait forever, a
        # folder or a device is no picture.
        try:
            fd = os.open(ref.url, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CoverError("missing_file", ref.url) from None
        except IsADirectoryError:
            raise CoverError("bad_path", f"{ref.url} is a folder, not an image") from None
        except (OSError, ValueError) as err:
            raise CoverError("unreadable_file", f"{ref.url}: "
                                                f"{getattr(err, 'strerror', None) or err}") from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise CoverError("bad_path", f"{ref.url} is a folder, not an image")
            if not stat.S_ISREG(mode):
                raise CoverError("bad_path", f"{ref.url} is not a regular file (a FIFO, socket "
                                             "or device)")
            size = os.fstat(fd).st_size
            if self.max_bytes and size > self.max_bytes:
                raise CoverError("too_large", f"{ref.url} has {size:,} bytes, more than "
                                              f"scrape.max_bytes={self.max_bytes:,}",
                                 retryable=True)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            try:
                return f.read()
            except OSError as err:
                raise CoverError("unreadable_file", f"{ref.url}: {err.strerror}") from None


MAX_NAME_BYTES = 4096   # PATH_MAX: a longer `image` cannot name a file


def image_name(value) -> str:
    """The `image` column's value as a file name; CoverError("bad_path") when it cannot be one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise CoverError("bad_path", "the image column is empty")
    name = str(value)
    if not name.strip():
        raise CoverError("bad_path", "the image column is empty")
    if "\x00" in name:
        raise CoverError("bad_path", f"{_shown(name)}: a file name cannot hold a NUL byte")
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        raise CoverError("bad_path", f"{_shown(name)}: not encodable as a file name") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise CoverError("bad_path", f"{_shown(name)}: {len(encoded)} bytes, longer than any "
                                     "path can be")
    if any(len(part) > 255 for part in encoded.split(b"/")):
        raise CoverError("bad_path", f"{_shown(name)}: a part of it is longer than 255 bytes, "
                                     "more than a file name can be")
    return name


def _shown(name: str) -> str:
    """A file name as it may appear in a one-line message: printable, short."""
    text = name.encode("unicode_escape", "backslashreplace").decode("ascii")
    return repr(text if len(text) <= 80 else text[:77] + "...")


# The network resolvers are imported when chosen: requests and pydantic cost start-up time.

@resolver("demo")
def _demo(tracks, data_params, settings, environ, image_hashes):
    return DemoResolver(tracks)


@resolver("local")
def _local(tracks, data_params, settings, environ, image_hashes):
    return LocalResolver(local_images_dir(data_params["local"]), image_hashes, settings.max_bytes)


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
