"""The commands of results directories: ``siri eval`` writes one (:mod:`siri_rl.evaluate`), ``siri compare`` and
``siri analyze`` read them (:mod:`siri_rl.compare`, :mod:`siri_rl.analysis`), ``siri select`` writes one per
checkpoint of a run and picks on their Pareto front (:mod:`siri_rl.selection`)."""

from __future__ import annotations

from pathlib import Path

import typer

from siri_rl.cli._app import app, check_output_dir, console, fail

# The sampling and grading options `siri eval` and `siri select` share: defined once, so both commands take the
# same flags with the same defaults and help.
BENCHMARKS_OPTION = typer.Option("aime24,aime25,amc,math500", help="comma-separated benchmark names or files")
N_OPTION = typer.Option(64, help="samples per problem (paper: 64)")
TEMPERATURE_OPTION = typer.Option(0.6, help="sampling temperature (paper: 0.6)")
TOP_P_OPTION = typer.Option(0.95, "--top-p", help="nucleus sampling (paper: 0.95)")
MAX_TOKENS_OPTION = typer.Option(16384, "--max-tokens", help="max new tokens per response (paper: 16384)")
BACKEND_OPTION = typer.Option("vllm", help="vllm (GPU) | transformers (CPU / small models)")
DATA_DIR_OPTION = typer.Option(None, "--data-dir", help="local benchmark files (default $SIRI_DATA_DIR, then hub)")
SEED_OPTION = typer.Option(0, help="sampling seed")
LIMIT_OPTION = typer.Option(None, help="only the first K problems of each benchmark (smoke runs)")
BATCH_SIZE_OPTION = typer.Option(64, "--batch-size", help="transformers: rows per generate call; vllm: problems per call")
TENSOR_PARALLEL_SIZE_OPTION = typer.Option(1, "--tensor-parallel-size", "--tp", help="vllm: GPUs per model")
DTYPE_OPTION = typer.Option("auto", help="auto | bfloat16 | float16 | float32")
GRADE_WORKERS_OPTION = typer.Option(None, "--grade-workers", help="math-verify processes (default: CPUs)")
GRADE_TIMEOUT_OPTION = typer.Option(5.0, "--grade-timeout", help="seconds per answer")
PROGRESS_OPTION = typer.Option(True, "--progress/--no-progress", help="progress bars")
REQUIRE_THINK_END_OPTION = typer.Option(True, "--require-think-end/--no-require-think-end",
                                        help="grade only a \\boxed{} after </think>")
DATA_PARALLEL_SIZE_OPTION = typer.Option(1, "--data-parallel-size", "--dp", help="vllm: engines, each on its own --tp "
                                         "GPUs, problems split between them")


