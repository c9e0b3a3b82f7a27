"""From an experiment YAML to ``python -m verl.trainer.main_ppo --config-name siri_trainer <overrides>``. The constant
SIRI settings (SIRI §5.1: DAPO-style GRPO with ``adv_estimator=grpo``, no KL, decoupled clip 0.2/0.28, token-mean
loss; the agent loop, manager, reward function and reward manager of this package; the DataProto trainer) live in the
recipe config ``config/siri_trainer.yaml``, which extends veRL's ``ppo_trainer`` as veRL's own recipes do. This
module adds only what an experiment config decides: model, data files, batch geometry, the schedule and L_max with
the token budgets that follow from them, rounds, seeds, paths, the GPUs per node. The ``verl:`` section of the
experiment config is a mapping of further Hydra overrides (nested or dotted keys, ``+`` for keys veRL's yaml does not
have) applied last, so it can change anything. Composition and validation are veRL's own: Hydra over the recipe
config and ``verl.utils.config.validate_config``, as ``main_ppo`` runs them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from siri_rl.adaptive import ADAPTIVE_KEYS, AdaptiveSchedule
from siri_rl.config import ConfigError, ExperimentConfig
from siri_rl.engines.protocol import EngineError, NoLearningStop, TrainResult
from siri_rl.engines.verl.checkpoints import (
    CLOSED_LOOP,
    checkpoint_steps,
    latest_saved_step,
    refuse_unmerged_old_plan,
    save_plan,
)
from siri_rl.engines.verl.cpu import (
    CPU_ENV,
    GPUS_KEY,
    RAY_GPUS_KEY,
    check_cpu_plugin,
    cpu_environment,
    cpu_overrides,
    on_cpu,
)
from siri_rl.engines.verl.hydra_overrides import Overrides
from siri_rl.engines.verl.process import LOG_FILE, run_logged
from siri_rl.engines.verl.recipe import AGENT_LOOP_YAML, CONFIG_DIR, CONFIG_NAME
from siri_rl.engines.verl.validation import validation_overrides
from siri_rl.guard import guard_from_dict
from siri_rl.run_dir import (
    METRICS_FILE,
    read_metric_rows,
    refuse_existing_run,
    write_dynamics_plot,
    write_run_config,
)
from siri_rl.schedule import SCHEDULE_KEYS

__all__ = ["build_overrides", "compose_config", "gpus_per_node", "run_logged", "train"]

SUPPORTED_ROLLOUTS = ("vllm", "sglang")
VLLM_MAX_NUM_SEQS = 256  # veRL's actor_rollout_ref.rollout.max_num_seqs
# Checkpoint keys the recipe owns (see checkpoints.py): a verl: override of them would be silently replaced every
# round (save_freq) or would delete trough/peak checkpoints (veRL's keep-newest-N rotation).
OWNED_KEYS = {
    "trainer.save_freq": "set training.save_every (resumable saves) instead; trough/peak rounds are always saved",
    "trainer.max_actor_ckpt_to_keep": "siri keeps the newest save in full and only the model of trough/peak saves",
    "trainer.remove_previous_ckpt_in_save": "siri keeps the newest save in full and only the model of trough/peak "
    "saves",
}

# --- the per-experiment overrides ------------------------------------------------------------------------------


def recipe_overrides(
    cfg: ExperimentConfig,
    *,
    train_file: str | Path,
    val_file: str | Path,
    checkpoint_dir: str | Path,
    metrics_path: str | Path | None = None,
    resume: bool = False,
    gpus_per_node: int | None = None,
) -> Overrides:
    """The overrides of ``siri_trainer.yaml`` that run ``cfg``, before the config's own ``verl:`` section.
    ``gpus_per_node``: ``trainer.n_gpus_per_node`` (None: the recipe's, i.e. veRL's, default)."""
    t, d, s = cfg.training, cfg.data, cfg.schedule
    if s is None:
        raise ConfigError("a veRL run needs a schedule section")
    if t.prompts_per_round % t.updates_per_round:
        raise ConfigError(
            f"training.prompts_per_round ({t.prompts_per_round}) must be divisible by training.updates_per_round "
            f"({t.updates_per_round}): veRL splits each round into equal mini-batches of prompts"
        )
    seq_len = d.max_prompt_length + s.l_max  # tokens one sequence can take
    o = Overrides()
    o.update(
        {
            "data.train_files": str(train_file),
            "data.val_files": str(val_file),
            "data.max_prompt_length": d.max_prompt_length,
            "data.max_response_length": s.l_max,  # padded width; the per-round cap L <= L_max is per request
            "data.train_batch_size": t.prompts_per_round,
            "data.seed": t.seed,
            "data.trust_remote_code": cfg.model.trust_remote_code,
            "actor_rollout_ref.model.path": cfg.model.name_or_path,
            "actor_rollout_ref.model.trust_remote_code": cfg.model.trust_remote_code,
            "actor_rollout_ref.actor.use_kl_loss": t.kl_coef > 0,
            "actor_rollout_ref.actor.kl_loss_coef": t.kl_coef,
            "actor_rollout_ref.actor.clip_ratio_low": t.clip_low,
            "actor_rollout_ref.actor.clip_ratio_high": t.clip_high,
            "actor_rollout_ref.actor.optim.lr": t.learning_rate,
            "actor_rollout_ref.actor.ppo_mini_batch_size": t.prompts_per_round // t.updates_per_round,
            # token budgets: one micro-batch must hold at least one full prompt + L_max sequence
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": seq_len,
            "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 2 * seq_len,
            "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 2 * seq_len,
            # vLLM requires max_num_batched_tokens >= max_num_seqs (veRL's default 256) (vllm/config/scheduler.py)
            "actor_rollout_ref.rollout.max_num_batched_tokens": max(seq_len, VLLM_MAX_NUM_SEQS),
            "actor_rollout_ref.rollout.n": t.group_size,
            "actor_rollout_ref.rollout.temperature": t.temperature,
            "actor_rollout_ref.rollout.top_p": t.top_p,
            "actor_rollout_ref.rollout.seed": t.seed,
            "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(AGENT_LOOP_YAML),
            "reward.custom_reward_function.reward_kwargs.require_think_end": d.require_think_end,
            "trainer.total_training_steps": t.rounds,
            # What veRL saves without the manager, which sets save_freq before every round (checkpoints.py).
            "trainer.save_freq": t.save_every or t.rounds,
            "trainer.experiment_name": cfg.name,
            "trainer.default_local_dir": str(checkpoint_dir),
            "trainer.resume_mode": "auto" if resume else "disable",
        }
    )
    if on_cpu(cfg):
        o.update(cpu_overrides(gpus_per_node or 1))
    elif gpus_per_node is not None:
        o.set(GPUS_KEY, gpus_per_node)
    # SIRI's section for the agent-loop manager: every schedule key, so none of the recipe's defaults is left over
    # (the closed-loop kind's tolerance/patience/window are null for the others).
    schedule = dict.fromkeys((*SCHEDULE_KEYS, *ADAPTIVE_KEYS)) | s.to_dict()
    o.update({f"siri.schedule.{k}": v for k, v in schedule.items()})
    o.update({f"siri.guard.{k}": v for k, v in guard_from_dict(t.guard).to_dict().items()})
    o.set("siri.total_rounds", t.rounds)
    o.set("siri.save_every", t.save_every)
    o.set("siri.metrics_path", str(metrics_path) if metrics_path else None)
    o.update(validation_overrides(cfg, metrics_path))  # veRL's validation loop and the manager's records
    return o


def build_overrides(
    cfg: ExperimentConfig, *, stop_after_rounds: int | None = None, **paths: Any
) -> list[str]:
    """:func:`recipe_overrides` plus the config's ``verl:`` section, as Hydra override strings; rejects rollout
    engines that ignore per-request ``max_tokens``. ``stop_after_rounds`` ends veRL early (resumable: the schedule
    still spans ``training.rounds``)."""
    o = recipe_overrides(cfg, **paths)
    if stop_after_rounds is not None:
        if stop_after_rounds < 1:
            raise ConfigError(f"--stop-after must be >= 1 round, got {stop_after_rounds}")
        o.set("trainer.total_training_steps", min(stop_after_rounds, cfg.training.rounds))
    extra = Overrides()
    extra.update(cfg.verl or {})
    for key, why in OWNED_KEYS.items():
        if key in extra.items:
            raise ConfigError(f"verl: {key} is set by siri's save plan ({why}); remove it from the verl: section")
    o.update(cfg.verl or {})
    if on_cpu(cfg):  # Ray's GPU resources on the CPU: one per training process, however many the verl: section sets
        o.set(RAY_GPUS_KEY, o.get(GPUS_KEY))
    name = o.get("actor_rollout_ref.rollout.name")  # None: the recipe's vllm
    if name is not None and name not in SUPPORTED_ROLLOUTS:
        raise ConfigError(
            f"verl: actor_rollout_ref.rollout.name={name!r} cannot apply SIRI's per-round length cap: only vLLM and "
            "SGLang honour a per-request max_tokens (TensorRT-LLM ignores it); use vllm or sglang"
        )
    return o.to_list()


def gpus_per_node(cfg: ExperimentConfig, *, dry_run: bool = False) -> int | None:
    """``trainer.n_gpus_per_node`` for a run launched from this machine: None when the ``verl:`` section sets it
    (it is applied last), else the CUDA devices visible here. Without any, a dry run keeps the recipe's default
    (veRL's 8) and a launch stops: the count cannot be guessed on a head node without GPUs."""
    extra = Overrides()
    extra.update(cfg.verl or {})
    if extra.get(GPUS_KEY) is not None:
        return None
    if on_cpu(cfg):
        return 1  # one FSDP rank; the verl: section may set more (gloo across processes)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        return count
    if dry_run:
        return None
    raise ConfigError(
        f"no CUDA GPU is visible on this machine to count {GPUS_KEY}: set it to the GPUs of each Ray node, e.g. "
        f"`verl: {{{GPUS_KEY}: 8}}` in the config or `verl.{GPUS_KEY}=8` on the command line (or set "
        "`training.device: cpu` to train on this machine's CPU with vLLM's CPU build)"
    )


# --- composition, validation, command --------------------------------------------------------------------------


def compose_config(overrides: list[str], *, validate: bool = True):
    """Compose the recipe config ``siri_trainer`` (veRL's ``ppo_trainer`` under it) with ``overrides`` as
    ``main_ppo`` does, and run veRL's ``validate_config`` on it. Returns the (unresolved) OmegaConf ``DictConfig``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    if validate:
        validate_verl_config(config)
    return config


def validate_verl_config(config) -> None:
    """veRL's own checks, as ``verl.trainer.main_ppo.main`` runs them before training."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        validate_config(
            config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
        )
    except Exception as err:  # veRL raises AssertionError, ValueError or Hydra's InstantiationException
        message = " ".join(str(err).split())
        raise ConfigError(f"veRL rejected the composed config: {message}") from err


