"""Length schedules: the rollout cap L as a function of the rollout round (SIRI paper, §4.3).

One *round* (``step`` below) is one batch of rollouts: every prompt of that batch is sampled with the same maximum
response length L, and the length-capped reward scores a response 1 only if its answer fits in L tokens. Steps
count from 0. With cycle T, L_max and L_min:

* ``constant``      L = L_max
* ``stair``         L_max for the first half of every cycle, L_min for the second half
* ``cosine``        L = (L_max + L_min)/2 + (L_max − L_min)/2 · cos(2π t / T)   (starts at L_max, trough at T/2)
* ``stair-cosine``  with φ = 2π (t mod T) / T: hold L_max for φ < π/2, cosine down over [π/2, π),
                    hold L_min over [π, 3π/2), cosine back up over [3π/2, 2π)
* ``stages``        piecewise constant from ``[(start_step, L), ...]`` — DeepScaleR's 8K → 16K baseline is
                    ``[(0, 8192), (320, 16384)]``
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("constant", "stair", "cosine", "stair-cosine", "stages")
CYCLIC_KINDS = ("stair", "cosine", "stair-cosine")


class ScheduleError(ValueError):
    """Impossible schedule parameters."""


# --- the four shapes, one small function each; they return the unrounded cap in tokens -----------------------


def constant(step: int, l_max: int) -> float:
    return float(l_max)


def stair(step: int, l_max: int, l_min: int, cycle: int) -> float:
    return float(l_max if (step % cycle) < cycle / 2 else l_min)


def cosine(step: int, l_max: int, l_min: int, cycle: int) -> float:
    mid, amp = (l_max + l_min) / 2, (l_max - l_min) / 2
    return mid + amp * math.cos(2 * math.pi * step / cycle)


def stair_cosine(step: int, l_max: int, l_min: int, cycle: int) -> float:
    mid, amp = (l_max + l_min) / 2, (l_max - l_min) / 2
    phi = 2 * math.pi * (step % cycle) / cycle
    if phi < math.pi / 2:
        return float(l_max)
    if phi < math.pi:
        return mid + amp * math.cos(2 * (phi - math.pi / 2))
    if phi < 3 * math.pi / 2:
        return float(l_min)
    return mid + amp * math.cos(2 * (phi - 2 * math.pi))


def stages(step: int, stages: Sequence[tuple[int, int]]) -> float:
    current = stages[0][1]
    for start, length in stages:
        if step < start:
            break
        current = length
    return float(current)


@dataclass(frozen=True)
class LengthSchedule:
    """A rollout-length schedule; ``schedule(step)`` is the integer cap (tokens) for rollout round ``step``."""

    kind: str
    l_max: int
    l_min: int
    cycle: int | None = None
    stages: tuple[tuple[int, int], ...] | None = None
    round_to: int | None = None

    def raw(self, step: int) -> float:
        """The unrounded cap at ``step`` (tokens)."""
        if step < 0:
            raise ScheduleError(f"step must be >= 0 (rollout rounds count from 0), got {step}")
        if self.kind == "constant":
            return constant(step, self.l_max)
        if self.kind == "stages":
            assert self.stages is not None
            return stages(step, self.stages)
        assert self.cycle is not None
        shape = {"stair": stair, "cosine": cosine, "stair-cosine": stair_cosine}[self.kind]
        return shape(step, self.l_max, self.l_min, self.cycle)

    def __call__(self, step: int) -> int:
        return round_cap(self.raw(step), self.l_min, self.l_max, self.round_to)

    def phase(self, step: int) -> str:
        """``"compressing"`` where the cap is about to fall, ``"expanding"`` where it is about to rise, else
        ``"holding"`` (judged on the unrounded curve, so rounding plateaus do not read as holds)."""
        now, nxt = self.raw(step), self.raw(step + 1)
        if nxt < now - 1e-9:
            return "compressing"
        if nxt > now + 1e-9:
            return "expanding"
        return "holding"

    def troughs(self, num_steps: int) -> list[int]:
        """Steps (< ``num_steps``) where each cycle's SIRI-low checkpoint is taken.

        The trough of a cycle is the last step of that cycle at its lowest cap, i.e. the end of the compression
        phase (cosine: T/2; stair: the cycle's last step; stair-cosine: the end of the L_min hold). Non-cyclic
        schedules have none.
        """
        if self.kind not in CYCLIC_KINDS:
            return []
        assert self.cycle is not None
        out = []
        for start in range(0, num_steps, self.cycle):
            steps = range(start, min(start + self.cycle, num_steps))
            step = _last_extreme(steps, self.raw, lowest=True)
            # A cycle cut off while its cap is still falling has no trough yet.
            if self.raw(step + 1) >= self.raw(step) - 1e-9:
                out.append(step)
        return out

    def peaks(self, num_steps: int) -> list[int]:
        """Steps (< ``num_steps``) where each cycle's SIRI-high checkpoint is taken: the last step at the highest
        cap after that cycle's trough and before the next one (the end of the expansion that follows the
        compression). For cosine with T=640 over 1920 steps: troughs 320, 960, 1600 and peaks 640, 1280, 1919.
        A trough with no expansion after it inside ``num_steps`` has no peak."""
        troughs = self.troughs(num_steps)
        out = []
        for i, trough in enumerate(troughs):
            end = troughs[i + 1] if i + 1 < len(troughs) else num_steps
            steps = range(trough + 1, end)
            if not steps:
                continue
            step = _last_extreme(steps, self.raw, lowest=False)
            if self.raw(step) > self.raw(trough) + 1e-6:
                out.append(step)
        return out

    def checkpoints(self, num_steps: int) -> list[tuple[int, str]]:
        """``[(step, name), ...]`` sorted by step: ``cycleK-compressed`` at troughs (SIRI-low) and
        ``cycleK-expanded`` at peaks (SIRI-high), K counting from 1."""
        named = [(s, f"cycle{i + 1}-compressed") for i, s in enumerate(self.troughs(num_steps))]
        named += [(s, f"cycle{i + 1}-expanded") for i, s in enumerate(self.peaks(num_steps))]
        return sorted(named)

    def table(self, num_steps: int) -> list[dict[str, Any]]:
        """One row per step: ``{"step", "max_len", "phase"}``."""
        return [{"step": t, "max_len": self(t), "phase": self.phase(t)} for t in range(num_steps)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "l_max": self.l_max, "l_min": self.l_min}
        if self.cycle is not None:
            out["cycle"] = self.cycle
        if self.stages is not None:
            out["stages"] = [list(s) for s in self.stages]
        if self.round_to:
            out["round_to"] = self.round_to
        return out


def round_cap(value: float, l_min: int, l_max: int, round_to: int | None = None) -> int:
    """The integer cap (tokens) of an unrounded one: the nearest integer, or the nearest multiple of ``round_to``
    kept inside [l_min, l_max]."""
    if not round_to:
        return int(round(value))
    length = int(round(value / round_to)) * round_to
    # Rounding must never leave [L_min, L_max]: step back inside by one multiple.
    if length > l_max:
        length -= round_to
    if length < l_min:
        length += round_to
    return length


def _last_extreme(steps: range, value, *, lowest: bool) -> int:
    best_step, best = steps[0], value(steps[0])
    for t in steps[1:]:
        v = value(t)
        if (v <= best + 1e-9) if lowest else (v >= best - 1e-9):
            best_step, best = t, v
    return best_step


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise ScheduleError(f"{name} must be a positive integer number of tokens, got {value!r}")
    return int(value)


def _refuse_adaptive(kind: Any) -> None:
    # Closed loop: its cap depends on the training accuracy, so it is no function of the step alone.
    if str(kind).strip().lower() == "adaptive":
        raise ScheduleError("kind 'adaptive' is a closed-loop schedule: build it with siri_rl.adaptive."
                            "make_adaptive_schedule (a config loads it with kind: adaptive)")


def make_schedule(
    kind: str,
    *,
    l_max: int,
    l_min: int | None = None,
    cycle: int | None = None,
    stages: Sequence[Sequence[int]] | None = None,
    round_to: int | None = None,
) -> LengthSchedule:
    """Build and validate a length schedule (paper §4.3).

    Args:
        kind: one of ``constant``, ``stair``, ``cosine``, ``stair-cosine``, ``stages``.
        l_max: the largest cap, in tokens (paper: 16384).
        l_min: the smallest cap, in tokens (paper: 8192); required by the cyclic kinds.
        cycle: the period T in rollout rounds (paper: 640); required by the cyclic kinds, at least 2.
        stages: for ``stages``: ``[(start_step, L), ...]`` with strictly increasing starts, the first at 0.
        round_to: round every cap to a multiple of this many tokens, staying within [l_min, l_max].

    Raises:
        ScheduleError: on impossible parameters, with what was wrong and how to fix it.
    """
    kind = str(kind).strip().lower().replace("_", "-")
    _refuse_adaptive(kind)
    if kind not in KINDS:
        raise ScheduleError(f"unknown schedule kind {kind!r}; choose one of {', '.join(KINDS)}")
    l_max = _positive_int("l_max", l_max)
    stage_tuple = None
    if kind == "stages":
        if not stages:
            raise ScheduleError("kind 'stages' needs stages=[(start_step, L), ...], e.g. [(0, 8192), (320, 16384)]")
        try:
            stage_tuple = tuple((int(s), _positive_int("stage length", length)) for s, length in stages)
        except (TypeError, ValueError) as err:
            if isinstance(err, ScheduleError):
                raise
            raise ScheduleError(f"stages must be a list of (start_step, L) pairs, got {stages!r}") from None
        starts = [s for s, _ in stage_tuple]
        if starts[0] != 0:
            raise ScheduleError(f"the first stage must start at step 0, got {starts[0]}")
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ScheduleError(f"stage start steps must be strictly increasing, got {starts}")
        if max(length for _, length in stage_tuple) > l_max:
            raise ScheduleError(f"a stage length exceeds l_max={l_max}: {[length for _, length in stage_tuple]}")
        low = min(length for _, length in stage_tuple)
        l_min = low if l_min is None else _positive_int("l_min", l_min)
        if l_min > low:
            raise ScheduleError(f"a stage length is below l_min={l_min}: {[length for _, length in stage_tuple]}")
    elif kind == "constant":
        l_min = l_max if l_min is None else _positive_int("l_min", l_min)
    else:
        if l_min is None:
            raise ScheduleError(f"kind {kind!r} needs l_min (the cap at the trough, e.g. 8192)")
        l_min = _positive_int("l_min", l_min)
        if cycle is None:
            raise ScheduleError(f"kind {kind!r} needs cycle (the period T in rollout rounds, e.g. 640)")
        if isinstance(cycle, bool) or not isinstance(cycle, (int, float)) or int(cycle) != cycle or cycle < 2:
            raise ScheduleError(f"cycle must be an integer number of rollout rounds >= 2, got {cycle!r}")
        cycle = int(cycle)
    if l_min > l_max:
        raise ScheduleError(f"l_min ({l_min}) must not exceed l_max ({l_max})")
    if round_to is not None:
        round_to = _positive_int("round_to", round_to)
        if (l_max // round_to) * round_to < l_min:
            raise ScheduleError(
                f"no multiple of round_to={round_to} lies in [l_min={l_min}, l_max={l_max}]; use a smaller round_to"
            )
    return LengthSchedule(
        kind=kind,
        l_max=l_max,
        l_min=l_min,
        cycle=cycle if kind in CYCLIC_KINDS else None,
        stages=stage_tuple,
        round_to=round_to,
    )


SCHEDULE_KEYS = ("kind", "l_max", "l_min", "cycle", "stages", "round_to")


def schedule_from_dict(config: dict[str, Any]) -> LengthSchedule:
    """Build a schedule from a config mapping with keys ``kind, l_max, l_min, cycle, stages, round_to``."""
    _refuse_adaptive(config.get("kind"))
    unknown = sorted(set(config) - set(SCHEDULE_KEYS))
    if unknown:
        raise ScheduleError(f"unknown schedule keys {unknown}; allowed: {', '.join(SCHEDULE_KEYS)}")
    if "kind" not in config or "l_max" not in config:
        raise ScheduleError("a schedule needs at least 'kind' and 'l_max'")
    return make_schedule(**config)
