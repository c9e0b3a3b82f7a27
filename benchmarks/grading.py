"""Grading throughput (answers/s, one process vs the pool) and worst-case latency on pathological answers.

    python benchmarks/grading.py [--shared-dir ../shared] [--n 2000] [--out docs/grading_benchmark.json]
    python benchmarks/grading.py --problems 8 --samples 2 --n 20 --timeout 0.5     # a quick check that it runs

Two workloads of R1-style responses built from the MATH500/AIME24/AIME25/AMC gold answers:

* ``eval_like`` — what ``siri eval`` grades: 16 samples per problem, as sampled answers repeat: ~55% the gold
  answer as written, ~15% one of two equivalent rewrites (``\\dfrac`` for ``\\frac``, ``x.0``), ~30% one of
  three wrong answers. Repeated pairs are answered from a cache and identical/integer pairs skip math-verify.
* ``all_distinct`` — the adversarial case: every pair a fresh rewrite, so every pair pays a full math-verify parse.

Each measurement starts fresh worker processes (empty caches). Target: >= 500 ordinary (eval-like) answers/s with
the pool on 2 cores, and no single answer above 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from siri_rl.data import load_benchmark
from siri_rl.reward import grade_batch, grader_stats, shutdown_grader, verify_equivalence

PATHOLOGICAL = {
    "power tower": "9^{9^{9^{9^{9}}}}",
    "factorial tower": "((10!)!)!",
    "deep fractions": "\\frac{" * 300 + "1" + "}" * 300,
    "deep parentheses": "(" * 2000 + "1" + ")" * 2000,
    "long polynomial": "+".join(f"x^{{{i}}}" for i in range(1500)),
    "huge integer": "9" * 5000,
    "20k characters": "x" * 20_000,
    "unbalanced latex": "\\left( \\frac{1}{2" * 200,
    "big matrix": "\\begin{pmatrix}" + "\\\\".join("&".join(["x"] * 30) for _ in range(30)) + "\\end{pmatrix}",
}


def rewrite(answer: str, rng: random.Random) -> str:
    """The same answer written differently, so that string identity cannot decide it."""
    if answer.lstrip("-").isdigit():
        return rng.choice([f"{int(answer)}.0", f"\\frac{{{2 * int(answer)}}}{{2}}", f"{answer}\\,"])
    return rng.choice([answer.replace("\\frac", "\\dfrac") + " ", f"{{{answer}}}", f"\\left({answer}\\right)"])


def response(pred: str) -> str:
    return f"<think>\nLet me compute. Wait, let me check.\n</think>\n\nThe answer is $\\boxed{{{pred}}}$."


def all_golds(benchmarks_dir: Path) -> list[str]:
    return [r["answer"] for name in ("math500", "aime24", "aime25", "amc") for r in load_benchmark(name, benchmarks_dir)]


def all_distinct_workload(golds: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, gold_out = [], []
    for i in range(n):
        gold = golds[i % len(golds)]
        texts.append(response(rewrite(gold if rng.random() < 0.7 else rng.choice(golds), rng)))
        gold_out.append(gold)
    return texts, gold_out


def eval_like_workload(golds: list[str], samples: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, gold_out = [], []
    for gold in golds:
        variants = [rewrite(gold, rng) for _ in range(2)]
        wrong = [rewrite(rng.choice(golds), rng) for _ in range(3)]
        for _ in range(samples):
            u = rng.random()
            pred = gold if u < 0.55 else rng.choice(variants) if u < 0.7 else rng.choice(wrong)
            texts.append(response(pred))
            gold_out.append(gold)
    return texts, gold_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-dir", default=os.environ.get("SIRI_SHARED_DIR", str(Path(__file__).resolve().parents[2] / "shared")))
    parser.add_argument("--n", type=int, default=1000, help="answers in the all_distinct workload")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--samples", type=int, default=16, help="answers per problem in the eval_like workload")
    parser.add_argument("--problems", type=int, default=None, help="only the first N gold answers (default: all 643)")
    parser.add_argument("--timeout", type=float, default=5.0, help="math-verify timeout of the pathological answers (s)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    golds = all_golds(Path(args.shared_dir) / "data" / "benchmarks")[: args.problems]
    results = {"cpu_count": os.cpu_count()}
    workloads = {
        "eval_like": lambda seed: eval_like_workload(golds, args.samples, seed),
        "all_distinct": lambda seed: all_distinct_workload(golds, args.n, seed),
    }
    for w, (workload, build) in enumerate(workloads.items()):
        for label, workers in (("single_process", 1), ("pool", args.workers)):
            texts, answers = build(seed=10 * w + workers)  # fresh answers for every measurement
            shutdown_grader()
            grade_batch(texts[:8], answers[:8], workers=workers)  # start workers (imports) before timing
            before = grader_stats()
            start = time.perf_counter()
            grades = grade_batch(texts, answers, workers=workers, progress=True)
            elapsed = time.perf_counter() - start
            after = grader_stats()
            key = f"{workload}/{label}"
            results[key] = {
                "answers": len(texts),
                "workers": workers,
                "seconds": round(elapsed, 2),
                "answers_per_s": round(len(texts) / elapsed, 1),
                "accuracy": round(sum(g.correct for g in grades) / len(grades), 3),
                "decided_without_math_verify": sum(after.get(k, 0) - before.get(k, 0) for k in ("fast", "cached")),
                "timeouts": after.get("timeout", 0) - before.get("timeout", 0),
            }
            print(key, results[key])

    worst = {}
    for name, pred in PATHOLOGICAL.items():
        start = time.perf_counter()
        correct, status = verify_equivalence(pred, "1", timeout=args.timeout)
        worst[name] = {"seconds": round(time.perf_counter() - start, 3), "correct": correct, "status": status}
        print(f"{name:18s} {worst[name]}")
    results["pathological"] = worst
    results["worst_case_s"] = max(v["seconds"] for v in worst.values())
    print(json.dumps({k: v for k, v in results.items() if k != "pathological"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
