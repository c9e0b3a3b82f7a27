"""`siri train` with TRL's vLLM rollouts (``trl.use_vllm: true``, ``vllm_mode: colocate``) on a real vLLM engine
(the CPU build in CI): the cap of every rollout round reaches vLLM, and vLLM samples from the updated policy.

EOS is ignored through ``generation_kwargs`` (``SamplingParams.ignore_eos``; TRL passes them to vLLM,
trl/generation/vllm_generation.py:673), so every completion runs to the cap: the completion lengths vLLM actually
produced then *are* the cap applied in that round.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siri_rl.config import ConfigError, config_from_dict

pytestmark = pytest.mark.vllm

# TRL's measure of how far the rollout engine's log-probs are from the policy's (grpo_trainer.py:2860-2872).
LOGP_DIFF = "sampling/sampling_logp_difference/mean"


def _completion_logps(model_dir: Path, seqs: list[list[int]], prompt_len: int):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor(seqs)
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return logps[:, prompt_len - 1:]


def _vllm_repacks_linear_weights(model: Path) -> bool:
    """What vLLM's CPU GEMM dispatch does, in a process where siri has prepared TRL's colocated engine
    (``keep_linear_weights``), to a linear layer of the test model's size and engine dtype: True where it replaces
    the weight by an empty parameter for a packed kernel (vllm/model_executor/layers/linear.py:216 calls
    ``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)``, layers/utils.py). Decided by vLLM, independently of
    the start-up check under test, so a wrong check fails this test on either kind of CPU.

    The dtype is the engine's, not the checkpoint's: TRL builds its colocated ``LLM`` without a dtype
    (trl/generation/vllm_generation.py:347), and vLLM's "auto" downcasts a float32 checkpoint to the platform's
    preferred dtype (vllm/config/model.py:2372-2374, bfloat16 on the CPU). Whether oneDNN can pack depends on it:
    on an AMD EPYC without AVX-512 it packs a float32 weight and cannot build the bfloat16 kernel (and falls back to
    torch's linear, keeping the weight), so a float32 probe there predicted a repack the engine never made."""
    import torch
    from vllm.config import ModelConfig
    from vllm.model_executor.layers import utils as layer_utils

    from siri_rl.engines.trl.colocate import keep_linear_weights

    keep_linear_weights()
    layer = torch.nn.Linear(128, 128, bias=False).to(ModelConfig(model=str(model)).dtype)  # hidden_size 128
    layer_utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)  # looked up at call time, as linear.py does
    return layer.weight.numel() == 0


def test_the_colocated_engine_keeps_linear_weights_that_a_sync_updates():
    """``keep_linear_weights`` (engines/trl/colocate.py): vLLM's CPU dispatch, reached as vLLM's layers reach it
    (imported at call time), keeps a bf16 linear weight (the colocated engine's dtype) as a parameter, and an in-place
    load into it -- what TRL's sync does -- changes what the layer computes. Where vLLM packs weights (oneDNN,
    AMX's sgl kernel: this CPU), its own dispatch does neither."""
    import inspect

    import torch
    from vllm.model_executor.layers import linear, utils, vocab_parallel_embedding
    from vllm.model_executor.layers.utils import cpu_unquantized_gemm

    from siri_rl.engines.trl.colocate import keep_linear_weights

    for caller in (linear.UnquantizedLinearMethod, vocab_parallel_embedding.UnquantizedEmbeddingMethod):
        source = inspect.getsource(caller.process_weights_after_loading)
        assert "from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm" in source
    assert "layer.cpu_linear(x, weight, bias)" in inspect.getsource(cpu_unquantized_gemm)
    assert keep_linear_weights() and keep_linear_weights()  # idempotent
    assert utils.dispatch_cpu_unquantized_gemm.siri_keeps_weights
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 256, bias=False).to(torch.bfloat16)
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    assert layer.weight.shape == (256, 256)
    before = cpu_unquantized_gemm(layer, x, layer.weight)
    with torch.no_grad():
        layer.weight.copy_(2 * layer.weight)  # TRL's load_weights: in place
    assert torch.allclose(cpu_unquantized_gemm(layer, x, layer.weight), 2 * before, rtol=0.02, atol=1e-2)


