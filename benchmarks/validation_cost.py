"""The cost of held-out validation during training (``validation:``, TRL engine): one validation inside training
against a separate ``siri eval`` of the same work (same model, problems, n, lengths and seed: the transformers path
draws exactly the same samples) and against a plain training round, side by side in one process.

The run: the toy base model of configs/toy.yaml (or ``--model``), SIRI at a constant cap ``--cap`` for ``--rounds``
rounds of the toy's 16 prompts x 8 rollouts, validating on ``--per-difficulty`` held-out toy problems per difficulty
(the toy default's benchmark) before round 0, every ``--every`` rounds and at the end. Then ``siri eval``'s code
(``run_eval``, model loaded from ``checkpoints/final``) repeats the last validation. A validation's time runs from
its plan to its written records (generation, grading, summary, results directory); a round's from the Trainer's
step begin to step end (a validation runs after it, in ``on_log``).

    python benchmarks/validation_cost.py [--rounds 8] [--every 4] [--per-difficulty 32] [--cap 128] [--json F]
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
    """Wall time of every optimizer step (one rollout round here: one update per round)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--per-difficulty", type=int, default=32, help="held-out problems per difficulty")
    ap.add_argument("--n", type=int, default=1, help="samples per problem")
    ap.add_argument("--cap", type=int, default=128, help="L of training and max_tokens of validation (tokens)")
    ap.add_argument("--model", default=None, help="model dir (default: the toy base model of configs/toy.yaml)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from importlib.resources import files

    from siri_rl.config import config_from_dict, load_config
    from siri_rl.engines.trl import train
    from siri_rl.evaluate import EvalConfig, run_eval
    from siri_rl.evaluate.validation import Validator
    from siri_rl.run_dir import read_validation_rows
    from siri_rl.toy import toy_model_path, toy_spec, toy_train_rows
    from siri_rl.toy.task import balanced_problems

    toy = load_config(files("siri_rl") / "configs" / "toy.yaml")
    model_dir = args.model or str(toy_model_path(toy))
    seed = toy.toy.eval.seed
    timings: list[float] = []

    class TimedValidator(Validator):
        def plan(self, round_, backend):
            self._t0 = time.perf_counter()
            return super().plan(round_, backend)

        def write(self, round_, backend, calls, completions):
            rows = super().write(round_, backend, calls, completions)
            timings.append(time.perf_counter() - self._t0)
            return rows

    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "toy-heldout.jsonl"
        spec = toy_spec(toy)  # the toy default's held-out problems (siri_rl.toy.run.write_heldout_benchmark)
        held.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in balanced_problems(
            args.per_difficulty, seed=seed, min_terms=spec.min_terms, max_terms=spec.max_terms, task=spec.task,
            functions=spec.functions, difficulties=spec.difficulties)))
        cfg = config_from_dict({
            "name": "validation-cost",
            "model": {"name_or_path": model_dir, "dtype": "float32"},
            "data": {"train": "toy", "max_prompt_length": 64},
            "schedule": {"kind": "constant", "l_max": args.cap},
            "training": {"rounds": args.rounds, "prompts_per_round": 16, "group_size": 8, "learning_rate": 1e-4,
                         "device": "cpu", "seed": 0},
            "toy": {"train_problems": 2048, "base": toy.toy.base},
            "validation": {"benchmarks": [str(held)], "every": args.every, "n": args.n, "temperature": 0.6,
                           "top_p": 1.0, "max_tokens": args.cap, "seed": seed},
        })
        run = Path(tmp) / "run"
        timer = RoundTimer()
        train(cfg, output_dir=run, progress=False, callbacks=[timer], train_rows=toy_train_rows(cfg),
              validator=TimedValidator(cfg, run))
        last = read_validation_rows(run)[-1]
        t0 = time.perf_counter()
        summary = run_eval(EvalConfig(model=str(run / "checkpoints" / "final"), out=Path(tmp) / "eval",
                                      benchmarks=[str(held)], n=args.n, temperature=0.6, top_p=1.0,
                                      max_tokens=args.cap, backend="transformers", seed=seed, batch_size=64,
                                      dtype="float32", device="cpu", progress=False))
        eval_s = time.perf_counter() - t0
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gen = summary["meta"]["generation"]
    result = {
        "validations": len(timings),
        "validation_s": [round(t, 3) for t in timings],
        "validation_median_s": round(statistics.median(timings), 3),
        "last_validation_s": round(timings[-1], 3),
        "siri_eval_same_work_s": round(eval_s, 3),
        "siri_eval_generate_s": gen["generate_seconds"],
        "same_numbers": (last["acc"], last["mean_len"]) == (summary["benchmarks"]["toy-heldout"]["acc"],
                                                            summary["benchmarks"]["toy-heldout"]["length"]),
        "round_median_s": round(statistics.median(timer.times), 3),
        "round_tokens_median": statistics.median(r["tokens_round"] for r in rows),
        "validation_tokens": gen["new_tokens"],
        "validation_samples": summary["benchmarks"]["toy-heldout"]["n_samples"],
        "rollouts_per_round": 128,
        "cap": args.cap,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
