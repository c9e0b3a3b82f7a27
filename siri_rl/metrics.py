"""Evaluation metrics: pass@1 over n samples, mean response length, and the paper's ΔAcc/CR (SIRI §5.2, Table 1);
unbiased pass@k, maj@k, and the uncertainty of each (bootstrap over problems, standard error over samples).

ΔAcc/CR trades accuracy against length relative to a base model: per benchmark
ΔAcc = max(acc/acc_base − 1, 0) and CR = length/length_base; ΔAcc/CR is averaged over the benchmarks both have.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from siri_rl.guard import frac_groups_all_correct_and_wrong, frac_groups_with_reward_variance


def pass_at_1(per_problem_correct: Sequence[Sequence[bool]]) -> float:
    """Mean accuracy over samples, averaged over problems (a fraction in [0, 1]).

    ``per_problem_correct[i]`` holds the correctness of every sample of problem i; problems weigh equally even
    when their sample counts differ (e.g. a partly finished run)."""
    rates = [sum(map(bool, s)) / len(s) for s in per_problem_correct if len(s)]
    if not rates:
        raise ValueError("pass_at_1 needs at least one problem with at least one sample")
    return sum(rates) / len(rates)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (Chen et al. 2021): the chance that
    k of the n samples, drawn without replacement, hold a correct one, 1 - C(n-c, k) / C(n, k), computed as a
    product so that large n does not overflow."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass_at_k needs k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_length(lengths: Sequence[int | float]) -> float:
    """Mean response length in tokens (0.0 for no responses)."""
    return float(sum(lengths) / len(lengths)) if lengths else 0.0


def _entry(name: str, side: str, value: Any) -> tuple[float, float]:
    try:
        acc, length = float(value["acc"]), float(value["length"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{side}[{name!r}] must be {{'acc': float, 'length': float}}, got {value!r}") from None
    return acc, length


def delta_acc_cr_table(base: Mapping[str, Mapping[str, Any]], model: Mapping[str, Mapping[str, Any]]) -> dict:
    """Per-benchmark ΔAcc, CR and ΔAcc/CR, plus their average over the benchmarks present in both.

    Returns ``{"benchmarks": {name: {"delta_acc", "cr", "delta_acc_cr"}}, "delta_acc_cr": float}``. Accuracy may
    be in percent or as a fraction, as long as both sides use the same scale.
    """
    shared = [name for name in model if name in base]
    if not shared:
        raise ValueError(
            f"no benchmark in common between base ({', '.join(base) or 'none'}) and model ({', '.join(model) or 'none'})"
        )
    rows = {}
    for name in shared:
        acc_base, len_base = _entry(name, "base", base[name])
        acc, length = _entry(name, "model", model[name])
        if acc_base <= 0 or len_base <= 0:
            raise ValueError(f"base {name!r} needs positive acc and length to compare against, got {base[name]!r}")
        delta_acc = max(acc / acc_base - 1.0, 0.0)
        cr = length / len_base
        rows[name] = {"delta_acc": delta_acc, "cr": cr, "delta_acc_cr": delta_acc / cr if cr > 0 else 0.0}
    average = sum(r["delta_acc_cr"] for r in rows.values()) / len(rows)
    return {"benchmarks": rows, "delta_acc_cr": average}


def delta_acc_cr(base: Mapping[str, Mapping[str, Any]], model: Mapping[str, Mapping[str, Any]]) -> float:
    """The paper's ΔAcc/CR of ``model`` against ``base``, averaged over the benchmarks both have.

    Each argument maps a benchmark name to ``{"acc": float, "length": float}`` — e.g. the ``benchmarks`` part of
    two ``summary.json`` files written by ``siri eval``.
    """
    return delta_acc_cr_table(base, model)["delta_acc_cr"]


def pareto_front(points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the non-dominated points, higher accuracy and lower length being better (``siri select``,
    ``siri compare``; the paper's Figure 1 front).

    Each point is a mapping with ``acc`` (or ``accuracy``; any scale, the same for all) and ``length`` (tokens),
    e.g. a ``summary.json``'s ``average``. A point is dominated when another is at least as accurate and at most
    as long, and strictly better in one of the two. Ties: equal points dominate neither each other, so all of
    them are on the front; of points with the same length only the most accurate are, and of points with the same
    accuracy only the shortest. Values are compared exactly (round them first to treat near-equal as equal).
    Returned sorted by length (the order to draw the front in), ties by index.
    """
    coords = []
    for i, p in enumerate(points):
        acc = p.get("acc", p.get("accuracy")) if isinstance(p, Mapping) else None
        length = p.get("length") if isinstance(p, Mapping) else None
        try:
            acc, length = float(acc), float(length)
        except (TypeError, ValueError):
            raise ValueError(f"pareto_front: point {i} must have numeric 'acc' and 'length', got {p!r}") from None
        if math.isnan(acc) or math.isnan(length):
            raise ValueError(f"pareto_front: point {i} has a NaN accuracy or length: {p!r}")
        coords.append((length, acc))
    front: list[int] = []
    best = -math.inf  # the highest accuracy among strictly shorter points
    order = sorted(range(len(coords)), key=lambda i: (coords[i][0], -coords[i][1], i))
    k = 0
    while k < len(order):  # one group of equal length at a time
        length = coords[order[k]][0]
        group = [i for i in order[k:] if coords[i][0] == length]
        top = coords[group[0]][1]  # sorted: the group's most accurate come first
        if top > best:
            front += [i for i in group if coords[i][1] == top]
            best = top
        k += len(group)
    return front


