"""PNG figures: the length schedules (paper Figure 3), training dynamics against the schedule with the held-out
validation where a run has one (Figure 4), and the held-out accuracy-length trajectory (Figure 1's spiral)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from siri_rl.schedule import LengthSchedule  # noqa: E402

COLORS = {"cosine": "#1f77b4", "stair": "#d62728", "stair-cosine": "#2ca02c", "constant": "#7f7f7f", "stages": "#9467bd"}


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_schedule(
    schedules: Mapping[str, LengthSchedule], num_steps: int, path: str | Path, *, title: str | None = None
) -> Path:
    """Draw one or more length schedules over ``num_steps`` rollout rounds (Figure 3) and save a PNG.

    Troughs (SIRI-low checkpoints) and peaks (SIRI-high) of each schedule are marked.
    """
    fig, ax = plt.subplots(figsize=(9, 3.6))
    steps = list(range(num_steps))
    for label, schedule in schedules.items():
        color = COLORS.get(schedule.kind)
        ax.plot(steps, [schedule(t) for t in steps], label=label, color=color, linewidth=1.8)
        for marker, points in (("v", schedule.troughs(num_steps)), ("^", schedule.peaks(num_steps))):
            ax.scatter(points, [schedule(t) for t in points], marker=marker, color=color, s=28, zorder=3)
    ax.set_xlabel("rollout round (step)")
    ax.set_ylabel("max response length L (tokens)")
    ax.set_title(title or "SIRI length schedules (▼ compressed checkpoint, ▲ expanded checkpoint)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return _save(fig, path)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is not None and "step" in row:
            xs.append(int(row["step"]))
            ys.append(float(value))
    return xs, ys


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1 or not values:
        return values
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _by_benchmark(validation: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(validation, key=lambda r: r["round"]):
        out.setdefault(str(row["benchmark"]), []).append(row)
    return out


VAL_COLORS = ("#d62728", "#9467bd", "#2ca02c", "#8c564b", "#e377c2")
MARKS = {"low": ("v", "SIRI-low (end of compression)"), "high": ("^", "SIRI-high (end of expansion)")}


def _mark_rounds(ax: Any, marks: Mapping[int, str]) -> None:
    """Faint vertical lines at the trough (SIRI-low) and peak (SIRI-high) checkpoints' rounds."""
    for r, kind in marks.items():
        ax.axvline(r, color="#2c7bb6" if kind == "low" else "#d7191c", alpha=0.18, linewidth=1.0, zorder=0)


