"""Statistics of graded samples: pass@1 and mean length per benchmark with their uncertainty (bootstrap over
problems, standard error over samples), pass@k, maj@k, breakdowns by a problem field, and the average over
benchmarks as Table 1 reports it (§5.1). Pure functions of sample records (``benchmark``, ``problem_id``,
``sample_index``, ``correct``, ``response_tokens``, ...); the arithmetic lives in :mod:`siri_rl.metrics`."""

from __future__ import annotations

import concurrent.futures
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

DASH = "–"


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def _round_ci(ci: tuple[float, float], nd: int) -> list[float]:
    return [round(ci[0], nd), round(ci[1], nd)]


def problem_columns(by_problem: dict[str, list[dict]]) -> dict[str, list]:
    """Per-problem columns of one benchmark, sorted by problem id (so that the same samples, in any file order,
    give the same bootstrap): ``problem_id``, ``n`` (samples), ``correct`` (count), ``tokens`` (sum of response
    lengths) and ``tokens_sq`` (sum of squared lengths, for the sampling standard error)."""
    ids = sorted(by_problem)
    rows = [by_problem[i] for i in ids]
    return {
        "problem_id": ids,
        "n": [len(rs) for rs in rows],
        "correct": [sum(bool(r["correct"]) for r in rs) for rs in rows],
        "tokens": [sum(r["response_tokens"] for r in rs) for rs in rows],
        "tokens_sq": [sum(r["response_tokens"] ** 2 for r in rs) for rs in rows],
    }


def column_replicates(cols: dict[str, list], seed: list[int], resamples: int):
    """Bootstrap replicates over the problems of ``cols``: (pass@1 in percent, mean length in tokens), each an
    array of ``resamples`` values; the two share their draws."""
    from siri_rl.metrics import bootstrap_replicates

    rates = [c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]
    reps = bootstrap_replicates([(rates, [1.0] * len(rates)), (cols["tokens"], cols["n"])],
                                resamples=resamples, seed=seed)
    return 100.0 * reps[0], reps[1]


def column_statistics(cols: dict[str, list], seed: list[int], *, resamples: int, confidence: float) -> dict:
    """pass@1 (%) and mean length (tokens) of ``cols`` with their bootstrap intervals over problems and their
    standard errors over samples (see :mod:`siri_rl.metrics`)."""
    from siri_rl.metrics import percentile_interval, sampling_se_of_mean, sampling_se_of_rate

    acc_reps, len_reps = column_replicates(cols, seed, resamples)
    se_acc = sampling_se_of_rate(cols["n"], cols["correct"])
    se_len = sampling_se_of_mean(cols["n"], cols["tokens"], cols["tokens_sq"])
    return {
        "acc_ci": _round_ci(percentile_interval(acc_reps, confidence), 4),
        "acc_se": _round(None if se_acc is None else 100.0 * se_acc, 4),
        "length_ci": _round_ci(percentile_interval(len_reps, confidence), 2),
        "length_se": _round(se_len, 2),
    }


