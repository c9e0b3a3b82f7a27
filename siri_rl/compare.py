"""`siri compare`: the paper's Table 1 (Acc / Length per benchmark, ΔAcc/CR) and Figure 1 (accuracy-vs-length
Pareto plot) from ``siri eval`` results directories.

ΔAcc/CR is the core's :func:`siri_rl.metrics.delta_acc_cr` against the ``--base`` results (§5.2). A benchmark
missing from a result is shown as "–" and left out of that row's averages, as the paper does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siri_rl.evaluate import BENCHMARK_TITLES, PAPER_BENCHMARKS, SUMMARY_JSON, EvalError

TABLE_MD = "table.md"
COMPARISON_JSON = "comparison.json"
PARETO_PNG = "pareto.png"
DASH = "–"


@dataclass
class Result:
    """One ``siri eval`` results directory: ``benchmarks`` as in summary.json (acc in percent, length in tokens)."""

    name: str
    path: Path
    benchmarks: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def average(self, names: list[str]) -> tuple[float | None, float | None]:
        """Mean accuracy (percent) and mean length (tokens) over the benchmarks of ``names`` this result has."""
        have = [n for n in names if n in self.benchmarks]
        if not have:
            return None, None
        return (sum(self.benchmarks[n]["acc"] for n in have) / len(have),
                sum(self.benchmarks[n]["length"] for n in have) / len(have))


def load_result(path: str | Path, name: str | None = None) -> Result:
    """Read ``path/summary.json`` (or a summary.json path) written by ``siri eval``."""
    path = Path(path)
    file = path if path.is_file() else path / SUMMARY_JSON
    if not file.exists():
        raise EvalError(f"{file} not found; run `siri eval --out {path}` first (or finish it: reruns resume)")
    try:
        data = json.loads(file.read_text())
        benchmarks = data["benchmarks"]
        for v in benchmarks.values():
            float(v["acc"]), float(v["length"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise EvalError(f"{file} is not a siri eval summary ({type(e).__name__}: {e})") from None
    folder = file.parent
    return Result(name or folder.name, folder, benchmarks, data.get("meta", {}))


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


def compare_results(base: Result, results: list[Result]) -> dict:
    """Rows of the comparison: per benchmark acc/length, averages and ΔAcc/CR against ``base``.

    Returns ``{"benchmarks": [...], "base": name, "rows": [{name, path, benchmarks, avg_acc, avg_length,
    delta_acc_cr}]}``; ``delta_acc_cr`` is None for the base row and where it is undefined.
    """
    from siri_rl.metrics import delta_acc_cr

    rows_in = [base] + [r for r in results if r.path.resolve() != base.path.resolve()]
    _unique_names(rows_in)
    names = benchmark_order(rows_in)
    rows = []
    for i, r in enumerate(rows_in):
        avg_acc, avg_len = r.average(names)
        dac = None
        if i > 0:
            try:
                dac = delta_acc_cr(base.benchmarks, r.benchmarks)
            except ValueError:  # no shared benchmark, or a base accuracy of 0: ΔAcc/CR is undefined
                dac = None
        rows.append({
            "name": r.name,
            "path": str(r.path),
            "benchmarks": {n: {"acc": r.benchmarks[n]["acc"], "length": r.benchmarks[n]["length"]}
                           for n in names if n in r.benchmarks},
            "avg_acc": avg_acc,
            "avg_length": avg_len,
            "delta_acc_cr": dac,
        })
    return {"benchmarks": names, "base": base.name, "rows": rows}


def _best(values: list[float | None], largest: bool) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None  # bolding a lone value says nothing
    return max(present) if largest else min(present)


def _cell(value: float | None, best: float | None, fmt: str) -> str:
    if value is None:
        return DASH
    text = format(value, fmt)
    # compare the printed values, so that ties as shown are all bold
    return f"**{text}**" if best is not None and text == format(best, fmt) else text


def table_markdown(comparison: dict) -> str:
    """Table 1 in markdown: Acc (%) and Length (tokens) per benchmark, averages, ΔAcc/CR; best in bold
    (highest accuracy and ΔAcc/CR, shortest length)."""
    names, rows = comparison["benchmarks"], comparison["rows"]
    titles = [BENCHMARK_TITLES.get(n, n) for n in names]
    head = ["Model"] + [f"{t} {c}" for t in titles for c in ("Acc", "Len")] + ["Avg Acc", "Avg Len", "ΔAcc/CR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cols: list[tuple[list[float | None], bool, str]] = []
    for n in names:
        cols.append(([r["benchmarks"].get(n, {}).get("acc") for r in rows], True, ".1f"))
        cols.append(([r["benchmarks"].get(n, {}).get("length") for r in rows], False, ".0f"))
    cols.append(([r["avg_acc"] for r in rows], True, ".1f"))
    cols.append(([r["avg_length"] for r in rows], False, ".0f"))
    cols.append(([r["delta_acc_cr"] for r in rows], True, ".3f"))
    bests = [_best(vals, largest) for vals, largest, _ in cols]
    for i, r in enumerate(rows):
        cells = [r["name"] + (" (base)" if i == 0 else "")]
        cells += [_cell(vals[i], best, fmt) for (vals, _, fmt), best in zip(cols, bests, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Acc: pass@1 (%); Len: mean response length (tokens); ΔAcc/CR against the base row (§5.2); "
             "best in bold."]
    if any(len(r["benchmarks"]) < len(names) for r in rows):
        notes.append(f"{DASH}: benchmark not evaluated for that model; averages use the benchmarks present.")
    return "\n".join(lines + notes) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (length, acc) that no other point beats: shorter-or-equal length and
    higher-or-equal accuracy, one of them strictly. Sorted by length."""
    front = []
    for i, (li, ai) in enumerate(points):
        dominated = any(lj <= li and aj >= ai and (lj < li or aj > ai) for j, (lj, aj) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def plot_pareto(comparison: dict, path: str | Path, *, title: str = "Accuracy vs length") -> Path:
    """Figure 1: one point per model (average length in tokens, average pass@1 in %), the Pareto frontier
    (shorter and more accurate is better) drawn through the non-dominated models, labels on every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in comparison["rows"] if r["avg_acc"] is not None]
    if not rows:
        raise EvalError("no result has any benchmark to plot")
    pts = [(r["avg_length"], r["avg_acc"]) for r in rows]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    if len(front) > 1:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="#d62728", lw=1.5, ls="--",
                label="Pareto frontier", zorder=1)
    for i, (r, (x, y)) in enumerate(zip(rows, pts, strict=True)):
        is_base = r["name"] == comparison["base"]
        ax.scatter([x], [y], s=60 if i in front else 35, zorder=2,
                   marker="s" if is_base else "o",
                   color="#7f7f7f" if is_base else ("#d62728" if i in front else "#1f77b4"))
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("average response length (tokens)")
    ax.set_ylabel("average pass@1 (%)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if len(front) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_compare(base: str | Path, results: list[str | Path], out: str | Path) -> dict:
    """Load results, write ``table.md``, ``comparison.json`` and ``pareto.png`` into ``out``; return the
    comparison dict."""
    base_r = load_result(base)
    others = [load_result(p) for p in results]
    comparison = compare_results(base_r, others)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / TABLE_MD).write_text(table_markdown(comparison))
    (out / COMPARISON_JSON).write_text(json.dumps(comparison, indent=2) + "\n")
    plot_pareto(comparison, out / PARETO_PNG)
    return comparison
