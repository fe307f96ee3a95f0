"""Team remote at scale: dvc push/pull of N covers to a real S3 server, dvc status on M files.

    PYTHONPATH=src python bench/team_remote.py [--covers 5000] [--status-files 50000]
                                                [--source demo|synthetic] [--out bench/out]
    PYTHONPATH=src python bench/team_remote.py --smoke   # seconds, tiny data: does it still run?

Starts OpenStack Swift + s3api on 127.0.0.1 (tests/s3/swift_server.py) unless
COVERPOP_S3_ENDPOINT is set. Each timing comes with a baseline measured in the same process:
- push/pull: the same files uploaded/downloaded with plain boto3 (same thread count as dvc's
  default jobs), so the ratio is dvc's own overhead over the wire cost;
- status: `dvc status` in the same repo before the files exist (dvc's start-up), and one
  os.scandir walk + stat of the same tree (the least any status must do).
Writes <out>/team_remote.json and prints a table.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from s3 import swift_server  # noqa: E402
from s3.plugin import S3Server, isolated_env  # noqa: E402

JOBS = 4 * (os.cpu_count() or 1)   # dvc's default --jobs for S3


def dvc(args: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed in {cwd}:\n{done.stdout}")
    return time.perf_counter() - t0


def git(args: list[str], cwd: Path, env: dict) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def synthetic_cover(rng: random.Random, size: int = 300) -> bytes:
    """A flat-colour cover with a few shapes and light noise: JPEG size close to real covers."""
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        draw.ellipse([x0, y0, x0 + rng.randrange(20, 150), y0 + rng.randrange(20, 150)],
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.effect_noise((size, size), 24).convert("RGB")
    img = Image.blend(img, noise, 0.15).filter(ImageFilter.SMOOTH)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_covers(folder: Path, n: int, seed: int = 0) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        data = synthetic_cover(rng)
        (folder / f"cover{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total


def boto3_baseline(server: S3Server, folder: Path, bucket: str, dest: Path) -> tuple[float, float]:
    """Plain boto3 upload then download of every file, JOBS threads: the wire cost alone."""
    import boto3
    import botocore.config

    client = boto3.client(
        "s3", endpoint_url=server.endpoint, region_name=server.region,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=botocore.config.Config(max_pool_connections=JOBS))
    client.create_bucket(Bucket=bucket)
    files = sorted(folder.iterdir())
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, p.name), files))
    up = time.perf_counter() - t0
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(lambda p: client.download_file(bucket, p.name, str(dest / p.name)), files))
    return up, time.perf_counter() - t0


def walk_baseline(folder: Path) -> float:
    t0 = time.perf_counter()
    count = 0
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entry.stat()
                if entry.is_dir():
                    stack.append(entry.path)
                count += 1
    return time.perf_counter() - t0


def _synthetic_author(author: Path, n: int, env: dict) -> Path:
    author.mkdir()
    git(["init", "-q", "-b", "main"], author, env)
    dvc(["init", "-q"], author, env)
    images = author / "data" / "covers" / "images"
    write_covers(images, n)
    dvc(["add", "-q", "data/covers"], author, env)
    return images


def _demo_author(author: Path, n: int, env: dict) -> Path:
    """A copy of this repo whose demo pipeline scrapes n covers (one per album, all tracks)."""
    from conftest import make_repo_copy  # the Foundation's temp-repo helper

    author.mkdir()
    make_repo_copy(author, {"data.demo.n_albums": n, "select.n": 10 ** 7})
    dvc(["repro", "scrape_images"], author, env)
    return author / "data" / "covers" / "images"


def bench_push_pull(server: S3Server, work: Path, n: int, source: str,
                    verify: bool = False) -> dict:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=bucket)
    env = isolated_env(HF_HUB_OFFLINE="1", **server.credentials_env())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # stages' python
    author = work / "author"
    t0 = time.perf_counter()
    images = (_demo_author if source == "demo" else _synthetic_author)(author, n, env)
    make_s = time.perf_counter() - t0
    covers = sorted(images.iterdir())
    total_bytes = sum(p.stat().st_size for p in covers)
    dvc(["remote", "add", "-f", "-d", "storage", f"s3://{bucket}/dvcstore"], author, env)
    dvc(["remote", "modify", "storage", "endpointurl", server.endpoint], author, env)
    git(["add", "-A"], author, env)
    git(["-c", "user.name=bench", "-c", "user.email=b@b", "commit", "-qm", "covers"], author, env)
    push_s = dvc(["push"], author, env)
    noop_push_s = dvc(["push"], author, env)
    mate = work / "teammate"
    git(["clone", "-q", str(author), str(mate)], work, env)
    # demo: only the stages up to the scrape ran, so pull those (train's outputs don't exist)
    pull_s = dvc(["pull", "scrape_images", "--with-deps"] if source == "demo" else ["pull"],
                 mate, env)
    pulled = mate / images.relative_to(author)
    if verify and sorted(p.read_bytes() for p in covers) != sorted(
            p.read_bytes() for p in pulled.iterdir()):   # --smoke: the teammate got every cover
        raise SystemExit(f"team_remote: the teammate's {pulled} differs from the author's")
    up_s, down_s = boto3_baseline(server, images, bucket + "-raw", work / "raw-download")
    return {"source": source, "covers": len(covers), "cover_megabytes": round(total_bytes / 1e6, 1),
            "prepare_s": round(make_s, 1),
            "dvc_push_s": round(push_s, 1), "dvc_push_again_s": round(noop_push_s, 1),
            "dvc_pull_s": round(pull_s, 1), "boto3_upload_s": round(up_s, 1),
            "boto3_download_s": round(down_s, 1), "push_ratio": round(push_s / up_s, 2),
            "pull_ratio": round(pull_s / down_s, 2), "jobs": JOBS}


def bench_status(work: Path, m: int, repeats: int = 3) -> dict:
    """The baseline is the best of `repeats` (3; --smoke: 1)."""
    env = isolated_env()
    repo = work / "status"
    repo.mkdir()
    git(["init", "-q", "-b", "main"], repo, env)
    dvc(["init", "-q"], repo, env)
    empty_s = min(dvc(["status"], repo, env) for _ in range(repeats))   # dvc's own start-up
    images = repo / "data" / "covers" / "images"
    images.mkdir(parents=True)
    for i in range(m):   # status cost is per file, not per byte: small distinct files
        (images / f"cover{i:06d}.jpg").write_bytes(os.urandom(16) + b"\xff" * 2000)
    add_s = dvc(["add", "-q", "data/covers"], repo, env)
    status_s = dvc(["status"], repo, env)
    status2_s = dvc(["status"], repo, env)
    (images / "cover000000.jpg").write_bytes(b"changed")
    changed_s = dvc(["status"], repo, env)
    walk_s = walk_baseline(repo / "data" / "covers")
    return {"files": m, "dvc_status_empty_repo_s": round(empty_s, 2),
            "dvc_add_s": round(add_s, 1), "dvc_status_s": round(status_s, 2),
            "dvc_status_again_s": round(status2_s, 2), "dvc_status_one_changed_s":
            round(changed_s, 2), "walk_stat_s": round(walk_s, 3),
            "status_vs_empty_repo": round(status2_s / empty_s, 1),
            "status_vs_walk": round(status2_s / walk_s, 1)}


def s3_server(work: Path) -> tuple[S3Server, Path | None]:
    """The S3 server COVERPOP_S3_ENDPOINT names, else a Swift started under work/swift; with the
    folder to stop afterwards (None when the server was already running)."""
    if os.environ.get("COVERPOP_S3_ENDPOINT"):
        return S3Server(os.environ["COVERPOP_S3_ENDPOINT"],
                        os.environ.get("AWS_ACCESS_KEY_ID", swift_server.ACCESS_KEY),
                        os.environ.get("AWS_SECRET_ACCESS_KEY", swift_server.SECRET_KEY)), None
    state = swift_server.start(work / "swift")
    return S3Server(state["endpoint"], state["access_key"], state["secret_key"]), work / "swift"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covers", type=int, default=5000)
    parser.add_argument("--status-files", type=int, default=50000)
    parser.add_argument("--source", choices=["demo", "synthetic"], default="demo",
                        help="demo: the demo pipeline's scrape stage; synthetic: random covers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--skip", choices=["push", "status"], action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coverpop-bench-remote-"))
    if args.smoke:   # and the figures stay in the temp folder, not in bench/out
        args.covers, args.status_files, args.source, args.out = 5, 20, "synthetic", work / "out"
    started = None
    try:
        server, started = s3_server(work)
        result = {"machine": f"{os.cpu_count()} cpu", "dvc": subprocess.run(
            [sys.executable, "-m", "dvc", "--version"], capture_output=True, text=True
        ).stdout.strip()}
        if "push" not in args.skip:
            result["push_pull"] = bench_push_pull(server, work, args.covers, args.source,
                                                  verify=args.smoke)
            print(json.dumps(result["push_pull"]), flush=True)
        if "status" not in args.skip:
            result["status"] = bench_status(work, args.status_files, 1 if args.smoke else 3)
            print(json.dumps(result["status"]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "team_remote.json").write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if started:
            swift_server.stop(started)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
