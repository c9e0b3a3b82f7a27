"""``siri schedule``: the length cap L per rollout round, as a table, JSON or a plot (:mod:`siri_rl.schedule`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from siri_rl.cli._app import app, check_output_file, console, fail


def _parse_stages(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(a), int(b)) for a, b in (part.split(":") for part in text.split(",") if part.strip())]
    except ValueError:
        fail(f"--stages must look like '0:8192,320:16384' (start_step:L,...), got {text!r}")
        raise  # unreachable


# `siri schedule` evaluates every round it shows (the checkpoint marks scan each cycle): 10^5 rounds take ~2 s,
# 10^8 took minutes, far more than anyone reads.
MAX_SCHEDULE_STEPS = 100_000
# The image formats --plot takes: matplotlib's savefig picks the format from the suffix and refuses others
# (matplotlib/backend_bases.py:2130-2134).
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


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
        if plot.suffix.lower().lstrip(".") not in PLOT_FORMATS:
            fail(f"--plot {plot}: the file name must end in an image format matplotlib writes "
                 f"({', '.join('.' + f for f in PLOT_FORMATS)}), e.g. {plot.with_suffix('.png')}")
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
