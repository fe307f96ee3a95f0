"""Issue 19, class 3: a disk that fails under the project's own writes. The real scrape_images
stage (a subprocess, covers from the local Spotify stand-in) on a full disk and on a read-only
covers folder: one line naming the path, the cause and what to do; no traceback; no partial or
temp file; every cover finished before is kept; the next run after the fix resumes.

The disk is a small tmpfs (full) or a read-only bind mount where the test may mount them (root
with CAP_SYS_ADMIN), else the same faults injected into the subprocess's writes
(tests/fakes/diskfault/sitecustomize.py). Both ways run where both are possible."""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402
from fakes.spotify_server import FakeSpotify, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.core.atomic import write_bytes, write_text  # noqa: E402
from coverpop.core.errors import DiskError, disk_error  # noqa: E402
from coverpop.covers.journal import Appender, read_journal  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).parent / "fakes" / "diskfault"
LINE = re.compile(r"^error: cannot write data/covers/\S+: (?P<cause>[^;]+) \((?P<code>E[A-Z]+)\); "
                  r".+, then run again: finished work is kept and the run resumes$")


def _can_mount() -> bool:
    probe = Path(f"/tmp/coverpop-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    except OSError:
        return False
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


class Disk:
    """The covers folder on a disk that fails, one way or the other, and then is fixed."""

    def __init__(self, how: str, folder: Path):
        self.how, self.folder, self.env, self.mounted = how, folder, {}, False
        folder.mkdir(parents=True, exist_ok=True)

    def fill_up(self, size: str = "64k", budget: int = 40_000) -> None:
        if self.how == "mount":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                            str(self.folder)], check=True)
            self.mounted = True
        else:
            self.env = {"COVERPOP_DISK_FAULT": f"ENOSPC:{budget}:{self.folder}"}

    def read_only(self) -> None:
        if self.how == "mount":
            subprocess.run(["mount", "--bind", "-o", "ro", str(self.folder), str(self.folder)],
                           check=True)
            self.mounted = True
        else:
            self.env = {"COVERPOP_DISK_FAULT": f"EROFS:0:{self.folder}"}

    def fix(self, full: bool = False) -> None:
        if self.how == "mount" and full:
            subprocess.run(["mount", "-o", "remount,size=16m", str(self.folder)], check=True)
        elif self.how == "mount":
            subprocess.run(["umount", str(self.folder)], check=True)
            self.mounted = False
        self.env = {}

    def release(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


@pytest.fixture(params=["mount", "injected"])
def disk(request, tmp_path):
    if request.param == "mount" and not CAN_MOUNT:
        pytest.skip("cannot mount a tmpfs here: the injected disk fault covers this case")
    d = Disk(request.param, tmp_path / "data" / "covers")
    yield d
    d.release()


def stage(cwd: Path, fake: FakeSpotify, ids: list[str], disk: Disk):
    write_params(cwd, {"data": {"source": "kaggle"}, "scrape": scrape_params(
        resolver="spotify_api", size=300, workers=4, min_success=0.5, timeout=2, retries=1,
        backoff=0.05, rate_limit=0)})
    pd.DataFrame({"track_id": ids, "popularity": 50, "artist_name": "a"}).to_csv(
        cwd / "selected.csv", index=False)
    (cwd / "images.csv").write_text("name,size,sha256\n")
    env = {**os.environ, **fake.env(), **disk.env,
           "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO / "src")])}
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "scrape_images.py"),
                           "selected.csv", "images.csv", "data/covers", "data/manifest.csv",
                           "data/shards"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def finished(covers: Path) -> dict[str, dict]:
    return {t: r for t, r in read_journal(covers / "journal.jsonl").items() if r["status"] == "ok"}


def assert_intact(covers: Path, done: dict[str, dict]) -> None:
    import hashlib
    for rec in done.values():
        data = (covers / rec["file"]).read_bytes()
        assert len(data) == rec["bytes"] and hashlib.sha256(data).hexdigest() == rec["sha256"]


def temp_files(covers: Path) -> list[Path]:
    return [p for p in covers.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_full_disk_while_writing_covers_is_one_line_and_the_next_run_resumes(tmp_path, disk):
    ids = make_track_ids(40)
    covers = disk.folder
    disk.fill_up()
    with FakeSpotify() as fake:
        code, out, err = stage(tmp_path, fake, ids, disk)
        assert code == 1, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        m = LINE.match(lines[0])
        assert m and m["code"] == "ENOSPC" and m["cause"] == "no space left on the device", err
        assert "free some space there" in lines[0]
        assert not temp_files(covers)                       # no partial file left
        assert not (tmp_path / "data" / "manifest.csv").exists()
        done = finished(covers)
        assert 0 < len(done) < len(ids)                     # some finished before the disk did
        assert_intact(covers, done)
        fetched = {fake.image_id(t) for t in done}

        disk.fix(full=True)
        fake.reset_counts()
        code, out, err = stage(tmp_path, fake, ids, disk)
        assert code == 0, (out, err)
        assert f"{len(ids) - len(done)} new, {len(done)} done before" in out
        assert not any(fake.image_hits[i] for i in fetched)   # finished covers not fetched again
        assert len(finished(covers)) == len(ids)
        assert_intact(covers, finished(covers))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_read_only_covers_folder_is_one_line_and_costs_nothing(tmp_path, disk):
    ids = make_track_ids(30)
    covers = disk.folder
    with FakeSpotify() as fake:
        code, out, err = stage(tmp_path, fake, ids[:20], disk)     # a first run, on a good disk
        assert code == 0, err
        before = {p: p.read_bytes() for p in covers.rglob("*") if p.is_file()}

        disk.read_only()
        code, out, err = stage(tmp_path, fake, ids, disk)           # ten new tracks to store
        assert code == 1, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        m = LINE.match(lines[0])
        assert m and m["code"] == "EROFS" and "make data/covers writable" in lines[0], err
        assert ".tmp" not in lines[0]                               # the final path, not a temp
        assert {p: p.read_bytes() for p in covers.rglob("*") if p.is_file()} == before

        disk.fix()
        fake.reset_counts()
        code, out, err = stage(tmp_path, fake, ids, disk)
        assert code == 0, err
        assert "10 new, 20 done before" in out and fake.counts["image"] == 10


# ---- the shared write path, in-process ---------------------------------------------------------
@pytest.mark.parametrize("code,cause,todo", [
    (errno.ENOSPC, "no space left on the device", "free some space there"),
    (errno.EDQUOT, "disk quota exceeded", "raise the quota"),
    (errno.EROFS, "read-only file system", "make out writable"),
    (errno.EACCES, "permission denied", "make out writable for this user"),
    (errno.EIO, "input/output error", "check the disk"),
])
def test_every_disk_failure_of_a_write_is_one_line_naming_the_final_path(tmp_path, monkeypatch,
                                                                        code, cause, todo):
    monkeypatch.chdir(tmp_path)
    target = Path("out") / "covers.csv"
    write_text(target, "old\n")
    real = os.replace

    def failing(src, dst, *a, **k):
        raise OSError(code, os.strerror(code), os.fspath(src))   # the temp file's name, as the OS

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(DiskError) as err:
        write_text(target, "new\n")
    monkeypatch.setattr(os, "replace", real)
    msg = str(err.value)
    assert msg.startswith(f"cannot write out/covers.csv: {cause}") and todo in msg
    assert "\n" not in msg and ".tmp" not in msg
    assert target.read_text() == "old\n"                        # the old file is untouched
    assert [p.name for p in Path("out").iterdir()] == ["covers.csv"]   # no temp file left


def test_a_cache_write_failure_says_where_the_cache_can_go(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    err = disk_error(OSError(errno.ENOSPC, "No space left on device"),
                     tmp_path / "cache" / "images" / "x.npy")
    assert "set COVERPOP_CACHE to a folder with room" in str(err)


def test_errors_that_are_not_about_the_disk_pass_through(tmp_path):
    assert disk_error(OSError(errno.ECONNRESET, "reset"), tmp_path / "x") is None
    with pytest.raises(FileNotFoundError):     # the source of a copy is missing: not our write
        with __import__("coverpop.core.atomic", fromlist=["atomic_path"]).atomic_path(
                tmp_path / "dest") as tmp:
            import shutil
            shutil.copyfile(tmp_path / "missing-source", tmp)


def test_a_journal_append_on_a_full_disk_is_one_line_and_leaves_a_readable_journal(tmp_path,
                                                                                   monkeypatch):
    path = tmp_path / "journal.jsonl"
    journal = Appender(path)
    journal.add({"track_id": "a", "status": "ok"})
    real_write = journal.f.write

    def full(text):
        real_write(text[:7])        # part of the line reaches the disk, then the disk is full
        journal.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal.f, "write", full)
    with pytest.raises(DiskError, match=r"cannot write .*journal.jsonl: no space left"):
        journal.add({"track_id": "b", "status": "ok"})
    journal.close()
    Appender(path).add({"track_id": "c", "status": "ok"})      # the next run, after the fix
    assert set(read_journal(path)) == {"a", "c"}                 # the cut line is skipped
    assert all(json.loads(line) for line in path.read_text().splitlines()[-1:])


def test_write_bytes_on_a_read_only_folder_names_the_folder(tmp_path, monkeypatch):
    real_open = Path.open

    def refuse(self, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_open(self, mode, *a, **k)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DiskError, match=r"images/x.jpg: read-only file system \(EROFS\); make "
                                        r".*images writable"):
        write_bytes(tmp_path / "images" / "x.jpg", b"jpeg")


def test_a_full_disk_during_a_copy_names_the_destination_not_the_source(tmp_path, monkeypatch):
    # shutil reports ENOSPC of sendfile with the *source* as filename (the Kaggle file's copy)
    import shutil

    from coverpop.core.atomic import atomic_path

    source = tmp_path / "kagglehub-cache" / "spotify_data.csv"
    source.parent.mkdir()
    source.write_text("x" * 1000)

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(DiskError, match=r"cannot write .*raw/tracks.csv: no space left"):
        with atomic_path(tmp_path / "raw" / "tracks.csv") as out:
            shutil.copyfile(source, out)
    assert not (tmp_path / "raw" / "tracks.csv").exists()


def test_a_file_where_the_output_folder_should_be_is_one_line(tmp_path):
    (tmp_path / "covers").write_text("not a folder")
    with pytest.raises(DiskError, match=r"cannot write .*covers/images/x.jpg: a (file is where a "
                                        r"folder should be \(EEXIST\)|part of the path is a file)"):
        write_bytes(tmp_path / "covers" / "images" / "x.jpg", b"jpeg")
