"""Drawing samples from a causal LM, the rules every sampler of siri-rl follows: ``siri eval``'s backends
(:mod:`siri_rl.evaluate.backends`) and the engines' in-training validation, so that a validation during training
and ``siri eval`` of the same checkpoint draw the same samples.

* :func:`generate_batch`: left-padded, batched ``model.generate`` with the KV cache (one random stream per batch);
* :func:`strip_eos`: a generated row cut at its first EOS, with its finish reason;
* :func:`sample_seed`: the seed of one sample, a function of (run seed, benchmark, problem, sample index) alone;
* :class:`Completion`: one sample's tokens, text and finish reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, EOS/padding stripped
    text: str
    finish_reason: str  # "stop" (EOS) or "length" (hit max_tokens)
    prompt_token_ids: list[int] | None = None  # what the engine saw, where it reports it (vLLM)


def sample_seed(seed: int, benchmark: str, problem_id: str, sample_index: int) -> int:
    """A stable 31-bit seed of one sample: a function of (run seed, benchmark, problem, sample index) alone, so a
    resumed run draws every missing sample exactly as an uninterrupted run would. Also the seed of a transformers
    batch (the seed of its first planned sample)."""
    h = hashlib.sha256(f"{seed}/{benchmark}/{problem_id}/{sample_index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    eos_ids: list[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    device: str,
) -> list[list[int]]:
    """Left-pad ``prompts`` and sample with ``model.generate``; returns the new token ids of each row.

    ``top_k=0`` because transformers' default top-k of 50 would otherwise differ from vLLM's (off).
    """
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[i, width - len(p) :] = 1
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if temperature > 0
        else {"do_sample": False}
    )
    with torch.inference_mode():
        seq = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            pad_token_id=pad_id,
            eos_token_id=eos_ids,
            use_cache=True,
            **sampling,
        )
    return seq[:, width:].tolist()


def strip_eos(ids: Sequence[int], eos_ids: Sequence[int], pad_id: int | None, max_tokens: int) -> tuple[list[int], str]:
    """Cut generated ids at the first EOS; finish reason "stop" if an EOS was emitted, else "length"."""
    eos = set(eos_ids)
    for i, t in enumerate(ids):
        if t in eos:
            return list(ids[:i]), "stop"
    ids = list(ids)
    # transformers pads finished rows; an unfinished row is never padded, so trailing pads only follow an EOS.
    if pad_id is not None and pad_id not in eos:
        while ids and ids[-1] == pad_id and len(ids) < max_tokens:
            ids.pop()
    return ids, ("length" if len(ids) >= max_tokens else "stop")
