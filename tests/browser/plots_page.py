#!/usr/bin/env python3
"""The `dvc plots show` page as a person sees it: headless Chromium, offline, vega from npm.

    python3 tests/browser/plots_page.py install       # apt-get chromium, npm vega into .browser/
    python3 tests/browser/plots_page.py template      # .browser/plots.html, set as this repo's
                                                      # plots.html_template (.dvc/config.local)
    python3 tests/browser/plots_page.py screenshot docs/plots.png   # check the page, photograph it

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so offline no chart draws.
`template` inlines the npm builds into tests/browser/page.html; that template also writes what
went wrong on the page into the page, and a JSON report of every chart once all have drawn,
which `check` reads back from the DOM Chromium dumps: every declared chart drew (a canvas or
svg), no page error, nothing declared or shown twice, every axis a real column of its file (no
table drawn over row numbers) and, for `dvc plots diff`, every revision on every chart.

`install` needs the network (apt, npm): it belongs to `make browser` and `.ci/run`, never to a
test. The rest is stdlib plus the dvc of the interpreter that runs it.
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / ".browser"                  # git-ignored: node_modules and the template
TEMPLATE = BROWSER_DIR / "plots.html"
SKELETON = Path(__file__).with_name("page.html")
MARKER = "<!-- vega scripts -->"
VEGA = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}   # npm, pinned
SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
           "vega-embed/build/vega-embed.min.js")
WIDTH = 1600                                     # the screenshot's window width, px
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".svg"}


class PageError(RuntimeError):
    pass


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def missing(node_modules: Path = BROWSER_DIR / "node_modules") -> list[str]:
    """What the browser check lacks here, each with the command that installs it."""
    lacks = [] if chromium() else ["chromium (apt-get install -y chromium)"]
    if not all((node_modules / s).is_file() for s in SCRIPTS):
        lacks.append(f"vega scripts in {node_modules} (python3 tests/browser/plots_page.py install)")
    return lacks


def install() -> None:
    """apt-get install chromium (and npm), npm install the pinned vega builds; each only once."""
    apt = [name for name, have in (("chromium", chromium()), ("npm", shutil.which("npm"))) if not have]
    if apt:
        if shutil.which("apt-get") is None:
            raise PageError(f"{' and '.join(apt)} not installed and apt-get is not available")
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *apt]):
            _run_or_fail([*sudo, *cmd], env=env)
    if missing():
        BROWSER_DIR.mkdir(exist_ok=True)
        _run_or_fail(["npm", "install", "--prefix", str(BROWSER_DIR), "--no-save",
                      "--no-package-lock", "--no-audit", "--no-fund",
                      *(f"{name}@{version}" for name, version in VEGA.items())])
        if lacks := missing():
            raise PageError(f"installed, but still missing: {'; '.join(lacks)}")
    print(f"chromium: {chromium()}; vega scripts: {BROWSER_DIR / 'node_modules'}")


def _run_or_fail(cmd: list[str], **kwargs) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        raise PageError(f"{' '.join(cmd[:3])} … failed ({done.returncode}): {' '.join(last)}")


def build_template(dest: Path = TEMPLATE, node_modules: Path = BROWSER_DIR / "node_modules") -> Path:
    """tests/browser/page.html with the three scripts inlined: a page that needs no network."""
    if lacking := [s for s in SCRIPTS if not (node_modules / s).is_file()]:
        raise PageError(f"{node_modules}: no {', '.join(lacking)} "
                        "(python3 tests/browser/plots_page.py install)")
    inline = []
    for script in SCRIPTS:
        code = (node_modules / script).read_text(encoding="utf-8")
        code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", code)   # no map to fetch
        inline.append(f"<script>/* {script} */\n{code}</script>")
    page = SKELETON.read_text(encoding="utf-8").replace(MARKER, "\n".join(inline))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(dest)
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, text=True,
                          capture_output=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if proc.returncode != 0:
        raise PageError(f"dvc {' '.join(args)} failed ({proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def render(repo: Path, command: list[str], out: Path, template: Path = TEMPLATE) -> Path:
    """`dvc plots show` or `dvc plots diff A B` in `repo`, written to out/index.html."""
    dvc(repo, "plots", *command, "--html-template", str(Path(template).resolve()),
        "-o", str(Path(out).resolve()))
    return Path(out) / "index.html"


def _chromium(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    browser = chromium()
    if browser is None:
        raise PageError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="coverpop-chromium-") as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             "--virtual-time-budget=30000", *args],
            text=True, capture_output=True, timeout=timeout)


def load(page: Path) -> dict:
    """Open the page in headless Chromium; the report its own script wrote once all charts drew."""
    # laid out at the screenshot's width, so the height it reports is the screenshot's height
    proc = _chromium("--dump-dom", f"--window-size={WIDTH},1200", Path(page).resolve().as_uri())
    found = re.search(r'<pre id="coverpop-page-report"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    if not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise PageError(f"{page}: the page wrote no report (not built from "
                        f"tests/browser/page.html, or it never finished loading): {tail}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, report: dict) -> Path:
    """The whole page as a PNG: window as wide as WIDTH (or the page) and as tall as the page."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    size = f"{max(WIDTH, report['width'])},{report['height']}"
    proc = _chromium(f"--screenshot={tmp}", f"--window-size={size}", Path(page).resolve().as_uri())
    if not tmp.is_file():
        raise PageError(f"chromium wrote no screenshot: {proc.stderr.strip()[-300:]}")
    tmp.replace(png)
    return png


