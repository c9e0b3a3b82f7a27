"""`siri reproduce table1`: evaluate the paper's released checkpoints with its own protocol (§5.1: AIME24, AIME25,
AMC, MATH500; 64 samples per problem at temperature 0.6, top-p 0.95, at most 16384 new tokens) using ``siri eval``'s
code, and set each measured number beside the paper's Table 1 (:mod:`siri_rl.paper`), cell by cell.

::

    DIR/<row>/         one ``siri eval`` results directory per evaluated row (``base``, ``siri-low``, ...) and per
                       ``--add`` label (resumable; a finished one is not opened again, as in ``siri select``)
    DIR/table1.md      per model and benchmark: the paper's number, ours with its 95% interval, and a flag
    DIR/table1.json    the same, with the sampling intervals, the settings and which of them differ from the paper's
    DIR/table1.png     accuracy against length: ours with error bars, the paper's rows where Table 1 gives them

A flag reads the paper's number against our 95% bootstrap interval over problems (``siri eval``'s). The paper
evaluated the same problems, so a difference between the two is, beyond a difference of setup, sampling noise of
the 64 samples per problem on both sides: its interval is about √2 times our sampling interval (problems fixed,
samples redrawn; summary.json's ``acc_se`` / ``length_se``), the interval a difference must leave to be real.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siri_rl.evaluate.config import (
    BENCHMARK_TITLES,
    PAPER_BENCHMARKS,
    PAPER_MAX_TOKENS,
    PAPER_N,
    PAPER_TEMPERATURE,
    PAPER_TOP_P,
)
from siri_rl.paper import cell_value, load_table1
from siri_rl.results import EvalError, Result, load_result
from siri_rl.selection import is_evaluated

TABLE1_MD = "table1.md"
TABLE1_JSON = "table1.json"
TABLE1_PNG = "table1.png"
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
# The settings of §5.1 that make a number comparable with Table 1; any other value is reported as an override.
PAPER_SETTINGS = {"benchmarks": list(PAPER_BENCHMARKS), "n": PAPER_N, "temperature": PAPER_TEMPERATURE,
                  "top_p": PAPER_TOP_P, "max_tokens": PAPER_MAX_TOKENS, "limit": None}
# Problem counts of the paper's benchmarks (siri_rl/data.py BENCHMARKS), for a plan made without reading the hub.
KNOWN_PROBLEMS = {"aime24": 30, "aime25": 30, "amc": 83, "math500": 500}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Job:
    """One model to evaluate: ``key`` (its row's key or its ``--add`` label, the results folder's name), its
    display ``name``, ``model`` (hub id or path) and the paper's ``row`` (None for an added model)."""

    key: str
    name: str
    model: str
    row: dict[str, Any] | None


def parse_assignments(items: list[str] | None, option: str) -> dict[str, str]:
    """``["ROW=PATH", ...]`` -> ``{ROW: PATH}``; a malformed or repeated item is an error naming ``option``."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise EvalError(f"{option} must look like NAME=PATH, got {item!r}")
        if key in out:
            raise EvalError(f"{option} {key} is given twice")
        out[key] = value
    return out


def plan_jobs(table: dict[str, Any], *, rows: list[str] | None = None, models: dict[str, str] | None = None,
              added: dict[str, str] | None = None) -> list[Job]:
    """The models to evaluate: ``rows`` (keys of ``table``; default every row with a released checkpoint or a
    ``models`` override), each at its released id unless ``models`` points it elsewhere, then the ``added``
    models (label -> path). Raises :class:`EvalError` (one line) on an unknown row, a row without a checkpoint, or
    a label that is not a folder name or clashes with a row."""
    models, added = models or {}, added or {}
    by_key = {r["key"]: r for r in table["rows"]}
    known = ", ".join(by_key)
    for option, keys in (("--rows", rows or []), ("--model", list(models))):
        for key in keys:
            if key not in by_key:
                raise EvalError(f"{option} {key}: no such row of Table 1 ({table['size']}); choose from {known}")
    chosen = rows or [k for k, r in by_key.items() if r.get("model") or k in models]
    jobs = []
    for key in dict.fromkeys(chosen):
        model = models.get(key) or by_key[key].get("model")
        if not model:
            raise EvalError(f"row {key} ({by_key[key]['name']}) has no released checkpoint; give one with "
                            f"--model {key}=PATH, or leave it out of --rows")
        jobs.append(Job(key, by_key[key]["name"], model, by_key[key]))
    for label, path in added.items():
        if not _LABEL.match(label) or label in by_key:
            raise EvalError(f"--add {label}={path}: the label names a results folder, so it takes letters, digits, "
                            f"'.', '_' and '-' and must differ from the rows ({known})")
        jobs.append(Job(label, label, path, None))
    return jobs


def overrides(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings that differ from the paper's protocol: ``{name: {"paper": value, "ours": value}}``."""
    return {k: {"paper": v, "ours": list(settings[k]) if k == "benchmarks" else settings[k]}
            for k, v in PAPER_SETTINGS.items()
            if k in settings and (list(settings[k]) if k == "benchmarks" else settings[k]) != v}


