"""``siri train --engine trl``: SIRI on ``trl.GRPOTrainer`` (a callback + a reward function + config mapping).

Data flow: config -> schedule + GRPOConfig -> GRPOTrainer(reward=LengthCappedReward, callbacks=[LengthScheduleCallback])
-> run directory (config.yaml, metrics.jsonl, checkpoints/<cycleK-compressed|expanded>, trainer/checkpoint-N).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml

from siri_rl.config import ConfigError, ExperimentConfig
from siri_rl.data import eos_token_ids, quiet_weight_bars
from siri_rl.engines.trl.callback import LengthScheduleCallback, RolloutCap, read_metrics_rows
from siri_rl.engines.trl.config import grpo_kwargs, policy_precision, round_layout
from siri_rl.engines.trl.reward import LengthCappedReward

logger = logging.getLogger(__name__)

TRAINER_SUBDIR = "trainer"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest resumable Trainer checkpoint in ``RUN/trainer/checkpoint-N`` (None if there is none)."""
    root = Path(run_dir) / TRAINER_SUBDIR
    found = [(int(m.group(1)), p) for p in root.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
             and (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def _check_context(cfg: ExperimentConfig) -> None:
    """L_max + prompt must fit the model's context; read from a local config.json only (never downloads)."""
    path = Path(cfg.model.name_or_path)
    limit = cfg.model.max_context
    if limit is None and (path / "config.json").exists():
        limit = json.loads((path / "config.json").read_text()).get("max_position_embeddings")
    if limit is not None and cfg.schedule is not None:
        need = cfg.schedule.l_max + cfg.data.max_prompt_length
        if need > limit:
            raise ConfigError(
                f"schedule.l_max ({cfg.schedule.l_max}) + data.max_prompt_length ({cfg.data.max_prompt_length}) = "
                f"{need} tokens exceeds the model's context ({limit}); lower l_max or the prompt length")


def describe(cfg: ExperimentConfig, output_dir: str | Path, *, first: int = 8) -> dict[str, Any]:
    """What ``--dry-run`` prints: resolved config, GRPOConfig kwargs, round geometry and the first rounds' caps.
    Loads no model and downloads nothing."""
    kw = grpo_kwargs(cfg, Path(output_dir) / TRAINER_SUBDIR)
    layout = round_layout(cfg)
    _check_context(cfg)
    sched = cfg.schedule
    assert sched is not None
    return {
        "config": cfg.to_dict(),
        "grpo_config": kw,
        "precision": policy_precision(cfg, kw),
        "round": {
            "processes": layout.world_size,
            "completions": layout.completions_per_round,
            "micro_steps": layout.micro_steps_per_round,
            "optimizer_steps": layout.optimizer_steps_per_round,
        },
        "first_caps": [{"step": s, "max_len": sched(s), "phase": sched.phase(s)}
                       for s in range(min(first, cfg.training.rounds))],
        "checkpoints": [{"step": s, "name": n} for s, n in sched.checkpoints(cfg.training.rounds)],
    }


def _load_model_and_tokenizer(cfg: ExperimentConfig, weights_dtype: str):
    """The policy in ``weights_dtype`` (:func:`~siri_rl.engines.trl.config.policy_precision`: float32 unless
    DeepSpeed/FSDP hold the master weights) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.toy import is_toy_model, toy_model_path
    from siri_rl.toy.tokenizer import load_tokenizer

    path = toy_model_path(cfg) if is_toy_model(cfg) else cfg.model.name_or_path
    tok = load_tokenizer(path, trust_remote_code=cfg.model.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}[weights_dtype]
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    quiet_weight_bars()  # the round bar shows progress; transformers' load/save bars for every save are noise
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    # Tied weights (small Qwen2s tie lm_head to the input embedding) are not saved, so a resumed Trainer loads a
    # state dict without them and warns "missing keys ['lm_head.weight']" unless exactly those keys are in
    # _keys_to_ignore_on_save; then it re-ties them instead (transformers/trainer.py:3757-3767). Saving drops them
    # either way (modeling_utils.py:3481-3491), so the files written do not change.
    tied = set(getattr(model, "all_tied_weights_keys", None) or ())
    if tied:
        model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or ()) | tied
    limit = cfg.model.max_context or getattr(model.config, "max_position_embeddings", None)
    assert cfg.schedule is not None
    if limit is not None and cfg.schedule.l_max + cfg.data.max_prompt_length > limit:
        raise ConfigError(f"schedule.l_max ({cfg.schedule.l_max}) + data.max_prompt_length "
                          f"({cfg.data.max_prompt_length}) exceeds the model's context ({limit})")
    return model, tok


def _train_dataset(cfg: ExperimentConfig, tokenizer: Any = None):
    from datasets import Dataset

    from siri_rl.data import build_messages, load_problems, prompt_token_ids
    from siri_rl.toy import is_toy_data, toy_train_rows

    if is_toy_data(cfg):
        rows = toy_train_rows(cfg)
    else:
        rows = load_problems(cfg.data.train, split=cfg.data.split, problem_field=cfg.data.problem_field,
                             answer_field=cfg.data.answer_field, skip_invalid=cfg.data.skip_invalid)
    if cfg.data.max_problems:
        rows = rows[: cfg.data.max_problems]
    if not rows:
        raise ConfigError(f"data.train {cfg.data.train!r} has no problems")
    if tokenizer is not None:
        # Like veRL's filter_overlong_prompts: a prompt over data.max_prompt_length would not fit the context budget
        # (L_max + max_prompt_length) that was validated above.
        limit = cfg.data.max_prompt_length
        kept = [r for r in rows if len(prompt_token_ids(r["problem"], tokenizer)) <= limit]
        if not kept:
            raise ConfigError(f"every prompt of data.train {cfg.data.train!r} is longer than data.max_prompt_length="
                              f"{limit} tokens")
        if len(kept) < len(rows):
            logger.warning("dropped %d of %d training problems whose prompt is longer than data.max_prompt_length=%d "
                           "tokens", len(rows) - len(kept), len(rows), limit)
        rows = kept
    # Conversational prompts: TRL applies the model's chat template (R1-distill: ends with "<think>\n").
    return Dataset.from_list([{"prompt": build_messages(r["problem"]), "answer": str(r["answer"])} for r in rows])


def _write_rows(metrics_path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` by ``rows`` atomically (a reader sees the old file or the new one)."""
    tmp = metrics_path.with_name(metrics_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, metrics_path)


def train(
    config: ExperimentConfig,
    *,
    output_dir: str | Path,
    resume: bool = False,
    dry_run: bool = False,
    stop_after_rounds: int | None = None,
    progress: bool = True,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Run SIRI with TRL's GRPOTrainer; returns a summary dict (run_dir, rounds, wall_s, tokens_generated, ...).

    Args:
        config: a validated experiment config (``siri_rl.config.load_config``).
        output_dir: the run directory.
        resume: continue from the newest ``RUN/trainer/checkpoint-N``, at the same schedule step.
        dry_run: only resolve and return :func:`describe` (no model is loaded).
        stop_after_rounds: stop (with a resumable checkpoint) after this many rounds in total.
        progress: show the per-round progress bar.
        callbacks: extra ``TrainerCallback`` instances (e.g. for tests and benchmarks).
    """
    run_dir = Path(output_dir)
    if dry_run:
        return describe(config, run_dir)
    cfg = config
    assert cfg.schedule is not None
    kw = grpo_kwargs(cfg, run_dir / TRAINER_SUBDIR)
    _check_context(cfg)
    precision = policy_precision(cfg, kw)
    resume_from, kept_rows = None, []
    if resume:
        resume_from = latest_checkpoint(run_dir)
        if resume_from is None:
            raise ConfigError(f"--resume: no checkpoint under {run_dir / TRAINER_SUBDIR}; start without --resume")
        step = json.loads((resume_from / "trainer_state.json").read_text())["global_step"]
        per_round = round_layout(cfg).optimizer_steps_per_round
        if step % per_round:
            # The callback counts rounds from global_step and TRL regenerates on its own counter: both only line up
            # with a round start (callback.on_train_begin).
            raise ConfigError(f"--resume: {resume_from} was saved after {step} optimizer steps, not on a round "
                              f"boundary ({per_round} per round); delete it to resume from the previous checkpoint")
        # Rounds after the checkpoint are produced again: keep the rows before it (a half-written last line goes
        # too). Read on every process, so that a damaged file fails on all of them before any barrier.
        kept_rows = [r for r in read_metrics_rows(run_dir) if r["step"] < step // per_round]
    elif (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"{run_dir} already holds a run (metrics.jsonl); pass --resume or pick a new --output-dir")

    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    if kw["use_cpu"] and cfg.toy.get("torch_threads"):
        torch.set_num_threads(int(cfg.toy["torch_threads"]))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    args = GRPOConfig(**kw)
    model, tok = _load_model_and_tokenizer(cfg, precision["weights"])
    dataset = _train_dataset(cfg, tok)
    cap = RolloutCap(cfg.schedule)
    reward = LengthCappedReward(cap, tok, eos_ids=eos_token_ids(tok, model),
                                require_think_end=cfg.data.require_think_end)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tok, callbacks=list(callbacks or []))
    reward.accelerator = trainer.accelerator
    # disable_tqdm=True makes the Trainer print every log dict; the callback's per-round bar replaces both.
    trainer.remove_callback(PrinterCallback)
    cb = LengthScheduleCallback(cap, run_dir, num_rounds=cfg.training.rounds, save_every=cfg.training.save_every,
                                stop_after_rounds=stop_after_rounds, progress=progress).bind(trainer)
    if resume_from is not None:
        # One writer; every process waits for it before the callback reads the running totals (on_train_begin).
        if trainer.is_world_process_zero():
            _write_rows(cb.metrics_path, kept_rows)
        trainer.accelerator.wait_for_everyone()
    t0 = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    rows = cb._rows()
    plot = None
    if rows and trainer.is_world_process_zero():
        from siri_rl.plots import plot_training_dynamics

        plot = str(plot_training_dynamics(rows, run_dir / "dynamics.png", title=f"{cfg.name}: SIRI on TRL"))
    return {
        "run_dir": str(run_dir),
        "dynamics_png": plot,
        "rounds": len(rows),
        "wall_s": time.time() - t0,
        "tokens_generated": rows[-1]["tokens_generated"] if rows else 0,
        "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").glob("*")) if (run_dir / "checkpoints").exists() else [],
    }
