"""The TRL adapter on real TRL with a real (tiny, random) Qwen2 and the toy tokenizer.

EOS is suppressed through ``generation_kwargs`` (a sampling setting, not a length), so every completion runs to
the cap: the completion lengths TRL actually produced then *are* the cap that was applied in that round.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siri_rl.config import ConfigError, config_from_dict


def _cfg(model_dir: Path, *, rounds=6, schedule=None, training=None, trl=None, model=None):
    from siri_rl.toy.tokenizer import build_toy_tokenizer

    eos = build_toy_tokenizer().eos_token_id
    return config_from_dict({
        "name": "test",
        "model": {"name_or_path": str(model_dir), "dtype": "float32", **(model or {})},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": schedule or {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        "training": {"rounds": rounds, "prompts_per_round": 2, "group_size": 4, "learning_rate": 1e-3,
                     "device": "cpu", "seed": 1, **(training or {})},
        "toy": {"train_problems": 64},
        "trl": {"generation_kwargs": {"suppress_tokens": [eos]}, **(trl or {})},
    })


def train(cfg, **kwargs):
    """The TRL engine on a :func:`_cfg` config, whose ``data.train: toy`` (generated sums) the caller resolves, as
    `siri train` does (no engine imports the toy)."""
    from siri_rl.engines.trl import train as run
    from siri_rl.toy import toy_train_rows

    return run(cfg, train_rows=toy_train_rows(cfg), **kwargs)


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _grpo(cfg, tmp_path):
    from siri_rl.engines.trl import grpo_kwargs

    return grpo_kwargs(cfg, tmp_path / "trainer")


@pytest.mark.parametrize(
    "training,trl",
    [
        ({}, {}),  # one optimizer step per round
        ({"updates_per_round": 2}, {}),  # steps_per_generation (2) > gradient_accumulation_steps (1)
        ({}, {"num_iterations": 2}),  # the buffered batch is reused for a second pass
    ],
    ids=["plain", "spg>ga", "num_iterations=2"],
)
def test_cap_applied_per_rollout_round(tiny_toy_model, tmp_path, training, trl):
    cfg = _cfg(tiny_toy_model, training=training, trl=trl)
    out = train(cfg, output_dir=tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(6))
    expected = [cfg.schedule(s) for s in range(6)]
    assert len(set(expected)) > 2  # the cap really moves in this schedule
    assert [r["max_len"] for r in rows] == expected
    # The real completion lengths equal that round's cap (and never the padded width of another round).
    assert [r["completion_len_max"] for r in rows] == expected
    assert [r["completion_len_min"] for r in rows] == expected
    assert all(r["clipped_frac"] == 1.0 and r["accuracy"] == 0.0 for r in rows)
    assert rows[-1]["tokens_generated"] == sum(8 * L for L in expected)
    updates = training.get("updates_per_round", 1) * trl.get("num_iterations", 1)
    assert [r["optimizer_step"] for r in rows] == [updates * (s + 1) for s in range(6)]
    assert all("entropy" in r and "phase" in r and "wall_s" in r for r in rows)
    assert out.rounds_done == 6


def test_checkpoints_at_trough_and_peak(tiny_toy_model, tmp_path):
    cfg = _cfg(tiny_toy_model, rounds=8)
    assert cfg.schedule.checkpoints(8) == [(2, "cycle1-compressed"), (4, "cycle1-expanded"),
                                           (6, "cycle2-compressed"), (7, "cycle2-expanded")]
    train(cfg, output_dir=tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    for step, name in cfg.schedule.checkpoints(8):
        path = tmp_path / "run" / "checkpoints" / name
        assert (path / "config.json").exists() and (path / "tokenizer.json").exists()
        card = json.loads((path / "siri_checkpoint.json").read_text())
        assert card["step"] == step and card["max_len"] == cfg.schedule(step) == rows[step]["max_len"]
        assert f"round {step}" in (path / "README.md").read_text()
    assert (tmp_path / "run" / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_schedule_and_metrics(tiny_toy_model, tmp_path):
    from siri_rl.engines.trl import latest_checkpoint

    cfg = _cfg(tiny_toy_model, rounds=6, training={"updates_per_round": 2})
    run = tmp_path / "run"
    train(cfg, output_dir=run, stop_after_rounds=3, progress=False)
    first = _rows(run)
    assert [r["step"] for r in first] == [0, 1, 2]
    assert latest_checkpoint(run).name == "checkpoint-6"  # 3 rounds x 2 optimizer steps
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, output_dir=run, progress=False)
    train(cfg, output_dir=run, resume=True, progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(6))  # no gap, no duplicate
    assert rows[:3] == first
    assert [r["max_len"] for r in rows] == [cfg.schedule(s) for s in range(6)]
    assert [r["completion_len_max"] for r in rows] == [cfg.schedule(s) for s in range(6)]
    assert rows[-1]["tokens_generated"] == sum(8 * cfg.schedule(s) for s in range(6))
    assert [r["optimizer_step"] for r in rows] == [2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize(
    "trl,match",
    [
        ({"max_completion_length": 10}, "set by SIRI"),
        ({"generation_kwargs": {"max_new_tokens": 5}}, "schedule"),
        ({"eval_strategy": "steps"}, "fixed length"),
        ({"not_a_field": 1}, "unknown trl"),
        ({"num_iteration": 2}, "did you mean num_iterations"),
        ({"use_vllm": True, "vllm_max_model_length": 40}, "vllm_max_model_length"),
        # Resumable checkpoints only at round boundaries, exports only from per-step logs.
        ({"save_steps": 10}, "training.save_every"),
        ({"save_strategy": "epoch"}, "training.save_every"),
        ({"logging_strategy": "no"}, "logging_strategy"),
        ({"logging_strategy": "epoch"}, "logging_strategy"),
    ],
)
def test_bad_trl_sections_fail_before_loading(tiny_toy_model, tmp_path, trl, match):
    with pytest.raises(ConfigError, match=match):
        train(_cfg(tiny_toy_model, trl=trl), output_dir=tmp_path / "run", dry_run=True)
    assert not (tmp_path / "run").exists()


def test_batch_not_divisible_fails(tiny_toy_model, tmp_path):
    with pytest.raises(ConfigError, match="not divisible"):
        train(_cfg(tiny_toy_model, training={"updates_per_round": 3}), output_dir=tmp_path, dry_run=True)


def test_l_max_above_context_fails(tiny_toy_model, tmp_path):
    cfg = _cfg(tiny_toy_model, schedule={"kind": "cosine", "l_max": 400, "l_min": 100, "cycle": 4})
    with pytest.raises(ConfigError, match="context"):
        train(cfg, output_dir=tmp_path, dry_run=True)


@pytest.mark.slow
def test_two_processes_sum_statistics_and_export(tiny_toy_model, tmp_path):
    """`torchrun` with 2 CPU processes (gloo; Accelerate picks up the launcher's environment): each process generates half of every round; metrics.jsonl
    must count the whole round and the trough/peak exports must be complete models."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = _cfg(tiny_toy_model, rounds=4).to_dict()
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "siri_rl.cli", "train",
         "-c", str(tmp_path / "cfg.yaml"), "-o", str(run)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    schedule = _cfg(tiny_toy_model, rounds=4).schedule
    rows = _rows(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # one writer, no duplicate rows
    assert all(r["num_completions"] == 8 for r in rows)  # 2 prompts x 4 rollouts, over both processes
    assert [r["completion_len_mean"] for r in rows] == [float(schedule(s)) for s in range(4)]
    assert all(r["clipped_frac"] == 1.0 for r in rows)
    assert rows[-1]["tokens_generated"] == sum(8 * schedule(s) for s in range(4))
    from transformers import AutoModelForCausalLM

    for _, name in schedule.checkpoints(4):
        model = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / name)
        assert sum(p.numel() for p in model.parameters()) > 0
        assert (run / "checkpoints" / name / "siri_checkpoint.json").exists()


def test_round_statistics_reach_report_to(tiny_toy_model, tmp_path):
    """With report_to=tensorboard, TRL's logs carry the same per-round values as metrics.jsonl (siri/*)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg(tiny_toy_model, rounds=4, trl={"report_to": "tensorboard"})
    train(cfg, output_dir=tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    events = sorted((tmp_path / "run").rglob("events.out.tfevents*"))
    assert events, "no TensorBoard event file written"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for key in ("max_len", "accuracy", "completion_len_mean", "clipped_frac", "tokens_generated"):
        values = [e.value for e in acc.Scalars(f"train/siri/{key}")]
        assert values == pytest.approx([float(r[key]) for r in rows]), key
    assert "train/entropy" in tags


# --- precision ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_toy_model_bf16(tiny_toy_model, tmp_path_factory) -> Path:
    """The tiny model saved in bfloat16, as the R1-distill checkpoints are on the hub (config.json dtype bfloat16),
    so ``model.dtype: auto`` would load bf16 weights."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("tiny-toy-bf16") / "model"
    shutil.copytree(tiny_toy_model, path)
    AutoModelForCausalLM.from_pretrained(tiny_toy_model, dtype=torch.bfloat16).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"
    return path


def _weight_probe():
    """A real TrainerCallback (defined here: transformers is imported inside the tests) that keeps the policy's
    weights before the first update, compares them after the last, and records the dtype the MLP computes in."""
    from transformers import TrainerCallback

    class WeightProbe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.param_dtypes = {p.dtype for p in model.parameters()}
            self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
            self.compute_dtypes = set()
            mlp = model.model.layers[0].mlp.down_proj
            self.hook = mlp.register_forward_hook(lambda m, i, out: self.compute_dtypes.add(out.dtype))

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.hook.remove()
            self.changed = {n: (p.detach() != self.before[n]).float().mean().item()
                            for n, p in model.named_parameters()}
            self.numel = {n: p.numel() for n, p in model.named_parameters()}

    return WeightProbe()


def test_one_update_at_lr_1e6_moves_the_weights(tiny_toy_model_bf16, tmp_path):
    """The GPU default (bf16=True) from a bf16 checkpoint with the default model.dtype: fp32 master weights, bf16
    autocast compute, and one AdamW step at the paper's lr 1e-6 changes (nearly) every weight, the RMSNorm weights
    at 1.0 included. In pure bf16 (the old default) ~0.5% of N(0, 0.02) weights and no norm weight change: the bf16
    spacing at 1.0 is 2^-7, far above a 1e-6 step. The length-capped reward is 0 for every rollout of this random
    model (zero advantages, zero policy gradient), so TRL's entropy bonus supplies the gradient."""
    import torch

    cfg = _cfg(tiny_toy_model_bf16, rounds=1, model={"dtype": "auto"}, training={"learning_rate": 1e-6},
               trl={"bf16": True, "entropy_coef": 0.1})
    probe = _weight_probe()
    train(cfg, output_dir=tmp_path / "run", progress=False, callbacks=[probe])
    assert probe.param_dtypes == {torch.float32}  # the optimizer's parameters are the fp32 master weights
    assert probe.compute_dtypes == {torch.bfloat16}  # accelerate's bf16 autocast around the forward
    norms = [n for n in probe.changed if "norm" in n]
    assert norms and all(probe.changed[n] == 1.0 for n in norms), {n: probe.changed[n] for n in norms}
    total = sum(probe.numel.values())
    assert sum(probe.changed[n] * probe.numel[n] for n in probe.changed) / total > 0.95


@pytest.mark.parametrize(
    "dtype,trl,env,match",
    [
        ("bfloat16", {}, {}, "pure-bfloat16"),  # the old paper configs
        ("float16", {"bf16": True}, {}, "pure-float16"),
        ("bfloat16", {"fsdp": True}, {}, "mixed precision"),  # FSDP upcasts only with bf16/fp16 on (CPU: bf16 off)
        ("bfloat16", {"fsdp": True, "bf16": True}, {}, None),  # FSDP keeps fp32 master copies
        ("bfloat16", {"deepspeed": {"zero_optimization": {"stage": 2}}, "bf16": True}, {}, None),  # so does ZeRO
        ("bfloat16", {"bf16": True}, {"ACCELERATE_USE_DEEPSPEED": "true"}, None),  # accelerate launch --use_deepspeed
        ("auto", {"bf16": True, "use_transformers_continuous_batching": True}, {}, "continuous_batching"),
    ],
    ids=["bf16", "fp16", "fsdp-no-amp", "fsdp", "zero2", "accelerate-deepspeed", "continuous-batching"],
)
def test_pure_half_precision_weights_are_refused(tiny_toy_model, tmp_path, monkeypatch, dtype, trl, env, match):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = _cfg(tiny_toy_model, model={"dtype": dtype}, trl=trl)
    if match is None:
        info = train(cfg, output_dir=tmp_path / "run", dry_run=True)
        assert info["precision"]["weights"] == dtype
        return
    with pytest.raises(ConfigError, match=match):
        train(cfg, output_dir=tmp_path / "run", dry_run=True)


def test_dry_run_states_the_precision(tiny_toy_model, tmp_path):
    info = train(_cfg(tiny_toy_model, model={"dtype": "auto"}, trl={"bf16": True}), output_dir=tmp_path, dry_run=True)
    assert info["precision"] == {"weights": "float32", "compute": "bfloat16", "master_weights": "fp32 parameters"}


# --- vLLM importance sampling --------------------------------------------------------------------------------


def test_vllm_importance_sampling_is_token_level_truncated(tiny_toy_model, tmp_path):
    from siri_rl.engines.trl.config import grpo_field_names

    kw = _grpo(_cfg(tiny_toy_model, trl={"use_vllm": True}), tmp_path)
    assert (kw["vllm_importance_sampling_correction"], kw["vllm_importance_sampling_mode"],
            kw["vllm_importance_sampling_clip_max"]) == (True, "token_truncate", 2.0)
    # The user's trl.* wins.
    kw = _grpo(_cfg(tiny_toy_model, trl={"use_vllm": True, "vllm_importance_sampling_mode": "sequence_mask"}), tmp_path)
    assert kw["vllm_importance_sampling_mode"] == "sequence_mask" and kw["vllm_importance_sampling_clip_max"] == 2.0
    kw = _grpo(_cfg(tiny_toy_model, trl={"use_vllm": True, "vllm_importance_sampling_correction": False}), tmp_path)
    assert kw["vllm_importance_sampling_correction"] is False
    # Without vLLM there is nothing to correct and TRL's fields are left alone.
    assert not any(k.startswith("vllm_importance") for k in _grpo(_cfg(tiny_toy_model), tmp_path))
    assert {"vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
            "vllm_importance_sampling_clip_max"} <= grpo_field_names()


def test_trl_log_keys_exist_in_trl_and_transformers():
    """Every TRL_LOG_KEYS key is a metric name the installed GRPOTrainer (or the Trainer) really logs: an upgrade
    that renames one fails here instead of silently dropping a metrics.jsonl column."""
    import inspect

    import transformers.trainer
    import trl.trainer.grpo_trainer

    from siri_rl.engines.trl.callback import TRL_LOG_KEYS

    grpo = inspect.getsource(trl.trainer.grpo_trainer)
    trainer = inspect.getsource(transformers.trainer)
    for key in ("sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max",
                "sampling/importance_sampling_ratio/min", "sampling/importance_sampling_ratio/mean",
                "sampling/importance_sampling_ratio/max"):
        assert key in TRL_LOG_KEYS
    for key in TRL_LOG_KEYS:
        assert f'_metrics[mode]["{key}"]' in grpo or f'logs["{key}"]' in trainer, key


def test_round_stats_take_min_of_mins_and_max_of_maxes():
    from siri_rl.engines.trl.callback import _round_stats_from_logs

    logs = [{"sampling/importance_sampling_ratio/min": 0.5, "sampling/importance_sampling_ratio/mean": 1.0,
             "sampling/importance_sampling_ratio/max": 1.5, "sampling/sampling_logp_difference/max": 0.2, "loss": 1.0},
            {"sampling/importance_sampling_ratio/min": 0.8, "sampling/importance_sampling_ratio/mean": 0.9,
             "sampling/importance_sampling_ratio/max": 2.0, "sampling/sampling_logp_difference/max": 0.1, "loss": 3.0}]
    out = _round_stats_from_logs(logs)
    assert out["importance_sampling_ratio_min"] == 0.5 and out["importance_sampling_ratio_max"] == 2.0
    assert out["importance_sampling_ratio_mean"] == pytest.approx(0.95) and out["loss"] == 2.0
    assert out["sampling_logp_difference_max"] == 0.2


# --- resume and round-boundary checkpoints ----------------------------------------------------------------------


def test_resume_after_a_half_written_metrics_line(tiny_toy_model, tmp_path):
    """A run killed while appending a row leaves a half-written last line; --resume drops it and redoes the round."""
    cfg = _cfg(tiny_toy_model, rounds=2)
    run = tmp_path / "run"
    train(cfg, output_dir=run, stop_after_rounds=1, progress=False)
    first = _rows(run)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 1, "max_len": 1')
    train(cfg, output_dir=run, resume=True, progress=False)
    rows = _rows(run)  # every line parses
    assert [r["step"] for r in rows] == [0, 1] and rows[0] == first[0]
    assert rows[-1]["tokens_generated"] == 8 * (cfg.schedule(0) + cfg.schedule(1))


def test_resume_from_a_mid_round_checkpoint_fails(tiny_toy_model, tmp_path):
    ckpt = tmp_path / "run" / "trainer" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    cfg = _cfg(tiny_toy_model, training={"updates_per_round": 2})
    with pytest.raises(ConfigError, match="round boundary"):
        train(cfg, output_dir=tmp_path / "run", resume=True, progress=False)


def test_reward_counts_every_eos_and_keeps_a_special_think_end(think_special_model_dir):
    """The TRL reward on completion ids as TRL passes them (EOS kept, grpo_trainer.py:1880-1888), with a model whose
    generation config ends on two ids and whose tokenizer marks </think> special: a completion that ended on the
    second EOS exactly at L is not clipped, and answers after the special </think> are graded."""
    from siri_rl.engines.trl.callback import RolloutCap
    from siri_rl.engines.trl.reward import LengthCappedReward
    from siri_rl.prompts import eos_token_ids
    from siri_rl.schedule import make_schedule
    from siri_rl.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(think_special_model_dir)  # as the engine loads it
    eot = tok.convert_tokens_to_ids("<|EOT|>")
    body = tok.encode("2 + 2 = 4.\n</think>\n\nSo \\boxed{4}", add_special_tokens=False)
    L = len(body) + 1
    cap = RolloutCap(make_schedule("constant", l_max=L))
    cap.set_round(0)
    reward = LengthCappedReward(cap, tok, eos_ids=eos_token_ids(tok, think_special_model_dir))
    ended_on_eot = body + [eot]  # L tokens, the last one the generation config's second EOS
    cut = (body + tok.encode(" and more", add_special_tokens=False))[:L]  # L tokens, no EOS: clipped
    rewards = reward(prompts=["p", "p"], completions=["c", "c"], completion_ids=[ended_on_eot, cut], answer=["4", "4"])
    assert rewards == [1.0, 1.0]  # the box closed inside L in both
    assert cap.pending[0]["clipped_frac"] == 0.5


# --- resume cannot damage a run -------------------------------------------------------------------------------


def _hashes(run: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``run`` (relative path -> digest)."""
    import hashlib

    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and str(p.relative_to(run)) not in skip}


@pytest.fixture(scope="module")
def finished_run(tiny_toy_model, tmp_path_factory):
    """A finished 2-round run (no trough/peak in 2 rounds of the cycle-4 cosine: a ``final`` export), trained with
    the progress display on and stdout redirected to a string, as in a job log. Returns (run dir, output)."""
    import contextlib
    import io

    run = tmp_path_factory.mktemp("finished") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train(_cfg(tiny_toy_model, rounds=2), output_dir=run, progress=True)
    assert (run / "checkpoints" / "final" / "siri_checkpoint.json").exists()
    return run, out.getvalue()


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_resume_of_a_finished_run_changes_nothing(tiny_toy_model, finished_run, tmp_path):
    """The old engine ran one more optimizer step, appended a row {"step": 0, "max_len": 0}, wrote checkpoint-3 and
    overwrote checkpoints/final with changed weights."""
    run = _copy(finished_run[0], tmp_path)
    before = _hashes(run)
    out = train(_cfg(tiny_toy_model, rounds=2), output_dir=run, resume=True, progress=False)
    assert _hashes(run) == before
    assert out.finished is True and out.rounds_done == 2


def test_resume_after_a_kill_during_the_final_export_completes_it(tiny_toy_model, finished_run, tmp_path):
    """A kill while checkpoints/final was being written (after the last Trainer checkpoint): --resume writes the same
    export again, from that checkpoint, and the plot; it trains nothing and leaves every other file alone."""
    run = _copy(finished_run[0], tmp_path)
    before = _hashes(run, skip=("dynamics.png",))
    final = run / "checkpoints" / "final"
    (final / "siri_checkpoint.json").unlink()
    (final / "README.md").unlink()
    (final / "model.safetensors").write_bytes(b"cut short")
    (run / "dynamics.png").unlink()
    train(_cfg(tiny_toy_model, rounds=2), output_dir=run, resume=True, progress=False)
    assert _hashes(run, skip=("dynamics.png",)) == before  # the same bytes as the export at the end of training
    assert (run / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_keeps_the_stored_config_and_extends_only_rounds(tiny_toy_model, finished_run, tmp_path):
    """A changed schedule (or fewer rounds) on --resume is refused, naming the key, and the run is untouched; more
    rounds alone extend it: the earlier rows stay, the new rounds follow the same schedule, config.yaml says so."""
    import yaml

    run = _copy(finished_run[0], tmp_path)
    before = _hashes(run)
    rows = _rows(run)
    changed = _cfg(tiny_toy_model, rounds=2, schedule={"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 8})
    with pytest.raises(ConfigError, match=r"schedule\.cycle 4 -> 8"):
        train(changed, output_dir=run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="not shortened"):
        train(_cfg(tiny_toy_model, rounds=1), output_dir=run, resume=True, progress=False)
    assert _hashes(run) == before
    cfg = _cfg(tiny_toy_model, rounds=4)
    train(cfg, output_dir=run, resume=True, progress=False)
    longer = _rows(run)
    assert longer[:2] == rows and [r["step"] for r in longer] == [0, 1, 2, 3]
    assert [r["max_len"] for r in longer] == [r["completion_len_max"] for r in longer] == [cfg.schedule(s) for s in range(4)]
    assert longer[-1]["tokens_generated"] == sum(8 * cfg.schedule(s) for s in range(4))
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["rounds"] == 4


def test_resume_before_the_first_checkpoint_starts_again(tiny_toy_model, finished_run, tmp_path):
    """A run stopped before its first resumable checkpoint (the first one of a 1920-round run is at round 320) has
    rows and no checkpoint: the old engine refused both --resume ("no checkpoint") and a fresh start ("already
    holds a run"). --resume now starts it again at round 0."""
    import shutil

    run = _copy(finished_run[0], tmp_path)
    first = _rows(run)
    shutil.rmtree(run / "trainer")
    shutil.rmtree(run / "checkpoints")
    train(_cfg(tiny_toy_model, rounds=2), output_dir=run, resume=True, progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows] == [0, 1]
    assert [r["tokens_generated"] for r in rows] == [r["tokens_generated"] for r in first]


def test_progress_prints_lines_when_output_is_not_a_terminal(finished_run):
    """Redirected output gets a progress line (the first round, then at most every 30 s, and the last round)
    instead of a bar that cannot redraw: the old engine printed the bar once, at the end."""
    output = finished_run[1]
    lines = [x for x in output.splitlines() if x.startswith("SIRI round ")]
    assert [x.split(":")[0] for x in lines] == ["SIRI round 1/2", "SIRI round 2/2"], output
    assert "L=12 acc=0.00" in lines[0] and "eta" in lines[0]
    assert "━" not in output


def test_engines_import_no_toy_analysis_compare_or_eval_driver():
    """Both engines sit below the toy, analysis, compare and the evaluation driver: the toy resolves its
    names before calling them, the run directory (metrics.jsonl, cards, dynamics.png) is siri_rl.run_dir's. The
    veRL launcher imported siri_rl.analysis and siri_rl.evaluate to draw dynamics.png."""
    import ast

    import siri_rl.engines

    banned = ("siri_rl.toy", "siri_rl.analysis", "siri_rl.compare", "siri_rl.evaluate")
    found = []
    for path in sorted(Path(siri_rl.engines.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith(banned)]
    assert not found, found


# --- engine coupling and the own-script surface --------------------------------------------------------------------


def _readme_blocks(heading: str) -> list[str]:
    """The ```python blocks of one README section, in order."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _toy_chat_dataset(n: int = 16):
    from datasets import Dataset

    from siri_rl.prompts import build_messages
    from siri_rl.toy.task import make_problems

    rows = [p.to_dict() for p in make_problems(n, seed=0, prefix="own-script")]
    return Dataset.from_list([{"prompt": build_messages(r["problem"]), "answer": str(r["answer"])} for r in rows])


def test_readme_own_script_snippet_runs_as_written(tiny_qwen2_dir, tmp_path):
    """The README's own-script block, run verbatim on the tiny R1-tokenizer Qwen2 for 2 rounds: the cap follows the
    schedule (rows and the real completion lengths), and the run directory is what siri eval/analyze read."""
    import ast

    setup, snippet = _readme_blocks("Use SIRI in your own TRL script")
    names = {t.id for node in ast.parse(setup).body if isinstance(node, ast.Assign)
             for t in ast.walk(node.targets[0]) if isinstance(t, ast.Name)}
    ours = {"MODEL": str(tiny_qwen2_dir), "dataset": _toy_chat_dataset(), "L_MAX": 12, "L_MIN": 4, "CYCLE": 4,
            "ROUNDS": 2, "OUT": str(tmp_path / "run")}
    assert names == set(ours)  # the test stands in for exactly what the README says is the user's
    exec(compile(snippet, "README.md", "exec"), dict(ours))
    from siri_rl.run_dir import read_checkpoint_cards, read_metric_rows
    from siri_rl.schedule import make_schedule

    schedule = make_schedule("cosine", l_max=12, l_min=4, cycle=4)
    rows = read_metric_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 1]
    assert [r["max_len"] for r in rows] == [schedule(0), schedule(1)] == [12, 8]
    # A random model over the 151k-token vocabulary (almost) never samples EOS: its completions run to the cap.
    assert [r["completion_len_max"] for r in rows] == [12, 8]
    assert all(r["num_completions"] == 8 and r["tokens_generated"] > 0 for r in rows)
    [card] = read_checkpoint_cards(tmp_path / "run")
    assert (card.name, card.step, card.max_len) == ("final", 1, 8)


@pytest.fixture
def grpo_trainer(tiny_toy_model, tmp_path):
    """A real GRPOTrainer on the tiny toy-tokenizer model, built as an own script builds it (with siri_grpo)."""
    from trl import GRPOConfig, GRPOTrainer

    from siri_rl.engines.trl import siri_grpo
    from siri_rl.schedule import make_schedule
    from siri_rl.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_toy_model)
    siri = siri_grpo(make_schedule("cosine", l_max=12, l_min=4, cycle=4), tok, rounds=2, run_dir=tmp_path / "run")
    args = GRPOConfig(output_dir=str(tmp_path / "trainer"), num_generations=4, per_device_train_batch_size=4,
                      max_steps=2, report_to="none", **siri.grpo_config_kwargs)  # CPU here: use_cpu, no bf16
    trainer = GRPOTrainer(model=str(tiny_toy_model), args=args, reward_funcs=siri.reward_funcs,
                          train_dataset=_toy_chat_dataset(), processing_class=tok)
    return siri, trainer


def test_rollout_cap_fails_loudly_when_trl_renames_an_attribute(grpo_trainer):
    """The old callback wrote the cap behind getattr(..., None): with an attribute renamed by a TRL upgrade every
    round silently ran at L_max. Each attribute set_rollout_cap writes is now required."""
    from siri_rl.engines import EngineError
    from siri_rl.engines.trl import set_rollout_cap

    siri, trainer = grpo_trainer
    set_rollout_cap(trainer, 7)
    assert trainer.generation_config.max_new_tokens == trainer.generation_kwargs["max_new_tokens"] == 7
    for name in ("generation_config", "generation_kwargs"):
        saved = getattr(trainer, name)
        delattr(trainer, name)
        with pytest.raises(EngineError, match=rf"no attribute '{name}'.*rollout cap"):
            set_rollout_cap(trainer, 7)
        with pytest.raises(EngineError, match=name):
            siri.attach(trainer)  # before training, not after the first round
        setattr(trainer, name, saved)
    trainer.use_vllm = True  # the vLLM path of the same trainer: no vllm_generation
    with pytest.raises(EngineError, match="no attribute 'vllm_generation'"):
        set_rollout_cap(trainer, 7)


def test_cap_attributes_are_what_trl_generates_with():
    """What set_rollout_cap writes is what TRL 1.16 reads when it generates (grpo_trainer.py:1805, 1867-1874;
    vllm_generation.py:584): a TRL that reads elsewhere fails here, not in a run that ignores the cap."""
    import inspect

    from trl.generation.vllm_generation import VLLMGeneration
    from trl.trainer.grpo_trainer import GRPOTrainer

    single = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "generation_config=self.generation_config" in single
    assert "generation_kwargs=self.generation_kwargs" in single
    assert "max_completion_length = self.max_completion_length" in inspect.getsource(VLLMGeneration.generate)


def test_reward_checks_its_round_against_trainer_state(tiny_toy_model):
    """TRL passes its TrainerState to reward functions (grpo_trainer.py:1588): a reward scoring against another
    round's cap than the one TRL generated for raises (the old reward ignored trainer_state)."""
    from transformers import TrainerState

    from siri_rl.engines import EngineError
    from siri_rl.engines.trl import LengthCappedReward, RolloutCap
    from siri_rl.schedule import make_schedule
    from siri_rl.toy.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_toy_model)
    cap = RolloutCap(make_schedule("cosine", l_max=12, l_min=4, cycle=4), group_size=2)
    cap.set_round(1, round_start_step=2)  # round 1 of a run with 2 optimizer steps per round
    reward = LengthCappedReward(cap, tok)
    ids = [tok.encode("1 + 2 = 3", add_special_tokens=False)] * 2
    kw = {"prompts": ["p", "p"], "completions": ["c", "c"], "completion_ids": ids, "answer": ["3", "3"]}
    assert reward(**kw, trainer_state=TrainerState(global_step=2)) == [0.0, 0.0]
    assert cap.pending[1]["frac_groups_with_reward_variance"] == 0.0
    with pytest.raises(EngineError, match=r"round 1 .*optimizer step 2, but trainer_state.global_step is 3"):
        reward(**kw, trainer_state=TrainerState(global_step=3))


def test_own_script_settings_are_checked_at_attach(grpo_trainer):
    from siri_rl.config import ConfigError

    siri, trainer = grpo_trainer
    trainer.args.max_steps = 3
    with pytest.raises(ConfigError, match="max_steps=2"):
        siri.attach(trainer)
    trainer.args.max_steps = 2
    trainer.args.logging_steps = 5
    with pytest.raises(ConfigError, match="logging_steps=1"):
        siri.attach(trainer)


def test_save_model_still_takes_the_private_no_push_flag():
    """save_policy calls Trainer.save_model(path, _internal_call=True) so a push_to_hub run does not push every
    trough/peak export (transformers/trainer.py:3775, 3830). A transformers that drops or renames the flag fails
    here; then save_policy needs another way to save without a push."""
    import inspect

    from transformers import Trainer

    assert "_internal_call" in inspect.signature(Trainer.save_model).parameters
    assert "if self.args.push_to_hub and not _internal_call:" in inspect.getsource(Trainer.save_model)


def test_own_script_into_an_existing_run_is_refused(grpo_trainer, tmp_path):
    """The run directory's resume policy holds for an own script too: a fresh start (global_step 0) into a
    directory whose metrics.jsonl holds a run is refused before anything is generated or overwritten."""
    siri, trainer = grpo_trainer
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0, "tokens_generated": 5}\n')
    siri.attach(trainer)
    with pytest.raises(ConfigError, match="already holds a run"):
        trainer.train()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 0, "tokens_generated": 5}\n'


def test_a_ctrl_c_that_something_swallowed_still_stops_the_run_at_the_next_step(tiny_toy_model, tmp_path):
    """A KeyboardInterrupt raised where Python swallows it (a finalizer: it only prints "Exception ignored") would let
    the run go on to its last round; the flag set by the engine's SIGINT handler raises it again at the next step."""
    import os
    import signal

    from transformers import TrainerCallback

    from siri_rl.run_dir import RunInterrupted

    class SwallowedCtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:  # round 1 (2 optimizer steps a round)
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                except KeyboardInterrupt:
                    pass

    cfg = _cfg(tiny_toy_model, rounds=40)
    with pytest.raises(RunInterrupted):
        train(cfg, output_dir=tmp_path / "run", callbacks=[SwallowedCtrlC()])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) <= 2, len(rows)  # stopped in round 1 or 2, not after 40
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
