"""From an experiment YAML to ``python -m verl.trainer.main_ppo <Hydra overrides>`` (SIRI §5.1 settings).

The generic sections of an experiment config (model, data, schedule, training) map to veRL's Hydra keys below;
the ``verl:`` section is a mapping of extra Hydra overrides (nested or dotted keys, ``+`` for keys veRL's yaml
does not have) applied last, so it can change anything here. Composition and validation are veRL's own: the
same ``ppo_trainer`` config, Hydra overrides and ``verl.utils.config.validate_config`` that ``main_ppo`` runs.

DAPO-style GRPO as in the paper: ``adv_estimator=grpo``, no KL (neither loss nor in-reward), decoupled clip
0.2/0.28, token-mean loss, temperature 1.0, lr 1e-6, 128 prompts per round; token budgets
(``ppo_max_token_len_per_gpu``) cover prompt + L_max.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siri_rl.config import ConfigError, ExperimentConfig
from siri_rl.engines import EngineError
from siri_rl.engines.verl.checkpoints import checkpoint_steps, latest_saved_step, prune_checkpoints, save_plan
from siri_rl.engines.verl.reward import __file__ as REWARD_FILE
from siri_rl.run_metrics import read_metric_rows, refuse_existing_run

VERL_CONFIG_NAME = "ppo_trainer"
AGENT_NAME = (
    "siri_single_turn"  # registered by siri_rl.engines.verl.agent_loop (kept here to avoid importing veRL)
)
AGENT_LOOP_TARGET = "siri_rl.engines.verl.agent_loop.SiriSingleTurnAgentLoop"
MANAGER_CLASS = "siri_rl.engines.verl.manager.SiriAgentLoopManager"
REWARD_MANAGER_MODULE = "pkg://siri_rl.engines.verl.reward_manager"
SUPPORTED_ROLLOUTS = ("vllm", "sglang")
_PLAIN = re.compile(r"^[A-Za-z0-9_\-+./:~@]+$")
# Checkpoint keys the recipe owns (see checkpoints.py): a verl: override of them would be silently replaced every
# round (save_freq) or would delete trough/peak checkpoints (veRL's keep-newest-N rotation).
OWNED_KEYS = {
    "trainer.save_freq": "set training.save_every (resumable saves) instead; trough/peak rounds are always saved",
    "trainer.max_actor_ckpt_to_keep": "siri keeps the newest save in full and only the model of trough/peak saves",
    "trainer.remove_previous_ckpt_in_save": "siri keeps the newest save in full and only the model of trough/peak "
    "saves",
}


# --- Hydra override syntax -------------------------------------------------------------------------------------


def hydra_value(value: Any) -> str:
    """Render a Python value in Hydra's override grammar (strings quoted when they would be misread)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and isinstance(yaml.safe_load(text), str):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name)
        else:
            yield name, value


def _split_prefix(key: str) -> tuple[str, str]:
    match = re.match(r"^(\+\+|\+|~)?(.*)$", key)
    assert match is not None
    return match.group(1) or "", match.group(2)


@dataclass
class Overrides:
    """An ordered set of Hydra overrides, one per key: a later setting of a key replaces the earlier one (Hydra
    itself rejects a key given twice)."""

    items: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def set(self, key: str, value: Any) -> None:
        prefix, name = _split_prefix(key)
        old_prefix = self.items.get(name, ("", None))[0]
        self.items[name] = (prefix or old_prefix, value)

    def update(self, mapping: Mapping[str, Any]) -> None:
        for key, value in _flatten(mapping):
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return self.items.get(_split_prefix(key)[1], ("", default))[1]

    def to_list(self) -> list[str]:
        return [f"{p}{k}" if p == "~" else f"{p}{k}={hydra_value(v)}" for k, (p, v) in self.items.items()]


# --- the recipe ------------------------------------------------------------------------------------------------


