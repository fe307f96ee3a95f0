"""Issue 19, classes 4 and 6: hostile file names in a `local` source, and messages that said
something else than what was the case.

4. A name in the `image` column that cannot be a path (a NUL byte, too long, a folder, outside
   the images folder, a FIFO, a broken link, empty) is that row's failure with a reason; the
   other rows are scraped. The images folder itself may hold such entries: the inputs stage
   skips them with one line instead of dying (or hanging on a FIFO).
6. A folder where a file is expected is not "file not found"; scikit-learn's "least populated
   class" warning becomes one line of ours; a library's warning is one line, not a source
   excerpt. A stage that fails while a thread still runs C++ code (covers in flight, a torch
   op) exits with its own code, not an abort."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.covers.engine import Scraper  # noqa: E402
from coverpop.covers.resolvers import LocalResolver  # noqa: E402
from coverpop.split.splitting import split  # noqa: E402
from coverpop.tracks import inputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_script(script: Path) -> subprocess.CompletedProcess:
    """A stage-like script in its own Python, with this checkout's coverpop."""
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=60)


def picture(path: Path, colour=(200, 30, 30)) -> None:
    Image.new("RGB", (120, 120), colour).save(path)


@pytest.fixture
def hostile(tmp_path):
    """An images folder with two good pictures and every kind of bad entry, and the rows that
    name them (track id -> image)."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    picture(images / "good.jpg")
    picture(images / "sub" / "also good.jpg", (20, 200, 20))
    picture(tmp_path / "outside.jpg")
    os.mkfifo(images / "fifo.jpg")
    (images / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (images / "loop.jpg").symlink_to(images / "loop.jpg")
    os.close(os.open(os.fsencode(images) + b"/latin1-\xe9.jpg", os.O_CREAT | os.O_WRONLY))
    rows = {
        "good": "good.jpg", "sub": "sub/also good.jpg",
        "nul": "bad\x00name.jpg", "long": "x" * 5000 + ".jpg", "part": "y" * 300 + ".jpg",
        "folder": "sub", "itself": ".", "up": "../outside.jpg", "absolute": "/etc/hostname",
        "fifo": "fifo.jpg", "dangling": "dangling.jpg", "loop": "loop.jpg", "missing": "no.jpg",
        "empty": "",
    }
    return images, rows


@pytest.mark.timeout(60)
def test_a_bad_file_name_is_that_rows_failure_and_the_others_are_scraped(tmp_path, hostile):
    images, rows = hostile
    table = [{"track_id": t, "image": name} for t, name in rows.items()]
    resolver = LocalResolver(images)
    records = {r["track_id"]: r for r in Scraper(resolver, tmp_path / "covers", size=64).run(
        table, workers=2, progress=False)}
    assert records["good"]["status"] == records["sub"]["status"] == "ok"
    reasons = {t: r["error"].split(":")[0] for t, r in records.items() if r["status"] != "ok"}
    assert reasons == {"nul": "bad_path", "long": "bad_path", "part": "bad_path",
                       "folder": "bad_path", "itself": "bad_path", "up": "bad_path",
                       "absolute": "bad_path", "fifo": "bad_path", "dangling": "bad_path",
                       "loop": "bad_path", "missing": "missing_file", "empty": "bad_path"}
    assert "NUL byte" in records["nul"]["error"] and "\x00" not in records["nul"]["error"]
    assert "longer than" in records["long"]["error"] and len(records["long"]["error"]) < 300
    assert "255 bytes" in records["part"]["error"]
    assert "is a folder" in records["folder"]["error"] and "outside" in records["up"]["error"]
    assert "FIFO" in records["fifo"]["error"]
    assert resolver.drop_stale_covers(tmp_path / "covers" / "images", table) == 0   # no raise


def test_a_local_file_larger_than_max_bytes_is_not_read(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    with open(images / "huge.jpg", "wb") as f:      # sparse: 5 GB that take no room
        f.truncate(5 * 10**9)
    picture(images / "good.jpg")
    records = {r["track_id"]: r for r in Scraper(LocalResolver(images, max_bytes=10**7),
                                                 tmp_path / "covers", size=64).run(
        [{"track_id": "h", "image": "huge.jpg"}, {"track_id": "g", "image": "good.jpg"}],
        workers=1, progress=False)}
    assert records["h"]["error"].startswith("too_large:") and records["g"]["status"] == "ok"


@pytest.mark.timeout(60)
def test_the_inputs_stage_skips_entries_that_are_no_image_files_with_one_line(tmp_path, hostile,
                                                                              monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    images, rows = hostile
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"track_id": list(rows), "popularity": 50, "image": list(rows.values())}).to_csv(
        csv, index=False)
    data = {"source": "local", "local": {"csv": str(csv), "images": str(images)}}
    line = inputs.write_fingerprints(data, tmp_path / "tracks.json", tmp_path / "images.csv")
    assert "2 image files" in line and "4 entries of data.local.images skipped" in line
    assert "\n" not in line
    hashed = inputs.read_image_hashes(tmp_path / "images.csv")
    assert set(hashed) == {"good.jpg", "sub/also good.jpg"}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_local_csv_with_a_nul_byte_runs_through_the_stages(tmp_path, hostile):
    """The reported case, as a user meets it: inputs, fetch_csv, select_tracks, scrape_images."""
    images, rows = hostile
    del rows["empty"]         # fetch_csv rejects a blank `image` itself (one line naming the line)
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"track_id": list(rows), "popularity": np.arange(len(rows)) * 7,
                  "image": list(rows.values())}).to_csv(csv, index=False)
    write_params(tmp_path, {"data": {"source": "local",
                                     "local": {"csv": str(csv), "images": str(images)}},
                            "select": {"n": len(rows)},
                            "scrape": {"min_success": 0.1, "size": 64, "workers": 2}})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COVERPOP_CACHE": str(tmp_path / "c")}
    for script, args in [("inputs", ["tracks.json", "images.csv"]),
                         ("fetch_csv", ["tracks.json", "tracks.csv"]),
                         ("select_tracks", ["tracks.csv", "selected.csv"]),
                         ("scrape_images", ["selected.csv", "images.csv", "covers",
                                            "manifest.csv", "shards"])]:
        proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{script}.py"), *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (script, proc.stderr)
    manifest = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False).set_index("track_id")
    assert set(manifest.index[manifest["status"] == "ok"]) == {"good", "sub"}
    assert manifest.loc["nul", "error"].startswith("bad_path:")


# ---- 6. messages that say what is the case -------------------------------------------------------
def test_a_folder_given_as_the_csv_is_not_file_not_found(tmp_path):
    (tmp_path / "a folder").mkdir()
    with pytest.raises(CoverpopError, match=r"data.csv.path='.*a folder': is a folder, not a "
                                            r"file$"):
        inputs.tracks_fingerprint({"source": "csv", "csv": {"path": str(tmp_path / "a folder")}})
    with pytest.raises(CoverpopError, match=r"data.local.csv='.*a folder': is a folder"):
        inputs.tracks_fingerprint({"source": "local", "local": {
            "csv": str(tmp_path / "a folder"), "images": str(tmp_path)}})
    (tmp_path / "a file").write_text("x")
    with pytest.raises(CoverpopError, match=r"data.local.images='.*a file' is not a folder \(it is "
                                            r"a file, not a folder\)"):
        inputs.tracks_fingerprint({"source": "local", "local": {
            "csv": str(tmp_path / "a file"), "images": str(tmp_path / "a file")}})
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(CoverpopError, match="is not a regular file"):
        inputs.tracks_fingerprint({"source": "csv", "csv": {"path": str(tmp_path / "fifo.csv")}})
    (tmp_path / "link.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(CoverpopError, match="is a link to a missing file"):
        inputs.tracks_fingerprint({"source": "csv", "csv": {"path": str(tmp_path / "link.csv")}})


def test_a_sparse_popularity_range_is_our_one_line_not_sklearns_warning(capsys):
    df = pd.DataFrame({"track_id": [str(i) for i in range(40)],
                       "album_id": [str(i) for i in range(40)],
                       "popularity": [10] * 39 + [97]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # any warning at all fails the test
        labels = split(df, val=0.15, test=0.15, seed=0)
    assert set(labels) == {"train", "val", "test"}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dedupe_split: too few covers in some popularity")
    assert "popularity 81-100: 1 cover" in err[0] and "least populated" not in err[0]
    capsys.readouterr()
    split(pd.DataFrame({"track_id": [str(i) for i in range(40)],
                        "album_id": [str(i) for i in range(40)],
                        "popularity": np.arange(40) * 2.5}))
    assert capsys.readouterr().err == ""               # nothing to say: nothing said


def test_a_library_warning_in_a_stage_is_one_line(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(
        "import warnings\n"
        "from coverpop.core.errors import run_stage\n"
        "def main():\n"
        "    warnings.warn('something odd\\nsecond line', FutureWarning)\n"
        "    print('done')\n"
        "run_stage(main)\n")
    proc = run_script(script)
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert proc.stderr.strip().splitlines() == ["warning: something odd (FutureWarning, "
                                                f"{tmp_path.name})"]


@pytest.mark.parametrize("code,line", [
    ("raise OSError(errno.ENOSPC, 'No space left on device')",
     "error: cannot write an output of this stage: no space left on the device (ENOSPC); "),
    ("raise OSError(errno.EROFS, 'Read-only file system', 'plots/x.png')",
     "error: cannot write plots/x.png: read-only file system (EROFS); make plots writable"),
    # a read that fails is not called a write
    ("raise PermissionError(errno.EACCES, 'Permission denied', 'data/split.csv')",
     "error: data/split.csv: permission denied (EACCES); check it and the folders above it"),
])
def test_an_os_error_no_write_of_ours_caught_is_one_line_that_does_not_misread_it(tmp_path,
                                                                               code, line):
    script = tmp_path / "stage.py"
    script.write_text("import errno\nfrom coverpop.core.errors import run_stage\n"
                      f"def main():\n    {code}\nrun_stage(main)\n")
    proc = run_script(script)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), proc.stderr


@pytest.mark.parametrize("ending,code,last", [
    ("raise CoverpopError('data/split.csv: no test rows')", 1,
     "error: data/split.csv: no test rows"),
    ("sys.exit(130)", 130, "atexit ran"),
    ("raise RuntimeError('a bug')", 1, "RuntimeError: a bug"),
])
def test_a_stage_that_fails_while_a_thread_runs_torch_exits_with_its_code(tmp_path, ending, code,
                                                                          last):
    # Python's own exit ends a daemon thread inside C++ (here a torch matmul; in scrape_images
    # the covers a full disk abandoned in flight) with pthread_exit: the process aborted (134,
    # "terminate called without an active exception") instead of exiting with its code.
    script = tmp_path / "stage.py"
    script.write_text(
        "import atexit, sys, threading, time, torch\n"
        "from coverpop.core.errors import CoverpopError, run_stage\n"
        "torch.set_num_threads(1)\n"
        "def busy():\n"
        "    a = torch.randn(800, 800)\n"
        "    while True:\n"
        "        a @ a\n"
        "def main():\n"
        "    atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "    threading.Thread(target=busy, daemon=True).start()\n"
        "    time.sleep(0.2)\n"
        f"    {ending}\n"
        "run_stage(main)\n")
    proc = run_script(script)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "atexit ran" and last in lines[-2:], proc.stderr
    assert "terminate called" not in proc.stderr
