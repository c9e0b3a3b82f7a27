"""veRL checkpoints of the trough/peak rounds -> Hugging Face models, with veRL's own model merger (SIRI §4.3).

veRL saves sharded actor checkpoints under ``trainer.default_local_dir/global_step_<N>/actor`` (FSDP:
``model_world_size_<W>_rank_<r>.pt`` + ``fsdp_config.json`` + ``huggingface/``). ``siri train --engine verl``
saves the model after every trough (SIRI-low, ``cycleK-compressed``) and peak (SIRI-high, ``cycleK-expanded``)
round r as ``global_step_{r+1}`` (the save plan of :mod:`siri_rl.engines.verl.checkpoints`, recorded in
``verl/plan.json``; older ones keep only their model shards, which is all the merger reads); this module merges
them into ``RUN/checkpoints/<name>/`` (``save_pretrained`` layout), where ``siri eval`` reads them, by running
veRL's public merger command, ``python -m verl.model_merger merge --backend fsdp --local_dir
.../global_step_<N>/actor --target_dir RUN/checkpoints/<name>`` (verl/model_merger/__main__.py:18-24; its flags
at verl/model_merger/base_model_merger.py:34-79; it reads the model config from ``<local_dir>/huggingface``,
``model/huggingface`` for Megatron, base_model_merger.py:127-140).

A closed-loop run (``schedule.kind: adaptive``, ``"closed_loop": true`` in the plan) turns where its accuracy made
it turn: its trough/peak steps are not in the plan but in ``metrics.jsonl``, each round that turned naming its
checkpoint (``checkpoint``, written by the agent-loop manager); :func:`planned_exports` joins the two.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from siri_rl.engines.protocol import EngineError
from siri_rl.engines.verl.checkpoints import exports_from_rows

PLAN_FILE = "verl/plan.json"  # written by siri_rl.engines.verl.launch.train
BACKENDS = ("fsdp", "megatron")


def actor_checkpoint_dir(checkpoint_root: str | Path, global_step: int) -> Path:
    """Where veRL keeps the actor of ``global_step`` under ``trainer.default_local_dir``."""
    return Path(checkpoint_root) / f"global_step_{int(global_step)}" / "actor"


def merge_command(
    actor_dir: str | Path, target_dir: str | Path, *, backend: str = "fsdp", trust_remote_code: bool = False
) -> list[str]:
    """veRL's merger command for one actor checkpoint, as an argument list."""
    command = [
        sys.executable, "-m", "verl.model_merger", "merge", "--backend", backend,
        "--local_dir", str(actor_dir), "--target_dir", str(target_dir),
    ]  # fmt: skip
    return command + (["--trust-remote-code"] if trust_remote_code else [])


def merge_checkpoint(
    actor_dir: str | Path, target_dir: str | Path, *, backend: str = "fsdp", trust_remote_code: bool = False
) -> Path:
    """Merge one veRL actor checkpoint (``.../global_step_<N>/actor``) into a Hugging Face model directory with
    ``python -m verl.model_merger merge``. A failed merge raises :class:`~siri_rl.engines.EngineError` with the
    merger's last exception line and the command to rerun."""
    from siri_rl.engines.verl.process import last_exception_line

    actor_dir, target_dir = Path(actor_dir), Path(target_dir)
    if backend not in BACKENDS:
        raise ValueError(f"unknown veRL checkpoint backend {backend!r}; use fsdp or megatron")
    if not actor_dir.is_dir():
        raise FileNotFoundError(
            f"no veRL actor checkpoint at {actor_dir} (expected .../global_step_<N>/actor)"
        )
    command = merge_command(actor_dir, target_dir, backend=backend, trust_remote_code=trust_remote_code)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        error = last_exception_line(proc.stdout + "\n" + proc.stderr) or f"exit status {proc.returncode}"
        raise EngineError(f"veRL's model merger failed on {actor_dir} ({error}); by hand: {' '.join(command)}")
    return target_dir


def planned_exports(plan: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """veRL ``global_step`` -> checkpoint name of a run: the plan's (``verl/plan.json``), and for a closed-loop
    run the turning points its ``metrics.jsonl`` rows name (a turning point at the last round replaces ``final``)."""
    out = {int(step): name for step, name in plan["checkpoints"].items()}
    if plan.get("closed_loop"):
        out.update(exports_from_rows(rows))
    return out


def export_checkpoints(
    run_dir: str | Path, *, names: list[str] | None = None, backend: str = "fsdp", overwrite: bool = False
) -> dict[str, Path]:
    """Merge the trough/peak checkpoints of a veRL run into ``RUN/checkpoints/<name>/``.

    Args:
        run_dir: the run directory of ``siri train --engine verl`` (it holds ``verl/plan.json``).
        names: only these checkpoints (e.g. ``["cycle1-compressed"]``); default: all that veRL saved.
        overwrite: merge again into directories that already hold a model.
    Returns:
        ``{name: merged directory}`` for every checkpoint merged or already present.
    """
    run_dir = Path(run_dir)
    plan_path = run_dir / PLAN_FILE
    if not plan_path.exists():
        raise FileNotFoundError(
            f"{plan_path} not found: {run_dir} is not a run directory of `siri train --engine verl`"
        )
    from siri_rl.run_dir import METRICS_FILE, read_metric_rows, write_checkpoint_card

    plan = json.loads(plan_path.read_text())
    metrics = run_dir / METRICS_FILE
    rows = read_metric_rows(metrics) if metrics.exists() else []
    wanted = planned_exports(plan, rows)
    if names:
        unknown = sorted(set(names) - set(wanted.values()))
        if unknown:
            raise ValueError(f"unknown checkpoint name(s) {unknown}; this run has {sorted(wanted.values())}")
        wanted = {s: n for s, n in wanted.items() if n in names}
    out = {}
    for step, name in sorted(wanted.items()):
        actor = actor_checkpoint_dir(plan["checkpoint_dir"], step)
        target = run_dir / "checkpoints" / name
        if (target / "config.json").exists() and not overwrite:
            out[name] = target
            continue
        if not actor.is_dir():
            continue  # not reached yet
        out[name] = merge_checkpoint(
            actor, target, backend=backend, trust_remote_code=plan.get("trust_remote_code", False)
        )
        # step: the last rollout round the model was trained on (veRL's global_step - 1), as the TRL engine's card
        row = next((r for r in rows if r["step"] == step - 1), {})
        write_checkpoint_card(target, name=name, step=step - 1, max_len=row.get("max_len"), phase=row.get("phase"),
                              source=str(actor), metrics=row)
    return out
