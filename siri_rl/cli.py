"""The ``siri`` command line: thin wrappers over the library (each command parses options and calls one module)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    help="SIRI: iterative RL with interleaved length compression for reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """SIRI: iterative RL with interleaved length compression for reasoning models."""


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2 (bad input), without a traceback.

    The message is plain text, never rich markup (``pip install 'siri-rl[vllm]'`` would lose ``[vllm]``), and is
    not wrapped: rich wraps at 80 columns when the output is a file or a pipe, which splits the line in a job log.
    """
    line = Text("error:", style="bold red")
    line.append(" " + " ".join(str(message).splitlines()))
    console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


# OS errors of a path that cannot be written (read-only filesystem, no permission, a file or folder in the way, disk
# full): one line from main() wherever they happen.
_WRITE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
                 errno.EDQUOT}


def check_output_dir(path: Path, option: str, *, shown: Path | None = None) -> None:
    """Fail now, before anything is loaded, if ``path`` cannot be (or become) a directory this command writes into:
    it or a parent is a regular file, or the nearest existing parent does not take new entries (a read-only
    filesystem, no permission). Creates nothing: a probe directory is made in that parent and removed at once.
    ``shown``: the path named in the message (default ``path``)."""
    shown = path if shown is None else shown
    target = Path(path).expanduser().absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        fail(f"{option} {shown}: {existing} is a file, not a directory; pick another path")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".siri-write-check-").cleanup()
    except OSError as err:
        fail(f"{option} {shown}: cannot write in {existing} ({err.strerror}); pick a writable directory")


def check_output_file(path: Path, option: str) -> None:
    """:func:`check_output_dir` for the folder of a file to be written; the file itself must not be a folder."""
    if Path(path).is_dir():
        fail(f"{option} {path} is a directory; give a file name such as {Path(path) / 'schedule.png'}")
    check_output_dir(Path(path).expanduser().absolute().parent, option, shown=path)


def _parse_stages(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(a), int(b)) for a, b in (part.split(":") for part in text.split(",") if part.strip())]
    except ValueError:
        fail(f"--stages must look like '0:8192,320:16384' (start_step:L,...), got {text!r}")
        raise  # unreachable


# `siri schedule` evaluates every round it shows (the checkpoint marks scan each cycle): 10^5 rounds take ~2 s,
# 10^8 took minutes, far more than anyone reads.
MAX_SCHEDULE_STEPS = 100_000


