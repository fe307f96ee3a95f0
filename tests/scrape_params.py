"""The schema's default `scrape` params (never the workspace's params.yaml), with overrides:
what a test hands to ScrapeSettings.from_params / a resolver's from_params."""

from coverpop.core.params import defaults


def scrape_params(**overrides) -> dict:
    scrape = defaults()["scrape"]
    unknown = set(overrides) - set(scrape)
    assert not unknown, f"not scrape params: {unknown}"
    return {**scrape, **overrides}
