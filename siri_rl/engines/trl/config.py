"""Map a SIRI experiment config onto ``trl.GRPOConfig`` (DAPO settings, rollout rounds, per-device defaults).

Vocabulary: a *rollout round* (= one schedule step, SIRI's "step") generates ``prompts_per_round x group_size``
completions (TRL's ``generation_batch_size``) and then runs ``updates_per_round`` optimizer steps on disjoint
slices of that batch (x ``trl.num_iterations`` passes, GRPO's mu). In TRL terms one round is
``steps_per_generation * num_iterations`` micro-steps and ``updates_per_round * num_iterations`` optimizer steps.

Per-device defaults (chosen deliberately, override in ``trl:``):
  - CPU: fp32 (no bf16: bf16 matmuls on CPU made a tiny model's step ~20x slower when this was scoped), no
    gradient checkpointing (tiny models; it only costs time), ``use_cpu=True``.
  - CUDA: bf16 and gradient checkpointing on (TRL's own defaults, right for 1.5B-7B models).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siri_rl.config import ConfigError, ExperimentConfig

# trl.* keys that SIRI owns: set them through the named config key instead, so there is one source of truth.
OWNED_KEYS = {
    "max_completion_length": "schedule (the cap is set per rollout round)",
    "num_generations": "training.group_size",
    "learning_rate": "training.learning_rate",
    "temperature": "training.temperature",
    "top_p": "training.top_p",
    "epsilon": "training.clip_low",
    "epsilon_high": "training.clip_high",
    "beta": "training.kl_coef",
    "seed": "training.seed",
    "max_steps": "training.rounds",
    "output_dir": "siri train --output-dir",
    "generation_batch_size": "training.prompts_per_round x training.group_size",
    "steps_per_generation": "training.updates_per_round",
}


@dataclass(frozen=True)
class RoundLayout:
    """How one rollout round maps onto TRL's micro-steps and optimizer steps."""

    completions_per_round: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    steps_per_generation: int
    num_iterations: int
    world_size: int

    @property
    def micro_steps_per_round(self) -> int:
        return self.steps_per_generation * self.num_iterations

    @property
    def optimizer_steps_per_round(self) -> int:
        return self.micro_steps_per_round // self.gradient_accumulation_steps


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def grpo_field_names() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def validate_trl_section(trl: dict[str, Any]) -> None:
    """Reject unknown GRPOConfig fields, SIRI-owned fields, and settings that would defeat the schedule."""
    names = grpo_field_names()
    unknown = sorted(set(trl) - names)
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, names, 1)) else k
                 for k in unknown]
        raise ConfigError(f"unknown trl.* key(s) {', '.join(hints)}: the trl section is passed to trl.GRPOConfig")
    for key in sorted(set(trl) & set(OWNED_KEYS)):
        raise ConfigError(f"trl.{key} is set by SIRI; use {OWNED_KEYS[key]} instead")
    gen = trl.get("generation_kwargs") or {}
    for key in ("max_new_tokens", "max_tokens", "max_length"):
        if key in gen:
            raise ConfigError(f"trl.generation_kwargs.{key}: the rollout length comes from the schedule, per rollout "
                              "round; remove it")
    if trl.get("eval_strategy", "no") != "no":
        raise ConfigError("trl.eval_strategy: TRL's eval loop reuses the current rollout cap; evaluate checkpoints "
                          "at a fixed length with `siri eval` instead (leave eval_strategy at 'no')")
    if trl.get("logging_steps", 1) != 1:
        raise ConfigError("trl.logging_steps must be 1: metrics.jsonl has one row per rollout round")
    if trl.get("mask_truncated_completions"):
        raise ConfigError("trl.mask_truncated_completions=True would drop exactly the rollouts the length-capped "
                          "reward scores 0 (SIRI keeps them, reward 0)")


