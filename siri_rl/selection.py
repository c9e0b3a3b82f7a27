"""`siri select`: evaluate every exported checkpoint of a run with ``siri eval``'s code and pick on the
accuracy/length Pareto front, beside the paper's own picks (SIRI-low / SIRI-high, §5.2).

The paper reports the checkpoint at the end of the last compression (SIRI-low, ``cycleK-compressed``) and at the
end of the last expansion (SIRI-high, ``cycleK-expanded``): where the cycle happens to end, not where the trade-off
is best. This module evaluates them all, with any other export (``final``, periodic ones), and names those no
other checkpoint beats on both accuracy and length.

::

    DIR/<checkpoint>/   one ``siri eval`` results directory per exported checkpoint (resumable; a finished one
                        is not opened again)
    DIR/base/           the ``--base`` model's results, when --base names a model rather than a results directory
    DIR/selection.md    one row per checkpoint: round, its training cap L, accuracy with its 95% interval, mean
                        length, ΔAcc/CR against the base, front membership and the paper's picks
    DIR/pareto.json     the front (its checkpoints with their numbers), the SIRI-low / SIRI-high picks, all rows
    DIR/pareto.png      accuracy against length, the front as a step line, the picks annotated
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siri_rl.compare import DASH, FRONT_MARK, average_intervals, benchmark_order, mark_pareto, plot_pareto
from siri_rl.results import (
    ARGS_FILE,
    SUMMARY_JSON,
    SUMMARY_MD,
    EvalError,
    Result,
    load_result,
    replace_atomically,
)
from siri_rl.run_dir import CHECKPOINT_CARD, CHECKPOINTS, CheckpointCard, read_checkpoint_cards

SELECTION_MD = "selection.md"
PARETO_JSON = "pareto.json"
PARETO_PNG = "pareto.png"
BASE_SUBDIR = "base"  # DIR/base/: the --base model's results when --base is a model
# The paper's picks (§5.2): the last trough and the last peak of the schedule, by their export names.
PICKS = {"SIRI-low": "compressed", "SIRI-high": "expanded"}
_CYCLE_NAME = re.compile(r"^cycle(\d+)-(compressed|expanded)$")


def paper_picks(names: list[str]) -> dict[str, str | None]:
    """``{"SIRI-low": the cycleK-compressed of the largest K, "SIRI-high": the cycleK-expanded of the largest K}``
    among ``names`` (None where the run has no such export)."""
    picks: dict[str, str | None] = {}
    for pick, kind in PICKS.items():
        cycles = [(int(m.group(1)), n) for n in names if (m := _CYCLE_NAME.match(n)) and m.group(2) == kind]
        picks[pick] = max(cycles)[1] if cycles else None
    return picks


def is_evaluated(cfg: Any) -> bool:
    """Whether ``cfg.out`` holds a finished ``siri eval`` of exactly ``cfg``'s arguments: its eval_args.json equals
    ``cfg.identity()`` and the summaries are written (they are written after the last sample). Reads two small
    files; loads no model or tokenizer and leaves samples.jsonl untouched."""
    out = Path(cfg.out)
    try:
        args = json.loads((out / ARGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return args == cfg.identity() and (out / SUMMARY_JSON).is_file() and (out / SUMMARY_MD).is_file()


def _checkpoints(run_dir: Path) -> list[CheckpointCard]:
    if not run_dir.is_dir():
        raise EvalError(f"RUN_DIR {run_dir} is not a directory; pass the --output-dir of a `siri train` run")
    try:
        cards = read_checkpoint_cards(run_dir)
    except ValueError as err:  # a broken card (ConfigError): siri select's errors are EvalErrors
        raise EvalError(str(err)) from None
    if not cards:
        raise EvalError(f"{run_dir} has no exported checkpoints ({CHECKPOINTS}/<name>/{CHECKPOINT_CARD}); a "
                        f"veRL run needs `siri export {run_dir}` first, a TRL run writes them while it trains")
    return cards


def _base_source(base: str | Path) -> tuple[str, Path | None]:
    """``("result", dir)`` for a results directory, ``("model", None)`` for a model folder or hub id."""
    path = Path(base)
    if (path / SUMMARY_JSON).is_file() or path.name == SUMMARY_JSON:
        return "result", path
    if path.is_dir() or (not path.exists() and str(base).count("/") == 1 and not str(base).startswith((".", "/"))):
        return "model", None
    raise EvalError(f"--base {base}: neither a results directory (no {SUMMARY_JSON}) nor a model folder; pass "
                    "one, or a hub id like org/name")


def evaluate_checkpoints(
    run_dir: str | Path,
    out: str | Path,
    settings: dict[str, Any],
    *,
    base: str | Path | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[list[tuple[CheckpointCard, Result]], Result | None]:
    """Evaluate every exported checkpoint of ``run_dir`` into ``out/<name>/`` with :func:`siri_rl.evaluate.run_eval`
    (``settings``: the :class:`~siri_rl.evaluate.EvalConfig` fields but ``model`` and ``out``), skipping those
    already evaluated with the same arguments (:func:`is_evaluated`); the base too when ``base`` is a model.
    Returns the checkpoints in round order with their results, and the base's result (None without ``base``)."""
    from siri_rl.evaluate import EvalConfig, run_eval

    run_dir, out = Path(run_dir), Path(out)
    cards = _checkpoints(run_dir)
    base_kind, base_dir = _base_source(base) if base is not None else (None, None)
    # Every input is checked before the first model loads: the settings, the base (its summary, or that the model
    # can be found), then each checkpoint is evaluated.
    EvalConfig(model="-", out=out, **settings)
    base_result = load_result(base_dir) if base_kind == "result" else None
    if base_kind == "model":
        from siri_rl.data import check_model_source

        check_model_source(str(base), option="--base")
    jobs = [(card.path.name, str(card.path.resolve()), f"round {card.step}, L {card.max_len}") for card in cards]
    if base_kind == "model":
        jobs.insert(0, (BASE_SUBDIR, str(base), "base model"))
    for name, model, what in jobs:
        cfg = EvalConfig(model=model, out=out / name, **settings)
        if is_evaluated(cfg):
            log(f"{name}: evaluated already ({out / name})")
            continue
        log(f"evaluating {name} ({what}) into {out / name} ...")
        run_eval(cfg)
    results = [(card, load_result(out / card.path.name, name=card.path.name)) for card in cards]
    if base_kind == "model":
        base_result = load_result(out / BASE_SUBDIR, name=BASE_SUBDIR)
    return results, base_result


