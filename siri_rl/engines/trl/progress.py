"""The per-round progress of ``siri train`` on TRL (main process): a rich bar with the cap and accuracy of each
round on a terminal; where output goes to a file (a cluster job log) a line at most every
:attr:`RoundProgress.log_every_s` seconds and after the last round, as ``siri eval`` does."""

from __future__ import annotations

import time
from typing import Any


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (hours past 24 too: a 1920-round run takes days)."""
    m, s = divmod(int(max(0.0, seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


class RoundProgress:
    """Progress over ``num_rounds`` rollout rounds; ``end``: the round count this start stops at
    (``stop_after_rounds``), after which the last line is always printed."""

    log_every_s = 30.0  # seconds between progress lines when the output is not a terminal

    def __init__(self, num_rounds: int, end: int) -> None:
        from rich import get_console

        self.num_rounds, self.end = num_rounds, end
        self.console = get_console()
        self._bar: Any = None  # rich Progress (terminal)
        self._task: Any = None
        self._last: float | None = None
        self._start = (0.0, 0)  # (monotonic s, rounds done) when this process started training

    def start(self, done: int) -> None:
        self._start = (time.monotonic(), done)
        if not self.console.is_terminal:  # a bar cannot redraw in a file: print lines instead
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[bold]SIRI rounds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console,
        )
        self._bar.start()
        self._task = self._bar.add_task("rounds", total=self.num_rounds, completed=done, info="")

    def show(self, row: dict[str, Any]) -> None:
        """Round ``row["step"]`` is done."""
        done = row["step"] + 1
        info = f"L={row['max_len']} acc={row['accuracy']:.2f} len={row['completion_len_mean']:.0f}"
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info)
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < self.log_every_s and done < self.end:
            return
        self._last = now
        t0, done0 = self._start
        elapsed = now - t0
        eta = _clock(elapsed / (done - done0) * (self.num_rounds - done)) if done > done0 else "?"
        self.print(f"SIRI round {done}/{self.num_rounds}: {info}, elapsed {_clock(elapsed)}, eta {eta}")

    def print(self, line: str) -> None:
        """One plain line (above the bar, if there is one)."""
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        """End the bar (its last line and a newline; the terminal cursor is shown again). Idempotent."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
