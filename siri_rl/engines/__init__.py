"""Training engines: thin adapters from a SIRI experiment config to an RL framework (imported lazily, so the
core and the CLI load without TRL or veRL).

The protocol, the same for every engine: ``train(config, *, output_dir, resume, dry_run, stop_after_rounds)``
trains into the run directory (:mod:`siri_rl.run_dir`) and returns a :class:`TrainResult`; with ``dry_run`` it
loads nothing and returns the dict ``siri train --dry-run`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siri_rl.config import ENGINES  # the one list, in the core (the config validates `engine:` against it)


class EngineError(RuntimeError):
    """The engine failed (e.g. ``verl.trainer.main_ppo`` exited non-zero, or the installed TRL lacks what siri-rl
    sets); the message is one line naming the cause and the way to continue."""


class NoLearningStop(EngineError):
    """``training.guard: stop`` ended the run (:mod:`siri_rl.guard`): the rounds it names gave GRPO almost nothing
    to learn from. Raised after training saved a resumable checkpoint; the message is the one line to print."""


@dataclass
class TrainResult:
    """What an engine's ``train`` returns.

    ``rounds_done``: rollout rounds in ``metrics.jsonl`` (the whole run, earlier starts included);
    ``checkpoints``: ``{name: folder}`` of the complete exports under ``RUN/checkpoints`` (trough/peak, ``final``);
    ``tokens_generated``: the run's running total (tokens); ``wall_s``: seconds this call trained (None where the
    engine does not time it); ``dynamics_png``: the plot, None if none was drawn; ``finished``: ``--resume`` found
    the run finished and trained nothing."""

    run_dir: Path
    rounds_done: int
    checkpoints: dict[str, Path] = field(default_factory=dict)
    tokens_generated: int = 0
    wall_s: float | None = None
    dynamics_png: Path | None = None
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings)."""
        return {"run_dir": str(self.run_dir), "rounds_done": self.rounds_done,
                "checkpoints": {n: str(p) for n, p in self.checkpoints.items()},
                "tokens_generated": self.tokens_generated, "wall_s": self.wall_s,
                "dynamics_png": None if self.dynamics_png is None else str(self.dynamics_png),
                "finished": self.finished}


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