def problem_counts(settings: dict[str, Any]) -> dict[str, int | None]:
    """Problems per benchmark, read from local files where they are (``--data-dir``, ``$SIRI_DATA_DIR`` or a
    path), else the published counts; None where neither is known. Reads no model and nothing from the hub."""
    from siri_rl.data import benchmark_name, load_benchmark

    data_dir = settings.get("data_dir") or os.environ.get("SIRI_DATA_DIR")
    counts: dict[str, int | None] = {}
    for b in settings["benchmarks"]:
        local = Path(b).is_file() or (data_dir and any((Path(data_dir) / f"{b}{s}").is_file()
                                                       for s in (".jsonl", ".json", ".parquet")))
        n = len(load_benchmark(b, data_dir)) if local else KNOWN_PROBLEMS.get(benchmark_name(b))
        counts[benchmark_name(b)] = min(n, settings["limit"]) if n is not None and settings.get("limit") else n
    return counts


def plan_text(table: dict[str, Any], jobs: list[Job], settings: dict[str, Any], out: Path) -> str:
    """``--dry-run``'s plan: the models (and which are evaluated already), the benchmarks with their problem
    counts, samples, and the tokens to generate at most (every sample running to ``max_tokens``)."""
    from siri_rl.evaluate import EvalConfig

    counts = problem_counts(settings)
    problems = sum(c for c in counts.values() if c is not None)
    per_model = problems * settings["n"]
    todo = [j for j in jobs if not is_evaluated(EvalConfig(model=j.model, out=out / j.key, **settings))]
    lines = [f"siri reproduce table1 --size {table['size']}: plan (nothing is loaded)", "", "models:"]
    for j in jobs:
        state = "evaluated already" if j not in todo else "to evaluate"
        lines.append(f"  {j.key:<20} {j.model}  -> {out / j.key}  ({state})")
        expected = _expected_tokens(j, counts, settings["n"])
        if expected is not None:
            lines.append(f"  {'':<20} about {expected:,} tokens at Table 1's mean lengths")
    lines += ["", "benchmarks: " + ", ".join(f"{b} ({'?' if c is None else c} problems)" for b, c in counts.items()),
              f"samples: {settings['n']} per problem at temperature {settings['temperature']}, top-p "
              f"{settings['top_p']}, at most {settings['max_tokens']} new tokens each",
              f"per model: {per_model:,} samples, at most {per_model * settings['max_tokens']:,} tokens",
              f"to generate: {len(todo)} of {len(jobs)} models, {per_model * len(todo):,} samples, at most "
              f"{per_model * len(todo) * settings['max_tokens']:,} tokens"]
    if None in counts.values():
        lines.append("  (benchmarks marked ? are not counted: their problems are known only once loaded)")
    diff = overrides(settings)
    lines.append("settings: the paper's (§5.1)" if not diff else "settings that differ from the paper's: " +
                 "; ".join(f"{k} {v['ours']} (paper {v['paper']})" for k, v in diff.items()))
    return "\n".join(lines) + "\n"


