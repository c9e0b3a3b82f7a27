"""``siri train --engine trl``: SIRI on ``trl.GRPOTrainer`` (a callback + a reward function + config mapping).

Data flow: config -> schedule + GRPOConfig -> GRPOTrainer(reward=LengthCappedReward, callbacks=[LengthScheduleCallback])
-> run directory (config.yaml, metrics.jsonl, checkpoints/<cycleK-compressed|expanded>, trainer/checkpoint-N).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siri_rl.adaptive import AdaptiveSchedule
from siri_rl.config import ConfigError, ExperimentConfig, check_context
from siri_rl.engines.protocol import NoLearningStop, TrainResult
from siri_rl.engines.trl.callback import LengthScheduleCallback, RolloutCap, write_export_cards
from siri_rl.engines.trl.colocate import check_colocated_vllm, keep_linear_weights
from siri_rl.engines.trl.config import TRAINER_SUBDIR, describe, grpo_kwargs, policy_precision, round_layout
from siri_rl.engines.trl.interrupt import flag_interrupts
from siri_rl.engines.trl.reward import LengthCappedReward
from siri_rl.engines.trl.validation import ValidationCallback, check_validation_engine
from siri_rl.guard import guard_from_dict
from siri_rl.models import quiet_weight_bars
from siri_rl.prompts import eos_token_ids
from siri_rl.run_dir import (
    CHECKPOINT_CARD,
    CHECKPOINTS,
    CONFIG_FILE,
    DYNAMICS_PNG,
    METRICS_FILE,
    RunInterrupted,
    check_output_dir,
    check_resume_config,
    read_checkpoint_cards,
    read_metric_rows,
    refuse_existing_run,
    truncate_metrics,
    write_dynamics_plot,
    write_run_config,
)

logger = logging.getLogger(__name__)


def _saved_step(checkpoint: Path) -> int | None:
    """``global_step`` of a complete Trainer checkpoint, else None. trainer_state.json is the last file
    Trainer._save_checkpoint writes (transformers/trainer.py:3074-3114), not atomically: a checkpoint without it,
    or with a half-written one, was cut short."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest resumable Trainer checkpoint in ``RUN/trainer/checkpoint-N`` (None if there is none)."""
    root = Path(run_dir) / TRAINER_SUBDIR
    found = [(int(m.group(1)), p) for p in root.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
             and _saved_step(p) is not None]
    return max(found)[1] if found else None


# What Trainer._save_checkpoint adds to save_model's files in checkpoint-N (transformers/trainer.py:3097-3114).
_TRAINER_STATE_FILES = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "trainer_state.json")


@dataclass
class RunPlan:
    """What :func:`plan_run` found: the Trainer arguments and where the run starts.

    ``done_rounds``: rounds the resumed checkpoint holds (0 for a fresh run, or a run interrupted before its first
    checkpoint); ``stored_rounds``: ``training.rounds`` of the run's ``config.yaml`` (None if it has none);
    ``rows``: the ``metrics.jsonl`` rows of those rounds (the file is read once per start, here).
    """

    kw: dict[str, Any]
    precision: dict[str, str]
    resume_from: Path | None
    done_rounds: int
    stored_rounds: int | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def finished(self, cfg: ExperimentConfig) -> bool:
        return self.done_rounds >= cfg.training.rounds


