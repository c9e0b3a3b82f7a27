"""`siri eval`: sample a model on the math benchmarks, grade, summarise (paper §5.1 evaluation protocol).

The paper evaluates every model on AIME24, AIME25, AMC and MATH500 with 64 samples per problem at temperature 0.6,
top-p 0.95 and at most 16384 new tokens, and reports pass@1 (in percent) and the mean response length in tokens.
This package does exactly that, one idea per module:

* :mod:`~siri_rl.evaluate.config`: :class:`EvalConfig` (the arguments) and the paper's settings;
* :mod:`~siri_rl.evaluate.plan`: which samples, in which generate calls, with which seeds (resumable);
* :mod:`~siri_rl.evaluate.backends`: vLLM (one seeded request per sample) and transformers (batched generate);
* :mod:`~siri_rl.evaluate.stats`: pass@1, length, intervals, pass@k, maj@k, breakdowns, the average;
* :mod:`~siri_rl.evaluate.summary`: grading, the accuracy-vs-budget curve, summary.json;
* :mod:`~siri_rl.evaluate.report`: summary.md and budget_curve.png;
* :mod:`~siri_rl.evaluate.data_parallel`: ``--data-parallel-size N``, N vLLM engine processes;
* :mod:`~siri_rl.evaluate.driver`: :func:`run_eval` and :func:`report_only`.

The results directory it writes (samples.jsonl, eval_args.json, summary.json, ...) is defined in the core,
:mod:`siri_rl.results`. Names are loaded on first use, so ``import siri_rl.evaluate.stats`` (what ``siri compare``
needs) loads neither the driver nor the backends.
"""

from __future__ import annotations

import importlib
from typing import Any

from siri_rl.results import (
    ARGS_FILE,
    BUDGET_PNG,
    SAMPLES_FILE,
    SUMMARY_JSON,
    SUMMARY_MD,
    EvalError,
    iter_samples,
    read_samples,
    replace_atomically,
    sample_key,
)

_MODULES = {
    "config": ("PAPER_BENCHMARKS", "PAPER_N", "PAPER_TEMPERATURE", "PAPER_TOP_P", "PAPER_MAX_TOKENS", "BACKENDS",
               "BENCHMARK_TITLES", "EvalConfig", "resolve_budgets"),
    "plan": ("Unit", "sample_seed", "plan_units"),
    "backends": ("Completion", "TransformersBackend", "VLLMBackend", "generate_batch", "strip_eos"),
    "stats": ("problem_columns", "column_statistics", "summarize_samples", "problem_table", "summarize_average",
              "summarize_majority", "summarize_groups"),
    "summary": ("DEFAULT_GROUP_FIELDS", "grade_records", "problem_fields", "budget_pass", "budget_pass_with_average",
                "summarize_run"),
    "report": ("plus_minus", "summary_markdown", "write_summary", "plot_budget_curve"),
    "data_parallel": ("EnginePool",),
    "driver": ("load_eval_problems", "run_eval", "report_only"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = ["ARGS_FILE", "BUDGET_PNG", "SAMPLES_FILE", "SUMMARY_JSON", "SUMMARY_MD", "EvalError", "iter_samples",
           "read_samples", "replace_atomically", "sample_key", *_HOME]


def __getattr__(name: str) -> Any:
    """``siri_rl.evaluate.NAME``: imports the module that defines NAME (PEP 562)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