def recipe_overrides(
    cfg: ExperimentConfig,
    *,
    train_file: str | Path,
    val_file: str | Path,
    agent_loop_yaml: str | Path,
    checkpoint_dir: str | Path,
    metrics_path: str | Path | None = None,
    resume: bool = False,
) -> Overrides:
    """The Hydra overrides that run ``cfg`` as SIRI on veRL, before the config's own ``verl:`` section."""
    t, d, s = cfg.training, cfg.data, cfg.schedule
    if t.prompts_per_round % t.updates_per_round:
        raise ConfigError(
            f"training.prompts_per_round ({t.prompts_per_round}) must be divisible by training.updates_per_round "
            f"({t.updates_per_round}): veRL splits each round into equal mini-batches of prompts"
        )
    seq_len = d.max_prompt_length + s.l_max  # tokens one sequence can take
    o = Overrides()
    o.update(
        {
            # data: the exported parquet files (veRL's RL format)
            "data.train_files": str(train_file),
            "data.val_files": str(val_file),
            "data.prompt_key": "prompt",
            "data.max_prompt_length": d.max_prompt_length,
            "data.max_response_length": s.l_max,  # padded width; the per-round cap L <= L_max is per request
            "data.train_batch_size": t.prompts_per_round,
            "data.filter_overlong_prompts": True,
            "data.truncation": "error",
            "data.seed": t.seed,
            "data.trust_remote_code": cfg.model.trust_remote_code,
            # model
            "actor_rollout_ref.model.path": cfg.model.name_or_path,
            "actor_rollout_ref.model.trust_remote_code": cfg.model.trust_remote_code,
            "actor_rollout_ref.model.use_remove_padding": True,
            "actor_rollout_ref.model.enable_gradient_checkpointing": True,
            # GRPO with DAPO's changes (SIRI §5.1)
            "algorithm.adv_estimator": "grpo",
            "algorithm.use_kl_in_reward": False,
            "actor_rollout_ref.actor.use_kl_loss": t.kl_coef > 0,
            "actor_rollout_ref.actor.kl_loss_coef": t.kl_coef,
            "actor_rollout_ref.actor.clip_ratio_low": t.clip_low,
            "actor_rollout_ref.actor.clip_ratio_high": t.clip_high,
            "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
            "actor_rollout_ref.actor.entropy_coeff": 0,
            "actor_rollout_ref.actor.optim.lr": t.learning_rate,
            "actor_rollout_ref.actor.ppo_mini_batch_size": t.prompts_per_round // t.updates_per_round,
            "actor_rollout_ref.actor.ppo_epochs": 1,
            # token budgets: one micro-batch must hold at least one full prompt + L_max sequence
            "actor_rollout_ref.actor.use_dynamic_bsz": True,
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": seq_len,
            "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 2 * seq_len,
            "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 2 * seq_len,
            # rollout: vLLM by default, n samples per prompt, capped per round by the SIRI agent loop
            "actor_rollout_ref.rollout.name": "vllm",
            "actor_rollout_ref.rollout.n": t.group_size,
            "actor_rollout_ref.rollout.temperature": t.temperature,
            "actor_rollout_ref.rollout.top_p": t.top_p,
            "actor_rollout_ref.rollout.seed": t.seed,
            "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
            "actor_rollout_ref.rollout.gpu_memory_utilization": 0.7,
            "actor_rollout_ref.rollout.max_num_batched_tokens": seq_len,
            "actor_rollout_ref.rollout.agent.default_agent_loop": AGENT_NAME,
            "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(agent_loop_yaml),
            "+actor_rollout_ref.rollout.agent.agent_loop_manager_class": MANAGER_CLASS,
            # reward: the length-capped reward (the reward.* keys; top-level custom_reward_function.* is ignored)
            "reward.custom_reward_function.path": str(Path(REWARD_FILE).resolve()),
            "reward.custom_reward_function.name": "compute_score",
            "+reward.custom_reward_function.reward_kwargs.require_think_end": d.require_think_end,
            # decoded by SIRI's rule (keeps </think> if the tokenizer marks it special), not veRL's skip-special
            "reward.reward_manager.source": "importlib",
            "reward.reward_manager.name": "SiriRewardManager",
            "reward.reward_manager.module.path": REWARD_MANAGER_MODULE,
            # trainer: rounds, the DataProto trainer our manager plugs into, and the save plan (checkpoints.py):
            # the manager sets save_freq for every step from siri.save_every and the schedule; this value is what
            # veRL would use without it (a resumable save every save_every rounds).
            "trainer.use_v1": False,
            "trainer.total_training_steps": t.rounds,
            "trainer.total_epochs": 1_000_000,  # rounds, not epochs, end the run
            "trainer.save_freq": t.save_every or t.rounds,
            "trainer.max_actor_ckpt_to_keep": None,  # pruned by siri (checkpoints.prune_checkpoints)
            "trainer.test_freq": -1,
            "trainer.val_before_train": False,
            "trainer.critic_warmup": 0,
            "trainer.project_name": "siri-rl",
            "trainer.experiment_name": cfg.name,
            "trainer.logger": ["console"],
            "trainer.default_local_dir": str(checkpoint_dir),
            "trainer.resume_mode": "auto" if resume else "disable",
            "trainer.nnodes": 1,
            "trainer.n_gpus_per_node": 8,
        }
    )
    # SIRI's own section, read by the agent-loop manager (veRL ignores top-level keys it does not know).
    o.update({f"+siri.schedule.{k}": v for k, v in s.to_dict().items()})
    o.set("+siri.total_rounds", t.rounds)
    o.set("+siri.save_every", t.save_every)
    o.set("+siri.metrics_path", str(metrics_path) if metrics_path else None)
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
    name = o.get("actor_rollout_ref.rollout.name")
    if name not in SUPPORTED_ROLLOUTS:
        raise ConfigError(
            f"verl: actor_rollout_ref.rollout.name={name!r} cannot apply SIRI's per-round length cap: only vLLM and "
            "SGLang honour a per-request max_tokens (TensorRT-LLM ignores it); use vllm or sglang"
        )
    return o.to_list()


