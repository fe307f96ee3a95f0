"""The team's DVC remote: check it is reachable, and share the run-cache through it.

    python -m coverpop.remote check            # bucket exists, credentials work: one-line error if not
    python -m coverpop.remote push-run-cache   # after `dvc push`: run-cache records + their outputs

Why `push-run-cache`: `dvc push --run-cache` (dvc 3.x) uploads only the records under `runs/`;
the outputs they name go up only when some pushed revision also tracks them. A stage's
`cache: false` metrics and plots (kept in git so `dvc exp show` works without a pull) are never
tracked that way, so a teammate's `dvc exp run --pull` finds the record but not all outputs and
trains again. This uploads every output the local records name (as dvc 2.x did), then the records.

Why `check`: with a missing bucket, `dvc pull` says "Some of the cache files do not exist neither
locally nor on remote", which reads as "nobody pushed"; this names the real problem.
"""
from __future__ import annotations

import argparse
import os
import sys

from coverpop.core.errors import CoverpopError, run_stage

CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or "
                    "`dvc remote modify --local {name} access_key_id ...` and `secret_access_key ...`")


def _remote_name(repo, remote: str | None) -> str:
    name = remote or repo.config["core"].get("remote")
    if not name:
        raise CoverpopError("no dvc remote: `dvc remote add -d storage s3://<bucket>/<prefix>`")
    if name not in repo.config["remote"]:
        raise CoverpopError(f"dvc remote '{name}' is not configured (see `dvc remote list`)")
    return name


def check_remote(root: str = ".", remote: str | None = None) -> str:
    """Raise CoverpopError with one clear line unless the remote's bucket can be listed."""
    from dvc.repo import Repo

    with Repo(root) as repo:
        name = _remote_name(repo, remote)
        url = repo.config["remote"][name]["url"]
        odb = repo.cloud.get_remote_odb(name)
        if odb.fs.protocol != "s3":
            return f"remote '{name}' ({url}): not S3, nothing to check"
        bucket = odb.path.split("/")[0]
        where = f"remote '{name}' ({url})"
        try:
            odb.fs.fs.ls(bucket)
        except FileNotFoundError:
            raise CoverpopError(f"{where}: bucket '{bucket}' does not exist; create it or point "
                                f"the remote at yours: dvc remote modify {name} url "
                                "s3://<bucket>/<prefix>") from None
        except PermissionError as exc:
            raise CoverpopError(f"{where}: access denied ({exc}); "
                                + CREDENTIALS_HINT.format(name=name)) from None
        except Exception as exc:  # no credentials at all, endpoint down, DNS ...
            hint = ("; " + CREDENTIALS_HINT.format(name=name)
                    if type(exc).__name__ == "NoCredentialsError" else "")
            raise CoverpopError(f"{where}: {type(exc).__name__}: {exc}{hint}") from None
    return f"{where}: bucket '{bucket}' reachable"


def local_run_entries(repo) -> list[tuple[str, str]]:
    """(stage key, run value) for every run-cache record in the local cache."""
    runs = repo.stage_cache.cache_dir
    if not os.path.isdir(runs):
        return []
    return [(key, value)
            for prefix in sorted(os.listdir(runs))
            for key in sorted(os.listdir(os.path.join(runs, prefix)))
            for value in sorted(os.listdir(os.path.join(runs, prefix, key)))]


def push_run_cache(root: str = ".", remote: str | None = None, jobs: int | None = None
                   ) -> tuple[int, int]:
    """Upload every local run-cache record and the outputs it names; (records, new objects)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(root) as repo:
        name = _remote_name(repo, remote)
        try:
            # Outputs first, so a record on the remote always has its outputs there too.
            uploaded = 0
            entries = local_run_entries(repo)
            for odb, objs in repo.stage_cache.get_used_objs(entries, remote=name).items():
                result = repo.cloud.push(objs, jobs=jobs, remote=name, odb=odb)
                if result.failed:
                    raise CoverpopError(f"remote '{name}': {len(result.failed)} run-cache "
                                        "outputs failed to upload")
                uploaded += len(result.transferred)
            records = repo.stage_cache.push(name)
        except (DvcException, OSError) as exc:   # s3fs maps 403 / NoSuchBucket to OSErrors
            raise CoverpopError(f"remote '{name}': {type(exc).__name__}: {exc}") from exc
    return len(records), uploaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "push-run-cache"])
    parser.add_argument("-r", "--remote", help="dvc remote name (default: core.remote)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel uploads")
    args = parser.parse_args(argv)
    if args.command == "check":
        print(check_remote(".", args.remote))
    else:
        records, uploaded = push_run_cache(".", args.remote, args.jobs)
        print(f"run-cache: {records} records, {uploaded} outputs uploaded")


if __name__ == "__main__":
    run_stage(lambda: main(sys.argv[1:]))
