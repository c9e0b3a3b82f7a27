"""SIRI's length-capped reward as a TRL reward function (``reward_funcs=[LengthCappedReward(...)]``).

TRL calls a reward function once per generation batch (= once per rollout round) with ``completion_ids`` and the
dataset's extra columns as keyword lists; the gold answers come from the ``answer`` column. The score is
:func:`siri_rl.reward.length_capped_reward` against the cap of the current round (the one the callback set
before generation), so a rollout that did not finish inside L scores 0 (it is not masked:
``mask_truncated_completions=False``).

The function also records the round's rollout statistics for ``metrics.jsonl`` (accuracy, lengths, the share of
completions that hit L — computed against L, not against the padded width) and sends them to TRL's
``report_to`` backends through the ``log_metric`` hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from siri_rl.data import eos_token_ids
from siri_rl.engines.trl.callback import RolloutCap
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
        # and the round's statistics are summed over processes (``accelerator.gather``; a collective, which is safe
        # here because every process calls the reward exactly once per round).
        self.accelerator: Any = None

    def __call__(self, prompts, completions, completion_ids, answer, log_metric=None, **kwargs) -> list[float]:
        L = self.cap.max_len
        rewards = [
            length_capped_reward(ids, gold, L, self.tokenizer, require_think_end=self.require_think_end)
            for ids, gold in zip(completion_ids, answer, strict=True)
        ]
        lengths = [len(ids) for ids in completion_ids]
        # Clipped = hit L without ending (TRL keeps the EOS in completion_ids): one that ended exactly at L is not.
        clipped = sum(1 for ids in completion_ids if len(ids) >= L and not (len(ids) and ids[-1] in self.eos_ids))
        total, count, length_sum, longest, shortest, clipped = self._sum_over_processes(
            [sum(rewards), len(lengths), sum(lengths), max(lengths, default=0), min(lengths, default=0), clipped])
        n = max(1, count)
        self.cap.tokens_generated += int(length_sum)
        stats = {
            "max_len": L,
            "accuracy": total / n,
            "completion_len_mean": length_sum / n,
            "completion_len_max": int(longest),
            "completion_len_min": int(shortest),
            "clipped_frac": clipped / n,
            "num_completions": int(count),
            "tokens_generated": self.cap.tokens_generated,
        }
        # Exactly one call per training rollout round; the callback writes the row once the round's updates ran.
        self.cap.pending[self.cap.round] = stats
        if log_metric is not None:
            for key, value in stats.items():  # the metrics.jsonl rollout fields, to TRL's report_to backends
                log_metric(f"siri/{key}", float(value))
        return rewards

    def _sum_over_processes(self, local: list[float]) -> list[float]:
        """``[reward sum, count, length sum, max length, min length, clipped]`` over all processes."""
        acc = self.accelerator
        if acc is None or acc.num_processes < 2:
            return local
        import torch

        rows = acc.gather(torch.tensor([local], dtype=torch.float64, device=acc.device)).cpu().tolist()
        col = list(zip(*rows))
        return [sum(col[0]), sum(col[1]), sum(col[2]), max(col[3]), min(col[4]), sum(col[5])]
