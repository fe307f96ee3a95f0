"""params.yaml: one schema, checked once per stage with one-line errors; one home per default;
generated docs; the source and resolver registries."""

import ast
import copy
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, env, make_repo_copy, run, write_params
from scrape_params import scrape_params

from coverpop.core import params as P
from coverpop.core import schema
from coverpop.core.errors import CoverpopError
from coverpop.covers import resolvers
from coverpop.covers.settings import ScrapeSettings
from coverpop.tracks import sources

PARAMS = P.defaults()  # the schema's; never the workspace's params.yaml (dvc exp run rewrites it)


def committed_params_yaml() -> str:
    """params.yaml as git holds it (staged, else committed): what `dvc exp run -S` leaves alone."""
    for ref in (":params.yaml", "HEAD:params.yaml"):
        proc = subprocess.run(["git", "show", ref], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout
    pytest.skip("not a git checkout: no committed params.yaml to compare")


def leaves(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} for every leaf of a params tree."""
    out = {}
    for k, v in tree.items():
        out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def with_value(dotted: str, value) -> dict:
    tree = copy.deepcopy(PARAMS)
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = value
    return tree


def wrong_type(value):
    """A value of the wrong type for a key whose params.yaml value is `value`."""
    if isinstance(value, bool):
        return 3.5
    if isinstance(value, int | float):
        return "many"
    if isinstance(value, list):
        return "pop"
    return 12345


def load_error(tmp_path, tree) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(CoverpopError) as err:
        P.load_params(path)
    return str(err.value).removeprefix(f"{path}: ")


# --- item 1: one schema, validated once, one line ---------------------------------------------

def test_schema_has_exactly_the_keys_of_params_yaml():
    assert P.keys() == list(leaves(PARAMS))
    P.validate(PARAMS)  # the defaults are valid


def test_committed_params_yaml_holds_exactly_the_schema_defaults():
    committed = yaml.safe_load(committed_params_yaml())
    assert list(leaves(committed)) == P.keys(), "params.yaml and core/schema.py differ in keys"
    differ = {k: (v, leaves(PARAMS)[k]) for k, v in leaves(committed).items()
              if v != leaves(PARAMS)[k] or type(v) is not type(leaves(PARAMS)[k])}
    assert differ == {}, "params.yaml value vs core/schema.py default"


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_defaults_never_read_the_workspace(tmp_path):
    """What an experiment leaves in a params.yaml (here, the one in the working directory of a
    fresh interpreter) changes no default a config built by hand gets."""
    experiment = {"model": "tf_efficientnet_lite0", "pretrained": "package",
                  "train": {"head": "ridge", "freeze_backbone": True}}
    write_params(tmp_path, experiment)
    code = ("import json; from coverpop.train.loop import TrainConfig; c = TrainConfig(); "
            "print(json.dumps([c.model, c.pretrained, c.head, c.freeze_backbone]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(), text=True,
                          capture_output=True, check=True)
    got = yaml.safe_load(proc.stdout)
    assert got == [P.default("model"), P.default("pretrained"), P.default("train.head"),
                   P.default("train.freeze_backbone")]
    assert got != [experiment["model"], "package", "ridge", True]


def test_defaults_are_fresh_copies():
    P.defaults()["scrape"]["allowed_hosts"].append("evil.example")  # callers may edit theirs
    P.default("scrape.allowed_hosts").append("evil.example")
    assert "evil.example" not in P.default("scrape.allowed_hosts")
    assert "evil.example" not in P.defaults()["scrape"]["allowed_hosts"]
    with pytest.raises(KeyError, match="train.epoch is not a params key"):
        P.default("train.epoch")


@pytest.mark.parametrize("key", list(leaves(PARAMS)))
def test_every_key_with_a_wrong_type_is_one_line_naming_key_and_value(key, tmp_path):
    bad = wrong_type(leaves(PARAMS)[key])
    line = load_error(tmp_path, with_value(key, bad))
    assert "\n" not in line
    assert line.startswith(f"{key}={bad!r} ")
    assert line.endswith(P._allowed(P._field(key)).removeprefix("one of "))  # what is allowed


@pytest.mark.parametrize("key, value, line", [
    ("select.n", "all", "select.n='all' must be a positive integer"),
    ("scrape.timeout", 0, "scrape.timeout=0 must be a number > 0"),
    ("scrape.size", 0, "scrape.size=0 must be a positive integer"),
    ("scrape.min_success", "half", "scrape.min_success='half' must be a number from 0 to 1"),
    ("scrape.workers", "many", "scrape.workers='many' must be a positive integer"),
    ("scrape.retries", "three", "scrape.retries='three' must be 0 or a positive integer"),
    ("scrape.rate_limit", "fast", "scrape.rate_limit='fast' must be a number >= 0"),
    ("select.strategy", "best", "select.strategy='best' is not one of random, stratified, balanced"),
    ("select.years", [2023, 2015], "select.years=[2023, 2015] must be [] (all) or [first, last]"),
    ("data.source", "spotify", "data.source='spotify' is not one of demo, local, csv, kaggle"),
    ("scrape.resolver", "api", "scrape.resolver='api' is not one of auto, demo, local, "
                               "spotify_api, oembed, url"),
    ("dedupe.representative", "best", "dedupe.representative='best' is not one of max, median, "
                                      "first, random"),
    ("dedupe.phash_threshold", 65, "dedupe.phash_threshold=65 must be an integer from 0 to 64"),
    ("split.group_by", "label", "split.group_by='label' is not one of album, artist"),
    ("split.val", 1.5, "split.val=1.5 must be a number > 0 and < 1"),
    ("normalization", "zscore", "normalization='zscore' is not one of imagenet, model, dataset, none"),
    ("train.output", "tanh", "train.output='tanh' is not one of sigmoid, linear"),
    ("train.amp", "yes", "train.amp='yes' must be auto, true or false"),
    ("train.deterministic", "yes", "train.deterministic='yes' must be auto, true or false"),
    ("train.device", "gpu0", "train.device='gpu0' must be auto, cpu, cuda, cuda:N or mps"),
    ("analyze.splits", ["train", "holdout"], "analyze.splits=['train', 'holdout'] must be a list "
                                             "of train, val, test"),
    ("data.csv.sha256", "abc", "data.csv.sha256='abc' must be empty or 64 hex digits"),
    ("scrape.api_url", "api.spotify.com", "scrape.api_url='api.spotify.com' must be an http(s) URL"),
])
def test_bad_values_say_key_value_and_what_is_allowed(key, value, line, tmp_path):
    assert load_error(tmp_path, with_value(key, value)) == line


def test_checks_across_keys_of_a_section(tmp_path):
    tree = with_value("split.val", 0.6)
    tree["split"]["test"] = 0.5
    assert load_error(tmp_path, tree) == \
        "split: val=0.6 and test=0.5 must leave room for train (val + test < 1)"
    assert "bottom_quantile=0.9 must be below top_quantile=0.8" in \
        load_error(tmp_path, with_value("analyze.bottom_quantile", 0.9))
    assert load_error(tmp_path, with_value("evaluate.cv_folds", 1)) == \
        "evaluate.cv_folds=1 must be an integer >= 2"


@pytest.mark.parametrize("key, line", [
    ("train.epoch", "train.epoch is not a train param (known: epochs, batch_size, "),
    ("scrape.timout", "scrape.timout is not a scrape param (known: resolver, size, "),
    ("data.demo.n_album", "data.demo.n_album is not a data.demo param (known: n_albums, seed, effects)"),
    ("modle", "modle is not a known param (known: model, pretrained, "),
])
def test_unknown_keys_are_typos(key, line, tmp_path):
    assert load_error(tmp_path, with_value(key, 1)).startswith(line)


def test_missing_keys_and_sections(tmp_path):
    tree = copy.deepcopy(PARAMS)
    del tree["train"]["lr"]
    assert load_error(tmp_path, tree) == "train.lr is missing (a number > 0)"
    tree["evaluate"] = None
    assert load_error(tmp_path, tree) == "train.lr is missing (a number > 0) (and 1 more)"
    del tree["train"]
    assert load_error(tmp_path, tree) == "train is missing (a section) (and 1 more)"
    assert load_error(tmp_path, with_value("evaluate", None)) == \
        "evaluate=None must be a mapping of evaluate params"


def test_loaded_params_keep_their_shape_and_refuse_keys_the_file_lacks(tmp_path):
    loaded = P.load_params(write_params(tmp_path, {}))
    assert loaded == PARAMS and isinstance(loaded["scrape"], dict)
    with pytest.raises(CoverpopError, match="params.yaml has no scrape.timout, but the code reads"):
        loaded["scrape"].get("timout", 10)  # no default of the code's own can slip in
    with pytest.raises(CoverpopError, match="no train.epoch,"):
        loaded["train"]["epoch"]


@pytest.mark.slow
def test_a_stage_with_a_bad_param_prints_one_line(tmp_path):
    write_params(tmp_path, {"select": {"n": "all"}})
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "select_tracks.py"),
                           "tracks.csv", "selected.csv"], cwd=tmp_path, env=env(), text=True,
                          capture_output=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: params.yaml: select.n='all' must be a positive integer"]


@pytest.mark.slow
def test_dvc_exp_run_set_param_is_checked_too(tmp_path):
    repo = make_repo_copy(tmp_path / "repo")
    proc = run(["dvc", "exp", "run", "-S", "scrape.retries=three"], repo, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "error: params.yaml: scrape.retries='three' must be 0 or a positive integer" in out
    assert "Traceback" not in out


# --- item 2: one home per setting -------------------------------------------------------------

def test_train_config_defaults_are_the_schemas():
    from coverpop.train.loop import TrainConfig

    cfg = TrainConfig()
    flat = leaves(PARAMS)
    names = TrainConfig.param_names()
    assert {n if n in TrainConfig.TOP_LEVEL else f"train.{n}" for n in names} == \
        set(TrainConfig.TOP_LEVEL) | {k for k in flat if k.startswith("train.")}
    for name in names:
        key = name if name in TrainConfig.TOP_LEVEL else f"train.{name}"
        assert getattr(cfg, name) == flat[key], key


def test_train_config_built_by_hand_is_checked_by_the_schema():
    from coverpop.train.loop import TrainConfig

    with pytest.raises(CoverpopError, match=r"^params.yaml: train.warmup_epochs=-1 must be a number >= 0$"):
        TrainConfig(warmup_epochs=-1).validated()


class ParamReads(ast.NodeVisitor):
    """Which params keys the code reads, by following params dicts through the source.

    A params dict is: what load_params() returns, a function argument named by the house
    convention (params, data_params, scrape_params, scrape), the section a @source("x") function
    gets (data.x), an argument passed in at a call site, and any name assigned from one of them.
    A read is `d["key"]`, `d.get("key")` or `http.setting(d, "key", ...)` on a params dict."""

    CONVENTION = {"params": "", "data_params": "data", "scrape_params": "scrape", "scrape": "scrape"}

    def __init__(self, trees: list[ast.Module]):
        self.functions = [f for t in trees for f in ast.walk(t)
                          if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        self.by_name: dict[str, list] = {}      # name -> functions of that name, in file order
        for f in self.functions:
            self.by_name.setdefault(f.name, []).append(f)
        self.owner = {id(f): c.name for t in trees for c in ast.walk(t)
                      if isinstance(c, ast.ClassDef) for f in c.body}
        self.bound = {id(f): self._seed(f) for f in self.functions}
        self.reads: set[str] = set()

    def _seed(self, fn) -> dict:
        bound = {a.arg: {self.CONVENTION[a.arg]} for a in fn.args.args + fn.args.kwonlyargs
                 if a.arg in self.CONVENTION}
        for deco in fn.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "source":
                bound[fn.args.args[0].arg] = {f"data.{deco.args[0].value}"}
        return bound

    def run(self) -> set[str]:
        before = None
        while before != (len(self.reads), sum(len(v) for b in self.bound.values() for v in b.values())):
            before = (len(self.reads), sum(len(v) for b in self.bound.values() for v in b.values()))
            for fn in self.functions:
                self.env = {k: set(v) for k, v in self.bound[id(fn)].items()}
                for stmt in fn.body:
                    self.visit(stmt)
        return self.reads

    def paths(self, node) -> set[str]:
        """The params paths an expression evaluates to (empty: not a params dict)."""
        if isinstance(node, ast.Name):
            return self.env.get(node.id, set())
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load_params":
            return {""}
        if isinstance(node, ast.BoolOp):  # `d.get("x") or {}`
            return set().union(*(self.paths(v) for v in node.values))
        key, base = self._read(node)
        if key is not None and base:
            found = {f"{b}.{key}".lstrip(".") for b in base}
            self.reads |= found
            return found
        return set()

    def _read(self, node):
        def text(n):
            return n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else None

        if isinstance(node, ast.Subscript) and text(node.slice):
            return text(node.slice), self.paths(node.value)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and node.args and text(node.args[0])):
            return text(node.args[0]), self.paths(node.func.value)
        if (isinstance(node, ast.Call) and _name(node.func) == "setting" and len(node.args) > 1
                and text(node.args[1])):
            return text(node.args[1]), self.paths(node.args[0])
        return None, set()

    def visit_Assign(self, node):
        targets, values = node.targets[0], node.value
        if isinstance(targets, ast.Tuple) and isinstance(values, ast.Tuple):
            pairs = zip(targets.elts, values.elts, strict=False)
        else:
            pairs = [(targets, values)]
        for target, value in pairs:
            found = self.paths(value)
            if isinstance(target, ast.Name) and found:
                self.env.setdefault(target.id, set()).update(found)
        self.generic_visit(node)

    def visit_Call(self, node):
        self.paths(node)
        called = self.by_name.get(_name(node.func), [])
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            # Class.method(...): that class's method when there is one by that name
            own = [f for f in called if self.owner.get(id(f)) == node.func.value.id]
            called = own or called
        for fn in called:
            params = [a.arg for a in fn.args.args if a.arg not in ("self", "cls")]
            args = list(zip(params, node.args, strict=False))
            args += [(k.arg, k.value) for k in node.keywords if k.arg]
            for param, arg in args:
                found = self.paths(arg)
                if found:
                    self.bound[id(fn)].setdefault(param, set()).update(found)
        self.generic_visit(node)

    def generic_visit(self, node):
        if isinstance(node, ast.Subscript):
            self.paths(node)
        super().generic_visit(node)


def _name(func) -> str | None:
    return getattr(func, "attr", getattr(func, "id", None))


def params_read_by_the_code() -> set[str]:
    from coverpop.train.loop import TrainConfig

    files = sorted((ROOT / "stages").glob("*.py")) + sorted((ROOT / "src" / "coverpop").rglob("*.py"))
    skip = {ROOT / "src/coverpop/core/params.py", ROOT / "src/coverpop/core/schema.py"}
    trees = [ast.parse(f.read_text()) for f in files if f not in skip]
    reads = ParamReads(trees).run()
    # TrainConfig.from_params reads the top-level keys and train.<field> by field name; a field
    # counts as read when the code uses it as an attribute (cfg.lr)
    used = {n.attr for t in trees for n in ast.walk(t) if isinstance(n, ast.Attribute)}
    reads |= {n if n in TrainConfig.TOP_LEVEL else f"train.{n}"
              for n in TrainConfig.param_names() if n in used}
    return reads


@pytest.mark.slow
def test_every_param_is_read_by_some_stage_and_every_read_param_exists():
    reads = params_read_by_the_code()
    keys = set(leaves(PARAMS))
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    sections |= {s.rsplit(".", 1)[0] for s in sections if "." in s}
    assert sorted(keys - reads) == [], "in params.yaml but read by no stage"
    assert sorted(reads - keys - sections) == [], "read by the code but not in params.yaml"


def test_the_read_check_can_fail(tmp_path, monkeypatch):
    """The analysis sees a typo'd read and an unread key (so the test above can fail)."""
    code = ast.parse("def main():\n    p = load_params()['scrape']\n    p.get('timout', 10)\n"
                     "    http.setting(p, 'api_url', 'ENV', '')\n")
    assert ParamReads([code]).run() == {"scrape", "scrape.timout", "scrape.api_url"}


# --- item 3: generated docs -------------------------------------------------------------------

def test_docs_params_md_is_generated_from_the_schema_and_up_to_date(capsys):
    P.main(["--markdown"])        # `python -m coverpop.core.params --markdown`, in-process
    out = capsys.readouterr().out
    assert out == (ROOT / "docs" / "params.md").read_text(), \
        "docs/params.md is stale: python -m coverpop.core.params --markdown > docs/params.md"
    for key in leaves(PARAMS):
        assert f"| `{key}` |" in out


# --- item 5: one extension point for sources and resolvers ------------------------------------

def test_registries_match_the_schema():
    assert set(sources.SOURCES) == set(schema.SOURCES)
    assert set(resolvers.RESOLVERS) | {"auto"} == set(schema.RESOLVERS)


def test_a_new_source_is_one_registered_function(monkeypatch, tmp_path):
    monkeypatch.setitem(sources.SOURCES, "mine", None)  # removed again after the test
    csv = tmp_path / "mine.csv"
    sources.fetch_tracks({"source": "demo", "demo": {"n_albums": 20, "seed": 0, "effects": "strong"}}).to_csv(csv, index=False)

    @sources.source("mine")
    def mine(p: dict, inputs: dict):
        return sources.read_tracks(p["file"])

    tracks = sources.fetch_tracks({"source": "mine", "mine": {"file": str(csv)}})
    assert len(tracks) > 20 and {"track_id", "popularity"} <= set(tracks.columns)
    # its covers: Spotify by track id, unless a resolver of the same name is registered
    assert resolvers.auto_resolver("mine", environ={}) == "oembed"
    monkeypatch.setitem(resolvers.RESOLVERS, "mine",
                        lambda tracks, data, scrape, environ, hashes: resolvers.DemoResolver(tracks))
    auto = ScrapeSettings.from_params(scrape_params(resolver="auto"), environ={})
    r = resolvers.make_resolver(auto, tracks, {"source": "mine"}, environ={})
    assert isinstance(r, resolvers.DemoResolver)
