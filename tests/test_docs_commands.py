"""Every shell command the docs show is checked against the real interface, so docs cannot rot.

The commands are found, not listed: fenced and indented code blocks and inline code of README.md
and docs/*.md, whatever starts with a command this project answers for. Each is checked against
the thing itself:
- `make T`: T is a target of the Makefile;
- `dvc ...`: DVC's own argument parser; every `-S key=value` against the params schema, values
  included (comma lists are a `--queue` sweep: each value is checked);
- `coverpop ...`: coverpop.cli's parser;
- `python script.py ...`, `python -m module ...` (stages, benches, tests/s3/swift_server.py,
  coverpop modules): the script's own argparse parser, run up to the point where it parses its
  command line; a stage script's arguments must also be the ones dvc.yaml's `cmd` passes;
- `torchrun ...`: torch's parser, then the script it runs as above;
- `bash FILE`, `pytest PATH`: the file exists.
Other programs (git, export, source, cd) are not ours to check; `eval "$(...)"` checks the inner
command. A placeholder (`<name>`, `...`, `…`, `N`) stands for a value.

Figures: every section of docs/speed.md and README.md that quotes a timing names, in the same
section, a command that measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import runpy
import shlex
import sys
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import ROOT, write_params
from markdown_it import MarkdownIt

from coverpop.core import params as P
from coverpop.core.errors import CoverpopError

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OURS = {"make", "dvc", "coverpop", "python", "python3", "torchrun", "bash", "pytest"}
EXTERNAL = {"git", "export", "source", "cd", "pip", "eval", "apt-get", "sudo"}
PLACEHOLDER = re.compile(r"^(<[^>]*>|\.\.\.|…|N|x|_placeholder_)$")
ANGLE = re.compile(r"<[\w .-]*>")   # <experiment>: read as one word, never as a redirection


@dataclass(frozen=True)
class Command:
    where: str       # file:line
    text: str
    inline: bool     # an inline code span (may name a command without all its arguments)


# ---- finding the commands ----------------------------------------------------------------------

def _first_word(words: list[str]) -> str:
    for w in words:
        if re.match(r"^[A-Z_][A-Z0-9_]*=", w) or w in ("time", "nice"):
            continue      # VAR=value prefixes, `time`, `nice`
        return Path(w).name if w.endswith(("/python", "/python3")) else w
    return ""


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def commands_in(markdown: str, where: str) -> list[Command]:
    found = []
    tokens = MarkdownIt().parse(markdown)
    for tok in tokens:
        if tok.type in ("fence", "code_block") and tok.info.strip() in ("", "bash", "sh", "shell",
                                                                         "console"):
            start = tok.map[0] + (1 if tok.type == "fence" else 0)
            lines = tok.content.splitlines()
            i = 0
            while i < len(lines):
                line, n = lines[i], i
                while line.rstrip().endswith("\\") and i + 1 < len(lines):   # continuations
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
                text = line.strip()
                if text and not text.startswith("#") and _first_word(_split(text)) in OURS | EXTERNAL:
                    found.append(Command(f"{where}:{start + n + 1}", text, inline=False))
        elif tok.type == "inline":
            for child in tok.children or []:
                if child.type == "code_inline" and _first_word(_split(child.content)) in OURS:
                    found.append(Command(f"{where}:{tok.map[0] + 1}", child.content.strip(),
                                         inline=True))
    return found


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in commands_in(doc.read_text(), str(doc.relative_to(ROOT)))]


# ---- checking one command ----------------------------------------------------------------------

def check(cmd: Command) -> str | None:
    """None when the command matches the real interface, else what is wrong (one line)."""
    problems = []
    for part in _pieces(cmd.text):
        problem = _check_words(part, cmd.inline)
        if problem:
            problems.append(problem)
    return "; ".join(problems) or None


def _pieces(text: str) -> list[list[str]]:
    """The simple commands of a line: split at && || ; | and cut redirections (> file)."""
    lex = shlex.shlex(ANGLE.sub("_placeholder_", text), posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, "#"
    try:
        words = list(lex)
    except ValueError:
        words = text.split()
    pieces, current, skip = [], [], False
    for w in words:
        if w in ("&&", "||", ";", "|", "&"):
            pieces.append(current)
            current = []
        elif w in (">", ">>", "<", "2>"):
            skip = True
        elif skip:
            skip = False
        else:
            current.append(w)
    pieces.append(current)
    return [p for p in pieces if p]


def _check_words(words: list[str], inline: bool) -> str | None:
    while words and (re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]) or words[0] in ("time", "nice")):
        words = words[1:]
    if not words:
        return None
    head, args = _first_word(words), words[1:]
    if inline and not args:
        return None if head in OURS | EXTERNAL else f"{head}: not a command"   # `torchrun`
    if head == "eval":
        inner = re.search(r"\$\((.*)\)", " ".join(args))
        return _check_words(_split(inner[1]), inline) if inner else None
    if head in EXTERNAL:
        return None
    args = [_value_for(a) for a in args]
    if head == "make":
        missing = [t for t in args if not t.startswith("-") and t not in make_targets()]
        return f"make: no target {', '.join(missing)} in the Makefile" if missing else None
    if head == "bash":
        return None if args and (ROOT / args[0]).is_file() else f"bash: no file {args[:1]}"
    if head == "dvc":
        return _check_dvc(args, inline)
    if head == "coverpop":
        from coverpop.cli import build_parser
        return _parses(build_parser(), args, inline, "coverpop")
    if head in ("python", "python3"):
        return _check_python(args, inline)
    if head == "torchrun":
        return _check_torchrun(args)
    if head == "pytest":
        missing = [a for a in args if not a.startswith("-") and
                   not (ROOT / a.split("::")[0]).exists()]
        return f"pytest: no {', '.join(missing)}" if missing else None
    return f"{head}: not a command these docs may show"


def _value_for(word: str) -> str:
    """A placeholder stands for some value (`<experiment>` -> x; `key=<value>` stays for -S); a
    shell variable ($NODE_RANK, ${PORT}) for a number, which every option that takes one accepts."""
    if PLACEHOLDER.match(word):
        return "x"
    return re.sub(r"\$\{?[A-Z_][A-Z0-9_]*\}?", "1", word)


# dvc

@cache
def _dvc_parser():
    from dvc.cli.parser import get_main_parser
    return get_main_parser()


def _check_dvc(args: list[str], inline: bool) -> str | None:
    problem = _parses(_dvc_parser(), args, inline, "dvc")
    if problem:
        return problem
    sets = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-S", "--set-param")]
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or PLACEHOLDER.match(key) or PLACEHOLDER.match(value) or value == "x":
            continue
        if key not in P.keys():
            return f"-S {item}: {key} is not a params key (docs/params.md)"
        values = [value] if value.startswith("[") else value.split(",")
        for v in values:
            try:
                P.check({key: yaml.safe_load(v)}, where="-S")
            except CoverpopError as err:
                return str(err)
    return None


def _parses(parser: argparse.ArgumentParser, args: list[str], inline: bool, prog: str):
    """Parse with the real parser. An inline span may name a command without its required
    arguments (`dvc plots`, `coverpop predict`): then the command path and every flag it names
    must exist (checked through the parser's help)."""
    err = _parse_error(lambda: parser.parse_args(args))
    if err is None:
        return None
    if inline:
        path = [a for a in args if not a.startswith("-")]
        flags = [a.split("=")[0] for a in args if a.startswith("-")]
        if _parse_error(lambda: parser.parse_args([*path, "-h"]), help_ok=True) is None:
            text = _help_text(parser, path)
            missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}\b", text)]
            if not missing:
                return None
            return f"{prog} {' '.join(path)}: no option {', '.join(missing)}"
    return f"{prog} {' '.join(args)}: {err}"


