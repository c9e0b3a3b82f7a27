"""A tiny word/digit tokenizer for the toy task, wrapped as a transformers fast tokenizer with a chat template.

Digits are single tokens (so the model does arithmetic digit by digit), words and punctuation are single tokens,
and whitespace is kept as tokens so decoding reproduces the text exactly (``\\boxed{12}`` must survive a
decode for the reward's answer extraction). The chat template ends the generation prompt with ``<think>\\n`` like
DeepSeek-R1-Distill's, so completions look like the real models' (reasoning, ``</think>``, ``\\boxed{}``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, USER, ASSISTANT = "<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>"
THINK, THINK_END = "<think>", "</think>"

# Every word the prompts (siri_rl.data.INSTRUCTION) and the traces use; anything else maps to [UNK].
WORDS = (
    "Compute Let's think step by and output the final answer within boxed "
    "wait let me check alternatively so is hold on compute try yes no x mod"
).split()
CHARS = list("0123456789+-=.,:?{}\\()*/> \n") + list("abcdefghij")

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "{{ m['content'] }}" + EOS + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + THINK + "\n{% endif %}"
)


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer (~60 tokens), deterministic (no training data needed)."""
    vocab: dict[str, int] = {}
    for tok in [PAD, EOS, USER, ASSISTANT, "[UNK]", THINK, THINK_END, *WORDS, *CHARS]:
        vocab.setdefault(tok, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # Words, or a single label letter directly before a digit ("c7" -> "c", "7"), single digits, single others.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[a-j](?=\d)|[A-Za-z']+|\d|\s|[^\sA-Za-z\d]"),
                                             behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token=PAD,
        eos_token=EOS,
        bos_token=None,
        padding_side="left",
        additional_special_tokens=[USER, ASSISTANT],
    )
    # <think>/</think> are ordinary added tokens (not special), as in R1-distill's tokenizer, so they survive
    # skip_special_tokens=True decoding.
    fast.add_tokens([THINK, THINK_END])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def is_toy_tokenizer(path: str | Path) -> bool:
    """Whether ``path`` holds a toy (word-level) tokenizer."""
    file = Path(path) / "tokenizer.json"
    try:
        return json.loads(file.read_text())["model"]["type"] == "WordLevel"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_tokenizer(path: str | Path, **kwargs):
    """:func:`siri_rl.data.load_tokenizer`, except for toy tokenizers.

    transformers 5 loads the tokenizer class registered for the model type (``Qwen2Tokenizer`` for Qwen2 models)
    and rebuilds it, which drops the toy tokenizer's whitespace tokens; the toy's own files are loaded as they are.
    Every other model (a hub id or a local checkpoint) goes through the core loader.
    """
    from siri_rl.prompts import load_tokenizer as load_model_tokenizer

    if is_toy_tokenizer(path):
        tok = PreTrainedTokenizerFast.from_pretrained(path)
        tok.padding_side = "left"
        return tok
    return load_model_tokenizer(path, **kwargs)
