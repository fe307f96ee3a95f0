"""Stage scrape_images: one verified cover per track, resumable, and a manifest."""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from coverpop.core.atomic import write_csv
from coverpop.core.errors import CoverpopError, run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.covers.engine import Scraper, check_success, manifest_frame
from coverpop.covers.resolvers import LocalResolver, make_resolver
from coverpop.covers.types import StopScrape
from coverpop.tracks.inputs import read_image_hashes
from coverpop.tracks.tables import read_tracks


def main() -> None:
    args = stage_paths("selected", "image_hashes", "covers_dir", "manifest")
    params = load_params()
    p = params["scrape"]
    tracks = read_tracks(args.selected)
    resolver = make_resolver(p["resolver"], tracks, params["data"], p,
                             image_hashes=read_image_hashes(args.image_hashes))
    scraper = Scraper(resolver, args.covers_dir, size=int(p["size"]))
    rows = tracks.to_dict("records")
    if isinstance(resolver, LocalResolver):  # a replaced picture is scraped again
        redo = resolver.drop_stale_covers(scraper.images, rows)
        if redo:
            print(f"scrape_images: {redo} stored covers no longer match your image files; redone")
    try:
        records = scraper.run(rows, workers=int(p["workers"]))
    except StopScrape as stop:
        print(f"scrape_images ({resolver.name}): {scraper.summary.line()}")
        raise CoverpopError(f"scrape stopped: {stop}") from None
    print(f"scrape_images ({resolver.name}): {scraper.summary.line()}")
    manifest = manifest_frame(records)
    write_csv(args.manifest, manifest)
    print(f"scrape_images: {check_success(manifest, float(p['min_success']))} -> {args.manifest}")


if __name__ == "__main__":
    run_stage(main)
