"""`siri compare`: the paper's Table 1 (Acc / Length per benchmark, ΔAcc/CR) and Figure 1 (accuracy-vs-length
Pareto plot) from ``siri eval`` results directories, with the uncertainty a reviewer needs to judge a difference.

ΔAcc/CR is the core's :func:`siri_rl.metrics.delta_acc_cr` against the ``--base`` results (§5.2). A benchmark
missing from a result is shown as "–" and left out of that row's averages, as the paper does.

Every Acc and Len cell carries its 95% bootstrap interval over problems (from summary.json), and every model is
compared with the base by a *paired* bootstrap over the problems both evaluated: the same resampled problems for
both models, so the problem-to-problem spread that both share cancels, and the interval of Δ = model − base is
much narrower than the two separate intervals suggest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from siri_rl.evaluate.config import BENCHMARK_TITLES, PAPER_BENCHMARKS
from siri_rl.evaluate.stats import summarize_average
from siri_rl.results import EvalError, Result, load_result, replace_atomically

TABLE_MD = "table.md"
COMPARISON_JSON = "comparison.json"
PARETO_PNG = "pareto.png"
DASH = "–"
FRONT_MARK = "†"  # table.md: the row is on the accuracy/length Pareto front


def _unique_names(results: list[Result]) -> None:
    # Result dirs are often called the same ("eval") under different runs: add the parent folder then.
    names = [r.name for r in results]
    for r in results:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}/{r.path.name}"


def benchmark_order(results: list[Result]) -> list[str]:
    """The paper's benchmarks first (in Table 1 order), then any others in order of appearance."""
    seen = [b for r in results for b in r.benchmarks]
    return [b for b in PAPER_BENCHMARKS if b in seen] + list(dict.fromkeys(b for b in seen if b not in PAPER_BENCHMARKS))


def average_intervals(r: Result, names: list[str]) -> tuple[list[float] | None, list[float] | None]:
    """The 95% intervals of a row's average accuracy and length: a stratified bootstrap over the per-problem
    counts of the benchmarks the row has, else the summary's own average where it covers the same benchmarks, else
    the intervals of the row's one benchmark."""
    have = [n for n in names if n in r.benchmarks]
    if not have:
        return None, None
    if r.problems is not None and all(n in r.problems for n in have):
        avg = summarize_average({n: r.problems[n] for n in have})
        return avg["acc_ci"], avg["length_ci"]
    if r.average and r.average.get("benchmarks") == have:
        return r.average.get("acc_ci"), r.average.get("length_ci")
    if len(have) == 1:  # the average of one benchmark is that benchmark
        return r.benchmarks[have[0]].get("acc_ci"), r.benchmarks[have[0]].get("length_ci")
    return None, None


def _aligned(a: dict[str, list], b: dict[str, list]) -> tuple[list[int], list[int]]:
    where_b = {str(p): i for i, p in enumerate(b["problem_id"])}
    ia, ib = [], []
    for i, p in enumerate(a["problem_id"]):
        j = where_b.get(str(p))
        if j is not None:
            ia.append(i)
            ib.append(j)
    return ia, ib


def _interval_entry(point: float, reps: Any, confidence: float, nd: int) -> dict[str, Any]:
    from siri_rl.metrics import percentile_interval

    lo, hi = percentile_interval(reps, confidence)
    return {"delta": round(point, nd), "ci": [round(lo, nd), round(hi, nd)], "excludes_zero": lo > 0 or hi < 0}


