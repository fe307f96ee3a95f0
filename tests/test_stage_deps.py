"""Every project file a stage command imports (transitively, lazy imports included) is a dep of
that stage in dvc.yaml, so editing it re-runs the stage. A folder dep covers the files under it."""

import ast
import functools
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str, roots: list[Path]) -> Path | None:
    """The project file defining module `name` (a.b.c), looked up in `roots` (sys.path order)."""
    parts = name.split(".")
    for root in roots:
        for cand in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if cand.is_file():
                return cand
    return None


def files_of(name: str, roots: list[Path]) -> set[Path]:
    """What `import a.b.c` executes: a/__init__.py, a/b/__init__.py and a/b/c(.py|/__init__.py)."""
    parts = name.split(".")
    found = {module_file(".".join(parts[:i]), roots) for i in range(1, len(parts) + 1)}
    return {f for f in found if f is not None}


def imported_names(path: Path, package: str) -> set[str]:
    """Every module `path` may import, at top level or inside functions; for `from a import b`,
    both `a` and `a.b` (b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names |= {f"{mod}.{alias.name}" for alias in node.names if alias.name != "*"}
    return names


def package_of(path: Path, roots: list[Path]) -> str:
    for root in roots:
        if path.is_relative_to(root):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            return ".".join(parts if path.name == "__init__.py" else parts[:-1])
    return ""


def import_closure(script: Path, roots: list[Path]) -> set[Path]:
    """The script and every project file reachable from it through imports."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, package_of(path, roots)):
            todo.extend(files_of(name, roots) - seen)
    return seen


def command_scripts(cmd: str, root: Path) -> list[tuple[Path, list[Path]]]:
    """(entry file, its import roots) for each Python entry point in a stage command:
    `python stages/x.py` (its folder comes first on sys.path) or `python -m pkg.mod`."""
    words = shlex.split(cmd)
    out = []
    for i, word in enumerate(words):
        if word.endswith(".py") and (root / word).is_file():
            script = root / word
            out.append((script, [script.parent, root / "src"]))
        elif word == "-m" and i + 1 < len(words):
            found = module_file(words[i + 1], [root / "src"])
            if found:
                out.append((found, [root, root / "src"]))
    return out


@functools.lru_cache
def stages(root: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (command, dep paths) with dvc.yaml's ${vars} resolved, as DVC resolves them."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: (s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd),
                               [d.def_path for d in s.deps])
                for s in repo.index.stages if s.cmd}


def missing_deps(root: Path) -> dict[str, list[str]]:
    missing = {}
    for name, (cmd, deps) in stages(root).items():
        covered = [(root / d).resolve() for d in deps]
        for script, roots in command_scripts(cmd, root):
            for f in sorted(import_closure(script.resolve(), [r.resolve() for r in roots])):
                if not any(f == c or f.is_relative_to(c) for c in covered):
                    missing.setdefault(name, []).append(str(f.relative_to(root.resolve())))
    return missing


def test_every_stage_lists_every_project_file_it_imports():
    missing = missing_deps(ROOT)
    assert not missing, "dvc.yaml deps miss files their stage imports: " + "; ".join(
        f"{stage}: {', '.join(files)}" for stage, files in missing.items())


def test_the_walk_sees_lazy_imports_and_modules_imported_by_from(tmp_path):
    """The checker itself, on a made-up project: a stage importing `from pkg import mod`, whose
    function imports `pkg.sub.deep` lazily, which imports a sibling relatively."""
    files = {
        "stages/s.py": "import _helper\nfrom pkg import mod\n",
        "stages/_helper.py": "import os\n",
        "src/pkg/__init__.py": "",
        "src/pkg/mod.py": "def f():\n    from pkg.sub import deep\n",
        "src/pkg/sub/__init__.py": "",
        "src/pkg/sub/deep.py": "from . import sibling\n",
        "src/pkg/sub/sibling.py": "",
        "src/pkg/unused.py": "",
        "dvc.yaml": "stages:\n  s:\n    cmd: python stages/s.py out\n    deps:\n"
                    "      - stages/s.py\n      - src/pkg/mod.py\n    outs:\n      - out\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    assert missing_deps(tmp_path) == {"s": ["src/pkg/__init__.py", "src/pkg/sub/__init__.py",
                                            "src/pkg/sub/deep.py", "src/pkg/sub/sibling.py",
                                            "stages/_helper.py"]}


@pytest.mark.parametrize("stage", ["fetch_csv", "train", "evaluate"])
def test_a_stage_does_not_depend_on_other_stages_packages_it_never_imports(stage):
    """The other direction, for the expensive cases: a folder dep that nothing imports re-runs
    a stage for nothing (e.g. `evaluate` re-running when the scraper changes)."""
    cmd, deps = stages(ROOT)[stage]
    closure = set()
    for script, roots in command_scripts(cmd, ROOT):
        closure |= import_closure(script.resolve(), [r.resolve() for r in roots])
    for dep in deps:
        path = (ROOT / dep).resolve()
        if path.is_dir() and (path / "__init__.py").is_file():
            assert any(f.is_relative_to(path) for f in closure), f"{stage}: {dep} is never imported"
