#!/usr/bin/env python3
"""A real S3-compatible server on loopback: OpenStack Swift + s3api, from Debian's packages.

    python3 tests/s3/swift_server.py install          # idempotent apt-get install
    python3 tests/s3/swift_server.py start [--dir D] [--port P]
    python3 tests/s3/swift_server.py env   [--dir D]  # export lines for the shell
    python3 tests/s3/swift_server.py stop  [--dir D] [--keep]

`start` writes every config file, ring and data folder into one directory (default
$TMPDIR/coverpop-swift), starts memcached and the account, container, object and proxy
servers on 127.0.0.1 in their own process groups (logs in <dir>/logs/), waits until an
object round trip works, and prints the endpoint. Credentials are tempauth's test pair;
clients get them only through AWS_* env vars (see `env`) or `.dvc/config.local`.

Stdlib only: it runs under any Python 3; the servers run under Debian's /usr/bin/python3.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

APT_PACKAGES = ["swift", "swift-proxy", "swift-account", "swift-container", "swift-object",
                "memcached"]
BINARIES = ["swift-proxy-server", "swift-account-server", "swift-container-server",
            "swift-object-server", "swift-ring-builder", "memcached"]
ACCESS_KEY = "test:tester"      # tempauth user "tester" in account "test"
SECRET_KEY = "testing"
REGION = "us-east-1"            # s3api's `location`; SigV4 scopes must match it
DEFAULT_DIR = Path(tempfile.gettempdir()) / "coverpop-swift"
SERVERS = ("account", "container", "object")


class SwiftError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin") is None]


def install() -> None:
    """apt-get install the Swift servers and memcached unless they are already there."""
    if not missing_binaries():
        print("swift and memcached already installed")
        return
    if shutil.which("apt-get") is None:
        raise SwiftError("swift is not installed and apt-get is not available")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]):
        done = subprocess.run(sudo + cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SwiftError(f"{' '.join(cmd)} failed ({done.returncode}): "
                             f"{done.stderr.strip().splitlines()[-1:] or done.stdout[-300:]}")
    if missing_binaries():
        raise SwiftError(f"installed {APT_PACKAGES} but still missing {missing_binaries()}")
    print("installed", " ".join(APT_PACKAGES))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- config files
def _server_conf(kind: str, root: Path, port: int, user: str) -> str:
    return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {root}
devices = {root}/srv
mount_check = false
log_name = {kind}-server

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""


def _proxy_conf(root: Path, port: int, memcache_port: int, user: str) -> str:
    # s3api goes right before tempauth; slo after s3api (multipart uploads).
    return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {root}
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = {REGION}

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {SECRET_KEY} .admin
storage_url_scheme = default

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcache_port}

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
"""


_RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
root, ports = sys.argv[1], sys.argv[2:]
for kind, port in zip(("account", "container", "object"), ports):
    builder = RingBuilder(6, 1, 0)  # 2^6 partitions, 1 replica, no min_part_hours
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                     "device": "d1", "weight": 100})
    builder.rebalance()
    builder.save(f"{root}/{kind}.builder")
    builder.get_ring().save(f"{root}/{kind}.ring.gz")
"""


def _swift_python() -> str:
    """The interpreter Debian's swift scripts run under (it has the `swift` package)."""
    first = Path(shutil.which("swift-ring-builder") or "/usr/bin/swift-ring-builder").read_text(
        errors="replace").splitlines()[0]
    return first[2:].strip().split()[0] if first.startswith("#!") else "/usr/bin/python3"


