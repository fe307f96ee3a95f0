"""The `coverpop` command line.

Only the standard library is imported at start-up: torch costs seconds and ~850 MB, so it is
imported inside the command that needs it, never on the `--help` path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coverpop.core.errors import CoverpopError

DEFAULT_MODEL = "models/model.pt"


def _open_cover(path: Path):
    """The cover as an RGB PIL image, or a one-line reason why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return None, "file not found"
    if path.is_dir():
        return None, "is a folder, not an image"
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not inside the model
            return im.convert("RGB"), ""
    except UnidentifiedImageError:
        return None, "not a readable image (unknown format or corrupt)"
    except (OSError, ValueError) as err:
        return None, f"not a readable image ({str(err).splitlines()[0]})"


def _load_predictor(model: Path):
    if not model.is_file():
        raise CoverpopError(f"{model}: no trained model here; run `dvc repro` to train one "
                            "or `dvc pull` to fetch the team's (or pass --model PATH)")
    from coverpop.train.checkpoint import load_predictor

    try:
        return load_predictor(model)
    except CoverpopError:
        raise
    except Exception as err:  # a truncated or foreign file: say so in one line, not a traceback
        raise CoverpopError(f"{model}: not a usable coverpop checkpoint "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                            "run `dvc repro` or `dvc pull` to get a fresh one") from None


def cmd_predict(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.covers]
    opened = [_open_cover(p) for p in paths]
    good = [i for i, (im, _) in enumerate(opened) if im is not None]
    rows: list[dict] = [{"file": str(p)} for p in paths]
    for i, (_, reason) in enumerate(opened):
        if reason:
            rows[i]["error"] = reason
            print(f"error: {paths[i]}: {reason}", file=sys.stderr)
    if good:
        predictor = _load_predictor(Path(args.model))
        scores = predictor.predict([opened[i][0] for i in good])
        for i, score in zip(good, scores):
            rows[i]["popularity"] = round(float(score), 2)
        if args.features:
            from coverpop.analyze.features import cover_features

            for i in good:
                f = cover_features(opened[i][0])
                rows[i]["features"] = {k: (round(v, 3) if isinstance(v, float) else v)
                                       for k, v in f.items()}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "popularity" in row:
                line = f"{row['popularity']:6.1f}  {row['file']}"
                if "features" in row:
                    f = row["features"]
                    line += (f"  (faces {f['faces']}, face area {f['face_area']:.0%}, "
                             f"colourfulness {f['colourfulness']:.0f}, saturation "
                             f"{f['saturation']:.2f}, brightness {f['brightness']:.2f}, "
                             f"hue {f['hue_name']}, large text {'yes' if f['text'] else 'no'})")
                print(line)
    return 0 if len(good) == len(paths) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from coverpop import compare

    if args.input:
        try:
            shown = json.loads(Path(args.input).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CoverpopError(f"{args.input}: file not found") from None
        except json.JSONDecodeError as err:
            raise CoverpopError(f"{args.input}: not JSON ({err.msg}, line {err.lineno})") from None
    else:
        shown = compare.exp_show_json(["--all-commits"] if args.all_commits else [])
    text, result = compare.report(compare.runs_from_exp_show(shown), args.metric)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coverpop", description="Predict a track's popularity (0-100) from its album cover, "
                                     "and compare experiments over seeds.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "predict", help="predict the popularity of one or more cover images",
        description="Print the predicted popularity (0-100) of each cover with the trained model. "
                    "Compare candidate covers by running them together.")
    p.add_argument("covers", nargs="+", metavar="COVER", help="image file (JPEG, PNG, ...)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"trained checkpoint (default: {DEFAULT_MODEL}, made by `dvc repro`)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--features", action="store_true",
                   help="also show the interpretable cover features (faces, colour, text)")
    p.set_defaults(func=cmd_predict)

    c = sub.add_parser(
        "compare", help="mean ± sd over seeds per config, and which differences beat seed noise",
        description="Read `dvc exp show --json`, group the experiments that differ only in "
                    "`seed`, print mean ± sd and n of every metric per group, and for each pair "
                    "of groups the difference with a 95 % Welch interval over the seeds. Run "
                    "the seeds first: dvc exp run --queue -S seed=0,1,2 -S model=a,b; "
                    "dvc queue start.")
    c.add_argument("--metric", nargs="+", metavar="TEXT",
                   help="only metrics whose name contains TEXT (e.g. model.spearman)")
    c.add_argument("--input", metavar="FILE",
                   help="read this saved `dvc exp show --json` output instead of running it")
    c.add_argument("--all-commits", action="store_true",
                   help="include experiments on every commit, not only the current one")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CoverpopError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