def launch_command(overrides: list[str], python: str | None = None) -> list[str]:
    """``python -m verl.trainer.main_ppo --config-path <this package's config> --config-name siri_trainer
    <overrides>`` as an argument list."""
    return [
        python or sys.executable, "-m", "verl.trainer.main_ppo",
        "--config-path", str(CONFIG_DIR), "--config-name", CONFIG_NAME, *overrides,
    ]  # fmt: skip


def format_command(command: list[str]) -> str:
    """The command as one shell line (each override quoted for bash)."""
    return " \\\n    ".join(shlex.quote(part) for part in command)


def compose_with_main_ppo(overrides: list[str]) -> str:
    """veRL's own composition: ``python -m verl.trainer.main_ppo <overrides> --cfg job`` (prints the job config
    and exits). Returns the YAML text; raises :class:`ConfigError` with veRL's message when composition fails."""
    import os
    import subprocess

    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    proc = subprocess.run(
        [*launch_command(overrides), "--cfg", "job"], capture_output=True, text=True, env=env, timeout=600
    )
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        raise ConfigError(
            f"veRL could not compose the config: {lines[-1] if lines else 'exit ' + str(proc.returncode)}"
        )
    # Hydra prints the config after any import-time chatter; it starts at the first top-level key.
    text = proc.stdout
    start = min((text.find(k) for k in ("actor_rollout_ref:", "data:", "algorithm:") if k in text), default=0)
    return text[start:]