def _build_rings(root: Path, ports: dict[str, int], log: Path) -> None:
    # One device, one replica, tiny partition power; one interpreter for all three rings
    # (swift-ring-builder would cost a Python start-up per create/add/rebalance).
    with open(log, "a") as out:
        done = subprocess.run([_swift_python(), "-c", _RING_SCRIPT, str(root),
                               *(str(ports[kind]) for kind in SERVERS)],
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SwiftError(f"building the rings failed ({done.returncode}); see {log}")


# --------------------------------------------------------------------------- processes
def _state_file(root: Path) -> Path:
    return root / "state.json"


def read_state(root: Path = DEFAULT_DIR) -> dict | None:
    try:
        return json.loads(_state_file(root).read_text())
    except FileNotFoundError:
        return None


def _spawn(cmd: list[str], log: Path) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it exited.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _http(method: str, url: str, headers: dict | None = None, data: bytes | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _round_trip(port: int) -> None:
    """Authenticate with tempauth and PUT/GET/DELETE one object through every server."""
    base = f"http://127.0.0.1:{port}"
    _, headers, _ = _http("GET", f"{base}/auth/v1.0",
                          {"X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY})
    token, url = headers["X-Auth-Token"], headers["X-Storage-Url"]
    auth = {"X-Auth-Token": token}
    _http("PUT", f"{url}/healthcheck", auth)
    _http("PUT", f"{url}/healthcheck/probe", auth, b"ok")
    status, _, body = _http("GET", f"{url}/healthcheck/probe", auth)
    if body != b"ok":
        raise SwiftError(f"object round trip returned {status} {body!r}")
    _http("DELETE", f"{url}/healthcheck/probe", auth)
    _http("DELETE", f"{url}/healthcheck", auth)


def _wait_healthy(root: Path, state: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "not started"
    while time.monotonic() < deadline:
        dead = [name for name, pid in state["pids"].items() if not _alive(pid)]
        if dead:
            raise SwiftError(f"{', '.join(dead)} exited during start-up; see {root}/logs/")
        try:
            _round_trip(state["port"])
            return
        except (OSError, urllib.error.URLError, KeyError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SwiftError(f"swift not healthy after {timeout:.0f} s ({last}); see {root}/logs/")


def start(root: Path = DEFAULT_DIR, port: int | None = None, timeout: float = 60.0) -> dict:
    """Start memcached + swift on 127.0.0.1; returns the state (endpoint, pids, dir)."""
    root = Path(root).resolve()
    state = read_state(root)
    if state and all(_alive(p) for p in state["pids"].values()):
        return state                      # already running: idempotent
    if state:
        stop(root)
    for attempt in range(3):
        try:
            return _start_once(root, port, timeout)
        except SwiftError:
            # The ports are picked free, then bound by the servers a moment later: another
            # process may take one in between. Then try again with new ports, never on a guess.
            logs = " ".join(f.read_text(errors="replace") for f in (root / "logs").glob("*.log"))
            if port is not None or "Address already in use" not in logs or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_once(root: Path, port: int | None, timeout: float) -> dict:
    if missing_binaries():
        raise SwiftError(f"swift is not installed (missing {', '.join(missing_binaries())}); "
                         f"run: python3 {__file__} install")
    if not Path("/etc/swift/swift.conf").exists():
        # The servers always read the hash prefix/suffix and policies from here.
        raise SwiftError("/etc/swift/swift.conf is missing (it ships with the `swift` package)")
    t0 = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    (root / "logs").mkdir(parents=True)
    (root / "srv" / "d1").mkdir(parents=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    ports = {kind: free_port() for kind in SERVERS}
    ports["memcached"] = free_port()
    ports["proxy"] = port or free_port()
    for kind in SERVERS:
        (root / f"{kind}-server.conf").write_text(_server_conf(kind, root, ports[kind], user))
    (root / "proxy-server.conf").write_text(
        _proxy_conf(root, ports["proxy"], ports["memcached"], user))
    _build_rings(root, ports, root / "logs" / "rings.log")

    pids = {}
    memcached = ["memcached", "-l", "127.0.0.1", "-p", str(ports["memcached"]), "-U", "0",
                 "-m", "64"] + (["-u", "nobody"] if os.geteuid() == 0 else [])
    pids["memcached"] = _spawn(memcached, root / "logs" / "memcached.log")
    for kind in (*SERVERS, "proxy"):
        # -v: log to the console (our log file) instead of syslog.
        pids[kind] = _spawn([f"swift-{kind}-server", str(root / f"{kind}-server.conf"), "-v"],
                            root / "logs" / f"{kind}.log")
    state = {"dir": str(root), "port": ports["proxy"], "ports": ports, "pids": pids,
             "endpoint": f"http://127.0.0.1:{ports['proxy']}", "access_key": ACCESS_KEY,
             "secret_key": SECRET_KEY, "region": REGION}
    _state_file(root).write_text(json.dumps(state, indent=1))
    try:
        _wait_healthy(root, state, timeout)
    except BaseException:
        stop(root, keep=True)
        raise
    state["start_seconds"] = round(time.monotonic() - t0, 2)
    _state_file(root).write_text(json.dumps(state, indent=1))
    return state


def stop(root: Path = DEFAULT_DIR, keep: bool = False) -> None:
    """Stop every server started from `root` (SIGTERM to its group, SIGKILL after 10 s)."""
    root = Path(root).resolve()
    state = read_state(root)
    if state:
        pids = list(state["pids"].values())
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        _state_file(root).unlink(missing_ok=True)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def env_vars(state: dict) -> dict[str, str]:
    """What a client (dvc, boto3, the test fixture) needs to reach this server."""
    return {"COVERPOP_S3_ENDPOINT": state["endpoint"],
            "AWS_ACCESS_KEY_ID": state["access_key"],
            "AWS_SECRET_ACCESS_KEY": state["secret_key"],
            "AWS_DEFAULT_REGION": state["region"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "start", "stop", "env", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"config, rings, data and logs (default {DEFAULT_DIR})")
    parser.add_argument("--port", type=int, help="proxy (S3 endpoint) port; default: a free one")
    parser.add_argument("--keep", action="store_true", help="stop: keep the data directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
        elif args.command == "start":
            state = start(args.dir, args.port)
            print(f"swift s3api ready at {state['endpoint']} "
                  f"(started in {state.get('start_seconds', 0)} s; logs {args.dir}/logs)")
        elif args.command == "stop":
            stop(args.dir, keep=args.keep)
        elif args.command in ("env", "status"):
            state = read_state(args.dir.resolve())
            if not state:
                print(f"error: no swift running from {args.dir}", file=sys.stderr)
                return 1
            if args.command == "env":
                for key, value in env_vars(state).items():
                    print(f"export {key}={value}")
            else:
                print(json.dumps(state, indent=1))
    except SwiftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