def selection_rows(results: list[tuple[CheckpointCard, Result]], base: Result | None = None) -> dict[str, Any]:
    """The selection: one row per checkpoint (``name``, ``step`` (round), ``max_len`` (its training cap L, tokens),
    ``phase``, ``avg_acc`` (pass@1, %) and ``avg_length`` (tokens) averaged over the benchmarks, with their 95%
    intervals, ``delta_acc_cr`` against ``base`` (§5.2; None without one), ``pareto``, ``pick``), the front
    (non-dominated checkpoints, by length; the base is not a candidate) and the paper's picks.

    Returns ``{"benchmarks", "base", "base_row", "rows", "front": [row, ...], "picks": {"SIRI-low": {"name",
    "pareto", "dominated_by"} | None, "SIRI-high": ...}}``."""
    from siri_rl.metrics import delta_acc_cr

    # the checkpoints' benchmarks: the base row is averaged over the same ones (a base evaluated on more is fine)
    names = benchmark_order([r for _, r in results])
    picks = paper_picks([card.path.name for card, _ in results])
    pick_of = {name: pick for pick, name in picks.items() if name}

    def row(r: Result) -> dict[str, Any]:
        acc, length = r.average_of(names)
        acc_ci, len_ci = average_intervals(r, names)
        return {"name": r.name, "path": str(r.path), "avg_acc": acc, "avg_acc_ci": acc_ci, "avg_length": length,
                "avg_length_ci": len_ci}

    rows = []
    for card, r in results:
        dac = None
        if base is not None:
            try:
                dac = delta_acc_cr(base.benchmarks, r.benchmarks)
            except ValueError:  # no shared benchmark, or a base accuracy of 0: undefined
                dac = None
        rows.append({**row(r), "step": card.step, "max_len": card.max_len, "phase": card.phase,
                     "delta_acc_cr": dac, "pick": pick_of.get(card.path.name)})
    front = [rows[i] for i in mark_pareto(rows)]
    out_picks: dict[str, Any] = {}
    for pick, name in picks.items():
        r = next((x for x in rows if x["name"] == name), None)
        if r is None:
            out_picks[pick] = None
            continue
        beaten_by = [f["name"] for f in front if f["avg_acc"] >= r["avg_acc"] and f["avg_length"] <= r["avg_length"]
                     and f is not r]
        out_picks[pick] = {"name": name, "pareto": r["pareto"], "avg_acc": r["avg_acc"],
                           "avg_length": r["avg_length"], "dominated_by": [] if r["pareto"] else beaten_by}
    base_row = {**row(base), "pareto": False} if base else None
    return {"benchmarks": names, "base": base.name if base else None, "base_row": base_row, "rows": rows,
            "front": front, "picks": out_picks}


