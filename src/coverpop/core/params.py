"""What a stage is given: params.yaml, checked against the schema once, and its paths on the command line.

`load_params()` validates the whole file when a stage starts (also values set by
`dvc exp run -S`) and returns plain nested dicts; a bad value is one line naming the key, the
value and what is allowed. `defaults()` is the schema's tree of defaults, for configs built by
hand: it never reads the workspace's params.yaml, which `dvc exp run -S` rewrites.
`python -m coverpop.core.params --markdown` writes docs/params.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import types
import typing
from functools import cache
from pathlib import Path

import annotated_types as at
import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from coverpop.core.errors import CoverpopError
from coverpop.core.schema import Params


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml as nested dicts, after the schema accepted every key and value."""
    path = Path(path)
    tree = _read_yaml(path)
    validate(tree, str(path))
    return _guarded(tree, "")


def _read_yaml(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except FileNotFoundError:
        raise CoverpopError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise CoverpopError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise CoverpopError(f"{path}: must be a mapping of params, not {type(tree).__name__}")
    return tree


def validate(tree: dict, where: str = "params.yaml") -> None:
    """Check a whole params tree; the first problem becomes a one-line CoverpopError."""
    try:
        Params.model_validate(tree)
    except ValidationError as err:
        problems = {}  # one line per key: a union type reports each of its arms
        for error in err.errors():
            dotted, line = _explain(error, tree)
            problems.setdefault(dotted, line)
        first, *rest = problems.values()
        more = f" (and {len(rest)} more)" if rest else ""
        raise CoverpopError(f"{where}: {first}{more}") from None


def check(values: dict, where: str = "params.yaml") -> None:
    """Check some keys by their dotted names ({"train.lr": 0.01, "seed": 0}) against the same
    schema, for code that builds a config by hand (tests, benchmarks) rather than from a file."""
    for dotted, value in values.items():
        field = _field(dotted)
        if field is None:
            section, _, name = dotted.rpartition(".")
            raise CoverpopError(f"{where}: {_unknown(section, name)}")
        try:
            _adapter(dotted).validate_python(value)
        except ValidationError:
            raise CoverpopError(f"{where}: {_bad_value(dotted, value, field)}") from None


# --- one-line messages ------------------------------------------------------------------------

def _explain(error: dict, tree: dict) -> tuple[str, str]:
    """(the key an error is about, one line on it)."""
    model, path = Params, []
    for part in error["loc"]:  # the deepest params key the error points at
        fields = model.model_fields if model else {}
        if not isinstance(part, str) or part not in fields:
            break
        path.append(part)
        model = _section(fields[part])
    dotted = ".".join(path)
    if error["type"] == "extra_forbidden":
        name = error["loc"][len(path)]
        return f"{dotted}.{name}", _unknown(dotted, name)
    if error["type"] == "missing":
        return dotted, f"{dotted} is missing ({_allowed(_field(dotted)) if model is None else 'a section'})"
    if model is not None and error["type"] == "value_error":  # a check across keys of a section
        return dotted, f"{dotted}: {error['msg'].removeprefix('Value error, ')}"
    value = _lookup(tree, path)
    if model is not None:
        return dotted, f"{dotted}={value!r} must be a mapping of {dotted} params"
    return dotted, _bad_value(dotted, value, _field(dotted))


def _bad_value(dotted: str, value, field: FieldInfo) -> str:
    if typing.get_origin(field.annotation) is typing.Literal:
        return f"{dotted}={value!r} is not one of {_allowed(field).removeprefix('one of ')}"
    return f"{dotted}={value!r} must be {_allowed(field)}"


def _unknown(section: str, name) -> str:
    model = Params
    for part in filter(None, section.split(".")):
        model = _section(model.model_fields[part])
    known = ", ".join(model.model_fields)
    where = f"a {section} param" if section else "a known param"
    return f"{f'{section}.' if section else ''}{name} is not {where} (known: {known})"


def _lookup(tree, path: list[str]):
    for part in path:
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


# --- the schema, key by key -------------------------------------------------------------------

def _section(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _field(dotted: str) -> FieldInfo | None:
    model, field = Params, None
    for part in dotted.split("."):
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = _section(field)
    return field if model is None else None


@cache
def _adapter(dotted: str) -> TypeAdapter:
    field = _field(dotted)
    ann = typing.Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(ann, config=ConfigDict(strict=True))


def keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Every leaf key of the schema, dotted, in schema order."""
    out = []
    for name, field in model.model_fields.items():
        sub = _section(field)
        out += keys(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"]
    return out


def _allowed(field: FieldInfo) -> str:
    """What a key accepts, in words: from its type and constraints (or its own `allowed`)."""
    extra = field.json_schema_extra or {}
    if "allowed" in extra:
        return extra["allowed"]
    return _describe(field.annotation, field.metadata)


def _describe(ann, metadata=()) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        words = [_describe(a).removeprefix("one of ").replace(" or ", ", ") for a in args]
        head, _, last = ", ".join(words).rpartition(", ")
        return f"{head} or {last}"
    if origin is list:
        item = args[0]
        inner = ", ".join(typing.get_args(item)) if typing.get_origin(item) is typing.Literal \
            else "names"
        empty = "" if any(isinstance(m, at.MinLen) and m.min_length > 0 for m in metadata) \
            else " (may be empty)"
        return f"a list of {inner}{empty}"
    if ann is bool:
        return "true or false"
    if ann is str:
        return "non-empty text" if any(isinstance(m, at.MinLen) for m in metadata) else "text"
    lo = next((m for m in metadata if isinstance(m, at.Ge | at.Gt)), None)
    hi = next((m for m in metadata if isinstance(m, at.Le | at.Lt)), None)
    if ann is int and hi is None and isinstance(lo, at.Ge) and lo.ge in (0, 1):
        return "a positive integer" if lo.ge == 1 else "0 or a positive integer"
    noun = "an integer" if ann is int else "a number"
    if lo is not None and hi is not None:
        if isinstance(lo, at.Ge) and isinstance(hi, at.Le):
            return f"{noun} from {lo.ge} to {hi.le}"
        return f"{noun} {_bound(lo)} and {_bound(hi)}"
    bound = lo or hi
    return f"{noun} {_bound(bound)}" if bound is not None else noun


def _bound(m) -> str:
    for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if hasattr(m, attr):
            return f"{sign} {getattr(m, attr)}"
    raise TypeError(m)


# --- reading guard ----------------------------------------------------------------------------

class _Params(dict):
    """A validated section. Reading a key that params.yaml lacks is an error, also through
    .get(key, default): code can never fall back on a default of its own."""

    def __init__(self, items, path: str):
        super().__init__(items)
        self._path = path

    def _missing(self, key) -> CoverpopError:
        return CoverpopError(f"params.yaml has no {self._path}{key}, but the code reads it "
                             f"(add it to params.yaml and core/schema.py)")

    def __getitem__(self, key):
        if key not in self:
            raise self._missing(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key not in self:
            raise self._missing(key)
        return super().__getitem__(key)

    def __reduce__(self):  # copies and pickles are plain dicts
        return dict, (dict(self),)


def _guarded(tree: dict, path: str) -> dict:
    return _Params({k: _guarded(v, f"{path}{k}.") if isinstance(v, dict) else v
                    for k, v in tree.items()}, path)


# --- defaults and docs ------------------------------------------------------------------------

def default(dotted: str):
    """One key's default, from the schema: for config classes that code and tests also build by
    hand (TrainConfig)."""
    field = _field(dotted)
    if field is None:
        raise KeyError(f"{dotted} is not a params key")
    return copy.deepcopy(field.json_schema_extra["default"])


def defaults(model: type[BaseModel] = Params) -> dict:
    """The whole tree of defaults, nested as params.yaml is (a fresh copy: callers may edit it)."""
    out = {}
    for name, field in model.model_fields.items():
        sub = _section(field)
        out[name] = defaults(sub) if sub else copy.deepcopy(field.json_schema_extra["default"])
    return out


def markdown() -> str:
    """docs/params.md: every key with what it accepts, its default and one line on what it does
    (all from the schema: the docs never depend on the workspace's params.yaml)."""
    lines = ["# Params", "",
             "<!-- generated by `python -m coverpop.core.params --markdown > docs/params.md`; "
             "edit core/schema.py instead -->", "",
             "Every key of `params.yaml`, checked when a stage starts: a wrong type or value stops "
             "the stage with one line naming the key, the value and what is allowed. Set one for "
             "an experiment with `dvc exp run -S <key>=<value>` (e.g. `-S train.lr=0.001`)."]
    section = None
    for dotted in keys():
        head = dotted.split(".")[0] if "." in dotted else ""
        if head != section:
            section = head
            lines += ["", f"## {head or 'top level'}", "",
                      "| key | allowed | default | what it does |", "|---|---|---|---|"]
        field = _field(dotted)
        value = _inline(default(dotted))
        cells = [f"`{dotted}`", _allowed(field), f"`{value}`", field.description]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _inline(value) -> str:
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coverpop.core.params",
                                     description="Check params.yaml, or print its reference.")
    parser.add_argument("--markdown", action="store_true", help="print docs/params.md")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return
    try:
        load_params(args.params)
    except CoverpopError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.params}: ok")


def stage_paths(*names: str) -> argparse.Namespace:
    """The paths a stage's dvc.yaml `cmd` passes, in order (dvc.yaml names each path once)."""
    parser = argparse.ArgumentParser()
    for name in names:
        parser.add_argument(name)
    return parser.parse_args()


if __name__ == "__main__":
    main()
