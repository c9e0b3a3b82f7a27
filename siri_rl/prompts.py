"""Tokenizers and prompts: the one prompt every engine and ``siri eval`` give a model (the problem and the
standard instruction in the model's chat template, SIRI §5.1), its token ids, and the token ids that end a response.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``, reloaded as a plain ``PreTrainedTokenizerFast`` if it does not round-trip
    text.

    transformers 5.x loads byte-level BPE tokenizers whose tokenizer_config names ``LlamaTokenizerFast`` — the
    DeepSeek-R1-Distill-Qwen tokenizer, when no qwen2 ``config.json`` sits beside it — as ``LlamaTokenizer`` with a
    Metaspace pre-tokenizer: spaces and newlines vanish and token ids are wrong (huggingface/transformers#45488).
    ``tokenizer.json`` itself is right, so the fallback loads it as is.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    probe = "We need 2 + 2.\nThat is 4."
    if tokenizer.decode(tokenizer.encode(probe, add_special_tokens=False)) != probe:
        kwargs.pop("trust_remote_code", None)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name_or_path, **kwargs)
    return tokenizer


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS, then the model's generation-config EOS list
    (``eos_token_id``, one id or a list, e.g. an end-of-turn token as well as the end of text), without repeats.

    Generation stops on the generation config's list (transformers' ``generate``; vLLM reads generation_config.json;
    TRL masks completions after any of them, trl/trainer/grpo_trainer.py:408-416), so whether a response ended on
    its own or was cut by the cap L must be judged against all of them, not the tokenizer's single EOS.

    Args:
        tokenizer: a Hugging Face tokenizer.
        generation_config: the model's list: a ``GenerationConfig``, a loaded model (its ``generation_config``), a
            model directory or hub id (its generation_config.json, else the ``eos_token_id`` of its config.json,
            as transformers and vLLM fall back), or None for the tokenizer's EOS alone.
    """
    if isinstance(generation_config, (str, os.PathLike)):
        model_eos = _generation_config_eos(str(generation_config))
    else:
        source = getattr(generation_config, "generation_config", generation_config)  # a model, or the config
        model_eos = getattr(source, "eos_token_id", None)
    ids: list[int] = []
    for eos in (tokenizer.eos_token_id, model_eos):
        for t in eos if isinstance(eos, (list, tuple)) else [eos]:
            if t is not None and int(t) not in ids:
                ids.append(int(t))
    return ids


@lru_cache(maxsize=16)
def _generation_config_eos(name_or_path: str) -> int | tuple[int, ...] | None:
    """The EOS id(s) a model directory or hub id declares (cached: veRL builds an agent loop per sample)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(name_or_path).eos_token_id
    except (OSError, ValueError):  # no generation_config.json
        try:
            eos = getattr(AutoConfig.from_pretrained(name_or_path), "eos_token_id", None)
        except (OSError, ValueError):  # not a model we can read here (e.g. a remote path): tokenizer EOS only
            return None
    return tuple(eos) if isinstance(eos, list) else eos


def build_messages(problem: str, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    """The chat messages of one problem: a single user turn, the problem followed by the standard instruction."""
    return [{"role": "user", "content": f"{problem} {instruction}"}]


def build_prompt(problem: str, tokenizer: Any, instruction: str = INSTRUCTION) -> str:
    """The prompt text in the model's own chat template, ending with the assistant turn's opening (for
    R1-distill: ``<｜Assistant｜><think>\\n``). Tokenizers without a template get the bare user text."""
    messages = build_messages(problem, instruction)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return messages[0]["content"]


def prompt_token_ids(problem: str, tokenizer: Any, instruction: str = INSTRUCTION) -> list[int]:
    """Token ids of :func:`build_prompt`, with exactly one BOS: templates that already write the BOS token
    (R1-distill's does) are tokenized without adding another."""
    text = build_prompt(problem, tokenizer, instruction)
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = bool(bos) and text.startswith(bos)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])
