"""The run directory, the one place that names and writes what ``siri train`` leaves behind (either engine):

    RUN/config.yaml                  the resolved config the run was started with (:func:`write_run_config`)
    RUN/metrics.jsonl                one JSON row per rollout round (:func:`~siri_rl.metrics.rollout_stats`, :func:`append_metrics_row`,
                                     read back with :func:`read_metric_rows`)
    RUN/checkpoints/<name>/          trough/peak (SIRI-low/-high) or ``final`` Hugging Face models, each with a
                                     ``siri_checkpoint.json`` (:func:`write_checkpoint_card`, :func:`read_checkpoint_cards`)
    RUN/dynamics.png                 accuracy and length against the cap (:func:`write_dynamics_plot`, Figure 4)
    RUN/trajectory.png               held-out accuracy against length over the run (Figure 1; with validation)
    RUN/validation.jsonl             one row per (validation, benchmark) (:func:`append_validation_rows`,
                                     :func:`read_validation_rows`); ``round`` r: the policy after r rounds
    RUN/validation/round-RRRRR/      each validation's samples, a ``siri eval`` results directory

and the resume policy both engines (and the toy above them) follow:

- A fresh run into a directory that already holds ``metrics.jsonl`` is refused (the old rows would mix with the
  new and its running totals would be inherited).
- ``--resume`` continues from the run's stored ``config.yaml``. A config that differs from it is refused with the
  differing keys named, except ``training.rounds`` raised alone: that extends the run (the schedule, and so every
  cap already trained, stays as it was).
- On ``--resume`` the rows of every round at or after the resumed round are dropped before training continues
  (:func:`truncate_metrics`; they are produced again), and the running totals ``tokens_generated`` (tokens) and
  ``wall_s`` (seconds) continue from the last kept row. So after any number of resumes the file holds one row per
  round and ``tokens_generated`` counts the tokens of the rounds in the file, whichever engine wrote it.
- A finished run (its newest checkpoint is after the last round) trains no further on ``--resume``: only what a
  kill left undone after training (the ``final`` export, the dynamics plot, the toy's evaluation) is done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siri_rl.config import ConfigError, ExperimentConfig, config_from_dict
from siri_rl.results import replace_atomically

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"  # RUN/checkpoints/<name>: the exported models siri eval reads
CHECKPOINT_CARD = "siri_checkpoint.json"  # written last: an export folder without it is incomplete
DYNAMICS_PNG = "dynamics.png"
TRAJECTORY_PNG = "trajectory.png"  # held-out accuracy against length, the validations in order (Figure 1)
VALIDATION_FILE = "validation.jsonl"
VALIDATION_DIR = "validation"  # RUN/validation/round-RRRRR: one `siri eval` results directory per validation
# A validation row: ``round`` (the policy after that many rounds; 0 = the base model), ``benchmark``, ``acc``
# (pass@1, %), ``acc_ci`` ([low, high], 95%, as `siri eval`), ``mean_len`` (response tokens), ``truncated_frac``
# (share that hit max_tokens), ``n`` (samples per problem), ``problems``, ``max_tokens``, ``temperature``.
VALIDATION_FIELDS = ("round", "benchmark", "acc", "acc_ci", "mean_len", "truncated_frac", "n", "problems",
                     "max_tokens", "temperature")
UNSET = "(unset)"


def _write_atomic(path: Path, text: str) -> None:
    """``path`` holds either its old content or ``text``, never half of it (a kill mid-write)."""
    replace_atomically(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)


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
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start + 1}); restore it or start a new run") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}); restore it or start a new run") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a config mapping; restore it or start a new run")
    return config_from_dict(data, source=str(path))


def write_run_config(run_dir: str | Path, cfg: ExperimentConfig) -> Path:
    """Write ``RUN/config.yaml`` (the resolved config, atomically; what ``--resume`` compares against). The
    caller writes it on the main process only, for a fresh run or an extension (a plain resume keeps the file)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir / CONFIG_FILE


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


