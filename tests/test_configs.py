"""Every shipped config resolves with `siri train --dry-run` on this CPU machine, loading and downloading nothing."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from siri_rl.adaptive import AdaptiveSchedule
from siri_rl.cli import app
from siri_rl.config import load_config

SHIPPED = sorted(p.name for p in (files("siri_rl") / "configs").iterdir() if p.name.endswith(".yaml"))
PAPER = [n for n in SHIPPED if n.startswith("r1-distill")]


def test_configs_dir_is_the_package_data():
    # configs/ in the checkout is a link to the packaged copy: one source of truth, also in an installed wheel.
    top = Path(__file__).resolve().parents[1] / "configs"
    assert top.resolve() == Path(str(files("siri_rl") / "configs")).resolve()
    assert {"toy.yaml", "toy-count.yaml", "toy-quick.yaml", "toy-constant.yaml", "toy-constant-min.yaml",
            "r1-distill-1.5b-siri-cosine640.yaml", "r1-distill-7b-siri-cosine640.yaml",
            "r1-distill-1.5b-dapo-deepscaler-16k.yaml", "r1-distill-1.5b-constant16k.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_dry_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail the test
    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))  # and the toy must not build its model
    result = CliRunner().invoke(app, ["train", "--config", name, "--dry-run", "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    info = yaml.safe_load(result.output)
    cfg = load_config(files("siri_rl") / "configs" / name)
    assert info["config"]["name"] == cfg.name and cfg.hardware
    if isinstance(cfg.schedule, AdaptiveSchedule):  # closed loop: only round 0's cap is known before training
        assert [c["max_len"] for c in info["first_caps"]] == [cfg.schedule.initial_state()["max_len"]]
    else:
        assert [c["max_len"] for c in info["first_caps"]] == [cfg.schedule(s) for s in range(len(info["first_caps"]))]
    g = info["grpo_config"]
    assert (g["loss_type"], g["epsilon"], g["epsilon_high"], g["beta"], g["mask_truncated_completions"]) == (
        "dapo", 0.2, 0.28, 0.0, False)
    assert g["max_steps"] == cfg.training.rounds * info["round"]["optimizer_steps"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_match_the_paper(name):
    cfg = load_config(files("siri_rl") / "configs" / name)
    t = cfg.training
    assert (t.rounds, t.prompts_per_round, t.learning_rate, t.temperature, t.kl_coef) == (1920, 128, 1e-6, 1.0, 0.0)
    assert cfg.schedule.l_max == 16384 and cfg.trl["use_vllm"] and cfg.trl["vllm_mode"] == "colocate"
    v = cfg.validation  # held-out AIME24 during training, as §5.1 (32 samples) at L_max, every 40 rounds
    assert (v.benchmarks, v.n, v.temperature, v.max_tokens, v.every, v.at_start) == (["aime24"], 32, 0.6, 16384, 40,
                                                                                     True)
    if "dapo-deepscaler" in name:
        assert cfg.schedule(319) == 8192 and cfg.schedule(320) == 16384
    elif "constant" in name:
        assert cfg.schedule(0) == cfg.schedule(1919) == 16384
    else:
        assert cfg.schedule.l_min == 8192


def test_paper_config_grpo_mapping_on_gpu(tmp_path, monkeypatch):
    from siri_rl.engines.trl import grpo_kwargs

    monkeypatch.setenv("WORLD_SIZE", "8")
    cfg = load_config(files("siri_rl") / "configs" / "r1-distill-1.5b-siri-cosine640.yaml")
    kw = grpo_kwargs(cfg, tmp_path)
    # 128 prompts x 8 rollouts over 8 processes x 4 per device -> 32 accumulation steps, one update per round.
    assert (kw["generation_batch_size"], kw["gradient_accumulation_steps"], kw["max_steps"]) == (1024, 32, 1920)
    assert kw["bf16"] and kw["gradient_checkpointing"] and not kw["use_cpu"]
    assert kw["vllm_max_model_length"] == 1024 + 16384  # prompt + L_max


def test_colocated_vllm_context_holds_the_validation_cap_too(tmp_path):
    from siri_rl.engines.trl import grpo_kwargs

    # the colocated engine also samples the validation at its fixed cap: sized for the longer of the two
    over = ["trl.use_vllm=true", "trl.vllm_mode=colocate", "schedule.l_max=48", "schedule.l_min=24"]
    cfg = load_config(files("siri_rl") / "configs" / "toy.yaml", over)
    assert cfg.validation.max_tokens == 128
    assert grpo_kwargs(cfg, tmp_path)["vllm_max_model_length"] == cfg.data.max_prompt_length + 128
    quiet = load_config(files("siri_rl") / "configs" / "toy.yaml", [*over, "validation.benchmarks=[]"])
    assert grpo_kwargs(quiet, tmp_path)["vllm_max_model_length"] == quiet.data.max_prompt_length + 48


def test_cli_overrides_and_bad_keys(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["train", "-c", "toy", "--dry-run", "-o", str(tmp_path / "r"), "schedule.cycle=20",
                             "--training.rounds", "40"])
    assert ok.exit_code == 0, ok.output
    info = yaml.safe_load(ok.output)
    assert info["config"]["schedule"]["cycle"] == 20 and info["grpo_config"]["max_steps"] == 80
    bad = runner.invoke(app, ["train", "-c", "toy", "--dry-run", "trl.not_a_field=1"])
    assert bad.exit_code == 2 and "unknown trl" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["train", "-c", "toy", "--dry-run", "training.updates_per_round=5"])
    assert bad.exit_code == 2 and "not divisible" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["train", "-c", "no-such-config", "--dry-run"])
    assert bad.exit_code == 2 and "shipped config" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["train", "-c", "toy", "--engine", "deepspeed", "--dry-run"])
    assert bad.exit_code == 2 and "--engine must be one of trl, verl" in " ".join(bad.output.split())
