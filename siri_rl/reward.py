"""Answer extraction, answer equivalence and the length-capped reward (SIRI §3, DeepScaleR's reward).

A rollout generated with cap L scores 1 iff the final answer — the content of the last ``\\boxed{...}`` after the
last ``</think>`` — is equivalent to the ground truth; anything else (no ``</think>``, no box, truncated box, wrong
answer, grader timeout) scores 0. Equivalence is decided by math-verify, run in a helper subprocess whose
wall-clock time is bounded from outside, so it is safe on any thread and in worker processes. Model output is
untrusted text: it is only ever parsed, never evaluated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from siri_rl.grader import compare, count, grader_stats, shutdown_grader  # noqa: F401 - grader_stats, shutdown_grader: public API

THINK_END = "</think>"
DEFAULT_TIMEOUT = 5.0
# Longer answers are not parsed at all: no real final answer is this long, and parsing cost grows with length.
MAX_ANSWER_CHARS = 20_000
_INT = re.compile(r"[+-]?\d{1,60}")
_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")


# --- extraction ------------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed x`` in ``text``; None if absent or its
    braces never close (a truncated answer)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (6 if text.startswith("\\boxed", start) else 5)
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        if i == start + 6 or i == start + 5:  # \boxedx is another macro, not a box
            return None
        # "\boxed 5": the answer runs to the next whitespace or closing math delimiter.
        match = re.match(r"[^\s$]+", text[i:])
        return (match.group(0).rstrip(".,;") or None) if match else None
    depth, j = 0, i
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text) and text[j + 1] in "{}":
            j += 2  # \{ and \} are literal braces (sets), not grouping
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
        j += 1
    return None


def extract_answer(text: str | None, require_think_end: bool = True) -> str | None:
    """The final answer of a response: the content of the last ``\\boxed{}`` after the last ``</think>``.

    Args:
        text: the decoded response (untrusted).
        require_think_end: if True (R1-style models), a response without ``</think>`` has no answer — its thinking
            never finished. Set False for models that do not think in tags.
    Returns:
        The answer string, or None when there is none.
    """
    if not text:
        return None
    if require_think_end:
        end = text.rfind(THINK_END)
        if end < 0:
            return None
        text = text[end + len(THINK_END) :]
    answer = last_boxed(text)
    return answer if answer else None


def decode_response(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """The text of a generated response, decoded by the one rule the TRL reward, the veRL reward and ``siri eval``
    all grade: special tokens (EOS, padding, chat markup) are dropped as ``skip_special_tokens=True`` drops them,
    except ``</think>``, which is kept even where a tokenizer marks it special, since the answer is only read after
    it (:func:`extract_answer`).

    DeepSeek-R1-Distill's tokenizer has ``</think>`` (id 151649) as an added token that is not special, so there
    this equals ``tokenizer.decode(token_ids, skip_special_tokens=True)``.

    Args:
        tokenizer: a Hugging Face tokenizer.
        token_ids: the response's token ids (a list, or a 1-D tensor/array).
    """
    ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
    # skip_special_tokens=True skips the added tokens marked special (transformers hands it to the Rust
    # tokenizer, tokenization_utils_tokenizers.py:1032) and the special-token map's ids: drop those, bar </think>.
    added = tokenizer.added_tokens_decoder  # {id: AddedToken}
    dropped = set(tokenizer.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", False)}
    dropped -= {i for i, t in added.items() if getattr(t, "content", str(t)) == THINK_END}
    return tokenizer.decode([t for t in ids if t not in dropped], skip_special_tokens=False)


# --- equivalence ---------------------------------------------------------------------------------------------


def _needs_wrapping(text: str) -> bool:
    return not any(d in text for d in _DELIMITERS)


def _fast_path(pred: str, gold: str) -> bool | None:
    """Decide trivially decidable pairs without math-verify (identical strings, two plain integers)."""
    p, g = pred.strip().strip("$").strip(), gold.strip().strip("$").strip()
    if p == g and p:
        return True
    if _INT.fullmatch(p) and _INT.fullmatch(g):
        return int(p) == int(g)  # "025" == "25" (AIME answers are zero-padded)
    return None


def verify_equivalence(
    pred: str | None,
    gold: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    raw_text: bool = False,
    match_types: Sequence[str] = ("latex", "expr"),
    precision: int = 6,
    strict: bool = True,
    allow_set_relation_comp: bool = False,
) -> tuple[bool, str]:
    """Like :func:`is_equivalent` but also returns the outcome: ``ok``, ``fast``, ``timeout``, ``error``,
    ``no_answer`` or ``too_long``."""
    if pred is None or not str(pred).strip():
        return False, "no_answer"
    pred, gold = str(pred), str(gold)
    if len(pred) > MAX_ANSWER_CHARS:
        return False, "too_long"
    if not raw_text:
        fast = _fast_path(pred, gold)
        if fast is not None:
            count("fast")
            return fast, "fast"
        pred = f"\\boxed{{{pred}}}" if _needs_wrapping(pred) else pred
        gold = f"\\boxed{{{gold}}}" if _needs_wrapping(gold) else gold
    payload = {
        "pred": pred,
        "gold": gold,
        "match_types": list(match_types),
        "precision": precision,
        "strict": strict,
        "allow_set_relation_comp": allow_set_relation_comp,
        # math-verify's own alarm (whole seconds) fires first in ordinary slow cases; the kill is the backstop.
        "alarm": max(1, int(timeout // 3)),
    }
    return compare(payload, timeout)


def is_equivalent(pred: str | None, gold: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> bool:
    """Whether answer ``pred`` is mathematically equivalent to ``gold``, decided by math-verify.

    ``pred`` and ``gold`` are final answers (e.g. box contents): ``025`` = ``25``, ``\\frac12`` = ``0.5``,
    intervals, sets, ``\\text{}`` answers. The call takes at most ``timeout`` seconds (plus a one-off worker start)
    on any thread or process; a timeout or parser error counts as not equivalent (see :func:`grader_stats`) and is
    never raised. ``options``: ``raw_text=True`` lets math-verify extract the answer from free text itself;
    ``match_types``, ``precision``, ``strict``, ``allow_set_relation_comp`` are math-verify's.
    """
    return verify_equivalence(pred, gold, timeout=timeout, **options)[0]


# --- grading responses -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """The grading of one response: the extracted ``answer`` (None if none), ``correct``, and ``status``
    (``ok``/``fast`` graded, ``no_answer``, ``timeout``, ``error``, ``too_long``)."""

    answer: str | None
    correct: bool
    status: str


def grade_response(
    text: str | None, gold: str, *, require_think_end: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> Grade:
    """Extract the final answer of ``text`` and compare it with ``gold``."""
    answer = extract_answer(text, require_think_end=require_think_end)
    if answer is None:
        return Grade(None, False, "no_answer")
    correct, status = verify_equivalence(answer, gold, timeout=timeout)
    return Grade(answer, correct, status)


def grade_batch(
    texts: Sequence[str | None],
    golds: Sequence[str],
    *,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    require_think_end: bool = True,
    progress: bool = False,
) -> list[Grade]:
    """Grade many responses in parallel over ``workers`` math-verify processes (default: one per CPU core).

    For evaluation-sized workloads (tens of thousands of answers). Order is preserved; every answer is bounded by
    ``timeout`` seconds.
    """
    if len(texts) != len(golds):
        raise ValueError(f"grade_batch got {len(texts)} responses but {len(golds)} gold answers")
    workers = max(1, workers or os.cpu_count() or 1)

    def one(i: int) -> Grade:
        return grade_response(texts[i], golds[i], require_think_end=require_think_end, timeout=timeout)

    if workers == 1 or len(texts) < 2:
        indices = range(len(texts))
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc="grading", unit="ans")
        return [one(i) for i in indices]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, range(len(texts)), chunksize=1)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(texts), desc="grading", unit="ans")
        return list(results)


def length_capped_reward(
    token_ids: Sequence[int],
    gold: str,
    max_len: int,
    tokenizer: Any,
    *,
    require_think_end: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """SIRI's length-capping reward: 1.0 iff a correct final answer can be extracted from the first ``max_len``
    tokens of the response, else 0.0 (a response cut by the cap has no answer and scores 0).

    Args:
        token_ids: the response's token ids (no prompt).
        gold: the ground-truth answer.
        max_len: the cap L of this rollout round, in tokens.
        tokenizer: a Hugging Face tokenizer (the response is decoded by :func:`decode_response`).
    """
    if max_len <= 0:
        return 0.0
    text = decode_response(tokenizer, list(token_ids)[:max_len])
    grade = grade_response(text, gold, require_think_end=require_think_end, timeout=timeout)
    return 1.0 if grade.correct else 0.0
