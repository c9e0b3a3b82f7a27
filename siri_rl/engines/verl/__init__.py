"""SIRI on veRL (Ray + vLLM/SGLang): a recipe over veRL 0.9.x's own extension points, no veRL patches.

* ``config/siri_trainer.yaml`` — the recipe config: veRL's ``ppo_trainer`` with SIRI's constant settings (DAPO-style
  GRPO, the pieces below); ``python -m verl.trainer.main_ppo --config-path CONFIG_DIR --config-name siri_trainer``.
* ``config/agent_loop.yaml`` — the agent-loop list veRL's rollout workers load (``agent_loop_config_path``).
* ``recipe.py``     — where those two files are (``CONFIG_DIR``, ``CONFIG_NAME``, ``AGENT_LOOP_YAML``).
* ``agent_loop.py`` — the ``siri_single_turn`` agent loop: per-request ``max_tokens = min(L, response_length)``.
* ``manager.py``    — the agent-loop manager that attaches L = schedule(global_steps - 1) (or the closed-loop
  controller's cap, ``schedule.kind: adaptive``) to training rounds only, logs L and the fraction of responses cut
  by L, and runs the no-learning guard.
* ``reward.py``     — the length-capped reward as ``reward.custom_reward_function``.
* ``dataset.py``    — problems -> veRL's RL parquet format.
* ``launch.py``     — experiment YAML -> per-experiment Hydra overrides -> ``python -m verl.trainer.main_ppo``.
* ``checkpoints.py`` — the save plan: which veRL steps save (trough/peak models, resumable points), what is kept.
* ``merge.py``      — trough/peak FSDP checkpoints -> Hugging Face models with ``python -m verl.model_merger``.

This package imports veRL only where it runs inside veRL (agent loop, manager); :func:`train` can be called, and
``--dry-run`` printed, from a machine with veRL but without a GPU stack. The recipe config's directory, for a
hand-written launch: ``python -c "from siri_rl.engines.verl import CONFIG_DIR; print(CONFIG_DIR)"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siri_rl.engines.verl.recipe import AGENT_LOOP_YAML, CONFIG_DIR, CONFIG_NAME


def train(
    config: Any,
    *,
    output_dir: str | Path,
    resume: bool = False,
    dry_run: bool = False,
    stop_after_rounds: int | None = None,
) -> Any:
    """Run SIRI on veRL for an :class:`~siri_rl.config.ExperimentConfig` (``siri train --engine verl``); returns a
    :class:`~siri_rl.engines.TrainResult` (dry run: a dict); see :func:`siri_rl.engines.verl.launch.train`."""
    from siri_rl.engines.verl.launch import train as _train

    return _train(
        config, output_dir=output_dir, resume=resume, dry_run=dry_run, stop_after_rounds=stop_after_rounds
    )


__all__ = ["AGENT_LOOP_YAML", "CONFIG_DIR", "CONFIG_NAME", "train"]
