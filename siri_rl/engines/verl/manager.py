"""The agent-loop manager that attaches SIRI's length cap L to every training rollout round (SIRI §4.3).

veRL's trainer calls ``AgentLoopManager.generate_sequences(batch)`` once per rollout round with
``batch.meta_info["global_steps"]`` set, and once per validation with ``meta_info["validate"] = True``. This
subclass (selected with ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class``) writes
``L = schedule(global_steps - 1)`` into the batch field ``siri_max_len`` of training batches only — veRL counts
steps from 1, our schedule counts rounds from 0 — and the ``siri_single_turn`` agent loop turns it into the
request's ``max_tokens``.

It also records, per training round, L and the fraction of responses cut by L (veRL's own
``response_length/clip_ratio`` compares against the padded width ``response_length`` = L_max, which is wrong under
a moving cap): one JSON line per round in ``siri.metrics_path`` (the run directory's ``metrics.jsonl``, with the
rollout fields of :func:`siri_rl.run_dir.rollout_stats` that the TRL engine writes too), and the
same numbers under ``siri/*`` in the rollout timing dict — the only channel from the rollout into veRL's logger, so
wandb/console show them as ``timing_s/siri/max_len`` etc.

The schedule and the metrics path come from the config section ``siri`` that ``siri train --engine verl`` adds
(``+siri.schedule.kind=cosine +siri.schedule.l_max=16384 ...``).

Two run-level duties ride on the same per-round call, because it is the one hook into veRL's training loop:

* Checkpoints (:mod:`siri_rl.engines.verl.checkpoints`): veRL can only save every ``trainer.save_freq`` steps, so
  before each round's update the manager sets ``trainer.save_freq`` on the config object veRL shares with it
  (``ray_trainer.py:960`` passes ``config=self.config``; the save check at ``ray_trainer.py:1704-1707`` reads it
  after the update of that same step), making veRL save exactly the planned steps; it then checks that the last
  planned save happened and prunes older saves.
* Resume (:mod:`siri_rl.run_dir`): on its first training round, at veRL's ``global_steps = g``, the rows of
  rounds ``g-1`` and later are dropped (veRL redoes them) and the running totals continue from the last kept row;
  the guard's state, the closed-loop schedule's state and its trough/peak saves are rebuilt from the kept rows.

And two closed-loop parts, on the same hook:

* The closed-loop schedule (``siri.schedule.kind: adaptive``, :mod:`siri_rl.adaptive`): round r's cap is the
  controller's ``state["max_len"]``; veRL hands back round r's batch scored by the agent loop's reward
  (``rm_scores``, ``experimental/agent_loop/agent_loop.py:1097-1099``) before it updates on it, and calls again
  for round r+1 only after the update (``ray_trainer.py:1513`` generate, ``:1690`` update, ``:1704-1712`` save
  check, ``:1805`` next step), so the manager calls ``step(state, r, accuracy_r)`` right after generating round
  r: the cap of round r+1 depends on rounds <= r only. A colocated reward model scores the batch after the manager
  returns (``ray_trainer.py:1563-1564``; veRL then passes no reward workers, ``:949, 958-963``): refused. A
  turning point of round r is saved at this same step (``trainer.save_freq = 1`` before the save check of
  ``ray_trainer.py:1704``) and named in the row (``checkpoint``), where ``siri export`` reads it.
* The no-learning guard (``siri.guard``, :mod:`siri_rl.guard`) checks every row: ``warn`` prints its line once an
  episode (to veRL's log) and records it in the row (``guard``, ``guard_message``); ``stop`` makes veRL save this
  step and raises :class:`NoLearningError` at the start of the next training round, once the save is on disk.
  veRL's ``fit`` has no early-stop hook (``is_last_step`` is fixed before generation, ``ray_trainer.py:1507``,
  and only it returns, ``:1808-1814``), so the exception is the way out; it ends ``main_ppo`` with a non-zero
  status and ``siri train`` reports its line. A stop at the run's last round ends normally and ``siri train``
  reports it from the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from verl.experimental.agent_loop import AgentLoopManager
from verl.protocol import DataProto
from verl.utils.ray_utils import auto_await

from siri_rl.adaptive import KIND as ADAPTIVE
from siri_rl.adaptive import AdaptiveSchedule, adaptive_from_dict
from siri_rl.engines.verl.checkpoints import exports_from_rows, prune_checkpoints, save_plan
from siri_rl.engines.verl.reward import ENDED_KEY, MAX_LEN_KEY
from siri_rl.engines.verl.validation import validation_rows
from siri_rl.guard import NoLearningGuard, guard_from_dict
from siri_rl.metrics import rollout_stats
from siri_rl.run_dir import append_metrics_row, append_validation_rows, truncate_metrics, truncate_validation
from siri_rl.schedule import SCHEDULE_KEYS, LengthSchedule, schedule_from_dict


class NoLearningError(RuntimeError):
    """The no-learning guard (``training.guard: stop``) ended the run; its checkpoint is saved (resumable)."""


def schedule_from_verl_config(config: DictConfig) -> LengthSchedule | AdaptiveSchedule:
    """The length schedule of the ``siri.schedule`` section of a veRL config: open-loop, or the closed-loop
    :class:`~siri_rl.adaptive.AdaptiveSchedule` for ``kind: adaptive``. The recipe lists every key of both
    (null when unused); the nulls of the other family's keys are dropped, a set one is refused by its parser."""
    siri = config.get("siri") if isinstance(config, DictConfig) else None
    if siri is None or siri.get("schedule") is None:
        raise ValueError(
            "the veRL config has no siri.schedule section: launch through `siri train --engine verl`, or add "
            "+siri.schedule.kind=cosine +siri.schedule.l_max=16384 +siri.schedule.l_min=8192 +siri.schedule.cycle=640"
        )
    section = OmegaConf.to_container(siri.schedule, resolve=True)
    if str(section.get("kind")).strip().lower() == ADAPTIVE:
        # null: the adaptive default (patience None is cycle // 4, make_adaptive_schedule)
        return adaptive_from_dict({k: v for k, v in section.items() if v is not None})
    return schedule_from_dict({k: v for k, v in section.items() if k in SCHEDULE_KEYS or v is not None})


