"""Every script under benchmarks/ runs, as a user runs it (a subprocess), with tiny settings: a benchmark whose
command no longer works is found here, not when someone re-measures a number of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

# A toy run in seconds: a base model of one small layer after 2 supervised steps, 2 rounds of 2x2 rollouts, one
# held-out problem per difficulty.
TINY_TOY = ["training.rounds=2", "training.prompts_per_round=2", "training.group_size=2", "toy.train_problems=16",
            "toy.torch_threads=1", "toy.base.sft_steps=2", "toy.base.hidden_size=16", "toy.base.num_layers=1",
            "toy.base.num_heads=2", "toy.base.intermediate_size=32", "toy.eval.per_difficulty=1"]


def test_every_benchmark_script_has_a_smoke_test():
    """Here, or in a test file of its own (tests/test_<script>.py, e.g. gpu_check's --tiny run)."""
    here = Path(__file__).read_text(encoding="utf-8")
    missing = [p.name for p in sorted(BENCH.glob("*.py"))
               if f'"{p.name}"' not in here and not (Path(__file__).parent / f"test_{p.name}").is_file()]
    assert not missing, f"benchmarks without a smoke test in {Path(__file__).name} or their own file: {missing}"


def bench(script: str, *args: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    """Run ``benchmarks/script`` with ``args`` (and ``env`` added to the environment); its stdout (stderr shown when
    it fails)."""
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "SIRI_TOY_CACHE": str(tmp_path / "toy-cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parent), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_grading_benchmark_runs(tmp_path, shared_dir):
    out = tmp_path / "grading.json"
    bench("grading.py", "--shared-dir", str(shared_dir), "--problems", "8", "--samples", "2", "--n", "20",
          "--workers", "1", "--timeout", "0.5", "--out", str(out), tmp_path=tmp_path)
    result = json.loads(out.read_text())
    assert result["eval_like/pool"]["answers"] == 16 and result["all_distinct/pool"]["answers"] == 20
    assert set(result["pathological"]) == {"power tower", "factorial tower", "deep fractions", "deep parentheses",
                                           "long polynomial", "huge integer", "20k characters", "unbalanced latex",
                                           "big matrix"}


def test_eval_throughput_benchmark_runs(tmp_path, shared_dir):
    out = tmp_path / "eval.json"
    bench("eval_throughput.py", "--hidden", "32", "--layers", "1", "--problems", "1", "--n", "2", "--batch-size", "2",
          "--max-tokens", "4", "--repeats", "1", "--grade-n", "10", "--grade-workers", "1", "--threads", "1",
          "--json", str(out), tmp_path=tmp_path, env={"SIRI_SHARED_DIR": str(shared_dir)})
    result = json.loads(out.read_text())
    assert result["bare_tokens"] == result["eval_tokens"] == 8 and result["grading"]["answers"] == 10


@pytest.mark.slow
def test_train_overhead_benchmark_runs(tmp_path, tiny_toy_model):
    out = tmp_path / "overhead.json"
    bench("train_overhead.py", "--model", str(tiny_toy_model), "--rounds", "2", "--warmup", "1", "--repeats", "1",
          "--cap", "8", "--threads", "1", "--json", str(out), tmp_path=tmp_path)
    result = json.loads(out.read_text())
    assert result["rounds_measured"] == {"bare": 1, "siri": 1} and result["ratio_median"] > 0


def test_validation_cost_benchmark_runs(tmp_path, tiny_toy_model):
    out = tmp_path / "validation.json"
    bench("validation_cost.py", "--model", str(tiny_toy_model), "--rounds", "2", "--every", "1",
          "--per-difficulty", "1", "--cap", "8", "--threads", "1", "--json", str(out), tmp_path=tmp_path)
    result = json.loads(out.read_text())
    assert result["validations"] == 3 and result["same_numbers"] and result["validation_samples"] == 6


@pytest.mark.slow
def test_toy_compare_and_toy_spiral_report_run(tmp_path):
    runs = tmp_path / "runs"
    stdout = bench("toy_compare.py", "--run", "--out", str(runs), *TINY_TOY, tmp_path=tmp_path)
    assert "| toy-constant-min |" in stdout
    assert (runs / "compare.md").is_file() and (runs / "compare.png").stat().st_size > 10_000
    stdout = bench("toy_spiral.py", "report", str(runs), tmp_path=tmp_path)
    assert "| toy-constant |" in stdout


@pytest.mark.slow
def test_toy_adaptive_benchmark_runs(tmp_path):
    runs = tmp_path / "runs"
    stdout = bench("toy_adaptive.py", "--run", "--out", str(runs), *TINY_TOY, tmp_path=tmp_path)
    assert "| toy-adaptive |" in stdout and (runs / "adaptive.png").stat().st_size > 10_000


def test_toy_spiral_budget_runs(tmp_path):
    stdout = bench("toy_spiral.py", "budget", "-c", "toy-quick", "--caps", "8,16", "--threads", "1", "--out",
                   str(tmp_path / "budget"), "toy.base.sft_steps=2", "toy.base.hidden_size=16", "toy.base.num_layers=1",
                   "toy.base.num_heads=2", "toy.base.intermediate_size=32", "toy.eval.per_difficulty=1",
                   tmp_path=tmp_path)
    assert [line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| ") and
            line.split("|")[1].strip().isdigit()] == ["8", "16"]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_throughput_benchmark_runs(tmp_path, vllm_env, shared_dir):
    env = {**vllm_env, "SIRI_SHARED_DIR": str(shared_dir)}
    out = tmp_path / "vllm.json"
    # the eval paths, on one engine
    bench("vllm_throughput.py", "--problems", "1", "--n", "2", "--max-tokens", "4", "--repeats", "1",
          "--enforce-eager", "--threads", "1", "--skip-train", "--json", str(out), tmp_path=tmp_path, env=env)
    result = json.loads(out.read_text())
    assert result["eval"]["tokens"]["bare"] == result["eval"]["tokens"]["siri"] == 8
    # two toy trainings (2 rounds: one round time), with and without vLLM rollouts
    args = ["--skip-eval", "--rounds", "2", "--json", str(out), "toy.base.sft_steps=2", "toy.base.num_layers=1",
            "toy.train_problems=16", "training.prompts_per_round=2", "training.group_size=2",
            "toy.eval.per_difficulty=1"]
    proc = subprocess.run([sys.executable, str(BENCH / "vllm_throughput.py"), *args], cwd=tmp_path,
                          env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = json.loads(out.read_text())["train"]
    assert train["vllm"]["rounds"] == train["transformers"]["rounds"] == 2


@pytest.mark.slow
def test_toy_seeds_benchmark_runs_and_counts_claims_per_seed(tmp_path):
    runs = tmp_path / "runs"
    stdout = bench("toy_seeds.py", "run", "--out", str(runs), "--seeds", "0,1", "--base-seeds", "0", *TINY_TOY,
                   tmp_path=tmp_path)
    summary = json.loads((runs / "seeds.json").read_text())
    assert [(r["config"], r["seed"]) for r in summary["runs"]] == [
        ("toy", 0), ("toy", 1), ("toy-constant", 0), ("toy-constant", 1), ("toy-constant-min", 0),
        ("toy-constant-min", 1)]
    group = summary["groups"]["base0"]
    assert group["runs"] == 2 and all(c["of"] == 2 for c in group["claims"].values())
    assert group["checkpoints"]["base"]["acc"]["n"] == 2 and "| seeds where it holds |" in stdout
    assert (runs / "seeds.png").stat().st_size > 10_000
    # a second `run` finds every run finished and only reports
    again = bench("toy_seeds.py", "run", "--out", str(runs), "--seeds", "0,1", "--base-seeds", "0", *TINY_TOY,
                  tmp_path=tmp_path)
    assert again.count("done, skipped") == 6


@pytest.mark.slow
def test_toy_threads_benchmark_runs(tmp_path):
    out = tmp_path / "threads"
    tiny = [o for o in TINY_TOY if not o.startswith(("training.rounds", "toy.torch_threads"))]
    stdout = bench("toy_threads.py", "--out", str(out), "--sft-steps", "2", "--rounds", "2", "--repeats", "1", *tiny,
                   tmp_path=tmp_path)
    cells = json.loads((out / "threads.json").read_text())["cells"]
    assert sorted(cells) == sorted(f"{piece}|{load}|{threads}" for piece in ("sft", "rl") for load in ("idle", "busy")
                                   for threads in ("1", "2", "default"))
    assert all(len(v) == 1 and v[0] > 0 for v in cells.values()) and "| RL round | busy | 1 |" in stdout


def _toy_seeds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_seeds", BENCH / "toy_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_seeds_claims_compare_checkpoints_as_the_docs_define_them():
    """The claim counts of docs/benchmarks.md, on hand-made summaries: what each claim compares, and its edges."""
    seeds = _toy_seeds()

    def row(name, acc, length, hard=0.0):
        return {"name": name, "accuracy": acc, "mean_length": length, "by_difficulty": {"3": 1.0, "12": hard}}

    def run(*rows, lens=(90, 30, 80)):
        caps = [128, 40, 128]
        return {"results": list(rows), "metrics": [{"max_len": c, "completion_len_mean": n} for c, n in zip(caps, lens)]}

    siri = run(row("base", 0.665, 92.6), row("cycle1-compressed", 0.70, 60.0), row("cycle1-expanded", 0.94, 45.0),
               row("cycle2-compressed", 0.98, 44.0), row("cycle2-expanded", 0.974, 41.5, hard=0.9))
    const = run(row("base", 0.665, 92.6), row("final", 1.0, 60.0, hard=1.0))
    const_min = run(row("base", 0.665, 92.6), row("final", 0.66, 30.0))
    c = seeds.claims_for(siri, const, const_min)
    assert list(c) == list(seeds.CLAIMS)
    assert c["high_beats_constant"] is False and c["high_close_and_shorter"] is True  # 97.4% vs 100%, 41.5 < 60
    assert c["expanded_rise"] and c["compressed_short"] is False and c["compressed_accurate"] is True  # 60 > 0.6 * 92.6
    assert c["beats_constant_min_hard"] and c["length_oscillates"] is False  # trough 30 then peak 80 (3-round means)
    farther = run(row("base", 0.665, 92.6), row("final", 1.0, 40.0))
    assert seeds.claims_for(siri, farther, None)["high_close_and_shorter"] is False  # as accurate only, not shorter
    assert seeds.claims_for(siri, None, None)["high_close_and_shorter"] is None  # no constant trained: not counted
