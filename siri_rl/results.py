"""The results directory of ``siri eval`` (its ``--out``): file names, the samples store, the arguments that bind a
directory to one set of samples, atomic writes, and loading a finished result.

::

    eval_args.json   the arguments that determine the samples (written with the first samples); a rerun must
                     match them to resume
    samples.jsonl    one JSON per sample, appended as soon as it is graded (a rerun skips finished samples)
    summary.json     {"benchmarks": {name: {"acc", "length", ...}}, "average", "problems", "meta"}
    summary.md       Table-1-style markdown
    budget_curve.png accuracy / mean length if every response were capped at each budget

A core module: it imports no other siri_rl module, so ``siri compare``, ``siri analyze`` and the engines read
results without loading the evaluation driver (:mod:`siri_rl.evaluate`), which writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
ARGS_FILE = "eval_args.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
BUDGET_PNG = "budget_curve.png"

# summary.json's per-problem counts of one benchmark (what ``siri compare`` pairs on), one list each.
PROBLEM_COLUMNS = ("problem_id", "n", "correct", "tokens", "tokens_sq")


class EvalError(ValueError):
    """Bad evaluation input (arguments, results directory); the message says how to fix it."""


# --- samples.jsonl: append-only, resumable ---------------------------------------------------------------------


def sample_key(rec: dict) -> tuple[str, str, int]:
    """The identity of one sample: (benchmark, problem id, sample index)."""
    return (rec["benchmark"], str(rec["problem_id"]), int(rec["sample_index"]))


_NONE = type(None)
# The fields `siri eval` writes in each samples.jsonl record, with their JSON types. A record needs its key
# (benchmark, problem_id, sample_index); a reader names what else it uses (``require``), and any field present must
# have its type, so that a hand-edited or foreign line is one error naming it rather than a traceback later.
SAMPLE_FIELDS: dict[str, tuple[type, ...]] = {
    "benchmark": (str,), "problem_id": (str, int), "sample_index": (int,), "gold": (str, _NONE),
    "response": (str,), "response_tokens": (int,), "finish_reason": (str, _NONE), "correct": (bool, _NONE),
    "grade_status": (str, _NONE), "token_ids": (list,),
}
SAMPLE_KEY = ("benchmark", "problem_id", "sample_index")
SUMMARY_FIELDS = ("gold", "response", "response_tokens")  # what a summary reads besides the key (it grades again)


def _sample_problem(rec: Any, require: tuple[str, ...]) -> str | None:
    """What is wrong with a parsed samples.jsonl line, or None."""
    if not isinstance(rec, dict):
        return f"a record must be a JSON object, got {type(rec).__name__}"
    missing = [k for k in (*SAMPLE_KEY, *require) if k not in rec]
    if missing:
        return f"the record has no {', '.join(missing)}"
    for name, types in SAMPLE_FIELDS.items():
        value = rec.get(name)
        if name in rec and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            want = " or ".join("null" if t is _NONE else {"str": "string", "int": "integer", "bool": "true/false",
                                                          "list": "list"}[t.__name__] for t in types)
            return f"{name} must be {want}, got {json.dumps(value)[:40]}"
    if rec["sample_index"] < 0 or ("response_tokens" in rec and rec["response_tokens"] < 0):
        return "sample_index and response_tokens must be >= 0"
    return None


def iter_samples(path: Path, *, repair: bool = False, require: tuple[str, ...] = ()) -> Iterator[dict]:
    """Records of samples.jsonl, one line at a time (a full paper-scale file holds gigabytes of token ids).

    A half-written last line (a kill mid-write: no newline at the end) is skipped, and cut off the file if
    ``repair``. Duplicate (benchmark, problem, sample) keys keep the first record. Any other bad line (not UTF-8, not
    JSON, not a record of :data:`SAMPLE_FIELDS` with the fields in ``require``) raises :class:`EvalError` naming the
    file and line: it was written whole, so dropping it would lose a sample silently.
    """
    path = Path(path)
    if not path.exists():
        return
    size = path.stat().st_size
    with open(path, "rb") as f:
        # everything after the last newline is an unfinished write
        f.seek(max(0, size - 1))
        if size and f.read(1) != b"\n":
            end = _last_newline_end(f, size)
            if repair:
                with open(path, "r+b") as w:
                    w.truncate(end)
            size = end
        f.seek(0)
        seen: set[tuple[str, str, int]] = set()
        lineno = 0
        while f.tell() < size:
            line = f.readline()
            lineno += 1
            if f.tell() > size:  # the half-written line
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise EvalError(f"{path}:{lineno} is not UTF-8 text (byte {e.start + 1}); fix or delete that "
                                "line") from None
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{lineno} is not valid JSON ({e.msg}); fix or delete that line") from None
            problem = _sample_problem(rec, require)
            if problem:
                raise EvalError(f"{path}:{lineno} is not a siri eval sample ({problem}); fix or delete that line")
            key = sample_key(rec)
            if key not in seen:
                seen.add(key)
                yield rec


def _last_newline_end(f: Any, size: int, chunk: int = 1 << 20) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def read_samples(path: Path, *, repair: bool = False, require: tuple[str, ...] = ()) -> list[dict]:
    """All records of samples.jsonl (see :func:`iter_samples`)."""
    return list(iter_samples(path, repair=repair, require=require))


def read_json(path: Path, what: str, *, fix: str = "fix or delete it") -> Any:
    """The JSON value of a small file siri wrote (summary.json, eval_args.json, a checkpoint card), or
    :class:`EvalError` naming the file and what is wrong (not UTF-8, not JSON; a missing file is the caller's)."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise EvalError(f"{path} is not UTF-8 text (byte {e.start + 1}), so not {what}; {fix}") from None
    except json.JSONDecodeError as e:
        raise EvalError(f"{path}:{e.lineno} is not valid JSON ({e.msg}), so not {what}; {fix}") from None


# The JSON types of eval_args.json's fields (what EvalConfig.identity writes).
ARGS_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "benchmarks": (list,), "n": (int,), "temperature": (int, float), "top_p": (int, float),
    "max_tokens": (int,), "backend": (str,), "data_dir": (str, _NONE), "seed": (int,), "limit": (int, _NONE),
    "require_think_end": (bool,),
}


