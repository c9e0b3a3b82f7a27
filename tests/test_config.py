"""Experiment configs: extends, overrides, and one clear error for each kind of mistake."""

import pytest
import yaml

from siri_rl.config import ConfigError, load_config, parse_overrides


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
        ("schedule.l_max=32768", "exceeds model.max_context"),
        ("engine=jax", "engine must be one of"),
        ("model.name_or_path=", "model.name_or_path is required"),
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
