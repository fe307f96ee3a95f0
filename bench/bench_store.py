"""The cover store at scale: `dvc status`, push and pull of covers as shards vs as one file each.

    python bench/bench_store.py [--status-covers 300000] [--old-status-covers 50000]
                                [--push-covers 5000] [--skip status|push]

status: a scratch repo holding N covers the way the pipeline keeps them: the working folder
data/covers/images (one file per cover, untracked, in .dvcignore) and the cover store data/shards
(256 tar shards + index, packed by coverpop.covers.store, tracked). Timed: `dvc status` (twice),
the same without the .dvcignore line (what the untracked folder would cost), and in another repo
the old layout (data/covers tracked, one file per cover) at M covers; baseline: `dvc status` of
an empty repo (dvc's start-up), measured in the same run. Status figures are the dvc process's
CPU time (wall time printed too: on a busy machine it mostly measures the others).

push: N synthetic 300 px covers as shards, `dvc push` and a teammate's `dvc pull` against Swift +
s3api on 127.0.0.1 (tests/s3/swift_server.py, or COVERPOP_S3_ENDPOINT); baselines from the same
run: plain boto3 upload/download of the same shard files (the bytes) and of the covers as one
object each (the per-object cost the shards avoid).

    python bench/bench_store.py --smoke   # seconds, tiny data: does it still run? (push only
                                          # against COVERPOP_S3_ENDPOINT: without it, skipped)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from s3 import swift_server  # noqa: E402
from s3.plugin import S3Server, isolated_env  # noqa: E402
from team_remote import boto3_baseline, git, s3_server, write_covers  # noqa: E402
from team_remote import dvc as dvc_wall  # noqa: E402

from coverpop.covers.store import pack  # noqa: E402


def dvc(args: list[str], cwd: Path, env: dict) -> float:
    """CPU seconds (user + system) of one dvc command: on a shared machine far steadier than
    its wall time (`dvc status` does no network I/O; the wall time is printed beside it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = dvc_wall(args, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"  dvc {' '.join(args)}: {cpu:.2f} s CPU, {wall:.2f} s wall", flush=True)
    return cpu


def small_covers(folder: Path, n: int) -> None:
    """N distinct small files: status costs per file, not per byte."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"cover{i:06d}.jpg").write_bytes(os.urandom(16) + b"\xff" * 2000)


def pack_folder(images: Path, store: Path) -> float:
    t0 = time.perf_counter()
    files = {p.stem: p for p in images.iterdir()}
    shas = {c: hashlib.sha256(p.read_bytes()).hexdigest() for c, p in files.items()}
    pack(store, shas, lambda c: files[c].read_bytes())
    return time.perf_counter() - t0


def same_files(a: Path, b: Path) -> bool:
    """The same file names with the same bytes in the two folders (and some at all)."""
    names = sorted(p.name for p in a.iterdir())
    return bool(names) and names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def new_repo(path: Path, env: dict) -> Path:
    path.mkdir(parents=True)
    git(["init", "-q", "-b", "main"], path, env)
    dvc(["init", "-q"], path, env)
    return path


def bench_status(work: Path, n: int, m: int, repeats: int = 3) -> dict:
    """`repeats` (3; --smoke: 1) timings of the baseline, two of each status after it."""
    env = isolated_env()
    repo = new_repo(work / "status-new", env)
    empty_s = min(dvc(["status"], repo, env) for _ in range(repeats))   # dvc's own start-up
    again = max(1, repeats - 1)
    small_covers(repo / "data/covers/images", n)
    pack_s = pack_folder(repo / "data/covers/images", repo / "data/shards")
    add_s = dvc(["add", "-q", "data/shards"], repo, env)
    ignore = repo / ".dvcignore"
    ignore.write_text(ignore.read_text() + "/data/covers/images/\n")
    status = [dvc(["status"], repo, env) for _ in range(again)]
    ignore.write_text(ignore.read_text().replace("/data/covers/images/\n", ""))
    unignored_s = dvc(["status"], repo, env)
    shutil.rmtree(repo)
    old = new_repo(work / "status-old", env)
    small_covers(old / "data/covers/images", m)
    old_add_s = dvc(["add", "-q", "data/covers"], old, env)
    old_status = [dvc(["status"], old, env) for _ in range(again)]
    shutil.rmtree(old)
    per_file = (min(old_status) - empty_s) / m
    return {"covers": n, "dvc_status_empty_repo_s": round(empty_s, 2),
            "pack_s": round(pack_s, 1), "dvc_add_shards_s": round(add_s, 1),
            "dvc_status_s": [round(s, 2) for s in status],
            "dvc_status_without_dvcignore_s": round(unignored_s, 2),
            "old_layout_covers": m, "old_dvc_add_s": round(old_add_s, 1),
            "old_dvc_status_s": [round(s, 2) for s in old_status],
            "old_per_file_ms": round(per_file * 1000, 4),
            "old_extrapolated_status_s": round(empty_s + per_file * n, 1),
            "load_average": round(os.getloadavg()[0], 1)}


def bench_push(server: S3Server, work: Path, n: int, verify: bool = False) -> dict:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=bucket)
    env = isolated_env(**server.credentials_env())
    author = new_repo(work / "author", env)
    images = work / "covers"
    cover_bytes = write_covers(images, n)
    pack_s = pack_folder(images, author / "data/shards")
    dvc(["add", "-q", "data/shards"], author, env)
    dvc(["remote", "add", "-f", "-d", "storage", f"s3://{bucket}/dvcstore"], author, env)
    dvc(["remote", "modify", "storage", "endpointurl", server.endpoint], author, env)
    git(["add", "-A"], author, env)
    git(["-c", "user.name=bench", "-c", "user.email=b@b", "commit", "-qm", "shards"], author, env)
    push_s = dvc_wall(["push"], author, env)   # wall time: push and pull wait on the server
    mate = work / "teammate"
    git(["clone", "-q", str(author), str(mate)], work, env)
    pull_s = dvc_wall(["pull"], mate, env)
    shards = author / "data/shards"
    if verify and not same_files(shards, mate / "data/shards"):   # --smoke: the pull is whole
        raise SystemExit("bench_store: the teammate's data/shards differ from the author's")
    up_s, down_s = boto3_baseline(server, shards, bucket + "-shards", work / "raw-shards")
    file_up_s, file_down_s = boto3_baseline(server, images, bucket + "-files", work / "raw-files")
    store_bytes = sum(p.stat().st_size for p in shards.iterdir())
    return {"covers": n, "cover_megabytes": round(cover_bytes / 1e6, 1),
            "store_files": len(list(shards.iterdir())), "store_megabytes": round(store_bytes / 1e6, 1),
            "pack_s": round(pack_s, 1), "dvc_push_s": round(push_s, 1), "dvc_pull_s": round(pull_s, 1),
            "boto3_upload_shards_s": round(up_s, 1), "boto3_download_shards_s": round(down_s, 1),
            "boto3_upload_files_s": round(file_up_s, 1),
            "boto3_download_files_s": round(file_down_s, 1),
            "push_vs_shard_bytes": round(push_s / up_s, 2), "pull_vs_shard_bytes": round(pull_s / down_s, 2),
            "push_vs_one_object_per_cover": round(push_s / file_up_s, 2),
            "pull_vs_one_object_per_cover": round(pull_s / file_down_s, 2),
            "load_average": round(os.getloadavg()[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--status-covers", type=int, default=300_000)
    ap.add_argument("--old-status-covers", type=int, default=50_000)
    ap.add_argument("--push-covers", type=int, default=5000)
    ap.add_argument("--skip", choices=["status", "push"], action="append", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, tiny data: does it still run? (20 covers, 10 in the old layout, "
                         "each status once, 5 pushed; push skipped unless COVERPOP_S3_ENDPOINT "
                         "names a server)")
    args = ap.parse_args()
    if args.smoke:
        args.status_covers, args.old_status_covers, args.push_covers = 20, 10, 5
        if not os.environ.get("COVERPOP_S3_ENDPOINT") and "push" not in args.skip:
            print("smoke: no COVERPOP_S3_ENDPOINT, push skipped (it would start a server)",
                  flush=True)
            args.skip.append("push")
    work = Path(tempfile.mkdtemp(prefix="coverpop-bench-store-"))
    started = None
    out = {}
    try:
        if "status" not in args.skip:
            out["status"] = bench_status(work, args.status_covers, args.old_status_covers,
                                         1 if args.smoke else 3)
            print(json.dumps(out["status"]), flush=True)
        if "push" not in args.skip:
            server, started = s3_server(work)
            out["push"] = bench_push(server, work, args.push_covers, verify=args.smoke)
            print(json.dumps(out["push"]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1) + "\n")
    finally:
        if started:
            swift_server.stop(started)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
