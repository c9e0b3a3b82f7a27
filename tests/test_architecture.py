"""The shape of the house (docs/architecture.md), checked from the source: what imports what, and file sizes.

Parsed with ``ast`` (no import runs), so a lazy import inside a function counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "siri_rl"
MAX_LINES = 400

# The engine-free core: what SIRI *is* and the two directories everything revolves around.
CORE = {"schedule", "adaptive", "guard", "reward", "_verify_worker", "data", "prompts", "metrics", "config",
        "plots", "run_dir", "results", "models", "grader", "paper"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def siri_imports(path: Path) -> set[str]:
    """Every ``siri_rl.*`` module ``path`` imports, anywhere in the file."""
    names: set[str] = set()
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("siri_rl")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("siri_rl"):
                names.add(target)
    return names


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
    for name, home in (("metrics.jsonl", "run_dir.py"), ("siri_checkpoint.json", "run_dir.py"),
                       ("samples.jsonl", "results.py"), ("eval_args.json", "results.py")):
        named = [str(p.relative_to(PKG)) for p in FILES if name in _code_strings(p)]
        assert named == [home], f"{name!r} spelled out in {named}; import the name from siri_rl.{home[:-3]}"