def guard_from_verl_config(config: DictConfig) -> NoLearningGuard:
    """The no-learning guard of ``siri.guard`` (a mode or ``{mode, rounds, min_signal_frac, max_clipped_frac}``);
    none: the default, warn."""
    siri = config.get("siri") if isinstance(config, DictConfig) else None
    section = siri.get("guard") if siri is not None else None
    if isinstance(section, DictConfig):
        section = {k: v for k, v in OmegaConf.to_container(section, resolve=True).items() if v is not None}
    return guard_from_dict(section)


def round_of_global_step(global_steps: int) -> int:
    """The 0-based rollout round of veRL's 1-based ``global_steps``."""
    if int(global_steps) < 1:
        raise ValueError(f"veRL training steps count from 1, got global_steps={global_steps}")
    return int(global_steps) - 1


def training_global_steps(batch: DataProto) -> int | None:
    """veRL's ``global_steps`` of a training batch; None for a validation batch."""
    if batch.meta_info.get("validate", False):
        return None
    global_steps = batch.meta_info.get("global_steps")
    if global_steps is None:
        raise ValueError(
            "a training batch reached the SIRI agent-loop manager without meta_info['global_steps']"
        )
    return int(global_steps)


def attach_max_len(batch: DataProto, schedule: Callable[[int], int]) -> int | None:
    """Write this round's L (``schedule(round)``: a :class:`~siri_rl.schedule.LengthSchedule`, or the closed-loop
    controller's cap) into ``batch.non_tensor_batch["siri_max_len"]`` (one entry per sample) and return it;
    validation batches are left untouched and give None."""
    global_steps = training_global_steps(batch)
    if global_steps is None:
        batch.non_tensor_batch.pop(MAX_LEN_KEY, None)
        return None
    max_len = schedule(round_of_global_step(global_steps))
    batch.non_tensor_batch[MAX_LEN_KEY] = np.full(len(batch), max_len, dtype=object)
    return max_len


def round_metrics(output: DataProto, max_len: int, group_ids: Any = None) -> dict[str, Any]:
    """Per-round numbers from a generated batch (:func:`siri_rl.run_dir.rollout_stats`): response lengths (tokens),
    the fraction of responses cut by the cap L (full L tokens without their own EOS), and, when veRL has already
    scored the batch, accuracy and (given the prompts' ``uid``, ``group_ids``) the share of groups whose rewards
    differ."""
    prompt_width = output.batch["prompts"].shape[-1]
    lengths = [int(x) for x in output.batch["attention_mask"][:, prompt_width:].sum(-1).cpu().tolist()]
    ended = output.non_tensor_batch.get(ENDED_KEY)
    ended = [bool(e) for e in ended] if ended is not None else [False] * len(lengths)
    rewards = None
    if "rm_scores" in output.batch.keys():
        rewards = output.batch["rm_scores"].sum(-1).float().cpu().tolist()
    groups = list(group_ids) if group_ids is not None and rewards is not None else None
    return rollout_stats(lengths, max_len, ended, rewards=rewards, group_ids=groups)


