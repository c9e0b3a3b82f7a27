"""PNG figures: the length schedules (paper Figure 3) and training dynamics against the schedule (Figure 4)."""

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


def training_dynamics_figure(
    rows: Sequence[Mapping[str, Any]], *, smooth: int | None = None, title: str | None = None
) -> Any:
    """The figure of :func:`plot_training_dynamics` (a matplotlib Figure; the caller closes it)."""
    if not rows:
        raise ValueError("no metrics rows to plot")
    smooth = smooth or max(1, len(rows) // 50)
    fig, (ax_acc, ax_len) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    # Each panel: the per-round values faint, their trailing mean solid (one line when there is nothing to smooth).
    mean = f"mean of {smooth} rounds"
    steps, acc = _series(rows, "accuracy")
    if steps:
        if smooth > 1:
            ax_acc.plot(steps, acc, color="#1f77b4", alpha=0.25, linewidth=0.8, label="per round")
        ax_acc.plot(steps, _smooth(acc, smooth), color="#1f77b4", label=mean if smooth > 1 else "per round")
    ax_acc.set_ylabel("training accuracy\n(mean reward)")
    ax_acc.grid(alpha=0.3)

    steps, length = _series(rows, "completion_len_mean")
    if steps:
        if smooth > 1:
            ax_len.plot(steps, length, color="#ff7f0e", alpha=0.25, linewidth=0.8, label="response length per round")
        ax_len.plot(steps, _smooth(length, smooth), color="#ff7f0e",
                    label=mean if smooth > 1 else "response length per round")
    cap_steps, cap = _series(rows, "max_len")
    if cap_steps:
        ax_len.plot(cap_steps, cap, color="#555555", linestyle="--", linewidth=1.2, label="length cap L")
    ax_len.set_xlabel("rollout round (step)")
    ax_len.set_ylabel("tokens")
    ax_len.grid(alpha=0.3)
    # Legends beside the panels, never over a curve (inside, they hid the last peaks of L).
    for ax in (ax_acc, ax_len):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.suptitle(title or "Training dynamics against the length schedule")
    return fig


def plot_training_dynamics(
    rows: Sequence[Mapping[str, Any]], path: str | Path, *, smooth: int | None = None, title: str | None = None
) -> Path:
    """Accuracy (mean reward) and mean completion length against the rollout round, with the scheduled cap
    overlaid (Figure 4), from ``metrics.jsonl`` rows (``step``, ``accuracy``, ``completion_len_mean``,
    ``max_len``). Curves are smoothed by a trailing mean over ``smooth`` rounds (default: ~2% of the run), drawn
    over the faint per-round values."""
    return _save(training_dynamics_figure(rows, smooth=smooth, title=title), path)
