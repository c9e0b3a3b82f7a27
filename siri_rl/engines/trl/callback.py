"""The SIRI length schedule inside TRL's GRPOTrainer: a TrainerCallback that sets the rollout cap per rollout round.

Why rollout rounds and not optimizer steps (SIRI §4.3, TRL 1.x ``GRPOTrainer._prepare_inputs``): TRL generates
one *generation batch* every ``steps_per_generation * num_iterations`` micro-steps (``training_step`` calls) and
serves slices of that buffered batch in between. A cap changed per optimizer step would be ignored whenever
``steps_per_generation > gradient_accumulation_steps`` or ``num_iterations > 1``. So the callback counts
micro-steps from the Trainer's own events (``on_step_begin`` before the first micro-step of an optimizer step,
``on_substep_end``/``on_step_end`` after each one) and, before every micro-step, sets the cap of the round that
micro-step belongs to: ``round = micro_step // (steps_per_generation * num_iterations)`` (TRL generates when
``_step % (steps_per_generation * num_iterations) == 0``, trl/trainer/grpo_trainer.py:1538-1539). The cap is written
by :func:`set_rollout_cap` into the trainer attributes TRL reads at generation time; it never goes into
``GRPOConfig.generation_kwargs``.

The same callback finalises one ``metrics.jsonl`` row per round through :mod:`siri_rl.run_dir` (rollout
statistics from the reward function, loss-side statistics such as entropy and clip ratios from TRL's logs),
exports ``save_pretrained`` checkpoints at each cycle's trough and peak (SIRI-low / SIRI-high), and asks the
Trainer for resumable checkpoints at round boundaries.

Two closed-loop parts, both driven from round r's rollout statistics:

* ``schedule.kind: adaptive`` (:class:`siri_rl.adaptive.AdaptiveSchedule`): the cap of round r+1 is decided in
  ``on_step_end`` of round r's last optimizer step, from round r's training accuracy, which the reward left in
  :attr:`RolloutCap.pending` at the round's first micro-step (TRL scores a generation batch when it generates it,
  trl/trainer/grpo_trainer.py:1538-1546), and *before* the cap of round r+1 is set (the same ``on_step_end``;
  transformers/trainer.py:1783 calls it after the optimizer step, before any further micro-step). Troughs and
  peaks are exported where the controller turned. On resume the controller state is rebuilt from the kept
  ``metrics.jsonl`` rows (:meth:`~siri_rl.adaptive.AdaptiveSchedule.resume`) and checked against the copy each
  Trainer checkpoint holds (``siri_adaptive_state.json``).
* the no-learning guard (:class:`siri_rl.guard.NoLearningGuard`): checked on every finished row; ``warn`` prints
  one line per episode, ``stop`` asks the Trainer for a checkpoint and a stop in ``on_log``, which runs before the
  save and stop checks of the same step (``log`` at transformers/trainer.py:2091, the save at 2101-2103, the
  stop at 1797).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from siri_rl.adaptive import AdaptiveSchedule, Decision
from siri_rl.config import ConfigError
from siri_rl.engines.protocol import EngineError
from siri_rl.engines.trl.cap import RolloutCap, set_rollout_cap
from siri_rl.engines.trl.progress import RoundProgress
from siri_rl.guard import NoLearningGuard
from siri_rl.results import replace_atomically
from siri_rl.run_dir import (
    CHECKPOINTS,
    METRICS_FILE,
    append_metrics_row,
    truncate_metrics,
    write_checkpoint_card,
)
from siri_rl.schedule import LengthSchedule, ScheduleError

# The adaptive controller's state in every Trainer checkpoint (RUN/trainer/checkpoint-N/), next to TRL's files.
ADAPTIVE_STATE_FILE = "siri_adaptive_state.json"

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


def save_policy(trainer: Any, path: str | Path) -> None:
    """``trainer.save_model(path)`` on every process (it gathers DeepSpeed ZeRO-3 / FSDP full-state-dict weights
    and writes from the main process only), without pushing to the Hub.

    ``_internal_call=True`` is transformers' private flag (transformers/trainer.py:3775, read at 3830: a
    ``push_to_hub`` run pushes on every call without it); the Trainer's own checkpoint saves pass it too (3074).
    There is no public way to save without a push short of copying ``save_model``; a test fails if the flag
    goes (tests/test_train_trl.py::test_save_model_still_takes_the_private_no_push_flag)."""
    trainer.save_model(str(path), _internal_call=True)


def _round_stats_from_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, name in TRL_LOG_KEYS.items():
        values = [float(x[key]) for x in logs if key in x and x[key] is not None]
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[name] = (min(values) if name.endswith("_min") else max(values) if name.endswith("_max")
                         else sum(values) / len(values))
    return out


def _decision_fields(decision: Decision) -> dict[str, Any]:
    """The adaptive decision's fields of a row, without ``phase`` (the row has it in its usual place)."""
    return {k: v for k, v in decision.row_fields().items() if k != "phase"}


