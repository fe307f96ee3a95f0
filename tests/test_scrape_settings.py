"""The `scrape` params are read once, from params.yaml alone (no second set of defaults in code)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from scrape_params import scrape_params  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.covers.settings import ENV, ScrapeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_every_field_comes_from_params_yaml():
    p = scrape_params()
    s = ScrapeSettings.from_params(p, environ={})
    assert (s.timeout, s.retries, s.max_bytes, s.workers, s.api_url) == (
        p["timeout"], p["retries"], p["max_bytes"], p["workers"], p["api_url"])
    assert s.allowed_hosts == tuple(p["allowed_hosts"]) and "i.scdn.co" in s.allowed_hosts


@pytest.mark.parametrize("key", sorted(scrape_params()))
def test_a_missing_key_is_an_error_not_a_silent_default(key):
    p = scrape_params()
    del p[key]
    with pytest.raises(CoverpopError, match=f"^params.yaml: scrape.{key} is missing$"):
        ScrapeSettings.from_params(p, environ={})


@pytest.mark.parametrize("key,value", [("timeout", "fast"), ("workers", "many"), ("retries", 2.5),
                                       ("max_bytes", True), ("batch", "yes"),
                                       ("allowed_hosts", "i.scdn.co"), ("api_url", "ftp://x/"),
                                       ("image_host", "mirror.lan")])
def test_a_wrong_value_is_one_line_naming_the_key(key, value):
    with pytest.raises(CoverpopError, match=f"scrape.{key}=") as err:
        ScrapeSettings.from_params(scrape_params(**{key: value}), environ={})
    assert "\n" not in str(err.value)


def test_the_environment_wins_for_urls_and_hosts():
    env = {ENV["api_url"]: "http://127.0.0.1:1/v1/", ENV["allowed_hosts"]: "a.example, *.b.example"}
    s = ScrapeSettings.from_params(scrape_params(), environ=env)
    assert s.api_url == "http://127.0.0.1:1/v1/" and s.allowed_hosts == ("a.example", "*.b.example")


def test_no_scrape_default_is_written_twice_in_code():
    # The old code read scrape params in three places with `.get(key, default)`.
    for path in (ROOT / "src" / "coverpop" / "covers").glob("*.py"):
        text = path.read_text()
        for key in scrape_params():
            assert f'.get("{key}",' not in text and f"get('{key}'," not in text, (path, key)
