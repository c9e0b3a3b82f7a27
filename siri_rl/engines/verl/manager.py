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
  rounds ``g-1`` and later are dropped (veRL redoes them) and the running totals continue from the last kept row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from verl.experimental.agent_loop import AgentLoopManager
from verl.protocol import DataProto
from verl.utils.ray_utils import auto_await

from siri_rl.engines.verl.checkpoints import prune_checkpoints, save_plan
from siri_rl.engines.verl.reward import ENDED_KEY, MAX_LEN_KEY
from siri_rl.run_dir import append_metrics_row, rollout_stats, truncate_metrics
from siri_rl.schedule import LengthSchedule, schedule_from_dict


def schedule_from_verl_config(config: DictConfig) -> LengthSchedule:
    """The length schedule of the ``siri.schedule`` section of a veRL config."""
    siri = config.get("siri") if isinstance(config, DictConfig) else None
    if siri is None or siri.get("schedule") is None:
        raise ValueError(
            "the veRL config has no siri.schedule section: launch through `siri train --engine verl`, or add "
            "+siri.schedule.kind=cosine +siri.schedule.l_max=16384 +siri.schedule.l_min=8192 +siri.schedule.cycle=640"
        )
    return schedule_from_dict(OmegaConf.to_container(siri.schedule, resolve=True))


def round_of_global_step(global_steps: int) -> int:
    """The 0-based rollout round of veRL's 1-based ``global_steps``."""
    if int(global_steps) < 1:
        raise ValueError(f"veRL training steps count from 1, got global_steps={global_steps}")
    return int(global_steps) - 1


def attach_max_len(batch: DataProto, schedule: LengthSchedule) -> int | None:
    """Write this round's L into ``batch.non_tensor_batch["siri_max_len"]`` (one entry per sample) and return it;
    validation batches are left untouched and give None."""
    if batch.meta_info.get("validate", False):
        batch.non_tensor_batch.pop(MAX_LEN_KEY, None)
        return None
    global_steps = batch.meta_info.get("global_steps")
    if global_steps is None:
        raise ValueError(
            "a training batch reached the SIRI agent-loop manager without meta_info['global_steps']"
        )
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


def continue_metrics(metrics_path: Path | None, first_round: int) -> tuple[int, float]:
    """Drop the rows of rounds ``first_round`` and later from an existing metrics.jsonl (veRL redoes them after a
    resume; a fresh run starts at round 0 and keeps none) and return ``(tokens_generated, wall_s)`` of the last
    kept row, where this run's running totals continue (zeros when none is left)."""
    kept = truncate_metrics(metrics_path, first_round) if metrics_path is not None else []
    if not kept:
        return 0, 0.0
    return int(kept[-1].get("tokens_generated", 0)), float(kept[-1].get("wall_s", 0.0))


class SiriAgentLoopManager(AgentLoopManager):
    """veRL's :class:`AgentLoopManager` plus SIRI's per-round length cap and its metrics."""

    def __init__(self, config: DictConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.schedule = schedule_from_verl_config(config)
        path = config.siri.get("metrics_path")
        self.metrics_path = Path(path) if path else None
        self.saves = save_plan(self.schedule, int(config.siri.total_rounds), config.siri.get("save_every"))
        self.checkpoint_dir = Path(config.trainer.default_local_dir)
        # tokens_generated and wall_s are running totals of the run, continued on resume (first training round).
        self.tokens_total, self.wall_offset = 0, 0.0
        self.first_round: int | None = None
        self.started = time.time()

    def prepare_round(self, global_steps: int) -> None:
        """Before training step ``global_steps``: on the first one, continue metrics.jsonl from the resumed round;
        check the previous planned save; prune superseded saves; set veRL's ``trainer.save_freq`` for this step."""
        step = round_of_global_step(global_steps)
        if self.first_round is None:
            self.first_round = step
            self.tokens_total, self.wall_offset = continue_metrics(self.metrics_path, step)
        previous = int(global_steps) - 1
        actor = self.checkpoint_dir / f"global_step_{previous}" / "actor"
        if self.saves.saves_at(previous) and not actor.is_dir():
            raise RuntimeError(
                f"veRL did not save global_step_{previous} although siri's save plan set trainer.save_freq for it "
                f"(no {actor}): this veRL does not read the shared config every step; use verl>=0.9.1,<0.10 and "
                "rerun with --resume"
            )
        prune_checkpoints(self.checkpoint_dir, self.saves.exports)
        self.config.trainer.save_freq = self.saves.save_freq_at(global_steps)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Generate one batch; training batches are capped at the round's L (SIRI §4.3)."""
        max_len = attach_max_len(prompts, self.schedule)
        global_steps = prompts.meta_info.get("global_steps")
        if max_len is not None:
            self.prepare_round(global_steps)
        start = time.time()
        output = await super().generate_sequences(prompts)
        if max_len is None:
            return output
        step = round_of_global_step(global_steps)
        row = {"step": step, "global_step": int(global_steps), "phase": self.schedule.phase(step)}
        # veRL's trainer gives every prompt a uid before repeating it rollout.n times (ray_trainer.py:1481-1489),
        # and _get_gen_batch keeps it in the generation batch (572-586): the GRPO group of each response. The
        # output keeps the batch order (agent_loop.py:1247-1254: chunks out, concatenated back).
        row.update(round_metrics(output, max_len, prompts.non_tensor_batch.get("uid")))
        self.tokens_total += row["tokens_round"]
        row["tokens_generated"] = self.tokens_total
        row["rollout_s"] = round(time.time() - start, 3)
        row["wall_s"] = round(self.wall_offset + time.time() - self.started, 3)
        timing = output.meta_info.setdefault("timing", {})
        timing.update(
            {"siri/max_len": row["max_len"], "siri/clipped_frac": row["clipped_frac"], "siri/round": step}
        )
        if self.metrics_path is not None:  # one manager, in veRL's trainer (ray_trainer.py:960): one writer
            append_metrics_row(self.metrics_path, row)
        return output