def plan_run(cfg: ExperimentConfig, output_dir: str | Path, *, resume: bool = False) -> RunPlan:
    """The checks of a real run that need no model (seconds, downloads nothing), in the order a user meets them:
    the output path, the ``trl`` section and batch geometry, the context budget, an existing run without
    ``--resume``, and on ``--resume`` the stored config (:func:`siri_rl.run_dir.check_resume_config`), the
    checkpoint and ``metrics.jsonl``. Raises :class:`ConfigError`; writes nothing."""
    run_dir = Path(output_dir)
    check_output_dir(run_dir)
    kw = grpo_kwargs(cfg, run_dir / TRAINER_SUBDIR)
    check_context(cfg)
    check_validation_engine(cfg, kw)
    precision = policy_precision(cfg, kw)
    refuse_existing_run(run_dir, resume=resume)
    if not resume:
        return RunPlan(kw, precision, None, 0, None)
    stored_rounds = check_resume_config(run_dir, cfg)
    resume_from = latest_checkpoint(run_dir)
    done = 0
    if resume_from is None:
        if stored_rounds is None:
            raise ConfigError(f"--resume: {run_dir} holds no run to resume (no {CONFIG_FILE}, no checkpoint under "
                              f"{TRAINER_SUBDIR}/); start without --resume")
        # Started, but stopped before its first resumable checkpoint: it starts again at round 0.
    else:
        step = _saved_step(resume_from)
        assert step is not None
        per_round = round_layout(cfg).optimizer_steps_per_round
        if step % per_round:
            # The callback counts rounds from global_step and TRL regenerates on its own counter: both only line up
            # with a round start (callback.on_train_begin).
            raise ConfigError(f"--resume: {resume_from} was saved after {step} optimizer steps, not on a round "
                              f"boundary ({per_round} per round); delete it to resume from the previous checkpoint")
        done = step // per_round
        if done > cfg.training.rounds:
            raise ConfigError(f"--resume: {resume_from} holds {done} rounds, more than training.rounds="
                              f"{cfg.training.rounds}")
    # Read on every process, so that a damaged file fails on all of them before any barrier.
    rows = truncate_metrics(run_dir / METRICS_FILE, done, rows=read_metric_rows(run_dir / METRICS_FILE), rewrite=False)
    if stored_rounds is not None and cfg.training.rounds > stored_rounds and done < cfg.training.rounds:
        lr = kw.get("lr_scheduler_type", "linear")
        if str(lr) not in ("constant", "constant_with_warmup"):
            # The Trainer rebuilds its LR schedule over the new max_steps: later rounds would get other rates.
            raise ConfigError(f"--resume: training.rounds={cfg.training.rounds} cannot extend a run with "
                              f"trl.lr_scheduler_type={lr} (its rates are spread over training.rounds); start a new "
                              f"run to train longer")
    return RunPlan(kw, precision, resume_from, done, stored_rounds, rows)


def exported_rounds(cfg: ExperimentConfig, rows: list[dict[str, Any]]) -> dict[int, str]:
    """``{round: name}`` of the trough/peak checkpoints of a run whose kept ``metrics.jsonl`` rows are ``rows``:
    the cyclic kinds' follow from ``training.rounds``, the adaptive kind's from where its controller turned
    (rebuilt from the rows)."""
    sched = cfg.schedule
    if isinstance(sched, AdaptiveSchedule):
        from siri_rl.schedule import ScheduleError

        try:
            return dict(AdaptiveSchedule.checkpoints(sched.resume(rows)))
        except ScheduleError as err:
            raise ConfigError(f"--resume: {err}") from None
    return dict(sched.checkpoints(cfg.training.rounds))


