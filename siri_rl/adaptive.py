"""A closed-loop length schedule (``schedule.kind: adaptive``): a cosine whose clock stops while the
model falls behind.

SIRI's cosine (§4.3) lowers the cap on a clock, whatever the model does; the paper sees the model's length lag the
cap by 100–200 steps at T = 640. This schedule lowers L only while the model keeps up. Per cycle:

1. **fill** — hold L_max for ``window`` rounds; the mean training accuracy of those rounds is the cycle's
   *reference* (the accuracy at the start of the compression, the last peak).
2. **compress** — each round the rolling accuracy (mean of the last ``window`` rounds) stays within ``tolerance``
   of the reference, the compression clock c advances by one and L = cosine(c) — the paper's cosine with the same
   ``cycle`` T, L_max, L_min (:func:`siri_rl.schedule.cosine`), so every cut is exactly the cut the cosine makes
   at the same phase and never a faster one.
3. **hold** — when the rolling accuracy falls below reference − tolerance, L stays (the clock stops); if the
   accuracy is back within tolerance, compression resumes from where it stopped.
4. **expand** — after ``patience`` held rounds without recovery, or once L reached L_min (c = T/2), L rises back to
   L_max on a half-cosine over T/2 rounds (the cosine's own expansion; the paper finds expansion should be long),
   then the next cycle fills its window at L_max.

A model that always keeps up gets the cosine exactly, with ``window`` extra rounds at L_max per cycle. The
trough of a cycle (SIRI-low, ``cycleK-compressed``) is the last round at its lowest cap, where expansion began;
its peak (SIRI-high, ``cycleK-expanded``) is the last round at L_max before the next compression: both are
recorded where the schedule actually turned.

**The causal rule.** :meth:`AdaptiveSchedule.step` takes the signal of round r and returns the cap of round r+1:
the cap of round r depends only on the signals of rounds < r. How each engine gets the signal in time:

* TRL: ``GRPOTrainer`` scores a round's completions when it generates them, at the round's first micro-step
  (``_prepare_inputs``, ``trl/trainer/grpo_trainer.py:1538-1546``), before that round's updates, and
  :class:`siri_rl.engines.trl.reward.LengthCappedReward` leaves the round's ``accuracy`` (summed over processes)
  in ``RolloutCap.pending``; the callback sets the next round's cap in ``on_step_end`` of the round's last
  optimizer step (``transformers/trainer.py:1783``), before the next generation, so it can call ``step`` with
  round r's accuracy there. Every process gets the same accuracy and so computes the same cap.
* veRL: ``SiriAgentLoopManager.generate_sequences`` gets round r's scored batch back (``rm_scores``, filled by the
  agent loop's reward, veRL ``experimental/agent_loop/agent_loop.py:1097-1099``) before veRL updates on it, and is
  called again for round r+1 only after that update (``ray_trainer.py`` ``fit``: one ``generate_sequences`` per
  step, ``:1513``): it can call ``step`` with round r's accuracy right after generating round r. This needs the
  reward computed inside the agent loop; a colocated reward model scores the batch after the manager returns
  (``ray_trainer.py:1563-1564``), and then the manager has no accuracy to give. Trainers that generate round r+1
  before updating on round r (veRL's one-step-off and fully-async recipes) know only rounds < r at round r+1's
  generation: they would need a one-round lag, which this schedule does not model.

**State.** Every decision comes with the whole controller state as a JSON-serialisable dict; saved with the
resumable checkpoint and passed back, it continues the same cap sequence (the rounding is fixed and the mean is
taken in a fixed order, so a replay is bit-identical). The state also names the parameters that made it, and a
state from other parameters is refused. Since the state is a function of the signals alone, a resumed run can
also rebuild it from the rows ``metrics.jsonl`` keeps (:meth:`AdaptiveSchedule.resume`, which checks every
row's cap on the way).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from siri_rl.schedule import ScheduleError, cosine, round_cap

KIND = "adaptive"
# Defaults. window: 8 rounds of rollouts (8 x 1024 at the paper's 128 prompts x 8) keeps the rolling mean's noise
# well under the tolerance. tolerance: 3 accuracy points, a change the paper's tables treat as real.
# patience: None means cycle // 4 rounds, the middle of the 100-200-step lag the paper measures at T = 640.
DEFAULT_WINDOW = 8
DEFAULT_TOLERANCE = 0.03


class Decision(NamedTuple):
    """What :meth:`AdaptiveSchedule.step` decided after round r.

    ``state``: the new controller state (JSON-serialisable). ``max_len``: the cap of round r+1 (tokens).
    ``phase``: ``compressing`` / ``expanding`` / ``holding`` as the cap moves from round r to r+1 (the meaning
    :meth:`siri_rl.schedule.LengthSchedule.phase` gives round r). ``reason``: one line with the numbers.
    ``checkpoint``: ``cycleK-compressed`` / ``cycleK-expanded`` when round r was a trough / peak, else None.
    """

    state: dict[str, Any]
    max_len: int
    phase: str
    reason: str
    checkpoint: str | None

    def row_fields(self) -> dict[str, Any]:
        """The fields of round r's ``metrics.jsonl`` row that record this decision."""
        return {
            "phase": self.phase,
            "adaptive_signal": self.state["signal"],
            "adaptive_reference": self.state["reference"],
            "adaptive_reason": self.reason,
        }