def _interval(value: float | None, ci: list[float] | None, fmt: str) -> str:
    if value is None:
        return DASH
    return format(value, fmt) + (f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]" if ci else "")


def selection_markdown(selection: dict[str, Any], *, title: str) -> str:
    """selection.md: the checkpoint table (the base row first, if any), then the front and the picks in words."""
    head = ["checkpoint", "round", "L", "Acc (%) [95% CI]", "Len (tokens) [95% CI]", "ΔAcc/CR", "front", "pick"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = ([selection["base_row"]] if selection["base_row"] else []) + selection["rows"]
    for r in rows:
        is_base = r is selection["base_row"]
        dac = r.get("delta_acc_cr")
        lines.append("| " + " | ".join([
            r["name"] + (" (base)" if is_base else ""), DASH if is_base else str(r["step"]),
            DASH if is_base or r["max_len"] is None else str(r["max_len"]),
            _interval(r["avg_acc"], r["avg_acc_ci"], ".1f"), _interval(r["avg_length"], r["avg_length_ci"], ".0f"),
            DASH if dac is None else f"{dac:.3f}", FRONT_MARK if r["pareto"] else "", r.get("pick") or "",
        ]) + " |")
    bench = ", ".join(selection["benchmarks"])
    lines += ["", f"Acc: pass@1 averaged over {bench}; Len: mean response length; round: the last rollout round the "
              "checkpoint was trained on; L: that round's cap; ΔAcc/CR against the base (§5.2); "
              f"{FRONT_MARK}: on the Pareto front (no other checkpoint is as accurate and as short).", ""]
    front = ", ".join(f"{r['name']} ({r['avg_acc']:.1f}%, {r['avg_length']:.0f} tokens)" for r in selection["front"])
    lines.append(f"Pareto front, shortest first: {front}.")
    for pick, p in selection["picks"].items():
        kind = "last cycleK-" + PICKS[pick]
        if p is None:
            lines.append(f"{pick} ({kind}): none exported.")
        else:
            where = "on the front" if p["pareto"] else "dominated by " + (", ".join(p["dominated_by"]) or "a tie")
            lines.append(f"{pick} ({kind}): {p['name']}, {where}.")
    return "\n".join(lines) + "\n"


def write_selection(selection: dict[str, Any], out: str | Path, *, run_dir: str | Path) -> list[Path]:
    """selection.md, pareto.json and pareto.png into ``out``, each atomically; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"run_dir": str(run_dir), **selection}
    md = selection_markdown(selection, title=f"siri select: {run_dir}")
    text = json.dumps(data, indent=2) + "\n"
    rows = ([selection["base_row"]] if selection["base_row"] else []) + selection["rows"]
    marks = {p["name"]: pick for pick, p in selection["picks"].items() if p}
    plot = {"rows": rows, "base": selection["base"]}
    replace_atomically(lambda p: p.write_text(md), out / SELECTION_MD)
    replace_atomically(lambda p: p.write_text(text), out / PARETO_JSON)
    replace_atomically(lambda p: plot_pareto(plot, p, title=f"{Path(run_dir).name}: checkpoints", marks=marks),
                       out / PARETO_PNG)
    return [out / SELECTION_MD, out / PARETO_JSON, out / PARETO_PNG]


def run_select(
    run_dir: str | Path,
    out: str | Path,
    settings: dict[str, Any],
    *,
    base: str | Path | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """``siri select``: :func:`evaluate_checkpoints`, :func:`selection_rows`, :func:`write_selection`. Returns
    the selection (pareto.json without ``run_dir``)."""
    results, base_result = evaluate_checkpoints(run_dir, out, settings, base=base, log=log)
    selection = selection_rows(results, base_result)
    write_selection(selection, out, run_dir=run_dir)
    return selection

