"""What every engine returns and raises: :class:`TrainResult`, :class:`EngineError` and :class:`NoLearningStop`.

A module of its own so that the engines import it and :mod:`siri_rl.engines` (which picks an engine and imports it
when asked) re-exports it: imports run one way, from the engines down to here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