def paired_comparison(
    model: Result,
    base: Result,
    names: list[str] | None = None,
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict | None:
    """Paired bootstrap of ``model`` − ``base`` over the problems both evaluated, per benchmark and averaged.

    For each benchmark both have per-problem counts of, the shared problems are resampled with replacement (the
    same draw for both models) and Δacc (pass@1, percentage points) and Δlength (mean tokens) recomputed on each
    draw; the average over benchmarks uses the same draws (stratified). Returns ``{"against", "benchmarks":
    {name: {"n_problems", "acc": {"delta", "ci", "excludes_zero"}, "length": {...}}}, "average": {...} | None,
    "skipped": [names without per-problem counts or shared problems]}``, or None if none could be paired.
    """
    import numpy as np

    from siri_rl import metrics

    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    names = names or benchmark_order([model, base])
    out: dict[str, Any] = {"against": base.name, "benchmarks": {}, "average": None, "skipped": []}
    acc_reps, len_reps, acc_pts, len_pts = [], [], [], []
    for bench in names:
        if bench not in model.benchmarks or bench not in base.benchmarks:
            continue
        if not (model.problems and base.problems and bench in model.problems and bench in base.problems):
            out["skipped"].append(bench)
            continue
        a, b = model.problems[bench], base.problems[bench]
        ia, ib = _aligned(a, b)
        if not ia:
            out["skipped"].append(bench)
            continue

        def take(cols: dict[str, list], idx: list[int], key: str) -> np.ndarray:
            return np.asarray([cols[key][i] for i in idx], dtype=np.float64)

        ra, rb = take(a, ia, "correct") / take(a, ia, "n"), take(b, ib, "correct") / take(b, ib, "n")
        ones = np.ones(len(ia))
        reps = metrics.bootstrap_replicates(
            [(ra, ones), (rb, ones), (take(a, ia, "tokens"), take(a, ia, "n")), (take(b, ib, "tokens"), take(b, ib, "n"))],
            resamples=resamples, seed=metrics.name_seed(seed, "paired", bench))
        d_acc, d_len = 100.0 * (reps[0] - reps[1]), reps[2] - reps[3]
        p_acc = 100.0 * (ra.mean() - rb.mean())
        p_len = take(a, ia, "tokens").sum() / take(a, ia, "n").sum() - take(b, ib, "tokens").sum() / take(b, ib, "n").sum()
        out["benchmarks"][bench] = {"n_problems": len(ia), "acc": _interval_entry(p_acc, d_acc, confidence, 2),
                                    "length": _interval_entry(p_len, d_len, confidence, 1)}
        acc_reps.append(d_acc)
        len_reps.append(d_len)
        acc_pts.append(p_acc)
        len_pts.append(p_len)
    if not acc_reps:
        return None
    k = len(acc_reps)
    out["average"] = {"benchmarks": list(out["benchmarks"]),
                      "acc": _interval_entry(sum(acc_pts) / k, sum(acc_reps) / k, confidence, 2),
                      "length": _interval_entry(sum(len_pts) / k, sum(len_reps) / k, confidence, 1)}
    return out


def compare_results(base: Result, results: list[Result], *, pairs: list[tuple[str, str]] | None = None) -> dict:
    """Rows of the comparison: per benchmark acc/length with their intervals, averages, ΔAcc/CR and the paired
    bootstrap against ``base``; ``pairs`` of row names (or paths) are also compared with each other.

    Returns ``{"benchmarks": [...], "base": name, "rows": [{name, path, benchmarks, avg_acc, avg_acc_ci,
    avg_length, avg_length_ci, delta_acc_cr, paired, pareto}], "pairs": [...]}``; ``delta_acc_cr`` and ``paired``
    are None for the base row and where they are undefined; ``pareto`` is True for the rows (the base included) on
    the accuracy/length front of their averages (:func:`siri_rl.metrics.pareto_front`).
    """
    from siri_rl.metrics import delta_acc_cr

    rows_in = [base] + [r for r in results if r.path.resolve() != base.path.resolve()]
    _unique_names(rows_in)
    names = benchmark_order(rows_in)
    rows = []
    for i, r in enumerate(rows_in):
        avg_acc, avg_len = r.average_of(names)
        acc_ci, len_ci = average_intervals(r, names)
        dac = None
        if i > 0:
            try:
                dac = delta_acc_cr(base.benchmarks, r.benchmarks)
            except ValueError:  # no shared benchmark, or a base accuracy of 0: ΔAcc/CR is undefined
                dac = None
        rows.append({
            "name": r.name,
            "path": str(r.path),
            "benchmarks": {n: {k: r.benchmarks[n].get(k) for k in ("acc", "acc_ci", "length", "length_ci")}
                           for n in names if n in r.benchmarks},
            "avg_acc": avg_acc,
            "avg_acc_ci": acc_ci,
            "avg_length": avg_len,
            "avg_length_ci": len_ci,
            "delta_acc_cr": dac,
            "paired": paired_comparison(r, base, names) if i > 0 else None,
        })
    mark_pareto(rows)
    by_key = {key: r for r in rows_in for key in (r.name, str(r.path), r.path.name)}
    compared = []
    for a, b in pairs or []:
        if a not in by_key or b not in by_key:
            raise EvalError(f"--pair {a},{b}: each side must name a compared result ({', '.join(r.name for r in rows_in)})")
        compared.append({"model": by_key[a].name, **(paired_comparison(by_key[a], by_key[b], names) or
                                                       {"against": by_key[b].name, "benchmarks": {}, "average": None,
                                                        "skipped": names})})
    return {"benchmarks": names, "base": base.name, "rows": rows, "pairs": compared}


def _best(values: list[float | None], largest: bool) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None  # bolding a lone value says nothing
    return max(present) if largest else min(present)


def _cell(value: float | None, best: float | None, fmt: str, ci: list[float] | None = None) -> str:
    if value is None:
        return DASH
    text = format(value, fmt)
    # compare the printed values, so that ties as shown are all bold
    if best is not None and text == format(best, fmt):
        text = f"**{text}**"
    if ci:
        text += f" ± {format((ci[1] - ci[0]) / 2, fmt)}"
    return text


def _delta_text(entry: dict | None, fmt: str, with_ci: bool = True) -> str:
    if not entry:
        return DASH
    text = format(entry["delta"], "+" + fmt)
    if with_ci:
        lo, hi = entry["ci"]
        text += f" [{format(lo, '+' + fmt)}, {format(hi, '+' + fmt)}]"
    return text + (" *" if entry["excludes_zero"] else "")


def table_markdown(comparison: dict, *, compact: bool = False) -> str:
    """Table 1 in markdown: Acc (%) and Length (tokens) per benchmark, averages, ΔAcc/CR; best in bold (highest
    accuracy and ΔAcc/CR, shortest length). By default every cell shows ± half its 95% interval and a last column
    the paired ΔAcc against the base (average over benchmarks, with its interval); ``compact`` gives the paper's
    table alone. The paired differences per benchmark follow in a second table."""
    names, rows = comparison["benchmarks"], comparison["rows"]
    titles = [BENCHMARK_TITLES.get(n, n) for n in names]
    head = ["Model"] + [f"{t} {c}" for t in titles for c in ("Acc", "Len")] + ["Avg Acc", "Avg Len", "ΔAcc/CR"]
    if not compact:
        head.append("ΔAcc vs base (paired)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cols: list[tuple[list[float | None], bool, str, list[list[float] | None]]] = []

    def ci_of(r: dict, n: str, key: str) -> list[float] | None:
        return None if compact else r["benchmarks"].get(n, {}).get(f"{key}_ci")

    for n in names:
        cols.append(([r["benchmarks"].get(n, {}).get("acc") for r in rows], True, ".1f",
                     [ci_of(r, n, "acc") for r in rows]))
        cols.append(([r["benchmarks"].get(n, {}).get("length") for r in rows], False, ".0f",
                     [ci_of(r, n, "length") for r in rows]))
    cols.append(([r["avg_acc"] for r in rows], True, ".1f", [None if compact else r.get("avg_acc_ci") for r in rows]))
    cols.append(([r["avg_length"] for r in rows], False, ".0f",
                 [None if compact else r.get("avg_length_ci") for r in rows]))
    cols.append(([r["delta_acc_cr"] for r in rows], True, ".3f", [None] * len(rows)))
    bests = [_best(vals, largest) for vals, largest, _, _ in cols]
    for i, r in enumerate(rows):
        cells = [r["name"] + (" (base)" if i == 0 else "") + (f" {FRONT_MARK}" if r.get("pareto") else "")]
        cells += [_cell(vals[i], best, fmt, cis[i]) for (vals, _, fmt, cis), best in zip(cols, bests, strict=True)]
        if not compact:
            avg = (r.get("paired") or {}).get("average")
            cells.append(_delta_text(avg["acc"] if avg else None, ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Acc: pass@1 (%); Len: mean response length (tokens); ΔAcc/CR against the base row (§5.2); best in bold; "
            f"{FRONT_MARK}: on the Pareto front of Avg Acc / Avg Len (no other row is as accurate and as short).")
    if not compact:
        note += (" ± is half the width of the 95% bootstrap interval over problems; ΔAcc vs base: model − base "
                 "averaged over the benchmarks both evaluated, with its 95% paired bootstrap interval.")
    notes = ["", note]
    if any(len(r["benchmarks"]) < len(names) for r in rows):
        notes.append(f"{DASH}: benchmark not evaluated for that model; averages use the benchmarks present.")
    paired = paired_markdown(comparison)
    return "\n".join(lines + notes) + "\n" + ("\n" + paired if paired else "")


def paired_markdown(comparison: dict) -> str:
    """The paired differences of every model against the base (and of the ``pairs``), per benchmark and on
    average: Δ = model − base with its 95% paired bootstrap interval; ``*`` where the interval excludes 0."""
    names = comparison["benchmarks"]
    entries = [(r["name"], r["paired"]) for r in comparison["rows"][1:]]
    entries += [(f"{p['model']} − {p['against']}", p) for p in comparison.get("pairs", [])]
    if not entries:
        return ""
    titles = [BENCHMARK_TITLES.get(n, n) for n in names]
    head = ["Model"] + [f"{t} {c}" for t in titles for c in ("ΔAcc", "ΔLen")] + ["Avg ΔAcc", "Avg ΔLen"]
    lines = [f"Paired differences against {comparison['base']} (model − base over the problems both evaluated; "
             "95% paired bootstrap interval; * the interval excludes 0):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    unpaired = False
    for label, p in entries:
        p = p or {}
        cells = [label]
        for n in names:
            b = p.get("benchmarks", {}).get(n)
            cells += [_delta_text(b["acc"] if b else None, ".1f"), _delta_text(b["length"] if b else None, ".0f")]
        avg = p.get("average")
        cells += [_delta_text(avg["acc"] if avg else None, ".1f"), _delta_text(avg["length"] if avg else None, ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
        unpaired = unpaired or not p or bool(p.get("skipped"))
    if unpaired:
        lines += ["", f"{DASH}: not paired (a side lacks per-problem counts — rerun `siri eval --report-only DIR` "
                  "on older results — or no problem in common)."]
    return "\n".join(lines) + "\n"


def mark_pareto(rows: list[dict]) -> list[int]:
    """Set each row's ``pareto``: on the front of ``(avg_acc, avg_length)`` (higher accuracy, shorter; the core's
    :func:`siri_rl.metrics.pareto_front`), False for a row without either. Returns the front's indices in
    ``rows``, by length."""
    from siri_rl.metrics import pareto_front

    have = [i for i, r in enumerate(rows) if r["avg_acc"] is not None and r["avg_length"] is not None]
    front = [have[k] for k in pareto_front([{"acc": rows[i]["avg_acc"], "length": rows[i]["avg_length"]}
                                            for i in have])]
    for i, r in enumerate(rows):
        r["pareto"] = i in front
    return front


def plot_pareto(comparison: dict, path: str | Path, *, title: str = "Accuracy vs length",
                marks: dict[str, str] | None = None, hollow: set[str] | frozenset[str] = frozenset()) -> Path:
    """Figure 1: one point per row (average length in tokens, average pass@1 in %) with error bars of their 95%
    bootstrap intervals where known, the Pareto front (the rows' ``pareto`` flags: shorter and more accurate is
    better) drawn as a step line through its members, which are highlighted, labels on every point. ``marks``:
    row name -> an extra label drawn with an arrow (``siri select``'s SIRI-low / SIRI-high picks). ``hollow``: row
    names drawn as open markers (numbers quoted rather than measured: ``siri reproduce``'s paper rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in comparison["rows"] if r["avg_acc"] is not None]
    if not rows:
        raise EvalError("no result has any benchmark to plot")
    pts = [(r["avg_length"], r["avg_acc"]) for r in rows]
    front = sorted((i for i, r in enumerate(rows) if r.get("pareto")), key=lambda i: pts[i])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    if front:
        # the front's attainment line: each member's accuracy holds until a longer member is more accurate
        xs = [pts[i][0] for i in front] + [max(x for x, _ in pts)]
        ys = [pts[i][1] for i in front] + [pts[front[-1]][1]]
        ax.step(xs, ys, where="post", color="#d62728", lw=1.5, ls="--", label="Pareto front", zorder=1)
    any_bars = False
    for i, (r, (x, y)) in enumerate(zip(rows, pts, strict=True)):
        is_base = r["name"] == comparison["base"]
        color = "#d62728" if i in front else ("#7f7f7f" if is_base else "#1f77b4")
        xci, yci = r.get("avg_length_ci"), r.get("avg_acc_ci")
        if xci or yci:
            any_bars = True
            ax.errorbar([x], [y], xerr=[[x - xci[0]], [xci[1] - x]] if xci else None,
                        yerr=[[y - yci[0]], [yci[1] - y]] if yci else None,
                        fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.7, zorder=1.5)
        style = (dict(marker="D", facecolors="none", edgecolors=color, linewidths=1.5) if r["name"] in hollow else
                 dict(marker="s" if is_base else "o", color=color, edgecolors="black" if i in front else "none"))
        ax.scatter([x], [y], s=70 if i in front else 35, zorder=2, **style)
    # one label per position: rows with the same averages (checkpoints that did not move) share it
    at: dict[tuple[float, float], list[dict]] = {}
    for r, xy in zip(rows, pts, strict=True):
        at.setdefault(xy, []).append(r)
    for xy, same in at.items():
        below = any(r["name"] == comparison["base"] for r in same)  # the base's label below, out of the way
        ax.annotate(", ".join(r["name"] for r in same), xy, textcoords="offset points", xytext=(5, -12 if below else 5),
                    fontsize=8)
        marked = [marks[r["name"]] for r in same if marks and r["name"] in marks]
        if marked:
            ax.annotate(", ".join(marked), xy, textcoords="offset points", xytext=(12, -26), fontsize=8,
                        fontweight="bold", arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.set_xlabel("average response length (tokens)")
    ax.set_ylabel("average pass@1 (%)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if front:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title + (" (bars: 95% bootstrap intervals over problems)" if any_bars else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_compare(
    base: str | Path,
    results: list[str | Path],
    out: str | Path,
    *,
    compact: bool = False,
    pairs: list[tuple[str, str]] | None = None,
    paper: str | None = None,
) -> dict:
    """Load results, write ``table.md``, ``comparison.json`` and ``pareto.png`` into ``out``; return the
    comparison dict. ``paper``: ``table1-1.5b`` or ``table1-7b`` adds the paper's Table 1 rows of that size
    (:func:`siri_rl.paper.paper_results`, named ``paper: NAME``) after the results."""
    from siri_rl.paper import SIZES, paper_results

    base_r = load_result(base)
    others = [load_result(p) for p in results]
    if paper is not None:
        size = paper.removeprefix("table1-")
        if not paper.startswith("table1-") or size not in SIZES:
            raise EvalError(f"--paper {paper}: choose one of {', '.join('table1-' + s for s in SIZES)}")
        others += paper_results(size)
    comparison = compare_results(base_r, others, pairs=pairs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, data = table_markdown(comparison, compact=compact), json.dumps(comparison, indent=2) + "\n"
    replace_atomically(lambda p: p.write_text(table), out / TABLE_MD)
    replace_atomically(lambda p: p.write_text(data), out / COMPARISON_JSON)
    replace_atomically(lambda p: plot_pareto(comparison, p), out / PARETO_PNG)
    return comparison
