"""What `data.source` reads from outside the repo, fingerprinted by content (the `inputs` stage).

dvc.yaml cannot list these as deps: their paths are params, and a URL or a Kaggle handle is no
path at all. So the `inputs` stage (always_changed: it must look every time) writes the content
hashes of the external inputs to two small files: the tracks CSV's to `tracks.json`, which
fetch_csv depends on, and the local images folder's to `images.csv`, which scrape_images depends
on. Their bytes change only when some content changed, so an edit re-runs exactly the stages
that read it, and no edit re-runs nothing. Kept free of pandas and torch: it runs on every
`dvc repro`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from coverpop.core.atomic import clean_dead_temps, write_json, write_text
from coverpop.core.cache import cache_root
from coverpop.core.errors import CoverpopError, file_problem, folder_problem
from coverpop.core.fingerprint import file_fingerprint, folder_fingerprint

IMAGE_COLUMNS = ("name", "size", "sha256")


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def local_images_dir(p: dict) -> Path:
    """The user's image folder, from the `data.local` section."""
    images = p.get("images")
    if not images:
        raise CoverpopError("params.yaml: data.local.images must be set for data.source=local")
    problem = folder_problem(images)
    if problem:
        raise CoverpopError(f"params.yaml: data.local.images={images!r} is not a folder "
                            f"(it {problem})")
    return Path(images)


def local_csv(p: dict) -> Path:
    """The user's tracks CSV, from the `data.local` section."""
    path = p.get("csv")
    if not path:
        raise CoverpopError("params.yaml: data.local.csv must be set for data.source=local")
    return Path(path)


def _file(path: Path, param: str) -> dict:
    problem = file_problem(path)
    if problem:
        raise CoverpopError(f"params.yaml: {param}={str(path)!r}: {problem}")
    return file_fingerprint(path)


def tracks_fingerprint(data_params: dict) -> dict:
    """The content of the tracks table's external input, by source (the demo has none: it is
    generated from params alone)."""
    source = data_params["source"]  # the params schema checked it
    if source == "local":
        local = data_params.get("local") or {}
        local_images_dir(local)   # both halves of a local source are checked up front
        return {"source": source, "csv": _file(local_csv(local), "data.local.csv")}
    if source == "csv":
        path = str((data_params.get("csv") or {}).get("path") or "")
        if not path:
            raise CoverpopError("params.yaml: data.csv.path must be set for data.source=csv "
                                "(a local path or an http(s) URL)")
        return {"source": source,
                "csv": url_fingerprint(path) if is_url(path) else _file(Path(path), "data.csv.path")}
    if source == "kaggle":
        from coverpop.tracks.kaggle import kaggle_file

        p = data_params["kaggle"]
        return {"source": source, "csv": file_fingerprint(kaggle_file(p["handle"], p["file"]))}
    return {"source": source}


def images_fingerprint(data_params: dict, skipped: list | None = None
                       ) -> tuple[list[tuple[str, int, str]], int]:
    """(name, size, sha256) of every file in data.local.images (local source only), and how
    many files had to be read (the rest were unchanged since the last run). Entries that are
    not readable files go to `skipped` as (name, why)."""
    if data_params.get("source") != "local":
        return [], 0
    return folder_fingerprint(local_images_dir(data_params.get("local") or {}), skipped=skipped)


def write_fingerprints(data_params: dict, tracks_out: str | Path, images_out: str | Path) -> str:
    """Write both fingerprint files; return a one-line summary."""
    tracks = tracks_fingerprint(data_params)
    skipped: list[tuple[str, str]] = []
    rows, hashed = images_fingerprint(data_params, skipped)
    write_json(tracks_out, tracks)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(IMAGE_COLUMNS)
    writer.writerows(rows)
    write_text(images_out, buf.getvalue())
    line = f"inputs: source '{tracks['source']}'"
    if "csv" in tracks:
        line += f", tracks CSV sha256 {tracks['csv']['sha256'][:12]}"
    if data_params.get("source") == "local":
        line += f", {len(rows)} image files ({hashed} read, {len(rows) - hashed} unchanged)"
    if skipped:
        shown = "; ".join(f"{name!r}: {why}" for name, why in skipped[:3])
        line += (f"; {len(skipped)} entries of data.local.images skipped ({shown}"
                 f"{'; ...' if len(skipped) > 3 else ''}): rows naming them will fail")
    return line


def read_image_hashes(path: str | Path) -> dict[str, str]:
    """name -> sha256 from an images fingerprint file."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["name"]: row["sha256"] for row in csv.DictReader(f)}


def read_tracks_fingerprint(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- a CSV by URL: conditional requests into a content-addressed download cache ---------------

def downloads_dir() -> Path:
    return cache_root() / "downloads"


def downloaded(sha256: str) -> Path | None:
    """The cached download with this content, if there is one."""
    path = downloads_dir() / f"{sha256}.csv"
    return path if sha256 and path.is_file() else None


def url_fingerprint(url: str) -> dict:
    """{"size", "sha256"} of the file at `url`, downloaded into the cache.

    The next look sends the server's validators back (If-None-Match / If-Modified-Since): a 304
    costs one round trip and no download. A server that sends neither ETag nor Last-Modified is
    downloaded in full on every `dvc repro` (the only way to know its content). One request, under
    the download's deadline, rate and address rules (tracks/csv_url.py).
    """
    from coverpop.tracks.csv_url import download

    folder = downloads_dir()
    clean_dead_temps(folder)  # the partial download of a killed run
    meta_path = folder / f"url-{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    headers = {}
    if isinstance(meta, dict) and downloaded(str(meta.get("sha256", ""))):
        if meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = meta["last_modified"]
    got = download(url, folder / f"{meta_path.stem}.download", headers=headers)  # retries, atomic
    if got.path is None:   # 304: the cached download is current
        return {"size": meta["size"], "sha256": meta["sha256"]}
    os.replace(got.path, folder / f"{got.sha256}.csv")
    write_json(meta_path, {"url": url, "etag": got.etag, "last_modified": got.last_modified,
                           "size": got.size, "sha256": got.sha256})
    return {"size": got.size, "sha256": got.sha256}
