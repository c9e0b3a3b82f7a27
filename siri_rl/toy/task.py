"""The toy task: sums of 3-10 one-digit numbers, with "overthinking" reasoning traces for supervised warm-up.

Mixed difficulty is the point of the toy: the shortest correct trace of a 10-number sum needs ~80 tokens, an easy
3-number sum ~25, so a constant short cap (L_min) can only be met on the easy half while the long cap (L_max) leaves
room for verbose verification everywhere. SIRI's interleaving is the only setting that both trims the redundant
checks and keeps the hard problems solvable (paper §4, "why expand again").

Trace format (the same ``<think>…</think>\\boxed{}`` format the real R1-distill models use)::

    3+7=10
    10+2=12
    wait, let me check:
    3+7=10
    10+2=12
    </think>
    \\boxed{12}

A first pass adds the numbers left to right; then 0-3 redundant verification segments ("wait, let me check:"
repeats the pass, "alternatively:" adds right to left). With probability ``slip_prob`` the first pass contains an
arithmetic slip that a later check corrects, so verification is sometimes useful and usually redundant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MIN_TERMS, MAX_TERMS = 3, 10
CHECK_PHRASES = ("wait, let me check:", "alternatively:")


@dataclass(frozen=True)
class ToyProblem:
    """One sum: ``terms`` are the one-digit addends, ``difficulty`` = number of terms."""

    id: str
    terms: tuple[int, ...]

    @property
    def problem(self) -> str:
        return "Compute " + "+".join(map(str, self.terms)) + "."

    @property
    def answer(self) -> str:
        return str(sum(self.terms))

    @property
    def difficulty(self) -> int:
        return len(self.terms)

    def to_dict(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": self.answer, "difficulty": self.difficulty}


def make_problems(
    n: int, *, seed: int, min_terms: int = MIN_TERMS, max_terms: int = MAX_TERMS, prefix: str = "toy"
) -> list[ToyProblem]:
    """``n`` problems with difficulty uniform in [min_terms, max_terms], deterministic given ``seed``.

    Training and evaluation use different seeds (and ``prefix``) so evaluation problems are held out.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(min_terms, max_terms)
        out.append(ToyProblem(f"{prefix}-{seed}-{i}", tuple(rng.randint(1, 9) for _ in range(k))))
    return out


def balanced_problems(per_difficulty: int, *, seed: int, min_terms: int = MIN_TERMS,
                      max_terms: int = MAX_TERMS) -> list[ToyProblem]:
    """``per_difficulty`` held-out problems for each number of terms (for per-difficulty accuracy)."""
    rng = random.Random(seed)
    return [
        ToyProblem(f"eval-{seed}-{k}-{i}", tuple(rng.randint(1, 9) for _ in range(k)))
        for k in range(min_terms, max_terms + 1)
        for i in range(per_difficulty)
    ]


def _pass(terms: tuple[int, ...], slip_at: int | None = None, rng: random.Random | None = None) -> tuple[str, int]:
    """One left-to-right pass of running sums; ``slip_at`` makes that step's result wrong (and propagates)."""
    lines, total = [], terms[0]
    for j, t in enumerate(terms[1:], start=1):
        new = total + t
        if slip_at == j:
            assert rng is not None
            new += rng.choice((-2, -1, 1, 2))
        lines.append(f"{total}+{t}={new}")
        total = new
    return "\n".join(lines) + "\n", total


def make_trace(problem: ToyProblem, rng: random.Random, *, max_checks: int = 3, slip_prob: float = 0.15) -> str:
    """An "overthinking" response (the text after the ``<think>\\n`` generation prompt), always ending correct."""
    terms = problem.terms
    slip = rng.random() < slip_prob
    n_checks = rng.randint(1 if slip else 0, max_checks)
    first, total = _pass(terms, slip_at=rng.randint(1, len(terms) - 1) if slip else None, rng=rng)
    parts = [first]
    for _ in range(n_checks):
        phrase = rng.choice(CHECK_PHRASES)
        order = terms if phrase.startswith("wait") else tuple(reversed(terms))
        text, total = _pass(order)
        parts.append(phrase + "\n" + text)
    # The final answer is the last computation's result, so a slip is only corrected by a later check.
    return "".join(parts) + f"</think>\n\\boxed{{{total}}}"


def shortest_trace(problem: ToyProblem) -> str:
    """The shortest correct response: one clean pass, no checks (what L_min must be compared against)."""
    text, total = _pass(problem.terms)
    return text + f"</think>\n\\boxed{{{total}}}"