def read_eval_args(out: Path) -> dict[str, Any]:
    """``out/eval_args.json``: a mapping of the arguments that made the samples (:data:`ARGS_TYPES`), or
    :class:`EvalError` naming the file and the field."""
    path = Path(out) / ARGS_FILE
    args = read_json(path, "siri eval arguments", fix="restore it, or evaluate into a new --out")
    if not isinstance(args, dict):
        problem = f"a mapping of arguments, not {type(args).__name__}"
    else:
        problem = next((f"{k} is {json.dumps(args.get(k))[:40]}" for k, types in ARGS_TYPES.items()
                        if k in args and (not isinstance(args[k], types)
                                          or (isinstance(args[k], bool) and bool not in types))), None)
        if problem is None and not all(isinstance(b, str) for b in args.get("benchmarks", [])):
            problem = "benchmarks must be a list of names"
    if problem:
        raise EvalError(f"{path} does not hold siri eval arguments ({problem}); restore it, or evaluate into a new "
                        "--out")
    return args


# --- eval_args.json: which arguments made the samples ------------------------------------------------------------


def check_args(out: Path, identity: dict[str, Any], *, has_samples: bool) -> None:
    """Refuse a results directory whose samples were made with arguments other than ``identity``.

    Arguments bind only once samples exist: eval_args.json is written together with the first samples
    (:func:`write_args`), so a run that failed before generating anything (vLLM did not start) leaves nothing that
    refuses a retry with other arguments, and an eval_args.json without samples is replaced.
    """
    if not has_samples:
        return
    args_path = out / ARGS_FILE
    if not args_path.exists():
        raise EvalError(f"{out / SAMPLES_FILE} exists but {ARGS_FILE} does not; use a new --out")
    old = read_eval_args(out)
    stored = old.get("model")
    if isinstance(stored, str) and stored != identity.get("model") and str(Path(stored).absolute()) == identity.get("model"):
        old["model"] = identity["model"]  # a relative path stored by an older siri, the same folder from here
    diff = [f"{k}: {old.get(k)!r} -> {identity[k]!r}" for k in identity if old.get(k) != identity[k]]
    if diff:
        raise EvalError(
            f"{out} holds samples made with other arguments ({'; '.join(diff)}); "
            "rerun with the same arguments to resume, or use a new --out"
        )


def write_args(out: Path, identity: dict[str, Any]) -> None:
    """eval_args.json, atomically (a reader sees no file or the whole file)."""
    text = json.dumps(identity, indent=2) + "\n"
    replace_atomically(lambda p: p.write_text(text), out / ARGS_FILE)