@app.command()
def schedule(
    kind: str = typer.Option("cosine", help="constant | stair | cosine | stair-cosine | stages | all"),
    l_max: int = typer.Option(16384, "--l-max", help="largest cap (tokens)"),
    l_min: int | None = typer.Option(8192, "--l-min", help="smallest cap (tokens)"),
    cycle: int | None = typer.Option(640, help="cycle length T (rollout rounds)"),
    steps: int = typer.Option(1920, help="number of rollout rounds to show"),
    stages: str | None = typer.Option(None, help="for kind=stages: '0:8192,320:16384'"),
    round_to: int | None = typer.Option(None, "--round-to", help="round caps to a multiple of this"),
    every: int | None = typer.Option(None, help="table: show every N-th round (default: ~40 rows)"),
    as_json: bool = typer.Option(False, "--json", help="print all rounds as JSON"),
    plot: Path | None = typer.Option(None, help="write the curve(s) to this PNG"),
) -> None:
    """Print (and plot) the rollout length cap L per rollout round."""
    from siri_rl.schedule import CYCLIC_KINDS, ScheduleError, make_schedule

    if not 1 <= steps <= MAX_SCHEDULE_STEPS:
        fail(f"--steps {steps}: show between 1 and {MAX_SCHEDULE_STEPS} rollout rounds (the paper's runs have 1920; "
             "the cap of any round is make_schedule(...)(round) in Python)")
    if plot is not None:
        check_output_file(plot, "--plot")
    kinds = list(CYCLIC_KINDS) if kind == "all" else [kind]
    try:
        built = {
            k: make_schedule(
                k,
                l_max=l_max,
                l_min=l_min,
                cycle=cycle,
                stages=_parse_stages(stages) if stages else None,
                round_to=round_to,
            )
            for k in kinds
        }
    except ScheduleError as err:
        fail(str(err))
        return
    if plot is not None:
        from siri_rl.plots import plot_schedule

        path = plot_schedule(built, steps, plot)
        if not as_json:
            console.print(f"wrote {path}", markup=False, highlight=False)
    if as_json:
        rows = []
        for k, sched in built.items():
            marks = {s: n for s, n in sched.checkpoints(steps)}
            for row in sched.table(steps):
                row = {**row, "kind": k} if len(built) > 1 else row
                if row["step"] in marks:
                    row["checkpoint"] = marks[row["step"]]
                rows.append(row)
        typer.echo(json.dumps(rows))
        return
    for k, sched in built.items():
        marks = dict(sched.checkpoints(steps))
        stride = every or max(1, steps // 40)
        shown = sorted(set(range(0, steps, stride)) | set(marks) | {steps - 1})
        table = Table(title=f"{k}: L_max={sched.l_max} L_min={sched.l_min} T={sched.cycle} ({steps} rounds)")
        for column in ("step", "max_len", "phase", "checkpoint"):
            table.add_column(column, justify="right" if column in ("step", "max_len") else "left")
        for t in shown:
            table.add_row(str(t), str(sched(t)), sched.phase(t), marks.get(t, ""))
        console.print(table)


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
    benchmarks: str = typer.Option("aime24,aime25,amc,math500", help="comma-separated benchmark names or files"),
    n: int = typer.Option(64, help="samples per problem (paper: 64)"),
    temperature: float = typer.Option(0.6, help="sampling temperature (paper: 0.6)"),
    top_p: float = typer.Option(0.95, "--top-p", help="nucleus sampling (paper: 0.95)"),
    max_tokens: int = typer.Option(16384, "--max-tokens", help="max new tokens per response (paper: 16384)"),
    backend: str = typer.Option("vllm", help="vllm (GPU) | transformers (CPU / small models)"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="local benchmark files (default $SIRI_DATA_DIR, then hub)"),
    seed: int = typer.Option(0, help="sampling seed"),
    limit: int | None = typer.Option(None, help="only the first K problems of each benchmark (smoke runs)"),
    budgets: str | None = typer.Option(None, help="token budgets for the accuracy-vs-budget curve (default 2048,4096,...)"),
    batch_size: int = typer.Option(64, "--batch-size", help="transformers: rows per generate call; vllm: problems per call"),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "--tp", help="vllm: GPUs per model"),
    dtype: str = typer.Option("auto", help="auto | bfloat16 | float16 | float32"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vllm: no torch.compile / CUDA graphs "
                                       "(starts faster, decodes slower; vLLM's own option)"),
    require_think_end: bool = typer.Option(
        True, "--require-think-end/--no-require-think-end", help="grade only a \\boxed{} after </think>"
    ),
    grade_workers: int | None = typer.Option(None, "--grade-workers", help="math-verify processes (default: CPUs)"),
    grade_timeout: float = typer.Option(5.0, "--grade-timeout", help="seconds per answer"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
    group_by: str | None = typer.Option(None, "--group-by", help="comma-separated problem fields to break accuracy "
                                        "and length down by (MATH500's level is always shown)"),
    data_parallel_size: int = typer.Option(1, "--data-parallel-size", "--dp", help="vllm: engines, each on its own "
                                           "--tp GPUs, problems split between them"),
    report_only: Path | None = typer.Option(None, "--report-only", help="recompute the summaries of this results "
                                            "directory from its samples.jsonl (no model, no generation)"),
) -> None:
    """Sample a model on the math benchmarks, grade, and write samples/summary/budget curve (paper §5.1)."""
    from siri_rl.data import DataError
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
    check_output_dir(out, "--out")
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
    check_output_dir(out, "--out")
    try:
        run_compare(base, results, out, compact=compact, pairs=pairs)
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

    check_output_dir(out, "--out")
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

    check_output_dir(analysis_dir(run_dir, out), "--out" if out else "RUN_DIR/analysis")
    try:
        written = run_analysis(run_dir, out)
    except EvalError as err:
        fail(str(err))
        return
    console.print(written[-1].read_text(), highlight=False, markup=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in written), markup=False, highlight=False)


def _config_path(name: str) -> Path:
    """A config file path, or the name of a shipped config (``toy``, ``r1-distill-1.5b-siri-cosine640``): the
    shipped configs are package data in ``siri_rl/configs`` (``configs/`` in a checkout links there)."""
    path = Path(name)
    if path.exists():
        return path
    from importlib.resources import files

    shipped = files("siri_rl") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return Path(str(shipped))
    available = sorted(p.name.removesuffix(".yaml") for p in (files("siri_rl") / "configs").iterdir()
                       if p.name.endswith(".yaml"))
    fail(f"config {name!r} is neither a file nor a shipped config ({', '.join(available)})")
    raise AssertionError  # unreachable


