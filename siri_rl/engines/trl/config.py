"""Map a SIRI experiment config onto ``trl.GRPOConfig`` (DAPO settings, rollout rounds, per-device defaults).

Vocabulary: a *rollout round* (= one schedule step, SIRI's "step") generates ``prompts_per_round x group_size``
completions (TRL's ``generation_batch_size``) and then runs ``updates_per_round`` optimizer steps on disjoint
slices of that batch (x ``trl.num_iterations`` passes, GRPO's mu). In TRL terms one round is
``steps_per_generation * num_iterations`` micro-steps and ``updates_per_round * num_iterations`` optimizer steps.

Per-device defaults (chosen deliberately, override in ``trl:``):
  - CPU: fp32 (no bf16: bf16 matmuls on CPU made a tiny model's step ~20x slower when this was scoped), no
    gradient checkpointing (tiny models; it only costs time), ``use_cpu=True``.
  - CUDA: bf16 and gradient checkpointing on (TRL's own defaults, right for 1.5B-7B models).

Precision (:func:`policy_precision`): ``bf16=True`` is mixed precision, not bf16 weights. Transformers turns it into
``mixed_precision="bf16"`` (transformers/training_args.py:1554-1558) and accelerate wraps the model's forward in
``torch.autocast(bfloat16)`` (accelerate/accelerator.py:585-593, 1824-1835; utils/modeling.py:2078-2113); the
optimizer steps whatever tensors the model was loaded with. Only DeepSpeed ZeRO (fp32 partitions of the bf16
parameters) and FSDP with mixed precision (accelerate upcasts trainable parameters to fp32:
accelerator.py:2023-2038, utils/fsdp_utils.py:815-820) keep fp32 master weights of a bf16-loaded model. Under plain
DDP or one process a bf16-loaded policy is updated in bf16, where an AdamW step of ~lr = 1e-6 is below half the
spacing of bf16 (2^-7 at 1.0, ~1.5e-4 at 0.02) and rounds away: measured on a tiny Qwen2, one step changed 3.6% of
the weights and no RMSNorm weight. So the policy is loaded in fp32 (``model.dtype: auto`` resolves to float32) and
computes in bf16 under autocast, unless ``trl.deepspeed``/``trl.fsdp`` (or ``accelerate launch --use_deepspeed /
--use_fsdp``) provide the master weights; an explicit ``model.dtype: bfloat16|float16`` without them is refused
(a :class:`ConfigError` at ``--dry-run``, not a warning in one of eight logs, and not a silent fp32 load that would
double the memory the config's author planned for).

vLLM importance sampling (:data:`VLLM_IMPORTANCE_SAMPLING`): with ``use_vllm`` TRL 1.16 corrects for the
difference between vLLM's sampling log-probs and the trainer's by default in ``"sequence_mask"`` mode with
C_max = 3 (trl/trainer/grpo_config.py:925-953): one ratio per completion, ``exp`` of the *sum* of the per-token
log-prob differences (grpo_trainer.py:2660-2674), and the whole completion's loss zeroed when it leaves
[C_min, C_max] (2686-2702). The spread of that sum grows with the completion's length, so the 8K-16K rollouts SIRI
trains on are masked or down-weighted more often than short ones: a length bias in an experiment about length.
SIRI uses token-level truncated IS instead (TRL's ``"token_truncate"``; TIS of Yao et al. 2025, veRL's
``rollout_is: token`` with threshold 2.0, verl/trainer/config/algorithm.py:188-199): each token's loss is weighted
by min(pi_train / pi_vllm, 2), whatever the completion's length. Override with ``trl.vllm_importance_sampling_*``.
The ratios are logged as ``importance_sampling_ratio_*`` and ``sampling_logp_difference_*`` in metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siri_rl.adaptive import AdaptiveSchedule
from siri_rl.config import ConfigError, ExperimentConfig, check_context
from siri_rl.guard import guard_from_dict

TRAINER_SUBDIR = "trainer"  # RUN/trainer/checkpoint-N: the Trainer's resumable checkpoints

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
    # Resumable checkpoints are taken at round boundaries only (the callback asks for them): a Trainer checkpoint
    # in the middle of a round would resume with an empty generation buffer and TRL's regeneration counter out of
    # step with the rounds.
    "save_strategy": "training.save_every (resumable checkpoints are taken at round boundaries)",
    "save_steps": "training.save_every (resumable checkpoints are taken at round boundaries)",
}

# With use_vllm: token-level truncated importance sampling, not TRL's sequence-level mask (module docstring).
VLLM_IMPORTANCE_SAMPLING = {
    "vllm_importance_sampling_correction": True,
    "vllm_importance_sampling_mode": "token_truncate",
    "vllm_importance_sampling_clip_max": 2.0,
}

HALF_DTYPES = ("bfloat16", "float16")


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
    if trl.get("logging_strategy", "steps") != "steps":
        raise ConfigError("trl.logging_strategy must be 'steps' (the default): metrics.jsonl rows and the trough/peak "
                          "checkpoints are written from the per-step logs, so with 'no' or 'epoch' every export "
                          "would hold the final weights")
    if trl.get("mask_truncated_completions"):
        raise ConfigError("trl.mask_truncated_completions=True would drop exactly the rollouts the length-capped "
                          "reward scores 0 (SIRI keeps them, reward 0)")


def sharded_master_weights(kw: dict[str, Any]) -> str | None:
    """``"deepspeed"`` or ``"fsdp"`` when a sharding engine holds the optimizer's parameters (``trl.deepspeed`` /
    ``trl.fsdp``, or ``accelerate launch --use_deepspeed / --use_fsdp``, which set ``ACCELERATE_USE_*``:
    accelerate/utils/launch.py:305, 566; transformers/training_args.py:1646), else None (DDP or one process)."""
    if kw.get("deepspeed") or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    if kw.get("fsdp") or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    return None


def policy_precision(cfg: ExperimentConfig, kw: dict[str, Any]) -> dict[str, str]:
    """The dtype the policy is loaded in (``weights``), the autocast dtype (``compute``) and who holds the fp32
    master weights, for the GRPOConfig kwargs ``kw``; raises :class:`ConfigError` where the optimizer would update
    half-precision weights directly (module docstring)."""
    mixed = ("bf16" if kw.get("bf16") else "fp16" if kw.get("fp16")
             else os.environ.get("ACCELERATE_MIXED_PRECISION", "no"))  # transformers/training_args.py:1554-1558
    compute = {"bf16": "bfloat16", "fp16": "float16"}.get(mixed, "float32")
    want = cfg.model.dtype
    engine = sharded_master_weights(kw)
    if engine is not None:
        if want in HALF_DTYPES and compute == "float32":
            raise ConfigError(f"model.dtype={want} with {engine} but no mixed precision (trl.bf16/fp16 off): only "
                              f"with mixed precision does {engine} keep fp32 master weights; set trl.bf16: true or "
                              "leave model.dtype at auto")
        return {"weights": want, "compute": compute, "master_weights": f"fp32, held by {engine}"}
    if want in HALF_DTYPES:
        raise ConfigError(
            f"model.dtype={want} would train pure-{want} weights: without DeepSpeed ZeRO or FSDP the optimizer "
            f"updates the loaded tensors directly and an AdamW step at lr {cfg.training.learning_rate:g} rounds away; "
            "leave model.dtype at auto (fp32 master weights, bf16 autocast via trl.bf16) or set trl.deepspeed / "
            "trl.fsdp")
    if compute != "float32" and (kw.get("use_transformers_continuous_batching") or kw.get("use_transformers_paged")):
        raise ConfigError(
            "trl.use_transformers_continuous_batching with bf16/fp16 casts the policy to that dtype in place before "
            "generating (trl/trainer/grpo_trainer.py:1797-1800), which turns the fp32 master weights into half "
            "precision; use the default generate path or vLLM")
    return {"weights": "float32", "compute": compute, "master_weights": "fp32 parameters"}


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
    if cfg.trl.get("use_vllm"):
        kw.update(VLLM_IMPORTANCE_SAMPLING)  # the user's trl.vllm_importance_sampling_* still win (below)
    kw.update(cfg.trl)
    policy_precision(cfg, kw)  # refuse pure half-precision weights before anything is loaded
    if kw.get("use_vllm"):
        need = cfg.data.max_prompt_length + cfg.schedule.l_max
        got = kw.get("vllm_max_model_length")
        if got is None:
            # vLLM pre-allocates KV cache for its max model length: prompt + L_max is exactly what a round needs, and
            # the same colocated engine samples the validation at its fixed cap (engines/trl/validation.py)
            validation = (cfg.validation.max_tokens or 0) if cfg.validation.benchmarks else 0
            kw["vllm_max_model_length"] = cfg.data.max_prompt_length + max(cfg.schedule.l_max, validation)
        elif got < need:
            raise ConfigError(
                f"trl.vllm_max_model_length={got} cannot hold a prompt (data.max_prompt_length="
                f"{cfg.data.max_prompt_length}) plus the longest rollout (schedule.l_max={cfg.schedule.l_max}); "
                f"set it to at least {need}")
    return kw


def describe(cfg: ExperimentConfig, output_dir: str | Path, *, first: int = 8) -> dict[str, Any]:
    """What ``--dry-run`` prints: resolved config, GRPOConfig kwargs, round geometry, the first rounds' caps (for
    ``kind: adaptive`` only round 0's, and a line saying that the schedule is closed-loop) and the guard.
    Loads no model and downloads nothing."""
    kw = grpo_kwargs(cfg, Path(output_dir) / TRAINER_SUBDIR)
    layout = round_layout(cfg)
    check_context(cfg)
    sched = cfg.schedule
    guard = guard_from_dict(cfg.training.guard).to_dict()
    if isinstance(sched, AdaptiveSchedule):
        return {
            "config": cfg.to_dict(),
            "grpo_config": kw,
            "precision": policy_precision(cfg, kw),
            "round": _round_geometry(layout),
            "schedule": (f"closed-loop (kind: adaptive): round 0 runs at L_max={sched.initial_state()['max_len']}; "
                         "the cap of round r+1 is decided after round r from its training accuracy, so later caps "
                         "are not known in advance; metrics.jsonl logs each decision (phase, adaptive_signal, "
                         "adaptive_reference, adaptive_reason)"),
            "first_caps": [{"step": 0, "max_len": sched.initial_state()["max_len"], "phase": "filling"}],
            "checkpoints": "where the controller turns: cycleK-compressed (trough), cycleK-expanded (peak)",
            "guard": guard,
        }
    return {
        "config": cfg.to_dict(),
        "grpo_config": kw,
        "precision": policy_precision(cfg, kw),
        "round": _round_geometry(layout),
        "first_caps": [{"step": s, "max_len": sched(s), "phase": sched.phase(s)}
                       for s in range(min(first, cfg.training.rounds))],
        "checkpoints": [{"step": s, "name": n} for s, n in sched.checkpoints(cfg.training.rounds)],
        "guard": guard,
    }


def _round_geometry(layout) -> dict[str, int]:
    return {
        "processes": layout.world_size,
        "completions": layout.completions_per_round,
        "micro_steps": layout.micro_steps_per_round,
        "optimizer_steps": layout.optimizer_steps_per_round,
    }