def write_export_cards(path: Path, name: str, row: dict[str, Any],
                       schedule: LengthSchedule | AdaptiveSchedule) -> None:
    """The model card ``README.md`` of an exported checkpoint, then its ``siri_checkpoint.json``
    (:func:`siri_rl.run_dir.write_checkpoint_card`, last: its presence means the export is complete)."""
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
    tmp = path / "README.md.tmp"
    tmp.write_text(card)
    os.replace(tmp, path / "README.md")
    # The same source string from the export during training and from a Trainer checkpoint after a kill.
    write_checkpoint_card(path, name=name, step=row["step"], max_len=row["max_len"], phase=row.get("phase"),
                          source=f"trl GRPOTrainer, optimizer step {row.get('optimizer_step')}", metrics=row)


class LengthScheduleCallback(TrainerCallback):
    """Drives ``GRPOTrainer``'s rollout cap from a SIRI :class:`~siri_rl.schedule.LengthSchedule` (or the
    closed-loop :class:`~siri_rl.adaptive.AdaptiveSchedule`), per rollout round, runs the no-learning guard, and
    writes the run directory (``metrics.jsonl``, ``checkpoints/<cycleK-compressed|expanded>``).

    Args:
        cap: shared state with the schedule (also given to :class:`~siri_rl.engines.trl.reward.LengthCappedReward`).
        run_dir: the ``siri train --output-dir`` directory.
        num_rounds: total rollout rounds of the run (the cyclic kinds' trough/peak checkpoints are derived from
            it; the adaptive kind's are where its controller turns).
        save_every: also ask the Trainer for a resumable checkpoint every this many rounds (None: only at
            trough/peak rounds, the last round and ``stop_after_rounds``).
        stop_after_rounds: stop training once this many rounds are complete (a resumable checkpoint is saved).
        progress: show the rounds on the main process: a rich progress bar with the cap and accuracy per round on
            a terminal; where output goes to a file (a cluster job log) a line at most every
            :attr:`~siri_rl.engines.trl.progress.RoundProgress.log_every_s` seconds and after the last round, as ``siri eval`` does.
        rows: the ``metrics.jsonl`` rows kept under the resume policy, if the caller read the file (``siri train``
            does, once per start); None: the callback applies :func:`siri_rl.run_dir.truncate_metrics` itself
            at ``on_train_begin``. :attr:`rows` then holds every row of the run, this start's appended.
        guard: the no-learning guard (default: ``NoLearningGuard()``, mode ``warn``). Its verdict goes into each
            row as ``guard`` (``ok``, ``starved``: a starved round that did not trigger it, ``warn``, ``stop``);
            after a ``stop`` verdict training stops with a resumable checkpoint and :attr:`guard_stop` holds the
            message (the caller raises :class:`~siri_rl.engines.NoLearningStop`).
    """

    def __init__(
        self,
        cap: RolloutCap,
        run_dir: str | Path,
        *,
        num_rounds: int,
        save_every: int | None = None,
        stop_after_rounds: int | None = None,
        progress: bool = False,
        rows: list[dict[str, Any]] | None = None,
        guard: NoLearningGuard | None = None,
    ) -> None:
        self.cap = cap
        self.guard = guard if guard is not None else NoLearningGuard()
        self.guard_state: dict[str, Any] = self.guard.initial_state()
        self.guard_stop: str | None = None  # the guard's message once it stopped the run
        # Set by the SIGINT handler around trainer.train (interrupt.py): a KeyboardInterrupt that code in between
        # swallowed (Python only prints "Exception ignored" for one raised in a finalizer) is raised again here.
        self.interrupted = False
        self.rows = rows
        self.run_dir = Path(run_dir)
        self.num_rounds = num_rounds
        self.save_every = save_every
        self.stop_after_rounds = stop_after_rounds
        # {round: name}: known in advance for the cyclic kinds, added as the adaptive controller turns.
        self.checkpoints = {} if cap.adaptive else dict(cap.schedule.checkpoints(num_rounds))
        self.trainer: Any = None
        self._micro = 0
        self._logs: list[dict[str, float]] = []
        self._wall0 = time.time()
        self._wall_offset = 0.0
        self.progress: RoundProgress | None = None
        self._show_progress = progress

    # -- wiring ---------------------------------------------------------------------------------------------
    def bind(self, trainer: Any) -> LengthScheduleCallback:
        """Attach to ``trainer`` (the callback sets its generation cap, so it needs the instance, as TRL's own
        ``LogCompletionsCallback(trainer)`` does). The cap is set once here, so a TRL without the attributes
        :func:`set_rollout_cap` writes fails now, not after the first round."""
        self.trainer = trainer
        set_rollout_cap(trainer, self.cap.cap_of(0) if not self.cap.adaptive else self.cap.schedule.l_max)
        self.cap.group_size = int(trainer.args.num_generations)
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
        # TRL's global_step when this round's batch is generated (its first micro-step), for the reward's check.
        self.cap.set_round(r, round_start_step=r * self.micro_steps_per_round // args.gradient_accumulation_steps)
        set_rollout_cap(self.trainer, self.cap.max_len)

    # -- Trainer events -------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        # On resume the Trainer has restored global_step; resumable checkpoints are only taken at round
        # boundaries, so the micro-step count (and TRL's own regeneration, which restarts with an empty buffer)
        # lines up with a round start.
        self._micro = state.global_step * args.gradient_accumulation_steps
        if self._micro % self.micro_steps_per_round:
            raise ConfigError(f"resumed at optimizer step {state.global_step}, inside a rollout round "
                              f"({self.micro_steps_per_round} micro-steps); resume from a checkpoint of a round end")
        if self.rows is None:  # an own GRPOTrainer script: the run directory's resume policy, applied here
            if self._micro == 0 and self.metrics_path.exists():  # a fresh start must not mix with another run
                raise ConfigError(f"{self.run_dir} already holds a run ({METRICS_FILE}): pick a new run_dir, or "
                                  f"continue it with trainer.train(resume_from_checkpoint=...)")
            self.rows = truncate_metrics(self.metrics_path, self.round_of(self._micro),
                                         rewrite=state.is_world_process_zero)
        rows = self.rows  # running totals continue from the last kept row
        self._wall_offset = float(rows[-1].get("wall_s", 0.0)) if rows else 0.0
        self._wall0 = time.time()
        self.cap.tokens_generated = int(rows[-1].get("tokens_generated", 0)) if rows else 0
        # The guard's and the controller's states are functions of the kept rows (siri_rl.guard, siri_rl.adaptive).
        self.guard_state = self.guard.replay(rows)[-1].state if rows else self.guard.initial_state()
        if self.cap.adaptive:
            self._resume_adaptive(args, state, rows)
        self._apply_cap(args)
        if self._show_progress and state.is_world_process_zero:
            end = min(self.num_rounds, self.stop_after_rounds or self.num_rounds)
            self.progress = RoundProgress(self.num_rounds, end)
            self.progress.start(self.round_of(self._micro))

    def _raise_if_interrupted(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def on_substep_end(self, args, state, control, **kwargs):
        self._raise_if_interrupted()
        self._micro += 1
        self._apply_cap(args)

    def on_step_end(self, args, state, control, **kwargs):
        self._raise_if_interrupted()
        self._micro += 1
        if self._micro % self.micro_steps_per_round:  # inside a round
            self._apply_cap(args)
            return control
        done = self._micro // self.micro_steps_per_round  # rounds complete
        last = done - 1
        # Round `last` is over: the adaptive controller decides the next round's cap before it is applied.
        decision = self.cap.decide(last)
        if decision is not None and decision.checkpoint is not None:
            self.checkpoints[last] = decision.checkpoint
        self._apply_cap(args)
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
            self._finish_round(r, state, control)

    def on_save(self, args, state, control, **kwargs):
        # Trainer._save_checkpoint has written checkpoint-<global_step> (transformers/trainer.py:3074-3114) before
        # on_save (2101-2103); the controller state that continues from it goes beside TRL's files.
        if self.cap.adaptive_state is not None and state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / ADAPTIVE_STATE_FILE
            if path.parent.is_dir():
                state_text = json.dumps(self.cap.adaptive_state) + "\n"
                replace_atomically(lambda tmp: tmp.write_text(state_text), path)

    def on_train_end(self, args, state, control, **kwargs):
        done = self._micro // self.micro_steps_per_round
        for r in sorted(k for k in self.cap.pending if k < done):
            self._finish_round(r, state)
        last = self.rows[-1] if self.rows else None
        # The final policy, unless the last round already is a trough/peak checkpoint (constant-cap baselines
        # have none, and their final model is what gets compared). Every process takes part in the export.
        if last is not None and done >= self.num_rounds and (self.num_rounds - 1) not in self.checkpoints:
            self.export_checkpoint("final", last)
        self.close_progress()

    def close_progress(self) -> None:
        """End the progress bar; idempotent, also called when training is interrupted."""
        if self.progress is not None:
            self.progress.close()

    # -- run directory --------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def _resume_adaptive(self, args, state, rows: list[dict[str, Any]]) -> None:
        """The controller state after the kept rows, checked against the one the resumed checkpoint saved."""
        schedule = self.cap.schedule
        assert isinstance(schedule, AdaptiveSchedule)
        try:
            self.cap.adaptive_state = schedule.resume(rows)
        except ScheduleError as err:
            raise ConfigError(f"--resume: {self.metrics_path}: {err}") from None
        if state.global_step:
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / ADAPTIVE_STATE_FILE
            if saved.is_file() and json.loads(saved.read_text()) != self.cap.adaptive_state:
                raise ConfigError(f"--resume: the adaptive schedule state rebuilt from {self.metrics_path} differs "
                                  f"from the one saved in {saved}: the file was edited or belongs to another run")
        self.checkpoints = dict(AdaptiveSchedule.checkpoints(self.cap.adaptive_state))

    def _finish_round(self, r: int, state, control=None) -> None:
        stats = self.cap.pending.pop(r)
        decision: Decision | None = stats.pop("decision", None)
        if self.cap.adaptive and decision is None:
            raise EngineError(f"round {r} ended without the adaptive schedule's decision (on_step_end of its last "
                              "optimizer step did not run): this Trainer drives callbacks differently")
        row = {
            "step": r,
            "max_len": stats.pop("max_len"),
            "phase": decision.phase if decision is not None else self.cap.schedule.phase(r),
            **stats,
            **(_decision_fields(decision) if decision is not None else {}),
            **_round_stats_from_logs(self._logs),
            "optimizer_step": state.global_step,
            "wall_s": round(self._wall_offset + time.time() - self._wall0, 3),
        }
        self._logs = []
        self._check_guard(row, state, control)
        assert self.rows is not None
        self.rows.append(row)
        if state.is_world_process_zero:  # one writer; the rollout statistics are already over all processes
            append_metrics_row(self.metrics_path, row)
        if r in self.checkpoints:
            self.export_checkpoint(self.checkpoints[r], row)  # every process: sharded weights are gathered
        if state.is_world_process_zero and self.progress is not None:
            self.progress.show(row)

    def _check_guard(self, row: dict[str, Any], state, control) -> None:
        """Run the no-learning guard on a finished row: record its verdict in the row, print a warning once per
        episode (main process), and on ``stop`` ask the Trainer for a checkpoint and a stop at this round end."""
        if self.guard.mode == "off":
            return
        verdict = self.guard.check(self.guard_state, row)
        self.guard_state = verdict.state
        row["guard"] = verdict.action if verdict.action != "ok" else "starved" if verdict.starved else "ok"
        if verdict.action == "ok":
            return
        if verdict.action == "stop" and row["step"] + 1 < self.num_rounds:
            self.guard_stop = verdict.message
            if control is not None:
                control.should_save = True
                control.should_training_stop = True
        if state.is_world_process_zero:
            if self.progress is not None and self.progress.console.is_terminal:  # above the live bar
                self.progress.print(f"warning: {verdict.message}")
            else:  # a log or a pipe: warnings on stderr, the round lines and results on stdout
                from rich.console import Console

                Console(stderr=True).print(f"warning: {verdict.message}", highlight=False, markup=False,
                                           soft_wrap=True)

    def export_checkpoint(self, name: str, row: dict[str, Any]) -> Path:
        """Save the current policy as a Hugging Face model (+ tokenizer + model card) in ``checkpoints/<name>``.

        Called on every process (:func:`save_policy`: sharded weights are gathered, the main process writes).
        """
        path = self.run_dir / CHECKPOINTS / name
        save_policy(self.trainer, path)
        if not self.trainer.is_world_process_zero():
            return path
        path.mkdir(parents=True, exist_ok=True)
        write_export_cards(path, name, row, self.cap.schedule)
        return path