def _parse_error(call, help_ok: bool = False) -> str | None:
    from dvc.cli import DvcParserError

    out, errs = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(errs):
            call()
    except SystemExit as exit_:
        if exit_.code in (0, None) and help_ok:
            return None
        return _error_line(errs.getvalue() + out.getvalue(), f"exit {exit_.code}")
    except DvcParserError:
        return _error_line(errs.getvalue() + out.getvalue(), "not a valid dvc command line")
    return None


def _error_line(text: str, fallback: str) -> str:
    lines = [x.strip() for x in text.splitlines() if "error" in x.lower()]
    return lines[-1] if lines else fallback


def _help_text(parser: argparse.ArgumentParser, path: list[str]) -> str:
    out = io.StringIO()
    with contextlib.suppress(SystemExit, Exception), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args([*path, "-h"])
    return out.getvalue()


# python scripts and modules

class _Parsed(Exception):
    pass


def _run_to_parse(run, argv: list[str]) -> str | None:
    """Run a program until its argparse parser has read argv: None if it accepted it."""
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        original(self, args, namespace)   # exits with the parser's own error when wrong
        raise _Parsed

    errs = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), \
            mock.patch.object(sys, "argv", argv), contextlib.redirect_stderr(errs), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            run()
        except _Parsed:
            return None
        except SystemExit as exit_:
            lines = errs.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exits {exit_.code} before parsing its arguments"
        except Exception as err:   # noqa: BLE001  (a program that breaks before it parses)
            return f"fails before parsing its arguments: {type(err).__name__}: {err}"
    return "parses no command line (not an argparse program?)"


