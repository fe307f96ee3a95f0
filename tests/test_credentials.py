"""No credential in any output (issue 13): with user:password in every base URL and signed image
URLs, nothing written (manifest, journal), printed (stdout, stderr, progress) or logged carries a
secret. In-process and through the real stage script, against the local fake."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402
from fakes.spotify_server import FakeSpotify, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.core.redact import has_secret, redact_text, redact_url  # noqa: E402
from coverpop.covers.engine import Scraper, manifest_frame  # noqa: E402
from coverpop.covers.resolvers import make_resolver  # noqa: E402
from coverpop.covers.settings import ScrapeSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECRETS = ("PASSWORD-api", "PASSWORD-token", "PASSWORD-oembed", "PASSWORD-img", "QUERYKEY77",
           "SIGNATURE99", "CDNTOKEN55")


def secret_env(fake: FakeSpotify) -> dict:
    """fake.env(), with credentials in every base URL and a key in the oEmbed query."""
    host = fake.url.removeprefix("http://")
    return {**fake.env(),
            "COVERPOP_SPOTIFY_API_URL": f"http://api:PASSWORD-api@{host}/v1/",
            "COVERPOP_SPOTIFY_TOKEN_URL": f"http://tok:PASSWORD-token@{host}/api/token",
            "COVERPOP_OEMBED_URL": f"http://oe:PASSWORD-oembed@{host}/oembed?key=QUERYKEY77",
            "COVERPOP_IMAGE_HOST": f"http://img:PASSWORD-img@{host}"}


def hostile(fake: FakeSpotify, ids: list[str]) -> None:
    """Signed image URLs, and faults whose messages name URLs."""
    fake.image_query = "X-Amz-Signature=SIGNATURE99&token=CDNTOKEN55&w=300"
    fake.fault(ids[0], "image_404")
    fake.fault(ids[1], "image_redirect_loop")
    fake.fault(ids[2], "500")
    fake.fault(ids[3], "image_trickle")
    fake.fault(ids[4], "404")


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked: ...{text[text.find(secret) - 80:][:160]}"


# ---- redact_url / redact_text --------------------------------------------------------------------
@pytest.mark.parametrize("url,want", [
    ("http://user:PW@host:8/v1/", "http://***@host:8/v1/"),
    ("https://token@host/x", "https://***@host/x"),
    ("https://h/i?X-Amz-Signature=S&X-Amz-Credential=C&w=3",
     "https://h/i?X-Amz-Signature=***&X-Amz-Credential=***&w=3"),
    ("https://h/i?access_token=T&client_secret=S&api_key=K&sig=G&page=2",
     "https://h/i?access_token=***&client_secret=***&api_key=***&sig=***&page=2"),
    ("https://h/cb#access_token=T&state=s", "https://h/cb#access_token=***&state=s"),
    ("https://i.scdn.co/image/ab67616d00001e02abc", "https://i.scdn.co/image/ab67616d00001e02abc"),
])
def test_redact_url(url, want):
    assert redact_url(url) == want and has_secret(url) == (url != want)


def test_redact_text_finds_urls_queries_and_header_values():
    text = ("HTTP 404 from 'http://u:PW@h/x?sig=SG'. GET /img?token=TK&a=1 "
            "Authorization: Bearer BQabcdef123 (see https://a:b@c/).")
    out = redact_text(text)
    assert "PW" not in out and "SG" not in out and "TK" not in out and "BQabcdef123" not in out
    assert "b@c" not in out and "a=1" in out and "http://***@h/x?sig=***'." in out


# ---- params: a URL with a credential may only come from the environment --------------------------
@pytest.mark.parametrize("key", ["api_url", "token_url", "oembed_url", "image_host"])
def test_a_credential_in_params_yaml_is_refused_without_showing_it(key):
    url = "http://mirror:SECRETPW@mirror.example/v1/" if key != "oembed_url" else \
        "https://open.spotify.com/oembed?api_key=SECRETPW"
    with pytest.raises(CoverpopError, match=f"scrape.{key}=.* carries a credential.*environment"
                                            ) as err:
        ScrapeSettings.from_params(scrape_params(**{key: url}), environ={})
    assert "SECRETPW" not in str(err.value) and "\n" not in str(err.value)


# ---- a whole scrape, in-process ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("resolver", ["spotify_api", "oembed"])
def test_no_secret_in_journal_manifest_logs_or_output(tmp_path, caplog, capfd, resolver):
    caplog.set_level(logging.DEBUG)        # even the libraries' debug lines
    ids = make_track_ids(12)
    with FakeSpotify() as fake:
        hostile(fake, ids)
        settings = ScrapeSettings.from_params(
            scrape_params(resolver=resolver, timeout=0.5, retries=1, backoff=0.01, workers=4),
            environ=secret_env(fake))
        tracks = pd.DataFrame({"track_id": ids, "popularity": 1})
        scraper = Scraper(make_resolver(settings, tracks, {"source": "kaggle"},
                                        environ=secret_env(fake)), tmp_path)
        records = scraper.run(tracks.to_dict("records"), workers=4, progress=True)
        assert fake.basic_auth["img"] > 0            # the mirror did get its credentials
    errors = {r["track_id"]: r["error"] for r in records if r["status"] != "ok"}
    assert errors[ids[0]].startswith("not_found: HTTP 404 from http://***@127.0.0.1")
    assert "X-Amz-Signature=***&token=***&w=300" in errors[ids[0]]
    assert errors[ids[1]].startswith("redirect_loop")
    assert len(errors) == 5
    manifest = tmp_path / "manifest.csv"
    manifest_frame(records).to_csv(manifest, index=False)
    out, err = capfd.readouterr()
    assert_clean((tmp_path / "journal.jsonl").read_text(), manifest.read_text(), caplog.text,
                 out, err, scraper.summary.line())


# ---- the real stage script -----------------------------------------------------------------------
def stage(cwd: Path, env: dict) -> subprocess.CompletedProcess:
    (cwd / "images.csv").write_text("name,size,sha256\n")  # the inputs stage's: no local images
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "scrape_images.py"), "selected.csv",
         "images.csv", "data/covers", "data/manifest.csv", "data/shards"], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO / "src")}, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("resolver", ["spotify_api", "oembed"])
def test_the_stage_writes_and_prints_no_secret(tmp_path, resolver):
    ids = make_track_ids(12)
    params = {"data": {"source": "kaggle"},
              "scrape": scrape_params(resolver=resolver, timeout=0.5, retries=1, backoff=0.01,
                                      workers=4, min_success=0.5)}
    write_params(tmp_path, params)
    pd.DataFrame({"track_id": ids, "popularity": 1}).to_csv(tmp_path / "selected.csv",
                                                            index=False)
    with FakeSpotify() as fake:
        hostile(fake, ids)
        proc = stage(tmp_path, secret_env(fake))
    assert proc.returncode == 0, proc.stderr
    manifest = (tmp_path / "data" / "manifest.csv").read_text()
    assert "http://***@127.0.0.1" in manifest              # errors still say where
    written = [p.read_text(errors="replace") for p in (tmp_path / "data").rglob("*")
               if p.is_file() and p.suffix != ".jpg"]
    assert_clean(proc.stdout, proc.stderr, *written)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_stopped_stage_prints_no_secret_either(tmp_path):
    params = {"data": {"source": "kaggle"},
              "scrape": scrape_params(resolver="spotify_api", timeout=1, retries=0)}
    write_params(tmp_path, params)
    pd.DataFrame({"track_id": make_track_ids(3), "popularity": 1}).to_csv(
        tmp_path / "selected.csv", index=False)
    with FakeSpotify() as fake:
        fake.token_fault("html")                       # start-up failure naming the token URL
        proc = stage(tmp_path, secret_env(fake))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot get a Spotify access token: "
                                                   "http://***@127.0.0.1")
    assert "Traceback" not in proc.stderr
    assert_clean(proc.stdout, proc.stderr)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_credential_in_params_stops_the_stage_in_one_line(tmp_path):
    params = {"data": {"source": "kaggle"},
              "scrape": scrape_params(resolver="oembed",
                                      oembed_url="http://u:PASSWORD-oembed@127.0.0.1:9/oembed")}
    write_params(tmp_path, params)
    pd.DataFrame({"track_id": make_track_ids(3), "popularity": 1}).to_csv(
        tmp_path / "selected.csv", index=False)
    proc = stage(tmp_path, {})
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "COVERPOP_OEMBED_URL" in proc.stderr
    assert_clean(proc.stdout, proc.stderr)
