"""Benchmarks and training problems (SIRI §5.1: DeepScaleR-Preview data; AIME24/25, AMC, MATH500).

Every loader returns plain dicts with at least ``id``, ``problem`` and ``answer`` (a string). Data comes from the
public dataset hub by default, or from local files: a ``.jsonl``/``.json``/``.parquet`` file, or a directory with
``<name>.jsonl`` per benchmark (``data_dir`` / ``SIRI_DATA_DIR``).

Prompts and tokenizers live in :mod:`siri_rl.prompts`, model sources in :mod:`siri_rl.models` and the error type
in :mod:`siri_rl.errors`; their names are importable from here too (``from siri_rl.data import prompt_token_ids``),
and imports run one way: this module imports those three, none of them imports this one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siri_rl.errors import DataError
from siri_rl.models import check_model_source, quiet_weight_bars
from siri_rl.prompts import (
    INSTRUCTION,
    build_messages,
    build_prompt,
    eos_token_ids,
    load_tokenizer,
    prompt_token_ids,
)

__all__ = ["ANSWER_ALIASES", "BENCHMARKS", "DATA_DIR_ENV", "DEFAULT_TRAIN_DATASET", "ID_ALIASES", "INSTRUCTION",
           "LOCAL_SUFFIXES", "PROBLEM_ALIASES", "BenchmarkSpec", "DataError", "benchmark_name", "build_messages",
           "build_prompt", "check_model_source", "eos_token_ids", "load_benchmark", "load_problems", "load_tokenizer",
           "normalize_rows", "prompt_token_ids", "quiet_weight_bars"]

DEFAULT_TRAIN_DATASET = "agentica-org/DeepScaleR-Preview-Dataset"
DATA_DIR_ENV = "SIRI_DATA_DIR"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")

# Field names other public copies use for the same things.
PROBLEM_ALIASES = ("problem", "question", "Problem", "Question", "prompt")
ANSWER_ALIASES = ("answer", "Answer", "final_answer", "ground_truth", "solution_answer")
ID_ALIASES = ("id", "unique_id", "problem_idx", "ID")


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives on the dataset hub and which fields hold its problem and answer."""

    hub_id: str
    split: str
    config: str | None = None
    problem_field: str = "problem"
    answer_field: str = "answer"
    id_field: str | None = "id"
    notes: str = ""
    extra_fields: tuple[str, ...] = field(default_factory=tuple)


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "aime24": BenchmarkSpec("HuggingFaceH4/aime_2024", "train", notes="AIME 2024 I+II, 30 problems"),
    "aime25": BenchmarkSpec("MathArena/aime_2025", "train", id_field="problem_idx", notes="AIME 2025 I+II, 30"),
    "amc": BenchmarkSpec("AI-MO/aimo-validation-amc", "train", notes="AMC 12 2022+2023, 83 problems"),
    "math500": BenchmarkSpec(
        "HuggingFaceH4/MATH-500", "test", id_field="unique_id", extra_fields=("subject", "level"), notes="500"
    ),
}


# --- reading ---------------------------------------------------------------------------------------------------


def _read_local(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {err.start + 1}); save the file as "
                                    "UTF-8") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
                rows.append(row)
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text (byte {err.start + 1}); save the file as UTF-8") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict):  # {"data": [...]} or column-oriented
            data = data.get("data", data.get("rows", data))
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict(orient="records")
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: not a readable parquet file ({str(err).splitlines()[0][:200]})") from None
    raise DataError(f"unsupported data file {path}: use one of {', '.join(LOCAL_SUFFIXES)}")


def _read_hub(hub_id: str, split: str, config: str | None = None, *,
              local_hint: str = f"Point to local files with --data-dir or ${DATA_DIR_ENV}") -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as err:  # noqa: BLE001 - network/hub errors come in many types; say what to do instead
        raise DataError(
            f"could not load {hub_id!r} (split {split!r}) from the dataset hub: {type(err).__name__}: {err}. "
            f"Offline? {local_hint}."
        ) from err
    return [dict(row) for row in ds]


def _answer_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 142.0 in some AMC copies
    if isinstance(value, (list, tuple)):  # some copies store a list of accepted answers; take the first
        return _answer_text(value[0]) if value else None
    text = str(value).strip()
    return text or None


