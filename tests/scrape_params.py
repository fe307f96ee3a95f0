"""The `scrape` params of this checkout's params.yaml (the one home of defaults), with overrides:
what a test hands to ScrapeSettings.from_params / a resolver's from_params."""

from pathlib import Path

import yaml

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def scrape_params(**overrides) -> dict:
    scrape = yaml.safe_load(PARAMS.read_text())["scrape"]
    unknown = set(overrides) - set(scrape)
    assert not unknown, f"not scrape params: {unknown}"
    return {**scrape, **overrides}