def round_layout(cfg: ExperimentConfig, world_size: int | None = None) -> RoundLayout:
    """Batch geometry of a round; raises :class:`ConfigError` when the numbers do not divide. ``world_size``
    defaults to ``$WORLD_SIZE`` (set by accelerate/torchrun), else 1."""
    world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    t, trl = cfg.training, cfg.trl
    completions = t.prompts_per_round * t.group_size
    num_iterations = int(trl.get("num_iterations", 1))
    per_update, rem = divmod(completions, t.updates_per_round)
    if rem:
        raise ConfigError(f"training.prompts_per_round x group_size = {completions} completions is not divisible by "
                          f"training.updates_per_round = {t.updates_per_round}")
    if "per_device_train_batch_size" in trl:
        pdtbs = int(trl["per_device_train_batch_size"])
        ga = int(trl.get("gradient_accumulation_steps") or max(1, per_update // (pdtbs * world_size)))
    else:
        ga = int(trl.get("gradient_accumulation_steps", 1))
        pdtbs, rem = divmod(per_update, ga * world_size)
        if rem or pdtbs < 1:
            raise ConfigError(f"{per_update} completions per update do not split into gradient_accumulation_steps="
                              f"{ga} x {world_size} processes")
    if pdtbs * ga * world_size != per_update:
        raise ConfigError(
            f"trl.per_device_train_batch_size ({pdtbs}) x gradient_accumulation_steps ({ga}) x processes "
            f"({world_size}) = {pdtbs * ga * world_size} completions per optimizer step, but a round of {completions} "
            f"completions with training.updates_per_round={t.updates_per_round} needs {per_update}")
    if completions % (pdtbs * world_size):
        raise ConfigError(f"{completions} completions per round not divisible by the global micro-batch "
                          f"{pdtbs * world_size}")
    spg = completions // (pdtbs * world_size)
    return RoundLayout(completions, pdtbs, ga, spg, num_iterations, world_size)


def grpo_kwargs(cfg: ExperimentConfig, trainer_dir: str | Path, *, world_size: int | None = None) -> dict[str, Any]:
    """The keyword arguments for ``trl.GRPOConfig`` (SIRI/DAPO defaults, then the config's ``trl:`` section)."""
    validate_trl_section(cfg.trl)
    assert cfg.schedule is not None
    t = cfg.training
    layout = round_layout(cfg, world_size)
    device = resolve_device(t.device)
    on_gpu = device.startswith("cuda")
    kw: dict[str, Any] = {
        "output_dir": str(trainer_dir),
        # DAPO (SIRI §5.1): token-level loss mean, decoupled clip 0.2/0.28, no KL, temperature 1.0.
        "loss_type": "dapo",
        "epsilon": t.clip_low,
        "epsilon_high": t.clip_high,
        "beta": t.kl_coef,
        "temperature": t.temperature,
        "top_p": t.top_p,
        "mask_truncated_completions": False,  # truncated rollouts get reward 0, not masked
        "scale_rewards": "group",
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": "constant",
        "seed": t.seed,
        "num_generations": t.group_size,
        "max_completion_length": cfg.schedule.l_max,  # upper bound; the callback sets each round's cap
        "generation_batch_size": layout.completions_per_round,
        "per_device_train_batch_size": layout.per_device_train_batch_size,
        "gradient_accumulation_steps": layout.gradient_accumulation_steps,
        "max_steps": t.rounds * layout.optimizer_steps_per_round,
        "logging_steps": 1,
        "save_strategy": "steps",
        # Resumable checkpoints are requested by the callback at round boundaries; this only bounds the rest.
        "save_steps": t.rounds * layout.optimizer_steps_per_round + 1,
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,  # the callback shows progress per rollout round
        "use_cpu": not on_gpu,
        "bf16": on_gpu,
        "gradient_checkpointing": on_gpu,
        "dataloader_num_workers": 0,
    }
    kw.update(cfg.trl)
    if kw.get("use_vllm"):
        need = cfg.data.max_prompt_length + cfg.schedule.l_max
        got = kw.get("vllm_max_model_length")
        if got is None:
            # vLLM pre-allocates KV cache for its max model length: prompt + L_max is exactly what a round needs.
            kw["vllm_max_model_length"] = need
        elif got < need:
            raise ConfigError(
                f"trl.vllm_max_model_length={got} cannot hold a prompt (data.max_prompt_length="
                f"{cfg.data.max_prompt_length}) plus the longest rollout (schedule.l_max={cfg.schedule.l_max}); "
                f"set it to at least {need}")
    return kw