def training_dynamics_figure(
    rows: Sequence[Mapping[str, Any]], *, smooth: int | None = None, title: str | None = None,
    validation: Sequence[Mapping[str, Any]] = (), marks: Mapping[int, str] | None = None,
) -> Any:
    """The figure of :func:`plot_training_dynamics` (a matplotlib Figure; the caller closes it)."""
    if not rows:
        raise ValueError("no metrics rows to plot")
    smooth = smooth or max(1, len(rows) // 50)
    held = _by_benchmark(validation)
    fig, (ax_acc, ax_len) = plt.subplots(2, 1, figsize=(9, 6.4 if held else 6), sharex=True)
    # Each panel: the per-round values faint, their trailing mean solid (one line when there is nothing to smooth).
    # With held-out validation the training curves step back (faint, thin): the held-out points are Figure 4.
    mean = f"mean of {smooth} rounds"
    train_alpha = 0.45 if held else 1.0
    steps, acc = _series(rows, "accuracy")
    if steps:
        if smooth > 1 and not held:
            ax_acc.plot(steps, acc, color="#1f77b4", alpha=0.25, linewidth=0.8, label="per round")
        ax_acc.plot(steps, _smooth(acc, smooth), color="#1f77b4", alpha=train_alpha,
                    label=("training (mean reward under L)" if held else mean if smooth > 1 else "per round"))
    for i, (bench, vrows) in enumerate(held.items()):
        color = VAL_COLORS[i % len(VAL_COLORS)]
        xs = [r["round"] for r in vrows]
        ax_acc.fill_between(xs, [r["acc_ci"][0] / 100 for r in vrows], [r["acc_ci"][1] / 100 for r in vrows],
                            color=color, alpha=0.18, linewidth=0)
        ax_acc.plot(xs, [r["acc"] / 100 for r in vrows], color=color, marker="o", markersize=4,
                    label=f"held-out {bench} pass@1 (95% band; at {vrows[0]['max_tokens']} tokens)")
        ax_len.plot(xs, [r["mean_len"] for r in vrows], color=color, marker="o", markersize=4,
                    label=f"held-out {bench} mean length")
    ax_acc.set_ylabel("accuracy" if held else "training accuracy\n(mean reward)")
    ax_acc.grid(alpha=0.3)

    steps, length = _series(rows, "completion_len_mean")
    if steps:
        if smooth > 1 and not held:
            ax_len.plot(steps, length, color="#ff7f0e", alpha=0.25, linewidth=0.8, label="response length per round")
        ax_len.plot(steps, _smooth(length, smooth), color="#ff7f0e", alpha=train_alpha,
                    label="training response length" if held else mean if smooth > 1 else "response length per round")
    cap_steps, cap = _series(rows, "max_len")
    if cap_steps:
        ax_len.plot(cap_steps, cap, color="#555555", linestyle="--", linewidth=1.2, label="length cap L(t)")
    for ax in (ax_acc, ax_len):
        _mark_rounds(ax, marks or {})
    ax_len.set_xlabel("rollout round (held-out points: the policy after that many rounds)" if held
                      else "rollout round (step)")
    ax_len.set_ylabel("tokens")
    ax_len.grid(alpha=0.3)
    # Legends beside the panels, never over a curve (inside, they hid the last peaks of L).
    for ax in (ax_acc, ax_len):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.suptitle(title or "Training dynamics against the length schedule")
    return fig


def plot_training_dynamics(
    rows: Sequence[Mapping[str, Any]], path: str | Path, *, smooth: int | None = None, title: str | None = None,
    validation: Sequence[Mapping[str, Any]] = (), marks: Mapping[int, str] | None = None,
) -> Path:
    """Accuracy (mean reward) and mean completion length against the rollout round, with the scheduled cap
    overlaid (Figure 4), from ``metrics.jsonl`` rows (``step``, ``accuracy``, ``completion_len_mean``,
    ``max_len``). Curves are smoothed by a trailing mean over ``smooth`` rounds (default: ~2% of the run), drawn
    over the faint per-round values. ``validation``: ``validation.jsonl`` rows, drawn as the held-out pass@1 with
    its 95% band and the held-out mean length at each validation's round; ``marks``: ``{round: "low"|"high"}``,
    the rounds of the SIRI-low/-high checkpoints (the policy after that many rounds), marked by faint lines."""
    return _save(training_dynamics_figure(rows, smooth=smooth, title=title, validation=validation, marks=marks), path)


def plot_trajectory(validation: Sequence[Mapping[str, Any]], path: str | Path, *,
                    marks: Mapping[int, str] | None = None, title: str | None = None) -> Path:
    """Figure 1's view of a run: held-out accuracy against held-out mean length (tokens), one point per
    validation joined in training order (one line per benchmark), the base model (round 0) and the validations at
    a SIRI-low (▼) / SIRI-high (▲) checkpoint of ``marks`` (``{round: "low"|"high"}``; at its round or the one
    before) labelled with their round."""
    held = _by_benchmark(validation)
    if not held:
        raise ValueError("no validation rows to plot")
    marks = marks or {}
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for i, (bench, vrows) in enumerate(held.items()):
        color = VAL_COLORS[i % len(VAL_COLORS)]
        xs, ys = [r["mean_len"] for r in vrows], [r["acc"] for r in vrows]
        ax.plot(xs, ys, color=color, alpha=0.5, linewidth=1.2, zorder=1, label=f"{bench} (in training order)")
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=2,
                        arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.6, "lw": 1.0})
        for r, x, y in zip((r["round"] for r in vrows), xs, ys):
            # a checkpoint holds the policy after its round; a validation every k rounds lands on it or one before
            kind = "base" if r == 0 else marks.get(r) or marks.get(r + 1)
            marker = "s" if kind == "base" else MARKS[kind][0] if kind in MARKS else "o"
            ax.scatter([x], [y], color=color, marker=marker, s=60 if kind else 18, zorder=3, edgecolor="black",
                       linewidth=0.6 if kind else 0)
            if kind:
                text = "base" if kind == "base" else f"{kind} r{r}"
                # SIRI-low labels below the point, the others above: a trough and a peak that land on one point
                # (a policy that stopped changing) stay readable
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, -11 if kind == "low" else 4),
                            fontsize=8)
    ax.set_xlabel("held-out mean response length (tokens)")
    ax.set_ylabel("held-out pass@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9, frameon=False,
              title="■ base  ▼ SIRI-low  ▲ SIRI-high", title_fontsize=8)
    ax.set_title(title or "Held-out accuracy against length over training")
    return _save(fig, path)