def summarize_samples(
    records: Iterable[dict],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict[str, dict]:
    """Per benchmark: ``acc`` (pass@1, percent), ``length`` (mean response tokens), their uncertainty, pass@k, and
    details.

    pass@1 is the mean over problems of the fraction of correct samples (§5.1); lengths average over all samples.
    Keys: acc, acc_ci ([low, high], the 95% bootstrap interval over problems), acc_se (standard error over the n
    samples), length, length_ci, length_se, pass@1, pass@2, ..., pass@n (unbiased, percent; k up to the smallest
    sample count of a problem), length_correct, length_incorrect, truncated (percent finished by length),
    n_problems, n_samples, grade_timeouts (samples whose grading timed out, scored incorrect). Benchmarks keep the
    order in which they first appear. The bootstrap is seeded per benchmark (``seed``, default
    :data:`siri_rl.metrics.BOOTSTRAP_SEED`): the same samples give the same intervals.
    """
    from siri_rl import metrics

    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    out = {}
    for bench, by_problem in by_bench.items():
        allr = [r for rs in by_problem.values() for r in rs]
        per_problem = [[bool(r["correct"]) for r in rs] for rs in by_problem.values()]
        lens = [r["response_tokens"] for r in allr]
        cols = problem_columns(by_problem)
        stats = column_statistics(cols, metrics.name_seed(seed, bench), resamples=resamples, confidence=confidence)
        counts = list(zip(cols["n"], cols["correct"], strict=True))
        out[bench] = {
            "acc": round(100.0 * metrics.pass_at_1(per_problem), 4),
            "acc_ci": stats["acc_ci"],
            "acc_se": stats["acc_se"],
            "length": round(_mean(lens), 2),
            "length_ci": stats["length_ci"],
            "length_se": stats["length_se"],
            **{f"pass@{k}": round(100.0 * metrics.mean_pass_at_k(counts, k), 4)
               for k in metrics.pass_at_k_ks(min(cols["n"]))},
            "length_correct": _round(_mean([r["response_tokens"] for r in allr if r["correct"]])),
            "length_incorrect": _round(_mean([r["response_tokens"] for r in allr if not r["correct"]])),
            "truncated": round(100.0 * _mean([r.get("finish_reason") == "length" for r in allr]), 4),
            "n_problems": len(by_problem),
            "n_samples": len(allr),
            "grade_timeouts": sum(r.get("grade_status") == "timeout" for r in allr),
        }
    return out


def problem_table(records: Iterable[dict]) -> dict[str, dict[str, list]]:
    """Benchmark -> :func:`problem_columns` of its samples."""
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    return {bench: problem_columns(by_problem) for bench, by_problem in by_bench.items()}


def summarize_average(
    table: dict[str, dict[str, list]],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict | None:
    """The average over benchmarks (each weighs the same, as in Table 1) of pass@1 (%) and mean length (tokens),
    with a stratified bootstrap interval (problems redrawn within each benchmark, with the same per-benchmark
    streams as :func:`summarize_samples`) and the standard error over samples, sqrt(Σ se_b²) / B."""
    from siri_rl import metrics

    if not table:
        return None
    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    accs, lens, acc_reps, len_reps, se_acc, se_len = [], [], [], [], [], []
    for bench, cols in table.items():
        accs.append(100.0 * _mean([c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]))
        lens.append(sum(cols["tokens"]) / sum(cols["n"]))
        a, b = column_replicates(cols, metrics.name_seed(seed, bench), resamples)
        acc_reps.append(a)
        len_reps.append(b)
        se_acc.append(metrics.sampling_se_of_rate(cols["n"], cols["correct"]))
        se_len.append(metrics.sampling_se_of_mean(cols["n"], cols["tokens"], cols["tokens_sq"]))
    k = len(table)

    def pooled(ses: list[float | None], scale: float) -> float | None:
        return None if None in ses else scale * math.sqrt(sum(s * s for s in ses)) / k

    return {
        "benchmarks": list(table),
        "acc": round(sum(accs) / k, 4),
        "acc_ci": _round_ci(metrics.percentile_interval(sum(acc_reps) / k, confidence), 4),
        "acc_se": _round(pooled(se_acc, 100.0), 4),
        "length": round(sum(lens) / k, 2),
        "length_ci": _round_ci(metrics.percentile_interval(sum(len_reps) / k, confidence), 2),
        "length_se": _round(pooled(se_len, 1.0), 2),
    }


def summarize_majority(
    records: Iterable[dict], *, equivalent: Callable[[str, str], bool], workers: int = 1
) -> dict[str, dict]:
    """Per benchmark: ``maj@k`` (percent) for k = 1, 2, 4, ..., n (see :func:`siri_rl.metrics.maj_at_k`) and
    ``maj_checks``, the number of ``equivalent`` calls the answer clustering made (its cost; see
    :func:`siri_rl.metrics.answer_clusters`). Samples vote in ``sample_index`` order; problems are clustered on
    ``workers`` threads (each equivalence check runs in a math-verify process of its own)."""
    from siri_rl.metrics import answer_clusters, maj_at_k, pass_at_k_ks

    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)

    def cluster(rs: list[dict]) -> tuple[list[int | None], int]:
        rs = sorted(rs, key=lambda r: int(r["sample_index"]))
        return answer_clusters([r.get("answer") for r in rs], [bool(r["correct"]) for r in rs], equivalent)

    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for bench, by_problem in by_bench.items():
            clustered = list(pool.map(cluster, [by_problem[pid] for pid in sorted(by_problem)]))
            labels = [lab for lab, _ in clustered]
            ks = pass_at_k_ks(min(len(lab) for lab in labels))
            out[bench] = {f"maj@{k}": round(100.0 * maj_at_k(labels, k), 4) for k in ks}
            out[bench]["maj_checks"] = sum(c for _, c in clustered)
    return out


def _group_sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)  # levels 1..5 in numeric order
    except ValueError:
        return (1, 0.0, value)


def summarize_groups(
    records: Iterable[dict],
    fields: dict[str, dict[str, dict[str, Any]]],
    *,
    resamples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict[str, dict[str, list[dict]]]:
    """Breakdowns by a problem field: ``fields[bench][field][problem_id]`` is the field's value for a problem.

    Returns ``{bench: {field: [{"value", "n_problems", "acc", "acc_ci", "length", "length_ci"}, ...]}}``, groups in
    numeric order where the values are numbers; problems without the field are the group "–".
    """
    from siri_rl import metrics

    resamples = metrics.BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = metrics.BOOTSTRAP_SEED if seed is None else seed
    confidence = metrics.CONFIDENCE if confidence is None else confidence
    by_bench: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        if r["benchmark"] in fields:
            by_bench.setdefault(r["benchmark"], defaultdict(list))[str(r["problem_id"])].append(r)
    out: dict[str, dict[str, list[dict]]] = {}
    for bench, by_problem in by_bench.items():
        for field_name, values in fields[bench].items():
            groups: dict[str, dict[str, list[dict]]] = defaultdict(dict)
            for pid, rs in by_problem.items():
                value = values.get(pid)
                groups[DASH if value is None else str(value)][pid] = rs
            rows = []
            for value in sorted(groups, key=_group_sort_key):
                cols = problem_columns(groups[value])
                stats = column_statistics(cols, metrics.name_seed(seed, bench, field_name, value),
                                          resamples=resamples, confidence=confidence)
                rows.append({
                    "value": value,
                    "n_problems": len(cols["n"]),
                    "acc": round(100.0 * _mean([c / n for c, n in zip(cols["correct"], cols["n"], strict=True)]), 4),
                    "acc_ci": stats["acc_ci"],
                    "length": round(sum(cols["tokens"]) / sum(cols["n"]), 2),
                    "length_ci": stats["length_ci"],
                })
            out.setdefault(bench, {})[field_name] = rows
    return out
