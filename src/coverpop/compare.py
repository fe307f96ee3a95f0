"""`coverpop compare`: experiments grouped by everything but the seed, mean ± sd per group, and
whether two groups differ by more than the seed noise.

One run per config cannot rank two models: on the demo, the same params on two machines gave
test Spearman 0.678 and 0.633. Run each config with a few seeds
(`dvc exp run --queue -S seed=0,1,2 -S model=a,b`), then this reads `dvc exp show --json`, puts
the runs that differ only in `seed` into one group, and for each pair of groups tests the
difference of their means with Welch's t-test over the seeds (unequal variances, the interval
from the Welch-Satterthwaite degrees of freedom). A difference whose 95 % interval excludes 0
exceeds the seed noise; one whose interval spans 0 does not, whatever its sign. Where both groups
ran the same seeds (so met the same splits), the paired interval over per-seed differences is
printed beside it: the split's share of the noise cancels there, at the price of fewer degrees
of freedom.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from itertools import combinations

from coverpop.core.errors import CoverpopError

SEED = "seed"


@dataclass
class Run:
    name: str
    params: dict[str, object]      # flattened: "train.lr" -> 0.002
    metrics: dict[str, float]      # flattened: "evaluate:model.spearman" -> 0.67


@dataclass
class Group:
    key: tuple                     # the params other than seed, as sorted (name, value) pairs
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs if metric in r.metrics]

    def by_seed(self, metric: str) -> dict:
        return {json.dumps(r.params.get(SEED)): r.metrics[metric] for r in self.runs
                if metric in r.metrics}


def flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _metric_file_label(path: str) -> str:
    """metrics/evaluate.json -> evaluate, metrics/train/metrics.json -> train/metrics."""
    label = path.removeprefix("metrics/")
    return label.rsplit(".", 1)[0] if label.endswith((".json", ".yaml", ".yml")) else label


def runs_from_exp_show(shown) -> list[Run]:
    """Every experiment (and committed baseline) in `dvc exp show --json` output that has
    metrics; the workspace row is skipped (it repeats a commit or an applied experiment)."""
    found: list[Run] = []

    def visit(node, name: str):
        if isinstance(node, list):
            for item in node:
                visit(item, name)
            return
        if not isinstance(node, dict):
            return
        name = node.get("name") or (node.get("rev") or name)
        data = node.get("data")
        if isinstance(data, dict) and "params" in data and node.get("rev") != "workspace":
            params, metrics = {}, {}
            for file, entry in (data.get("params") or {}).items():
                flat = flatten((entry or {}).get("data") or {})
                params.update(flat if file == "params.yaml" else
                              {f"{file}:{k}": v for k, v in flat.items()})
            for file, entry in (data.get("metrics") or {}).items():
                label = _metric_file_label(file)
                for k, v in flatten((entry or {}).get("data") or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        metrics[f"{label}:{k}"] = float(v)
            if metrics:
                found.append(Run(str(name), params, metrics))
        for key in ("experiments", "revs"):
            if key in node:
                visit(node[key], name)

    visit(shown, "")
    return found


def group_by_all_but_seed(runs: list[Run]) -> list[Group]:
    """Runs whose params are equal except `seed`, in one group each. Two runs with all params
    equal (a commit and the experiment it came from, say) are one run: counting both would
    understate the noise."""
    groups: dict[tuple, Group] = {}
    seen: set[tuple] = set()
    for run in runs:
        full = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in run.params.items()))
        if full in seen:
            continue
        seen.add(full)
        key = tuple(kv for kv in full if kv[0] != SEED)
        groups.setdefault(key, Group(key)).runs.append(run)
    return list(groups.values())


def labels(groups: list[Group]) -> list[str]:
    """Each group named by the params that differ between groups (e.g. model=resnet18)."""
    if len(groups) == 1:
        return ["all runs"]
    dicts = [dict(g.key) for g in groups]
    names = sorted({k for d in dicts for k in d})
    varying = [k for k in names if len({d.get(k) for d in dicts}) > 1]
    return [" ".join(f"{k}={json.loads(d[k]) if k in d else '-'}" for k in varying)
            for d in dicts]


def mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, sd


@dataclass
class Difference:
    metric: str
    diff: float          # mean(b) - mean(a)
    low: float
    high: float
    p: float
    n_a: int
    n_b: int

    @property
    def exceeds_noise(self) -> bool:
        return self.low > 0 or self.high < 0


def welch(a: list[float], b: list[float], metric: str = "", level: float = 0.95) -> Difference:
    """mean(b) - mean(a) with Welch's t-test and its `level` confidence interval."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise CoverpopError(f"{metric}: need at least 2 seeds per group to measure seed noise "
                            f"(have {len(a)} and {len(b)})")
    diff = sum(b) / len(b) - sum(a) / len(a)
    if max(a) == min(a) and max(b) == min(b):   # no spread at all: the difference is exact
        return Difference(metric, diff, diff, diff, 0.0 if diff else 1.0, len(a), len(b))
    res = stats.ttest_ind(b, a, equal_var=False)
    ci = res.confidence_interval(level)
    return Difference(metric, float(diff), float(ci.low), float(ci.high), float(res.pvalue),
                      len(a), len(b))


def paired(a: dict, b: dict, metric: str = "", level: float = 0.95) -> Difference | None:
    """mean(b - a) over the seeds both groups ran, with a t interval (None under 2 seeds).

    The seed fixes the selection and the split, so two configs run with the same seed meet the
    same test covers: pairing by seed takes that shared part of the noise out (Welch's unpaired
    interval cannot), with n - 1 degrees of freedom."""
    from scipy import stats

    seeds = sorted(set(a) & set(b), key=str)
    if len(seeds) < 2:
        return None
    d = [b[s] - a[s] for s in seeds]
    mean, sd = mean_sd(d)
    if sd == 0:
        return Difference(metric, mean, mean, mean, 0.0 if mean else 1.0, len(d), len(d))
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(level)
    return Difference(metric, mean, float(ci.low), float(ci.high), float(res.pvalue), len(d),
                      len(d))