# --- metrics.jsonl ---------------------------------------------------------------------------------------------


def append_metrics_row(run_dir_or_file: str | Path, row: Mapping[str, Any]) -> None:
    """Append one round's row to ``RUN/metrics.jsonl`` (or the given ``.jsonl`` path), one line in one write.

    The one writer of the file. Call it on the main process only (rank 0): the statistics are already over all
    processes, and several writers would interleave their lines."""
    path = Path(run_dir_or_file)
    path = path if path.suffix == ".jsonl" else path / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(dict(row)) + "\n")


# The per-round numbers of a metrics.jsonl row (tokens, shares, seconds) that readers compute with: each is a number
# or null where present, so that a hand-edited row is one error naming it rather than a traceback in a plot.
METRIC_NUMBERS = ("max_len", "accuracy", "completion_len_mean", "completion_len_max", "completion_len_min",
                  "clipped_frac", "num_completions", "tokens_round", "tokens_generated", "wall_s", "entropy",
                  "frac_groups_with_reward_variance", "frac_groups_all_correct", "frac_groups_all_wrong")


def _metrics_row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    if "step" in row and (isinstance(row["step"], bool) or not isinstance(row["step"], int) or row["step"] < 0):
        return f"step must be a round number >= 0, got {json.dumps(row['step'])[:40]}"
    for name in METRIC_NUMBERS:
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{name} must be a number, got {json.dumps(value)[:40]}"
    return None