@pytest.mark.parametrize("training", [{}, {"updates_per_round": 2}], ids=["plain", "spg>ga"])
def test_vllm_rollouts_follow_the_cap_and_the_updated_policy(vllm_toy_model, vllm_env, tmp_path, training):
    from transformers import TrainerCallback

    from siri_rl.engines.trl import train
    from siri_rl.toy import toy_train_rows

    class Logs(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and LOGP_DIFF in logs:
                self.logs.append(logs)

    cfg = config_from_dict({
        "name": "test-vllm",
        "model": {"name_or_path": str(vllm_toy_model), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        # Weight decay moves every weight matrix by lr * wd per update even without a reward signal (a random
        # policy scores 0 everywhere, so the GRPO gradient is zero): a stale rollout engine would show.
        "training": {"rounds": 4, "prompts_per_round": 2, "group_size": 4, "learning_rate": 0.2, "device": "cpu",
                     "seed": 1, **training},
        "toy": {"train_problems": 64},
        "trl": {"use_vllm": True, "vllm_mode": "colocate", "generation_kwargs": {"ignore_eos": True},
                "weight_decay": 1.0, "vllm_importance_sampling_correction": True},
    })
    logs = Logs()
    run = tmp_path / "run"
    if _vllm_repacks_linear_weights(vllm_toy_model):
        # A vLLM that still repacks linear weights with siri's keep_linear_weights applied (it packs by a path that
        # no longer goes through dispatch_cpu_unquantized_gemm): TRL's colocated sync cannot load into them, so siri
        # must stop at start-up with one line (engines/trl/colocate.py), not with vLLM's AttributeError at the first
        # sync -- and this test fails, because colocate.py no longer does what it says.
        with pytest.raises(ConfigError, match=r"^vLLM repacked \d+ weight\(s\) [^\n]*trl\.use_vllm=false\)$") as err:
            train(cfg, output_dir=run, progress=False, callbacks=[logs], train_rows=toy_train_rows(cfg))
        pytest.fail(f"vLLM repacks linear weights despite keep_linear_weights (engines/trl/colocate.py): {err.value}")
    train(cfg, output_dir=run, progress=False, callbacks=[logs], train_rows=toy_train_rows(cfg))  # data: toy
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [cfg.schedule(s) for s in range(4)]
    assert len(set(expected)) > 2
    assert [r["max_len"] for r in rows] == expected
    assert [r["completion_len_max"] for r in rows] == expected  # vLLM generated exactly each round's cap
    assert [r["completion_len_min"] for r in rows] == expected
    assert rows[-1]["tokens_generated"] == sum(8 * L for L in expected)
    updates = training.get("updates_per_round", 1)
    assert [r["optimizer_step"] for r in rows] == [updates * (s + 1) for s in range(4)]

    # vLLM's log-probs match the policy's in every round (bf16 engine vs fp32 policy: small, not zero) ...
    diffs = [log[LOGP_DIFF] for log in logs.logs]
    assert len(diffs) == 4  # one generation (rollout round) each
    assert max(diffs) < 0.05, diffs
    # ... while the policy moved far more than that: had vLLM kept the initial weights, the rounds after the first
    # would show this difference.
    card = max((json.loads(p.read_text()) | {"dir": p.parent} for p in run.glob("checkpoints/*/siri_checkpoint.json")),
               key=lambda c: c["step"])
    import torch

    torch.manual_seed(0)
    seqs = torch.randint(10, 30, (4, 20)).tolist()
    moved = (_completion_logps(vllm_toy_model, seqs, 8) - _completion_logps(card["dir"], seqs, 8)).abs().mean()
    assert moved > 10 * max(diffs), (float(moved), diffs)


def test_validation_through_the_colocated_engine_matches_siri_eval_within_the_interval(vllm_toy_model, vllm_env,
                                                                                       tmp_path):
    """``validation:`` with ``trl.use_vllm``: the trainer's own vLLM engine samples the held-out problems at the
    fixed cap (seeded per sample), after the rounds' weights are pushed to it; the last validation agrees with
    ``siri eval --backend vllm`` of the final checkpoint within the sampling interval, and the rollouts still
    follow the schedule's caps."""
    import os
    import subprocess
    import sys

    from siri_rl.engines.trl import train
    from siri_rl.evaluate.validation import Validator
    from siri_rl.run_dir import read_validation_rows, validation_results_dir
    from siri_rl.toy import toy_train_rows

    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Compute {i} + 2.", "answer": str(i + 2)}) + "\n"
                            for i in range(8)))
    cfg = config_from_dict({
        "name": "val-vllm",
        "model": {"name_or_path": str(vllm_toy_model), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        "training": {"rounds": 4, "prompts_per_round": 2, "group_size": 4, "learning_rate": 0.05, "device": "cpu",
                     "seed": 1},
        "toy": {"train_problems": 64},
        "validation": {"benchmarks": [str(held)], "every": 2, "n": 8, "temperature": 1.0, "top_p": 1.0,
                       "max_tokens": 16, "seed": 5},
        "trl": {"use_vllm": True, "vllm_mode": "colocate", "generation_kwargs": {"ignore_eos": True}},
    })
    run = tmp_path / "run"
    if _vllm_repacks_linear_weights(vllm_toy_model):
        pytest.fail("vLLM repacks linear weights despite keep_linear_weights (engines/trl/colocate.py)")
    train(cfg, output_dir=run, progress=False, train_rows=toy_train_rows(cfg), validator=Validator(cfg, run))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["completion_len_max"] for r in rows] == [cfg.schedule(s) for s in range(4)]  # the caps, untouched
    val = read_validation_rows(run)
    assert [r["round"] for r in val] == [0, 2, 4]
    args = json.loads((validation_results_dir(run, 4) / "eval_args.json").read_text())
    assert args["backend"] == "vllm" and args["max_tokens"] == 16
    lengths = {json.loads(x)["response_tokens"] for x in (validation_results_dir(run, 4) / "samples.jsonl").open()}
    assert max(lengths) == 16 and min(lengths) < 16  # at the fixed cap, not a rollout cap, and EOS is not ignored

    # `siri eval` in its own process: the colocated engine left torch.distributed's rendezvous variables here.
    env = {k: v for k, v in vllm_env.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK",
                                                          "WORLD_SIZE")}
    out = tmp_path / "eval"
    # the model validated at round 4: the checkpoint of the last round (cycle1-expanded here, so no "final" copy)
    last = [p.parent for p in run.glob("checkpoints/*/siri_checkpoint.json") if json.loads(p.read_text())["step"] == 3]
    assert [p.name for p in last] == ["cycle1-expanded"]
    subprocess.run([sys.executable, "-m", "siri_rl.cli", "eval", "--model", str(last[0]),
                    "--backend", "vllm", "--benchmarks", str(held), "--n", "8", "--temperature", "1.0", "--top-p",
                    "1.0", "--max-tokens", "16", "--seed", "5", "--enforce-eager", "--grade-workers", "1",
                    "--no-progress", "--out", str(out)], env=env | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                   check=True, capture_output=True)
    b = json.loads((out / "summary.json").read_text())["benchmarks"]["held"]
    v = json.loads((validation_results_dir(run, 4) / "summary.json").read_text())["benchmarks"]["held"]
    assert b["n_samples"] == v["n_samples"] == 64
    assert abs(b["length"] - v["length"]) <= (b["length_ci"][1] - b["length_ci"][0]) / 2 + (
        v["length_ci"][1] - v["length_ci"][0]) / 2, (b["length"], v["length"])
    assert abs(b["acc"] - v["acc"]) <= (b["acc_ci"][1] - b["acc_ci"][0]) / 2 + (v["acc_ci"][1] - v["acc_ci"][0]) / 2
