"""The toy tasks, with "overthinking" reasoning traces for supervised warm-up (``toy.base.task``):

- ``count``: "Compute 7+6." answered by counting up one at a time (6 numbered steps: 8, 9, ..., 13); the second
  operand is the difficulty. The embedded default (``configs/toy.yaml``) draws 3-6 or 11-12 steps and a base model
  that re-reads each line after writing it (``step_check_prob``: redundancy that grows with the problem, so the
  hard problems do not fit L_max with it); the first default (``configs/toy-count.yaml``) 3-10 steps with slips,
  recounts of the whole pass and guesses, described below;
- ``search`` (the second default, ``configs/toy-search.yaml``; bottom of this module): "Compute x: f3(x)=5." for a
  fixed permutation ``f`` the base model knows by heart, answered by trying candidates until one checks out.

The count task, in detail:

Mixed difficulty is the point of the toy: the shortest correct trace grows with the count (~20-23 tokens for 3
additions, ~51-59 for 10), so a constant short cap (L_min) can only be met on the easy half while the long cap
(L_max) leaves room for verbose verification everywhere. SIRI's interleaving is the only setting that can both trim
the redundant checks and keep the hard problems solvable (paper §4).

Line ``i:v`` is the value after ``i`` steps. Every step reads only the previous line and one uniquely anchored
prompt token (the count after "+"), so a ~0.3M-parameter model learns it in minutes on a CPU. (Measured while
building this: summing 3-10 distinct one-digit numbers reached 3% accuracy after 600 SFT steps because fetching
"the next addend" was not learned; adding a one-digit increment per line reached 3% after 400 steps because the
carries were not learned; counting by one is learned.)

Trace format (the same ``<think>…</think>\\boxed{}`` format the real R1-distill models use), for "Compute 7+3."::

    1:8
    2:9
    3:10
    wait, let me check:
    1:8
    ...
    </think>
    \\boxed{10}

A first pass, then by habit 0-3 verification segments ("wait, let me check:" / "alternatively:", each a full
recount), or a quick guess first ("so the answer is 12"), verified by a count or not. The traces are imperfect on
purpose (:func:`make_trace`): the first pass often ends off by one, which only a later recount corrects; a recount
after a clean pass adds nothing, or undoes it when it slips itself; an unverified guess is right 1 time in 5. So
the base model is wrong often, more so when it may write less, and RL has accuracy to gain as well as length to
lose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MIN_TERMS, MAX_TERMS = 3, 10  # number of additions (= difficulty)
CHECK_PHRASES = ("wait, let me check:", "alternatively:")


@dataclass(frozen=True)
class ToyProblem:
    """``start + step * count``, computed as ``count`` numbered additions of ``step`` (the shipped task draws
    ``step = 1``: counting up); ``difficulty`` = ``count``."""

    id: str
    start: int
    step: int
    count: int

    @property
    def problem(self) -> str:
        if self.step == 1:
            return f"Compute {self.start}+{self.count}."
        return f"Compute {self.start}+{self.step}*{self.count}."

    @property
    def answer(self) -> str:
        return str(self.start + self.step * self.count)

    @property
    def difficulty(self) -> int:
        return self.count

    def to_dict(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": self.answer, "difficulty": self.difficulty}


TASKS = ("count", "search")


def _draw(rng: random.Random, pid: str, difficulty: int, task: str = "count", functions: int = 1):
    if task == "search":
        return draw_search(rng, pid, difficulty, functions)
    return ToyProblem(pid, rng.randint(1, 9), 1, difficulty)


def make_problems(
    n: int, *, seed: int, min_terms: int = MIN_TERMS, max_terms: int = MAX_TERMS, prefix: str = "toy",
    task: str = "count", functions: int = 1, difficulties: tuple[int, ...] = (),
) -> list:
    """``n`` problems of ``task`` with difficulty uniform in [min_terms, max_terms] (the count task: additions;
    the search task: depth, with one of ``functions`` functions), or uniform over ``difficulties`` if it is not
    empty, deterministic given ``seed``.

    Training and evaluation use different seeds (and ``prefix``) so evaluation problems are held out.
    """
    rng = random.Random(seed)
    def difficulty() -> int:  # randint when no list is given: the problems of earlier specs stay as they were
        return rng.choice(difficulties) if difficulties else rng.randint(min_terms, max_terms)

    return [_draw(rng, f"{prefix}-{seed}-{i}", difficulty(), task, functions) for i in range(n)]


def balanced_problems(per_difficulty: int, *, seed: int, min_terms: int = MIN_TERMS,
                      max_terms: int = MAX_TERMS, task: str = "count", functions: int = 1,
                      difficulties: tuple[int, ...] = ()) -> list:
    """``per_difficulty`` held-out problems for each difficulty (for per-difficulty accuracy): each of
    ``difficulties``, or of min_terms-max_terms if it is empty."""
    rng = random.Random(seed)
    return [_draw(rng, f"eval-{seed}-{k}-{i}", k, task, functions)
            for k in (difficulties or range(min_terms, max_terms + 1)) for i in range(per_difficulty)]


def _pass(p: ToyProblem, slip_at: int | None = None, rng: random.Random | None = None,
          step_check_prob: float = 0.0) -> tuple[str, int]:
    """One pass of numbered running sums; ``slip_at`` makes that line's result wrong (the error propagates).
    After each line, with ``step_check_prob``, a check phrase and the same line again (a redundant re-read)."""
    lines, total = [], p.start
    for i in range(1, p.count + 1):
        new = total + p.step
        if slip_at == i:
            assert rng is not None
            new += rng.choice((-1, 1))
        lines.append(f"{i}:{new}\n")
        if step_check_prob and rng.random() < step_check_prob:  # no draw when off: earlier traces stay as they were
            lines.append(rng.choice(CHECK_PHRASES) + "\n" + lines[-1])
        total = new
    return "".join(lines), total


def _recount(p: ToyProblem, rng: random.Random, slip_prob: float) -> tuple[str, int]:
    return _pass(p, slip_at=p.count if slip_prob and rng.random() < slip_prob else None, rng=rng)


GUESS_PHRASE = "so the answer is"


def make_trace(problem: ToyProblem, rng: random.Random, *, max_checks: int = 3, check_prob: float = 0.5,
               slip_prob: float = 0.5, recount_slip_prob: float = 0.0, guess_prob: float = 0.0,
               verify_prob: float = 0.5, step_check_prob: float = 0.0) -> str:
    """An "overthinking" response (the text after the ``<think>\\n`` generation prompt); not always correct.

    Counting (probability ``1 - guess_prob``): a first pass whose last line is off by one with probability
    ``slip_prob`` (counting one too far or one short), then, with probability ``check_prob`` and independently of
    the slip, 1-``max_checks`` recounts ("wait, let me check:" / "alternatively:"), each slipping the same way
    with the smaller probability ``recount_slip_prob``. The answer is the last pass's result, so a recount after a
    slip is the only thing that corrects it, and a recount after a clean pass adds nothing (or undoes it). The
    base model copies the habit: it checks by chance, not when it slipped.

    Guessing (probability ``guess_prob``): a quick answer without counting ("so the answer is X", X within +-2
    of the truth: right 1 time in 5), followed with probability ``verify_prob`` by "wait, let me check:" and a
    count whose result is the answer (a first approach that fails, a second that succeeds); otherwise the guess
    is the answer. That premature answer is what a short cap rewards on problems it leaves no room to solve.

    A slip sits on one line (the last) rather than anywhere so that it is one decision of probability
    ``slip_prob`` that sampling at temperature 0.6 keeps, not ``count`` small ones that it sharpens away.

    Re-reads (``step_check_prob``, the embedded default's habit): after each line of the first pass, with this
    probability, a check phrase and the same line again -- redundant, never a different answer, and about
    ``count * step_check_prob`` of them per trace, so the longer problems carry more (off: no random draw).
    """
    if rng.random() < guess_prob:
        guess = int(problem.answer) + rng.randint(-2, 2)
        text = f"{GUESS_PHRASE} {guess}\n"
        if rng.random() >= verify_prob:
            return text + f"</think>\n\\boxed{{{guess}}}"
        count, total = _recount(problem, rng, recount_slip_prob)
        return text + CHECK_PHRASES[0] + "\n" + count + f"</think>\n\\boxed{{{total}}}"
    slip = rng.random() < slip_prob
    first, total = _pass(problem, slip_at=problem.count if slip else None, rng=rng, step_check_prob=step_check_prob)
    n_checks = rng.randint(1, max_checks) if max_checks and rng.random() < check_prob else 0
    parts = [first]
    for _ in range(n_checks):
        text, total = _recount(problem, rng, recount_slip_prob)
        parts.append(rng.choice(CHECK_PHRASES) + "\n" + text)
    return "".join(parts) + f"</think>\n\\boxed{{{total}}}"


def shortest_trace(problem: ToyProblem) -> str:
    """The shortest correct response: one clean pass, no checks (what L_min must be compared against)."""
    text, total = _pass(problem)
    return text + f"</think>\n\\boxed{{{total}}}"


# --- The search task (``toy.base.task: search``) -------------------------------------------------------------
#
# "Compute x: f3(x)=5." -- find the digit ``x`` (0-6) whose ``depth``-fold image under a fixed permutation ``f``
# (SEARCH_F, which the base model knows by heart, as a real model knows its arithmetic facts) is the target.
# Applying ``f`` is one fact per step, written as a chain ("try 1>6>2>0 is 5? no"); the base model has never seen
# ``f^depth`` inverted, so its reasoning is a search: try a candidate, apply ``f`` ``depth`` times, compare with
# the target ("yes"/"no"), and try the next candidate, which is the image of the last value (so the tries walk
# the 7-cycle and visit every digit). Checking is easy and generating is hard, as for the real models'
# self-verification, so more tokens buy more tries and accuracy climbs with the budget -- unlike the count task,
# whose single-pass errors are one token decision that RL removes in a few rounds, after which length no longer
# pays (docs/toy.md). What RL can learn: to stop the base model's premature guesses and re-checks of a
# found digit, and where to start (the answer itself, a table of 7 targets x depths), which a short cap that
# leaves room for one try (or none) rewards sharply and a long one only weakly.
#
# Measured while building this (600-1500 SFT steps, the default model size): with ``f`` written in the prompt
# (a new permutation per problem) the lookup stayed at chance (1/6) after 600 steps; ``f(x) = x + a mod 10`` with
# ``a`` in the prompt likewise (1/10); a fixed ``f`` was applied 38% right after 600 steps and 100% after 1500,
# but "yes"/"no" was right only 70% of the time until the target was written next to the last value ("is 5?"),
# after which 1200 steps learn every part (f, depth, yes/no: 100%).

SEARCH_F = (3, 6, 0, 5, 1, 4, 2)  # f(i) = SEARCH_F[i]: one 7-cycle, so f^d (d < 7) fixes no digit
SEARCH_BASE = len(SEARCH_F)
# ``toy.base.functions: n`` names the first n of these in the prompts ("Compute x: g4(x)=0."): each a 7-cycle of
# the digits 0-6, all known by heart. More functions = more answers to recall (n x 7 targets x depths instead of
# 7 x depths, which RL recalls within one cycle). Measured (docs/toy.md, "The search task"): at the default
# model size 1200 SFT steps of 32 do not teach the base model two or three functions (its "yes"/"no" is 64-73%
# right); 4800 steps of 8 teach two (86%), and then neither SIRI nor the constant recalls any answer in 120 rounds.
SEARCH_FUNCS = (SEARCH_F, (5, 3, 6, 4, 0, 2, 1), (2, 4, 5, 0, 6, 1, 3))
SEARCH_NAMES = "fgh"
# The base model's next candidate is f(last value) = f^(depth+1)(candidate): the tries visit every digit only while
# depth + 1 is not a multiple of the cycle's length (7), so depth <= 5 (6 would try the same digit forever).
MAX_SEARCH_DEPTH = SEARCH_BASE - 2
TRY_WORD, YES, NO = "try", "yes", "no"


def search_apply(x: int, depth: int, func: int = 0) -> int:
    f = SEARCH_FUNCS[func]
    for _ in range(depth):
        x = f[x]
    return x


@dataclass(frozen=True)
class SearchProblem:
    """Find ``x`` with ``f^depth(x) = target`` for the function ``SEARCH_FUNCS[func]`` (named ``SEARCH_NAMES[func]``
    in the prompt); ``difficulty`` = ``depth`` (the length of one try)."""

    id: str
    target: int
    depth: int
    func: int = 0

    @property
    def problem(self) -> str:
        return f"Compute x: {SEARCH_NAMES[self.func]}{self.depth}(x)={self.target}."

    @property
    def solution(self) -> int:
        return next(x for x in range(SEARCH_BASE) if search_apply(x, self.depth, self.func) == self.target)

    @property
    def answer(self) -> str:
        return str(self.solution)

    @property
    def difficulty(self) -> int:
        return self.depth

    def to_dict(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": self.answer, "difficulty": self.difficulty}


def draw_search(rng: random.Random, pid: str, depth: int, functions: int = 1) -> SearchProblem:
    if not 1 <= depth <= MAX_SEARCH_DEPTH:
        raise ValueError(f"search depth must be 1-{MAX_SEARCH_DEPTH}, got {depth}")
    if not 1 <= functions <= len(SEARCH_FUNCS):
        raise ValueError(f"the search task has 1-{len(SEARCH_FUNCS)} functions, got {functions}")
    target = rng.randrange(SEARCH_BASE)
    # no draw for one function: the problems of earlier specs stay as they were
    return SearchProblem(pid, target, depth, rng.randrange(functions) if functions > 1 else 0)


def search_try(p: SearchProblem, x: int) -> tuple[str, bool, int]:
    """One try: the candidate and its ``depth`` images as a chain, whether the last one is the target, and the
    next candidate (the image of the last value)."""
    f, chain, v = SEARCH_FUNCS[p.func], [f"{TRY_WORD} {x}"], x
    for _ in range(p.depth):
        v = f[v]
        chain.append(f">{v}")
    hit = v == p.target
    return "".join(chain) + f" is {p.target}? {YES if hit else NO}\n", hit, f[v]


def make_search_trace(p: SearchProblem, rng: random.Random, *, guess_prob: float = 0.1, give_up_prob: float = 0.2,
                      check_prob: float = 0.5, max_checks: int = 2, hunch_prob: float = 0.0,
                      anchor_prob: float = 0.0, hunch_depths: tuple[int, ...] = (),
                      guess_target_prob: float = 0.0) -> str:
    """A base-model search: with ``guess_prob`` a guess right away ("so the answer is" a random digit, right 1
    time in 7), else tries from a first candidate until a "yes"; after each "no" it gives up with ``give_up_prob``
    and guesses, and after the "yes" it re-checks the found digit 1-``max_checks`` times with ``check_prob``
    ("wait, let me check:" and the same try again: redundant).

    The first candidate is the answer with ``hunch_prob`` (an intuition to be checked; only at the depths in
    ``hunch_depths``, every depth if it is empty), else the target itself with ``anchor_prob`` (anchoring on the
    number in the question: a fixed start whose search is short at some depths and longer than L_max at others,
    see :func:`anchor_tries`), else a random digit.

    A guess is the number in the question with ``guess_target_prob`` (never right: ``f^depth`` fixes no digit), else
    a random digit (right 1 time in 7, a reward that RL can farm where no try fits the cap)."""

    def guess(prefix: str) -> str:
        if guess_target_prob and rng.random() < guess_target_prob:  # no draw when off, as anchor_prob
            g = p.target
        else:
            g = rng.randrange(SEARCH_BASE)
        return prefix + f"{GUESS_PHRASE} {g}\n</think>\n\\boxed{{{g}}}"

    if rng.random() < guess_prob:
        return guess("")
    if (not hunch_depths or p.depth in hunch_depths) and rng.random() < hunch_prob:
        x = p.solution
    elif anchor_prob and rng.random() < anchor_prob:  # no draw when off: the traces of earlier specs stay as they were
        x = p.target
    else:
        x = rng.randrange(SEARCH_BASE)
    parts = []
    for k in range(SEARCH_BASE):
        text, hit, nxt = search_try(p, x)
        parts.append(text)
        if hit:
            if max_checks and rng.random() < check_prob:
                for _ in range(rng.randint(1, max_checks)):
                    parts.append(rng.choice(CHECK_PHRASES) + "\n" + text)
            return "".join(parts) + f"</think>\n\\boxed{{{x}}}"
        if k < SEARCH_BASE - 1 and rng.random() < give_up_prob:
            return guess("".join(parts))
        x = nxt
    raise AssertionError("the tries walk the 7-cycle: one of them hits the target")


def anchor_tries(depth: int, func: int = 0) -> int:
    """How many tries the search from the target (the anchored start) needs at ``depth``: 5 / 2 / 3 / 6 for depth
    2 / 3 / 4 / 5 (the tries step by ``f^(depth+1)`` along the 7-cycle, so every 7-cycle in SEARCH_FUNCS gives the
    same counts)."""
    p = SearchProblem("x", 0, depth, func)
    x = p.target
    for k in range(1, SEARCH_BASE + 1):
        _, hit, x = search_try(p, x)
        if hit:
            return k
    raise AssertionError("the tries walk the 7-cycle: one of them hits the target")


def shortest_search_trace(p: SearchProblem) -> str:
    """The shortest correct response: the right candidate first."""
    return search_try(p, p.solution)[0] + f"</think>\n\\boxed{{{p.solution}}}"
