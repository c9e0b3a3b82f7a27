"""The agent-loop manager that attaches SIRI's length cap L to every training rollout round (SIRI §4.3).

veRL's trainer calls ``AgentLoopManager.generate_sequences(batch)`` once per rollout round with
``batch.meta_info["global_steps"]`` set, and once per validation with ``meta_info["validate"] = True``. This
subclass (selected with ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class``) writes
``L = schedule(global_steps - 1)`` into the batch field ``siri_max_len`` of training batches only — veRL counts
steps from 1, our schedule counts rounds from 0 — and the ``siri_single_turn`` agent loop turns it into the
request's ``max_tokens``.

It also records, per training round, L and the fraction of responses cut by L (veRL's own
``response_length/clip_ratio`` compares against the padded width ``response_length`` = L_max, which is wrong under
a moving cap): one JSON line per round in ``siri.metrics_path`` (the run directory's ``metrics.jsonl``), and the
same numbers under ``siri/*`` in the rollout timing dict — the only channel from the rollout into veRL's logger, so
wandb/console show them as ``timing_s/siri/max_len`` etc.

The schedule and the metrics path come from the config section ``siri`` that ``siri train --engine verl`` adds
(``+siri.schedule.kind=cosine +siri.schedule.l_max=16384 ...``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from verl.experimental.agent_loop import AgentLoopManager
from verl.protocol import DataProto
from verl.utils.ray_utils import auto_await

from siri_rl.engines.verl.reward import ENDED_KEY, MAX_LEN_KEY
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


def round_metrics(output: DataProto, max_len: int) -> dict[str, float]:
    """Per-round numbers from a generated batch: response lengths (tokens), the fraction of responses cut by the
    cap L (full L tokens without their own EOS), and accuracy when veRL has already scored the batch."""
    prompt_width = output.batch["prompts"].shape[-1]
    lengths = output.batch["attention_mask"][:, prompt_width:].sum(-1).cpu().numpy()
    ended = output.non_tensor_batch.get(ENDED_KEY)
    ended = np.array([bool(e) for e in ended]) if ended is not None else np.zeros(len(lengths), dtype=bool)
    clipped = (lengths >= max_len) & ~ended
    row = {
        "max_len": int(max_len),
        "completion_len_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "completion_len_max": int(lengths.max()) if len(lengths) else 0,
        "clipped_frac": float(clipped.mean()) if len(lengths) else 0.0,
        "tokens_round": int(lengths.sum()),
    }
    if "rm_scores" in output.batch.keys():
        row["accuracy"] = float(output.batch["rm_scores"].sum(-1).float().mean().item())
    return row


def _running_totals(metrics_path: Path | None) -> tuple[int, float]:
    """``(tokens_generated, wall_s)`` of the last row of an existing metrics.jsonl (a resumed run), else zeros."""
    if metrics_path is None or not metrics_path.exists():
        return 0, 0.0
    last = None
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            last = json.loads(line)
        except json.JSONDecodeError:
            continue  # a half-written last line from a killed run
    if not last:
        return 0, 0.0
    return int(last.get("tokens_generated", 0)), float(last.get("wall_s", 0.0))


class SiriAgentLoopManager(AgentLoopManager):
    """veRL's :class:`AgentLoopManager` plus SIRI's per-round length cap and its metrics."""

    def __init__(self, config: DictConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.schedule = schedule_from_verl_config(config)
        path = config.siri.get("metrics_path")
        self.metrics_path = Path(path) if path else None
        # tokens_generated and wall_s are running totals of the run, continued from metrics.jsonl on resume.
        self.tokens_total, self.wall_offset = _running_totals(self.metrics_path)
        self.started = time.time()

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """Generate one batch; training batches are capped at the round's L (SIRI §4.3)."""
        max_len = attach_max_len(prompts, self.schedule)
        global_steps = prompts.meta_info.get("global_steps")
        start = time.time()
        output = await super().generate_sequences(prompts)
        if max_len is None:
            return output
        step = round_of_global_step(global_steps)
        row = {"step": step, "global_step": int(global_steps), "phase": self.schedule.phase(step)}
        row.update(round_metrics(output, max_len))
        self.tokens_total += row["tokens_round"]
        row["tokens_generated"] = self.tokens_total
        row["rollout_s"] = round(time.time() - start, 3)
        row["wall_s"] = round(self.wall_offset + time.time() - self.started, 3)
        timing = output.meta_info.setdefault("timing", {})
        timing.update(
            {"siri/max_len": row["max_len"], "siri/clipped_frac": row["clipped_frac"], "siri/round": step}
        )
        if self.metrics_path is not None:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return output
