"""The test session's own environment: nothing of the user's workspace or shell leaks in, and
nothing the suite writes is left behind.

`isolate()` runs once, when tests/conftest.py is imported (before any test module is):
- it removes the user's COVERPOP_*, SPOTIPY_*, AWS_*, HF_*, KAGGLE*, proxy and CA-bundle
  variables, keeping only the S3 test server that .ci/run exports (tests/s3/plugin.py reads
  COVERPOP_S3_ENDPOINT with its AWS_* key pair, COVERPOP_S3_REQUIRED, COVERPOP_S3_NO_INSTALL);
- it points every temp file (TMPDIR, also for subprocesses: torchrun, dvc, stages) at a folder of
  this session, the coverpop cache at an empty one (never the user's warm $COVERPOP_CACHE), and
  DVC's global, system and site-cache folders and torch's compile cache at empty ones.
pytest's own basetemp (tmp_path) lives in the session folder too, so the run leaves the real temp
root as it found it. Under pytest-xdist each worker gets a folder of its own inside the
controller's session folder, which the controller checks and removes at the end.

`leftovers()` lists what the suite left in its temp folders; tests/conftest.py fails the run on it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from coverpop.core.atomic import pid_alive

# The S3 test configuration .ci/run exports (tests/s3/swift_server.py env_vars), kept as given.
S3_KEEP = ("COVERPOP_S3_ENDPOINT", "COVERPOP_S3_REQUIRED", "COVERPOP_S3_NO_INSTALL")
S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
SCRUBBED_PREFIXES = ("COVERPOP_", "SPOTIPY_", "AWS_", "HF_", "HUGGINGFACE_", "KAGGLE")
SCRUBBED = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "NO_PROXY"}   # tests talk to 127.0.0.1 only, with the certificates they choose

SESSION: Path | None = None   # this session's folder (outside TMPDIR, so never a leftover itself)


def scrub(environ: dict | os._Environ) -> list[str]:
    """Remove the user's variables from `environ` in place; return their names."""
    keep = set(S3_KEEP)
    if environ.get("COVERPOP_S3_ENDPOINT"):   # that server's key pair goes with it
        keep |= set(S3_CREDENTIALS)
    gone = [k for k in environ if k not in keep and
            (k.upper().startswith(SCRUBBED_PREFIXES) or k.upper() in SCRUBBED)]
    for k in gone:
        del environ[k]
    return gone


# Set by the controller for its xdist workers (a name the scrub keeps).
SESSION_VAR = "PYTEST_COVERPOP_SESSION"
OWNER_VAR = "PYTEST_COVERPOP_SESSION_PID"


def isolate() -> Path:
    global SESSION
    if SESSION is not None:
        return SESSION
    scrub(os.environ)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if is_worker():   # an xdist worker: a folder in the controller's
        SESSION = Path(os.environ[SESSION_VAR]) / "workers" / worker
        SESSION.mkdir(parents=True)
    else:
        real_tmp = tempfile.gettempdir()
        for old in Path(real_tmp).glob("coverpop-tests-*"):   # of a session that was killed
            m = re.match(r"coverpop-tests-(\d+)-", old.name)
            if m and not pid_alive(int(m[1])):
                shutil.rmtree(old, ignore_errors=True)
        SESSION = Path(tempfile.mkdtemp(prefix=f"coverpop-tests-{os.getpid()}-", dir=real_tmp))
        os.environ[SESSION_VAR] = str(SESSION)
        os.environ[OWNER_VAR] = str(os.getpid())
        (SESSION / "pytest").mkdir()
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(SESSION / "pytest")   # pytest's basetemp
    folders = {"TMPDIR": "tmp", "COVERPOP_CACHE": "cache", "DVC_GLOBAL_CONFIG_DIR": "dvc-global",
               "DVC_SYSTEM_CONFIG_DIR": "dvc-system", "DVC_SITE_CACHE_DIR": "dvc-site-cache",
               "TORCHINDUCTOR_CACHE_DIR": "torchinductor"}   # else $TMPDIR/torchinductor_$USER
    for var, name in folders.items():
        (SESSION / name).mkdir()
        os.environ[var] = str(SESSION / name)
    tempfile.tempdir = os.environ["TMPDIR"]                    # this process too, not only children
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:   # xdist: the cores shared out, else torch's threads in every worker fight
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ["HF_HUB_OFFLINE"] = "1"                         # nothing may download in tests
    os.environ["DVC_NO_ANALYTICS"] = "1"
    return SESSION


def is_worker() -> bool:
    """An xdist worker of this session's controller: its child. A pytest that a test starts
    inherits the worker's variables, but it is a session of its own."""
    return (bool(os.environ.get("PYTEST_XDIST_WORKER")) and bool(os.environ.get(SESSION_VAR))
            and os.environ.get(OWNER_VAR) == str(os.getppid()))


def shared() -> Path:
    """A folder every xdist worker of this session sees (the controller's session folder):
    what is built once per session for all workers (conftest.built_once)."""
    root = Path(os.environ[SESSION_VAR]) if is_worker() else SESSION
    return root / "shared"


def leftovers() -> list[str]:
    """What the suite left in its temp folders (every test and fixture cleans up after itself):
    this process's, and after an xdist run each worker's."""
    if SESSION is None:
        return []
    tmps = [SESSION / "tmp", *sorted((SESSION / "workers").glob("*/tmp"))]
    return sorted(str(p.relative_to(SESSION)) for t in tmps if t.is_dir() for p in t.iterdir())


def finish() -> None:
    """The controller (or a plain run) removes the session folder; a worker leaves its folder
    to the controller, which checks it after every worker has finished."""
    if SESSION is not None and not is_worker():
        shutil.rmtree(SESSION, ignore_errors=True)
