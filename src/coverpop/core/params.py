"""What a stage is given: params.yaml, and its paths on the command line."""

import argparse
from pathlib import Path

import yaml

from coverpop.core.errors import CoverpopError


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise CoverpopError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise CoverpopError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None


def one_of(value, allowed: tuple[str, ...], name: str) -> str:
    """Check a string param against its allowed values, naming the param when it is wrong."""
    if value not in allowed:
        raise CoverpopError(f"params.yaml: {name}={value!r} is not one of {', '.join(allowed)}")
    return value


def stage_paths(*names: str) -> argparse.Namespace:
    """The paths a stage's dvc.yaml `cmd` passes, in order (dvc.yaml names each path once)."""
    parser = argparse.ArgumentParser()
    for name in names:
        parser.add_argument(name)
    return parser.parse_args()