def read_metric_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (a run directory or the file), one per round in step order; the one reader
    of the file. A missing file has no rows. Blank lines and a broken last line (a run killed mid-write, or still
    writing: not UTF-8 or not JSON yet) are skipped; any other line that is not UTF-8, not JSON, or not a row
    (:data:`METRIC_NUMBERS` numbers, an integer ``step``) raises :class:`ConfigError` (a ``ValueError``) naming
    the file and line.

    Tolerance for files not written by the resume policy (an older siri, a hand edit): of rows repeating a step
    the last one counts, and rows without a ``step`` are skipped."""
    path = Path(path)
    path = path / METRICS_FILE if path.is_dir() else path
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    by_step: dict[int, dict[str, Any]] = {}
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except ValueError as err:  # UnicodeDecodeError or JSONDecodeError
            if i == len(lines):
                break
            what = "UTF-8 text" if isinstance(err, UnicodeDecodeError) else "valid JSON"
            raise ConfigError(f"{path}:{i} is not {what}; fix or delete that line") from None
        problem = _metrics_row_problem(row)
        if problem:
            raise ConfigError(f"{path}:{i} is not a metrics row ({problem}); fix or delete that line")
        if "step" in row:
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def truncate_metrics(path: str | Path, done_rounds: int, *, rows: list[dict[str, Any]] | None = None,
                     rewrite: bool = True) -> list[dict[str, Any]]:
    """The resume policy for ``metrics.jsonl``: keep only the rows of rounds ``0 .. done_rounds-1`` and return
    them (the last one is where the running totals continue); the file is rewritten atomically when ``rewrite``
    (the main process only: call it with ``rewrite=False`` on the others, which then only read).

    ``done_rounds`` is the number of rounds the resumed checkpoint has been trained on: its round and every later
    one are produced again. ``rows``: the file's rows if the caller has read them already (read once per start).
    """
    path = Path(path)
    kept = [row for row in (read_metric_rows(path) if rows is None else rows) if int(row["step"]) < done_rounds]
    if rewrite and path.exists():
        _write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))
    return kept


def checkpoint_marks(run_dir: str | Path) -> dict[int, str]:
    """``{round: "low"|"high"}``: the SIRI-low (``*-compressed``) and SIRI-high (``*-expanded``) exports of a run,
    at the round of the policy they hold (a card's ``step`` + 1, the rounds trained), as validations count."""
    kinds = (("compressed", "low"), ("expanded", "high"))
    return {c.step + 1: kind for c in read_checkpoint_cards(run_dir) for word, kind in kinds if word in c.name}


def write_dynamics_plot(run_dir: str | Path, rows: Sequence[Mapping[str, Any]] | None = None, *,
                        title: str | None = None) -> Path | None:
    """Draw ``RUN/dynamics.png`` (accuracy and mean length against the scheduled cap, Figure 4) from the run's
    rows (read from ``RUN/metrics.jsonl`` when not given), with the held-out validation of ``validation.jsonl``
    where there is one, and then ``RUN/trajectory.png`` (Figure 1's accuracy-length view of the validations);
    None when there is no row to draw. Main process only."""
    from siri_rl.plots import plot_training_dynamics, plot_trajectory

    run_dir = Path(run_dir)
    rows = read_metric_rows(run_dir / METRICS_FILE) if rows is None else rows
    if not rows:
        return None
    validation, marks = read_validation_rows(run_dir), checkpoint_marks(run_dir)
    if validation:
        plot_trajectory(validation, run_dir / TRAJECTORY_PNG, marks=marks,
                        title=f"{title}: held-out accuracy against length" if title else None)
    return plot_training_dynamics(rows, run_dir / DYNAMICS_PNG, title=title, validation=validation, marks=marks)

# --- validation.jsonl -------------------------------------------------------------------------------------------


def validation_results_dir(run_dir: str | Path, round_: int) -> Path:
    """``RUN/validation/round-RRRRR``: the ``siri eval`` results directory of the validation after ``round_``
    rounds (``siri compare`` and ``siri analyze patterns`` read it)."""
    return Path(run_dir) / VALIDATION_DIR / f"round-{int(round_):05d}"


def append_validation_rows(run_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append one validation's rows (one per benchmark, :data:`VALIDATION_FIELDS`) to ``RUN/validation.jsonl``
    in one write, after its results directory is complete. The one writer of the file; main process only."""
    path = Path(run_dir) / VALIDATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps({k: row[k] for k in VALIDATION_FIELDS}) + "\n" for row in rows))


def read_validation_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN/validation.jsonl`` in (round, file) order; the one reader of the file. A missing file has
    no rows; a broken last line (a kill mid-write) is skipped; any other bad line raises :class:`ConfigError`
    naming it. Of rows repeating a (round, benchmark) the last one counts."""
    path = Path(run_dir) / VALIDATION_FILE
    lines = path.read_bytes().splitlines() if path.exists() else []
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for i, raw in enumerate(lines, 1):
        try:
            row = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except ValueError:
            if i == len(lines):
                break
            raise ConfigError(f"{path}:{i} is not UTF-8 JSON; fix or delete that line") from None
        if row is None:
            continue
        if not isinstance(row, dict) or type(row.get("round")) is not int or not isinstance(row.get("benchmark"), str):
            raise ConfigError(f"{path}:{i} is not a validation row (an object with an integer round and a benchmark)"
                              "; fix or delete that line")
        rows[(row["round"], row["benchmark"])] = row
    return sorted(rows.values(), key=lambda r: r["round"])


def truncate_validation(run_dir: str | Path, done_rounds: int) -> list[dict[str, Any]]:
    """The resume policy for validations: keep the rows of rounds ``<= done_rounds`` (the resumed checkpoint's
    policy and earlier ones) and rewrite the file atomically; remove the results directories of the validations
    without rows (later rounds, or one a kill cut short: it is redone). Main process only; returns the kept rows."""
    run_dir = Path(run_dir)
    kept = [row for row in read_validation_rows(run_dir) if row["round"] <= done_rounds]
    if (run_dir / VALIDATION_FILE).exists():
        _write_atomic(run_dir / VALIDATION_FILE, "".join(json.dumps(row) + "\n" for row in kept))
    rounds = {row["round"] for row in kept}
    for folder in (run_dir / VALIDATION_DIR).glob("round-*"):
        if not (folder.name[6:].isdigit() and int(folder.name[6:]) in rounds):
            shutil.rmtree(folder, ignore_errors=True)
    return kept


# --- checkpoint cards -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointCard:
    """``RUN/checkpoints/<name>/siri_checkpoint.json``: which round's policy an exported model is.

    ``step``: the last rollout round (0-based) the model was trained on; ``max_len``: that round's cap L (tokens);
    ``phase``: the schedule's phase there (``compressing``/``expanding``/...); ``source``: where the weights came
    from (engine and step, or the merged veRL checkpoint); ``metrics``: that round's ``metrics.jsonl`` row ({} if
    the run logged none)."""

    name: str
    step: int
    max_len: int | None
    phase: str | None
    source: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def write_checkpoint_card(checkpoint_dir: str | Path, *, name: str, step: int, max_len: int | None,
                          phase: str | None, source: str, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``siri_checkpoint.json`` into an exported model folder, atomically and after the model files: its
    presence means the export is complete (a kill during the save leaves a folder without it)."""
    path = Path(checkpoint_dir) / CHECKPOINT_CARD
    card = {"name": name, "step": int(step), "max_len": None if max_len is None else int(max_len), "phase": phase,
            "source": source, "metrics": dict(metrics or {})}
    _write_atomic(path, json.dumps(card, indent=2) + "\n")
    return path


def read_checkpoint_cards(run_dir: str | Path) -> list[CheckpointCard]:
    """The complete exports under ``RUN/checkpoints`` (folders with a card; ``*.tmp`` and cut-short ones are
    skipped: ``--resume`` redoes them), in round order. Reads the cards of older siri versions too (TRL's held the
    metrics row itself, veRL's ``{name, step, global_step, source}``). A card that is not UTF-8 JSON of that shape
    raises :class:`ConfigError` naming it: it is written last and atomically, so a broken one was edited."""
    cards = []
    for folder in sorted((Path(run_dir) / CHECKPOINTS).glob("*")):
        file = folder / CHECKPOINT_CARD
        if folder.name.endswith(".tmp") or not file.is_file():
            continue
        try:
            data = json.loads(file.read_bytes().decode("utf-8"))
        except ValueError as err:  # UnicodeDecodeError or JSONDecodeError
            what = "UTF-8 text" if isinstance(err, UnicodeDecodeError) else "valid JSON"
            raise ConfigError(f"{file} is not {what}; restore it, or delete the folder {folder} and export it "
                              "again") from None
        problem = _card_problem(data)
        if problem:
            raise ConfigError(f"{file} is not a checkpoint card ({problem}); restore it, or delete the folder "
                              f"{folder} and export it again")
        metrics = data.get("metrics")
        if metrics is None:  # an older card: the TRL one was the metrics row
            metrics = {k: v for k, v in data.items() if k not in ("name", "source", "global_step")}
        cards.append(CheckpointCard(name=str(data.get("name", folder.name)), step=data["step"],
                                    max_len=data.get("max_len"), phase=data.get("phase"),
                                    source=str(data.get("source", "")), path=folder, metrics=metrics))
    return sorted(cards, key=lambda c: (c.step, c.name))


def _card_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a card must be a JSON object, got {type(data).__name__}"
    step = data.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step must be a round number >= 0, got {json.dumps(step)[:40]}"
    max_len = data.get("max_len")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int)):
        return f"max_len must be a number of tokens or null, got {json.dumps(max_len)[:40]}"
    for name in ("name", "phase", "source"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return f"{name} must be a string, got {json.dumps(data[name])[:40]}"
    if data.get("metrics") is not None and not isinstance(data["metrics"], dict):
        return "metrics must be a mapping (the round's metrics row)"
    return None
