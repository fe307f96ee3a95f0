"""Tests never depend on the workspace: a sample of the suite passes in a clone whose params.yaml
an experiment rewrote (the README's recommended line) and under a hostile environment."""

import os
import re
import subprocess
import sys
import tempfile

import pytest
import session_env
import yaml
from conftest import ROOT, make_repo_copy, run, set_params

from coverpop.core.params import defaults

# Fast but representative: TrainConfig and scrape settings built from defaults, the params
# checks and docs, the environment check below. Each of these failed when defaults came from
# the workspace's params.yaml or the environment leaked in.
SAMPLE = [
    "tests/test_isolation.py::test_the_session_environment_holds_nothing_of_the_user",
    "tests/test_scrape_settings.py",
    "tests/test_params.py::test_train_config_defaults_are_the_schemas",
    "tests/test_params.py::test_committed_params_yaml_holds_exactly_the_schema_defaults",
    "tests/test_params.py::test_docs_params_md_is_generated_from_the_schema_and_up_to_date",
    "tests/test_params.py::test_a_stage_with_a_bad_param_prints_one_line",
    "tests/test_training.py::test_from_params_reads_top_level_and_train_section",
    "tests/test_training.py::test_freeze_backbone_trains_only_the_head",
    "tests/test_probe.py::test_ridge_needs_a_frozen_plain_linear_head",
    "tests/test_probe.py::test_ridge_is_exact_for_the_chosen_penalty",
    "tests/test_hostile_network.py::test_a_redirect_to_a_host_not_allowed_is_not_followed",
]


def recommended_line() -> dict:
    """The `-S key=value` pairs of the README's recommended line, typed as DVC types them."""
    line = next(x for x in (ROOT / "README.md").read_text().splitlines()
                if x.startswith("dvc exp run") and "recommended" in x)
    return {k: yaml.safe_load(v) for k, v in re.findall(r"-S (\S+?)=(\S+)", line)}


def hostile_environment(junk) -> dict:
    """What a user's shell may hold: their own endpoints, credentials, hub settings and a warm
    cache (here: junk where every cache folder should be, so any use of it fails loudly)."""
    junk.mkdir()
    for name in ("embeddings", "images", "downloads", "fingerprints"):
        (junk / name).write_bytes(b"\x00junk, not a folder")
    dead = "http://127.0.0.1:9"   # the discard port: nothing answers there
    return {"COVERPOP_CACHE": str(junk), "COVERPOP_SPOTIFY_API_URL": f"{dead}/v1/",
            "COVERPOP_SPOTIFY_TOKEN_URL": f"{dead}/api/token", "COVERPOP_OEMBED_URL": dead,
            "COVERPOP_IMAGE_HOST": dead, "COVERPOP_ALLOWED_HOSTS": "evil.example",
            "SPOTIPY_CLIENT_ID": "bogus-id", "SPOTIPY_CLIENT_SECRET": "bogus-secret",
            "SPOTIPY_REDIRECT_URI": f"{dead}/cb",
            "AWS_ACCESS_KEY_ID": "AKIABOGUSBOGUSBOGUS", "AWS_SECRET_ACCESS_KEY": "bogus",
            "AWS_PROFILE": "no-such-profile", "AWS_CONFIG_FILE": str(junk / "images"),
            "AWS_ENDPOINT_URL": dead, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": dead,
            "HF_HOME": str(junk / "images"), "KAGGLE_USERNAME": "bogus", "KAGGLE_KEY": "bogus",
            "REQUESTS_CA_BUNDLE": str(junk / "images"), "HTTP_PROXY": dead, "HTTPS_PROXY": dead}


def test_the_session_environment_holds_nothing_of_the_user():
    """(Also run inside the hostile session below, where it proves the scrub.)"""
    kept = {"COVERPOP_CACHE", *session_env.S3_KEEP}
    if os.environ.get("COVERPOP_S3_ENDPOINT"):
        kept |= set(session_env.S3_CREDENTIALS)
    leaked = [k for k in os.environ if k.upper().startswith(session_env.SCRUBBED_PREFIXES)
              and k not in kept and k != "HF_HUB_OFFLINE"]
    assert leaked == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert not any(k.upper() in session_env.SCRUBBED for k in os.environ)
    assert os.environ["COVERPOP_CACHE"] == str(session_env.SESSION / "cache")
    assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(session_env.SESSION / "tmp")


def test_the_scrub_keeps_the_s3_test_server_ci_exports():
    ci = {"COVERPOP_S3_ENDPOINT": "http://127.0.0.1:8080", "COVERPOP_S3_REQUIRED": "1",
          "AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_PROFILE": "mine", "COVERPOP_IMAGE_HOST": "x",
          "http_proxy": "http://proxy:3128", "PATH": "/usr/bin"}
    gone = session_env.scrub(ci)
    assert sorted(gone) == ["AWS_PROFILE", "COVERPOP_IMAGE_HOST", "http_proxy"]
    user = {"AWS_ACCESS_KEY_ID": "mine", "AWS_SECRET_ACCESS_KEY": "mine", "PATH": "/usr/bin"}
    session_env.scrub(user)          # no test server: the user's own keys go too
    assert user == {"PATH": "/usr/bin"}


@pytest.mark.slow
def test_a_sample_of_the_suite_passes_after_an_experiment_and_in_a_hostile_environment(tmp_path):
    repo = make_repo_copy(tmp_path / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(defaults(), sort_keys=False))
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "defaults"], repo)
    experiment = recommended_line()
    assert {"model", "pretrained", "train.head"} <= set(experiment)
    set_params(repo, experiment)     # what `dvc exp run -S ...` leaves in the workspace

    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERPOP_S3_")}
    env.update(hostile_environment(tmp_path / "warm-cache"), PYTHONPATH=str(repo / "src"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'basetemp'}", *SAMPLE],
                          cwd=repo, env=env, text=True, capture_output=True, timeout=800)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert re.search(r"\b\d+ passed\b", proc.stdout) and " skipped" not in proc.stdout, tail
