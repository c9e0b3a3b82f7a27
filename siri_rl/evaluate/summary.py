"""summary.json of a run: grading glue, the accuracy-vs-budget curve (every response clipped at each budget, one
pass over the samples, no re-sampling), the breakdown fields, and the assembly with the run's provenance."""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from siri_rl.data import benchmark_name
from siri_rl.evaluate.config import EvalConfig
from siri_rl.evaluate.stats import (
    problem_table,
    summarize_average,
    summarize_groups,
    summarize_majority,
    summarize_samples,
)
from siri_rl.results import EvalError
from siri_rl.reward import decode_response

# Problem fields that are broken down by default wherever a benchmark has them (MATH500's difficulty level).
DEFAULT_GROUP_FIELDS = ("level",)


def grade_records(records: list[dict], cfg: EvalConfig) -> list[dict]:
    """Fill ``answer``, ``correct`` and ``grade_status`` of records with the core grader (process pool)."""
    from siri_rl.reward import grade_batch

    if not records:
        return records
    grades = grade_batch(
        [r["response"] for r in records],
        [r["gold"] for r in records],
        workers=cfg.grade_workers,
        timeout=cfg.grade_timeout,
        require_think_end=cfg.require_think_end,
    )
    for r, g in zip(records, grades, strict=True):
        r["answer"] = g.answer
        r["correct"] = bool(g.correct)
        r["grade_status"] = getattr(g, "status", None)
    return records


def problem_fields(cfg: EvalConfig) -> tuple[dict[str, dict[str, dict[str, Any]]], str | None]:
    """Values of the breakdown fields for every problem: ``cfg.group_by`` (an error if no benchmark has one of
    them) and :data:`DEFAULT_GROUP_FIELDS` wherever a benchmark has them. Returns ``(fields, note)``: ``note`` says
    why the default breakdowns were skipped (benchmark data not loadable), else None."""
    from siri_rl.data import BENCHMARKS, load_benchmark
    from siri_rl.errors import DataError

    asked = [f for f in cfg.group_by if f]
    wanted = list(dict.fromkeys(asked + list(DEFAULT_GROUP_FIELDS)))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in cfg.benchmarks:
        spec = BENCHMARKS.get(bench)
        if not asked and not (spec and set(DEFAULT_GROUP_FIELDS) & set(spec.extra_fields)):
            continue  # no breakdown asked for and none known to exist: do not load the data again
        try:
            rows = load_benchmark(bench, cfg.data_dir, keep=wanted)
        except DataError as e:
            if asked:
                raise EvalError(f"--group-by needs the benchmark data of {bench}: {e}") from None
            return {}, f"breakdowns skipped: {e}"
        present = {f: {str(r["id"]): r[f] for r in rows if f in r} for f in wanted}
        present = {f: v for f, v in present.items() if v}
        if present:
            out[benchmark_name(bench)] = present  # records name a file benchmark by its stem
    for f in asked:
        if not any(f in v for v in out.values()):
            raise EvalError(f"--group-by {f}: no problem of {', '.join(cfg.benchmarks)} has a field {f!r}; name a "
                            "field of the benchmark files (e.g. MATH500's level or subject, AMC's difficulty)")
    return out, None


# "answer" is kept for maj@k (a short string); text and token ids are dropped.
SLIM_KEYS = ("benchmark", "problem_id", "sample_index", "correct", "answer", "response_tokens", "finish_reason",
             "grade_status")


def budget_pass(
    records: Iterable[dict],
    budgets: Sequence[int],
    tokenizer: Any,
    *,
    grade: Callable[[list[dict]], list[dict]],
    require_think_end: bool = True,
) -> tuple[list[dict], dict[str, list[dict]]]:
    """One pass over the samples: slim records (no text, no token ids) and the accuracy-vs-budget curve.

    For each budget B shorter than a response, the first B token ids are decoded, as if generation had stopped
    there (sampling is autoregressive: with the same random stream, a run with max_tokens=B would have produced
    that prefix), and the clipped response counts B tokens; clipped texts without an extractable answer are wrong
    without grading, the others are graded in one ``grade`` call. Returns ``(slim_records, {benchmark: [{budget, acc, acc_ci, length, length_ci},
    ...]})``.
    """
    slim, curve, _ = budget_pass_with_average(records, budgets, tokenizer, grade=grade,
                                              require_think_end=require_think_end)
    return slim, curve