def div_id(name: str) -> str:
    """The element id DVC gives a chart (dvc_render's Renderer.remove_special_chars)."""
    return name.translate({ord(c): "_" for c in r"!@#$%^&*()[]{};,<>?\/:.|`~=_+ "})


def _files(repo: Path, path: str) -> list[str]:
    full = repo / path
    if full.is_dir():
        return sorted(p.relative_to(repo).as_posix() for p in full.rglob("*") if p.is_file())
    return [path]


def declared_charts(repo: Path) -> dict[str, list[str]]:
    """Every chart dvc.yaml declares (stage-level plot outs, top-level definitions) → the files
    it draws, as `dvc plots show` will name it. A file in two charts is drawn twice."""
    from dvc.repo import Repo

    charts: dict[str, list[str]] = {}
    with Repo(str(repo)) as r:
        for out in r.index.plots:          # stage-level: one chart per file
            rel = Path(os.path.relpath(out.fs_path, r.root_dir)).as_posix()
            for file in _files(repo, rel):
                charts.setdefault(file, []).append(file)
        for definitions in r.index._plots.values():   # top-level `plots:` of each dvc.yaml
            for entry in definitions:
                name, props = (entry, None) if isinstance(entry, str) else next(iter(entry.items()))
                y = (props or {}).get("y")
                if isinstance(y, dict):
                    charts.setdefault(name, []).extend(y)
                else:
                    for file in _files(repo, name):
                        charts.setdefault(file, []).append(file)
    return charts


