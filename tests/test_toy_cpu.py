"""The toy's torch threads (``toy.torch_threads: auto``) and the first lines ``siri train`` prints on a toy config."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.resources import files

import pytest

from siri_rl.config import ConfigError, load_config
from siri_rl.toy.cpu import busy_cpus, choose_threads, expected_seconds, usable_cpus
from siri_rl.toy.run import plan_text

TOY = files("siri_rl") / "configs" / "toy.yaml"


def test_the_shipped_toy_configs_pick_their_threads_from_the_idle_cpus():
    for name in ("toy", "toy-constant", "toy-constant-min", "toy-count", "toy-search", "toy-quick"):
        assert load_config(files("siri_rl") / "configs" / f"{name}.yaml").toy.torch_threads == "auto", name


@pytest.mark.parametrize("value", ["two", 0, -1, True, 1.5])
def test_torch_threads_takes_a_count_auto_or_null_and_says_so(value):
    with pytest.raises(ConfigError, match=r"toy.torch_threads must be a positive integer, auto .* or null"):
        load_config(TOY, [f"toy.torch_threads={value}"])
    for ok in ("1", "auto", "null"):
        load_config(TOY, [f"toy.torch_threads={ok}"])


def test_a_set_thread_count_is_kept_and_auto_leaves_the_cpus_a_busy_process_uses():
    assert choose_threads(3)[0] == 3 and choose_threads(None)[0] is None
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # the busy loop running
        busy = busy_cpus()
        threads, why = choose_threads("auto")
    finally:
        hog.kill()
        hog.wait()
    assert busy is not None and busy >= 0.7  # one core's worth, give or take the sampling
    if usable_cpus() > 1:
        assert threads <= usable_cpus() - 1 and "other processes are using" in why
    else:
        assert threads == 1


def test_the_plan_says_what_the_run_does_and_how_long_from_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    cfg = load_config(TOY)
    text = plan_text(cfg)
    est = expected_seconds(cfg, base_cached=False)
    assert f"{cfg.training.rounds} rounds" in text and f"cycle {cfg.schedule.cycle} rounds" in text
    assert "first run only" in text and "6 checkpoints (each trough and peak)" in text
    # the whole default, base build included, is meant to stay within 15 minutes on an idle 2-core machine
    assert 60 < sum(est.values()) < 15 * 60 and est["base"] > 0
    assert expected_seconds(cfg, base_cached=True)["base"] == 0.0
    constant = load_config(files("siri_rl") / "configs" / "toy-constant.yaml")
    assert "the final model" in plan_text(constant)


def test_every_shipped_toy_config_has_a_plan(tmp_path, monkeypatch):
    # the closed-loop schedule names its checkpoints as it runs, so its plan counts the nominal cycles
    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    configs = sorted(p for p in (files("siri_rl") / "configs").iterdir() if p.name.startswith("toy"))
    assert len(configs) >= 4
    for path in configs:
        cfg = load_config(path)
        text = plan_text(cfg)
        assert f"{cfg.training.rounds} rounds" in text and sum(expected_seconds(cfg, base_cached=False).values()) > 0
    adaptive = load_config(files("siri_rl") / "configs" / "toy-adaptive.yaml")
    nominal = 2 * (adaptive.training.rounds // adaptive.schedule.cycle)
    assert f"up to {nominal} checkpoints" in plan_text(adaptive)
