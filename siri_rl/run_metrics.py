"""A run directory's ``metrics.jsonl`` (one JSON row per rollout round, from either engine) and the resume policy
both engines follow.

The policy: a fresh run into a directory that already holds ``metrics.jsonl`` is refused (the old rows would mix
with the new and its running totals would be inherited); on ``--resume`` the rows of every round at or after the
resumed round are dropped before training continues (they are produced again), and the running totals
``tokens_generated`` (tokens) and ``wall_s`` (seconds) continue from the last kept row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from siri_rl.config import ConfigError

METRICS_FILE = "metrics.jsonl"


def refuse_existing_run(run_dir: str | Path, *, resume: bool) -> None:
    """Raise :class:`ConfigError` when a fresh (not ``--resume``) run would write into a directory that already
    holds a run's ``metrics.jsonl``."""
    if not resume and (Path(run_dir) / METRICS_FILE).exists():
        raise ConfigError(f"{run_dir} already holds a run (metrics.jsonl); pass --resume or pick a new --output-dir")


def read_metric_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``metrics.jsonl`` in file order (a resumed run may repeat a step). Blank lines and a
    half-written last line (a run killed mid-write, or still writing) are skipped; a broken line before the end
    raises ``ValueError`` naming it. A missing file has no rows."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i} is not valid JSON; fix or delete that line") from None
    return rows


def truncate_metrics(path: str | Path, done_rounds: int) -> dict[str, Any] | None:
    """Keep only the rows of rounds ``0 .. done_rounds-1`` (rows with ``step < done_rounds``) of a
    ``metrics.jsonl``, rewritten atomically; returns the last kept row (where running totals continue), or None.

    ``done_rounds`` is the number of rounds the resumed checkpoint has been trained on: its round and every later
    one are produced again.
    """
    path = Path(path)
    if not path.exists():
        return None
    kept = [row for row in read_metric_rows(path) if int(row.get("step", -1)) < done_rounds]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
    os.replace(tmp, path)  # a kill mid-rewrite leaves the old file, never a half-written one
    return kept[-1] if kept else None