# --------------------------------------------------------------------------------------------------------------
# pass@k and maj@k over the n samples of each problem.


def pass_at_k_ks(n: int) -> list[int]:
    """The ks reported for ``n`` samples per problem: 1, 2, 4, ... below ``n``, then ``n`` itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n] if n >= 1 else []


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Unbiased pass@k (a fraction) averaged over problems, each given as ``(n, c)``: n samples, c correct."""
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def answer_clusters(
    answers: Sequence[str | None], correct: Sequence[bool], equivalent: Callable[[str, str], bool]
) -> tuple[list[int | None], int]:
    """Voting labels of one problem's samples for maj@k, and the number of ``equivalent`` calls it took.

    Label 0 is every answer graded correct: each was found equivalent to the gold answer, so they vote together
    with no further check. ``None``: no extracted answer (no vote). Wrong answers are grouped by exact (stripped)
    string first; then each distinct string, most frequent first, is compared with one representative of each
    wrong cluster made so far and joins the first it is equivalent to (labels 1, 2, ... in order of creation).
    Cost: ``u`` distinct wrong strings take at most u(u-1)/2 calls — 2016 for 64 samples that are all wrong and
    all different, 0 when the wrong answers are few spellings of one value or when all are correct.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answer_clusters got {len(answers)} answers but {len(correct)} grades")
    counts: dict[str, int] = {}
    for a, ok in zip(answers, correct):
        if a is not None and a.strip() and not ok:
            counts[a.strip()] = counts.get(a.strip(), 0) + 1
    # most frequent first (ties: first to appear; dicts keep insertion order and sorted() is stable)
    distinct = sorted(counts, key=lambda s: -counts[s])
    label_of: dict[str, int] = {}
    representatives: list[str] = []
    checks = 0
    for s in distinct:
        for j, rep in enumerate(representatives):
            checks += 1
            if equivalent(s, rep):
                label_of[s] = j + 1
                break
        else:
            representatives.append(s)
            label_of[s] = len(representatives)
    labels: list[int | None] = []
    for a, ok in zip(answers, correct):
        if ok:
            labels.append(0)
        elif a is None or not a.strip():
            labels.append(None)
        else:
            labels.append(label_of[a.strip()])
    return labels, checks


def majority_votes(labels: Sequence[int | None], k: int) -> list[bool]:
    """For each block of ``k`` consecutive samples (floor(n/k) disjoint blocks), whether its most common answer is
    the correct one (label 0, see :func:`answer_clusters`). Ties go to the answer that appears first in the block;
    a block without any answer is wrong."""
    if k < 1 or k > len(labels):
        raise ValueError(f"majority_votes needs 1 <= k <= n, got k={k}, n={len(labels)}")
    votes = []
    for start in range(0, len(labels) - k + 1, k):
        block = [x for x in labels[start : start + k] if x is not None]
        if not block:
            votes.append(False)
            continue
        tally: dict[int, int] = {}
        for x in block:
            tally[x] = tally.get(x, 0) + 1
        best = max(tally.values())
        votes.append(next(x for x in block if tally[x] == best) == 0)
    return votes


def maj_at_k(per_problem_labels: Sequence[Sequence[int | None]], k: int) -> float:
    """maj@k (a fraction): over problems, the mean over disjoint blocks of k samples of whether the block's majority
    answer is correct. Every block is k independent samples, so this estimates the maj@k of a fresh draw of k
    with all n samples; for k = n it is the usual maj@n."""
    if not per_problem_labels:
        raise ValueError("maj_at_k needs at least one problem")
    rates = []
    for labels in per_problem_labels:
        votes = majority_votes(labels, k)
        rates.append(sum(votes) / len(votes))
    return sum(rates) / len(rates)


# --------------------------------------------------------------------------------------------------------------
# Uncertainty: bootstrap over problems (how much the number depends on which problems were asked) and the
# standard error over the n samples (how much it depends on the sampling seed, problems held fixed).

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def name_seed(seed: int, *names: str) -> list[int]:
    """Entropy for ``numpy.random.default_rng``: the seed and a stable hash of ``names`` (e.g. the benchmark), so
    every benchmark gets its own stream and a given benchmark always gets the same one."""
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


def bootstrap_replicates(
    columns: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int | Sequence[int] = BOOTSTRAP_SEED,
    chunk: int = 1000,
):
    """Bootstrap replicates over problems: ``out[j, b] = Σ num_j[idx_b] / Σ den_j[idx_b]`` for each column pair
    ``(num_j, den_j)`` (one entry per problem), where ``idx_b`` draws the problems with replacement.

    ``den`` all ones gives the mean over problems (pass@1 from per-problem rates); per-problem token sums over
    sample counts give the mean over samples (mean length). All columns share the same draws, so differences of
    columns (two models on the same problems) are paired. Returns a (len(columns), resamples) float array; the
    same inputs and seed always give the same array.
    """
    import numpy as np

    cols = [(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)) for num, den in columns]
    sizes = {len(num) for num, _ in cols} | {len(den) for _, den in cols}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"bootstrap columns need one and the same positive number of problems, got {sorted(sizes)}")
    (p,) = sizes
    rng = np.random.default_rng(seed)
    out = np.empty((len(cols), resamples))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, p, size=(stop - start, p))  # chunked: a (10000 x 500) draw at once is 40 MB
        for j, (num, den) in enumerate(cols):
            out[j, start:stop] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return out


def percentile_interval(replicates: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates (percentile method)."""
    import numpy as np

    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(np.asarray(replicates, dtype=np.float64), [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int | Sequence[int] = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` over problems (or of Σvalues/Σweights)."""
    den = [1.0] * len(values) if weights is None else weights
    reps = bootstrap_replicates([(values, den)], resamples=resamples, seed=seed)[0]
    return percentile_interval(reps, confidence)


def sampling_se_of_rate(n: Sequence[int], c: Sequence[int]) -> float | None:
    """Standard error of pass@1 (a fraction) that comes from drawing only n_i samples of problem i, the problems
    held fixed: sqrt(Σ_i p_i(1-p_i)/(n_i-1)) / P with p_i = c_i/n_i (the n_i - 1 makes each variance estimate
    unbiased). None when a problem has fewer than 2 samples."""
    if not n or min(n) < 2:
        return None
    var = sum((ci / ni) * (1 - ci / ni) / (ni - 1) for ni, ci in zip(n, c))
    return math.sqrt(var) / len(n)


def sampling_se_of_mean(n: Sequence[int], sums: Sequence[float], sumsq: Sequence[float]) -> float | None:
    """Standard error of the mean over all samples (e.g. mean length, tokens) from drawing only n_i samples of
    problem i: sqrt(Σ_i n_i s_i²) / N with s_i² the sample variance of problem i. None when some n_i < 2."""
    if not n or min(n) < 2:
        return None
    total = 0.0
    for ni, s, s2 in zip(n, sums, sumsq):
        total += ni * max(0.0, (s2 - s * s / ni) / (ni - 1))
    return math.sqrt(total) / sum(n)


def rollout_stats(
    lengths: Sequence[int],
    max_len: int,
    ended: Sequence[bool],
    *,
    rewards: Sequence[float] | None = None,
    group_ids: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The rollout statistics of one round for its ``metrics.jsonl`` row, the same fields from either engine.

    Args:
        lengths: completion lengths of every completion of the round (tokens, all processes).
        max_len: the round's cap L (tokens).
        ended: per completion, whether it ended on its own (an EOS); one that ended exactly at L is not clipped.
        rewards: per completion reward (SIRI's is 0/1, so the mean is the training accuracy); None: not scored yet.
        group_ids: per completion, its prompt's group (GRPO's G completions of one prompt); with ``rewards`` gives
            ``frac_groups_with_reward_variance``, the share of groups whose rewards differ (the groups with a
            nonzero group-normalised advantage, the ones that teach anything), and ``frac_groups_all_correct`` /
            ``frac_groups_all_wrong``, the shares whose completions were all rewarded / all unrewarded.

    Returns ``max_len``, ``completion_len_mean/max/min`` (tokens), ``clipped_frac`` (share that hit L without
    ending: against L, not against the padded width L_max), ``num_completions``, ``tokens_round`` (tokens
    generated this round) and, given rewards, ``accuracy`` (+ ``frac_groups_with_reward_variance``).
    """
    n = len(lengths)
    if len(ended) != n or (rewards is not None and len(rewards) != n) or (group_ids is not None and len(group_ids) != n):
        raise ValueError("rollout_stats: lengths, ended, rewards and group_ids must have one entry per completion")
    row: dict[str, Any] = {
        "max_len": int(max_len),
        "completion_len_mean": sum(lengths) / n if n else 0.0,
        "completion_len_max": int(max(lengths, default=0)),
        "completion_len_min": int(min(lengths, default=0)),
        "clipped_frac": sum(1 for x, e in zip(lengths, ended) if x >= max_len and not e) / n if n else 0.0,
        "num_completions": n,
        "tokens_round": int(sum(lengths)),
    }
    if rewards is not None:
        row["accuracy"] = float(sum(rewards)) / n if n else 0.0
        if group_ids is not None and n:
            row["frac_groups_with_reward_variance"] = frac_groups_with_reward_variance(rewards, group_ids)
            right, wrong = frac_groups_all_correct_and_wrong(rewards, group_ids)
            row["frac_groups_all_correct"], row["frac_groups_all_wrong"] = right, wrong
    return row
