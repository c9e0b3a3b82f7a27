"""Benchmarks, training problems and prompts (SIRI §5.1: DeepScaleR-Preview data; AIME24/25, AMC, MATH500).

Every loader returns plain dicts with at least ``id``, ``problem`` and ``answer`` (a string). Data comes from the
public dataset hub by default, or from local files: a ``.jsonl``/``.json``/``.parquet`` file, or a directory with
``<name>.jsonl`` per benchmark (``data_dir`` / ``SIRI_DATA_DIR``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
DEFAULT_TRAIN_DATASET = "agentica-org/DeepScaleR-Preview-Dataset"
DATA_DIR_ENV = "SIRI_DATA_DIR"
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")

# Field names other public copies use for the same things.
PROBLEM_ALIASES = ("problem", "question", "Problem", "Question", "prompt")
ANSWER_ALIASES = ("answer", "Answer", "final_answer", "ground_truth", "solution_answer")
ID_ALIASES = ("id", "unique_id", "problem_idx", "ID")


class DataError(ValueError):
    """A dataset or model that cannot be used as given (missing file, field, row, model directory or hub repo)."""


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
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
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
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict):  # {"data": [...]} or column-oriented
            data = data.get("data", data.get("rows", data))
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict(orient="records")
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
        raise DataError(f"data dir {directory} does not exist (from --data-dir or ${DATA_DIR_ENV})")
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


# --- models ------------------------------------------------------------------------------------------------------


def _looks_local(text: str) -> bool:
    """Whether a model name can only mean a local path: absolute, ``~``, ``./`` or ``../``, more than two parts (a
    hub id is ``org/name``), or ``a/b`` where ``a`` is a local directory (``runs/my-run``)."""
    if text.startswith(("~", "./", "../", ".\\", "..\\")) or text in (".", "..") or os.path.isabs(text):
        return True
    parts = Path(text).parts
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def check_model_source(name_or_path: str | os.PathLike, *, option: str = "--model") -> None:
    """Fail at once, with one line, where a model cannot be loaded, before minutes of loading anything else.

    A name that can only be a local path (:func:`_looks_local`) must be an existing directory ("no such local
    directory", not the hub's repo-id format error). A hub id must be in the local cache, or the hub must answer
    one metadata request: huggingface_hub retries an unreachable hub with backoff for ~25 s per file before
    transformers gives up (huggingface_hub/file_download.py:1170-1189, utils/_http.py:459-559), while a cached file
    is used without retries (file_download.py:1142-1168). Offline mode (``HF_HUB_OFFLINE=1``,
    huggingface_hub/constants.py:194) only checks the cache. ``option`` names the setting in messages. URLs
    (``hdfs://...``) are left to the engine.
    """
    text = str(name_or_path)
    if "://" in text:
        return
    path = Path(text).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise DataError(f"{option} {text} is a file; give a model directory (config.json and weights) or a hub id")
    if _looks_local(text):
        raise DataError(f"no such local directory: {text} ({option}); give a model directory (config.json and "
                        "weights), e.g. RUN/checkpoints/<name>, or a hub id such as org/name")
    _check_hub_model(text, option)


def _check_hub_model(repo_id: str, option: str) -> None:
    import httpx
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
    except HFValidationError as err:
        raise DataError(f"{option} {repo_id!r} is neither a local directory nor a hub id (org/name): {err}") from None
    if constants.HF_HUB_OFFLINE:
        raise DataError(f"{option} {repo_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it; "
                        "download it once online, or give a local model directory")
    try:
        # One request: retry_on_errors defaults to False here (file_download.py:1617-1670).
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (httpx.TimeoutException, httpx.NetworkError) as err:
        raise DataError(
            f"cannot reach the hub at {constants.ENDPOINT} to download {option} {repo_id} ({type(err).__name__}), "
            "and it is not in the local cache; check the network (or HF_ENDPOINT), give a local model directory, or "
            "set HF_HUB_OFFLINE=1 to use only the cache") from None
    except GatedRepoError:
        raise DataError(f"{option} {repo_id} is gated on the hub: accept its terms on the model page, then log in "
                        "(hf auth login)") from None
    except RepositoryNotFoundError:
        raise DataError(f"{option} {repo_id}: no such local directory, and no such model on the hub (or it is "
                        "private: log in with hf auth login)") from None
    # Anything else (e.g. a repo without config.json) is left to transformers' own message.


_QUIET_BARS = ("Loading weights", "Writing model shards")
_bars_hooked = False


def quiet_weight_bars() -> None:
    """Hide transformers' "Loading weights" and "Writing model shards" bars, which every load and save of a model
    prints (a training run saves many times; they bury siri's own progress), and keep every other bar (the hub's
    downloads). Through transformers' hook on its tqdm (transformers/utils/logging.py:424 ``set_tqdm_hook``; the
    bars: transformers/core_model_loading.py:1460, modeling_utils.py:3537). Idempotent."""
    global _bars_hooked
    from transformers.utils import logging as hf_logging

    if _bars_hooked or not hasattr(hf_logging, "set_tqdm_hook"):
        return
    previous = None

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") in _QUIET_BARS:
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    _bars_hooked = True


# --- tokenizer and prompts -------------------------------------------------------------------------------------


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``, reloaded as a plain ``PreTrainedTokenizerFast`` if it does not round-trip
    text.

    transformers 5.x loads byte-level BPE tokenizers whose tokenizer_config names ``LlamaTokenizerFast`` — the
    DeepSeek-R1-Distill-Qwen tokenizer, when no qwen2 ``config.json`` sits beside it — as ``LlamaTokenizer`` with a
    Metaspace pre-tokenizer: spaces and newlines vanish and token ids are wrong (huggingface/transformers#45488).
    ``tokenizer.json`` itself is right, so the fallback loads it as is.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    probe = "We need 2 + 2.\nThat is 4."
    if tokenizer.decode(tokenizer.encode(probe, add_special_tokens=False)) != probe:
        kwargs.pop("trust_remote_code", None)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name_or_path, **kwargs)
    return tokenizer


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS, then the model's generation-config EOS list
    (``eos_token_id``, one id or a list, e.g. an end-of-turn token as well as the end of text), without repeats.

    Generation stops on the generation config's list (transformers' ``generate``; vLLM reads generation_config.json;
    TRL masks completions after any of them, trl/trainer/grpo_trainer.py:408-416), so whether a response ended on
    its own or was cut by the cap L must be judged against all of them, not the tokenizer's single EOS.

    Args:
        tokenizer: a Hugging Face tokenizer.
        generation_config: the model's list: a ``GenerationConfig``, a loaded model (its ``generation_config``), a
            model directory or hub id (its generation_config.json, else the ``eos_token_id`` of its config.json,
            as transformers and vLLM fall back), or None for the tokenizer's EOS alone.
    """
    if isinstance(generation_config, (str, os.PathLike)):
        model_eos = _generation_config_eos(str(generation_config))
    else:
        source = getattr(generation_config, "generation_config", generation_config)  # a model, or the config
        model_eos = getattr(source, "eos_token_id", None)
    ids: list[int] = []
    for eos in (tokenizer.eos_token_id, model_eos):
        for t in eos if isinstance(eos, (list, tuple)) else [eos]:
            if t is not None and int(t) not in ids:
                ids.append(int(t))
    return ids


@lru_cache(maxsize=16)
def _generation_config_eos(name_or_path: str) -> int | tuple[int, ...] | None:
    """The EOS id(s) a model directory or hub id declares (cached: veRL builds an agent loop per sample)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(name_or_path).eos_token_id
    except (OSError, ValueError):  # no generation_config.json
        try:
            eos = getattr(AutoConfig.from_pretrained(name_or_path), "eos_token_id", None)
        except (OSError, ValueError):  # not a model we can read here (e.g. a remote path): tokenizer EOS only
            return None
    return tuple(eos) if isinstance(eos, list) else eos


def build_messages(problem: str, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    """The chat messages of one problem: a single user turn, the problem followed by the standard instruction."""
    return [{"role": "user", "content": f"{problem} {instruction}"}]


def build_prompt(problem: str, tokenizer: Any, instruction: str = INSTRUCTION) -> str:
    """The prompt text in the model's own chat template, ending with the assistant turn's opening (for
    R1-distill: ``<｜Assistant｜><think>\\n``). Tokenizers without a template get the bare user text."""
    messages = build_messages(problem, instruction)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return messages[0]["content"]


def prompt_token_ids(problem: str, tokenizer: Any, instruction: str = INSTRUCTION) -> list[int]:
    """Token ids of :func:`build_prompt`, with exactly one BOS: templates that already write the BOS token
    (R1-distill's does) are tokenized without adding another."""
    text = build_prompt(problem, tokenizer, instruction)
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = bool(bos) and text.startswith(bos)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])
