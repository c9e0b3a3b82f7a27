"""The paper's Table 1 as data (Wen et al. 2025, arXiv 2509.25176, §5.2): per model size, one row per model with
its Acc (pass@1, %) and Length (mean response tokens) on AIME24, AIME25, AMC and MATH500, its ΔAcc/CR, and the hub
id of its released checkpoint (None where none was released).

The numbers live in ``paper_table1.json`` beside this module, with their provenance: which cells were confirmed
from where (a cell that could not be sourced is null, i.e. missing, never a guess) and how each model id was
checked. A core module: it imports only :mod:`siri_rl.results`, so ``siri compare --paper`` reads it without
loading the evaluation driver.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from siri_rl.results import EvalError, Result

TABLE1_FILE = "paper_table1.json"
SIZES = ("1.5b", "7b")
METRICS = ("acc", "length")
PAPER_PREFIX = "paper: "  # the name of a paper row among measured ones (``siri compare --paper``)


def load_table1(size: str, path: str | Path | None = None) -> dict[str, Any]:
    """Table 1 for ``size`` (``1.5b`` or ``7b``): ``{"size", "base" (the base row's key), "rows": [{"key",
    "name", "model", "model_source", "cells": {benchmark: {"acc", "length"}}, "delta_acc_cr"}], "paper", "table",
    "protocol", "provenance"}``. ``path``: another file of the same shape (default: the package's copy)."""
    if size not in SIZES:
        raise EvalError(f"--size {size}: Table 1 has the sizes {', '.join(SIZES)}")
    try:
        text = Path(path).read_text() if path else resources.files("siri_rl").joinpath(TABLE1_FILE).read_text()
        data = json.loads(text)
        part = data["sizes"][size]
        rows = part["rows"]
        for r in rows:
            r["key"], r["name"], r["cells"]  # noqa: B018 - the fields every row must have
            for cell in r["cells"].values():
                for m in METRICS:
                    if cell.get(m) is not None:
                        float(cell[m])
        if part["base"] not in [r["key"] for r in rows]:
            raise KeyError(part["base"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EvalError(f"{path or TABLE1_FILE} is not a Table 1 file with size {size!r} "
                        f"({type(err).__name__}: {err})") from None
    meta = {k: v for k, v in data.items() if k != "sizes"}
    return {"size": size, "base": part["base"], "rows": rows, **meta}


def cell_value(row: dict[str, Any], benchmark: str, metric: str) -> float | None:
    """The paper's number of ``row`` on ``benchmark`` (``acc`` in %, ``length`` in tokens); None where missing."""
    value = row["cells"].get(benchmark, {}).get(metric)
    return None if value is None else float(value)


def paper_results(size: str, path: str | Path | None = None) -> list[Result]:
    """Table 1's rows as :class:`~siri_rl.results.Result` objects named ``paper: NAME``, holding the benchmarks
    whose Acc and Length are both known (no intervals, no per-problem counts: nothing to pair on), so that
    ``siri compare`` can set them beside measured results."""
    table = load_table1(size, path)
    out = []
    for r in table["rows"]:
        benchmarks = {b: {"acc": cell_value(r, b, "acc"), "length": cell_value(r, b, "length")}
                      for b in r["cells"]}
        benchmarks = {b: v for b, v in benchmarks.items() if None not in v.values()}
        out.append(Result(PAPER_PREFIX + r["name"], Path(f"paper-table1-{size}") / r["key"], benchmarks,
                          meta={"paper": table["paper"]}))
    return out


def filled_cells(table: dict[str, Any]) -> int:
    """How many Acc / Length cells of ``table`` hold a number."""
    return sum(v is not None for r in table["rows"] for cell in r["cells"].values() for v in cell.values())