def continue_metrics(metrics_path: Path | None, first_round: int) -> tuple[int, float, list[dict[str, Any]]]:
    """Drop the rows of rounds ``first_round`` and later from an existing metrics.jsonl (veRL redoes them after a
    resume; a fresh run starts at round 0 and keeps none) and return ``(tokens_generated, wall_s)`` of the last
    kept row, where this run's running totals continue (zeros when none is left), and the kept rows."""
    kept = truncate_metrics(metrics_path, first_round) if metrics_path is not None else []
    if not kept:
        return 0, 0.0, []
    return int(kept[-1].get("tokens_generated", 0)), float(kept[-1].get("wall_s", 0.0)), kept


class SiriAgentLoopManager(AgentLoopManager):
    """veRL's :class:`AgentLoopManager` plus SIRI's per-round length cap, its metrics, the no-learning guard and
    the closed-loop schedule's controller."""

    def __init__(self, config: DictConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.schedule = schedule_from_verl_config(config)
        self.guard = guard_from_verl_config(config)
        self.guard_state: dict[str, Any] = self.guard.initial_state()
        self.adaptive = self.schedule if isinstance(self.schedule, AdaptiveSchedule) else None
        self.adaptive_state = self.adaptive.initial_state() if self.adaptive else None
        if self.adaptive and self.reward_loop_worker_handles is None:
            raise ValueError(_NO_AGENT_LOOP_REWARD)
        path = config.siri.get("metrics_path")
        self.metrics_path = Path(path) if path else None
        self.saves = save_plan(self.schedule, int(config.siri.total_rounds), config.siri.get("save_every"))
        self.checkpoint_dir = Path(config.trainer.default_local_dir)
        # tokens_generated and wall_s are running totals of the run, continued on resume (first training round).
        self.tokens_total, self.wall_offset = 0, 0.0
        self.first_round: int | None = None
        self.started = time.time()
        self.stop: tuple[int, str] | None = None  # (global step saved for the guard's stop, its message)
        val = config.siri.get("validation")
        self.validation = val if val is not None and val.get("run_dir") else None  # validation.jsonl rows

    def cap_of(self, step: int) -> int:
        """The cap L (tokens) of rollout round ``step``: the schedule's, or the closed-loop controller's."""
        if self.adaptive_state is None:
            return self.schedule(step)
        if step != self.adaptive_state["round"]:
            raise RuntimeError(
                f"the adaptive schedule has decided the cap of round {self.adaptive_state['round']}, but veRL asks "
                f"for round {step}: it needs every round's row in {self.metrics_path or 'siri.metrics_path'}, in "
                "order (resume only with the run's own metrics.jsonl)"
            )
        return int(self.adaptive_state["max_len"])

    def resume_from(self, kept: list[dict[str, Any]]) -> None:
        """Rebuild the guard's and the controller's states, and the closed-loop turning-point saves, from the rows
        of the rounds before the first one this process trains."""
        verdicts = self.guard.replay(kept)
        self.guard_state = verdicts[-1].state if verdicts else self.guard.initial_state()
        if self.adaptive is not None:
            self.adaptive_state = self.adaptive.resume(kept)
            for global_step, name in exports_from_rows(kept).items():
                self.saves = self.saves.with_export(global_step, name)

    def prepare_round(self, global_steps: int) -> None:
        """Before training step ``global_steps``: on the first one, continue metrics.jsonl from the resumed round
        and rebuild the guard's and controller's states; end the run after a guard stop whose save is on disk;
        check the previous planned save; prune superseded saves; set veRL's ``trainer.save_freq`` for this step."""
        step = round_of_global_step(global_steps)
        if self.first_round is None:
            self.first_round = step
            self.tokens_total, self.wall_offset, kept = continue_metrics(self.metrics_path, step)
            self.resume_from(kept)
        previous = int(global_steps) - 1
        actor = self.checkpoint_dir / f"global_step_{previous}" / "actor"
        if (self.saves.saves_at(previous) or (self.stop and self.stop[0] == previous)) and not actor.is_dir():
            raise RuntimeError(
                f"veRL did not save global_step_{previous} although siri set trainer.save_freq for it "
                f"(no {actor}): this veRL does not read the shared config every step; use verl>=0.9.1,<0.10 and "
                "rerun with --resume"
            )
        if self.stop is not None:
            saved, message = self.stop
            raise NoLearningError(f"{message}; saved global_step_{saved} (resumable)")
        prune_checkpoints(self.checkpoint_dir, self.saves.exports)
        self.config.trainer.save_freq = self.saves.save_freq_at(global_steps)

    def decide(self, row: dict[str, Any], global_steps: int) -> None:
        """After round ``row["step"]`` is generated and scored (before veRL updates on it): the controller's next
        cap and any turning point to save at this step, then the guard's verdict; both recorded in ``row``."""
        step = row["step"]
        if self.adaptive is not None:
            if row.get("accuracy") is None:
                raise RuntimeError(_NO_AGENT_LOOP_REWARD)
            decision = self.adaptive.step(self.adaptive_state, step, row["accuracy"])
            self.adaptive_state = decision.state
            row.update(decision.row_fields())
            if decision.checkpoint:
                row["checkpoint"] = decision.checkpoint
                self.saves = self.saves.with_export(global_steps, decision.checkpoint)
                # veRL's save check of this step comes after its update (ray_trainer.py:1690, 1704-1712)
                self.config.trainer.save_freq = self.saves.save_freq_at(global_steps)
        verdict = self.guard.check(self.guard_state, row)
        self.guard_state = verdict.state
        if verdict.action != "ok":
            row.update(guard=verdict.action, guard_message=verdict.message)
            print(verdict.message, flush=True)  # the TaskRunner's stdout: veRL's log (RUN/verl/train.log)
        if verdict.action == "stop":
            self.stop = (int(global_steps), verdict.message)
            self.config.trainer.save_freq = 1  # save this step, resumable (ray_trainer.py:1704-1712)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Generate one batch; training batches are capped at the round's L (SIRI §4.3)."""
        global_steps = training_global_steps(prompts)
        if global_steps is not None:
            self.prepare_round(global_steps)
        max_len = attach_max_len(prompts, self.cap_of)
        if max_len is None and self.validation is not None:
            return await self.validate(prompts)
        start = time.time()
        output = await super().generate_sequences(prompts)
        if max_len is None:
            return output
        step = round_of_global_step(global_steps)
        row: dict[str, Any] = {"step": step, "global_step": int(global_steps)}
        if self.adaptive is None:
            row["phase"] = self.schedule.phase(step)  # closed loop: the decision's phase, in decide()
        # veRL's trainer gives every prompt a uid before repeating it rollout.n times (ray_trainer.py:1481-1489),
        # and _get_gen_batch keeps it in the generation batch (572-586): the GRPO group of each response. The
        # output keeps the batch order (agent_loop.py:1247-1254: chunks out, concatenated back).
        row.update(round_metrics(output, max_len, prompts.non_tensor_batch.get("uid")))
        self.tokens_total += row["tokens_round"]
        row["tokens_generated"] = self.tokens_total
        row["rollout_s"] = round(time.time() - start, 3)
        row["wall_s"] = round(self.wall_offset + time.time() - self.started, 3)
        self.decide(row, global_steps)
        timing = output.meta_info.setdefault("timing", {})
        timing.update(
            {"siri/max_len": row["max_len"], "siri/clipped_frac": row["clipped_frac"], "siri/round": step}
        )
        if self.metrics_path is not None:  # one manager, in veRL's trainer (ray_trainer.py:960): one writer
            append_metrics_row(self.metrics_path, row)
        return output

    async def validate(self, prompts: DataProto) -> DataProto:
        """One validation batch (:mod:`siri_rl.engines.verl.validation`): capped at ``validation.max_tokens``, its
        rows written to ``RUN/validation.jsonl`` under ``round = global_steps`` (the rounds trained so far), after
        dropping any earlier rows of that round or later (a resume validates its resumed round again)."""
        v = self.validation
        max_tokens = int(v.max_tokens)
        prompts.non_tensor_batch[MAX_LEN_KEY] = np.full(len(prompts), max_tokens, dtype=object)
        output = await super().generate_sequences(prompts)
        prompt_width = output.batch["prompts"].shape[-1]
        lengths = [int(x) for x in output.batch["attention_mask"][:, prompt_width:].sum(-1).cpu().tolist()]
        ended = output.non_tensor_batch.get(ENDED_KEY)
        rewards = (output.batch["rm_scores"].sum(-1).float().cpu().tolist() if "rm_scores" in output.batch.keys()
                   else None)
        round_ = int(prompts.meta_info.get("global_steps", 0))
        rows = validation_rows(
            round_, lengths, [bool(e) for e in ended] if ended is not None else [False] * len(lengths), rewards,
            [str(s) for s in prompts.non_tensor_batch["data_source"]], [str(u) for u in prompts.non_tensor_batch["uid"]],
            n=int(self.config.actor_rollout_ref.rollout.val_kwargs.n), max_tokens=max_tokens,
            temperature=float(v.temperature))
        truncate_validation(v.run_dir, round_ - 1)
        append_validation_rows(v.run_dir, rows)
        return output


_NO_AGENT_LOOP_REWARD = (
    "schedule.kind adaptive needs each round's accuracy when the batch comes back from the agent loop: keep the "
    "recipe's reward (reward.custom_reward_function, scored in veRL's reward loop); a colocated reward model "
    "scores after the rollout (ray_trainer.py:1563-1564) and is not supported with adaptive"
)
