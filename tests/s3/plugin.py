"""pytest fixtures for a real S3 server on 127.0.0.1 (OpenStack Swift + s3api).

Load from tests/conftest.py with `pytest_plugins = ["s3.plugin"]`.

- `s3_server` (session): the server named by COVERPOP_S3_ENDPOINT (CI starts it with
  `tests/s3/swift_server.py start`; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
  tempauth's test pair by default), or else one this fixture starts and stops itself. If swift
  is missing it is apt-installed; only when that is impossible are the tests skipped — and
  with COVERPOP_S3_REQUIRED=1 (CI) they fail instead.
- `s3_bucket` (function): a fresh, empty bucket on that server.
- `isolated_env(**extra)`: os.environ without any AWS_* credentials or shared AWS config, so a
  test decides exactly where dvc gets its credentials from.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import swift_server


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = swift_server.REGION

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3  # dvc-s3's own dependency

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def credentials_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}


@dataclass(frozen=True)
class S3Bucket:
    server: S3Server
    name: str

    def url(self, prefix: str = "dvcstore") -> str:
        return f"s3://{self.name}/{prefix}"

    def keys(self) -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


# botocore rejects /dev/null as a config file; an empty regular file reads as "no profiles".
# A committed one: nothing to create per session, nothing left behind in /tmp.
EMPTY_FILE = str(Path(__file__).with_name("empty_aws_config"))


def _empty_file() -> str:
    assert Path(EMPTY_FILE).stat().st_size == 0, f"{EMPTY_FILE} must stay empty"
    return EMPTY_FILE


def isolated_env(**extra: str) -> dict[str, str]:
    """The current environment minus AWS credentials/config; git identity set for temp repos."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "COVERPOP_S3_ENDPOINT"}
    env.update(AWS_CONFIG_FILE=_empty_file(), AWS_SHARED_CREDENTIALS_FILE=_empty_file(),
               AWS_EC2_METADATA_DISABLED="true",
               GIT_AUTHOR_NAME="coverpop test", GIT_AUTHOR_EMAIL="test@coverpop.invalid",
               GIT_COMMITTER_NAME="coverpop test", GIT_COMMITTER_EMAIL="test@coverpop.invalid",
               DVC_NO_ANALYTICS="1")
    env.update(extra)
    return env


def _unavailable(reason: str):
    if os.environ.get("COVERPOP_S3_REQUIRED") == "1":
        pytest.fail(f"S3 server required (COVERPOP_S3_REQUIRED=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    endpoint = os.environ.get("COVERPOP_S3_ENDPOINT")
    if endpoint:
        server = S3Server(endpoint,
                          os.environ.get("AWS_ACCESS_KEY_ID", swift_server.ACCESS_KEY),
                          os.environ.get("AWS_SECRET_ACCESS_KEY", swift_server.SECRET_KEY))
        try:
            server.client().list_buckets()
        except Exception as exc:  # a configured but dead server is a failure, never a skip
            pytest.fail(f"COVERPOP_S3_ENDPOINT={endpoint} is set but not usable: {exc}")
        yield server
        return

    if swift_server.missing_binaries() and not os.environ.get("COVERPOP_S3_NO_INSTALL"):
        try:
            swift_server.install()
        except (swift_server.SwiftError, OSError) as exc:
            _unavailable(f"OpenStack Swift is not installed and could not be: {exc}")
    if swift_server.missing_binaries():
        _unavailable("OpenStack Swift is not installed (python3 tests/s3/swift_server.py install)")

    root = tmp_path_factory.mktemp("swift")
    try:
        state = swift_server.start(root)
    except swift_server.SwiftError as exc:
        pytest.fail(f"could not start swift: {exc}")
    try:
        yield S3Server(state["endpoint"], state["access_key"], state["secret_key"])
    finally:
        swift_server.stop(root, keep=True)   # keep logs under pytest's basetemp


@pytest.fixture
def s3_bucket(s3_server):
    name = f"coverpop-test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    bucket = S3Bucket(s3_server, name)
    yield bucket
    # Empty and drop it so a long-lived CI server does not fill up. One key per request:
    # Swift 2.30's DeleteObjects wants Content-MD5, which botocore >= 1.36 no longer sends.
    client = s3_server.client()
    for key in bucket.keys():
        client.delete_object(Bucket=name, Key=key)
    client.delete_bucket(Bucket=name)