def finished_samples(out: Path, identity: dict[str, Any], *, require: tuple[str, ...] = ()) -> set[tuple[str, str, int]]:
    """Where a run into ``out`` resumes: the keys of the samples already there (one read of samples.jsonl, each
    record with the fields ``require`` too), after :func:`check_args`; a half-written last line is then cut off, so
    that appended samples start on a new line."""
    out = Path(out)
    if not out.is_dir() and out.exists():
        raise EvalError(f"--out {out} is a file, not a directory; pick another path")
    path = out / SAMPLES_FILE
    done = {sample_key(r) for r in iter_samples(path, require=require)}
    check_args(out, identity, has_samples=bool(done))
    if path.exists():
        with open(path, "rb") as f:
            size = path.stat().st_size
            end = _last_newline_end(f, size) if size else 0
        if end < size:
            with open(path, "r+b") as w:
                w.truncate(end)
    return done


def replace_atomically(write: Callable[[Path], Any], path: Path) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file beside it, then one rename: a reader (or a kill)
    sees the old file or the new one, never half of one. The temporary name keeps the suffix (savefig's format)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- loading a finished result -----------------------------------------------------------------------------------


@dataclass
class Result:
    """One ``siri eval`` results directory: ``benchmarks`` as in summary.json (acc in percent, length in tokens),
    ``problems`` its per-problem counts (None for summaries written before siri-rl reported them)."""

    name: str
    path: Path
    benchmarks: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, dict[str, list]] | None = None
    average: dict[str, Any] | None = None

    def average_of(self, names: list[str]) -> tuple[float | None, float | None]:
        """Mean accuracy (percent) and mean length (tokens) over the benchmarks of ``names`` this result has."""
        have = [n for n in names if n in self.benchmarks]
        if not have:
            return None, None
        return (sum(self.benchmarks[n]["acc"] for n in have) / len(have),
                sum(self.benchmarks[n]["length"] for n in have) / len(have))


def _check_problems(problems: Any) -> dict[str, dict[str, list]]:
    if not isinstance(problems, dict):
        raise TypeError("problems must map benchmark -> columns")
    for bench, cols in problems.items():
        if not isinstance(cols, dict) or any(not isinstance(cols.get(k), list) for k in PROBLEM_COLUMNS):
            raise ValueError(f"problems[{bench!r}] needs the lists {', '.join(PROBLEM_COLUMNS)}")
        lengths = {len(cols[k]) for k in PROBLEM_COLUMNS}
        numbers = [x for k in PROBLEM_COLUMNS[1:] for x in cols[k]]
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in numbers):
            raise ValueError(f"problems[{bench!r}] holds a count that is not a number")
        if len(lengths) != 1 or 0 in lengths or min(cols["n"]) < 1:
            raise ValueError(f"problems[{bench!r}] needs equally long, non-empty columns and n >= 1")
    return problems


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{json.dumps(value)[:40]} is not a number")
    return float(value)


def load_result(path: str | Path, name: str | None = None) -> Result:
    """Read ``path/summary.json`` (or a summary.json path) written by ``siri eval``; ``name`` defaults to the
    directory's name. A file that is not such a summary is :class:`EvalError` naming it and what is wrong."""
    path = Path(path)
    file = path if path.is_file() else path / SUMMARY_JSON
    if not file.exists():
        raise EvalError(f"{file} not found; run `siri eval --out {path}` first (or finish it: reruns resume)")
    data = read_json(file, "a siri eval summary", fix="rerun `siri eval --report-only` on its directory")
    try:
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
            raise TypeError("it needs a mapping 'benchmarks'")
        benchmarks = data["benchmarks"]
        for bench, v in benchmarks.items():
            if not isinstance(v, dict):
                raise TypeError(f"benchmarks[{bench!r}] is not a mapping")
            _number(v["acc"]), _number(v["length"])
        problems = _check_problems(data["problems"]) if data.get("problems") is not None else None
        meta, average = data.get("meta", {}), data.get("average")
        if not isinstance(meta, dict) or not isinstance(average, (dict, type(None))):
            raise TypeError("meta and average must be mappings")
    except (KeyError, TypeError, ValueError) as e:
        raise EvalError(f"{file} is not a siri eval summary ({type(e).__name__}: {e}); rerun `siri eval "
                        "--report-only` on its directory") from None
    folder = file.parent
    return Result(name or folder.name, folder, benchmarks, meta, problems, average)


def load_samples(path: str | Path, *, require: tuple[str, ...] = ()) -> list[dict]:
    """The samples of a results directory (or of a samples.jsonl path); an error if there are none."""
    path = Path(path)
    file = path / SAMPLES_FILE if path.is_dir() else path
    if not file.exists():
        raise EvalError(f"{file} not found; pass results directories written by `siri eval`")
    records = read_samples(file, require=require)
    if not records:
        raise EvalError(f"{file} holds no samples")
    return records
