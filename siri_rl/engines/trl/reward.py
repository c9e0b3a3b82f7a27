"""SIRI's length-capped reward as a TRL reward function (``reward_funcs=[LengthCappedReward(...)]``).

TRL calls a reward function once per generation batch (= once per rollout round) with ``completion_ids`` and the
dataset's extra columns as keyword lists; the gold answers come from the ``answer`` column. The score is
:func:`siri_rl.reward.length_capped_reward` against the cap of the current round (the one the callback set
before generation), so a rollout that did not finish inside L scores 0 (it is not masked:
``mask_truncated_completions=False``).

The function also records the round's rollout statistics for ``metrics.jsonl``
(:func:`siri_rl.run_dir.rollout_stats`: accuracy, lengths, the share of completions that hit L — against L, not
against the padded width — and of groups whose rewards differ) and sends them to TRL's ``report_to`` backends
through the ``log_metric`` hook. It checks that the round it scores against is the one TRL is generating for:
TRL passes its ``TrainerState`` to every reward function (``trainer_state``, trl/trainer/grpo_trainer.py:1588).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from siri_rl.config import ConfigError
from siri_rl.engines.protocol import EngineError
from siri_rl.engines.trl.callback import RolloutCap
from siri_rl.metrics import rollout_stats
from siri_rl.prompts import eos_token_ids
from siri_rl.reward import length_capped_reward


class LengthCappedReward:
    """Reward 1.0 iff the answer extractable from the first L tokens equals the gold ``answer`` (SIRI §4.2).

    ``eos_ids``: the ids that end a completion, :func:`siri_rl.data.eos_token_ids` of the tokenizer and the model
    (TRL ends completions on the same list, trl/trainer/grpo_trainer.py:408-416); default: the tokenizer's EOS.
    """

    def __init__(
        self,
        cap: RolloutCap,
        tokenizer: Any,
        *,
        eos_ids: Sequence[int] | None = None,
        require_think_end: bool = True,
    ) -> None:
        self.cap = cap
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(eos_ids if eos_ids is not None else eos_token_ids(tokenizer))
        self.require_think_end = require_think_end
        self.__name__ = "length_capped"  # TRL names reward columns after __name__
        # Set by the engine on multi-process runs: each process scores its own share of the round's completions,
        # and the round's statistics are over every process's (``gather_object``; a collective, which is safe
        # here because every process calls the reward exactly once per round).
        self.accelerator: Any = None

    def __call__(self, prompts, completions, completion_ids, answer=None, log_metric=None, trainer_state=None,
                 **kwargs) -> list[float]:
        if answer is None:
            raise ConfigError("the training dataset has no 'answer' column: SIRI's reward compares the boxed answer "
                              "with it (columns: prompt, answer)")
        step = self.cap.round_start_step
        if trainer_state is not None and step is not None and trainer_state.global_step != step:
            raise EngineError(
                f"siri-rl scores round {self.cap.round} (cap L={self.cap.max_len}), whose batch TRL should generate "
                f"at optimizer step {step}, but trainer_state.global_step is {trainer_state.global_step}: the rounds "
                "counted from the Trainer's events no longer match TRL's generation; use trl>=1.16,<1.17")
        L = self.cap.max_len
        rewards = [
            length_capped_reward(ids, gold, L, self.tokenizer, require_think_end=self.require_think_end)
            for ids, gold in zip(completion_ids, answer, strict=True)
        ]
        # Ended = its last id is an EOS (TRL keeps the EOS in completion_ids): one that ended exactly at L is not
        # clipped.
        local = [(len(ids), bool(len(ids) and ids[-1] in self.eos_ids), r) for ids, r in zip(completion_ids, rewards)]
        every = self._gather(local)
        g = self.cap.group_size
        stats = rollout_stats([x[0] for x in every], L, [x[1] for x in every], rewards=[x[2] for x in every],
                              group_ids=[i // g for i in range(len(every))] if g else None)
        self.cap.tokens_generated += stats["tokens_round"]
        stats["tokens_generated"] = self.cap.tokens_generated
        # Exactly one call per training rollout round; the callback writes the row once the round's updates ran.
        self.cap.pending[self.cap.round] = stats
        if log_metric is not None:
            for key, value in stats.items():  # the metrics.jsonl rollout fields, to TRL's report_to backends
                log_metric(f"siri/{key}", float(value))
        return rewards

    def _gather(self, local: list[tuple[int, bool, float]]) -> list[tuple[int, bool, float]]:
        """Every process's ``(length, ended, reward)`` per completion, in process order: the order TRL gathers the
        rewards in before it forms the groups (trl/trainer/grpo_trainer.py:1681, 2765), so completion i belongs
        to group i // G. ``gather_object`` concatenates the processes' lists in rank order
        (accelerate/utils/operations.py:498-521)."""
        acc = self.accelerator
        if acc is None or acc.num_processes < 2:
            return local
        from accelerate.utils import gather_object

        return [tuple(x) for x in gather_object(local)]
