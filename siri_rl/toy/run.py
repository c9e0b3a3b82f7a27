"""The embedded default end to end: build (or reuse) the toy base model, run SIRI on TRL, evaluate the base and
every trough/peak checkpoint at one fixed cap on held-out problems with ``siri eval``'s code, and write the summary
table and the training-dynamics plot.

Run directory additions: ``RUN/summary.json``, ``RUN/summary.md``, ``RUN/dynamics.png``, and ``RUN/eval/``: the
held-out problems (``toy-heldout.jsonl``) and one ``siri eval`` results directory per model (``base``, then each
checkpoint's name), which ``siri compare --base RUN/eval/base RUN/eval/*`` reads. ``summary.json`` is
written last: a run whose ``summary.json`` counts all its rounds is complete, and ``--resume`` leaves it as it is.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from siri_rl.config import ExperimentConfig
from siri_rl.run_dir import METRICS_FILE, RunInterrupted, read_checkpoint_cards, read_metric_rows
from siri_rl.toy.cpu import AUTO

SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"
EVAL_SUBDIR = "eval"  # RUN/eval/<checkpoint>/: a `siri eval` results directory per model (resumable, for compare)
HELDOUT_FILE = "toy-heldout.jsonl"  # RUN/eval/toy-heldout.jsonl: the held-out problems, as a benchmark file
GROUP_FIELD = "difficulty"  # the problem field the per-difficulty columns break accuracy down by
EVAL_BATCH = 128  # rows per generate call
# Words that open a verification segment of the toy's traces ("wait, let me check:", "alternatively:").
CHECK_WORDS = ("wait", "alternatively")


# What a toy run's numbers do not depend on: its names, the thread count (a different floating-point order, like
# another seed), the two seeds the headline is measured over, and the in-training validation (which never touches
# training).
_NOT_MEASURED = {"name", "description", "hardware", "validation", "eval"}


def settings_key(cfg: ExperimentConfig) -> str:
    """A short hash of everything in ``cfg`` that decides a toy run's numbers except ``training.seed`` and
    ``toy.base.seed``: ``summary.json`` records it, and docs/benchmarks.md's seed table names the key it measured."""
    import hashlib

    d = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_MEASURED}
    d["training"] = {k: v for k, v in d["training"].items() if k != "seed"}
    d["toy"] = {k: v for k, v in d["toy"].items() if k != "torch_threads"}
    d["toy"]["base"] = {k: v for k, v in d["toy"]["base"].items() if k != "seed"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


# What runs of a toy config measured over seeds showed (docs/benchmarks.md "The toy over seeds"), by settings key:
# the line under the run's table, so that one run is read against the distribution it is drawn from.
TYPICAL = {
    "672539f9966e": "Over 10 runs (2 base models): SIRI-high 81-100% at 39-44 tokens, rising from cycle 1 in 9; a "
                    "constant L_max 66-67% or 90-100% at 57-92 tokens; the first trough varies by seed.",
}


def typical_line(cfg: ExperimentConfig) -> str:
    """One line on what to expect of this run's table: the measured spread for a measured config."""
    seen = TYPICAL.get(settings_key(cfg))
    return (f"Numbers vary by seed and machine. {seen} (docs/benchmarks.md)" if seen
            else "Numbers vary by seed and machine: compare several seeds (benchmarks/toy_seeds.py).")


def eval_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """``toy.eval`` with its cap resolved: held-out problems per difficulty, the fixed cap ``max_len`` (tokens,
    default L_max), temperature, seed and samples per problem ``n``."""
    ev = asdict(cfg.toy.eval)
    ev["max_len"] = ev["max_len"] or cfg.schedule.l_max
    return ev


def write_heldout_benchmark(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """The held-out problems (``toy.eval.per_difficulty`` of each difficulty, drawn by ``toy.eval.seed``) as a
    benchmark file ``RUN/eval/toy-heldout.jsonl`` for ``siri eval`` (rows ``id``, ``problem``, ``answer``,
    ``difficulty``), written atomically. The same problems as every earlier toy evaluation."""
    from siri_rl.toy import toy_spec
    from siri_rl.toy.task import balanced_problems

    ev, spec = cfg.toy.eval, toy_spec(cfg)
    problems = balanced_problems(ev.per_difficulty, seed=ev.seed, min_terms=spec.min_terms, max_terms=spec.max_terms,
                                 task=spec.task, functions=spec.functions, difficulties=spec.difficulties)
    path = run_dir / EVAL_SUBDIR / HELDOUT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, "".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    return path


def toy_validator(cfg: ExperimentConfig, run_dir: Path, base_dir: Path) -> Any:
    """The ``validation:`` of a toy run (None without one), with the benchmark name ``toy`` resolved to the toy's
    held-out problems (:func:`write_heldout_benchmark`, the problems of the final evaluation)."""
    from siri_rl.evaluate.validation import Validator

    if not cfg.validation.benchmarks:
        return None
    names = cfg.validation.benchmarks
    heldout = str(write_heldout_benchmark(cfg, run_dir)) if "toy" in names else None
    return Validator(cfg, run_dir, model=base_dir, benchmarks=[heldout if b == "toy" else b for b in names])


def evaluate_model(cfg: ExperimentConfig, model_dir: Path, out: Path, benchmark: Path) -> dict[str, Any]:
    """One model on the held-out problems with ``siri eval``'s code (:func:`siri_rl.evaluate.run_eval`, the
    transformers backend) at the fixed cap, into the results directory ``out`` (resumes there). Returns the toy
    table's row: ``accuracy`` (fraction), ``mean_length`` (response tokens, EOS not counted, as in ``siri eval``),
    ``wait_per_response`` (verification segments per response), ``truncated_frac``, ``by_difficulty``
    ({steps: accuracy}), ``n`` (samples), ``results_dir``."""
    from siri_rl.evaluate import SAMPLES_FILE, EvalConfig, read_samples, run_eval

    ev = eval_settings(cfg)
    summary = run_eval(EvalConfig(
        model=str(model_dir), out=out, benchmarks=[str(benchmark)], n=ev["n"], temperature=ev["temperature"],
        top_p=1.0, max_tokens=ev["max_len"], backend="transformers", seed=ev["seed"], batch_size=EVAL_BATCH,
        dtype="float32", device="cpu" if cfg.training.device == "cpu" else None, progress=False,
        group_by=[GROUP_FIELD]))
    bench = summary["benchmarks"][benchmark.stem]
    responses = [r["response"] for r in read_samples(out / SAMPLES_FILE)]
    checks = sum(sum(text.count(phrase) for phrase in CHECK_WORDS) for text in responses)
    return {
        "accuracy": bench["acc"] / 100,
        "mean_length": bench["length"],
        "wait_per_response": checks / max(1, len(responses)),
        "truncated_frac": bench["truncated"] / 100,
        "by_difficulty": {row["value"]: row["acc"] / 100 for row in bench["groups"][GROUP_FIELD]},
        "n": bench["n_samples"],
        "max_len": ev["max_len"],
        "temperature": ev["temperature"],
        "results_dir": str(out),
    }


def evaluate_run(cfg: ExperimentConfig, run_dir: Path, base_dir: Path, *, console: Console | None = None) -> list[dict]:
    """Evaluate the base model and every checkpoint under ``RUN/checkpoints`` (in round order), each into
    ``RUN/eval/<name>/`` (``base`` for the base model)."""

    ev = eval_settings(cfg)
    benchmark = write_heldout_benchmark(cfg, run_dir)
    entries: list[tuple[str, int | None, int | None, Path]] = [("base", None, None, base_dir)]
    for card in read_checkpoint_cards(run_dir):  # complete exports, in round order
        entries.append((card.path.name, card.step, card.max_len, card.path))
    n_problems = ev["per_difficulty"] * len({json.loads(line)[GROUP_FIELD] for line in benchmark.open()})
    results = []
    for name, step, max_len, path in entries:
        if console is not None:
            console.print(f"evaluating {name} on {n_problems} held-out problems at cap {ev['max_len']} ...",
                          highlight=False, soft_wrap=True)
        r = evaluate_model(cfg, path, run_dir / EVAL_SUBDIR / name, benchmark)
        results.append({"name": name, "step": step, "train_cap": max_len, **r})
    return results


def render_summary(results: list[dict], *, title: str) -> tuple[Table, str]:
    """A rich table and the same table as markdown."""
    diffs = sorted({int(k) for r in results for k in r["by_difficulty"]})
    base = results[0]
    head = ["checkpoint", "round", "L", "acc", "len", "Δlen", "checks", *[f"n={d}" for d in diffs]]
    legend = ("round: rollout round of the checkpoint, L: its training cap (tokens), acc: accuracy (%), len: mean "
              "response length (tokens), Δlen: mean length vs base, checks: verification segments per response, "
              "n=K: accuracy (%) on problems of K steps")
    table = Table(title=title, caption=legend)
    for h in head:
        table.add_column(h, justify="left" if h == "checkpoint" else "right", no_wrap=True)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        shorter = 1 - r["mean_length"] / base["mean_length"] if base["mean_length"] else 0.0
        cells = [
            r["name"], "-" if r["step"] is None else str(r["step"]), "-" if r["train_cap"] is None else str(r["train_cap"]),
            f"{100 * r['accuracy']:.1f}", f"{r['mean_length']:.1f}",
            "-" if r is base else _percent_change(-100 * shorter), f"{r['wait_per_response']:.2f}",
            *[f"{100 * r['by_difficulty'].get(str(d), r['by_difficulty'].get(d, 0.0)):.0f}" for d in diffs],
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", legend]  # summary.md and a non-terminal console get the legend the rich table has
    return table, "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _complete_summary(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any] | None:
    """The run's ``summary.json`` if it covers all ``training.rounds`` (an evaluated, finished run), else None."""
    path = run_dir / SUMMARY_JSON
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    done = isinstance(summary, dict) and summary.get("rounds") == cfg.training.rounds
    return summary if done and (run_dir / SUMMARY_MD).is_file() else None


def _percent_change(value: float) -> str:
    """``+12%`` / ``-40%``; a change that rounds to zero is ``0%`` (not ``-0%``)."""
    rounded = round(value)
    return f"{rounded:+d}%" if rounded else "0%"


def plan_text(cfg: ExperimentConfig, *, resume: bool = False) -> str:
    """What ``siri train`` on a toy config does and roughly how long each phase takes on an idle 2-core machine:
    the first lines it prints."""
    from siri_rl.adaptive import AdaptiveSchedule
    from siri_rl.toy import toy_spec
    from siri_rl.toy.cpu import expected_seconds, planned_checkpoints
    from siri_rl.toy.model import cache_root

    spec, t, s = toy_spec(cfg), cfg.training, cfg.schedule
    cached = (cache_root() / spec.key() / "toy_spec.json").is_file()
    est = expected_seconds(cfg, base_cached=cached)
    shape = (f"L = {s.l_max} tokens" if s.kind == "constant" else
             f"{s.kind} L {s.l_max} <-> {s.l_min} tokens, cycle {s.cycle} rounds" if s.l_min else s.kind)
    ev = eval_settings(cfg)
    named = planned_checkpoints(s, t.rounds)
    closed_loop = "up to " if isinstance(s, AdaptiveSchedule) else ""
    models = f"{closed_loop}{named} checkpoints (each trough and peak)" if named else "the final model"

    def minutes(sec: float) -> str:
        return f"~{sec / 60:.0f} min" if sec >= 90 else f"~{sec:.0f} s"

    base = "cached" if cached else f"{minutes(est['base'])}, first run only"
    verb = "continues" if resume else "runs"
    return (f"{cfg.name}: {verb} {t.rounds} rounds of RL ({shape}; {t.prompts_per_round} problems x "
            f"{t.group_size} samples a round) on a tiny base model of the toy task, then evaluates the base model and "
            f"{models} on {ev['per_difficulty'] * len(spec.levels)} held-out problems at cap "
            f"{ev['max_len']}.\nOn an idle 2-core CPU: base model {base}; RL {minutes(est['rl'])}; evaluation "
            f"{minutes(est['eval'])}. A busy machine takes longer; accuracy varies by seed and machine "
            f"(docs/benchmarks.md).")


def run_toy(
    cfg: ExperimentConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    stop_after_rounds: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """``siri train`` on a toy config: base model (cached), SIRI on TRL, fixed-cap evaluation, summary + plot.

    The engine's cheap checks (:func:`siri_rl.engines.trl.train.plan_run`) run before the base model is built or
    loaded. ``resume`` of a finished and evaluated run changes nothing and prints its summary; of a finished run
    without a summary (a kill during the evaluation) it evaluates and writes the summary."""
    from siri_rl.engines.trl import train
    from siri_rl.engines.trl.train import plan_run
    from siri_rl.toy import is_toy_data, toy_model_path, toy_spec, toy_train_rows

    console = console or Console()
    run_dir = Path(output_dir)
    t0 = time.time()
    toy_spec(cfg)  # toy.base is checked before anything runs
    plan = plan_run(cfg, run_dir, resume=resume)
    if resume and plan.finished(cfg) and (done := _complete_summary(cfg, run_dir)) is not None:
        console.print((run_dir / SUMMARY_MD).read_text(), highlight=False, markup=False, soft_wrap=True)
        console.print(f"{run_dir} is complete ({cfg.training.rounds} rounds, evaluated); --resume changed nothing",
                      highlight=False, markup=False, soft_wrap=True)
        return {"run_dir": str(run_dir), "finished": True, **done}
    import torch
    from transformers.utils import logging as hf_logging

    from siri_rl.toy.cpu import set_threads

    # The toy loads and saves a tiny model a dozen times: transformers' per-file bars would bury the round bar.
    hf_logging.disable_progress_bar()
    console.print(plan_text(cfg, resume=resume), highlight=False, soft_wrap=True)
    console.print(f"[bold]toy base model[/] (built once, then cached), {set_threads(cfg.toy.torch_threads)} ...",
                  highlight=False)
    try:
        base_dir = toy_model_path(cfg)
    except KeyboardInterrupt:
        raise RunInterrupted("interrupted while building the toy base model (nothing cached, no run written); run "
                             "the same command again") from None
    t_base = time.time() - t0
    console.print(f"base model: {base_dir} ({t_base:.0f} s)", highlight=False, markup=False, soft_wrap=True)
    if cfg.toy.torch_threads == AUTO:  # the machine may have got busier (or quieter) during the build
        console.print(f"RL: {set_threads(AUTO)}", highlight=False)
    # The toy sits above the engine: it resolves its names ("toy") to a model directory and problems first.
    out = train(cfg, output_dir=run_dir, resume=resume, stop_after_rounds=stop_after_rounds, progress=True,
                model_path=base_dir, train_rows=toy_train_rows(cfg) if is_toy_data(cfg) else None,
                validator=toy_validator(cfg, run_dir, base_dir))
    t_train = time.time() - t0 - t_base
    rows = read_metric_rows(run_dir / METRICS_FILE)
    plot = out.dynamics_png  # written by the engine at the end of training
    try:
        results = evaluate_run(cfg, run_dir, base_dir, console=console)
    except KeyboardInterrupt:
        left = ("training is complete: it only evaluates" if len(rows) >= cfg.training.rounds
                else "it trains the remaining rounds, then evaluates")
        raise RunInterrupted(f"interrupted during the toy's evaluation; continue with --resume ({left})") from None
    wall = time.time() - t0
    ev = eval_settings(cfg)
    table, markdown = render_summary(
        results, title=f"{cfg.name}: held-out accuracy / mean length at fixed cap {ev['max_len']} "
                       f"(T={ev['temperature']}, {results[0]['n']} problems)")
    # A narrow or non-terminal console would truncate the wide table: print the markdown version there.
    if console.is_terminal and console.width >= 120:
        console.print(table)
    else:
        console.print(markdown, highlight=False, markup=False, soft_wrap=True)
    typical = typical_line(cfg)
    console.print(typical, highlight=False, markup=False, soft_wrap=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "config": cfg.name,
        "settings_key": settings_key(cfg),
        "training_seed": cfg.training.seed,
        "base_seed": toy_spec(cfg).seed,
        "torch_threads": torch.get_num_threads(),
        "rounds": len(rows),
        "tokens_generated": rows[-1]["tokens_generated"] if rows else 0,
        "wall_s": round(wall, 1),
        "base_build_s": round(t_base, 1),
        "train_s": round(t_train, 1),
        "eval_s": round(wall - t_base - t_train, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "eval": ev,
        "results": results,
    }
    _write_atomic(run_dir / SUMMARY_MD,
                  f"# {cfg.name}\n\n{markdown}\n\n{typical}\n\nrounds {len(rows)}, tokens generated {summary['tokens_generated']}, "
                  f"wall {wall:.0f} s (base model {t_base:.0f} s, RL {t_train:.0f} s), peak RSS {peak_mb:.0f} MB\n")
    _write_atomic(run_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")  # last: marks the run complete
    console.print(f"wall {wall:.0f} s (base {t_base:.0f} s, RL {t_train:.0f} s, eval {summary['eval_s']:.0f} s); "
                  f"{summary['tokens_generated']} tokens generated; peak RSS {peak_mb:.0f} MB", highlight=False, soft_wrap=True)
    console.print(f"wrote {run_dir / SUMMARY_MD}, {plot}", highlight=False, markup=False, soft_wrap=True)
    return {**out.to_dict(), **summary}
