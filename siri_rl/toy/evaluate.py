"""Fixed-cap evaluation of toy checkpoints on held-out problems (accuracy, mean length, per-difficulty accuracy).

TRL's own eval loop would reuse whatever rollout cap the schedule set last, so the toy measures every checkpoint
here instead, at one fixed cap (L_max) and temperature, with the same length-capped reward used in training.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from siri_rl.reward import length_capped_reward
from siri_rl.toy.task import ToyProblem


def evaluate_toy_model(
    model_dir: str | Path,
    problems: list[ToyProblem],
    *,
    max_len: int,
    temperature: float = 0.6,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample one response per problem with at most ``max_len`` new tokens and grade it.

    Returns ``accuracy`` (fraction), ``mean_length`` (tokens, incl. EOS when emitted), ``wait_per_response``
    (verification segments per response), ``by_difficulty`` ({terms: accuracy}) and ``truncated_frac``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.data import build_prompt
    from siri_rl.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    torch.manual_seed(seed)
    rewards, lengths, checks, truncated = [], [], [], []
    per_diff: dict[int, list[float]] = defaultdict(list)
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        enc = tok([build_prompt(p.problem, tok) for p in batch], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_len, do_sample=temperature > 0,
                                 temperature=temperature if temperature > 0 else None, top_p=1.0, top_k=0,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for p, row in zip(batch, out[:, enc["input_ids"].shape[1]:].tolist()):
            ids = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
            r = length_capped_reward(ids, p.answer, max_len, tok)
            rewards.append(r)
            lengths.append(len(ids))
            truncated.append(tok.eos_token_id not in ids)
            text = tok.decode(ids)
            checks.append(text.count("wait") + text.count("alternatively"))
            per_diff[p.difficulty].append(r)
    n = max(1, len(rewards))
    return {
        "accuracy": sum(rewards) / n,
        "mean_length": sum(lengths) / n,
        "wait_per_response": sum(checks) / n,
        "truncated_frac": sum(truncated) / n,
        "by_difficulty": {k: sum(v) / len(v) for k, v in sorted(per_diff.items())},
        "n": len(rewards),
        "max_len": max_len,
        "temperature": temperature,
    }
