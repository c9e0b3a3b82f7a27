"""Evaluation metrics: pass@1 over n samples, mean response length, and the paper's ΔAcc/CR (SIRI §5.2, Table 1).

ΔAcc/CR trades accuracy against length relative to a base model: per benchmark
ΔAcc = max(acc/acc_base − 1, 0) and CR = length/length_base; ΔAcc/CR is averaged over the benchmarks both have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def pass_at_1(per_problem_correct: Sequence[Sequence[bool]]) -> float:
    """Mean accuracy over samples, averaged over problems (a fraction in [0, 1]).

    ``per_problem_correct[i]`` holds the correctness of every sample of problem i; problems weigh equally even
    when their sample counts differ (e.g. a partly finished run)."""
    rates = [sum(map(bool, s)) / len(s) for s in per_problem_correct if len(s)]
    if not rates:
        raise ValueError("pass_at_1 needs at least one problem with at least one sample")
    return sum(rates) / len(rates)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (Chen et al. 2021)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass_at_k needs k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_length(lengths: Sequence[int | float]) -> float:
    """Mean response length in tokens (0.0 for no responses)."""
    return float(sum(lengths) / len(lengths)) if lengths else 0.0


def _entry(name: str, side: str, value: Any) -> tuple[float, float]:
    try:
        acc, length = float(value["acc"]), float(value["length"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{side}[{name!r}] must be {{'acc': float, 'length': float}}, got {value!r}") from None
    return acc, length


def delta_acc_cr_table(base: Mapping[str, Mapping[str, Any]], model: Mapping[str, Mapping[str, Any]]) -> dict:
    """Per-benchmark ΔAcc, CR and ΔAcc/CR, plus their average over the benchmarks present in both.

    Returns ``{"benchmarks": {name: {"delta_acc", "cr", "delta_acc_cr"}}, "delta_acc_cr": float}``. Accuracy may
    be in percent or as a fraction, as long as both sides use the same scale.
    """
    shared = [name for name in model if name in base]
    if not shared:
        raise ValueError(
            f"no benchmark in common between base ({', '.join(base) or 'none'}) and model ({', '.join(model) or 'none'})"
        )
    rows = {}
    for name in shared:
        acc_base, len_base = _entry(name, "base", base[name])
        acc, length = _entry(name, "model", model[name])
        if acc_base <= 0 or len_base <= 0:
            raise ValueError(f"base {name!r} needs positive acc and length to compare against, got {base[name]!r}")
        delta_acc = max(acc / acc_base - 1.0, 0.0)
        cr = length / len_base
        rows[name] = {"delta_acc": delta_acc, "cr": cr, "delta_acc_cr": delta_acc / cr if cr > 0 else 0.0}
    average = sum(r["delta_acc_cr"] for r in rows.values()) / len(rows)
    return {"benchmarks": rows, "delta_acc_cr": average}


def delta_acc_cr(base: Mapping[str, Mapping[str, Any]], model: Mapping[str, Mapping[str, Any]]) -> float:
    """The paper's ΔAcc/CR of ``model`` against ``base``, averaged over the benchmarks both have.

    Each argument maps a benchmark name to ``{"acc": float, "length": float}`` — e.g. the ``benchmarks`` part of
    two ``summary.json`` files written by ``siri eval``.
    """
    return delta_acc_cr_table(base, model)["delta_acc_cr"]
