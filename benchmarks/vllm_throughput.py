"""vLLM paths side by side, in one run: `siri eval --backend vllm` generation against a bare ``vllm.LLM.generate``
on the same engine, the transformers backend on the same work, and the toy `siri train` round time with vLLM
rollouts against transformers rollouts.

Eval: one engine (``siri_rl.evaluate.VLLMBackend``) serves both vLLM paths, alternating in every repeat, so they
share the model, the KV cache and the machine's load:

* bare: what a vLLM user writes, one request per problem with ``SamplingParams(n=N, seed=...)``;
* siri eval: ``VLLMBackend.generate`` on the units ``plan_units`` makes, one ``n=1`` request per sample with its
  own seed (the reproducibility rule);
* transformers: ``TransformersBackend.generate`` on the same units (the same prompt ids, n, max tokens, sampling).

A random model almost never emits EOS, so every sample runs to ``--max-tokens`` on all three paths; the rate is
generated tokens per second. Targets: siri eval >= 0.95x bare.

Train: ``siri train -c toy-quick`` with a vLLM-compatible toy model (hidden 128, 2 heads: head_dim 64) for
``--rounds`` rounds, once with ``trl.use_vllm=true trl.vllm_mode=colocate`` and once with transformers rollouts;
the round time is the mean of ``wall_s`` differences in metrics.jsonl after the first round (engine start and
the first round's warm-up excluded).

    python benchmarks/vllm_throughput.py --json /tmp/vllm_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIRI_SHARED_DIR", REPO.parent / "shared"))


def build_model(path: Path, hidden: int, layers: int) -> str:
    """eval_throughput's random Qwen2 with heads of 64 (vLLM's CPU attention rejects smaller ones)."""
    from eval_throughput import build_tiny_model  # the sibling script (benchmarks/ is on sys.path when run)

    return build_tiny_model(path, hidden, layers, heads=hidden // 64, kv_heads=1)


def eval_paths(args, work: Path) -> dict:
    import torch

    from siri_rl.data import load_benchmark
    from siri_rl.evaluate import EvalConfig, TransformersBackend, VLLMBackend, plan_units
    from siri_rl.prompts import load_tokenizer, prompt_token_ids

    model = args.model or build_model(work / "model", args.hidden, args.layers)
    tok = load_tokenizer(model)
    rows = load_benchmark("math500", SHARED / "data" / "benchmarks")[: args.problems]
    problems = {"math500": rows}
    prompts = {("math500", str(p["id"])): prompt_token_ids(p["problem"], tok) for p in rows}
    common = dict(model=model, out=work / "unused", benchmarks=["math500"], n=args.n, max_tokens=args.max_tokens,
                  temperature=0.6, top_p=0.95, seed=0, enforce_eager=args.enforce_eager, progress=False)
    vcfg = EvalConfig(backend="vllm", batch_size=args.problems, **common)
    tcfg = EvalConfig(backend="transformers", batch_size=args.problems * args.n, **common)
    vcalls = plan_units(problems, prompts, vcfg, set())
    tcalls = plan_units(problems, prompts, tcfg, set())

    t0 = time.perf_counter()
    backend = VLLMBackend(model, tok, vcfg, max_prompt_tokens=max(len(p) for p in prompts.values()))
    engine_start = time.perf_counter() - t0
    params = backend.SamplingParams(n=args.n, temperature=0.6, top_p=0.95, top_k=0, max_tokens=args.max_tokens,
                                    seed=0, skip_special_tokens=True)
    bare_prompts = [{"prompt_token_ids": p} for p in prompts.values()]

    def bare() -> int:
        outs = backend.llm.generate(bare_prompts, sampling_params=params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outs for c in o.outputs)

    def ours() -> int:
        return sum(len(c.token_ids) for seed, call in vcalls for comps in backend.generate(call, seed) for c in comps)

    bare(), ours()  # warm-up (first requests also fill the prefix cache)
    times: dict[str, list[float]] = {"bare": [], "siri": []}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("siri", ours)):
            t = time.perf_counter()
            tokens[name] = fn()
            times[name].append(time.perf_counter() - t)
    backend.close()  # stop the engine before the transformers backend runs

    torch.set_num_threads(args.threads or torch.get_num_threads())
    tb = TransformersBackend(model, tok, tcfg)
    tt = []
    for _ in range(max(1, args.repeats // 2)):
        t = time.perf_counter()
        tokens["transformers"] = sum(len(c.token_ids) for seed, call in tcalls for comps in tb.generate(call, seed)
                                     for c in comps)
        tt.append(time.perf_counter() - t)
    times["transformers"] = tt
    best = {k: min(v) for k, v in times.items()}
    rate = {k: tokens[k] / best[k] for k in best}
    return {
        "model": args.model or f"random Qwen2 hidden={args.hidden} layers={args.layers} vocab={len(tok)}",
        "problems": args.problems, "n": args.n, "max_tokens": args.max_tokens, "repeats": args.repeats,
        "enforce_eager": args.enforce_eager, "engine_start_s": round(engine_start, 1),
        "tokens": tokens, "best_seconds": {k: round(v, 3) for k, v in best.items()},
        "tok_per_s": {k: round(v, 1) for k, v in rate.items()},
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "siri_over_bare": round(rate["siri"] / rate["bare"], 3),
        "vllm_over_transformers": round(rate["siri"] / rate["transformers"], 2),
    }


def train_round_time(args, work: Path, use_vllm: bool) -> dict:
    run = work / ("train-vllm" if use_vllm else "train-hf")
    cmd = [sys.executable, "-m", "siri_rl.cli", "train", "-c", "toy-quick", "-o", str(run),
           "toy.base.hidden_size=128", "toy.base.num_heads=2", f"training.rounds={args.rounds}", *args.overrides]
    if use_vllm:
        cmd += ["trl.use_vllm=true", "trl.vllm_mode=colocate"]
    env = dict(os.environ, SIRI_TOY_CACHE=str(work / "toy-cache"))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"siri train failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    walls = [r["wall_s"] for r in rows]
    per_round = [b - a for a, b in zip(walls, walls[1:])]
    return {"rounds": len(rows), "round_s_mean": round(statistics.mean(per_round), 3),
            "round_s_median": round(statistics.median(per_round), 3), "first_round_s": walls[0],
            "tokens_generated": rows[-1]["tokens_generated"], "process_wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model path (default: a random Qwen2, head_dim 64)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--problems", type=int, default=8, help="MATH500 problems")
    ap.add_argument("--n", type=int, default=8, help="samples per problem")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the transformers backend")
    ap.add_argument("--rounds", type=int, default=8, help="toy training rounds per rollout path")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="passed to both toy `siri train` runs (e.g. toy.base.sft_steps=2 for a quick check)")
    args = ap.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    work = Path(tempfile.mkdtemp(prefix="siri-vllm-bench-"))
    try:
        result = {} if args.skip_eval else {"eval": eval_paths(args, work)}
        if not args.skip_train:
            result["train"] = {"transformers": train_round_time(args, work, False),
                               "vllm": train_round_time(args, work, True)}
            t = result["train"]
            t["vllm_over_transformers_round_time"] = round(t["vllm"]["round_s_mean"] / t["transformers"]["round_s_mean"], 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "eval" in result:
        e = result["eval"]
        print("| path | tokens | best s | tokens/s |\n|---|---|---|---|")
        for k in ("bare", "siri", "transformers"):
            print(f"| {k} | {e['tokens'][k]} | {e['best_seconds'][k]} | {e['tok_per_s'][k]} |")
        print(f"\nsiri eval / bare vLLM: {e['siri_over_bare']}x (target >= 0.95); vLLM / transformers backend: "
              f"{e['vllm_over_transformers']}x; engine start {e['engine_start_s']} s")
    if "train" in result:
        t = result["train"]
        print(f"toy round time: transformers rollouts {t['transformers']['round_s_mean']} s, vLLM rollouts "
              f"{t['vllm']['round_s_mean']} s (vLLM / transformers = {t['vllm_over_transformers_round_time']})")
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