def _train_config(config: str | None, overrides: list[str], engine: str | None, output_dir: Path | None,
                  resume: bool):
    """The config ``siri train`` runs: ``-c`` (default ``toy``) with the overrides; on ``--resume`` the run's stored
    ``config.yaml``, which ``-c`` and the overrides may only repeat, or extend with ``training.rounds=N``."""
    from siri_rl.config import ConfigError, apply_overrides, config_from_dict, load_config, parse_overrides
    from siri_rl.engines import ENGINES
    from siri_rl.run_dir import CONFIG_FILE, check_output_dir, check_resume_config, read_run_config

    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if not resume:
        cfg = load_config(_config_path(config or "toy"), overrides)
        cfg.engine = engine or cfg.engine
        return cfg
    if output_dir is None:
        raise ConfigError("--resume needs --output-dir/-o: the run directory to continue")
    check_output_dir(output_dir)
    stored = read_run_config(output_dir)
    if stored is None:
        raise ConfigError(f"--resume: {output_dir} holds no run to resume (no {CONFIG_FILE}); start without --resume")
    if config is None:
        cfg = config_from_dict(apply_overrides(stored.to_dict(), overrides), source=stored.source)
    else:
        cfg = load_config(_config_path(config), overrides)
    cfg.engine = engine or cfg.engine
    # Extending is explicit: training.rounds given on this command line, not a -c file edited since.
    keys = {item.partition("=")[0] for item in parse_overrides(overrides)}
    check_resume_config(output_dir, cfg, extend_ok="training.rounds" in keys)
    return cfg


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: str | None = typer.Option(None, "--config", "-c", help="YAML file or shipped config name (default: the "
                                      "CPU toy; with --resume: the run's config.yaml)"),
    engine: str | None = typer.Option(None, help="trl | verl (default: the config's engine)"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="run directory (default runs/<name>-<time>)"),
    resume: bool = typer.Option(False, help="continue the run in --output-dir from its last checkpoint, with its "
                                "stored config (add training.rounds=N to extend it)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and first caps; load nothing"),
    stop_after: int | None = typer.Option(None, "--stop-after", help="stop after this many rounds (resumable)"),
) -> None:
    """Run SIRI training (TRL GRPOTrainer or veRL). Overrides: key=value or --key value (e.g. schedule.cycle=320).

    With no arguments: the embedded CPU toy (configs/toy.yaml), ending with a summary table and dynamics plot."""
    import time as _time

    import yaml

    from siri_rl.config import ConfigError
    from siri_rl.data import DataError
    from siri_rl.engines import EngineError
    from siri_rl.run_dir import CONFIG_FILE, RunInterrupted

    run_dir = output_dir
    try:
        cfg = _train_config(config, ctx.args, engine, output_dir, resume)
        if output_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dry_run:
            raise ConfigError("pass --output-dir on multi-process runs (each process would pick its own timestamped "
                              "default directory)")
        run_dir = output_dir or Path("runs") / f"{cfg.name}-{_time.strftime('%Y%m%d-%H%M%S')}"
        from siri_rl.toy import is_toy_data, is_toy_model

        if dry_run:
            from siri_rl.engines import train as run_engine

            info = run_engine(cfg, output_dir=run_dir, dry_run=True)
            console.print(yaml.safe_dump(info, sort_keys=False), highlight=False, markup=False, soft_wrap=True)
            return
        _check_train_inputs(cfg, run_dir, resume=resume)
        if is_toy_model(cfg) and cfg.engine == "trl":
            from siri_rl.toy.run import run_toy

            run_toy(cfg, run_dir, resume=resume, stop_after_rounds=stop_after, console=console)
        else:
            from siri_rl.engines import train as run_engine

            extra: dict = {"stop_after_rounds": stop_after} if stop_after is not None else {}
            if is_toy_data(cfg) and cfg.engine == "trl":
                from siri_rl.toy import toy_train_rows

                extra["train_rows"] = toy_train_rows(cfg)  # the toy's generated problems with another model
            out = run_engine(cfg, output_dir=run_dir, resume=resume, **extra)
            console.print(_train_summary(out, cfg.training.rounds), highlight=False, markup=False, soft_wrap=True)
    except (ConfigError, DataError, EngineError) as err:
        fail(str(err))
    except KeyboardInterrupt as err:
        # One line on the main process (every process of a launcher gets the Ctrl-C); 130 = killed by SIGINT.
        if int(os.environ.get("RANK", "0")) == 0:
            if isinstance(err, RunInterrupted):
                line = str(err)
            elif run_dir is not None and (run_dir / CONFIG_FILE).exists():
                line = "interrupted; continue with --resume"
            else:
                line = "interrupted before the run started; run the same command again"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None


