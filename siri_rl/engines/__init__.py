"""Training engines: thin adapters from a SIRI experiment config to an RL framework (imported lazily, so the
core and the CLI load without TRL or veRL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENGINES = ("trl", "verl")


class EngineError(RuntimeError):
    """The engine's own process failed (e.g. ``verl.trainer.main_ppo`` exited non-zero); the message is one line
    naming its log and the way to continue."""


def train(config: Any, *, engine: str | None = None, output_dir: str | Path, resume: bool = False,
          dry_run: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Run ``config`` on ``engine`` (default: ``config.engine``); see each engine's ``train`` for ``kwargs``."""
    engine = engine or config.engine
    if engine == "trl":
        from siri_rl.engines.trl import train as run
    elif engine == "verl":
        from siri_rl.engines.verl import train as run
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return run(config, output_dir=output_dir, resume=resume, dry_run=dry_run, **kwargs)
