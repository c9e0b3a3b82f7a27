"""`siri eval` generation throughput against a bare batched ``model.generate``, and grading throughput.

Both generation paths use the same model, the same prompt token ids (``siri_rl.data.prompt_token_ids`` on MATH500),
the same rows per batch, the same sampling settings (temperature 0.6, top-p 0.95, top-k off) and the same
``max_new_tokens``; a random model almost never emits EOS, so every row runs to ``max_new_tokens`` in both.
Target: ``siri eval`` >= 0.9x the bare loop's generated tokens per second.

Grading throughput: ``siri_rl.reward.grade_batch`` on responses built from MATH500's gold answers (half right,
half wrong), answers per second.

    python benchmarks/eval_throughput.py                       # tiny random Qwen2 + R1 tokenizer, CPU
    python benchmarks/eval_throughput.py --model PATH --device cuda --batch-size 64 --max-tokens 1024

Results go to stdout as a markdown table and, with --json, to a file; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIRI_SHARED_DIR", REPO.parent / "shared"))


def build_tiny_model(path: Path, hidden: int, layers: int, *, heads: int = 4, kv_heads: int = 2) -> str:
    """A random-init Qwen2 with the real R1-distill tokenizer (the same shape family as the tests use)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from siri_rl.prompts import load_tokenizer

    tok = load_tokenizer(str(SHARED / "tokenizers" / "deepseek-r1-distill-qwen"))
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def bare_generate(model, batches, *, pad_id, eos_id, max_new_tokens, device) -> tuple[int, float]:
    """The reference: left-pad each batch and call model.generate; returns (new tokens, seconds)."""
    import torch

    tokens, seconds = 0, 0.0
    for seed, rows in batches:
        torch.manual_seed(seed)
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=0.6, top_p=0.95, top_k=0, pad_token_id=pad_id, eos_token_id=eos_id)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        new = out[:, width:]
        # count up to and excluding the first EOS, as siri eval does
        for row in new.tolist():
            tokens += row.index(eos_id) if eos_id in row else len(row)
    return tokens, seconds


def grading_throughput(n: int, workers: int | None) -> dict:
    from siri_rl.data import load_benchmark
    from siri_rl.reward import grade_batch

    problems = load_benchmark("math500", SHARED / "data" / "benchmarks")
    rng = random.Random(0)
    texts, golds = [], []
    for i in range(n):
        p = problems[i % len(problems)]
        ans = p["answer"] if i % 2 == 0 else p["answer"] + "+1"
        texts.append(f"<think>\nLet me work through this. {'Wait, ' * rng.randint(0, 5)}so the answer follows.\n"
                     f"</think>\n\nThe final answer is $\\boxed{{{ans}}}$.")
        golds.append(p["answer"])
    t0 = time.perf_counter()
    grades = grade_batch(texts, golds, workers=workers)
    dt = time.perf_counter() - t0
    return {"answers": n, "seconds": round(dt, 3), "answers_per_s": round(n / dt, 1),
            "correct": sum(g.correct for g in grades), "statuses": sorted({g.status for g in grades})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model path (default: build a tiny random Qwen2)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--problems", type=int, default=4, help="MATH500 problems")
    ap.add_argument("--n", type=int, default=8, help="samples per problem")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats of each path (best is kept)")
    ap.add_argument("--grade-n", type=int, default=1000, help="responses for the grading benchmark")
    ap.add_argument("--grade-workers", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.data import load_benchmark
    from siri_rl.evaluate import EvalConfig, plan_units, run_eval
    from siri_rl.prompts import load_tokenizer, prompt_token_ids

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="siri-eval-bench-"))
    try:
        model_path = args.model or build_tiny_model(work / "model", args.hidden, args.layers)
        data_dir = SHARED / "data" / "benchmarks"
        cfg = EvalConfig(model=model_path, out=work / "eval", benchmarks=["math500"], n=args.n, max_tokens=args.max_tokens,
                         backend="transformers", data_dir=str(data_dir), limit=args.problems,
                         batch_size=args.batch_size, device=device, dtype=args.dtype, progress=False,
                         grade_workers=args.grade_workers)
        # the exact rows and per-batch seeds siri eval will use
        tok = load_tokenizer(model_path)
        problems = {"math500": load_benchmark("math500", data_dir)[: args.problems]}
        prompts = {("math500", str(p["id"])): prompt_token_ids(p["problem"], tok) for p in problems["math500"]}
        batches = [(seed, [u.prompt_ids for u in units for _ in u.sample_indices])
                   for seed, units in plan_units(problems, prompts, cfg, set())]

        dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32}.get(
            args.dtype, getattr(torch, args.dtype, None))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
        bare_generate(model, batches[:1], pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                      max_new_tokens=min(8, args.max_tokens), device=device)  # warm-up

        bare, ours, walls = [], [], []
        for r in range(args.repeats):
            tokens, secs = bare_generate(model, batches, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                                         max_new_tokens=args.max_tokens, device=device)
            bare.append((tokens, secs))
            cfg.out = work / f"eval{r}"
            t0 = time.perf_counter()
            gen = run_eval(cfg)["meta"]["generation"]
            walls.append(time.perf_counter() - t0)
            ours.append((gen["new_tokens"], gen["generate_seconds"]))
        b_tok, b_s = min(bare, key=lambda x: x[1])
        o_tok, o_s = min(ours, key=lambda x: x[1])
        grading = grading_throughput(args.grade_n, args.grade_workers)
        result = {
            "device": device if device == "cpu" else torch.cuda.get_device_name(),
            "cpu_threads": torch.get_num_threads(),
            "host": platform.machine(),
            "model": args.model or f"random Qwen2 hidden={args.hidden} layers={args.layers} vocab={len(tok)}",
            "rows": sum(len(b) for _, b in batches), "batch_size": args.batch_size, "max_tokens": args.max_tokens,
            "bare_tokens": b_tok, "bare_seconds": round(b_s, 3), "bare_tok_per_s": round(b_tok / b_s, 1),
            "eval_tokens": o_tok, "eval_generate_seconds": round(o_s, 3), "eval_tok_per_s": round(o_tok / o_s, 1),
            "ratio": round((o_tok / o_s) / (b_tok / b_s), 3),
            "eval_wall_seconds_min": round(min(walls), 3),
            "eval_end_to_end_tok_per_s": round(o_tok / min(walls), 1),
            "grading": grading,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| path | tokens | seconds | tokens/s |\n|---|---|---|---|")
    print(f"| bare model.generate | {result['bare_tokens']} | {result['bare_seconds']} | {result['bare_tok_per_s']} |")
    print(f"| siri eval (generation) | {result['eval_tokens']} | {result['eval_generate_seconds']} | "
          f"{result['eval_tok_per_s']} |")
    print(f"| siri eval (end to end, incl. load/grade/write) | {result['eval_tokens']} | "
          f"{result['eval_wall_seconds_min']} | {result['eval_end_to_end_tok_per_s']} |")
    print(f"\nratio siri eval / bare: {result['ratio']}x (target >= 0.9)")
    g = result["grading"]
    print(f"grading: {g['answers']} answers in {g['seconds']} s = {g['answers_per_s']} answers/s "
          f"({g['correct']} correct; statuses {g['statuses']})")
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