def _check_python(args: list[str], inline: bool) -> str | None:
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if not module.startswith("coverpop"):
            return None
        def run_module():
            with warnings.catch_warnings():   # "found in sys.modules": imported already, fine
                warnings.simplefilter("ignore", RuntimeWarning)
                runpy.run_module(module, run_name="__main__", alter_sys=True)

        return _run_to_parse(run_module, [module, *rest])
    if not args or not args[0].endswith(".py"):
        return None
    script, rest = args[0], args[1:]
    if not (ROOT / script).is_file():
        return f"python {script}: no such file"
    def run():   # as `python script.py` does: the script's folder first on sys.path
        with mock.patch.object(sys, "path", [str((ROOT / script).parent), *sys.path]):
            runpy.run_path(str(ROOT / script), run_name="__main__")

    problem = _run_to_parse(run, [script, *rest])
    if problem:
        return f"python {script} {' '.join(rest)}: {problem}"
    if script.startswith("stages/"):
        return _matches_dvc_yaml(script, rest)
    return None


def _check_torchrun(args: list[str]) -> str | None:
    from torch.distributed.run import get_args_parser

    try:
        ns = get_args_parser().parse_args(args)
    except SystemExit:
        return f"torchrun {' '.join(args)}: not valid torchrun options"
    return _check_python([ns.training_script, *ns.training_script_args], inline=False)


@cache
def _dvc_yaml() -> tuple[dict, dict]:
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    flat = {}
    for entry in doc.get("vars", []):
        if isinstance(entry, dict):
            for name, section in entry.items():
                for k, v in (section or {}).items():
                    flat[f"{name}.{k}"] = str(v)
    return doc["stages"], flat


def _resolve(word: str) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: _dvc_yaml()[1].get(m[1], m[0]), word)


def _matches_dvc_yaml(script: str, args: list[str]) -> str | None:
    stages, _ = _dvc_yaml()
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        if script in words:
            want = [_resolve(w) for w in words[words.index(script) + 1:]]
            got = [_resolve(a) for a in args]
            if got != want:
                return (f"{script} {' '.join(got)}: dvc.yaml's {name} stage passes "
                        f"{' '.join(want)}")
            return None
    return None


@cache
def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m for line in text.splitlines()
            for m in re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", line)}


# ---- the tests ---------------------------------------------------------------------------------

COMMANDS = all_commands()


@pytest.fixture(scope="module")
def in_a_clean_folder(tmp_path_factory):
    """Scripts run up to their argument parsing in a folder holding the default params (never the
    workspace's)."""
    folder = tmp_path_factory.mktemp("docs-commands")
    write_params(folder, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.syspath_prepend(str(ROOT / "tests"))
        yield folder


def test_the_docs_show_commands():
    kinds = {_first_word(_split(c.text)) for c in COMMANDS}
    assert {"make", "dvc", "coverpop", "python", "torchrun"} <= kinds
    assert len(COMMANDS) > 100


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.where} {c.text[:60]}")
def test_every_doc_command_matches_the_real_interface(cmd, in_a_clean_folder):
    assert check(cmd) is None, f"{cmd.where}: `{cmd.text}`: {check(cmd)}"


