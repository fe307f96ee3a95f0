"""Stage scrape_images: one verified cover per track, resumable, a manifest and the cover store.

The covers are fetched into a working folder (data/covers/images, one file per cover, kept
across runs so a killed scrape resumes; not tracked by DVC) and packed at the end into the cover
store (data/shards: 256 tar shards + an index, what DVC tracks, pushes and pulls).
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

import signal
import sys
from pathlib import Path

from coverpop.core.atomic import write_csv
from coverpop.core.errors import CoverpopError, DiskError, run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.covers.engine import Scraper, check_success, manifest_frame, retry_hint
from coverpop.covers.journal import resolver_settings
from coverpop.covers.resolvers import LocalResolver, make_resolver
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.store import pack, stored_covers
from coverpop.covers.types import StopScrape
from coverpop.tracks.inputs import read_image_hashes
from coverpop.tracks.tables import read_tracks


def main() -> None:
    # SIGTERM (a CI timeout, `kill`) stops the run the way Ctrl-C does: finished work is kept.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # ... and so does SIGINT, even when a shell started us in the background with it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = stage_paths("selected", "image_hashes", "covers_dir", "manifest", "store")
    params = load_params()
    settings = ScrapeSettings.from_params(params["scrape"])   # the one read of scrape params
    tracks = read_tracks(args.selected)
    resolver = make_resolver(settings, tracks, params["data"],
                             image_hashes=read_image_hashes(args.image_hashes))
    scraper = Scraper(resolver, args.covers_dir, size=settings.size,
                      min_source_px=settings.min_source_px, max_aspect=settings.max_aspect,
                      retry_failed=settings.retry_failed,
                      settings=resolver_settings(resolver.name, settings, params["data"], {}),
                      stored=stored_covers(args.store))
    name = f"scrape_images ({resolver.name})"
    rows = tracks.to_dict("records")
    if isinstance(resolver, LocalResolver):  # a replaced picture is scraped again
        redo = resolver.drop_stale_covers(scraper.images, rows)
        wanted = resolver.cover_ids(rows)   # ... also when its old cover is in the store
        scraper.stored = {c: sha for c, sha in scraper.stored.items() if c in wanted}
        if redo:
            print(f"scrape_images: {redo} stored covers no longer match your image files; redone")
    try:
        records = scraper.run(rows, workers=settings.workers)
    except StopScrape as stop:
        print(f"{name}: {scraper.summary.line()}")
        raise CoverpopError(f"scrape stopped: {stop}") from None
    except DiskError:           # the journal keeps every cover finished before the disk failed
        print(f"{name}: {scraper.summary.line()}")
        raise
    except KeyboardInterrupt:
        print(f"{name}: {scraper.summary.line()}", flush=True)
        print("scrape_images: interrupted; finished covers are kept (journal saved): run the "
              "stage again to resume", file=sys.stderr)
        sys.exit(130)
    print(f"{name}: {scraper.summary.line()}")
    hint = retry_hint(records, scraper)
    manifest = manifest_frame(records)
    write_csv(args.manifest, manifest)
    files = {r["cover_id"]: r["file"] for r in records if r["status"] == "ok"}
    ok = manifest[manifest["status"] == "ok"]
    rewritten = pack(args.store, dict(zip(ok["cover_id"], ok["sha256"])),
                     lambda cover_id: Path(files[cover_id]).read_bytes())
    print(f"scrape_images: {len(files)} covers in {args.store} ({rewritten} shards rewritten)")
    print(f"scrape_images: {check_success(manifest, settings.min_success, hint)} -> "
          f"{args.manifest}")
    if hint:
        print(f"scrape_images: {hint}")


if __name__ == "__main__":
    run_stage(main)
