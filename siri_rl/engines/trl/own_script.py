"""SIRI in your own ``trl.GRPOTrainer`` script: one call gives the length-capped reward, the schedule callback
and the GRPOConfig settings SIRI needs (README, "Use SIRI in your own TRL script").

    siri = siri_grpo(schedule, tokenizer, rounds=ROUNDS, run_dir=OUT)
    args = GRPOConfig(output_dir=..., max_steps=ROUNDS, **siri.grpo_config_kwargs)
    trainer = GRPOTrainer(model=..., args=args, reward_funcs=siri.reward_funcs, train_dataset=..., ...)
    siri.attach(trainer)
    trainer.train()

The dataset needs an ``answer`` column (the gold answer) beside ``prompt``. The run directory gets what
``siri train`` writes (:mod:`siri_rl.run_dir`): ``metrics.jsonl``, ``checkpoints/<cycleK-compressed|expanded>``
(or ``final``), which ``siri eval`` and ``siri analyze`` read. The optimiser settings of the paper (DAPO: clip
0.2/0.28, no KL, token-mean loss) stay yours to choose; :func:`siri_rl.engines.trl.grpo_kwargs` has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siri_rl.adaptive import AdaptiveSchedule
from siri_rl.config import ConfigError
from siri_rl.engines.trl.callback import LengthScheduleCallback, RolloutCap
from siri_rl.engines.trl.colocate import check_colocated_vllm
from siri_rl.engines.trl.reward import LengthCappedReward
from siri_rl.guard import NoLearningGuard, guard_from_dict
from siri_rl.prompts import eos_token_ids
from siri_rl.schedule import LengthSchedule


@dataclass
class SiriGRPO:
    """What :func:`siri_grpo` returns: pass :attr:`reward_funcs` and :attr:`grpo_config_kwargs` to TRL, then
    :meth:`attach` the built trainer."""

    schedule: LengthSchedule | AdaptiveSchedule
    rounds: int
    reward: LengthCappedReward
    callback: LengthScheduleCallback

    @property
    def reward_funcs(self) -> list[LengthCappedReward]:
        """``GRPOTrainer(reward_funcs=...)``: SIRI's length-capped reward (add your own beside it if you like)."""
        return [self.reward]

    @property
    def required_config(self) -> dict[str, Any]:
        """The GRPOConfig settings SIRI cannot run without: the padded width L_max (the callback lowers the cap per
        round; at least L_max), truncated rollouts kept (they score 0, SIRI §4.2), one log per optimizer step (a
        metrics row per round)."""
        return {"max_completion_length": self.schedule.l_max, "mask_truncated_completions": False,
                "logging_steps": 1}

    @property
    def grpo_config_kwargs(self) -> dict[str, Any]:
        """``GRPOConfig(**...)``: :attr:`required_config`, and on a machine without CUDA ``use_cpu=True,
        bf16=False`` (TRL defaults to bf16, which transformers refuses on CPU without ``use_cpu``; the choice
        ``siri train`` makes for CPU smoke runs, siri_rl/engines/trl/config.py)."""
        from siri_rl.engines.trl.config import resolve_device

        on_cpu = resolve_device("auto") == "cpu"
        return {**self.required_config, **({"use_cpu": True, "bf16": False} if on_cpu else {})}

    def attach(self, trainer: Any) -> None:
        """Check ``trainer``'s settings against the schedule (:class:`ConfigError`, one line naming the setting)
        and add the callback; call it after ``GRPOTrainer(...)`` and before ``trainer.train()``."""
        args = trainer.args
        want = {**self.required_config, "eval_strategy": "no"}
        for key, value in want.items():
            got = getattr(args, key)
            got = getattr(got, "value", got)  # eval_strategy is an enum
            if got != value and not (key == "max_completion_length" and got >= value):
                raise ConfigError(f"GRPOConfig({key}={got!r}): SIRI needs {key}={value!r} (pass "
                                  f"**siri.grpo_config_kwargs; TRL's eval loop would reuse the current cap)")
        micro = args.steps_per_generation * args.num_iterations  # one rollout round, in micro-steps
        steps, rest = divmod(self.rounds * micro, args.gradient_accumulation_steps)
        if rest or micro % args.gradient_accumulation_steps:
            raise ConfigError(f"GRPOConfig: steps_per_generation x num_iterations ({micro}) must be a multiple of "
                              f"gradient_accumulation_steps ({args.gradient_accumulation_steps}): a round must end "
                              f"on an optimizer step")
        if args.max_steps != steps:
            raise ConfigError(f"GRPOConfig(max_steps={args.max_steps}): {self.rounds} rounds of "
                              f"{micro // args.gradient_accumulation_steps} optimizer steps need max_steps={steps}")
        self.reward.accelerator = trainer.accelerator
        # Every id the model ends on, as TRL stops on them (trl/trainer/grpo_trainer.py:408-416).
        self.reward.eos_ids = frozenset(eos_token_ids(self.reward.tokenizer, trainer.model))
        check_colocated_vllm(trainer)
        self.callback.bind(trainer)


def siri_grpo(schedule: LengthSchedule | AdaptiveSchedule, tokenizer: Any, *, rounds: int, run_dir: str | Path,
              require_think_end: bool = True, save_every: int | None = None, progress: bool = False,
              guard: str | NoLearningGuard | dict[str, Any] | None = "warn") -> SiriGRPO:
    """SIRI for an existing ``GRPOTrainer`` script (SIRI §4.2-4.3): the reward that scores 1 iff the last
    ``\\boxed{}`` after ``</think>`` within the round's first L tokens equals the ``answer`` column, and the
    callback that sets L = ``schedule(round)`` before each rollout round and writes the run directory.

    Args:
        schedule: the length schedule (:func:`siri_rl.schedule.make_schedule`), L in tokens per rollout round,
            or the closed-loop :func:`siri_rl.adaptive.make_adaptive_schedule` (the cap of round r+1 is decided
            from round r's training accuracy; a resume rebuilds its state from ``metrics.jsonl``).
        tokenizer: the policy's tokenizer (the reward decodes the first L tokens).
        rounds: rollout rounds to train (trough/peak checkpoints follow from it); ``GRPOConfig.max_steps`` must be
            this many rounds of optimizer steps (checked by :meth:`SiriGRPO.attach`).
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go (a fresh run refuses a directory holding a run;
            ``trainer.train(resume_from_checkpoint=...)`` continues one).
        require_think_end: grade only answers after ``</think>`` (R1-style models; False for models without it).
        save_every: also save a resumable Trainer checkpoint every this many rounds.
        progress: show a per-round progress bar.
        guard: the no-learning guard (:mod:`siri_rl.guard`): ``warn`` (default), ``stop``, ``off``, a mapping or a
            :class:`~siri_rl.guard.NoLearningGuard`. On ``stop`` training ends with a resumable checkpoint and
            ``siri.callback.guard_stop`` holds the message; raising is left to your script.
    """
    cap = RolloutCap(schedule)
    reward = LengthCappedReward(cap, tokenizer, require_think_end=require_think_end)
    if not isinstance(guard, NoLearningGuard):
        try:
            guard = guard_from_dict(guard)
        except ValueError as err:
            raise ConfigError(f"siri_grpo(guard=...): {err}") from None
    callback = LengthScheduleCallback(cap, run_dir, num_rounds=rounds, save_every=save_every, progress=progress,
                                      guard=guard)
    return SiriGRPO(schedule, rounds, reward, callback)
