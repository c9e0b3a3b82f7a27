"""Held-out validation on veRL (``validation:``): veRL's own validation loop, set from the section, and the rows
of ``RUN/validation.jsonl`` (:mod:`siri_rl.run_dir`), which the agent-loop manager writes from each validation
batch (veRL logs no validation length, and its accuracy only per ``data_source`` under its own names).

veRL validates before training (``trainer.val_before_train``) and after every ``trainer.test_freq``-th step and the
last one (``ray_trainer.py:1438``, ``:1727-1728``), sampling ``val_kwargs.n`` responses per problem of the
validation parquet (``ray_trainer.py:617-619``) in one batch (``data.val_batch_size: null``) through the agent-loop
manager with ``meta_info["validate"]`` and ``["global_steps"]`` (``:627-634``), the rounds trained so far. The
manager caps that batch at ``validation.max_tokens`` (a cap above L_max widens veRL's padded response width) and turns the
scored batch into one row per benchmark. veRL seeds its sampling itself: ``validation.seed`` is not used here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from siri_rl.config import ExperimentConfig
from siri_rl.metrics import bootstrap_ci, name_seed, pass_at_1

VLLM_MAX_NUM_SEQS = 256  # veRL's rollout.max_num_seqs: vLLM needs max_num_batched_tokens >= it (launch.py's too)


def validation_overrides(cfg: ExperimentConfig, metrics_path: str | Path | None) -> dict[str, Any]:
    """The recipe overrides of ``cfg.validation`` (veRL's validation stays off without benchmarks)."""
    v = cfg.validation
    if not v.benchmarks:
        return {}
    max_tokens = v.max_tokens or cfg.schedule.l_max
    wider: dict[str, Any] = {}
    if max_tokens > cfg.schedule.l_max:
        # veRL pads every response to data.max_response_length (L_max by default, launch.recipe_overrides): a fixed
        # cap above L_max widens it and the token budgets that follow from it; training requests keep their L.
        seq = cfg.data.max_prompt_length + max_tokens
        wider = {"data.max_response_length": max_tokens, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": seq,
                 "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 2 * seq,
                 "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 2 * seq,
                 "actor_rollout_ref.rollout.max_num_batched_tokens": max(seq, VLLM_MAX_NUM_SEQS)}
    return wider | {
        "trainer.test_freq": v.every or cfg.training.rounds,  # every k steps, and veRL's last step in any case
        "trainer.val_before_train": v.at_start,
        "data.val_batch_size": None,  # one batch: one manager call per validation
        "actor_rollout_ref.rollout.val_kwargs.n": v.n,
        "actor_rollout_ref.rollout.val_kwargs.temperature": v.temperature,
        "actor_rollout_ref.rollout.val_kwargs.top_p": v.top_p,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": v.temperature > 0,
        "siri.validation.run_dir": str(Path(metrics_path).parent) if metrics_path else None,
        "siri.validation.max_tokens": max_tokens,
        "siri.validation.temperature": v.temperature,
    }


def validation_rows(round_: int, lengths: list[int], ended: list[bool], rewards: list[float] | None,
                    sources: list[str], uids: list[str], *, n: int, max_tokens: int, temperature: float
                    ) -> list[dict[str, Any]]:
    """One ``validation.jsonl`` row per benchmark (``data_source``) of a scored validation batch.

    Per response: its length (tokens), whether it ended on its own, its reward (SIRI's 0/1, so correct or not),
    its benchmark and its problem (``uid``). Rows past the ``n``-th of a problem are veRL's padding to a multiple of
    the agent-loop workers (copies of the first rows, ``pad_dataproto_to_divisor``) and are left out."""
    seen: dict[str, int] = defaultdict(int)
    by_bench: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    rows_of: dict[str, list[int]] = defaultdict(list)
    for i, uid in enumerate(uids):
        seen[uid] += 1
        if seen[uid] <= n:
            by_bench[sources[i]][uid].append(i)
            rows_of[sources[i]].append(i)
    out = []
    for bench, problems in by_bench.items():
        idx = rows_of[bench]
        correct = [[bool(rewards[i] > 0) for i in members] for members in problems.values()] if rewards else None
        acc = ci = None
        if correct is not None:
            acc = round(100.0 * pass_at_1(correct), 4)
            rates = [sum(c) / len(c) for c in correct]
            lo, hi = bootstrap_ci(rates, seed=name_seed(0, bench))
            ci = [round(100.0 * lo, 4), round(100.0 * hi, 4)]
        out.append({"round": int(round_), "benchmark": bench, "acc": acc, "acc_ci": ci,
                    "mean_len": round(sum(lengths[i] for i in idx) / len(idx), 2),
                    "truncated_frac": round(sum(lengths[i] >= max_tokens and not ended[i] for i in idx) / len(idx), 6),
                    "n": n, "problems": len(problems), "max_tokens": max_tokens, "temperature": temperature})
    return out
