"""`siri analyze`: reasoning-pattern frequencies across checkpoints (paper Figure 6) and training-run dynamics
(Figure 4: accuracy and length against the scheduled cap; Figure 9: entropy; tokens generated).

``patterns`` reads the ``samples.jsonl`` of ``siri eval`` results directories; ``run`` reads a training run's
``metrics.jsonl`` (one JSON per rollout round, written by either engine).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from siri_rl.results import EvalError, load_samples
from siri_rl.run_dir import DYNAMICS_PNG, METRICS_FILE, read_metric_rows

# §5.4: the words whose frequency the paper tracks through compression and expansion.
DEFAULT_PATTERNS = ("wait", "hold on", "alternatively", "so", "compute")

PATTERNS_MD = "patterns.md"
PATTERNS_JSON = "patterns.json"
PATTERNS_PNG = "patterns.png"
ENTROPY_PNG = "entropy.png"
TOKENS_PNG = "tokens.png"
RUN_MD = "run.md"


# --- patterns (Figure 6) ---------------------------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Case-insensitive, whole-word match of ``pattern``; the words of a phrase may be split by any whitespace.

    "so" matches "So," and "so" but not "also" or "soon"."""
    words = [re.escape(w) for w in pattern.split()]
    if not words:
        raise EvalError("empty pattern; give words such as --words wait,'hold on',so")
    return re.compile(r"\b" + r"\s+".join(words) + r"\b", re.IGNORECASE)


def count_patterns(text: str, patterns: Sequence[str] = DEFAULT_PATTERNS) -> dict[str, int]:
    """Occurrences of each pattern in ``text``."""
    return {p: len(pattern_regex(p).findall(text or "")) for p in patterns}


def pattern_frequencies(records: Iterable[dict], patterns: Sequence[str] = DEFAULT_PATTERNS) -> dict[str, Any]:
    """Mean occurrences per response of each pattern, split into correct and incorrect responses.

    Returns ``{"correct": {pattern: mean}, "incorrect": {...}, "all": {...}, "n_correct", "n_incorrect"}``;
    a group without responses has means of None.
    """
    regexes = {p: pattern_regex(p) for p in patterns}
    sums = {g: dict.fromkeys(patterns, 0) for g in ("correct", "incorrect")}
    counts = {"correct": 0, "incorrect": 0}
    for r in records:
        group = "correct" if r.get("correct") else "incorrect"
        counts[group] += 1
        text = r.get("response") or ""
        for p, rx in regexes.items():
            sums[group][p] += len(rx.findall(text))
    out: dict[str, Any] = {}
    for g in ("correct", "incorrect"):
        out[g] = {p: (sums[g][p] / counts[g] if counts[g] else None) for p in patterns}
    total = counts["correct"] + counts["incorrect"]
    out["all"] = {p: ((sums["correct"][p] + sums["incorrect"][p]) / total if total else None) for p in patterns}
    out["n_correct"], out["n_incorrect"] = counts["correct"], counts["incorrect"]
    return out


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def patterns_markdown(freqs: dict[str, dict[str, Any]], patterns: Sequence[str]) -> str:
    """One table per group (correct / incorrect): rows = results, columns = patterns (mean count per response)."""
    lines = ["# Reasoning patterns: mean occurrences per response", "",
             "Case-insensitive whole-word counts (paper §5.4, Figure 6).", ""]
    for group in ("correct", "incorrect"):
        lines += [f"## {group.capitalize()} responses", "",
                  "| Result | responses | " + " | ".join(f'"{p}"' for p in patterns) + " |",
                  "|" + "---|" * (2 + len(patterns))]
        for name, f in freqs.items():
            lines.append(f"| {name} | {f[f'n_{group}']} | " + " | ".join(_fmt(f[group][p]) for p in patterns) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_patterns(freqs: dict[str, dict[str, Any]], patterns: Sequence[str], path: str | Path) -> Path:
    """Figure 6: grouped bars (one bar per result directory, one group per pattern), correct and incorrect
    responses in two panels; y = mean occurrences per response."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(freqs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100, sharey=True)
    width = 0.8 / max(1, len(names))
    for ax, group in zip(axes, ("correct", "incorrect"), strict=True):
        for i, name in enumerate(names):
            vals = [freqs[name][group][p] or 0.0 for p in patterns]
            xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(patterns))]
            ax.bar(xs, vals, width=width * 0.95, label=f"{name} (n={freqs[name][f'n_{group}']})")
        ax.set_xticks(range(len(patterns)))
        ax.set_xticklabels([f'"{p}"' for p in patterns], fontsize=9)
        ax.set_title(f"{group} responses", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("mean occurrences per response")
    top = max([v or 0.0 for f in freqs.values() for g in ("correct", "incorrect") for v in f[g].values()] + [0.1])
    axes[0].set_ylim(0, top * 1.3)  # room for the legend above the bars
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_patterns(
    result_dirs: Sequence[str | Path],
    out: str | Path,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Count patterns in each results directory's samples; write patterns.md / .json / .png into ``out``."""
    patterns = [p.strip() for p in patterns if p.strip()]
    for p in patterns:
        pattern_regex(p)
    if names is not None and len(names) != len(result_dirs):
        raise EvalError(f"{len(names)} names for {len(result_dirs)} results directories; give one name each")
    freqs: dict[str, dict[str, Any]] = {}
    for i, d in enumerate(result_dirs):
        d = Path(d)
        records = load_samples(d)
        name = names[i] if names else (d.name if d.is_dir() else d.parent.name)
        if name in freqs:
            name = f"{d.parent.name}/{name}"
        freqs[name] = pattern_frequencies(records, patterns)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / PATTERNS_MD).write_text(patterns_markdown(freqs, patterns))
    (out / PATTERNS_JSON).write_text(json.dumps({"patterns": list(patterns), "results": freqs}, indent=2) + "\n")
    plot_patterns(freqs, patterns, out / PATTERNS_PNG)
    return freqs