# --- the run ---------------------------------------------------------------------------------------------------


def run_paths(output_dir: str | Path) -> dict[str, Path]:
    """Where a veRL run keeps its files, under the run directory."""
    # Absolute: veRL's trainer runs in a Ray actor, whose working directory need not be this one.
    run = Path(output_dir).resolve()
    return {
        "train_file": run / "verl" / "train.parquet",
        "val_file": run / "verl" / "val.parquet",
        "checkpoint_dir": run / "verl" / "checkpoints",
        "metrics_path": run / METRICS_FILE,
    }


def train(
    cfg: ExperimentConfig,
    *,
    output_dir: str | Path,
    resume: bool = False,
    dry_run: bool = False,
    stop_after_rounds: int | None = None,
) -> TrainResult | dict[str, Any]:
    """Run SIRI on veRL (``siri train --engine verl``).

    Dry run: compose the launch with veRL's own ``main_ppo --cfg job``, validate it with veRL's checks, and return
    the command and the composed config; nothing is loaded or written. Real run: export the data to veRL parquet,
    launch ``python -m verl.trainer.main_ppo`` (a Ray cluster started with ``ray start`` is joined automatically),
    then merge the trough/peak checkpoints into ``RUN/checkpoints/``. Returns a
    :class:`~siri_rl.engines.TrainResult` (dry run: a dict with ``command``, ``overrides``, ``save_plan``,
    ``checkpoints``, ``verl_config``).

    GPUs per node (:func:`gpus_per_node`): the ``verl:`` section's ``trainer.n_gpus_per_node``, else the CUDA
    devices of this machine; a launch with neither stops with the fix, a dry run shows veRL's default (8).

    Resume policy (both engines, :mod:`siri_rl.run_dir`): a fresh run into a directory with ``metrics.jsonl``
    is refused; ``resume`` needs a veRL checkpoint, and the manager drops the rows of the rounds veRL redoes.
    """
    import json

    from omegaconf import OmegaConf

    paths = run_paths(output_dir)
    checkpoints = checkpoint_steps(cfg.schedule, cfg.training.rounds)
    saves = save_plan(cfg.schedule, cfg.training.rounds, cfg.training.save_every)
    if not dry_run:
        refuse_existing_run(output_dir, resume=resume)
    if resume and not dry_run:
        if latest_saved_step(paths["checkpoint_dir"]) is None:
            raise ConfigError(
                f"--resume: no veRL checkpoint under {paths['checkpoint_dir']}; start without --resume"
            )
        try:
            read_metric_rows(paths["metrics_path"])  # the manager rewrites it on its first round: fail here
        except ValueError as err:
            raise ConfigError(f"--resume: {err}") from None
        refuse_unmerged_old_plan(Path(output_dir), paths["checkpoint_dir"], checkpoints)
    gpus = gpus_per_node(cfg, dry_run=dry_run)
    overrides = build_overrides(
        cfg, resume=resume, stop_after_rounds=stop_after_rounds, gpus_per_node=gpus, **paths
    )
    command = launch_command(overrides)
    if dry_run:
        text = compose_with_main_ppo(overrides)
        validate_verl_config(OmegaConf.create(text))
        return {
            "engine": "verl",
            "run_dir": str(output_dir),
            **({"schedule": CLOSED_LOOP} if isinstance(cfg.schedule, AdaptiveSchedule) else {}),
            "save_plan": saves.to_dict() if saves else None,
            "checkpoints": {f"global_step_{s}": n for s, n in checkpoints.items()},
            "command": shlex.join(command),
            **({"environment": CPU_ENV} if on_cpu(cfg) else {}),
            "overrides": overrides,
            "verl_config": yaml.safe_load(text),
        }

    composed = compose_config(overrides)  # fail fast, before any data is downloaded
    if env := (cpu_environment() if on_cpu(cfg) else None):
        check_cpu_plugin(env)
    rollout = composed.actor_rollout_ref.rollout.name
    import importlib.util

    if importlib.util.find_spec(rollout) is None:
        raise ConfigError(
            f"the veRL rollout engine {rollout!r} is not installed on this machine: install the GPU stack "
            f"(pip install {rollout}, next to the verl extra of siri-rl; see docs/scaling-out.md)"
        )
    run = Path(output_dir)
    from siri_rl.engines.verl.dataset import load_run_problems, write_verl_parquet

    fresh_data = not (resume and paths["train_file"].exists())
    problems, val = load_run_problems(cfg) if fresh_data else ([], [])  # a bad row fails before the run dir exists
    run.mkdir(parents=True, exist_ok=True)
    if fresh_data:
        write_verl_parquet(problems, paths["train_file"], split="train")
        write_verl_parquet(val, paths["val_file"], split="test")
    write_run_config(run, cfg)
    plan = {
        "checkpoint_dir": str(paths["checkpoint_dir"]),
        "checkpoints": {str(s): n for s, n in checkpoints.items()},
        # closed loop: the trough/peak steps are the metrics.jsonl rows' `checkpoint` (merge.planned_exports)
        "closed_loop": isinstance(cfg.schedule, AdaptiveSchedule),
        "saves": saves.steps if saves else [],
        "trust_remote_code": cfg.model.trust_remote_code,
        "command": command,
    }
    (run / "verl" / "plan.json").write_text(json.dumps(plan, indent=2))
    exports = "".join(f"export {k}={shlex.quote(env[k])}\n" for k in (*CPU_ENV, "VLLM_CPU_KVCACHE_SPACE")) if env else ""
    (run / "verl" / "launch.sh").write_text("#!/usr/bin/env bash\nset -e\n" + exports + format_command(command) + "\n")
    try:
        run_logged(command, run / "verl" / LOG_FILE, env=env)
    except EngineError as err:
        if latest_saved_step(paths["checkpoint_dir"]) is not None:
            then = "fix the cause, then continue with --resume"
        elif paths["metrics_path"].exists():
            then = "no checkpoint was saved: fix the cause, then start again with a new --output-dir"
        else:
            then = "no checkpoint was saved: fix the cause, then rerun the same command"
        if "NoLearningError" in str(err):  # the guard's stop (manager.py), exit status 3 as on TRL
            raise NoLearningStop(f"{err}; {then}") from None
        raise EngineError(f"{err}; {then}") from None

    from siri_rl.engines.verl.checkpoints import prune_checkpoints
    from siri_rl.engines.verl.merge import export_checkpoints, planned_exports

    try:
        rows = read_metric_rows(paths["metrics_path"])
    except ValueError as err:  # a damaged file: metrics.jsonl stays as it is, no plot
        print(f"no dynamics plot: {err}", file=sys.stderr)
        rows = []
    # the manager last pruned a round before the end; a closed-loop run's turning points are in its rows
    prune_checkpoints(paths["checkpoint_dir"], planned_exports(plan, rows))
    merged = export_checkpoints(run)
    if rows and rows[-1].get("guard") == "stop":  # a stop at the last round: veRL ended normally (manager.py)
        raise NoLearningStop(f"{rows[-1].get('guard_message')}; full log: {run / 'verl' / LOG_FILE}")
    plot = write_dynamics_plot(run, rows) if rows else None
    return TrainResult(run_dir=run, rounds_done=len(rows), checkpoints=merged,
                       tokens_generated=int(rows[-1].get("tokens_generated", 0)) if rows else 0, dynamics_png=plot)
