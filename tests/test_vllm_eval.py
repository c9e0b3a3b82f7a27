"""`siri eval --backend vllm` on a real vLLM engine (the CPU build in CI) with a tiny random Qwen2 and the real
R1-distill tokenizer: prompts, caps, finish reasons, per-sample seeds, and a real ``kill -9`` followed by a resume
that must give the same file as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

MAX_TOKENS = 24


def _eval_cmd(model: Path, out: Path, benchmarks_dir: Path, *, limit: int, n: int) -> list[str]:
    return [sys.executable, "-m", "siri_rl.cli", "eval", "--model", str(model), "--backend", "vllm",
            "--benchmarks", "aime24", "--data-dir", str(benchmarks_dir), "--limit", str(limit), "--n", str(n),
            "--max-tokens", str(MAX_TOKENS), "--batch-size", "1", "--enforce-eager", "--seed", "3",
            "--grade-workers", "1", "--no-progress", "--out", str(out)]


def _by_key(path: Path) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = [(r["benchmark"], r["problem_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a sample is in the file twice"
    return dict(zip(keys, rows, strict=True))


def test_vllm_backend_prompts_caps_and_per_sample_seeds(vllm_qwen2_dir, vllm_env, benchmarks_dir, r1_tokenizer):
    """The engine sees exactly the chat-template ids the transformers backend is given (one BOS), every sample
    stops within the cap with the right finish reason, the n samples of a problem differ, and a sample depends on
    its own index only: samples 2..3 drawn alone equal samples 2..3 drawn with 0..1."""
    from siri_rl.data import load_benchmark
    from siri_rl.evaluate import EvalConfig, Unit, VLLMBackend
    from siri_rl.prompts import prompt_token_ids

    cfg = EvalConfig(model=str(vllm_qwen2_dir), out=Path("unused"), benchmarks=["aime24"], n=4,
                     max_tokens=MAX_TOKENS, backend="vllm", seed=3, enforce_eager=True)
    problems = load_benchmark("aime24", str(benchmarks_dir))[:3]
    units = [Unit("aime24", str(p["id"]), str(p["answer"]), prompt_token_ids(p["problem"], r1_tokenizer),
                  [0, 1, 2, 3], 0) for p in problems]
    backend = VLLMBackend(str(vllm_qwen2_dir), r1_tokenizer, cfg,
                          max_prompt_tokens=max(len(u.prompt_ids) for u in units))
    try:
        full = backend.generate(units, seed=0)
        again = backend.generate([Unit(u.benchmark, u.problem_id, u.gold, u.prompt_ids, [2, 3], 0)
                                  for u in units], seed=0)
    finally:
        backend.close()

    reasons = set()
    for u, comps in zip(units, full, strict=True):
        assert u.prompt_ids[0] == r1_tokenizer.bos_token_id and u.prompt_ids[1] != r1_tokenizer.bos_token_id
        assert len(comps) == 4
        for c in comps:
            assert c.prompt_token_ids == u.prompt_ids  # vLLM did not re-tokenise or add a second BOS
            assert len(c.token_ids) <= MAX_TOKENS
            assert r1_tokenizer.eos_token_id not in c.token_ids
            # "length" exactly when the cap was reached without an EOS (an EOS counts towards max_tokens)
            assert (c.finish_reason == "length") == (len(c.token_ids) == MAX_TOKENS)
            reasons.add(c.finish_reason)
        assert len({tuple(c.token_ids) for c in comps}) == 4, "samples of one problem are duplicates"
    assert reasons == {"stop", "length"}
    for comps, alone in zip(full, again, strict=True):
        assert [c.token_ids for c in comps[2:]] == [c.token_ids for c in alone]


def test_vllm_eval_kill_and_resume_equals_uninterrupted_run(vllm_qwen2_dir, vllm_env, benchmarks_dir, tmp_path):
    """`siri eval --backend vllm` killed with SIGKILL between engine calls, then a problem cut part-way (two of
    its samples removed) and a half-written line: the rerun completes the file with exactly the samples an
    uninterrupted run with the same seed wrote."""
    limit, n = 10, 4
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = subprocess.run(_eval_cmd(vllm_qwen2_dir, full, benchmarks_dir, limit=limit, n=n), env=vllm_env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    reference = _by_key(full / "samples.jsonl")
    assert len(reference) == limit * n

    proc = subprocess.Popen(_eval_cmd(vllm_qwen2_dir, killed, benchmarks_dir, limit=limit, n=n), env=vllm_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    samples = killed / "samples.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= n:
            proc.send_signal(signal.SIGKILL)  # the main process only, as `kill -9 PID` does
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    time.sleep(3)  # vLLM's engine process notices its parent's death and exits
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of that job, so nothing competes for the CPU
    except ProcessLookupError:
        pass
    partial = _by_key(samples)
    assert n <= len(partial) < limit * n
    # Cut the first problem part-way (its samples 2 and 3 go) and leave a half-written line behind.
    first = partial[min(partial)]["problem_id"]
    kept = [r for k, r in partial.items() if not (k[1] == first and k[2] >= 2)]
    samples.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"benchmark": "aime24", "prob')

    rerun = subprocess.run(_eval_cmd(vllm_qwen2_dir, killed, benchmarks_dir, limit=limit, n=n), env=vllm_env,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    resumed = _by_key(samples)
    assert resumed.keys() == reference.keys()
    for key, ref_row in reference.items():
        row = resumed[key]
        assert (row["token_ids"], row["response"], row["finish_reason"], row["correct"]) == (
            ref_row["token_ids"], ref_row["response"], ref_row["finish_reason"], ref_row["correct"]), key
    summary, ref_summary = (json.loads((d / "summary.json").read_text())["benchmarks"] for d in (killed, full))
    assert summary == ref_summary
