"""A run directory's ``metrics.jsonl`` (one JSON row per rollout round, from either engine), its stored
``config.yaml``, and the resume policy both engines follow.

The policy:

- A fresh run into a directory that already holds ``metrics.jsonl`` is refused (the old rows would mix with the
  new and its running totals would be inherited).
- ``--resume`` continues from the run's stored ``config.yaml``. A config that differs from it is refused with the
  differing keys named, except ``training.rounds`` raised alone: that extends the run (the schedule, and so every
  cap already trained, stays as it was).
- On ``--resume`` the rows of every round at or after the resumed round are dropped before training continues
  (they are produced again), and the running totals ``tokens_generated`` (tokens) and ``wall_s`` (seconds)
  continue from the last kept row.
- A finished run (its newest checkpoint is after the last round) trains no further on ``--resume``: only what a
  kill left undone after training (the ``final`` export, the dynamics plot, the toy's evaluation) is done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from siri_rl.config import ConfigError, ExperimentConfig, config_from_dict

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
UNSET = "(unset)"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with the one line that says where it stopped and how to continue.

    A ``KeyboardInterrupt``, so code that does not know it still sees an interrupt; ``siri train`` prints
    ``str(err)`` and exits with status 130."""


def check_output_dir(run_dir: str | Path) -> None:
    """Raise :class:`ConfigError` when ``run_dir`` (or the nearest existing folder above it) is a file."""
    path = Path(run_dir)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is a file" if p == path else f"is inside {p}, which is a file"
                raise ConfigError(f"--output-dir {run_dir} {where}; pick a directory path for the run")
            return


def refuse_existing_run(run_dir: str | Path, *, resume: bool) -> None:
    """Raise :class:`ConfigError` when a fresh (not ``--resume``) run would write into a directory that already
    holds a run's ``metrics.jsonl``."""
    if not resume and (Path(run_dir) / METRICS_FILE).exists():
        raise ConfigError(f"{run_dir} already holds a run (metrics.jsonl); pass --resume or pick a new --output-dir")


def read_run_config(run_dir: str | Path) -> ExperimentConfig | None:
    """The config a run was started with (``RUN/config.yaml``), validated; None if the run has none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}); restore it or start a new run") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a config mapping; restore it or start a new run")
    return config_from_dict(data, source=str(path))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(stored: ExperimentConfig, requested: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted.key: (stored value, requested value)}`` for every resolved key whose value differs (a key that
    only one side has reads :data:`UNSET` on the other)."""
    a, b = _flatten(stored.to_dict()), _flatten(requested.to_dict())
    return {k: (a.get(k, UNSET), b.get(k, UNSET)) for k in sorted(set(a) | set(b)) if a.get(k, UNSET) != b.get(k, UNSET)}


def check_resume_config(run_dir: str | Path, cfg: ExperimentConfig, *, extend_ok: bool = True) -> int | None:
    """Refuse a ``--resume`` whose config differs from the run's stored one (:class:`ConfigError` naming each
    differing key), except a larger ``training.rounds`` alone when ``extend_ok``. Returns the stored
    ``training.rounds`` (None when the run stored no config)."""
    stored = read_run_config(run_dir)
    if stored is None:
        return None
    diffs = config_differences(stored, cfg)
    if not diffs:
        return stored.training.rounds
    if set(diffs) == {"training.rounds"}:
        old, new = diffs["training.rounds"]
        if new < old:
            raise ConfigError(f"--resume: training.rounds={new} is below the {old} rounds {run_dir} was started "
                              f"with; a run can be extended (training.rounds above {old}), not shortened")
        if extend_ok:
            return old
    changed = ", ".join(f"{k} {_show(old)} -> {_show(new)}" for k, (old, new) in diffs.items())
    raise ConfigError(f"--resume: the config differs from the one {run_dir} was started with ({changed}); resume "
                      f"with the run's own config (`siri train -o {run_dir} --resume`, no -c, no overrides), or "
                      f"extend it with training.rounds=N alone")


def _show(value: Any) -> str:
    return value if value == UNSET else json.dumps(value, default=str)


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
