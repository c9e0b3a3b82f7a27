"""Which samples a run draws, in which generate calls, with which seeds.

With vLLM, sample ``i`` of a problem is one request whose seed is :func:`sample_seed` of (run seed, benchmark,
problem, ``i``) alone, so a resumed run regenerates exactly the missing samples, whatever was finished before. With
transformers the random stream belongs to a whole batch, so a batch that was cut part-way is generated again in
full and only its missing samples are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from siri_rl.evaluate.config import EvalConfig
from siri_rl.sampling import sample_seed

__all__ = ["Unit", "plan_units", "sample_seed"]  # sample_seed lives in the core (siri_rl.sampling)


@dataclass
class Unit:
    """Samples ``sample_indices`` of one problem. ``seed`` is the seed of the unit's first planned sample (the
    transformers backend seeds a whole batch with its first unit's); vLLM seeds each sample on its own."""

    benchmark: str
    problem_id: str
    gold: str
    prompt_ids: list[int]
    sample_indices: list[int]
    seed: int


def plan_units(
    problems: dict[str, list[dict]], prompt_ids: dict[tuple[str, str], list[int]], cfg: EvalConfig, done: set
) -> list[tuple[int, list[Unit]]]:
    """Split the whole run into generate calls of about ``batch_size`` samples (vLLM: ``batch_size * n``).

    Calls are planned over all samples, finished or not, so they are the same in a resumed run. vLLM seeds every
    sample on its own, so only the missing samples of a call are kept. A transformers batch has one random
    stream, so a call with anything missing is kept whole (same seed, same rows) and the driver writes only the
    missing samples.
    """
    per_unit = cfg.batch_size if cfg.backend == "transformers" else cfg.n
    per_call = cfg.batch_size if cfg.backend == "transformers" else cfg.batch_size * cfg.n
    calls: list[list[Unit]] = []
    current: list[Unit] = []
    size = 0
    for bench, rows in problems.items():
        for p in rows:
            pid = str(p["id"])
            for start in range(0, cfg.n, per_unit):
                idx = list(range(start, min(cfg.n, start + per_unit)))
                if size + len(idx) > per_call and current:
                    calls.append(current)
                    current, size = [], 0
                seed = sample_seed(cfg.seed, bench, pid, start)
                current.append(Unit(bench, pid, str(p["answer"]), prompt_ids[(bench, pid)], idx, seed))
                size += len(idx)
    if current:
        calls.append(current)
    pending = []
    for call in calls:
        kept = []
        for u in call:
            missing = [i for i in u.sample_indices if (u.benchmark, u.problem_id, i) not in done]
            if missing:
                kept.append(Unit(u.benchmark, u.problem_id, u.gold, u.prompt_ids, missing, u.seed))
        if kept:
            # the batch seed (transformers) is the first planned unit's, finished or not
            pending.append((call[0].seed, call if cfg.backend == "transformers" else kept))
    return pending
