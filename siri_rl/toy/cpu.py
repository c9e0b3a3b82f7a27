"""How many torch threads the toy uses, and how long its run should take: what ``siri train`` says first.

On a 2-core machine two torch threads make the toy 1.4-1.6x faster than one when the machine is idle, and 3-5x
slower than one while a single other CPU-bound process runs (torch's threads wait for each other at every
operation, and one of them keeps losing its core): docs/benchmarks.md, "Torch threads". ``toy.torch_threads:
auto`` (the shipped toy configs) therefore looks at the machine before each phase and uses the CPUs that are idle.
"""

from __future__ import annotations

import os
import time
from typing import Any

AUTO = "auto"
BUSY_SAMPLE_S = 0.5  # how long the CPUs are watched before a phase (seconds)

# The embedded default's phases on an idle 2-core machine with 2 torch threads, from an empty cache (2026-12-07,
# docs/benchmarks.md "The toy over seeds": base build 182 s, RL 215 s with its validations, evaluation 20 s):
# seconds per supervised example of the base-model build (800 x 32), per rollout of RL (180 x 16 x 8), per held-out
# sample (7 x 768).
SFT_S_PER_EXAMPLE = 0.0071
RL_S_PER_ROLLOUT = 0.0093
EVAL_S_PER_SAMPLE = 0.0037


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cpus(sample_s: float = BUSY_SAMPLE_S) -> float | None:
    """CPUs' worth of work other processes did over ``sample_s`` seconds (this process sleeps meanwhile), from
    ``/proc/stat``; None where it cannot be read."""

    def snapshot() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user..steal; guest time is already in user

    first = snapshot()
    time.sleep(sample_s)
    second = snapshot()
    if first is None or second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (total - idle) / total * usable_cpus()


def choose_threads(setting: Any) -> tuple[int | None, str]:
    """(torch threads, why) for ``toy.torch_threads``: a number as given, null for torch's own choice, ``auto``
    for the CPUs no other process is using now (at least one)."""
    if setting != AUTO:
        return setting, "toy.torch_threads" if setting else "torch's default"
    cpus = usable_cpus()
    busy = busy_cpus()
    if busy is None:
        return cpus, f"{cpus} CPUs"
    threads = max(1, min(cpus, round(cpus - busy)))
    if threads == cpus:
        return threads, f"{cpus} CPUs, idle"
    return threads, f"other processes are using {busy:.1f} of {cpus} CPUs"


def set_threads(setting: Any) -> str:
    """Apply :func:`choose_threads` to torch; a phrase for the console (``2 torch threads (2 CPUs, idle)``)."""
    import torch

    threads, why = choose_threads(setting)
    if threads:
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    return f"{n} torch thread{'s' if n != 1 else ''} ({why})"


def planned_checkpoints(schedule: Any, rounds: int) -> int:
    """How many trough/peak checkpoints a run of ``rounds`` rounds is expected to name. A cyclic schedule knows them
    in advance; the closed-loop one (siri_rl/adaptive.py) finds them as it runs, one trough and one peak per nominal
    cycle when it never holds, fewer when it does: that nominal count is the estimate."""
    from siri_rl.adaptive import AdaptiveSchedule

    if isinstance(schedule, AdaptiveSchedule):  # its checkpoints() takes the run's state, not a round count
        return 2 * (rounds // schedule.cycle)
    return len(schedule.checkpoints(rounds))


def expected_seconds(cfg: Any, *, base_cached: bool) -> dict[str, float]:
    """Rough durations of a toy run's phases on an idle 2-core machine (seconds): ``base`` (0 when cached), ``rl``,
    ``eval`` (the base and every trough/peak checkpoint on the held-out problems)."""
    from siri_rl.toy import toy_spec

    spec, t, ev = toy_spec(cfg), cfg.training, cfg.toy.eval
    rollouts = t.rounds * t.prompts_per_round * t.group_size
    models = 1 + max(1, planned_checkpoints(cfg.schedule, t.rounds))  # the base, each trough/peak (or the final model)
    samples = models * ev.per_difficulty * len(spec.levels) * ev.n
    return {"base": 0.0 if base_cached else spec.sft_steps * spec.sft_batch_size * SFT_S_PER_EXAMPLE,
            "rl": rollouts * RL_S_PER_ROLLOUT, "eval": samples * EVAL_S_PER_SAMPLE}
