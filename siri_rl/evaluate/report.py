"""summary.md and budget_curve.png of a results directory, and :func:`write_summary`, which writes them with
summary.json, each atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siri_rl.evaluate.config import BENCHMARK_TITLES
from siri_rl.evaluate.stats import DASH, _mean
from siri_rl.results import BUDGET_PNG, SUMMARY_JSON, SUMMARY_MD, replace_atomically


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
