"""Recipes for real covers, on the weak demo (not a test: the table goes to the docs).

The weak demo (`data.demo.effects: weak`, ~2,000 covers) plants cover effects as weak as real
ones. For each seed (`seed` and `data.demo.seed` together) it builds one workspace through the
real stage scripts (fetch_csv … dedupe_split), then runs each recipe through stages/train.py and
stages/evaluate.py, and reports:
- covers-only Spearman on the test split (`model.spearman`) and out of fold over every kept cover
  (`oof.covers_only.spearman`), each with its 95 % CI half-width, mean ± sd over seeds;
- how well the predictions rank the planted cover truth, on the test split and out of fold;
- the out-of-fold steps: genre + year → + the analyze stage's cover traits → + the backbone's
  features, each gain with its paired CI (`cover_added_value` = both steps);
- time of train + evaluate: wall seconds and CPU seconds (all child processes). On a shared
  machine wall time is inflated by other load; CPU time is what the work itself costs.
Recipes: the defaults, the frozen SGD head (before: at lr 0.002; now: at train.frozen_lr), the
ridge probe, and the recommended line read from the README.

    PYTHONPATH=src python bench/bench_real_covers.py --seeds 0 1 2 --work /tmp/bench-real-covers
    PYTHONPATH=src python bench/bench_real_covers.py --full   # + the recommended line end to end
    PYTHONPATH=src python bench/bench_real_covers.py --smoke  # seconds, tiny data: still runs?

`--full` also times the recommended line as a user runs it: seed 0's covers exported as a
`local` source (CSV + image folder), a fresh clone, `dvc exp run <line> -S data.source=local …`.
Runs resume: finished workspaces and recipe runs are kept under --work. Embeddings and decoded
covers are cached in COVERPOP_CACHE (default: --work/cache): the first recipe on a backbone pays
for its embeddings, later ones on the same backbone reuse them (their time says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import spearmanr

from coverpop.covers.store import CoverStore

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "README.md"
WEAK_DEMO = ["data.demo.effects=weak", "data.demo.n_albums=2500", "select.n=4000"]
# --smoke: a tiny weak demo and one tiny recipe, in a temporary --work (or the --work given:
# kept, so bench_oof_features.py and bench_probe_variants.py --smoke reuse its workspace)
SMOKE_DEMO = ["data.demo.effects=weak", "data.demo.n_albums=32", "select.n=64", "scrape.size=32",
              "scrape.workers=2", "analyze.bootstrap=20"]
SMOKE_RECIPES = {"smoke: resnet10t, 32 px, 1 epoch": [
    "model=resnet10t", "image_size=32", "train.epochs=1", "train.batch_size=16",
    "evaluate.bootstrap=20", "evaluate.gallery=2", "evaluate.cv_folds=2"]}
WORK = Path("/tmp/bench-real-covers")
FROZEN = ["model=tf_efficientnet_lite0", "pretrained=package", "image_size=224",
          "normalization=model", "train.freeze_backbone=true", "train.augment=false"]
DATA_STAGES = [
    ["inputs.py", "data/inputs/tracks.json", "data/inputs/images.csv"],
    ["fetch_csv.py", "data/inputs/tracks.json", "data/raw/tracks.csv"],
    ["select_tracks.py", "data/raw/tracks.csv", "data/selected.csv"],
    ["scrape_images.py", "data/selected.csv", "data/inputs/images.csv", "data/covers",
     "data/manifest.csv", "data/shards"],
    ["dedupe_split.py", "data/selected.csv", "data/manifest.csv", "data/split.csv",
     "data/dedupe_removed.csv", "metrics/dedupe.csv"],
    ["analyze.py", "data/split.csv", "data/shards", "data/features.csv", "metrics/analysis"],
]


def recommended_line() -> str:
    for line in NOTES.read_text().splitlines():
        if line.startswith("dvc exp run") and line.rstrip().endswith("# recommended for real covers"):
            return line.strip()
    raise SystemExit(f"{NOTES}: no line starting `dvc exp run` and ending "
                     f"`# recommended for real covers`")


def overrides(line: str) -> list[str]:
    """`dvc exp run -S a=1 -S b=2  # comment` → ["a=1", "b=2"] (only -S is allowed)."""
    words = shlex.split(line.split("#")[0])[3:]
    if len(words) % 2 or any(w != "-S" for w in words[::2]):
        raise SystemExit(f"the recommended line may hold only -S overrides: {line}")
    return words[1::2]


# In this order: the probe computes the lite0 embeddings; the SGD heads after it reuse them.
RECIPES = {
    "defaults (resnet18 from scratch, 64 px)": [],
    "frozen lite0, ridge probe": FROZEN + ["train.head=ridge"],
    "frozen lite0, SGD head at lr 0.002 (before; cached embeddings)": FROZEN + [
        "train.epochs=30", "train.frozen_lr=0.002"],
    "frozen lite0, SGD head at frozen_lr (now; cached embeddings)": FROZEN + ["train.epochs=30"],
}


def apply(params: dict, sets: list[str]) -> dict:
    """Apply `key.sub=value` overrides the way `dvc exp run -S` parses them (YAML values)."""
    for item in sets:
        key, _, value = item.partition("=")
        node = params
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        if leaf not in node:
            raise SystemExit(f"-S {item}: {key} is not in params.yaml")
        node[leaf] = yaml.safe_load(value)
    return params


def env(cache: Path) -> dict:
    bin_dir = Path(sys.executable).parent   # `python` in dvc.yaml's commands is this one
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COVERPOP_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def cover_truth(ws: Path) -> pd.DataFrame:
    """The test covers with `truth`: the planted cover effect (the demo_* columns weighted as the
    demo plants them), the part of popularity a perfect cover model could know."""
    from coverpop.tracks.demo import EFFECTS

    rows = pd.read_csv(ws / "data" / "split.csv", dtype={"track_id": str})
    test = rows[rows["split"] == "test"]
    e = EFFECTS[yaml.safe_load((ws / "params.yaml").read_text())["data"]["demo"]["effects"]]
    truth = (e.face * test["demo_face"] + e.saturation * test["demo_saturation"]
             + e.text * test["demo_text"])
    return test.assign(truth=truth)[["track_id", "popularity", "truth"]]


def ceiling(ws: Path) -> float:
    """Test Spearman of the planted cover truth with popularity: no cover model can beat it."""
    test = cover_truth(ws)
    return float(spearmanr(test["truth"], test["popularity"]).statistic)


def truth_recovered(ws: Path, run: Path) -> float:
    """Spearman of the model's test predictions with the planted cover truth: how much of the
    cover signal it found, without the popularity noise that makes test Spearman jump by seed."""
    pred = pd.read_csv(run / "eval" / "predictions.csv", dtype={"track_id": str})
    both = cover_truth(ws).merge(pred, on="track_id")
    return float(spearmanr(both["truth"], both["predicted"]).statistic)


def oof_truth(ws: Path, run: Path) -> float | None:
    """Spearman of the out-of-fold covers-only predictions (every kept cover) with the planted
    cover truth; None when the run has none (a fine-tuned backbone)."""
    from coverpop.tracks.demo import EFFECTS

    path = run / "eval" / "oof_predictions.csv"
    if not path.is_file():
        return None
    pred = pd.read_csv(path, dtype={"track_id": str})
    if "covers_only" not in pred:
        return None
    rows = pd.read_csv(ws / "data" / "split.csv", dtype={"track_id": str})
    e = EFFECTS[yaml.safe_load((ws / "params.yaml").read_text())["data"]["demo"]["effects"]]
    rows = rows.assign(truth=e.face * rows["demo_face"] + e.saturation * rows["demo_saturation"]
                       + e.text * rows["demo_text"])
    both = rows.merge(pred, on="track_id")
    return float(spearmanr(both["truth"], both["covers_only"]).statistic)


def timed(cmd: list[str], cwd: Path, cache: Path, log: Path) -> tuple[float, float]:
    """Run a command; (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log.open("a") as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env(cache), stdout=f, stderr=subprocess.STDOUT,
                              check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed in {cwd}; see {log}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def workspace(work: Path, seed: int, cache: Path, demo: list[str] = WEAK_DEMO,
              analyze: bool = True) -> Path:
    """A weak-demo workspace up to data/split.csv and data/features.csv (analyze; `analyze=False`:
    up to the split), through the real stage scripts; each stage's CPU seconds in data.json."""
    from coverpop.core.params import defaults

    ws = work / f"seed{seed}"
    ws.mkdir(parents=True, exist_ok=True)
    # written anew each time: a kept workspace follows the schema as it gains keys (its defaults,
    # never the workspace's params.yaml, which an experiment may have changed)
    params = apply(defaults(), demo + [f"seed={seed}", f"data.demo.seed={seed}"])
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = ws / "data.json"
    spent = json.loads(log.read_text()) if log.is_file() else {}
    for script, *args in DATA_STAGES if analyze else DATA_STAGES[:-1]:
        if (ws / (args[2] if script == "analyze.py" else args[-1])).exists():
            continue   # done: its last output (analyze: its features) is there
        _, cpu = timed([sys.executable, str(ROOT / "stages" / script), *args], ws, cache,
                       ws / "data.log")
        spent[script] = round(cpu, 1)
        log.write_text(json.dumps(spent, indent=1))
    return ws


def run_recipe(ws: Path, name: str, sets: list[str], cache: Path) -> dict:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    run = ws / "runs" / slug
    done = run / "run.json"
    if done.is_file() and json.loads(done.read_text())["sets"] == sets:
        return {**json.loads(done.read_text()), "truth": truth_recovered(ws, run),
                "oof_truth": oof_truth(ws, run)}
    run.mkdir(parents=True, exist_ok=True)
    params = apply(yaml.safe_load((ws / "params.yaml").read_text()), sets)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (run / "data").exists():
        (run / "data").symlink_to(ws / "data")  # the split and the cover store
    log = run / "log.txt"
    stages = ROOT / "stages"
    t_wall, t_cpu = timed([sys.executable, str(stages / "train.py"), "data/split.csv",
                           "data/shards", "model.pt", "train/live", "train/metrics.json"], run, cache, log)
    e_wall, e_cpu = timed([sys.executable, str(stages / "evaluate.py"), "data/split.csv",
                           "data/shards", "model.pt", "evaluate.json", "eval", "data/features.csv"],
                          run, cache, log)
    report = json.loads((run / "eval" / "report.json").read_text())
    detail = json.loads((run / "eval" / "metadata.json").read_text())
    oof = report.get("oof")
    out = {"recipe": name, "seed": params["seed"], "sets": sets,
           "spearman": report["model"]["spearman"], "mae": report["model"]["mae"],
           # the mean baseline's Spearman is 0: its gain's CI is the model's own
           "spearman_ci": report["gain_vs_mean"]["spearman"],
           "metadata_only": report["metadata_only"]["spearman"],
           "with_metadata": report["model_with_metadata"]["spearman"],
           "added_spearman": report["cover_added_value"]["spearman"],
           "added_mae": detail["cover_added_value"]["mae"],
           "oof": oof,
           "wall_s": round(t_wall + e_wall, 1), "cpu_s": round(t_cpu + e_cpu, 1),
           "train_wall_s": round(t_wall, 1), "evaluate_wall_s": round(e_wall, 1)}
    done.write_text(json.dumps(out, indent=2) + "\n")
    return {**out, "truth": truth_recovered(ws, run), "oof_truth": oof_truth(ws, run)}


def full_line(work: Path, seed_ws: Path, sets: list[str]) -> dict:
    """The recommended line as a user runs it on their own ~2,000 covers (seed 0's, exported
    as a `local` source): a fresh clone, then `dvc exp run` with the line's -S and the source."""
    mine = work / "my-covers"
    rows = pd.read_csv(seed_ws / "data" / "split.csv", dtype={"track_id": str, "cover_id": str})
    if not (mine / "covers.csv").is_file():
        (mine / "images").mkdir(parents=True, exist_ok=True)
        store = CoverStore(seed_ws / "data" / "shards")
        for c in rows["cover_id"]:
            (mine / "images" / f"{c}.jpg").write_bytes(store.read(c))
        rows.assign(image=[f"{c}.jpg" for c in rows["cover_id"]])[
            ["track_id", "popularity", "image", "genre", "year"]].to_csv(mine / "covers.csv",
                                                                        index=False)
    repo = work / "clone"
    shutil.rmtree(repo, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file() and not name.startswith(("data/", "models/", "metrics/")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / "dvc.lock").unlink(missing_ok=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@coverpop"]
    for cmd in (["git", "init", "-q", "-b", "main"], [*git, "add", "-A"],
                [*git, "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    source = ["data.source=local", f"data.local.csv={mine / 'covers.csv'}",
              f"data.local.images={mine / 'images'}"]
    cmd = [str(Path(sys.executable).parent / "dvc"), "exp", "run"]
    for s in sets + source:
        cmd += ["-S", s]
    cold = work / "cache-full-line"  # nothing cached: what a user's first run costs
    shutil.rmtree(cold, ignore_errors=True)
    wall, cpu = timed(cmd, repo, cold, work / "full_line.log")
    report = json.loads((repo / "metrics" / "evaluate.json").read_text())
    return {"covers": len(rows), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "spearman": report["model"]["spearman"],
            "oof": report.get("oof", {})}


def _ms(v) -> str:
    v = np.asarray(v, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def _half(ci: dict) -> float:
    return (ci["ci_high"] - ci["ci_low"]) / 2


def table(results: list[dict], seeds: list[int], recommended: list[str]) -> str:
    lines = [("| recipe | covers only, test split: Spearman / 95 % CI half-width | covers only, "
              "out of fold: Spearman / 95 % CI half-width | ranks the planted cover truth: test "
              "split / out of fold | out of fold, genre + year → + traits → + backbone "
              "(Spearman; gains with CIs above 0) | train + evaluate: CPU s (wall s) |"),
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["recipe"] for r in results):
        rs = [r for r in results if r["recipe"] == name]
        label = f"**{name}: the recommended line**" if rs[0]["sets"] == recommended else name
        test = f"{_ms([r['spearman'] for r in rs])} / {np.mean([_half(r['spearman_ci']) for r in rs]):.3f}"
        oofs = [r.get("oof") for r in rs]
        if all(o and "covers_only" in o["models"] for o in oofs):
            c = [o["models"]["covers_only"]["spearman"] for o in oofs]
            oof = f"{_ms([x['value'] for x in c])} / {np.mean([_half(x) for x in c]):.3f}"
            truth = f"{_ms([r['truth'] for r in rs])} / {_ms([r['oof_truth'] for r in rs])}"
        else:
            oof, truth = "(fine-tuned: test split only)", f"{_ms([r['truth'] for r in rs])} / –"
        steps = "–"
        if all(o and "metadata_only" in o["models"] for o in oofs):
            parts = [f"{np.mean([o['models']['metadata_only']['spearman']['value'] for o in oofs]):.3f}"]
            for g in ("interpretable_gain", "learned_gain", "cover_added_value"):
                if all(g in o["gains"] for o in oofs):
                    vals = [o["gains"][g]["spearman"] for o in oofs]
                    above = sum(v["ci_low"] > 0 for v in vals)
                    parts.append(f"{g.replace('_gain', '').replace('_', ' ')} "
                                 f"{np.mean([v['value'] for v in vals]):+.3f} ({above}/{len(vals)})")
            steps = "; ".join(parts)
        lines.append(f"| {label} | {test} | {oof} | {truth} | {steps} | "
                     f"{np.mean([r['cpu_s'] for r in rs]):.0f} "
                     f"({np.mean([r['wall_s'] for r in rs]):.0f}) |")
    return "\n".join(lines) + f"\n\nSeeds {', '.join(map(str, seeds))} (`seed` = `data.demo.seed`)."


def ceiling_row(values: list[float]) -> str:
    v = np.array(values)
    return (f"| the planted cover truth (no model: the ceiling) | {_ms(v)} / – | | 1 | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, help=f"default {WORK}; with --smoke: a temporary one "
                    "(or this one, kept: the other benches' smokes reuse its tiny workspace)")
    ap.add_argument("--only", nargs="*", help="run only recipes whose name contains one of these")
    ap.add_argument("--full", action="store_true", help="also time the recommended line end to end")
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if not args.smoke:
        args.work = args.work or WORK
        return measure(args, WEAK_DEMO, RECIPES)
    args.seeds, args.full = [0], False
    with smoke_work(args.work) as args.work:
        results = measure(args, SMOKE_DEMO, SMOKE_RECIPES)
    bad = [r["recipe"] for r in results if not -1 <= r["spearman"] <= 1 or r["mae"] <= 0]
    if bad:
        raise SystemExit(f"smoke: no sensible test Spearman / MAE from {bad}")


@contextlib.contextmanager
def smoke_work(work: Path | None):
    """--smoke's folder: the --work given (kept: the other benches' smokes reuse its tiny
    workspace), else a temporary one; its cache with it."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="coverpop-bench-rc-")))
        os.environ["COVERPOP_CACHE"] = str(work / "cache")
        yield work


def measure(args, demo: list[str], base_recipes: dict) -> list[dict]:
    cache = Path(os.environ.get("COVERPOP_CACHE") or args.work / "cache")
    line = recommended_line()
    recommended = overrides(line)
    recipes = dict(base_recipes)
    if base_recipes is RECIPES and recommended not in recipes.values():  # else the table marks the recipe it equals
        recipes["recommended line"] = recommended
    if args.only:
        recipes = {k: v for k, v in recipes.items() if any(o in k for o in args.only)}
    results, ceilings = [], []
    for seed in args.seeds:
        ws = workspace(args.work, seed, cache, demo)
        ceilings.append(ceiling(ws))
        for name, sets in recipes.items():
            r = run_recipe(ws, name, sets, cache)
            results.append(r)
            o = (r.get("oof") or {}).get("models", {}).get("covers_only", {}).get("spearman")
            print(f"seed {seed}, {name}: test Spearman {r['spearman']:.3f}"
                  + (f", out of fold {o['value']:.3f} ({o['ci_low']:.3f}..{o['ci_high']:.3f})"
                     if o else "")
                  + f", {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU", flush=True)
    results.sort(key=lambda r: list(recipes).index(r["recipe"]))
    print("\n" + table(results, args.seeds, recommended).replace(
        "\n\nSeeds", "\n" + ceiling_row(ceilings) + "\n\nSeeds", 1))
    print(f"\nrecommended line: {line}")
    if args.full:
        f = full_line(args.work, workspace(args.work, args.seeds[0], cache), overrides(line))
        print(f"\nthe recommended line end to end on {f['covers']} covers (local source, fresh "
              f"clone, `dvc exp run`): {f['wall_s']:.0f} s wall, {f['cpu_s']:.0f} s CPU; "
              f"test Spearman {f['spearman']:.3f}; out of fold {json.dumps(f['oof'])}")
    return results


if __name__ == "__main__":
    main()
