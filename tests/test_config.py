"""Experiment configs: extends, overrides, and one clear error for each kind of mistake."""

import json

import pytest
import yaml

from siri_rl.config import (
    ConfigError,
    ExperimentConfig,
    check_context,
    config_from_dict,
    load_config,
    parse_overrides,
)


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {
    "name": "base",
    "model": {"name_or_path": "org/model", "max_context": 20000},
    "schedule": {"kind": "cosine", "l_max": 16384, "l_min": 8192, "cycle": 640},
    "training": {"rounds": 1920, "prompts_per_round": 128, "group_size": 8},
    "trl": {"logging_steps": 1},
}


def test_load_extends_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    write(tmp_path / "child.yaml", {"extends": "base.yaml", "name": "child", "schedule": {"cycle": 320}})
    cfg = load_config(tmp_path / "child.yaml", ["training.rounds=960", "--training.group-size", "16"])
    assert cfg.name == "child" and cfg.schedule.cycle == 320 and cfg.schedule.l_min == 8192
    assert cfg.training.rounds == 960 and cfg.training.group_size == 16 and cfg.trl == {"logging_steps": 1}
    assert cfg.to_dict()["schedule"]["cycle"] == 320


def test_extends_with_another_schedule_kind_replaces_the_schedule(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    write(tmp_path / "const.yaml", {"extends": "base.yaml", "schedule": {"kind": "constant", "l_max": 16384}})
    cfg = load_config(tmp_path / "const.yaml")
    assert cfg.schedule.kind == "constant" and cfg.schedule.l_min == 16384 and cfg.schedule.cycle is None
    assert cfg.training.rounds == 1920  # the other sections are still inherited


def test_exponents_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads YAML 1.1, where "1e-6" (no dot) is a string: a learning rate written that way, in a file or on the
    # command line, used to reach the validation as a str and fail with a TypeError traceback
    (tmp_path / "lr.yaml").write_text("extends: base.yaml\ntraining: {learning_rate: 1e-6}\n")
    write(tmp_path / "base.yaml", BASE)
    assert load_config(tmp_path / "lr.yaml").training.learning_rate == 1e-6
    cfg = load_config(tmp_path / "base.yaml", ["training.learning_rate=2e-4", "training.clip_high=2.8E-1"])
    assert cfg.training.learning_rate == 2e-4 and cfg.training.clip_high == 0.28
    assert load_config(tmp_path / "base.yaml", ["name=1e3x"]).name == "1e3x"  # not a number: stays a string


def test_parse_overrides_forms():
    assert parse_overrides(["a.b=1", "--c.d", "2", "--e=3", "--flag"]) == ["a.b=1", "c.d=2", "e=3", "flag=true"]
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["oops"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.rounds=0", "training.rounds must be a positive integer"),
        ("training.group_size=1", "group_size must be >= 2"),
        ("training.bogus=1", "unknown key"),
        ("wrong=1", "unknown top-level key"),
        ("schedule.l_min=99999", "schedule: l_min"),
        ("schedule.l_max=32768", r"exceeds the model's context \(20000, model.max_context\)"),
        ("engine=jax", "engine must be one of"),
        ("model.name_or_path=", "model.name_or_path is required"),
        # validation: and toy: are typed like the other sections: a typo fails instead of being ignored
        ("validation.benchmark=[aime24]", r"unknown key\(s\) validation.benchmark; allowed: at_start, batch_size, benchmarks"),
        ("eval.benchmarks=[aime24]", "the eval: section is now validation:"),
        ("toy.trian_problems=64", r"unknown key\(s\) toy.trian_problems"),
        ("toy.eval.per_dificulty=4", r"unknown key\(s\) toy.eval.per_dificulty"),
        ("toy.eval.n=0", "toy.eval.n must be a positive integer"),
        ("toy.eval=3", "section 'toy.eval' must be a mapping"),
        ("validation.benchmarks=aime24", "validation.benchmarks must be a list"),
        ("training.learning_rate=fast", "training.learning_rate must be a positive number, got 'fast'"),
        ("training.temperature=0", "training.temperature must be a positive number, got 0"),
    ],
)
def test_bad_configs_fail_clearly(tmp_path, override, message):
    write(tmp_path / "base.yaml", BASE)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "base.yaml", [override])


def test_missing_file_bad_yaml_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    write(tmp_path / "loop.yaml", {"extends": "loop.yaml"})
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "loop.yaml")


def test_typed_eval_and_toy_sections_round_trip(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    cfg = load_config(tmp_path / "base.yaml", ["validation.benchmarks=[aime24]", "toy.eval.max_len=64"])
    assert cfg.validation.benchmarks == ["aime24"] and cfg.toy.eval.max_len == 64 and cfg.toy.train_problems == 4096
    data = cfg.to_dict()
    assert data["validation"]["benchmarks"] == ["aime24"] and data["validation"]["every"] is None
    assert data["toy"]["eval"]["max_len"] == 64
    assert config_from_dict(data).to_dict() == data  # what a run directory stores reads back the same
    assert "toy" not in load_config(tmp_path / "base.yaml").to_dict()  # a section left out stays out


def test_schedule_is_required():
    with pytest.raises(TypeError, match="schedule"):
        ExperimentConfig()  # no Optional schedule for the engines to assert on
    with pytest.raises(ConfigError, match="needs a 'schedule' section"):
        config_from_dict({"model": {"name_or_path": "org/model"}})


def test_context_budget_is_one_check_with_one_wording(tmp_path):
    """The prompt + L_max budget is checked by check_context alone, in the same words: at load time against
    model.max_context, by the engine against a local config.json and then the loaded model."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    write(tmp_path / "local.yaml", {**BASE, "model": {"name_or_path": str(model)}})
    wording = r"schedule.l_max \(16384\) \+ data.max_prompt_length \(1024\) = 17408 tokens exceeds "
    local = load_config(tmp_path / "local.yaml")  # the loader reads no model files
    with pytest.raises(ConfigError, match=wording + r"the model's context \(4096, max_position_embeddings of .*config.json\); lower"):
        check_context(local)
    cfg = load_config(write(tmp_path / "base.yaml", BASE))
    check_context(cfg, 32768)  # model.max_context (20000) is the budget once set
    cfg.model.max_context = None
    with pytest.raises(ConfigError, match=wording + r"the model's context \(8192, max_position_embeddings of the model\); lower"):
        check_context(cfg, 8192)