def _first(row: dict[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def normalize_rows(
    rows: list[dict[str, Any]],
    *,
    source: str,
    prefix: str,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    skip_invalid: bool = False,
    keep: Iterable[str] = (),
    skip_hint: str | None = None,
) -> list[dict[str, Any]]:
    """Turn raw rows into ``{"id", "problem", "answer", ...}`` dicts, failing on the first bad row with its place
    (or skipping bad rows, with a count, when ``skip_invalid``). ``skip_hint``: how the caller's user turns
    ``skip_invalid`` on (named in the error), or None where skipping is not offered."""
    out, skipped = [], []
    problem_names = (problem_field,) if problem_field else PROBLEM_ALIASES
    answer_names = (answer_field,) if answer_field else ANSWER_ALIASES
    id_names = (id_field,) if id_field else ID_ALIASES
    for index, row in enumerate(rows):
        problem = _first(row, problem_names)
        answer = _answer_text(_first(row, answer_names))
        problem = str(problem).strip() if problem is not None else ""
        missing = [n for n, v in (("problem", problem), ("answer", answer)) if not v]
        if missing:
            where = f"{source}: row {index} (0-based)"
            if skip_invalid:
                skipped.append(where)
                continue
            wanted = problem_names if "problem" in missing else answer_names
            raise DataError(
                f"{where} has no {' or '.join(missing)} (looked for field(s) {', '.join(wanted)}; "
                f"row has {', '.join(sorted(row)) or 'no fields'}); fix the row"
                + (f" or skip such rows with {skip_hint}" if skip_hint else "")
            )
        ident = _first(row, id_names)
        record = {"id": str(ident) if ident is not None else f"{prefix}-{index}", "problem": problem, "answer": answer}
        for name in keep:
            if name in row:
                record[name] = row[name]
        out.append(record)
    if skipped:
        import logging

        logging.getLogger(__name__).warning("skipped %d invalid rows of %s (first: %s)", len(skipped), source, skipped[0])
    if not out:
        raise DataError(f"{source}: no usable rows")
    return out


# --- public loaders --------------------------------------------------------------------------------------------


def _local_benchmark_file(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    directory = data_dir or os.environ.get(DATA_DIR_ENV)
    if not directory:
        return None
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "does not exist"
        raise DataError(f"data dir {directory} {what} (from --data-dir or ${DATA_DIR_ENV})")
    for suffix in LOCAL_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def benchmark_name(name: str) -> str:
    """The name a benchmark is known by in samples and tables: a data file's stem (``sets/my-set.jsonl`` ->
    ``my-set``), else the lower-cased name (``AIME24`` -> ``aime24``)."""
    path = Path(name)
    return path.stem if path.suffix.lower() in LOCAL_SUFFIXES else name.strip().lower()


def load_benchmark(
    name: str, data_dir: str | os.PathLike | None = None, *, skip_invalid: bool = False, keep: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Load an evaluation benchmark by name (``aime24``, ``aime25``, ``amc``, ``math500``) or from a file path.

    Looks for ``<data_dir>/<name>.jsonl`` (or .json/.parquet; ``data_dir`` defaults to ``$SIRI_DATA_DIR``) first,
    then the public dataset hub. Returns dicts with ``id``, ``problem``, ``answer`` and ``benchmark``, plus the
    benchmark's known extra fields (MATH500: ``subject``, ``level``) and the fields named in ``keep`` where a row
    has them (e.g. for ``siri eval --group-by``).
    """
    path = Path(name)
    from_hub = False
    bench = benchmark_name(name)
    if path.suffix.lower() in LOCAL_SUFFIXES:
        rows, source = _read_local(path), str(path)
        spec = BENCHMARKS.get(bench)
    else:
        spec = BENCHMARKS.get(bench)
        local = _local_benchmark_file(bench, data_dir)
        if local is not None:
            rows, source = _read_local(local), str(local)
        elif spec is None:
            raise DataError(
                f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}, a data file, "
                f"or put {name}.jsonl in --data-dir"
            )
        else:
            rows, source, from_hub = _read_hub(spec.hub_id, spec.split, spec.config), spec.hub_id, True
    # Hub copies are read with their known field names; local copies vary, so their common aliases are tried.
    records = normalize_rows(
        rows,
        source=source,
        prefix=bench,
        problem_field=spec.problem_field if from_hub else None,
        answer_field=spec.answer_field if from_hub else None,
        id_field=spec.id_field if from_hub else None,
        skip_invalid=skip_invalid,
        keep=tuple(dict.fromkeys((*(spec.extra_fields if spec else ()), *keep))),
    )
    for record in records:
        record["benchmark"] = bench
    return records


def load_problems(
    source: str | os.PathLike = DEFAULT_TRAIN_DATASET,
    *,
    split: str = "train",
    problem_field: str = "problem",
    answer_field: str = "answer",
    skip_invalid: bool = False,
) -> list[dict[str, Any]]:
    """Load training problems from a local file (.jsonl/.json/.parquet) or a dataset-hub id (default: the
    DeepScaleR-Preview 40K set). Returns dicts with ``id``, ``problem``, ``answer``. A row without a problem or
    an answer is an error naming the row and ``data.skip_invalid=true`` (the config key that sets
    ``skip_invalid``)."""
    path = Path(source)
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        rows, name = _read_local(path), str(path)
    else:
        rows = _read_hub(str(source), split, local_hint="Set data.train to a local .jsonl/.json/.parquet file")
        name = str(source)
    return normalize_rows(
        rows,
        source=name,
        prefix=Path(name).stem or "train",
        problem_field=problem_field,
        answer_field=answer_field,
        skip_invalid=skip_invalid,
        skip_hint="data.skip_invalid=true",
    )
