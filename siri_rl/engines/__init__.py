"""Training engines: thin adapters from a SIRI experiment config to an RL framework (imported lazily, so the
core and the CLI load without TRL or veRL).

The protocol, the same for every engine: ``train(config, *, output_dir, resume, dry_run, stop_after_rounds)``
trains into the run directory (:mod:`siri_rl.run_dir`) and returns a :class:`TrainResult`; with ``dry_run`` it
loads nothing and returns the dict ``siri train --dry-run`` prints. The result and error types live in
:mod:`siri_rl.engines.protocol`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siri_rl.config import ENGINES  # the one list, in the core (the config validates `engine:` against it)
from siri_rl.engines.protocol import EngineError, NoLearningStop, TrainResult

__all__ = ["ENGINES", "EngineError", "NoLearningStop", "TrainResult", "train"]


def train(config: Any, *, engine: str | None = None, output_dir: str | Path, resume: bool = False,
          dry_run: bool = False, **kwargs: Any) -> TrainResult | dict[str, Any]:
    """Run ``config`` on ``engine`` (default: ``config.engine``); see each engine's ``train`` for ``kwargs``.
    Returns a :class:`TrainResult` (``dry_run``: the dict ``--dry-run`` prints)."""
    engine = engine or config.engine
    if engine == "trl":
        from siri_rl.engines.trl import train as run
    elif engine == "verl":
        from siri_rl.engines.verl import train as run
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return run(config, output_dir=output_dir, resume=resume, dry_run=dry_run, **kwargs)
