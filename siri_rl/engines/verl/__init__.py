"""SIRI on veRL (Ray + vLLM/SGLang): a recipe over veRL 0.9.x's own extension points, no veRL patches.

* ``agent_loop.py`` — the ``siri_single_turn`` agent loop: per-request ``max_tokens = min(L, response_length)``.
* ``manager.py``    — the agent-loop manager that attaches L = schedule(global_steps - 1) to training rounds only,
  and logs L and the fraction of responses cut by L.
* ``reward.py``     — the length-capped reward as ``reward.custom_reward_function``.
* ``dataset.py``    — problems -> veRL's RL parquet format.
* ``launch.py``     — experiment YAML -> Hydra overrides -> ``python -m verl.trainer.main_ppo``.
* ``checkpoints.py`` — the save plan: which veRL steps save (trough/peak models, resumable points), what is kept.
* ``merge.py``      — trough/peak FSDP checkpoints -> Hugging Face models with veRL's model merger.

This package imports veRL only where it runs inside veRL (agent loop, manager); :func:`train` can be called, and
``--dry-run`` printed, from a machine with veRL but without a GPU stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


__all__ = ["train"]