@dataclass(frozen=True)
class AdaptiveSchedule:
    """The closed-loop length controller (parameters in tokens and rollout rounds; see the module docstring);
    build it with :func:`make_adaptive_schedule`, which validates them.

    Use: ``state = s.initial_state()``; the cap of round 0 is ``state["max_len"]``; after round r,
    ``state, L, phase, reason, checkpoint = s.step(state, r, accuracy_of_round_r)``, and L is round r+1's cap.
    """

    l_max: int
    l_min: int
    cycle: int
    patience: int  # no class default: make_adaptive_schedule's is cycle // 4
    tolerance: float = DEFAULT_TOLERANCE
    window: int = DEFAULT_WINDOW
    round_to: int | None = None
    kind: str = KIND

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.round_to:
            out.pop("round_to")
        return {"kind": out.pop("kind"), **out}

    def initial_state(self) -> dict[str, Any]:
        """The state before round 0: cap L_max, filling the first window."""
        return {
            "params": self.to_dict(),
            "round": 0,  # the round whose cap is max_len: the next one to be generated
            "max_len": round_cap(self.l_max, self.l_min, self.l_max, self.round_to),
            "raw": float(self.l_max),  # unrounded cap (tokens)
            "mode": "filling",
            "cycle_index": 1,
            "clock": 0,  # compression rounds taken in this cycle: L = cosine(clock)
            "held": 0,  # consecutive held rounds
            "expanded": 0,  # expansion rounds taken
            "expand_from": None,  # unrounded cap the expansion started from
            "window": [],  # the last `window` signals, oldest first
            "signal": None,  # rolling accuracy after the last step
            "reference": None,
            "troughs": [],  # [[round, cap], ...]
            "peaks": [],
        }

    def step(self, state: Mapping[str, Any], round: int, signal: float) -> Decision:
        """Take the training accuracy of round ``round`` (a fraction in [0, 1], the mean length-capped reward of
        that round's rollouts) and decide the cap of round ``round + 1``. ``state`` is not modified."""
        if dict(state.get("params", {})) != self.to_dict():
            raise ScheduleError(f"this adaptive state was made with {state.get('params')!r}, not {self.to_dict()!r}; "
                                "resume with the run's own schedule")
        if round != state["round"]:
            raise ScheduleError(f"the adaptive schedule expects the signal of round {state['round']}, got round "
                                f"{round}: feed every round once, in order")
        if isinstance(signal, bool) or not isinstance(signal, (int, float)) or not math.isfinite(signal):
            raise ScheduleError(f"the adaptive signal of round {round} must be a finite accuracy, got {signal!r}")
        s = dict(state)
        s["window"] = (list(state["window"]) + [float(signal)])[-self.window :]
        s["troughs"], s["peaks"] = [list(x) for x in state["troughs"]], [list(x) for x in state["peaks"]]
        acc = sum(s["window"]) / len(s["window"])
        s["signal"] = acc
        now = float(state["raw"])
        checkpoint = None
        mode = s["mode"]
        if mode == "filling":
            if len(s["window"]) < self.window:
                reason = f"filling the window at L_max ({len(s['window'])}/{self.window} rounds)"
            else:
                s["reference"] = acc
                if len(s["troughs"]) > len(s["peaks"]):  # an expansion ended here: this round is its peak
                    s["peaks"].append([round, state["max_len"]])
                    checkpoint = f"cycle{s['cycle_index']}-expanded"
                    s["cycle_index"] += 1
                s.update(mode="compressing", clock=1, held=0, raw=self._compressed(1))
                reason = f"reference accuracy {acc:.3f} (mean of {self.window} rounds at L_max): compress"
        elif mode in ("compressing", "holding"):
            floor = s["reference"] - self.tolerance
            keeping_up = acc >= floor - 1e-12
            vs = (f"rolling accuracy {acc:.3f} {'>=' if keeping_up else '<'} reference {s['reference']:.3f} - "
                  f"tolerance {self.tolerance:g}")
            if now <= self.l_min + 1e-9:
                checkpoint = self._start_expansion(s, round, state["max_len"])
                reason = f"reached L_min={self.l_min}: expand"
            elif keeping_up:
                s.update(mode="compressing", clock=s["clock"] + 1, held=0)
                s["raw"] = self._compressed(s["clock"])
                reason = f"{vs}: {'recovered, ' if mode == 'holding' else ''}compress"
            elif s["held"] < self.patience:
                s.update(mode="holding", held=s["held"] + 1)
                reason = f"{vs}: hold ({s['held']}/{self.patience})"
            else:
                checkpoint = self._start_expansion(s, round, state["max_len"])
                reason = f"{vs} after {self.patience} held rounds: expand"
        else:  # expanding
            s["expanded"] += 1
            s["raw"] = self._expanded(s["expand_from"], s["expanded"])
            reason = f"expand ({s['expanded']}/{self._expansion_rounds} rounds)"
            if s["raw"] >= self.l_max:
                s.update(mode="filling", window=[], reference=None)
                reason += ": back at L_max, refill the window"
        s["round"] = round + 1
        s["max_len"] = round_cap(s["raw"], self.l_min, self.l_max, self.round_to)
        nxt = float(s["raw"])
        phase = "compressing" if nxt < now - 1e-9 else "expanding" if nxt > now + 1e-9 else "holding"
        return Decision(s, s["max_len"], phase, reason, checkpoint)

    # -- the two curves, both the paper's cosine ------------------------------------------------------------
    @property
    def _expansion_rounds(self) -> int:
        return math.ceil(self.cycle / 2)

    def _compressed(self, clock: int) -> float:
        """The cap after ``clock`` compression rounds: the cosine's descending half, L_min from T/2 on."""
        return float(self.l_min) if clock >= self.cycle / 2 else cosine(clock, self.l_max, self.l_min, self.cycle)

    def _expanded(self, start: float, k: int) -> float:
        """The cap ``k`` rounds into an expansion from ``start``: a half-cosine up to L_max over T/2 rounds (for
        start = L_min, the cosine's own rising half)."""
        if k >= self.cycle / 2:
            return float(self.l_max)
        return start + (self.l_max - start) * (1 - math.cos(2 * math.pi * k / self.cycle)) / 2

    def _start_expansion(self, s: dict[str, Any], round: int, cap: int) -> str:
        s["troughs"].append([round, cap])
        s.update(mode="expanding", expanded=1, expand_from=s["raw"], held=0)
        s["raw"] = self._expanded(s["raw"], 1)
        return f"cycle{s['cycle_index']}-compressed"

    # -- what the engines need besides step() ---------------------------------------------------------------
    def max_cut(self) -> float:
        """The largest per-round cut (tokens) the cosine with this cycle makes: no cut of this schedule exceeds
        it."""
        return max(cosine(t, self.l_max, self.l_min, self.cycle) - cosine(t + 1, self.l_max, self.l_min, self.cycle)
                   for t in range(self.cycle))

    def replay(self, signals: Iterable[float], state: Mapping[str, Any] | None = None) -> list[Decision]:
        """The decisions for consecutive rounds' ``signals``, from ``state`` (default: the initial state) — e.g.
        to rebuild the state of a resumed run from the ``accuracy`` of its ``metrics.jsonl`` rows."""
        state = self.initial_state() if state is None else state
        out = []
        for signal in signals:
            out.append(self.step(state, state["round"], signal))
            state = out[-1].state
        return out

    def resume(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """The state after the rounds of ``rows`` (a run's kept ``metrics.jsonl`` rows, rounds 0, 1, ... in order,
        each with ``step``, ``max_len`` and ``accuracy``), rebuilt by replaying their accuracies. Each row's
        ``max_len`` must be the cap the replay gives that round; the first that is not raises ScheduleError (the
        rows are from another schedule, or the run did not follow this one)."""
        state = self.initial_state()
        for row in rows:
            r = state["round"]
            if row.get("step") != r:
                raise ScheduleError(f"adaptive resume: expected the row of round {r}, got step {row.get('step')!r}; "
                                    "pass the run's rows in order, one per round")
            if row.get("max_len") != state["max_len"]:
                raise ScheduleError(f"adaptive resume: round {r} ran with max_len={row.get('max_len')!r}, but this "
                                    f"schedule gives {state['max_len']} there; resume with the run's own schedule")
            state = self.step(state, r, row.get("accuracy")).state
        return state

    @staticmethod
    def checkpoints(state: Mapping[str, Any]) -> list[tuple[int, str]]:
        """``[(round, name), ...]`` of the troughs and peaks recorded so far, sorted by round, named like the
        cyclic kinds' (:meth:`siri_rl.schedule.LengthSchedule.checkpoints`)."""
        named = [(r, f"cycle{i + 1}-compressed") for i, (r, _) in enumerate(state["troughs"])]
        named += [(r, f"cycle{i + 1}-expanded") for i, (r, _) in enumerate(state["peaks"])]
        return sorted(named)


def _integer(name: str, value: Any, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ScheduleError(f"{name} must be an integer number of {what} >= {minimum}, got {value!r}")
    return int(value)


def make_adaptive_schedule(
    *,
    l_max: int,
    l_min: int,
    cycle: int,
    tolerance: float = DEFAULT_TOLERANCE,
    patience: int | None = None,
    window: int = DEFAULT_WINDOW,
    round_to: int | None = None,
) -> AdaptiveSchedule:
    """Build and validate an adaptive schedule.

    Args:
        l_max: the cap at the peaks, in tokens (paper: 16384).
        l_min: the lowest cap, in tokens (paper: 8192); below l_max.
        cycle: T of the cosine that bounds the compression and shapes the expansion, in rollout rounds (>= 2).
        tolerance: how far (accuracy as a fraction, in [0, 1)) the rolling accuracy may fall below the reference
            before the cap holds; default 0.03.
        patience: held rounds without recovery before expanding (>= 0); default cycle // 4.
        window: rounds in the rolling accuracy and in the reference (>= 1); default 8.
        round_to: round every cap to a multiple of this many tokens, inside [l_min, l_max].

    Raises:
        ScheduleError: one line per impossible value, saying what is allowed.
    """
    l_max = _integer("l_max", l_max, 1, "tokens")
    l_min = _integer("l_min", l_min, 1, "tokens")
    if l_min >= l_max:
        raise ScheduleError(f"the adaptive schedule needs l_min below l_max (got l_min={l_min}, l_max={l_max}); "
                            "for a fixed cap use kind: constant")
    cycle = _integer("cycle", cycle, 2, "rollout rounds")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ScheduleError(f"tolerance must be an accuracy drop in [0, 1), e.g. 0.03, got {tolerance!r}")
    patience = max(1, cycle // 4) if patience is None else _integer("patience", patience, 0, "rollout rounds")
    window = _integer("window", window, 1, "rollout rounds")
    if round_to is not None:
        round_to = _integer("round_to", round_to, 1, "tokens")
        if (l_max // round_to) * round_to < l_min:
            raise ScheduleError(
                f"no multiple of round_to={round_to} lies in [l_min={l_min}, l_max={l_max}]; use a smaller round_to"
            )
    return AdaptiveSchedule(l_max=l_max, l_min=l_min, cycle=cycle, tolerance=float(tolerance), patience=patience,
                            window=window, round_to=round_to)


ADAPTIVE_KEYS = ("kind", "l_max", "l_min", "cycle", "tolerance", "patience", "window", "round_to")


def adaptive_from_dict(config: Mapping[str, Any]) -> AdaptiveSchedule:
    """Build an adaptive schedule from a ``schedule:`` config mapping (``kind: adaptive`` plus the arguments of
    :func:`make_adaptive_schedule`)."""
    unknown = sorted(set(config) - set(ADAPTIVE_KEYS))
    if unknown:
        raise ScheduleError(f"unknown adaptive schedule keys {unknown}; allowed: {', '.join(ADAPTIVE_KEYS)}")
    if str(config.get("kind", KIND)).strip().lower() != KIND:
        raise ScheduleError(f"adaptive_from_dict got kind {config.get('kind')!r}; use schedule_from_dict for it")
    missing = [k for k in ("l_max", "l_min", "cycle") if k not in config]
    if missing:
        raise ScheduleError(f"kind 'adaptive' needs {', '.join(missing)} (e.g. l_max: 16384, l_min: 8192, "
                            "cycle: 640)")
    return make_adaptive_schedule(**{k: v for k, v in config.items() if k != "kind"})
