"""benchmarks/gpu_check.py: its --tiny mode (the same code as on a GPU, on the CPU with a 2-layer model), its input
errors, and the memory projection's arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, shared: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    if shared is not None:
        env["SIRI_SHARED_DIR"] = str(shared)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)


@pytest.mark.slow
def test_gpu_check_tiny_writes_its_report_and_passes_its_checks(shared_dir, tmp_path):
    out = tmp_path / "out"
    proc = _run("--tiny", "--out", str(out), "--work", str(tmp_path / "work"), shared=shared_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    for section in ("## Checks", "## Training", "## Evaluation throughput", "## Per-GPU memory"):
        assert section in md

    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert set(checks) == {"three rounds trained", "caps as planned", "every completion <= its round's cap",
                           "weights move at lr 1e-6", "fp32 master weights", "update computes in float32"}
    assert all(checks.values()), report["checks"]

    train = report["train"]
    rounds = train["rounds"]
    assert [r["cap"] for r in rounds] == [16, 8, 16]  # the cap changes, down and up again
    for r in rounds:
        assert r["completion_len_max"] <= r["cap"] and 0 < r["generation_forwards"] <= r["cap"]
        assert r["completions"] == 8 and r["tokens"] > 0
        assert r["round_seconds"] > 0 and r["generation_seconds"] > 0 and r["update_seconds"] > 0
        assert r["scoring_seconds"] >= 0
        assert r["generation_seconds"] + r["scoring_seconds"] + r["update_seconds"] == pytest.approx(r["round_seconds"])
        assert r["generation_tokens_per_s"] > 0 and r["round_tokens_per_s"] > 0
        assert r["micro_batch"] == 4 and r["sequence_width"] > r["cap"]  # prompt + completion
        assert r["peak_update_bytes"] is None  # no GPU
    # The shipped 1.5B config's policy: fp32 weights (model.dtype auto), group size 8, micro-batch 4, lr 1e-6.
    assert train["planned_precision"]["weights"] == "float32" and train["param_dtypes"] == ["float32"]
    assert report["shipped_config"] == {"name": "r1-distill-1.5b-siri-cosine640", "model.dtype": "auto",
                                        "group_size": 8, "per_device_train_batch_size": 4, "learning_rate": 1e-6}
    assert train["grpo"]["learning_rate"] == 1e-6 and train["grpo"]["per_device_train_batch_size"] == 4
    assert train["weights_changed"]["mean_fraction"] > 0.9

    ev = report["eval"]
    assert ev["rows"] == 4 and ev["dtype"] == "float32"
    # The same seeded rows through siri eval and the bare loop: the same tokens.
    assert ev["eval_tokens"] == ev["bare_tokens"] > 0
    assert ev["ratio"] > 0 and report["eval_ratio_target"]["target"] == 0.95

    model = report["model"]
    assert model["architecture"]["vocab_size"] == 151936 and model["architecture"]["tie_word_embeddings"] is False
    assert model["tokenizer_tokens"] == 151665 and model["eos_token_id"] == 151643

    # Without a GPU the activation terms are unknown: lower bounds over the exact parameter counts.
    assert report["memory_measured"] is None
    proj = report["memory_projection"]
    p15 = proj["r1-distill-1.5b"]
    assert p15["parameters"] == 1_777_088_000 and p15["complete"] is False
    assert p15["terms"]["weights_grads_adam_16P"] == 16 * 1_777_088_000
    assert proj["r1-distill-7b-fsdp8"]["parameters"] == 7_615_616_512


def test_project_memory_adds_its_terms():
    gc = _module()
    p15 = {"total": 1_777_088_000, "layer": 46_797_824, "embedding": 233_373_696}
    p7 = {"total": 7_615_616_512, "layer": 233_057_792, "embedding": 544_997_376}
    card = 80 * gc.GiB
    measured = {"bytes_per_token": 200_000.0, "peak_update_1024": 30 * gc.GiB, "width_1024": 1408}
    proj = gc.project_memory(measured, p15=p15, p7=p7, card_bytes=card)
    e = proj["r1-distill-1.5b"]
    act = 200_000.0 * 4 * (17408 - 1408)
    assert e["terms"]["activations_to_17408_tokens"] == pytest.approx(act)
    assert e["total_bytes"] == int(30 * gc.GiB + act + 4 * p15["total"] + int(0.35 * card))
    assert e["complete"] is True and e["fits"] is (e["total_bytes"] <= card)
    assert e["vllm_kv_room_bytes"] == int(0.35 * card) - 2 * p15["total"]
    seven = proj["r1-distill-7b-fsdp8"]
    assert seven["terms"]["sharded_weights_grads_adam_16P/8"] == 16 * p7["total"] // 8
    assert seven["terms"]["activations_17408_tokens_B2"] == pytest.approx(200_000.0 * 3584 / 1536 * 2 * 17408)
    assert proj["r1-distill-7b-fsdp16"]["total_bytes"] < seven["total_bytes"]


def test_project_memory_from_measured_rounds():
    gc = _module()
    rounds = [{"round": 0, "cap": 1024, "peak_update_bytes": 9_000, "sequence_width": 1300, "micro_batch": 4},
              {"round": 1, "cap": 512, "peak_update_bytes": 5_000, "sequence_width": 800, "micro_batch": 4},
              {"round": 2, "cap": 1024, "peak_update_bytes": 7_000, "sequence_width": 1300, "micro_batch": 4}]
    m = gc.measured_memory(rounds)
    # The last round of each cap (round 0 also allocates the AdamW moments).
    assert m["peak_update_1024"] == 7_000 and m["peak_update_512"] == 5_000
    assert m["bytes_per_token"] == pytest.approx(2_000 / (4 * 500))
    assert gc.measured_memory([{**r, "peak_update_bytes": None} for r in rounds]) is None


@pytest.mark.parametrize("args,match", [
    (["--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok: no tokenizer.json"),
    (["--aime24", "/nonexistent/aime24.jsonl"], "--aime24 /nonexistent/aime24.jsonl: no such file"),
    (["--caps", "1024"], "--caps needs at least two rounds"),
    (["--caps", "10x,5"], "--caps must be comma-separated"),
    (["--group-size", "1"], "--group-size must be at least 2"),
], ids=["tokenizer", "aime24", "one-cap", "bad-caps", "group"])
def test_gpu_check_bad_input_is_one_line(shared_dir, tmp_path, args, match):
    out = tmp_path / "out"
    proc = _run("--tiny", "--out", str(out), *args, shared=shared_dir)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], proc.stderr
    assert not out.exists()
