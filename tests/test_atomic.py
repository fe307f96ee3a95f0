"""Atomic writes (fsync before rename) and the clean-up of temp files and folders of dead runs."""

import os
import subprocess
import sys
import tempfile

import pytest

from coverpop.core import atomic
from coverpop.core.atomic import clean_dead_temps, owned_tempdir, pid_alive, write_bytes


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_temp_file_is_fsynced_before_it_takes_the_final_name(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_bytes(tmp_path / "cover.jpg", b"data")
    tmp = str(tmp_path / f".cover.jpg.{os.getpid()}.tmp")
    assert events == [("fsync", tmp), ("replace", tmp)]
    assert (tmp_path / "cover.jpg").read_bytes() == b"data" and not os.path.exists(tmp)


def test_a_failed_write_leaves_neither_temp_nor_half_file(tmp_path):
    (tmp_path / "x").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "x") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert (tmp_path / "x").read_bytes() == b"old" and os.listdir(tmp_path) == ["x"]


def test_only_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / f".a.jpg.{dead_pid()}.tmp"
    mine = tmp_path / f".b.jpg.{os.getpid()}.tmp"
    other_user = tmp_path / ".c.jpg.1.tmp"              # pid 1 is alive: not ours to touch
    cover = tmp_path / "d.jpg"
    for f in (dead, mine, other_user, cover):
        f.write_bytes(b"x")
    assert clean_dead_temps(tmp_path) == 1
    assert not dead.exists() and mine.exists() and other_user.exists() and cover.exists()
    assert pid_alive(os.getpid()) and pid_alive(1) and not pid_alive(0)


def test_owned_tempdir_carries_the_pid_and_removes_dead_owners_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"coverpop-csv-{dead_pid()}-zz"
    stale.mkdir()
    (stale / "tracks.csv").write_text("half")
    live = tmp_path / "coverpop-csv-1-yy"
    live.mkdir()
    other = tmp_path / "coverpop-csvother"
    other.mkdir()
    with owned_tempdir("coverpop-csv") as tmp:
        assert tmp.name.startswith(f"coverpop-csv-{os.getpid()}-") and tmp.is_dir()
        assert not stale.exists() and live.exists() and other.exists()
    assert not tmp.exists()