def _fmt(x: float, like: float | None = None) -> str:
    """3 decimals below 10, else 2 (`like`: format as that number would be, e.g. an sd as its
    mean)."""
    if math.isnan(x):
        return "nan"
    ref = x if like is None else like
    return f"{x:.3f}" if abs(ref) < 10 else f"{x:.2f}"


def _comparable(metric: str, runs: list[Run]) -> bool:
    """Outcomes worth testing: not a single run's own CI bounds, and not constant everywhere."""
    if metric.endswith((".ci_low", ".ci_high")):
        return False
    return len({r.metrics[metric] for r in runs if metric in r.metrics}) > 1


def report(runs: list[Run], metrics: list[str] | None = None) -> tuple[str, dict]:
    """(text for the terminal, the same as a JSON-ready dict)."""
    if not runs:
        raise CoverpopError("no experiments with metrics in `dvc exp show` (run some first: "
                            "dvc exp run --queue -S seed=0,1,2 ...; dvc queue start)")
    groups = group_by_all_but_seed(runs)
    names = labels(groups)
    names, groups = map(list, zip(*sorted(zip(names, groups), key=lambda ng: ng[0])))
    all_metrics = sorted({m for r in runs for m in r.metrics})
    if metrics:
        chosen = [m for m in all_metrics if any(want in m for want in metrics)]
        if not chosen:
            raise CoverpopError(f"--metric {' '.join(metrics)} matches none of: "
                                f"{', '.join(all_metrics)}")
    else:
        chosen = all_metrics
    out = {"groups": [], "differences": []}
    width = max(len(m) for m in chosen)
    col = max(22, *(len(n) + 2 for n in names))
    n_runs = sum(len(g.runs) for g in groups)
    lines = [f"{n_runs} runs with metrics, {len(groups)} group(s) of runs that differ only in "
             f"`{SEED}`; mean ± sd over seeds (n = seeds)", "",
             f"{'':{width}}  " + "".join(f"{n:<{col}}" for n in names),
             f"{'':{width}}  " + "".join(f"{'n=' + str(len(g.runs)):<{col}}" for g in groups)]
    for m in chosen:
        cells = []
        for g in groups:
            vals = g.values(m)
            if not vals:
                cells.append("-")
                continue
            mean, sd = mean_sd(vals)
            cells.append(f"{_fmt(mean)} ± {_fmt(sd, mean)}" if len(vals) > 1 else
                         f"{_fmt(mean)} (n=1)")
        lines.append(f"{m:<{width}}  " + "".join(f"{c:<{col}}" for c in cells))
    for name, g in zip(names, groups):
        out["groups"].append({
            "label": name, "params": {k: json.loads(v) for k, v in g.key},
            "seeds": [r.params.get(SEED) for r in g.runs], "runs": [r.name for r in g.runs],
            "metrics": {m: dict(zip(("mean", "sd"), mean_sd(g.values(m))), n=len(g.values(m)))
                        for m in chosen if g.values(m)}})
    for (ia, a), (ib, b) in combinations(enumerate(groups), 2):
        lines += ["", f"{names[ib]}  minus  {names[ia]}  (95 % intervals over seeds: Welch, "
                      "and paired by seed where both ran the same seeds):"]
        small = [(names[k], len(g.runs)) for k, g in ((ia, a), (ib, b)) if len(g.runs) < 2]
        if small:
            lines.append("  needs at least 2 seeds per group to measure the seed noise ("
                         + ", ".join(f"{n} has {k}" for n, k in small) + ")")
            continue
        for m in (m for m in chosen if _comparable(m, a.runs + b.runs)):
            va, vb = a.values(m), b.values(m)
            if len(va) < 2 or len(vb) < 2:
                lines.append(f"  {m:<{width}}  needs at least 2 seeds per group "
                             f"(have {len(vb)} and {len(va)})")
                continue
            d = welch(va, vb, m)
            pd = paired(a.by_seed(m), b.by_seed(m), m)
            verdict = "exceeds the seed noise" if d.exceeds_noise else "within the seed noise"
            line = (f"  {m:<{width}}  {d.diff:+.3f}  [{d.low:+.3f}, {d.high:+.3f}]  "
                    f"p={d.p:.2g}  {verdict}")
            if pd is not None:
                line += (f"  | paired (n={pd.n_a}): [{pd.low:+.3f}, {pd.high:+.3f}]"
                         f"{'  exceeds' if pd.exceeds_noise else '  within'}")
            lines.append(line)
            row = {"a": names[ia], "b": names[ib], "metric": m, "diff": d.diff,
                   "ci_low": d.low, "ci_high": d.high, "p": d.p, "n_a": d.n_a, "n_b": d.n_b,
                   "exceeds_seed_noise": d.exceeds_noise}
            if pd is not None:
                row["paired"] = {"diff": pd.diff, "ci_low": pd.low, "ci_high": pd.high,
                                 "p": pd.p, "n": pd.n_a, "exceeds_seed_noise": pd.exceeds_noise}
            out["differences"].append(row)
    return "\n".join(lines), out


def exp_show_json(extra_args: list[str] | None = None) -> list:
    """`dvc exp show --json` of the repo in the current folder, through this interpreter's DVC
    (so it works whether or not the virtualenv is active)."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(extra_args or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CoverpopError(f"`dvc exp show --json` failed: {first}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CoverpopError("`dvc exp show --json` did not print JSON") from None