def budget_pass_with_average(
    records: Iterable[dict],
    budgets: Sequence[int],
    tokenizer: Any,
    *,
    grade: Callable[[list[dict]], list[dict]],
    require_think_end: bool = True,
) -> tuple[list[dict], dict[str, list[dict]], list[dict]]:
    """:func:`budget_pass`, plus the curve of the average over benchmarks with its stratified interval
    (``[{budget, acc, acc_ci, length, length_ci}]``, see :func:`summarize_average`)."""
    from siri_rl.reward import extract_answer

    slim: list[dict] = []
    to_grade: list[dict] = []
    clipped: dict[int, dict[int, bool]] = {b: {} for b in budgets}  # budget -> record index -> correct
    for r in records:
        i = len(slim)
        slim.append({k: r[k] for k in SLIM_KEYS if k in r})
        n = r["response_tokens"]
        ids = None
        for b in budgets:
            if n <= b:
                continue
            if ids is None:
                ids = r.get("token_ids") or tokenizer.encode(r["response"], add_special_tokens=False)
            text = decode_response(tokenizer, ids[:b])
            if extract_answer(text, require_think_end=require_think_end) is None:
                clipped[b][i] = False
            else:
                to_grade.append({"response": text, "gold": r["gold"], "budget": b, "index": i})
    grade(to_grade)  # fills "correct"
    for g in to_grade:
        clipped[g["budget"]][g["index"]] = bool(g["correct"])
    curve: dict[str, list[dict]] = defaultdict(list)
    average: list[dict] = []
    keys = ("acc", "acc_ci", "length", "length_ci")
    for b in budgets:
        view = [x if i not in clipped[b] else
                {**x, "correct": clipped[b][i], "response_tokens": b, "finish_reason": "length"}
                for i, x in enumerate(slim)]
        for bench, summ in summarize_samples(view).items():
            curve[bench].append({"budget": b, **{k: summ[k] for k in keys}})
        if len(curve) > 1:
            avg = summarize_average(problem_table(view))
            average.append({"budget": b, **{k: avg[k] for k in keys}})
    return slim, dict(curve), average


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def summarize_run(records: Iterable[dict], cfg: EvalConfig, tokenizer: Any) -> dict:
    """summary.json content: per-benchmark metrics (with the budget curve, maj@k and breakdowns), their average
    over benchmarks, per-problem counts (what ``siri compare`` pairs on) and run metadata."""
    import siri_rl
    from siri_rl import metrics
    from siri_rl.reward import is_equivalent

    slim, curve, avg_curve = budget_pass_with_average(records, cfg.budgets, tokenizer,
                                                      grade=lambda rs: grade_records(rs, cfg),
                                                      require_think_end=cfg.require_think_end)
    benchmarks = summarize_samples(slim)
    order = {benchmark_name(b): i for i, b in enumerate(cfg.benchmarks)}
    benchmarks = dict(sorted(benchmarks.items(), key=lambda kv: order.get(kv[0], len(order))))
    majority = summarize_majority(slim, equivalent=lambda a, b: is_equivalent(a, b, timeout=cfg.grade_timeout),
                                  workers=cfg.grade_workers or os.cpu_count() or 1)
    fields, groups_note = problem_fields(cfg)
    groups = summarize_groups(slim, fields)
    for bench, v in benchmarks.items():
        v.update(majority.get(bench, {}))
        if bench in groups:
            v["groups"] = groups[bench]
        if bench in curve:
            v["budgets"] = curve[bench]
    table = problem_table(slim)
    table = {b: table[b] for b in benchmarks}
    average = summarize_average(table)
    if average is not None and avg_curve:
        average["budgets"] = avg_curve
    return {
        "benchmarks": benchmarks,
        "average": average,
        "problems": table,
        "meta": {
            "model": cfg.model,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)} | {"out": str(cfg.out)},
            "siri_rl_version": getattr(siri_rl, "__version__", None),
            "siri_rl_git_revision": _git_revision(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "statistics": {
                "confidence": metrics.CONFIDENCE,
                "bootstrap_resamples": metrics.BOOTSTRAP_RESAMPLES,
                "bootstrap_seed": metrics.BOOTSTRAP_SEED,
                "breakdowns_note": groups_note,
            },
        },
    }
