"""The ``siri eval`` driver: plan the missing samples, generate them, grade them while the next call generates,
append them to samples.jsonl, and summarise (:func:`run_eval`); or summarise an existing results directory again
(:func:`report_only`)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siri_rl.data import benchmark_name
from siri_rl.evaluate.backends import TransformersBackend, VLLMBackend
from siri_rl.evaluate.config import EvalConfig
from siri_rl.evaluate.plan import plan_units
from siri_rl.evaluate.report import write_summary
from siri_rl.evaluate.summary import grade_records, problem_fields, summarize_run
from siri_rl.results import (
    ARGS_FILE,
    SAMPLES_FILE,
    SUMMARY_FIELDS,
    SUMMARY_JSON,
    EvalError,
    finished_samples,
    iter_samples,
    read_eval_args,
    read_json,
    sample_key,
    write_args,
)


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


def progress_printer(bar: Any, task: Any, every: float = 30.0) -> Callable[[], None]:
    """A function to call after each step: where the bars cannot redraw (output to a file, e.g. a cluster job log),
    it prints a line every ``every`` seconds and at the end; on a terminal it does nothing."""
    last = 0.0

    def log() -> None:
        nonlocal last
        if bar.disable or bar.console.is_terminal:
            return
        t = bar.tasks[task]
        now = time.monotonic()
        if now - last < every and not t.finished:
            return
        last = now
        eta = t.time_remaining
        eta_text = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        bar.console.print(f"generated {int(t.completed)}/{int(t.total)} samples, eta {eta_text}", highlight=False)

    return log


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _tokenizer_reason(source: str, err: Exception) -> str:
    """Why a tokenizer did not load, in one line: a local folder without tokenizer files says so (transformers'
    own message ends in an empty list of the files it tried), else the first line of transformers' message."""
    folder = Path(source).expanduser()
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        return (f"the folder has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}); save the base model's "
                "tokenizer into it (tokenizer.save_pretrained)")
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_eval_problems(cfg: EvalConfig) -> dict[str, list[dict]]:
    """Benchmark name -> problems (``id``, ``problem``, ``answer``), first ``cfg.limit`` of each."""
    from siri_rl.data import load_benchmark

    problems = {}
    for b in cfg.benchmarks:
        rows = load_benchmark(b, cfg.data_dir)
        problems[benchmark_name(b)] = rows[: cfg.limit] if cfg.limit else rows  # a file: its stem, not its path
    return problems


