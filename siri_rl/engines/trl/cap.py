"""The rollout cap L of the current round, shared by the schedule callback (which sets it before each rollout
round) and the length-capped reward (which scores against it): :class:`RolloutCap`, and :func:`set_rollout_cap`,
the one place that writes it into ``trl.GRPOTrainer``'s generation attributes.

For the open-loop kinds the cap of round r is ``schedule(r)``; for ``kind: adaptive`` it is the controller's
decision after round r-1 (:class:`siri_rl.adaptive.AdaptiveSchedule`), made by :meth:`RolloutCap.decide` with round
r-1's training accuracy, which the reward recorded in :attr:`RolloutCap.pending`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from siri_rl.adaptive import AdaptiveSchedule, Decision
from siri_rl.engines.protocol import EngineError
from siri_rl.schedule import LengthSchedule


@dataclass
class RolloutCap:
    """State shared by the callback (which sets the cap) and the reward (which must score against the same cap).

    ``round_start_step``: TRL's ``global_step`` when the current round's generation batch is made (set by the
    callback; the reward checks it against the ``trainer_state`` TRL passes). ``group_size``: GRPO's G
    (``GRPOConfig.num_generations``), for the share of groups with a reward spread; both None until bound.
    ``adaptive_state``: with an :class:`~siri_rl.adaptive.AdaptiveSchedule`, the controller state; its ``max_len``
    is the cap of round ``adaptive_state["round"]``, the only round whose cap is known (None for the open-loop
    kinds, whose cap of round r is ``schedule(r)``)."""

    schedule: LengthSchedule | AdaptiveSchedule
    round: int = 0
    max_len: int = 0
    # Rollout statistics of rounds whose metrics row is not written yet: {round: {...}}.
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens_generated: int = 0
    round_start_step: int | None = None
    group_size: int | None = None
    adaptive_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.schedule, AdaptiveSchedule) and self.adaptive_state is None:
            self.adaptive_state = self.schedule.initial_state()

    @property
    def adaptive(self) -> bool:
        return isinstance(self.schedule, AdaptiveSchedule)

    def cap_of(self, r: int) -> int:
        """The cap of round ``r`` (tokens): ``schedule(r)``, or the adaptive controller's decision for round r."""
        if self.adaptive_state is None:
            return self.schedule(r)
        if r != self.adaptive_state["round"]:
            raise EngineError(f"the adaptive schedule has decided the cap of round {self.adaptive_state['round']}, "
                              f"not of round {r}: the rounds counted from the Trainer's events skipped a decision")
        return int(self.adaptive_state["max_len"])

    def decide(self, r: int) -> Decision | None:
        """After round ``r`` (adaptive only): step the controller with round r's training accuracy, which the
        reward recorded at the round's generation, so that :meth:`cap_of` gives round r+1's cap. The decision is
        kept in the round's pending statistics for its ``metrics.jsonl`` row. Idempotent per round."""
        if self.adaptive_state is None or self.adaptive_state["round"] != r:
            return None
        stats = self.pending.get(r)
        if stats is None or "accuracy" not in stats:
            raise EngineError(f"the adaptive schedule needs the training accuracy of round {r} at its end, but the "
                              "reward recorded none: is LengthCappedReward among the trainer's reward_funcs?")
        assert isinstance(self.schedule, AdaptiveSchedule)
        decision = self.schedule.step(self.adaptive_state, r, stats["accuracy"])
        self.adaptive_state = decision.state
        stats["decision"] = decision
        return decision

    def set_round(self, r: int, *, round_start_step: int | None = None) -> None:
        self.round = r
        self.max_len = self.cap_of(r)
        self.round_start_step = round_start_step


def _require(obj: Any, name: str, where: str) -> Any:
    if not hasattr(obj, name):
        import trl

        raise EngineError(f"trl {trl.__version__}: {type(obj).__name__} has no attribute {name!r}, where siri-rl "
                          f"sets the rollout cap ({where}); this TRL generates differently: use trl>=1.16,<1.17")
    return getattr(obj, name)


def set_rollout_cap(trainer: Any, max_len: int) -> None:
    """Make ``trainer`` (a ``trl.GRPOTrainer``) generate at most ``max_len`` tokens per completion from its next
    generation batch on: the one place that writes TRL's generation attributes.

    TRL 1.16 has no public setter; it reads these attributes at each generation (trl/trainer/grpo_trainer.py):
      - vLLM (``use_vllm``, colocate or server): ``trainer.vllm_generation.max_completion_length`` (created at
        :1107-1137; ``VLLMGeneration.generate`` reads it per call as the request's ``max_tokens``,
        trl/generation/vllm_generation.py:584, 624, 669).
      - transformers ``generate`` (and continuous batching): ``trainer.generation_config.max_new_tokens`` and
        ``trainer.generation_kwargs["max_new_tokens"]`` (made at :1155-1175; passed to ``generate`` and overlaid on
        the model's generation config at :1805, 1867-1874).
    ``GRPOTrainer.max_completion_length`` stays at L_max (the padded width the loss normaliser of some loss types
    uses). An attribute that is missing raises :class:`~siri_rl.engines.EngineError`: a TRL that renamed it would
    otherwise silently train every round at L_max.
    """
    L = int(max_len)
    if _require(trainer, "use_vllm", "GRPOTrainer.use_vllm, :811"):
        vllm = _require(trainer, "vllm_generation", "GRPOTrainer.vllm_generation, :1107")
        _require(vllm, "max_completion_length", "VLLMGeneration.max_completion_length, vllm_generation.py:279")
        vllm.max_completion_length = L
        return
    config = _require(trainer, "generation_config", "GRPOTrainer.generation_config, :1173")
    kwargs = _require(trainer, "generation_kwargs", "GRPOTrainer.generation_kwargs, :1175")
    if not isinstance(kwargs, dict) or "max_new_tokens" not in kwargs:
        raise EngineError("GRPOTrainer.generation_kwargs has no 'max_new_tokens' (trl/trainer/grpo_trainer.py:1156), "
                          "where siri-rl sets the rollout cap; use trl>=1.16,<1.17")
    config.max_new_tokens = L
    kwargs["max_new_tokens"] = L
