"""The toy base model's accuracy against the length it may use, and SIRI-vs-constant tables with 95% intervals.

    python benchmarks/toy_spiral.py budget [-c toy] [--caps 24,36,64,128,256]   # builds/reuses the base model
    python benchmarks/toy_spiral.py report DIR    # DIR/toy, DIR/toy-constant, DIR/toy-constant-min summary.json

``budget`` evaluates the config's cached base model (built first if missing) on the config's held-out problems
(``toy.eval``: problems per difficulty, temperature, seed) at each cap with ``siri eval``'s code (one results
directory per cap under ``--out``), and prints accuracy (Wilson 95% interval), mean length and accuracy per difficulty per cap: the toy's
accuracy-vs-budget curve (it must climb, as R1-distill's does). ``report`` prints every evaluated
checkpoint of finished toy runs with Wilson 95% intervals on accuracy (over held-out problems, one sample each).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

RUNS = ("toy", "toy-constant", "toy-constant-min")


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (fractions) for a binomial proportion ``p`` measured on ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt_acc(p: float, n: int) -> str:
    lo, hi = wilson(p, n)
    return f"{100 * p:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def budget(config: str, caps: list[int], threads: int | None = None, out: Path = Path("runs/toy-budget"),
           overrides: list[str] = ()) -> None:
    import torch

    from siri_rl.config import load_config
    from siri_rl.toy import toy_model_path, toy_spec
    from siri_rl.toy.run import evaluate_model, write_heldout_benchmark

    if not Path(config).exists():  # a shipped config's name, as `siri train -c` takes it
        config = str(Path(__file__).resolve().parents[1] / "siri_rl" / "configs" / f"{config.removesuffix('.yaml')}.yaml")
    cfg = load_config(config, list(overrides))
    torch.set_num_threads(threads or cfg.toy.torch_threads)
    t0 = time.time()
    base = toy_model_path(cfg)
    print(f"base model {base} ({time.time() - t0:.0f} s)")
    spec = toy_spec(cfg)
    diffs = list(spec.levels)
    print(f"| cap | acc % [95%] | mean len | checks/resp | truncated | {' | '.join(f'k={d}' for d in diffs)} |")
    print("|" + "---|" * (5 + len(diffs)))
    for cap in caps:
        # siri eval's code at this cap, one results directory per cap under ``out`` (resumable)
        capped = load_config(config, [*overrides, f"toy.eval.max_len={cap}"])
        r = evaluate_model(capped, base, out / f"cap{cap}", write_heldout_benchmark(capped, out))
        per = " | ".join(f"{100 * r['by_difficulty'].get(str(d), 0.0):.0f}" for d in diffs)
        print(f"| {cap} | {fmt_acc(r['accuracy'], r['n'])} | {r['mean_length']:.1f} | {r['wait_per_response']:.2f} "
              f"| {100 * r['truncated_frac']:.0f}% | {per} |", flush=True)


def report(out: Path) -> None:
    found = [name for name in RUNS if (out / name / "summary.json").exists()]
    if not found:
        sys.exit(f"no {out}/<run>/summary.json for any of {RUNS}: train them first (siri train -c NAME -o {out}/NAME)")
    base_len = None
    for name in found:
        s = json.loads((out / name / "summary.json").read_text())
        results = s["results"] if name == found[0] else s["results"][1:]
        diffs = sorted(int(k) for k in s["results"][0]["by_difficulty"])
        # the top third of the difficulties: k = 11-12 of configs/toy.yaml, k = 8-10 of configs/toy-count.yaml,
        # depth 4-5 of configs/toy-search.yaml (the ones whose shortest correct response does not fit L_min there)
        hardest = diffs[len(diffs) * 2 // 3:]
        if name == found[0]:
            print(f"| run | checkpoint | acc % [95%] | mean len | vs base | checks/resp | hardest (k>={hardest[0]}) "
                  f"% [95%] | {' | '.join(f'k={d}' for d in diffs)} |")
            print("|" + "---|" * (7 + len(diffs)))
        for r in results:
            by = {int(k): v for k, v in r["by_difficulty"].items()}
            per_k = r["n"] // len(diffs)
            hard = sum(by[d] for d in hardest) / len(hardest)
            if base_len is None:
                base_len = r["mean_length"]
            vs = "—" if r["step"] is None else f"{100 * (r['mean_length'] / base_len - 1):+.0f}%"
            ckpt = "base" if r["step"] is None else f"{r['name']} (round {r['step']}, L={r['train_cap']})"
            print(f"| {'—' if r['step'] is None else name} | {ckpt} | {fmt_acc(r['accuracy'], r['n'])} "
                  f"| {r['mean_length']:.1f} | {vs} | {r['wait_per_response']:.2f} | {fmt_acc(hard, len(hardest) * per_k)} | "
                  + " | ".join(f"{100 * by[d]:.0f}" for d in diffs) + " |")
    print("\n| run | rounds | tokens generated | wall (s) | base build (s) | RL (s) | eval (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in found:
        s = json.loads((out / name / "summary.json").read_text())
        print(f"| {name} | {s['rounds']} | {s['tokens_generated']:,} | {s['wall_s']:.0f} | {s['base_build_s']:.0f} "
              f"| {s['train_s']:.0f} | {s['eval_s']:.0f} | {s['peak_rss_mb']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("budget", help="base-model accuracy against the cap")
    b.add_argument("-c", "--config", default="toy")
    b.add_argument("--caps", default="24,36,48,64,96,128,192,256")
    b.add_argument("--threads", type=int, help="torch threads (default: toy.torch_threads)")
    b.add_argument("--out", type=Path, default=Path("runs/toy-budget"), help="results directories, one per cap")
    b.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, as `siri train` takes them")
    r = sub.add_parser("report", help="tables with 95%% intervals for finished toy runs")
    r.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "budget":
        budget(args.config, [int(c) for c in args.caps.split(",")], args.threads, args.out, args.overrides)
    else:
        report(args.out)


if __name__ == "__main__":
    main()