def run_eval(cfg: EvalConfig, *, backend: Any = None, tokenizer: Any = None) -> dict:
    """Generate, grade and summarise; resumes from ``cfg.out`` if it holds samples of the same arguments.

    ``backend``: an object with the backends' ``generate(units, seed)`` and ``close()`` to sample with instead of
    loading ``cfg.model`` (a validation during training passes the trainer's own model or engine, and the
    ``tokenizer`` it trains with); ``cfg.backend`` must then name the sampling rule it follows. Returns the
    summary dict written to ``summary.json``.
    """
    from siri_rl.models import check_model_source
    from siri_rl.prompts import load_tokenizer, prompt_token_ids

    out = Path(cfg.out)
    # bad model paths or benchmarks fail before the results directory is created
    if backend is None:
        check_model_source(cfg.model, option="--model")
    problems = load_eval_problems(cfg)
    if cfg.group_by:
        problem_fields(cfg)  # a --group-by field no problem has fails now, not after generating
    try:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    except (OSError, ValueError) as e:
        raise EvalError(f"cannot load the tokenizer of --model {cfg.model!r}: {_tokenizer_reason(cfg.model, e)}") from None
    # samples.jsonl is read twice per run: its keys here (where to resume), its records for the summary (holding
    # them in memory in between would take gigabytes at paper scale)
    done = finished_samples(out, cfg.identity(), require=SUMMARY_FIELDS)  # a bad line fails before generating
    args_on_disk = bool(done)
    samples_path = out / SAMPLES_FILE

    prompt_ids = {(b, str(p["id"])): prompt_token_ids(p["problem"], tokenizer) for b, rows in problems.items()
                  for p in rows}
    wanted = {(b, str(p["id"]), i) for b, rows in problems.items() for p in rows for i in range(cfg.n)}
    calls = plan_units(problems, prompt_ids, cfg, done)
    todo = len(wanted - done)

    t0 = time.perf_counter()
    written: set[tuple[str, str, int]] = set()  # keys appended by this run
    gen_tokens = 0
    gen_seconds = 0.0
    if calls:
        if backend is None:
            factory = TransformersBackend if cfg.backend == "transformers" else VLLMBackend
            if cfg.data_parallel_size > 1:  # N engine processes, each on its own GPUs
                from siri_rl.evaluate.data_parallel import EnginePool

                factory = EnginePool
            backend = factory(cfg.model, tokenizer, cfg, max_prompt_tokens=max(len(p) for p in prompt_ids.values()))
        out.mkdir(parents=True, exist_ok=True)
        n_done = len(done & wanted)
        # closing(): the engine stops when generation ends, also on errors and Ctrl-C (see VLLMBackend.close)
        with contextlib.closing(backend), _progress(cfg.progress) as bar, \
                open(samples_path, "a", encoding="utf-8") as f, concurrent.futures.ThreadPoolExecutor(max_workers=1) as grader:
            gen_task = bar.add_task("generate", total=n_done + todo, completed=n_done)
            grade_task = bar.add_task("grade", total=n_done + todo, completed=n_done)
            log_progress = progress_printer(bar, gen_task)
            pending: list[concurrent.futures.Future] = []

            def flush(wait_all: bool) -> None:
                # Write graded calls in order; grading of call i overlaps generation of call i+1.
                nonlocal args_on_disk
                while pending and (wait_all or pending[0].done() or len(pending) > 1):
                    recs = pending.pop(0).result()
                    if recs and not args_on_disk:
                        write_args(out, cfg.identity())
                        args_on_disk = True
                    for r in recs:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
                    f.flush()
                    written.update(sample_key(r) for r in recs)
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
                    log_progress()
            finally:
                # also on Ctrl-C: keep what has been generated and graded
                flush(wait_all=True)

    have = (done | written) & wanted
    if len(have) < len(wanted):
        raise EvalError(f"{len(wanted) - len(have)} samples missing from {samples_path}; rerun to resume")
    records = (r for r in iter_samples(samples_path, require=SUMMARY_FIELDS) if sample_key(r) in wanted)
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
    from siri_rl.models import check_model_source
    from siri_rl.prompts import load_tokenizer

    out = Path(result_dir)
    args_path, samples_path = out / ARGS_FILE, out / SAMPLES_FILE
    if not args_path.exists() or not samples_path.exists():
        raise EvalError(f"{out} is not a siri eval results directory (needs {ARGS_FILE} and {SAMPLES_FILE})")
    ident = read_eval_args(out)
    # the previous summary gives only defaults (budgets, generation figures): one that is not a summary is replaced
    try:
        old = read_json(out / SUMMARY_JSON, "a siri eval summary") if (out / SUMMARY_JSON).exists() else {}
    except EvalError:  # derived from samples.jsonl: rewritten below
        old = {}
    old = old if isinstance(old, dict) else {}
    meta = old.get("meta") if isinstance(old.get("meta"), dict) else {}
    old_cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    old_budgets = old_cfg.get("budgets")
    if not (isinstance(old_budgets, list) and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in old_budgets)):
        old_budgets = None
    stored = {k: v for k, v in ident.items() if k in EvalConfig.__dataclass_fields__}
    try:  # the stored arguments alone first, so that an error names the file, not an option of this command
        EvalConfig(**stored, out=out, progress=False)
    except (TypeError, ValueError) as e:  # EvalError is a ValueError
        raise EvalError(f"{args_path} does not hold siri eval arguments ({e}); restore it") from None
    cfg = EvalConfig(**stored, out=out, budgets=budgets if budgets is not None else old_budgets, group_by=group_by,
                     grade_workers=grade_workers, grade_timeout=grade_timeout, progress=False)
    if cfg.group_by:
        problem_fields(cfg)
    source = tokenizer_from or cfg.model
    if tokenizer is not None:
        source = getattr(tokenizer, "name_or_path", None) or "a tokenizer object"
    if tokenizer is None:
        try:  # a folder that is not here (a relative path stored by an older siri) fails now, not after hub retries
            check_model_source(source, option="--model" if tokenizer_from else f"model in {args_path}")
        except ValueError as e:  # DataError
            raise EvalError(f"cannot load the tokenizer of {source!r} ({str(e).partition('; ')[0]}); pass --model "
                            "with a folder or hub id that has the run's tokenizer") from None
    try:
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(source)
    except (OSError, ValueError) as e:
        reason = _tokenizer_reason(source, e)
        raise EvalError(f"cannot load the tokenizer of {source!r} ({reason}); pass --model with a folder or hub id "
                        "that has the run's tokenizer") from None
    wanted = set(cfg.benchmarks)
    records = (r for r in iter_samples(samples_path, require=SUMMARY_FIELDS) if r["benchmark"] in wanted)
    first = next(records, None)  # one read of samples.jsonl: its first record tells whether there are any
    if first is None:
        raise EvalError(f"{samples_path} holds no samples of {', '.join(cfg.benchmarks)}")
    summary = summarize_run(itertools.chain([first], records), cfg, tokenizer)
    if "generation" in meta:
        summary["meta"]["generation"] = meta["generation"]
    summary["meta"]["report_only"] = {"tokenizer": str(source)}
    write_summary(summary, out)
    return summary