# --- training run (Figures 4 and 9) ----------------------------------------------------------------------------


def read_metrics(run_dir: str | Path, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Rows of ``RUN/metrics.jsonl`` (or a metrics.jsonl path), one per step (the latest, after a resume) sorted by
    step; a half-written last line (a run still writing, or killed while writing) is skipped. Reads through the one
    reader of the file (:func:`siri_rl.run_dir.read_metric_rows`), with ``siri analyze``'s errors. ``missing_ok``:
    no file, or no complete row, gives ``[]`` instead of an :class:`EvalError` (a run that has not logged yet)."""
    path = Path(run_dir)
    path = path if path.suffix == ".jsonl" else path / METRICS_FILE
    if not path.exists():
        if missing_ok:
            return []
        raise EvalError(f"{path} not found; pass a run directory written by `siri train`")
    try:
        rows = read_metric_rows(path)
    except ValueError as err:
        raise EvalError(str(err)) from None
    if not rows:  # the reader keeps one row per step (the last one: tolerance for a file with repeats)
        if missing_ok:
            return []
        raise EvalError(f"{path} has no rows with a 'step'")
    return rows


def cumulative_tokens(rows: Sequence[dict[str, Any]]) -> list[int] | None:
    """Total tokens generated up to each row. ``tokens_generated`` is read as a running total when it never
    decreases, else as per-round counts that are summed here."""
    vals = [r.get("tokens_generated") for r in rows]
    if any(v is None for v in vals):
        return None
    if all(b >= a for a, b in zip(vals, vals[1:], strict=False)):
        return [int(v) for v in vals]
    total, out = 0, []
    for v in vals:
        total += int(v)
        out.append(total)
    return out


def plot_entropy(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Figure 9: policy entropy (nats per token) against the rollout round, with the length cap L on a second
    axis so that compression and expansion phases can be read off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["step"], r["entropy"]) for r in rows if r.get("entropy") is not None]
    if not pts:
        raise EvalError("metrics.jsonl has no 'entropy' values to plot")
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    ax.plot([s for s, _ in pts], [e for _, e in pts], color="#2ca02c", label="entropy")
    ax.set_xlabel("rollout round (step)")
    ax.set_ylabel("entropy (nats / token)")
    ax.grid(alpha=0.3)
    caps = [(r["step"], r["max_len"]) for r in rows if r.get("max_len") is not None]
    if caps:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in caps], [c for _, c in caps], color="#555555", ls="--", lw=1, label="length cap L")
        ax2.set_ylabel("length cap L (tokens)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    ax.set_title("Policy entropy during training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def tokens_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """The figure of :func:`plot_tokens` (a matplotlib Figure; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    total = cumulative_tokens(rows)
    if total is None:
        raise EvalError("metrics.jsonl rows lack 'tokens_generated'")
    steps = [r["step"] for r in rows]
    per_round = [b - a for a, b in zip([0] + total[:-1], total, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    ax.bar(steps, per_round, width=1.0, color="#9ecae1", label="per round (bars, left axis)")
    ax.set_xlabel("rollout round (step)")
    ax.set_ylabel("tokens generated per round")
    ax2 = ax.twinx()
    ax2.plot(steps, total, color="#08519c", label="total (line, right axis)")
    ax2.set_ylabel("tokens generated (total)")
    for axis in (ax, ax2):  # 50k, 60M: no "1e7" offset text up where the legend goes
        axis.yaxis.set_major_formatter(EngFormatter(sep=""))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # Above the axes, beside the title: inside, the legend covered the tallest bars (the first rounds at L_max).
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title("Rollout tokens generated", fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def plot_tokens(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Tokens generated: per round (bars) and in total (line, second axis), against the rollout round."""
    import matplotlib.pyplot as plt

    fig = tokens_figure(rows)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A short summary of a run: rounds, cap range, first/last accuracy and length, tokens, entropy."""

    def first_last(key: str, fmt: str) -> str:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return f"{format(vals[0], fmt)} → {format(vals[-1], fmt)}" if vals else "–"

    caps = [r["max_len"] for r in rows if r.get("max_len") is not None]
    total = cumulative_tokens(rows)
    lines = ["# Training run", "", "| quantity | first → last round |", "|---|---|",
             f"| rounds | {rows[0]['step']} → {rows[-1]['step']} ({len(rows)} rows) |",
             f"| length cap L (tokens) | {min(caps) if caps else '–'} … {max(caps) if caps else '–'} (range) |",
             f"| accuracy (mean reward) | {first_last('accuracy', '.3f')} |",
             f"| mean response length (tokens) | {first_last('completion_len_mean', '.0f')} |",
             f"| clipped fraction | {first_last('clipped_frac', '.3f')} |",
             f"| entropy | {first_last('entropy', '.3f')} |",
             f"| tokens generated (total) | {total[-1] if total else '–'} |"]
    return "\n".join(lines) + "\n"


def analysis_dir(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Where :func:`run_analysis` writes: ``out``, else ``RUN/analysis`` (beside a metrics.jsonl path)."""
    run = Path(run_dir)
    return Path(out) if out else (run.parent if run.suffix == ".jsonl" else run) / "analysis"


def run_analysis(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Plots of a training run into ``out`` (default ``RUN/analysis``): dynamics.png (Figure 4, via
    :func:`siri_rl.plots.plot_training_dynamics`, with the held-out validation of ``RUN/validation.jsonl`` and
    then trajectory.png, Figure 1, where the run has one), entropy.png (Figure 9) and tokens.png where the metrics have
    them, plus run.md. Returns the files written."""
    from siri_rl.plots import plot_training_dynamics, plot_trajectory
    from siri_rl.run_dir import TRAJECTORY_PNG, checkpoint_marks, read_validation_rows

    rows = read_metrics(run_dir)
    out = analysis_dir(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    run = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    validation, marks = read_validation_rows(run), checkpoint_marks(run)
    written = [plot_training_dynamics(rows, out / DYNAMICS_PNG, validation=validation, marks=marks,
                                      title="Accuracy and response length against the length schedule")]
    if validation:  # held-out validation during training: Figure 1's view too
        written.append(plot_trajectory(validation, out / TRAJECTORY_PNG, marks=marks))
    if any(r.get("entropy") is not None for r in rows):
        written.append(plot_entropy(rows, out / ENTROPY_PNG))
    if cumulative_tokens(rows) is not None:
        written.append(plot_tokens(rows, out / TOKENS_PNG))
    (out / RUN_MD).write_text(run_markdown(rows))
    written.append(out / RUN_MD)
    return written