def undeclared_files(repo: Path) -> list[str]:
    """Files beside the declared charts that no stage declares (a new figure someone forgot to
    add to dvc.yaml: never drawn, never restored)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        outs = {Path(os.path.relpath(o.fs_path, r.root_dir)).as_posix() for o in r.index.outs}
    declared = {f for out in outs for f in _files(repo, out)}
    folders = {Path(f).parent for f in declared_charts(repo)}
    return sorted(p.relative_to(repo).as_posix() for folder in folders
                  for p in (repo / folder).iterdir()
                  if p.is_file() and p.name != ".gitignore"
                  and p.relative_to(repo).as_posix() not in declared)


def columns(file: Path) -> set[str]:
    """The column names of a plot file (csv, tsv; json: the keys of its first list of rows)."""
    if file.suffix in (".csv", ".tsv"):
        with open(file, newline="", encoding="utf-8") as f:
            return set(next(csv.reader(f, delimiter="\t" if file.suffix == ".tsv" else ","), []))
    if file.suffix == ".json":
        data = json.loads(file.read_text())
        rows = data if isinstance(data, list) else next(
            (v for v in data.values() if isinstance(v, list)), [])
        return {k for row in rows[:1] for k in row}
    return set()


def encoded_fields(spec) -> set[tuple[str, str]]:
    """(axis, field) of every x/y encoding anywhere in a vega-lite spec (layers included)."""
    found = set()
    if isinstance(spec, dict):
        for axis in ("x", "y"):
            channel = (spec.get("encoding") or {}).get(axis)
            if isinstance(channel, dict) and isinstance(channel.get("field"), str):
                found.add((axis, channel["field"].replace("\\", "")))   # DVC escapes . [ ]
        for value in spec.values():
            found |= encoded_fields(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= encoded_fields(value)
    return found


def check(report: dict, repo: Path, revs: list[str] | None = None) -> list[str]:
    """Everything wrong with a rendered page, one line each; [] when every chart is right.
    `revs`: the revisions of `dvc plots diff` (each must be on every chart)."""
    repo = Path(repo)
    problems = [f"page error: {e}" for e in report["errors"]]
    declared = declared_charts(repo)
    for file, n in Counter(f for files in declared.values() for f in files).items():
        if n > 1:
            problems.append(f"{file}: declared in {n} charts (stage plots and top-level plots?)")
    problems += [f"{f}: beside the charts, declared nowhere in dvc.yaml"
                 for f in undeclared_files(repo)]
    expected = {div_id(name): name for name in declared}
    shown = Counter(chart["id"] for chart in report["charts"])
    problems += [f"{expected.get(i, i)}: on the page {n} times" for i, n in shown.items() if n > 1]
    problems += [f"{name}: declared, not on the page" for i, name in expected.items()
                 if i not in shown]
    for chart in report["charts"]:
        name = expected.get(chart["id"])
        if name is None:
            problems.append(f"chart {chart['id']!r} on the page is not declared in dvc.yaml")
            continue
        if chart["kind"] == "image":
            loaded = [img for img in chart["images"] if img["width"] > 0]
            want = len(revs) if revs else 1
            if len(loaded) != want:
                problems.append(f"{name}: {len(loaded)} image(s) shown, want {want}")
            if revs and sorted(img["rev"] for img in chart["images"]) != sorted(revs):
                problems.append(f"{name}: images of {[i['rev'] for i in chart['images']]}, "
                                f"want one of each of {revs}")
            continue
        if chart["kind"] != "vega":
            problems.append(f"{name}: neither a vega chart nor an image")
            continue
        if not chart["drawn"]:
            problems.append(f"{name}: did not draw (no canvas or svg)")
        header = set().union(*(columns(repo / f) for f in declared[name]))
        for axis, field in sorted(encoded_fields(chart["spec"])):
            if field not in header and field != "rev":
                problems.append(f"{name}: {axis} is {field!r}, not a column of "
                                f"{', '.join(declared[name])} (a table drawn over row numbers?)")
        if revs:
            values = (chart["spec"].get("data") or {}).get("values") or []
            have = {row.get("rev") for row in values}
            if lacking := [r for r in revs if r not in have]:
                problems.append(f"{name}: no data of {lacking} on the chart")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get chromium, npm install the vega builds into .browser/")
    sub.add_parser("template", help="build .browser/plots.html and make it this repo's "
                                    "plots.html_template (.dvc/config.local)")
    shot = sub.add_parser("screenshot", help="`dvc plots show` of this repo: check every chart, "
                                             "then write a PNG of the page")
    shot.add_argument("png", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "install":
            install()
        elif args.command == "template":
            template = build_template()
            dvc(ROOT, "config", "--local", "plots.html_template", str(template))
            print(f"{template}: `dvc plots show` now draws offline (plots.html_template, local)")
        else:
            with tempfile.TemporaryDirectory(prefix="coverpop-plots-") as tmp:
                page = render(ROOT, ["show"], Path(tmp) / "page", build_template(Path(tmp) / "t.html"))
                report = load(page)
                if problems := check(report, ROOT):
                    raise PageError("the page is wrong:\n  " + "\n  ".join(problems))
                screenshot(page, args.png, report)
            print(f"{args.png}: {len(report['charts'])} charts, all drawn "
                  f"({max(WIDTH, report['width'])}x{report['height']} px)")
    except PageError as e:
        sys.exit(f"plots_page: {e}")


if __name__ == "__main__":
    main()
