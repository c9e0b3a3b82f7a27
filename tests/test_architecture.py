"""The shape of the house (docs/architecture.md), checked from the source: what imports what, and file sizes.

Parsed with ``ast`` (no import runs), so a lazy import inside a function counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "siri_rl"
MAX_LINES = 400

# The engine-free core: what SIRI *is* and the two directories everything revolves around.
CORE = {"schedule", "adaptive", "guard", "reward", "_verify_worker", "data", "prompts", "errors", "metrics", "config",
        "plots", "run_dir", "results", "models", "grader", "paper", "validation", "sampling"}


def module_name(path: Path, root: Path = PKG) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def siri_imports(path: Path, root: Path = PKG) -> set[str]:
    """Every ``siri_rl.*`` module ``path`` imports, anywhere in the file (a function-level import included).

    ``from siri_rl import metrics`` names the module ``siri_rl.metrics`` where ``root`` holds such a file, else the
    package itself; ``importlib.import_module("siri_rl.x")`` with a constant name counts as an import."""
    names: set[str] = set()
    top_name = root.name
    mod = module_name(path, root)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]

    def is_module(name: str) -> bool:
        rel = Path(*name.split(".")[1:])
        return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == top_name}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top_name:
                continue
            subs = {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")}
            names |= subs
            if len(subs) < len(node.names):
                names.add(target)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.split(".")[0] == top_name):
            names.add(node.args[0].value)
    return names


def import_loops(root: Path = PKG, depth: int | None = None) -> list[list[str]]:
    """Every loop of imports between the modules under ``root``: the strongly connected components (Tarjan) of the
    graph "module -> module it imports", lazy imports included. Only written imports are edges: that importing
    ``a.b.c`` first runs ``a/b/__init__.py`` is Python's order of loading, not a dependency of ``c``.

    ``depth=2`` looks at the rooms of the house instead of the files: ``siri_rl.evaluate.driver`` counts as
    ``siri_rl.evaluate``, and imports inside one room are left out."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}

    def room(name: str) -> str:
        return ".".join(name.split(".")[:depth]) if depth else name

    graph: dict[str, set[str]] = {room(m): set() for m in modules}
    for m, p in modules.items():
        graph[room(m)] |= {room(t) for t in siri_imports(p, root) if t in modules and room(t) != room(m)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in sorted(graph[m]):
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                t = stack.pop()
                component.append(t)
                if t == m:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for m in graph:
        if m not in index:
            visit(m)
    return loops


def top(name: str) -> str:
    """``siri_rl.engines.trl.callback`` -> ``engines``; ``siri_rl.data`` -> ``data``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


FILES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_is_longer_than_the_limit(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {n} lines (> {MAX_LINES}): split it along its ideas"


def test_the_core_imports_only_the_core():
    bad = {}
    for path in FILES:
        if path.parent == PKG and path.stem in CORE:
            out = {n for n in siri_imports(path) if top(n) not in CORE}
            if out:
                bad[path.name] = sorted(out)
    assert not bad, f"core modules importing above the core: {bad}"


def test_engines_import_no_toy_analysis_compare_or_evaluation_driver():
    forbidden = {"toy", "analysis", "compare", "evaluate", "cli", "select"}
    bad = {}
    for path in (PKG / "engines").rglob("*.py"):
        out = {n for n in siri_imports(path) if top(n) in forbidden}
        if out:
            bad[str(path.relative_to(PKG))] = sorted(out)
    assert not bad, f"engine modules importing what sits above them: {bad}"


def test_the_toy_is_above_the_engines_and_below_the_cli():
    for path in (PKG / "toy").rglob("*.py"):
        assert not {n for n in siri_imports(path) if top(n) == "cli"}, path


def _code_strings(path: Path) -> set[str]:
    """String constants of ``path`` that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs}


def _definitions(name: str) -> list[str]:
    return [str(p.relative_to(PKG)) for p in FILES for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, ast.FunctionDef) and n.name == name]


def test_the_run_and_results_directories_have_one_home():
    # metrics.jsonl: written by one function, read by one, named in one module; the same for the results files.
    assert _definitions("append_metrics_row") == ["run_dir.py"]
    assert _definitions("read_metric_rows") == ["run_dir.py"]
    assert _definitions("write_checkpoint_card") == ["run_dir.py"]
    assert _definitions("append_validation_rows") == ["run_dir.py"]
    assert _definitions("read_validation_rows") == ["run_dir.py"]
    for name, home in (("metrics.jsonl", "run_dir.py"), ("siri_checkpoint.json", "run_dir.py"),
                       ("validation.jsonl", "run_dir.py"),
                       ("samples.jsonl", "results.py"), ("eval_args.json", "results.py")):
        named = [str(p.relative_to(PKG)) for p in FILES if name in _code_strings(p)]
        assert named == [home], f"{name!r} spelled out in {named}; import the name from siri_rl.{home[:-3]}"


def test_no_import_loops_between_siri_rl_modules():
    # A loop hidden behind a function-level import is still a loop: it only moves the failure to call time and
    # hides which module owns what.
    loops = import_loops()
    assert not loops, "import loops (each: the modules that reach each other): " + "; ".join(
        " <-> ".join(loop) for loop in loops)


def test_no_import_loops_between_the_rooms_of_the_house():
    # The same between the core modules and the packages taken whole: siri_rl.evaluate may use a core module, and a
    # core module must not reach back into siri_rl.evaluate, not even through another file of the package.
    loops = import_loops(depth=2)
    assert not loops, "import loops between packages/modules: " + "; ".join(" <-> ".join(loop) for loop in loops)


def test_the_loop_check_sees_a_loop_behind_a_function_level_import(tmp_path):
    pkg = tmp_path / "siri_rl"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from siri_rl.b import B\n")
    (pkg / "b.py").write_text("B = 1\n\ndef f():\n    from siri_rl import a\n    return a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def g():\n    from .. import b\n    import importlib\n"
                                      "    return importlib.import_module('siri_rl.sub.d')\n")
    (pkg / "sub" / "d.py").write_text("class K:\n    def m(self):\n        from siri_rl.sub.c import g\n")
    (pkg / "e.py").write_text("import siri_rl.b\n")
    assert sorted(import_loops(pkg)) == [["siri_rl.a", "siri_rl.b"], ["siri_rl.sub.c", "siri_rl.sub.d"]]
    # a loop between two rooms (the package siri_rl.sub and the module siri_rl.e) that no two files close
    (pkg / "b.py").write_text("B = 1\n")
    (pkg / "sub" / "c.py").write_text("X = 1\n")
    (pkg / "sub" / "d.py").write_text("def h():\n    from siri_rl.e import Y\n")
    (pkg / "e.py").write_text("from siri_rl.sub.c import X\n\nY = X\n")
    assert import_loops(pkg) == []
    assert import_loops(pkg, depth=2) == [["siri_rl.e", "siri_rl.sub"]]
