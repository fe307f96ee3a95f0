"""Stage scrape_images: one verified cover per track, resumable, and a manifest."""

from coverpop.core.atomic import write_csv
from coverpop.core.errors import CoverpopError, run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.covers.engine import Scraper, check_success, manifest_frame
from coverpop.covers.resolvers import make_resolver
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import StopScrape
from coverpop.tracks.tables import read_tracks


def main() -> None:
    args = stage_paths("selected", "covers_dir", "manifest")
    params = load_params()
    settings = ScrapeSettings.from_params(params["scrape"])   # the one read of scrape params
    tracks = read_tracks(args.selected)
    resolver = make_resolver(settings, tracks, params["data"])
    scraper = Scraper(resolver, args.covers_dir, size=settings.size)
    try:
        records = scraper.run(tracks.to_dict("records"), workers=settings.workers)
    except StopScrape as stop:
        print(f"scrape_images ({resolver.name}): {scraper.summary.line()}")
        raise CoverpopError(f"scrape stopped: {stop}") from None
    print(f"scrape_images ({resolver.name}): {scraper.summary.line()}")
    manifest = manifest_frame(records)
    write_csv(args.manifest, manifest)
    print(f"scrape_images: {check_success(manifest, settings.min_success)} -> {args.manifest}")


if __name__ == "__main__":
    run_stage(main)