def _check_train_inputs(cfg, run_dir: Path, *, resume: bool) -> None:
    """What a run needs, checked before anything is written or loaded (a big model loads for minutes): the run
    directory can be written, a local model directory exists (or the hub answers), and every training row has a
    problem and an answer, so that a bad row leaves no half run directory behind. The engine reads the rows again
    (a local file costs little; a hub dataset comes from the datasets cache the second time)."""
    from siri_rl.data import check_model_source, load_problems
    from siri_rl.toy import is_toy_data, is_toy_model

    check_output_dir(run_dir, "--output-dir")
    if not is_toy_model(cfg):
        check_model_source(cfg.model.name_or_path, option="model.name_or_path")
    if not resume and not is_toy_data(cfg):  # a resumed run's directory exists already
        d = cfg.data
        load_problems(d.train, split=d.split, problem_field=d.problem_field, answer_field=d.answer_field,
                      skip_invalid=d.skip_invalid)


def _train_summary(out, total_rounds: int) -> str:
    """The closing lines of a non-toy ``siri train`` (from the engine's TrainResult): rounds, tokens, where things
    are."""
    rounds = out.rounds_done
    if rounds < total_rounds:
        head, facts = f"stopped after {rounds} of {total_rounds} rounds (continue with --resume)", []
    else:
        head, facts = "training done", [f"{rounds} round{'s' if rounds != 1 else ''}"]
    if out.tokens_generated:
        facts.append(f"{out.tokens_generated:,} tokens generated")
    if out.wall_s is not None:
        facts.append(f"{out.wall_s:.0f} s")
    lines = [head + (": " + ", ".join(facts) if facts else ""), f"run directory: {out.run_dir}"]
    if out.checkpoints:
        lines.append("checkpoints: " + ", ".join(out.checkpoints))
    if out.dynamics_png:
        lines.append(f"dynamics plot: {out.dynamics_png}")
    return "\n".join(lines)


toy_app = typer.Typer(help="The embedded toy task and its base model.", no_args_is_help=True)
app.add_typer(toy_app, name="toy")


@toy_app.command("build")
def toy_build(
    config: str = typer.Option("toy", "--config", "-c", help="toy config whose toy.base spec to build"),
    force: bool = typer.Option(True, "--force/--no-force", help="rebuild even if cached"),
) -> None:
    """Build (or rebuild) the toy base model by supervised training on overthinking traces, into the cache."""
    from siri_rl.config import ConfigError, load_config
    from siri_rl.toy import toy_model_path

    try:
        cfg = load_config(_config_path(config))
        console.print(f"toy base model: {toy_model_path(cfg, force=force)}", markup=False, highlight=False)
    except ConfigError as err:
        fail(str(err))


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="run directory of `siri train --engine verl`"),
    name: list[str] | None = typer.Option(None, "--name", help="only this checkpoint (repeatable), e.g. cycle1-compressed"),
    backend: str = typer.Option("fsdp", help="veRL checkpoint backend: fsdp | megatron"),
    overwrite: bool = typer.Option(False, help="merge again over existing exports"),
) -> None:
    """Merge a veRL run's trough/peak checkpoints into Hugging Face models under RUN/checkpoints/<name>/."""
    try:
        from siri_rl.engines import EngineError
        from siri_rl.engines.verl.merge import export_checkpoints

        merged = export_checkpoints(run_dir, names=name or None, backend=backend, overwrite=overwrite)
    except (FileNotFoundError, ValueError, ImportError, EngineError) as err:
        fail(str(err))
        return
    if not merged:
        fail(f"no veRL checkpoints of trough/peak rounds found under {run_dir} yet")
    for ckpt, path in merged.items():
        console.print(f"{ckpt}: {path}", highlight=False, markup=False)


def main() -> None:
    """The ``siri`` entry point. A path that cannot be written, found only while writing (the disk fills up, a
    folder where a file goes), is one error line too; other OS errors keep their traceback."""
    try:
        app()
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS or not err.filename:
            raise
        try:
            fail(f"{err.filename}: {err.strerror}")
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None


if __name__ == "__main__":
    main()