def _load_model_and_tokenizer(cfg: ExperimentConfig, weights_dtype: str, path: str | Path):
    """The policy at ``path`` in ``weights_dtype`` (:func:`~siri_rl.engines.trl.config.policy_precision`: float32
    unless DeepSpeed/FSDP hold the master weights) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.prompts import load_tokenizer

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
    check_context(cfg, getattr(model.config, "max_position_embeddings", None))
    return model, tok


def _train_dataset(cfg: ExperimentConfig, tokenizer: Any = None, rows: list[dict[str, Any]] | None = None):
    from datasets import Dataset

    from siri_rl.data import load_problems
    from siri_rl.prompts import build_messages, prompt_token_ids

    if rows is None:
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


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _export_from_checkpoint(checkpoint: Path, dest: Path, row: dict[str, Any], cfg: ExperimentConfig) -> None:
    """Export ``checkpoints/<dest.name>`` from a Trainer checkpoint of the same weights: its files are
    ``save_model``'s (the call :meth:`LengthScheduleCallback.export_checkpoint` makes, trainer.py:3074) plus the
    optimizer, scheduler, RNG and trainer state, which are left out. Written beside ``dest`` and renamed."""
    files = [p for p in checkpoint.iterdir() if p.is_file() and p.name not in _TRAINER_STATE_FILES
             and not (p.name.startswith("rng_state") and p.suffix == ".pth")]
    weights = [p for p in files if p.suffix == ".safetensors" or (p.name.startswith("pytorch_model") and p.suffix == ".bin")]
    if not weights or not (checkpoint / "config.json").exists():
        raise ConfigError(f"--resume: {dest} is missing and {checkpoint} holds no Hugging Face model to export it from "
                          f"(sharded DeepSpeed/FSDP state); delete {checkpoint} and --resume to train the last "
                          f"rounds again")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in files:
        shutil.copy2(p, tmp / p.name)
    write_export_cards(tmp, dest.name, row, cfg.schedule)
    shutil.rmtree(dest, ignore_errors=True)  # a half-written export of a kill during save_model
    tmp.rename(dest)


def _result(run_dir: Path, rows: list[dict[str, Any]], plot: Path | None, wall_s: float, *,
            finished: bool = False) -> TrainResult:
    return TrainResult(run_dir=run_dir, rounds_done=len(rows),
                       checkpoints={c.name: c.path for c in read_checkpoint_cards(run_dir)},
                       tokens_generated=int(rows[-1].get("tokens_generated", 0)) if rows else 0, wall_s=wall_s,
                       dynamics_png=plot, finished=finished)


def _plot(cfg: ExperimentConfig, run_dir: Path, rows: list[dict[str, Any]]) -> Path | None:
    return write_dynamics_plot(run_dir, rows, title=f"{cfg.name}: SIRI on TRL")


def _complete_finished_run(cfg: ExperimentConfig, run_dir: Path, plan: RunPlan) -> TrainResult:
    """``--resume`` of a run whose newest checkpoint is after its last round: train nothing; export ``final``
    and plot ``dynamics.png`` if a kill after training left them undone. Nothing that exists is rewritten."""
    rows = plan.rows
    last_round = cfg.training.rounds - 1
    assert plan.resume_from is not None
    plot = run_dir / DYNAMICS_PNG
    if _is_main_process():
        final = run_dir / CHECKPOINTS / "final"
        if last_round not in exported_rounds(cfg, rows) and not (final / CHECKPOINT_CARD).exists():
            last = [r for r in rows if r.get("step") == last_round]
            if not last:
                raise ConfigError(f"--resume: {run_dir / METRICS_FILE} has no row of the last round ({last_round}); "
                                  f"delete {plan.resume_from} and --resume to train it again")
            _export_from_checkpoint(plan.resume_from, final, last[-1], cfg)
            logger.info("exported %s from %s", final, plan.resume_from)
        if rows and not plot.exists():
            _plot(cfg, run_dir, rows)
    return _result(run_dir, rows, plot if plot.exists() else None, 0.0, finished=True)


def train(
    config: ExperimentConfig,
    *,
    output_dir: str | Path,
    resume: bool = False,
    dry_run: bool = False,
    stop_after_rounds: int | None = None,
    progress: bool = True,
    callbacks: list | None = None,
    model_path: str | Path | None = None,
    train_rows: list[dict[str, Any]] | None = None,
    validator: Any = None,
) -> TrainResult | dict[str, Any]:
    """Run SIRI with TRL's GRPOTrainer; returns a :class:`~siri_rl.engines.TrainResult` (dry run: a dict).

    Args:
        config: a validated experiment config (``siri_rl.config.load_config``).
        output_dir: the run directory.
        resume: continue from the newest ``RUN/trainer/checkpoint-N``, at the same schedule step, with the config
            the run was started with (:func:`siri_rl.run_dir.check_resume_config`; a larger
            ``training.rounds`` alone extends it). A finished run trains nothing more: only a missing ``final``
            export or ``dynamics.png`` is written (the result then has ``finished=True``).
        dry_run: only resolve and return :func:`describe` (no model is loaded).
        stop_after_rounds: stop (with a resumable checkpoint) after this many rounds in total.
        progress: show the per-round progress (a bar on a terminal, a line every 30 s otherwise).
        callbacks: extra ``TrainerCallback`` instances (e.g. for tests and benchmarks).
        model_path: load the policy and tokenizer from here instead of ``config.model.name_or_path``, for a caller
            that resolves a name of its own there (the toy: ``toy`` -> its cached base model). ``config.yaml``
            keeps the config's name.
        train_rows: the training problems (``{"problem", "answer"}`` dicts), for a caller that resolves
            ``config.data.train`` itself (the toy: ``toy`` -> generated sums); default: read ``data.train``.
        validator: runs ``validation:`` (:class:`siri_rl.evaluate.validation.Validator`, which ``siri train``
            builds; the engine sits below ``siri_rl.evaluate``); required when the section names benchmarks.

    Raises :class:`ConfigError` (bad config or run directory, before any model is loaded),
    :class:`~siri_rl.run_dir.RunInterrupted` (Ctrl-C during training, with the line to print) and
    :class:`~siri_rl.engines.NoLearningStop` (``training.guard: stop`` stopped the run, after its resumable
    checkpoint and ``dynamics.png`` were written).
    """
    run_dir = Path(output_dir)
    if dry_run:
        return describe(config, run_dir)
    cfg = config
    plan = plan_run(cfg, run_dir, resume=resume)
    if plan.finished(cfg):
        return _complete_finished_run(cfg, run_dir, plan)
    if stop_after_rounds is not None and plan.done_rounds >= stop_after_rounds:
        # Trainer.train would still take one step before checking should_training_stop (trainer.py:1513-1528).
        return _result(run_dir, plan.rows, None, 0.0)
    if train_rows is None and cfg.data.train == "toy":  # a name `siri train` resolves; the engine cannot
        raise ConfigError("data.train: toy is resolved by `siri train`, not by the engine; calling the engine "
                          "directly, pass the training problems as train_rows")
    if cfg.validation.benchmarks and validator is None:
        raise ConfigError("validation: is run by `siri train`; calling the engine directly, pass "
                          "validator=siri_rl.evaluate.validation.Validator(config, output_dir)")
    kw, precision, resume_from = plan.kw, plan.precision, plan.resume_from

    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    if kw["use_cpu"] and isinstance(cfg.toy.torch_threads, int):  # "auto": resolved by the toy, above the engine
        torch.set_num_threads(cfg.toy.torch_threads)
    if _is_main_process() and (not resume or plan.stored_rounds != cfg.training.rounds):
        # A fresh run, or an extension (training.rounds raised); a plain resume keeps the file it was started with.
        write_run_config(run_dir, cfg)
    args = GRPOConfig(**kw)
    model, tok = _load_model_and_tokenizer(cfg, precision["weights"], model_path or cfg.model.name_or_path)
    dataset = _train_dataset(cfg, tok, train_rows)
    cap = RolloutCap(cfg.schedule)
    reward = LengthCappedReward(cap, tok, eos_ids=eos_token_ids(tok, model),
                                require_think_end=cfg.data.require_think_end)
    if kw.get("use_vllm") and kw.get("vllm_mode", "colocate") == "colocate":
        keep_linear_weights()  # before TRL builds the engine in this process (colocate.py)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tok, callbacks=list(callbacks or []))
    reward.accelerator = trainer.accelerator
    check_colocated_vllm(trainer)
    # disable_tqdm=True makes the Trainer print every log dict; the callback's per-round bar replaces both.
    trainer.remove_callback(PrinterCallback)
    cb = LengthScheduleCallback(cap, run_dir, num_rounds=cfg.training.rounds, save_every=cfg.training.save_every,
                                stop_after_rounds=stop_after_rounds, progress=progress, rows=plan.rows,
                                guard=guard_from_dict(cfg.training.guard)).bind(trainer)
    if validator is not None and cfg.validation.benchmarks:
        if validator.tokenizer is None:
            validator.tokenizer = tok
        ValidationCallback(validator, cb).bind(trainer)  # after cb: a round's row is written before its validation
    if resume and trainer.is_world_process_zero():
        # Rounds from the checkpoint on are produced again: drop their rows (a half-written last line goes too).
        # One writer; the callback continues the running totals from plan.rows, so no process reads the file again.
        truncate_metrics(cb.metrics_path, plan.done_rounds, rows=plan.rows)
    t0 = time.time()
    try:
        with flag_interrupts(cb):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        cb.close_progress()  # the bar's last line, a newline, the cursor back
        raise RunInterrupted(_interrupted_line(cfg, run_dir, cb.current_round)) from None
    rows = cb.rows or []
    plot = _plot(cfg, run_dir, rows) if trainer.is_world_process_zero() else None
    if cb.guard_stop is not None:
        raise NoLearningStop(_guard_stop_line(cfg, run_dir, cb.guard_stop, len(rows)))
    return _result(run_dir, rows, plot, time.time() - t0)


def _guard_stop_line(cfg: ExperimentConfig, run_dir: Path, message: str, done: int) -> str:
    """The one line ``siri train`` prints when ``training.guard: stop`` ended the run."""
    ckpt = latest_checkpoint(run_dir)
    where = f"a resumable checkpoint is in {ckpt}" if ckpt is not None else "no checkpoint was saved"
    return (f"{message}. Stopped after round {done - 1} of {cfg.training.rounds} ({where}); fix the cause and start "
            f"a new run, or continue this one with `siri train -o {run_dir} --resume` (it keeps training.guard: "
            "stop, so it stops again after one more starved round)")


def _interrupted_line(cfg: ExperimentConfig, run_dir: Path, current: int) -> str:
    """Where a Ctrl-C stopped the run and what ``--resume`` will redo, in one line."""
    ckpt = latest_checkpoint(run_dir)
    start = 0
    if ckpt is not None:
        start = (_saved_step(ckpt) or 0) // round_layout(cfg).optimizer_steps_per_round
    if start >= cfg.training.rounds:
        return (f"interrupted after the last round ({cfg.training.rounds}); continue with --resume (it trains "
                f"nothing more, only finishes the exports)")
    where = (f"it restarts at round {start}, after the last checkpoint" if ckpt is not None
             else "no checkpoint yet: it starts again at round 0")
    return f"interrupted at round {current} of {cfg.training.rounds}; continue with --resume ({where})"
