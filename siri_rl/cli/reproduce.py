"""``siri reproduce table1``: the paper's released checkpoints evaluated with its protocol, beside Table 1
(:mod:`siri_rl.reproduce`)."""

from __future__ import annotations

from pathlib import Path

import typer

from siri_rl.cli._app import app, check_output_dir, console, fail
from siri_rl.cli.results import (
    BACKEND_OPTION,
    BATCH_SIZE_OPTION,
    BENCHMARKS_OPTION,
    DATA_DIR_OPTION,
    DATA_PARALLEL_SIZE_OPTION,
    DTYPE_OPTION,
    GRADE_TIMEOUT_OPTION,
    GRADE_WORKERS_OPTION,
    LIMIT_OPTION,
    MAX_TOKENS_OPTION,
    N_OPTION,
    PROGRESS_OPTION,
    REQUIRE_THINK_END_OPTION,
    SEED_OPTION,
    TEMPERATURE_OPTION,
    TENSOR_PARALLEL_SIZE_OPTION,
    TOP_P_OPTION,
)

reproduce_app = typer.Typer(help="Check an evaluation setup against the paper's numbers.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("table1")
def table1(
    size: str = typer.Option(..., help="the model size of Table 1's rows: 1.5b | 7b"),
    rows: str | None = typer.Option(None, help="comma-separated rows to evaluate (default: every row with a released "
                                    "checkpoint or a --model), e.g. base,siri-low,siri-high"),
    out: Path = typer.Option(Path("table1"), help="directory: one results directory per model, table1.md, "
                             "table1.json, table1.png (a rerun evaluates only what is missing)"),
    model: list[str] | None = typer.Option(None, "--model", help="ROW=PATH: evaluate that row from a local copy "
                                           "(clusters without hub access; repeatable)"),
    add: list[str] | None = typer.Option(None, "--add", help="LABEL=PATH: your own checkpoint in the same table "
                                         "(e.g. a siri train run's cycle3-compressed; repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (models, benchmarks, samples, tokens) "
                                 "and load nothing"),
    reference: Path | None = typer.Option(None, help="another Table 1 file of the same shape as the package's "
                                          "siri_rl/paper_table1.json"),
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
    """Evaluate the paper's released checkpoints (and --add'ed ones) with its protocol (§5.1: n 64, T 0.6, 16384
    tokens; every option may be overridden, and the table says so) and set each number beside Table 1's, with
    its 95% interval and a flag where the paper's number lies outside it."""
    from siri_rl.errors import DataError
    from siri_rl.reproduce import TABLE1_MD, parse_assignments, run_table1
    from siri_rl.results import EvalError

    settings = dict(benchmarks=benchmarks.split(","), n=n, temperature=temperature, top_p=top_p,
                    max_tokens=max_tokens, backend=backend, data_dir=data_dir, seed=seed, limit=limit,
                    batch_size=batch_size, tensor_parallel_size=tensor_parallel_size, dtype=dtype, device=device,
                    enforce_eager=enforce_eager, require_think_end=require_think_end, grade_workers=grade_workers,
                    grade_timeout=grade_timeout, data_parallel_size=data_parallel_size, progress=progress)

    def log(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        models, added = parse_assignments(model, "--model"), parse_assignments(add, "--add")
        row_list = [r.strip() for r in rows.split(",") if r.strip()] if rows else None
        if not dry_run:
            check_output_dir(out, "--out")
        result = run_table1(size, out, settings, rows=row_list, models=models, added=added, reference=reference,
                            dry_run=dry_run, log=log)
    except (EvalError, DataError) as err:
        fail(str(err))
        return
    if dry_run:
        log(str(result).rstrip("\n"))
        return
    log((out / TABLE1_MD).read_text().rstrip("\n"))
    log(f"wrote {out}/ (table1.md, table1.json, table1.png)")
