"""Which veRL steps save a checkpoint, and which saved files are kept (SIRI §4.3 trough/peak checkpoints).

veRL (``verl/trainer/ppo/ray_trainer.py``, verl 0.9.1) saves at global step g, after that step's actor update, when
``trainer.save_freq > 0 and (is_last_step or g % trainer.save_freq == 0 or <ESI expiry>)`` (lines 1704-1712);
``_save_checkpoint`` (lines 983-1050) writes ``default_local_dir/global_step_g/actor`` (FSDP: per-rank
``model_world_size_W_rank_r.pt``, ``optim_world_size_W_rank_r.pt``, ``extra_state_world_size_W_rank_r.pt``,
``fsdp_config.json``, ``huggingface/``; ``verl/utils/checkpoint/fsdp_checkpoint_manager.py`` 272-476), then
``data.pt`` and, last, the tracker ``latest_checkpointed_iteration.txt`` holding g. There is no option for a list of
steps, and ``trainer.max_actor_ckpt_to_keep`` keeps the newest N saves of any kind (``checkpoint_manager.py``
166-194), so it would delete trough/peak checkpoints.

So siri plans the saves itself: the model after rollout round r (trained on rounds 0..r, what the TRL engine
exports) is veRL's ``global_step_{r+1}``, saved at every trough/peak round, every ``training.save_every`` rounds
(resumable points, as in the TRL engine) and at the last round. The agent-loop manager sets ``trainer.save_freq``
for each step from this plan (veRL hands the manager its own config object and reads the key every step), and
:func:`prune_checkpoints` keeps the newest complete save in full (the resume point) and only the model shards of
older trough/peak saves (what ``siri export`` merges); older resumable-only saves are deleted.

The closed-loop schedule (``schedule.kind: adaptive``) turns where the training accuracy makes it turn, so its
troughs and peaks are not known before the run: its plan starts with the last round (``final``) only, the manager
adds the step of each turning point when the controller names it (:meth:`SavePlan.with_export`, before veRL's
save check of that same step) and records the name in that round's ``metrics.jsonl`` row (``checkpoint``), where
:func:`exports_from_rows` finds it again on resume, for pruning, and for ``siri export``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from siri_rl.adaptive import AdaptiveSchedule
from siri_rl.config import ConfigError
from siri_rl.schedule import LengthSchedule

TRACKER_FILE = "latest_checkpointed_iteration.txt"  # verl/utils/checkpoint/checkpoint_manager.py:255-259
# The per-rank files only a resume needs (fsdp_checkpoint_manager.py:316-318); veRL's model merger reads
# model_world_size_*.pt, fsdp_config.json and huggingface/ (verl/model_merger/fsdp_model_merger.py:86-170).
RESUME_ONLY_FILES = ("optim_world_size_*_rank_*.pt", "extra_state_world_size_*_rank_*.pt")
_STEP_DIR = re.compile(r"global_step_(\d+)")
CLOSED_LOOP = (  # what --dry-run says instead of trough/peak steps for kind adaptive
    "closed-loop (adaptive): each round's cap follows the training accuracy of the rounds before it, so no "
    "trough/peak step is known in advance; the manager saves each turning point when the controller names it and "
    "records it in metrics.jsonl (`checkpoint`), where `siri export` finds it"
)


def checkpoint_steps(schedule: LengthSchedule | AdaptiveSchedule, rounds: int) -> dict[int, str]:
    """veRL ``global_step`` -> checkpoint name of the SIRI-low/high checkpoints (troughs and peaks, SIRI §4.3).

    The checkpoint of round r is the model after round r's update, trained on rounds 0..r: veRL's
    ``global_step_{r+1}``, the same model the TRL engine exports for round r. Schedules without a checkpoint at the
    last round (constant and ``stages`` baselines) get ``final`` from the last save, as in the TRL engine. The
    closed-loop schedule has only ``final`` here: its turning points come from the run (:func:`exports_from_rows`).
    """
    if isinstance(schedule, AdaptiveSchedule):
        return {int(rounds): "final"}
    out = {min(step + 1, rounds): name for step, name in schedule.checkpoints(rounds)}
    out.setdefault(rounds, "final")
    return out


@dataclass(frozen=True)
class SavePlan:
    """The veRL global steps a run of ``rounds`` rounds saves at (see the module docstring)."""

    rounds: int
    exports: dict[int, str]  # global_step -> checkpoint name (trough/peak/final)
    save_every: int | None = None  # rounds between resumable saves

    @property
    def steps(self) -> list[int]:
        """Every global step that saves, ascending (the last round always does)."""
        every = range(self.save_every, self.rounds + 1, self.save_every) if self.save_every else ()
        return sorted({*self.exports, *every, self.rounds})

    def with_export(self, global_step: int, name: str) -> SavePlan:
        """This plan plus the trough/peak checkpoint ``name`` at ``global_step`` (a closed-loop turning point)."""
        return replace(self, exports={**self.exports, int(global_step): name})

    def saves_at(self, global_step: int) -> bool:
        return int(global_step) in set(self.steps)

    def save_freq_at(self, global_step: int) -> int:
        """The ``trainer.save_freq`` that makes veRL save at ``global_step`` exactly when the plan does: 1 divides
        every step, ``global_step + 1`` none (veRL's last-step and ESI saves still happen)."""
        return 1 if self.saves_at(global_step) else int(global_step) + 1

    def to_dict(self) -> dict[str, Any]:
        """What ``--dry-run`` prints (beside the exports, as ``checkpoints``): the number of saves, their steps,
        and what is kept on disk."""
        return {
            "saves": len(self.steps),
            "steps": self.steps,
            "resumable_every": self.save_every,
            "kept": f"the newest save in full (resume) + the model shards of {len(self.exports)} trough/peak saves",
        }


def save_plan(schedule: LengthSchedule | AdaptiveSchedule, rounds: int, save_every: int | None = None) -> SavePlan:
    """The save plan of a run: trough/peak/final exports, every ``save_every`` rounds, and the last round."""
    return SavePlan(rounds=int(rounds), exports=checkpoint_steps(schedule, rounds), save_every=save_every or None)


def exports_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """veRL ``global_step`` -> name of the trough/peak checkpoints a closed-loop run recorded in its
    ``metrics.jsonl`` rows (``checkpoint`` of round r: the model after round r, ``global_step_{r+1}``)."""
    return {int(row["step"]) + 1: str(row["checkpoint"]) for row in rows if row.get("checkpoint")}


def saved_steps(checkpoint_dir: str | Path) -> list[int]:
    """The global steps with a ``global_step_N`` directory under ``checkpoint_dir`` (veRL's default_local_dir)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir())


def latest_saved_step(checkpoint_dir: str | Path) -> int | None:
    """The global step of veRL's newest complete save (its tracker file, written after everything else and read by
    ``resume_mode=auto``: ray_trainer.py:1046-1050, 1064), or None."""
    tracker = Path(checkpoint_dir) / TRACKER_FILE
    try:
        return int(tracker.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def prune_checkpoints(checkpoint_dir: str | Path, exports: dict[int, str] | set[int]) -> list[Path]:
    """Bound what a run keeps: every save older than veRL's newest complete one loses its optimizer and extra
    state (only a resume reads them, and veRL resumes from the newest); of those, saves that are not trough/peak
    exports are deleted. Returns the paths removed."""
    latest = latest_saved_step(checkpoint_dir)
    if latest is None:
        return []
    root, removed = Path(checkpoint_dir), []
    for step in saved_steps(root):
        if step >= latest:
            continue
        folder = root / f"global_step_{step}"
        if step not in exports:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            continue
        for pattern in RESUME_ONLY_FILES:
            for path in (folder / "actor").glob(pattern):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def refuse_unmerged_old_plan(run: Path, checkpoint_dir: Path, checkpoints: Mapping[int, str]) -> None:
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