def _expected_tokens(job: Job, counts: dict[str, int | None], n: int) -> int | None:
    """Problems x ``n`` x Table 1's mean length, summed over the benchmarks (None where a length or count is
    missing): what the evaluation generates if our lengths match the paper's."""
    if job.row is None:
        return None
    lengths = [cell_value(job.row, b, "length") for b in counts]
    if None in lengths or None in counts.values():
        return None
    return round(sum(c * n * length for c, length in zip(counts.values(), lengths, strict=True)))


def check_models(jobs: list[Job]) -> None:
    """Every model can be loaded (an existing folder, or a hub id the cache or the hub knows), checked before
    any is loaded (:func:`siri_rl.models.check_model_source`: one request per hub id)."""
    from siri_rl.models import check_model_source

    for j in jobs:
        if j.row is None:
            option = f"--add {j.key}"
        else:
            option = f"row {j.key}" if j.model == j.row.get("model") else f"--model {j.key}"
        check_model_source(j.model, option=option)


def evaluate_jobs(jobs: list[Job], out: Path, settings: dict[str, Any],
                  log: Callable[[str], None] = lambda line: None) -> dict[str, Result]:
    """Evaluate each job into ``out/<key>/`` with :func:`siri_rl.evaluate.run_eval`, skipping those evaluated
    already with the same arguments (a partial one resumes); returns key -> its result."""
    from siri_rl.evaluate import EvalConfig, run_eval

    for j in jobs:
        cfg = EvalConfig(model=j.model, out=out / j.key, **settings)
        if is_evaluated(cfg):
            log(f"{j.key}: evaluated already ({out / j.key})")
            continue
        log(f"evaluating {j.key} ({j.model}) into {out / j.key} ...")
        run_eval(cfg)
    return {j.key: load_result(out / j.key, name=j.name) for j in jobs}


