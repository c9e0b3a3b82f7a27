"""The SIRI length schedule inside TRL's GRPOTrainer: a TrainerCallback that sets the rollout cap per rollout round.

Why rollout rounds and not optimizer steps (SIRI §4.3, TRL 1.x ``GRPOTrainer._prepare_inputs``): TRL generates
one *generation batch* every ``steps_per_generation * num_iterations`` micro-steps (``training_step`` calls) and
serves slices of that buffered batch in between. A cap changed per optimizer step would be ignored whenever
``steps_per_generation > gradient_accumulation_steps`` or ``num_iterations > 1``. So the callback counts
micro-steps from the Trainer's own events (``on_step_begin`` before the first micro-step of an optimizer step,
``on_substep_end``/``on_step_end`` after each one) and, before every micro-step, sets the cap of the round that
micro-step belongs to: ``round = micro_step // (steps_per_generation * num_iterations)``. The cap goes to the
generation config used by the transformers path (``trainer.generation_config.max_new_tokens`` and the
``generation_kwargs`` TRL overlays on the model), and to ``vllm_generation.max_completion_length`` for vLLM
colocate/server modes. It never goes into ``GRPOConfig.generation_kwargs``.

The same callback finalises one ``metrics.jsonl`` row per round (rollout statistics from the reward function,
loss-side statistics such as entropy and clip ratios from TRL's logs), exports ``save_pretrained`` checkpoints at
each cycle's trough and peak (SIRI-low / SIRI-high), and asks the Trainer for resumable checkpoints at round
boundaries.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from siri_rl.config import ConfigError
from siri_rl.run_metrics import METRICS_FILE, read_metric_rows
from siri_rl.schedule import LengthSchedule

CHECKPOINT_CARD = "siri_checkpoint.json"  # written last: an export folder without it is incomplete

# TRL log keys (GRPOTrainer._metrics, and the Trainer's loss/grad_norm/learning_rate) copied into metrics.jsonl,
# under our names; averaged over the round's optimizer steps, except *_min (min) and *_max (max).
TRL_LOG_KEYS = {
    "entropy": "entropy",
    "clip_ratio/low_mean": "clip_ratio_low",
    "clip_ratio/high_mean": "clip_ratio_high",
    "clip_ratio/region_mean": "clip_ratio_region",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "frac_reward_zero_std": "frac_reward_zero_std",
    # vLLM importance sampling (use_vllm only): pi_train / pi_vllm after truncation, and |log pi_train - log pi_vllm|
    # per token (trl/trainer/grpo_trainer.py:2860-2896, logged once per generation batch).
    "sampling/importance_sampling_ratio/min": "importance_sampling_ratio_min",
    "sampling/importance_sampling_ratio/mean": "importance_sampling_ratio_mean",
    "sampling/importance_sampling_ratio/max": "importance_sampling_ratio_max",
    "sampling/sampling_logp_difference/mean": "sampling_logp_difference_mean",
    "sampling/sampling_logp_difference/max": "sampling_logp_difference_max",
}


@dataclass
class RolloutCap:
    """State shared by the callback (which sets the cap) and the reward (which must score against the same cap)."""

    schedule: LengthSchedule
    round: int = 0
    max_len: int = 0
    # Rollout statistics of rounds whose metrics row is not written yet: {round: {...}}.
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens_generated: int = 0

    def set_round(self, r: int) -> None:
        self.round = r
        self.max_len = self.schedule(r)


def _round_stats_from_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, name in TRL_LOG_KEYS.items():
        values = [float(x[key]) for x in logs if key in x and x[key] is not None]
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[name] = (min(values) if name.endswith("_min") else max(values) if name.endswith("_max")
                         else sum(values) / len(values))
    return out


def read_metrics_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` in file order (none if there is no file), through the one tolerant reader
    (:func:`siri_rl.run_metrics.read_metric_rows`: a half-written last line is skipped); a damaged line elsewhere
    is a :class:`ConfigError`."""
    try:
        return read_metric_rows(path)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (hours past 24 too: a 1920-round run takes days)."""
    m, s = divmod(int(max(0.0, seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


def write_checkpoint_card(path: Path, name: str, row: dict[str, Any], schedule: LengthSchedule) -> None:
    """``siri_checkpoint.json`` (the round's metrics row) and the model card ``README.md`` of an exported
    checkpoint. ``siri_checkpoint.json`` goes last, each file atomically: its presence means the export is
    complete (a kill during ``save_model`` leaves a folder without it)."""
    kind = ("SIRI-low (end of compression)" if "compressed" in name
            else "SIRI-high (end of expansion)" if "expanded" in name else "Final")
    metrics = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in row.items())
    card = (
        f"---\ntags: [siri, grpo, trl]\n---\n# {name}\n\n{kind} checkpoint of a SIRI run "
        f"(Wen et al. 2025, arXiv 2509.25176), taken after rollout round {row['step']} "
        f"with rollout cap L = {row['max_len']} tokens ({schedule.kind} schedule, "
        f"L_max {schedule.l_max}, L_min {schedule.l_min}, "
        f"cycle {schedule.cycle}).\n\n| metric at this round | value |\n|---|---|\n{metrics}\n"
    )
    for file, text in (("README.md", card), (CHECKPOINT_CARD, json.dumps(row, indent=2) + "\n")):
        tmp = path / (file + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path / file)


class LengthScheduleCallback(TrainerCallback):
    """Drives ``GRPOTrainer``'s rollout cap from a SIRI :class:`~siri_rl.schedule.LengthSchedule`, per rollout
    round, and writes the run directory (``metrics.jsonl``, ``checkpoints/<cycleK-compressed|expanded>``).

    Args:
        cap: shared state with the schedule (also given to :class:`~siri_rl.engines.trl.reward.LengthCappedReward`).
        run_dir: the ``siri train --output-dir`` directory.
        num_rounds: total rollout rounds of the run (trough/peak checkpoints are derived from it).
        save_every: also ask the Trainer for a resumable checkpoint every this many rounds (None: only at
            trough/peak rounds, the last round and ``stop_after_rounds``).
        stop_after_rounds: stop training once this many rounds are complete (a resumable checkpoint is saved).
        progress: show the rounds on the main process: a rich progress bar with the cap and accuracy per round on
            a terminal; where output goes to a file (a cluster job log) a line at most every
            :attr:`progress_log_every_s` seconds and after the last round, as ``siri eval`` does.
    """

    progress_log_every_s = 30.0  # seconds between progress lines when the output is not a terminal

    def __init__(
        self,
        cap: RolloutCap,
        run_dir: str | Path,
        *,
        num_rounds: int,
        save_every: int | None = None,
        stop_after_rounds: int | None = None,
        progress: bool = False,
    ) -> None:
        self.cap = cap
        self.run_dir = Path(run_dir)
        self.num_rounds = num_rounds
        self.save_every = save_every
        self.stop_after_rounds = stop_after_rounds
        self.checkpoints = dict(cap.schedule.checkpoints(num_rounds))  # {round: name}
        self.trainer: Any = None
        self._micro = 0
        self._logs: list[dict[str, float]] = []
        self._last_row: dict[str, Any] | None = None
        self._wall0 = time.time()
        self._wall_offset = 0.0
        self._progress: Any = None  # rich Progress (terminal)
        self._task: Any = None
        self._log_console: Any = None  # rich Console for progress lines (not a terminal)
        self._log_last: float | None = None
        self._log_start = (0.0, 0)  # (monotonic s, rounds done) when this process started training
        self._show_progress = progress

    # -- wiring ---------------------------------------------------------------------------------------------
    def bind(self, trainer: Any) -> LengthScheduleCallback:
        """Attach to ``trainer`` (the callback sets its generation cap, so it needs the instance)."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    @property
    def micro_steps_per_round(self) -> int:
        args = self.trainer.args
        return args.steps_per_generation * args.num_iterations

    def round_of(self, micro_step: int) -> int:
        return micro_step // self.micro_steps_per_round

    @property
    def current_round(self) -> int:
        """The round being trained now (0-based; ``num_rounds`` once all are done)."""
        return min(self.round_of(self._micro), self.num_rounds) if self.trainer is not None else 0

    def _apply_cap(self, args) -> None:
        r = self.round_of(self._micro)
        if r >= self.num_rounds:
            return
        self.cap.set_round(r)
        L = self.cap.max_len
        t = self.trainer
        if getattr(t, "generation_config", None) is not None:
            t.generation_config.max_new_tokens = L
        if isinstance(getattr(t, "generation_kwargs", None), dict) and "max_new_tokens" in t.generation_kwargs:
            t.generation_kwargs["max_new_tokens"] = L
        if getattr(t, "vllm_generation", None) is not None:
            t.vllm_generation.max_completion_length = L

    # -- Trainer events -------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        # On resume the Trainer has restored global_step; resumable checkpoints are only taken at round
        # boundaries, so the micro-step count (and TRL's own regeneration, which restarts with an empty buffer)
        # lines up with a round start.
        self._micro = state.global_step * args.gradient_accumulation_steps
        # Running totals continue from the last row (on resume, train() has already dropped the rounds after the
        # checkpoint, on the main process, before every process gets here).
        rows = self._rows()
        self._wall_offset = float(rows[-1]["wall_s"]) if rows else 0.0
        self._wall0 = time.time()
        self.cap.tokens_generated = int(rows[-1]["tokens_generated"]) if rows else 0
        self._apply_cap(args)
        if self._show_progress and state.is_world_process_zero:
            self._start_progress()

    def on_substep_end(self, args, state, control, **kwargs):
        self._micro += 1
        self._apply_cap(args)

    def on_step_end(self, args, state, control, **kwargs):
        self._micro += 1
        self._apply_cap(args)
        if self._micro % self.micro_steps_per_round == 0:
            done = self._micro // self.micro_steps_per_round  # rounds complete
            last = done - 1
            if self.stop_after_rounds is not None and done >= self.stop_after_rounds:
                control.should_training_stop = True
                control.should_save = True
            if (self.save_every and done % self.save_every == 0) or done == self.num_rounds:
                control.should_save = True
            if last in self.checkpoints:
                control.should_save = True  # keep a resumable point next to every exported checkpoint
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" not in logs:
            self._logs.append(dict(logs))
        done = self._micro // self.micro_steps_per_round
        for r in sorted(k for k in self.cap.pending if k < done):
            self._finish_round(r, state)

    def on_train_end(self, args, state, control, **kwargs):
        done = self._micro // self.micro_steps_per_round
        for r in sorted(k for k in self.cap.pending if k < done):
            self._finish_round(r, state)
        rows = self._rows()
        last = self._last_row or (rows[-1] if rows else None)
        # The final policy, unless the last round already is a trough/peak checkpoint (constant-cap baselines
        # have none, and their final model is what gets compared). Every process takes part in the export.
        if last is not None and done >= self.num_rounds and (self.num_rounds - 1) not in self.checkpoints:
            self.export_checkpoint("final", last)
        self.close_progress()

    # -- progress -------------------------------------------------------------------------------------------
    def _start_progress(self) -> None:
        from rich import get_console

        console = get_console()
        done = self.round_of(self._micro)
        self._log_start = (time.monotonic(), done)
        if not console.is_terminal:  # a bar cannot redraw in a file: print lines instead
            self._log_console = console
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]SIRI rounds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console,
        )
        self._progress.start()
        self._task = self._progress.add_task("rounds", total=self.num_rounds, completed=done, info="")

    def _show_round(self, row: dict[str, Any]) -> None:
        done = row["step"] + 1
        info = f"L={row['max_len']} acc={row['accuracy']:.2f} len={row['completion_len_mean']:.0f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=done, info=info)
            return
        if self._log_console is None:
            return
        now = time.monotonic()
        end = min(self.num_rounds, self.stop_after_rounds or self.num_rounds)
        if self._log_last is not None and now - self._log_last < self.progress_log_every_s and done < end:
            return
        self._log_last = now
        t0, done0 = self._log_start
        elapsed = now - t0
        eta = _clock(elapsed / (done - done0) * (self.num_rounds - done)) if done > done0 else "?"
        self._log_console.print(f"SIRI round {done}/{self.num_rounds}: {info}, elapsed {_clock(elapsed)}, "
                                f"eta {eta}", highlight=False, markup=False, soft_wrap=True)

    def close_progress(self) -> None:
        """End the progress bar (its last line and a newline; the terminal cursor is shown again). Idempotent;
        also called when training is interrupted."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- run directory --------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def _rows(self) -> list[dict[str, Any]]:
        return read_metrics_rows(self.metrics_path)

    def _finish_round(self, r: int, state) -> None:
        stats = self.cap.pending.pop(r)
        row = {
            "step": r,
            "max_len": stats.pop("max_len"),
            "phase": self.cap.schedule.phase(r),
            **stats,
            **_round_stats_from_logs(self._logs),
            "optimizer_step": state.global_step,
            "wall_s": round(self._wall_offset + time.time() - self._wall0, 3),
        }
        self._logs = []
        self._last_row = row
        if state.is_world_process_zero:  # one writer; the rollout statistics are already summed over processes
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if r in self.checkpoints:
            self.export_checkpoint(self.checkpoints[r], row)  # every process: sharded weights are gathered
        if state.is_world_process_zero:
            self._show_round(row)

    def export_checkpoint(self, name: str, row: dict[str, Any]) -> Path:
        """Save the current policy as a Hugging Face model (+ tokenizer + model card) in ``checkpoints/<name>``.

        Called on every process: ``Trainer.save_model`` gathers DeepSpeed ZeRO-3 / FSDP (full state dict) weights
        and writes from the main process only. ``_internal_call=True`` keeps a ``push_to_hub`` run from pushing
        every trough/peak checkpoint.
        """
        path = self.run_dir / "checkpoints" / name
        self.trainer.save_model(str(path), _internal_call=True)
        if not self.trainer.is_world_process_zero():
            return path
        path.mkdir(parents=True, exist_ok=True)
        write_checkpoint_card(path, name, row, self.cap.schedule)
        return path