def _parse_budgets(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{option} must be comma-separated integers like 2048,4096,8192, got {text!r}")
        raise  # unreachable


@app.command("eval")
def eval_(
    model: str | None = typer.Option(None, help="model path or hub id (HF format); with --report-only: only "
                                     "where to load the tokenizer from, if not the run's own model"),
    out: Path | None = typer.Option(None, help="results directory (resumes if it holds samples of the same arguments)"),
    benchmarks: str = BENCHMARKS_OPTION,
    n: int = N_OPTION,
    temperature: float = TEMPERATURE_OPTION,
    top_p: float = TOP_P_OPTION,
    max_tokens: int = MAX_TOKENS_OPTION,
    backend: str = BACKEND_OPTION,
    data_dir: str | None = DATA_DIR_OPTION,
    seed: int = SEED_OPTION,
    limit: int | None = LIMIT_OPTION,
    budgets: str | None = typer.Option(None, help="token budgets for the accuracy-vs-budget curve (default 2048,4096,...)"),
    batch_size: int = BATCH_SIZE_OPTION,
    tensor_parallel_size: int = TENSOR_PARALLEL_SIZE_OPTION,
    dtype: str = DTYPE_OPTION,
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vllm: no torch.compile / CUDA graphs "
                                       "(starts faster, decodes slower; vLLM's own option)"),
    require_think_end: bool = REQUIRE_THINK_END_OPTION,
    grade_workers: int | None = GRADE_WORKERS_OPTION,
    grade_timeout: float = GRADE_TIMEOUT_OPTION,
    progress: bool = PROGRESS_OPTION,
    group_by: str | None = typer.Option(None, "--group-by", help="comma-separated problem fields to break accuracy "
                                        "and length down by (MATH500's level is always shown)"),
    data_parallel_size: int = DATA_PARALLEL_SIZE_OPTION,
    report_only: Path | None = typer.Option(None, "--report-only", help="recompute the summaries of this results "
                                            "directory from its samples.jsonl (no model, no generation)"),
) -> None:
    """Sample a model on the math benchmarks, grade, and write samples/summary/budget curve (paper §5.1)."""
    from siri_rl.errors import DataError
    from siri_rl.evaluate import EvalConfig, run_eval
    from siri_rl.evaluate import report_only as recompute
    from siri_rl.results import SUMMARY_MD, EvalError

    groups = group_by.split(",") if group_by else []
    if report_only is not None:
        try:
            recompute(report_only, tokenizer_from=model, budgets=_parse_budgets(budgets, "--budgets"),
                      group_by=groups, grade_workers=grade_workers, grade_timeout=grade_timeout)
        except (EvalError, DataError) as err:
            fail(str(err))
            return
        console.print((report_only / SUMMARY_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
        console.print(f"rewrote {report_only}/ (summary.json, summary.md, budget_curve.png) from samples.jsonl")
        return
    if model is None or out is None:
        fail("siri eval needs --model and --out (or --report-only DIR to recompute an existing results directory)")
        return
    check_output_dir(out, "--out", command="siri eval")
    try:
        cfg = EvalConfig(
            model=model, out=out, benchmarks=benchmarks.split(","), n=n, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens, backend=backend, data_dir=data_dir, seed=seed, limit=limit,
            require_think_end=require_think_end, budgets=_parse_budgets(budgets, "--budgets"), batch_size=batch_size,
            tensor_parallel_size=tensor_parallel_size, dtype=dtype, enforce_eager=enforce_eager,
            grade_workers=grade_workers,
            grade_timeout=grade_timeout, progress=progress, group_by=groups, data_parallel_size=data_parallel_size,
        )
        run_eval(cfg)
    except (EvalError, DataError) as err:
        fail(str(err))
        return
    console.print((out / SUMMARY_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out}/ (samples.jsonl, summary.json, summary.md, budget_curve.png)", markup=False,
                  highlight=False)


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., help="siri eval results directories (one row each)"),
    base: Path = typer.Option(..., help="results directory of the base model (ΔAcc/CR reference)"),
    out: Path = typer.Option(..., help="report directory: table.md, comparison.json, pareto.png"),
    compact: bool = typer.Option(False, "--compact", help="Table 1 as in the paper: no intervals, no paired column"),
    pair: list[str] | None = typer.Option(None, "--pair", help="also compare two results with each other: "
                                          "'NAME_A,NAME_B' (row names or paths; repeatable)"),
    paper: str | None = typer.Option(None, "--paper", help="table1-1.5b | table1-7b: add the paper's Table 1 rows "
                                     "of that size (rows named 'paper: NAME'; missing cells shown as –)"),
) -> None:
    """Table 1 (Acc/Length per benchmark with 95% intervals, ΔAcc/CR, best in bold), paired bootstrap differences
    against --base, and the accuracy-vs-length Pareto plot with error bars."""
    from siri_rl.compare import TABLE_MD, run_compare
    from siri_rl.results import EvalError

    pairs = []
    for text in pair or []:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            fail(f"--pair must look like 'NAME_A,NAME_B', got {text!r}")
            return
        pairs.append((parts[0], parts[1]))
    check_output_dir(out, "--out", command="siri compare")
    try:
        run_compare(base, results, out, compact=compact, pairs=pairs, paper=paper)
    except EvalError as err:
        fail(str(err))
        return
    # raw markdown (wide tables stay readable and can be pasted as they are)
    console.print((out / TABLE_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out}/ (table.md, comparison.json, pareto.png)", markup=False, highlight=False)


analyze_app = typer.Typer(
    help="Reasoning-pattern frequencies (Figure 6) and training-run dynamics (Figures 4, 9).", no_args_is_help=True
)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("patterns")
def analyze_patterns(
    results: list[Path] = typer.Argument(..., help="siri eval results directories, e.g. checkpoints at 1280/1600/1920"),
    out: Path = typer.Option(Path("patterns"), help="directory for patterns.md, patterns.json, patterns.png"),
    words: str = typer.Option("wait,hold on,alternatively,so,compute", help="comma-separated words/phrases"),
    names: str | None = typer.Option(None, help="comma-separated labels, one per results directory"),
) -> None:
    """Mean occurrences per response of each word, in correct vs incorrect responses, across results."""
    from siri_rl.analysis import PATTERNS_MD, run_patterns
    from siri_rl.results import EvalError

    check_output_dir(out, "--out", command="siri analyze patterns")
    try:
        run_patterns(results, out, words.split(","), names.split(",") if names else None)
    except EvalError as err:
        fail(str(err))
        return
    console.print((out / PATTERNS_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out}/ (patterns.md, patterns.json, patterns.png)", markup=False, highlight=False)


@analyze_app.command("run")
def analyze_run(
    run_dir: Path = typer.Argument(..., help="training run directory (holds metrics.jsonl)"),
    out: Path | None = typer.Option(None, help="output directory (default RUN_DIR/analysis)"),
) -> None:
    """Accuracy and length against the scheduled cap, entropy, tokens generated (PNGs + run.md)."""
    from siri_rl.analysis import analysis_dir, run_analysis
    from siri_rl.results import EvalError

    check_output_dir(analysis_dir(run_dir, out), "--out" if out else "RUN_DIR/analysis", command="siri analyze run")
    try:
        written = run_analysis(run_dir, out)
    except EvalError as err:
        fail(str(err))
        return
    console.print(written[-1].read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in written), markup=False, highlight=False)


@app.command("select")
def select_(
    run_dir: Path = typer.Argument(..., help="training run directory (its RUN/checkpoints/<name>/ exports)"),
    out: Path = typer.Option(..., help="selection directory: one results directory per checkpoint, selection.md, "
                             "pareto.json, pareto.png (a rerun evaluates only what is missing)"),
    base: str | None = typer.Option(None, help="the base model's `siri eval` results directory, or the base model "
                                    "itself (evaluated into OUT/base with the same options), for ΔAcc/CR"),
    benchmarks: str = BENCHMARKS_OPTION,
    n: int = N_OPTION,
    temperature: float = TEMPERATURE_OPTION,
    top_p: float = TOP_P_OPTION,
    max_tokens: int = MAX_TOKENS_OPTION,
    backend: str = BACKEND_OPTION,
    data_dir: str | None = DATA_DIR_OPTION,
    seed: int = SEED_OPTION,
    limit: int | None = LIMIT_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    tensor_parallel_size: int = TENSOR_PARALLEL_SIZE_OPTION,
    dtype: str = DTYPE_OPTION,
    device: str | None = typer.Option(None, help="transformers: cpu | cuda (default cuda if available)"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vllm: no torch.compile / CUDA graphs"),
    require_think_end: bool = REQUIRE_THINK_END_OPTION,
    grade_workers: int | None = GRADE_WORKERS_OPTION,
    grade_timeout: float = GRADE_TIMEOUT_OPTION,
    data_parallel_size: int = DATA_PARALLEL_SIZE_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Evaluate every exported checkpoint of a run (as `siri eval`) and pick on the accuracy/length Pareto front,
    beside the paper's SIRI-low / SIRI-high picks: selection.md, pareto.json, pareto.png."""
    from siri_rl.errors import DataError
    from siri_rl.results import EvalError
    from siri_rl.selection import SELECTION_MD, run_select

    check_output_dir(out, "--out", command="siri select")
    settings = dict(benchmarks=benchmarks.split(","), n=n, temperature=temperature, top_p=top_p,
                    max_tokens=max_tokens, backend=backend, data_dir=data_dir, seed=seed, limit=limit,
                    batch_size=batch_size, tensor_parallel_size=tensor_parallel_size, dtype=dtype, device=device,
                    enforce_eager=enforce_eager, require_think_end=require_think_end, grade_workers=grade_workers,
                    grade_timeout=grade_timeout, data_parallel_size=data_parallel_size, progress=progress)

    def log(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        run_select(run_dir, out, settings, base=base, log=log)
    except (EvalError, DataError) as err:
        fail(str(err))
        return
    console.print((out / SELECTION_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out}/ (selection.md, pareto.json, pareto.png)", markup=False, highlight=False)
