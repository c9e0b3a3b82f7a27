"""``siri train`` (either engine, or the embedded toy), ``siri toy build`` and ``siri export`` (veRL checkpoints to
Hugging Face models). The toy's names (``toy``) are resolved here and in :mod:`siri_rl.toy`, never in an engine."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from siri_rl.cli._app import app, check_output_dir, console, err_console, fail


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
        return _resolve_toy_for_engine(engine, load_config(_config_path(config or "toy"), overrides))
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
    # Extending is explicit: training.rounds given on this command line, not a -c file edited since.
    keys = {item.partition("=")[0] for item in parse_overrides(overrides)}
    check_resume_config(output_dir, _resolve_toy_for_engine(engine, cfg, check_model=False),
                        extend_ok="training.rounds" in keys)
    return _resolve_toy_for_engine(engine, cfg)


def _resolve_toy_for_engine(engine: str | None, cfg, *, check_model: bool = True):
    """``cfg`` on ``--engine`` (default its own), with the toy's names resolved where the engine reads them itself:
    veRL reads ``data.train`` from disk, so ``toy`` becomes the toy's problems as a JSONL file (the stored
    ``config.yaml`` names that file). The toy base model runs on TRL only: veRL loads tokenizers with
    ``AutoTokenizer.from_pretrained`` (verl/utils/tokenizer/tokenizer.py:176), which rebuilds the toy's word-level
    tokenizer as the model type's own (see :func:`siri_rl.toy.tokenizer.load_tokenizer`); ``check_model=False``
    leaves that error to a later call (``--resume`` first names what differs from the stored run)."""
    from siri_rl.config import ConfigError
    from siri_rl.toy import is_toy_data, is_toy_model, with_toy_train_file

    cfg.engine = engine or cfg.engine
    if cfg.engine != "verl":
        return cfg  # TRL: the toy passes its model directory and rows to the engine (siri_rl.toy.run)
    if is_toy_model(cfg) and check_model:
        raise ConfigError("model.name_or_path: toy (the toy base model) runs on --engine trl only: veRL would load "
                          "its word-level tokenizer as the model type's own and lose its whitespace tokens; use "
                          "--engine trl, or a real model with data.train: toy")
    return with_toy_train_file(cfg) if is_toy_data(cfg) else cfg


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: str | None = typer.Option(None, "--config", "-c", help="YAML file or shipped config name (default: the "
                                      "CPU toy; with --resume: the run's config.yaml)"),
    engine: str | None = typer.Option(None, help="trl | verl (default: the config's engine)"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="run directory (default runs/<name>-<time>)"),
    resume: bool = typer.Option(False, help="continue the run in --output-dir from its last checkpoint, with its "
                                "stored config (add training.rounds=N to extend it)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and first caps (adaptive: "
                                 "that the schedule is closed-loop); load nothing"),
    stop_after: int | None = typer.Option(None, "--stop-after", help="stop after this many rounds (resumable)"),
) -> None:
    """Run SIRI training (TRL GRPOTrainer or veRL). Overrides: key=value or --key value (e.g. schedule.cycle=320).

    With no arguments: the embedded CPU toy (configs/toy.yaml), ending with a summary table and dynamics plot."""
    import time as _time

    import yaml

    from siri_rl.config import ConfigError
    from siri_rl.engines import EngineError, NoLearningStop
    from siri_rl.errors import DataError
    from siri_rl.run_dir import CONFIG_FILE, RunInterrupted

    run_dir = output_dir
    if stop_after is not None and stop_after < 1:
        fail(f"--stop-after must be a positive number of rounds, got {stop_after}; leave it out to train every round")
    try:
        cfg = _train_config(config, ctx.args, engine, output_dir, resume)
        if output_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dry_run:
            raise ConfigError("pass --output-dir on multi-process runs (each process would pick its own timestamped "
                              "default directory)")
        run_dir = output_dir or Path("runs") / f"{cfg.name}-{_time.strftime('%Y%m%d-%H%M%S')}"
        from siri_rl.toy import is_toy_data, is_toy_model

        if dry_run:
            from siri_rl.engines import train as run_engine

            if is_toy_model(cfg):
                from siri_rl.toy import toy_spec

                toy_spec(cfg)  # the base model's spec is checked, not built: a bad toy.base fails here too

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
            if cfg.validation.benchmarks and cfg.engine == "trl":  # veRL validates through its own trainer
                from siri_rl.evaluate.validation import Validator

                extra["validator"] = Validator(cfg, run_dir)
            out = run_engine(cfg, output_dir=run_dir, resume=resume, **extra)
            console.print(_train_summary(out, cfg.training.rounds), highlight=False, markup=False, soft_wrap=True)
    except NoLearningStop as err:
        # training.guard: stop (siri_rl.guard): the input was fine, the run starved; 3 tells a job script so.
        if int(os.environ.get("RANK", "0")) == 0:
            err_console.print(f"stopped: {err}", highlight=False, markup=False, soft_wrap=True)  # not a result
        raise typer.Exit(3) from None
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
    from siri_rl.data import load_problems
    from siri_rl.models import check_model_source
    from siri_rl.toy import is_toy_data, is_toy_model

    check_output_dir(run_dir, "--output-dir", command="siri train")
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
