"""Held-out validation during training, the ``validation:`` section both engines read (the paper's Figures 4 and
1: pass@1 and mean response length on AIME24 over the run, "we sample 32 outputs for each question during
training", §5.1).

```yaml
validation:
  benchmarks: [aime24]   # names or files, as `siri eval --benchmarks`
  every: 40              # rounds between validations (and one after the last round)
  n: 32                  # samples per problem
  temperature: 0.6
  max_tokens: 16384      # the fixed cap (tokens); default schedule.l_max, never the round's cap
```

A validation at ``round`` r is of the policy after r rounds of training (0: the base model, before round 0). Its
records (``RUN/validation.jsonl`` and one ``siri eval`` results directory per validation) belong to the run
directory, :mod:`siri_rl.run_dir`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The keys of the section, named in the one-line error an old config's veRL-only `eval:` section gets.
KEYS = ("benchmarks", "every", "n", "temperature", "top_p", "max_tokens", "limit", "at_start", "seed", "batch_size",
        "data_dir")


@dataclass
class ValidationSection:
    """``validation:``: held-out benchmarks sampled during training at a fixed cap. Empty ``benchmarks``: none."""

    benchmarks: list[str] = field(default_factory=list)  # names or files, as ``siri eval --benchmarks``
    every: int | None = None  # rounds between validations; None: only before round 0 (at_start) and at the end
    n: int = 32  # samples per problem (paper §5.1: 32 during training)
    temperature: float = 0.6  # paper §5.1
    top_p: float = 0.95  # as `siri eval` (paper §5.1)
    max_tokens: int | None = None  # the fixed cap (tokens); default schedule.l_max
    limit: int | None = None  # first K problems of each benchmark
    at_start: bool = True  # validate the base model before round 0 (Figure 4's first point)
    seed: int = 0  # seeds the samples as `siri eval --seed` does
    batch_size: int = 64  # rows per generate call without vLLM, as `siri eval --batch-size` (its default)
    data_dir: str | None = None  # local benchmark files (default $SIRI_DATA_DIR, then the hub)


def _count(value: Any) -> bool:  # a positive int (a bool is no count)
    return type(value) is int and value >= 1


def validation_problem(v: ValidationSection) -> str | None:
    """What is wrong with a ``validation:`` section, in one phrase naming the key (None: nothing)."""
    if isinstance(v.benchmarks, str) or not isinstance(v.benchmarks, list) or not all(
            isinstance(b, str) and b.strip() for b in v.benchmarks):
        return f"validation.benchmarks must be a list of benchmark names or files, e.g. [aime24], got {v.benchmarks!r}"
    if len(set(v.benchmarks)) != len(v.benchmarks):
        return f"validation.benchmarks lists a benchmark twice: {v.benchmarks}"
    if not _count(v.batch_size):
        return f"validation.batch_size must be a positive number of rows per generate call, got {v.batch_size!r}"
    for name in ("every", "max_tokens", "limit"):
        value = getattr(v, name)
        if value is not None and not _count(value):
            return f"validation.{name} must be a positive integer or null, got {value!r}"
    if not _count(v.n):
        return f"validation.n must be a positive number of samples per problem (paper: 32), got {v.n!r}"
    t, p = v.temperature, v.top_p
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        return f"validation.temperature must be a number >= 0 (paper: 0.6), got {t!r}"
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        return f"validation.top_p must be in (0, 1], got {p!r}"
    if not isinstance(v.at_start, bool):
        return f"validation.at_start must be true or false, got {v.at_start!r}"
    if type(v.seed) is not int:
        return f"validation.seed must be an integer, got {v.seed!r}"
    if v.data_dir is not None and not isinstance(v.data_dir, str):
        return f"validation.data_dir must be a folder path, got {v.data_dir!r}"
    return None


def validation_due(done_rounds: int, v: ValidationSection, rounds: int) -> bool:
    """Whether the policy after ``done_rounds`` rounds (of ``rounds``) is validated: before round 0 when
    ``at_start``, after every ``every``-th round, and after the last round."""
    if not v.benchmarks:
        return False
    if done_rounds == 0:
        return v.at_start
    return done_rounds == rounds or (v.every is not None and done_rounds % v.every == 0)


def validation_rounds(v: ValidationSection, rounds: int) -> list[int]:
    """Every ``round`` a run of ``rounds`` rounds validates at, in order."""
    return [r for r in range(rounds + 1) if validation_due(r, v, rounds)]