def compare_cell(paper: float | None, ours: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """One cell: the paper's number, ours (``acc`` % or ``length`` tokens) with its 95% interval over problems,
    ``inside`` (the paper's number within it; None without both), ``diff`` (ours - paper), ``sampling`` (half
    the 95% sampling interval of ours, problems fixed) and ``needed`` (√2 x that: the half-width a difference
    between two runs of this protocol must exceed to be more than sampling noise), ``real`` (abs(diff) > needed)."""
    value = None if ours is None else ours.get(metric)
    ci = None if ours is None else ours.get(f"{metric}_ci")
    se = None if ours is None else ours.get(f"{metric}_se")
    cell: dict[str, Any] = {"paper": paper, "ours": value, "ci": ci, "inside": None, "diff": None,
                            "sampling": None if se is None else round(Z95 * se, 4), "needed": None, "real": None}
    if se is not None:
        cell["needed"] = round(math.sqrt(2) * Z95 * se, 4)
    if paper is not None and value is not None:
        cell["diff"] = round(value - paper, 4)
        if ci:
            cell["inside"] = ci[0] <= paper <= ci[1]
        if cell["needed"] is not None:
            cell["real"] = abs(cell["diff"]) > cell["needed"]
    return cell


def _ours_average(r: Result, names: list[str]) -> dict[str, Any] | None:
    from siri_rl.compare import average_intervals

    have = [n for n in names if n in r.benchmarks]
    if not have:
        return None
    acc, length = r.average_of(names)
    acc_ci, len_ci = average_intervals(r, names)
    out = {"acc": acc, "acc_ci": acc_ci, "length": length, "length_ci": len_ci}
    for m in ("acc", "length"):  # the average's sampling error: its benchmarks' errors are independent
        ses = [r.benchmarks[n].get(f"{m}_se") for n in have]
        out[f"{m}_se"] = None if None in ses else math.sqrt(sum(s * s for s in ses)) / len(have)
    return out


def _paper_average(row: dict[str, Any], names: list[str], metric: str) -> float | None:
    values = [cell_value(row, n, metric) for n in names]
    return None if None in values or not values else sum(values) / len(values)


def table1_data(table: dict[str, Any], jobs: list[Job], results: dict[str, Result],
                settings: dict[str, Any]) -> dict[str, Any]:
    """Every row of Table 1 (evaluated or not) and every added model: per benchmark and on average, an ``acc``
    and a ``length`` cell (:func:`compare_cell`), and ΔAcc/CR, the paper's and ours against our base row."""
    from siri_rl.data import benchmark_name
    from siri_rl.metrics import delta_acc_cr

    names = [benchmark_name(b) for b in settings["benchmarks"]]
    base = results.get(table["base"])
    by_key = {j.key: j for j in jobs}
    rows = []
    for entry in [*table["rows"], *[{"key": j.key, "name": j.name, "cells": {}} for j in jobs if j.row is None]]:
        r = results.get(entry["key"])
        cells = {n: {m: compare_cell(cell_value(entry, n, m), r.benchmarks.get(n) if r else None, m)
                     for m in ("acc", "length")} for n in names}
        avg = _ours_average(r, names) if r else None
        average = {m: compare_cell(_paper_average(entry, names, m), avg, m) for m in ("acc", "length")}
        ours_dac = None
        if r is not None and base is not None and entry["key"] != table["base"]:
            try:
                ours_dac = delta_acc_cr(base.benchmarks, r.benchmarks)
            except ValueError:  # no shared benchmark, or a base accuracy of 0
                ours_dac = None
        rows.append({"key": entry["key"], "name": entry["name"], "added": entry["key"] in by_key and
                     by_key[entry["key"]].row is None, "model": by_key[entry["key"]].model if entry["key"] in by_key
                     else entry.get("model"), "evaluated": r is not None, "path": str(r.path) if r else None,
                     "cells": cells, "average": average,
                     "delta_acc_cr": {"paper": entry.get("delta_acc_cr"), "ours": ours_dac}})
    return {"size": table["size"], "paper": table["paper"], "table": table["table"], "base": table["base"],
            "benchmarks": names, "settings": {k: settings[k] for k in PAPER_SETTINGS if k in settings},
            "overrides": overrides(settings), "provenance": table["provenance"], "rows": rows}


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def _flag(cell: dict[str, Any], fmt: str) -> str:
    if cell["paper"] is None or cell["ours"] is None:
        return "–"
    if cell["inside"]:
        return "✓"
    text = "⚠ Δ" + format(cell["diff"], "+" + fmt)
    if cell["needed"] is None:
        return text
    return f"{text}, needs ±{format(cell['needed'], fmt)}: " + ("real" if cell["real"] else "sampling noise")


def _ours(cell: dict[str, Any], fmt: str) -> str:
    ci = cell["ci"]
    return _num(cell["ours"], fmt) + (f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]" if ci else "")


def table1_markdown(data: dict[str, Any]) -> str:
    """table1.md: per model and benchmark (then the average), the paper's Acc and Length, ours with its 95%
    interval and the flag; ΔAcc/CR; what the flags mean, the settings that differ from the paper's, provenance."""
    head = ["Model", "Benchmark", "Acc paper", "Acc ours [95% CI]", "Acc", "Len paper", "Len ours [95% CI]", "Len"]
    lines = [f"# Table 1 ({data['size']}), paper and ours", "", f"{data['paper']}, {data['table']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in data["rows"]:
        name = row["name"] + (" (ours)" if row["added"] else "") + ("" if row["evaluated"] else " (not evaluated)")
        if not row["evaluated"] and all(c[m]["paper"] is None for c in row["cells"].values() for m in c):
            lines.append(f"| {name} | all | " + " | ".join(["–"] * (len(head) - 2)) + " |")  # nothing to show
            continue
        for bench, cells in [*row["cells"].items(), ("average", row["average"])]:
            a, n = cells["acc"], cells["length"]
            lines.append("| " + " | ".join([name, BENCHMARK_TITLES.get(bench, bench), _num(a["paper"], ".1f"),
                                            _ours(a, ".1f"), _flag(a, ".1f"), _num(n["paper"], ".0f"),
                                            _ours(n, ".0f"), _flag(n, ".0f")]) + " |")
    lines += ["", "| Model | ΔAcc/CR paper | ΔAcc/CR ours |", "|---|---|---|"]
    for row in data["rows"]:
        if row["key"] != data["base"]:
            d = row["delta_acc_cr"]
            lines.append(f"| {row['name']} | {_num(d['paper'], '.3f')} | {_num(d['ours'], '.3f')} |")
    filled = sum(c[m]["paper"] is not None for r in data["rows"] for c in r["cells"].values() for m in c)
    lines += ["", "Acc: pass@1 (%); Len: mean response length (tokens); [95% CI]: bootstrap over problems "
              "(siri eval's). ✓: the paper's number lies inside our interval. ⚠ Δ: it lies outside; Δ = ours − "
              "paper, and 'needs ±x' is the interval a difference between two runs of this protocol on the same "
              "problems must leave to be more than sampling noise (√2 × our 95% sampling interval, problems "
              "fixed): 'real' where |Δ| exceeds it. –: no number to compare (the paper's cell is missing, or the "
              "model was not evaluated)."]
    diff = data["overrides"]
    lines.append("Settings: the paper's (§5.1)." if not diff else "Settings that differ from the paper's, so the "
                 "numbers are not Table 1's: " + "; ".join(f"{k} {v['ours']} (paper {v['paper']})"
                                                           for k, v in diff.items()) + ".")
    lines.append(f"Paper cells filled in: {filled} of {2 * len(data['benchmarks']) * len(data['rows'])}. "
                 f"Provenance: {data['provenance']['cells']}")
    return "\n".join(lines) + "\n"


def write_table1(data: dict[str, Any], out: Path) -> list[Path]:
    """table1.md, table1.json and table1.png into ``out``, each atomically; returns their paths."""
    import json

    from siri_rl.compare import mark_pareto, plot_pareto
    from siri_rl.results import replace_atomically

    md, text = table1_markdown(data), json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    points = []
    for row in data["rows"]:
        a, n = row["average"]["acc"], row["average"]["length"]
        if a["ours"] is not None:
            points.append({"name": row["name"], "avg_acc": a["ours"], "avg_acc_ci": a["ci"],
                           "avg_length": n["ours"], "avg_length_ci": n["ci"]})
        if a["paper"] is not None and n["paper"] is not None:
            points.append({"name": f"{row['name']} (paper)", "avg_acc": a["paper"], "avg_acc_ci": None,
                           "avg_length": n["paper"], "avg_length_ci": None})
    mark_pareto(points)
    base = next(r["name"] for r in data["rows"] if r["key"] == data["base"])
    replace_atomically(lambda p: p.write_text(md), out / TABLE1_MD)
    replace_atomically(lambda p: p.write_text(text), out / TABLE1_JSON)
    paper = {p["name"] for p in points if p["name"].endswith(" (paper)")}
    replace_atomically(lambda p: plot_pareto({"rows": points, "base": base}, p, hollow=paper,
                                             title=f"Table 1 ({data['size']}), ◇ paper"),
                       out / TABLE1_PNG)
    return [out / TABLE1_MD, out / TABLE1_JSON, out / TABLE1_PNG]


def run_table1(size: str, out: str | Path, settings: dict[str, Any], *, rows: list[str] | None = None,
               models: dict[str, str] | None = None, added: dict[str, str] | None = None,
               reference: str | Path | None = None, dry_run: bool = False,
               log: Callable[[str], None] = lambda line: None) -> dict[str, Any] | str:
    """``siri reproduce table1``: plan (every input checked before anything loads), evaluate what is missing,
    write table1.md / .json / .png. ``settings``: :class:`~siri_rl.evaluate.EvalConfig` fields but ``model`` and
    ``out``. ``reference``: another Table 1 file. Returns the table's data, or the plan text with ``dry_run``."""
    from siri_rl.evaluate import EvalConfig

    out = Path(out)
    table = load_table1(size, reference)
    jobs = plan_jobs(table, rows=rows, models=models, added=added)
    EvalConfig(model="-", out=out, **settings)  # bad settings fail before any model is loaded
    if dry_run:
        return plan_text(table, jobs, settings, out)
    check_models(jobs)
    results = evaluate_jobs(jobs, out, settings, log)
    data = table1_data(table, jobs, results, settings)
    write_table1(data, out)
    return data
