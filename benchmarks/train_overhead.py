"""Step time of `siri train` (TRL engine: schedule callback + length-capped reward + metrics.jsonl) against a bare
``trl.GRPOTrainer`` with the same model, data, cap and reward, side by side in one process.

Both runs generate exactly the same amount of text: EOS is suppressed (``generation_kwargs.suppress_tokens``, a
sampling setting), so every completion is L tokens long and the only difference left is SIRI's own work per round.
Runs alternate (bare, siri, bare, siri, ...) so machine-load drift hits both alike; the first rounds of each run are
warm-up and are dropped. Target: median round time ratio siri/bare <= 1.02.

    python benchmarks/train_overhead.py [--rounds 12] [--repeats 2] [--cap 64] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback


class RoundTimer(TrainerCallback):
    """Wall time of every optimizer step (= one rollout round here: one update per round)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def _config(model_dir: str, rounds: int, cap: int, eos: int, base: dict):
    """The toy run both sides train: ``base`` is the toy base model's spec (its task), for the training problems."""
    from siri_rl.config import config_from_dict

    return config_from_dict({
        "name": "overhead",
        "model": {"name_or_path": model_dir, "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},  # resolved to rows in main(), as `siri train` does
        "schedule": {"kind": "constant", "l_max": cap},
        "training": {"rounds": rounds, "prompts_per_round": 8, "group_size": 8, "learning_rate": 1e-4,
                     "device": "cpu", "seed": 0},
        "toy": {"train_problems": 2048, "base": base},
        "trl": {"generation_kwargs": {"suppress_tokens": [eos]}},
    })


def run_siri(cfg, out: Path, rows: list[dict]) -> list[float]:
    from siri_rl.engines.trl import train

    timer = RoundTimer()
    train(cfg, output_dir=out, progress=False, callbacks=[timer], train_rows=rows)
    return timer.times


def run_bare(cfg, out: Path, rows: list[dict]) -> list[float]:
    """The same GRPOConfig, model, dataset and reward, with TRL's own fixed ``max_completion_length``."""
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from siri_rl.engines.trl.config import grpo_kwargs
    from siri_rl.engines.trl.train import _train_dataset
    from siri_rl.reward import length_capped_reward
    from siri_rl.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(cfg.model.name_or_path)
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path)
    L = cfg.schedule.l_max

    def length_capped(completion_ids, answer, **kwargs):
        return [length_capped_reward(ids, gold, L, tok) for ids, gold in zip(completion_ids, answer, strict=True)]

    timer = RoundTimer()
    kw = grpo_kwargs(cfg, out)
    trainer = GRPOTrainer(model=model, reward_funcs=[length_capped], args=GRPOConfig(**kw),
                          train_dataset=_train_dataset(cfg, tok, rows), processing_class=tok, callbacks=[timer])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer.times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cap", type=int, default=64)
    ap.add_argument("--model", default=None, help="model dir (default: the toy base model of configs/toy.yaml)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_model_path, toy_train_rows
    from siri_rl.toy.tokenizer import build_toy_tokenizer

    toy = load_config(files("siri_rl") / "configs" / "toy.yaml")
    model_dir = args.model or str(toy_model_path(toy))
    cfg = _config(model_dir, args.rounds, args.cap, build_toy_tokenizer().eos_token_id, toy.toy.base)
    rows = toy_train_rows(cfg)  # the engine takes problems, not the name "toy" (the toy sits above the engines)
    times: dict[str, list[float]] = {"bare": [], "siri": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, fn in (("bare", run_bare), ("siri", run_siri)):
                t = fn(cfg, Path(tmp) / f"{name}{rep}", rows)
                times[name] += t[args.warmup:]
                print(f"repeat {rep} {name}: median round {statistics.median(t[args.warmup:]):.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "rounds_measured": {k: len(v) for k, v in times.items()},
        "median_round_s": med,
        "mean_round_s": {k: statistics.mean(v) for k, v in times.items()},
        "ratio_median": med["siri"] / med["bare"],
        "cap": args.cap,
        "completions_per_round": 64,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
