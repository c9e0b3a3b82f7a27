"""The no-learning guard: notice when GRPO has had nothing to learn from for several rounds.

GRPO's advantage is a reward minus its group's mean (DAPO/SIRI: normalised by the group's std), so a group whose
rollouts all got the same reward contributes no gradient. Under a length cap that happens silently: a cap below
the shortest correct answer truncates every completion, every reward is 0, and the loss is 0 (TRL users meet it
as "zero reward, zero variance, zero gradient"). The guard reads two per-round fields of ``metrics.jsonl``:

* ``frac_groups_with_reward_variance`` — the share of prompt groups whose rewards are not all equal
  (:func:`frac_groups_with_reward_variance`, computed by both engines from the round's rewards and group ids);
* ``clipped_frac`` — the share of completions that hit the cap L without ending.

A round is *starved* when ``frac_groups_with_reward_variance <= min_signal_frac`` or ``clipped_frac >= max_clipped_frac``.
After ``rounds`` consecutive starved rounds the guard warns once (mode ``warn``, the default) or asks the engine to
stop with a resumable checkpoint and a non-zero exit (mode ``stop``; a run resumed while still starved stops again
after one round); ``off`` never does anything. A healthy round ends the episode: a later starved streak warns
again. The guard's state is the replay of the run's metrics rows (:meth:`NoLearningGuard.replay`), so a resume
rebuilds it from the rows it keeps.

Defaults: 4 rounds — long enough that one unlucky batch (all groups right, or all wrong, at the paper's 128
prompts a round it is rare, at the toy's 16 it is not) does not warn, short enough to catch a broken run within
minutes; 0.05 of the groups (at 128 groups, 6 or fewer carry a gradient); 0.95 of the completions clipped.

TRL logs the complement per completion as ``frac_reward_zero_std`` (``trl/trainer/grpo_trainer.py:2788, 2830``,
equal to 1 − this share when every group has ``num_generations`` completions); veRL groups by the ``uid`` it
gives each prompt before repeating it ``rollout.n`` times (``verl/trainer/ppo/ray_trainer.py:1482-1491``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

GUARD_MODES = ("warn", "stop", "off")
DEFAULT_ROUNDS = 4
DEFAULT_MIN_SIGNAL_FRAC = 0.05
DEFAULT_MAX_CLIPPED_FRAC = 0.95


class GuardError(ValueError):
    """Impossible guard settings (the config loader turns it into a ConfigError, as it does for schedules)."""


def frac_groups_with_reward_variance(rewards: Sequence[float], group_ids: Sequence[Hashable]) -> float:
    """The share (in [0, 1]) of prompt groups whose rewards are not all equal: the groups that give GRPO a
    gradient. ``group_ids[i]`` names the prompt group of ``rewards[i]`` (TRL: the completion's index //
    ``num_generations``; veRL: ``non_tensor_batch["uid"]``); a group of one has no signal."""
    if len(rewards) != len(group_ids):
        raise ValueError(f"frac_groups_with_reward_variance got {len(rewards)} rewards but {len(group_ids)} group ids")
    if not rewards:
        raise ValueError("frac_groups_with_reward_variance needs at least one reward")
    low: dict[Hashable, float] = {}
    high: dict[Hashable, float] = {}
    for reward, group in zip(rewards, group_ids):
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"frac_groups_with_reward_variance got a non-finite reward {reward!r} (group {group!r})")
        low[group] = min(low.get(group, reward), reward)
        high[group] = max(high.get(group, reward), reward)
    return sum(1 for g in low if high[g] > low[g]) / len(low)


def frac_groups_all_correct_and_wrong(rewards: Sequence[float], group_ids: Sequence[Hashable]) -> tuple[float, float]:
    """The shares (each in [0, 1]) of prompt groups whose completions were all rewarded (every reward equal and
    above 0: all right) and all unrewarded (every reward 0 or less: all wrong); with the groups that have a spread
    (:func:`frac_groups_with_reward_variance`) they add up to 1. They say why a round had no signal: all right is
    data too easy for the model, all wrong a cap, template or grader that fails every completion."""
    if len(rewards) != len(group_ids) or not rewards:
        raise ValueError("frac_groups_all_correct_and_wrong needs one group id per reward, and at least one reward")
    groups: dict[Hashable, list[float]] = {}
    for reward, group in zip(rewards, group_ids):
        groups.setdefault(group, []).append(float(reward))
    right = sum(1 for rs in groups.values() if min(rs) == max(rs) > 0)
    wrong = sum(1 for rs in groups.values() if max(rs) <= 0)
    return right / len(groups), wrong / len(groups)


class Verdict(NamedTuple):
    """The guard's answer after one round: ``action`` is ``ok``, ``warn`` or ``stop``; ``message`` the one line
    to print with it (empty for ``ok``); ``starved`` whether this round counted as starved."""

    state: dict[str, Any]
    action: str
    message: str
    starved: bool


@dataclass(frozen=True)
class NoLearningGuard:
    """Decide after each round whether training has starved (see the module docstring)."""

    mode: str = "warn"
    rounds: int = DEFAULT_ROUNDS
    min_signal_frac: float = DEFAULT_MIN_SIGNAL_FRAC
    max_clipped_frac: float = DEFAULT_MAX_CLIPPED_FRAC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def initial_state() -> dict[str, Any]:
        """``streak``: the starved rounds (their metrics rows' numbers) of the current episode; ``warned``: the
        episode has been reported. JSON-serialisable, for the resumable checkpoint."""
        return {"streak": [], "warned": False}

    def check(self, state: Mapping[str, Any], row: Mapping[str, Any]) -> Verdict:
        """The verdict after the round whose ``metrics.jsonl`` row is ``row`` (needs ``clipped_frac``; uses
        ``frac_groups_with_reward_variance`` when the engine logs it, and ``step``, ``max_len``, ``accuracy`` in the
        message). ``state`` is not modified."""
        if self.mode == "off":
            return Verdict(dict(state), "ok", "", False)
        clipped = _field(row, "clipped_frac", required=True)
        signal = _field(row, "frac_groups_with_reward_variance", required=False)
        starved = clipped >= self.max_clipped_frac or (signal is not None and signal <= self.min_signal_frac)
        if not starved:
            return Verdict({"streak": [], "warned": False}, "ok", "", False)
        entry = {"step": row.get("step"), "max_len": row.get("max_len"), "accuracy": row.get("accuracy"),
                 "clipped_frac": clipped, "frac_groups_with_reward_variance": signal,
                 "frac_groups_all_correct": row.get("frac_groups_all_correct"),
                 "frac_groups_all_wrong": row.get("frac_groups_all_wrong"), "phase": row.get("phase")}
        streak = (list(state["streak"]) + [entry])[-self.rounds :]
        new = {"streak": streak, "warned": bool(state["warned"])}
        # stop is not gated by `warned`: a run resumed while still starved stops again.
        if len(streak) < self.rounds or (state["warned"] and self.mode == "warn"):
            return Verdict(new, "ok", "", True)
        new["warned"] = True
        return Verdict(new, self.mode, self.message(streak), True)

    def replay(self, rows: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """The verdicts over consecutive rounds' metrics rows, from the initial state: the guard's state after a
        resume is the replay of the rows the run kept, so the checkpoint need not store it."""
        state: Mapping[str, Any] = self.initial_state()
        out = []
        for row in rows:
            out.append(self.check(state, row))
            state = out[-1].state
        return out

    def message(self, streak: Sequence[Mapping[str, Any]]) -> str:
        """One line: what the last rounds looked like and what usually causes it."""
        steps = [e["step"] for e in streak if e["step"] is not None]
        where = f"rounds {steps[0]}-{steps[-1]}" if steps else f"the last {len(streak)} rounds"
        found = []
        signals = [e["frac_groups_with_reward_variance"] for e in streak if e["frac_groups_with_reward_variance"] is not None]
        if signals:
            found.append(f"{_span(signals)} of the prompt groups had any reward variance (threshold "
                         f"{self.min_signal_frac:g})")
        caps = [e["max_len"] for e in streak if e["max_len"] is not None]
        cap = f" L={_span(caps, '{:.0f}')}" if caps else ""
        found.append(f"{_span([e['clipped_frac'] for e in streak])} of the completions hit the cap{cap} (threshold "
                     f"{self.max_clipped_frac:g})")
        accs = [e["accuracy"] for e in streak if e["accuracy"] is not None]
        if accs:
            found.append(f"training accuracy {_span(accs)}")
        right = [e.get("frac_groups_all_correct") for e in streak]
        wrong = [e.get("frac_groups_all_wrong") for e in streak]
        if all(x is not None for x in right + wrong):
            found.append(f"{_span(right)} of the groups all right, {_span(wrong)} all wrong")
            mostly_right, mostly_wrong = min(right) >= 0.8, min(wrong) >= 0.8
        else:  # rows of an engine that does not log the shares: only an accuracy of 1 or 0 tells them apart
            mostly_right = bool(accs) and min(accs) >= 1.0
            mostly_wrong = not accs or max(accs) <= 0.0
        easy = ("every group is all right: the problems are too easy for this model (harder data, or a larger "
                "group_size)")
        failing = ("usual causes: the cap L is below the shortest correct answer (raise l_min / l_max), a chat "
                   "template that breaks </think> (check the prompt template and data.require_think_end), or a "
                   "grader mismatch (the gold answers do not match \\boxed{} answers; `siri eval` the base model)")
        phases = {e.get("phase") for e in streak} - {None}
        if mostly_right:
            causes = easy
        elif mostly_wrong:
            causes = failing
        else:
            causes = ("the groups are all right or all wrong: the problems whose answers fit the cap are solved every "
                      "time, the others fail every time")
            if phases and phases <= {"compressing", "holding"}:
                causes += (f" (schedule phase {'/'.join(sorted(phases))}: a compression phase cuts the problems that "
                           "need more than the cap by design, and this passes as the cap rises again; if it lasts "
                           "through the trough, the trough is too deep for this model: raise schedule.l_min)")
            else:
                causes += " (raise the cap, or use data of a difficulty this model solves part of the time)"
        verb = "Stopping with a resumable checkpoint" if self.mode == "stop" else "Training continues"
        return (f"no-learning guard: for {where} GRPO had almost nothing to learn from: {'; '.join(found)}; "
                f"{causes}. {verb} (training.guard: warn | stop | off)")


def _field(row: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = row.get(name)
    if value is None:
        if required:
            raise ValueError(f"the no-learning guard needs {name!r} in every metrics row; got keys {sorted(row)}")
        return None
    return float(value)


def _span(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise GuardError(f"training.guard.{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


GUARD_KEYS = ("mode", "rounds", "min_signal_frac", "max_clipped_frac")


def guard_from_dict(config: str | bool | Mapping[str, Any] | None) -> NoLearningGuard:
    """The guard of a ``training.guard`` config value: a mode (``warn``, ``stop``, ``off``) or a mapping with
    ``mode, rounds, min_signal_frac, max_clipped_frac``; None gives the default (warn). YAML reads a bare ``off``
    as false, which means ``off`` here.

    Raises:
        GuardError: one line naming the wrong value and what is allowed.
    """
    if config is None:
        return NoLearningGuard()
    if config is False:
        config = "off"
    if isinstance(config, str):
        config = {"mode": config}
    if not isinstance(config, Mapping):
        raise GuardError(f"training.guard must be one of {', '.join(GUARD_MODES)} or a mapping with keys "
                         f"{', '.join(GUARD_KEYS)}, got {config!r}")
    unknown = sorted(set(config) - set(GUARD_KEYS))
    if unknown:
        raise GuardError(f"unknown training.guard keys {unknown}; allowed: {', '.join(GUARD_KEYS)}")
    mode = config.get("mode", "warn")
    mode = "off" if mode is False else mode
    if not isinstance(mode, str) or mode.strip().lower() not in GUARD_MODES:
        raise GuardError(f"training.guard mode must be one of {', '.join(GUARD_MODES)}, got {mode!r}")
    rounds = config.get("rounds", DEFAULT_ROUNDS)
    if isinstance(rounds, bool) or not isinstance(rounds, (int, float)) or int(rounds) != rounds or rounds < 1:
        raise GuardError(f"training.guard.rounds must be an integer number of rollout rounds >= 1, got {rounds!r}")
    return NoLearningGuard(
        mode=mode.strip().lower(),
        rounds=int(rounds),
        min_signal_frac=_fraction("min_signal_frac", config.get("min_signal_frac", DEFAULT_MIN_SIGNAL_FRAC)),
        max_clipped_frac=_fraction("max_clipped_frac", config.get("max_clipped_frac", DEFAULT_MAX_CLIPPED_FRAC)),
    )