WRONG = [  # each was in the docs once, or is a typo a doc could carry
    "torchrun --standalone --nproc_per_node=2 stages/train.py data/split.csv models/model.pt "
    "metrics/train",
    "dvc repro -S data.source=kaggle",
    "dvc exp run -S train.lr=-1",
    "dvc exp run -S train.lrr=0.1",
    "dvc exp run --queue -S seed=0,one,2",
    "dvc exp run -S model=resnet18 --qeue",
    "make tests",
    "coverpop predict --nope cover.jpg",
    "coverpop comapre",
    "python bench/bench_train.py --nope",
    "python -m coverpop.remote chek",
    "python stages/train.py data/split.csv",
    "python bench/no_such_bench.py",
    "pytest tests/test_no_such_thing.py",
]


@pytest.mark.parametrize("text", WRONG)
def test_a_wrong_command_is_caught(text, in_a_clean_folder):
    assert check(Command("x.md:1", text, inline=False)) is not None


def test_inline_spans_may_name_a_command_without_its_arguments(in_a_clean_folder):
    for text in ("dvc plots", "dvc exp run -S", "coverpop predict", "dvc exp show --json"):
        assert check(Command("x.md:1", text, inline=True)) is None, text
    for text in ("dvc plot", "dvc exp show --jsn", "coverpop predicts"):
        assert check(Command("x.md:1", text, inline=True)) is not None, text


def test_commands_are_found_in_every_kind_of_code():
    md = ("Run `make repro` or `dvc plots show`; `params.yaml` is no command.\n\n"
          "```bash\nmake test   # all\n# a comment\ndvc exp run \\\n  -S seed=1\n```\n\n"
          "    torchrun --standalone stages/train.py a b c d\n\n"
          "```yaml\ncmd: python x.py\n```\n")
    got = [(c.text, c.inline) for c in commands_in(md, "x.md")]
    assert got == [("make repro", True), ("dvc plots show", True), ("make test   # all", False),
                   ("dvc exp run  -S seed=1", False),
                   ("torchrun --standalone stages/train.py a b c d", False)]


# ---- figures name the command that measures them --------------------------------------------------

TIMING = re.compile(r"\d[\d,.½]*\s?(?:ms|s|min|minutes|seconds|img/s|covers/s)\b|\d×")
MEASURED_BY = ("python", "python3", "make", "dvc", "bash", "coverpop")


def sections(markdown: str) -> list[tuple[str, str]]:
    """(heading, text) per section; code blocks are left in, so their commands count."""
    parts = re.split(r"^(#{1,3} .*)$", markdown, flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def unmeasured_figures(markdown: str, where: str) -> list[str]:
    missing = []
    for heading, text in sections(markdown):
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        if not TIMING.search(prose):
            continue
        cmds = commands_in(text, where)
        if not any(_first_word(_split(c.text)) in MEASURED_BY for c in cmds):
            missing.append(f"{where} {heading!r}: {TIMING.search(prose)[0]!r}")
        for bench in re.findall(r"`(bench/\w+\.py)`", prose):   # a bench named, not a command
            missing.append(f"{where} {heading!r}: `{bench}` named as a file: show the command "
                           f"(`python {bench} ...`)")
    return missing


@pytest.mark.parametrize("doc", ["README.md", "docs/speed.md"])
def test_every_timing_names_the_command_that_measures_it(doc):
    assert unmeasured_figures((ROOT / doc).read_text(), doc) == []


def test_the_figure_check_can_fail():
    md = "## Fast\n\nIt takes 3.5 s (`bench/bench_x.py`).\n\n## Measured\n\n12 s: `make repro`.\n"
    assert len(unmeasured_figures(md, "x.md")) == 2