def write_agent_loop_yaml(path: str | Path) -> Path:
    """Write the agent-loop config veRL's workers load (``rollout.agent.agent_loop_config_path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump([{"name": AGENT_NAME, "_target_": AGENT_LOOP_TARGET}], sort_keys=False))
    return path


# --- composition, validation, command --------------------------------------------------------------------------


def verl_config_dir() -> Path:
    """veRL's packaged Hydra config directory (``verl/trainer/config``)."""
    import verl.trainer

    return Path(verl.trainer.__file__).parent / "config"


def compose_config(overrides: list[str], *, validate: bool = True):
    """Compose veRL's ``ppo_trainer`` config with ``overrides`` exactly as ``main_ppo`` does, and run veRL's
    ``validate_config`` on it. Returns the (unresolved) OmegaConf ``DictConfig``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        config = compose(config_name=VERL_CONFIG_NAME, overrides=list(overrides))
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
    """``python -m verl.trainer.main_ppo <overrides>`` as an argument list."""
    return [python or sys.executable, "-m", "verl.trainer.main_ppo", *overrides]


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


LOG_FILE = "train.log"  # RUN/verl/train.log: veRL's output, every attempt appended

# An exception line of a Python traceback ("ValueError: ...", "torch.OutOfMemoryError: ..."), after Ray's
# "(TaskRunner pid=N)" prefix and colour codes are removed.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)(?:\([\w.]*\))?(?::\s|$)")
_RAY_PREFIX = re.compile(r"^\([^)]*pid=\d+[^)]*\)\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_exception_line(text: str) -> str | None:
    """The last exception line of the tracebacks in ``text`` (a log), or None."""
    for line in reversed(text.splitlines()):
        line = _RAY_PREFIX.sub("", _ANSI.sub("", line)).strip()
        if _EXCEPTION_LINE.match(line):
            return line
    return None


def run_logged(command: list[str], log_path: str | Path, *, what: str = "veRL") -> None:
    """Run ``command`` with its output (stdout and stderr, merged) shown here as it comes and appended to
    ``log_path``. A non-zero exit raises :class:`~siri_rl.engines.EngineError`: one line with the status, the
    child's last exception line and the log's path."""
    import os
    import subprocess

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = getattr(sys.stdout, "buffer", None)
    # Unbuffered: through a pipe the child's Python would otherwise hold its lines back until a buffer fills.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                log.write(chunk)
                log.flush()
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stdout.write(chunk.decode(errors="replace"))
        finally:
            status = proc.wait()  # also on Ctrl-C: the child got the SIGINT too and shuts Ray down
    if status != 0:
        with open(log_path, "rb") as log:
            log.seek(max(start, log_path.stat().st_size - (1 << 20)))  # this attempt's last MiB
            error = last_exception_line(log.read().decode(errors="replace"))
        raise EngineError(f"{what} exited with status {status}" + (f" ({error})" if error else "")
                          + f"; full log: {log_path}")


def run_paths(output_dir: str | Path) -> dict[str, Path]:
    """Where a veRL run keeps its files, under the run directory."""
    # Absolute: veRL's trainer runs in a Ray actor, whose working directory need not be this one.
    run = Path(output_dir).resolve()
    return {
        "train_file": run / "verl" / "train.parquet",
        "val_file": run / "verl" / "val.parquet",
        "agent_loop_yaml": run / "verl" / "agent_loop.yaml",
        "checkpoint_dir": run / "verl" / "checkpoints",
        "metrics_path": run / "metrics.jsonl",
    }


def _load_data(cfg: ExperimentConfig) -> tuple[list[dict], list[dict]]:
    from siri_rl.data import load_benchmark, load_problems

    d = cfg.data
    problems = load_problems(
        d.train,
        split=d.split,
        problem_field=d.problem_field,
        answer_field=d.answer_field,
        skip_invalid=d.skip_invalid,
    )
    if d.max_problems:
        problems = problems[: d.max_problems]
    benchmarks = cfg.eval.benchmarks
    if benchmarks:
        val = [row for name in benchmarks for row in load_benchmark(name, cfg.eval.data_dir)]
    else:
        val = problems[:64]  # veRL needs a validation file; without eval benchmarks validation stays off
    return problems, val


def _refuse_unmerged_old_plan(run: Path, checkpoint_dir: Path, checkpoints: Mapping[int, str]) -> None:
    """A run planned by an older siri (trough/peak saves at other steps, e.g. ``global_step_r`` before the save
    plan moved to ``global_step_{r+1}``) would lose those saves to pruning on resume unless they are merged."""
    import json

    plan_path = run / "verl" / "plan.json"
    if not plan_path.exists():
        return
    previous = {int(s): n for s, n in json.loads(plan_path.read_text()).get("checkpoints", {}).items()}
    unmerged = [
        f"global_step_{s} ({n})"
        for s, n in sorted(previous.items())
        if s not in checkpoints
        and (checkpoint_dir / f"global_step_{s}" / "actor").is_dir()
        and not (run / "checkpoints" / n / "config.json").exists()
    ]
    if unmerged:
        raise ConfigError(
            f"--resume: {run} holds trough/peak saves of an older save plan ({', '.join(unmerged)}) that resuming "
            f"would prune; merge them first with `siri export {run}`, then resume"
        )


def train(
    cfg: ExperimentConfig,
    *,
    output_dir: str | Path,
    resume: bool = False,
    dry_run: bool = False,
    stop_after_rounds: int | None = None,
) -> dict[str, Any]:
    """Run SIRI on veRL (``siri train --engine verl``).

    Dry run: compose the launch with veRL's own ``main_ppo --cfg job``, validate it with veRL's checks, and return
    the command and the composed config; nothing is loaded or written. Real run: export the data to veRL parquet,
    write the agent-loop yaml, launch ``python -m verl.trainer.main_ppo`` (a Ray cluster started with
    ``ray start`` is joined automatically), then merge the trough/peak checkpoints into ``RUN/checkpoints/``.
    Returns a summary dict (dry run: ``command``, ``overrides``, ``save_plan``, ``checkpoints``, ``verl_config``).

    Resume policy (both engines, :mod:`siri_rl.run_metrics`): a fresh run into a directory with ``metrics.jsonl``
    is refused; ``resume`` needs a veRL checkpoint, and the manager drops the rows of the rounds veRL redoes.
    """
    import json

    from omegaconf import OmegaConf

    paths = run_paths(output_dir)
    overrides = build_overrides(cfg, resume=resume, stop_after_rounds=stop_after_rounds, **paths)
    command = launch_command(overrides)
    checkpoints = checkpoint_steps(cfg.schedule, cfg.training.rounds)
    saves = save_plan(cfg.schedule, cfg.training.rounds, cfg.training.save_every)
    if dry_run:
        text = compose_with_main_ppo(overrides)
        validate_verl_config(OmegaConf.create(text))
        return {
            "engine": "verl",
            "run_dir": str(output_dir),
            "save_plan": saves.to_dict() if saves else None,
            "checkpoints": {f"global_step_{s}": n for s, n in checkpoints.items()},
            "command": shlex.join(command),
            "overrides": overrides,
            "verl_config": yaml.safe_load(text),
        }

    refuse_existing_run(output_dir, resume=resume)
    if resume:
        if latest_saved_step(paths["checkpoint_dir"]) is None:
            raise ConfigError(
                f"--resume: no veRL checkpoint under {paths['checkpoint_dir']}; start without --resume"
            )
        try:
            read_metric_rows(paths["metrics_path"])  # the manager rewrites it on its first round: fail here
        except ValueError as err:
            raise ConfigError(f"--resume: {err}") from None
        _refuse_unmerged_old_plan(Path(output_dir), paths["checkpoint_dir"], checkpoints)
    composed = compose_config(overrides)  # fail fast, before any data is downloaded
    rollout = composed.actor_rollout_ref.rollout.name
    import importlib.util

    if importlib.util.find_spec(rollout) is None:
        raise ConfigError(
            f"the veRL rollout engine {rollout!r} is not installed on this machine: install the GPU stack "
            f"(pip install {rollout}, next to the verl extra of siri-rl; see docs/scaling-out.md)"
        )
    run = Path(output_dir)
    from siri_rl.engines.verl.dataset import write_verl_parquet

    fresh_data = not (resume and paths["train_file"].exists())
    problems, val = _load_data(cfg) if fresh_data else ([], [])  # a bad row fails before the run dir exists
    run.mkdir(parents=True, exist_ok=True)
    if fresh_data:
        write_verl_parquet(problems, paths["train_file"], split="train")
        write_verl_parquet(val, paths["val_file"], split="test")
    write_agent_loop_yaml(paths["agent_loop_yaml"])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    plan = {
        "checkpoint_dir": str(paths["checkpoint_dir"]),
        "checkpoints": {str(s): n for s, n in checkpoints.items()},
        "saves": saves.steps if saves else [],
        "trust_remote_code": cfg.model.trust_remote_code,
        "command": command,
    }
    (run / "verl" / "plan.json").write_text(json.dumps(plan, indent=2))
    (run / "verl" / "launch.sh").write_text("#!/usr/bin/env bash\nset -e\n" + format_command(command) + "\n")
    try:
        run_logged(command, run / "verl" / LOG_FILE)
    except EngineError as err:
        if latest_saved_step(paths["checkpoint_dir"]) is not None:
            then = "fix the cause, then continue with --resume"
        elif paths["metrics_path"].exists():
            then = "no checkpoint was saved: fix the cause, then start again with a new --output-dir"
        else:
            then = "no checkpoint was saved: fix the cause, then rerun the same command"
        raise EngineError(f"{err}; {then}") from None

    from siri_rl.engines.verl.merge import export_checkpoints

    prune_checkpoints(paths["checkpoint_dir"], checkpoints)  # the manager last pruned a round before the end
    merged = export_checkpoints(run)
    metrics = paths["metrics_path"]
    if metrics.exists():
        from siri_rl.analysis import read_metrics
        from siri_rl.evaluate import EvalError
        from siri_rl.plots import plot_training_dynamics

        try:
            rows = read_metrics(metrics)  # the latest row of each round: a resumed run repeats rounds
        except EvalError as err:  # nothing logged (or a damaged file): metrics.jsonl stays as it is, no plot
            print(f"no dynamics plot: {err}", file=sys.stderr)
        else:
            plot_training_dynamics(rows, run / "dynamics.png")
    return {
        "run_dir": str(run),
        "metrics": str(metrics),
        "checkpoints": {n: str(p) for n, p in merged.items()},
    }
