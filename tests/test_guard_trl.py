"""The no-learning guard on the TRL engine, on real TRL with a tiny Qwen2 that answers.

``answering_toy_model`` (tests/conftest.py) answers every prompt with ``</think>\\n\\boxed{3}`` or ``...{4}`` in 8
tokens: with gold answer 3 and a cap that leaves room, most groups have reward variance and nothing is clipped (a
healthy run); a cap of 4 tokens truncates every completion (reward 0 everywhere, clipped_frac 1: starved).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from siri_rl.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]


def _config(model_dir: Path, *, l_max: int, rounds: int, guard="warn", group_size: int = 4) -> dict:
    return {
        "name": "guard-test",
        "model": {"name_or_path": str(model_dir), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": {"kind": "constant", "l_max": l_max},
        "training": {"rounds": rounds, "prompts_per_round": 2, "group_size": group_size, "learning_rate": 1e-5,
                     "device": "cpu", "seed": 1, "guard": guard},
        "toy": {"train_problems": 64},
    }


def _train(cfg, **kwargs):
    """The TRL engine on the toy's problems with every gold answer set to 3 (what the model answers ~80% of the
    time), resolved here as `siri train` resolves ``data.train: toy``."""
    from siri_rl.engines.trl import train
    from siri_rl.toy import toy_train_rows

    rows = [{"problem": r["problem"], "answer": "3"} for r in toy_train_rows(cfg)]
    return train(cfg, train_rows=rows, progress=False, **kwargs)


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_starved_run_warns_once_with_the_numbers(answering_toy_model, tmp_path, capsys):
    cfg = config_from_dict(_config(answering_toy_model, l_max=4, rounds=6))
    _train(cfg, output_dir=tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert all(r["clipped_frac"] == 1.0 and r["accuracy"] == 0.0 for r in rows)
    assert all(r["frac_groups_with_reward_variance"] == 0.0 for r in rows)
    # Default guard: 4 starved rounds warn once; the episode goes on without a second warning.
    assert [r["guard"] for r in rows] == ["starved"] * 3 + ["warn"] + ["starved"] * 2
    captured = capsys.readouterr()
    assert "no-learning guard" not in captured.out  # a warning: stderr, beside the round lines on stdout
    out = captured.err
    lines = [line for line in out.splitlines() if "no-learning guard" in line]
    assert len(lines) == 1, out
    assert "rounds 0-3" in lines[0] and "L=4" in lines[0] and "below the shortest correct answer" in lines[0]
    assert len(rows) == 6  # warn trains on


def test_healthy_run_does_not_warn(answering_toy_model, tmp_path, capsys):
    cfg = config_from_dict(_config(answering_toy_model, l_max=12, rounds=5, group_size=8))
    _train(cfg, output_dir=tmp_path / "run")
    rows = _rows(tmp_path / "run")
    assert all(r["clipped_frac"] < 0.95 for r in rows)
    assert all(r["frac_groups_with_reward_variance"] > 0.05 for r in rows), [r["accuracy"] for r in rows]
    assert [r["guard"] for r in rows] == ["ok"] * 5
    captured = capsys.readouterr()
    assert "no-learning guard" not in captured.out + captured.err


def test_guard_off_writes_no_verdict(answering_toy_model, tmp_path, capsys):
    cfg = config_from_dict(_config(answering_toy_model, l_max=4, rounds=4, guard="off"))
    _train(cfg, output_dir=tmp_path / "run")
    assert all("guard" not in r for r in _rows(tmp_path / "run"))
    captured = capsys.readouterr()
    assert "no-learning guard" not in captured.out + captured.err


def _siri_train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "siri_rl.cli", "train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_guard_stop_ends_the_run_resumably_with_exit_3(answering_toy_model, tmp_path):
    from siri_rl.engines.trl import latest_checkpoint

    config = tmp_path / "starved.yaml"
    config.write_text(yaml.safe_dump(_config(answering_toy_model, l_max=4, rounds=8, guard="stop")))
    run = tmp_path / "run"
    done = _siri_train("-c", str(config), "-o", str(run))
    assert done.returncode == 3, done.stdout + done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("stopped: ")]
    assert "no-learning guard: for rounds 0-3" in line and "Stopped after round 3 of 8" in line
    assert "--resume" in line and "Traceback" not in done.stdout + done.stderr
    rows = _rows(run)
    assert [r["guard"] for r in rows] == ["starved"] * 3 + ["stop"]
    assert latest_checkpoint(run).name == "checkpoint-4"  # one optimizer step per round: after round 3
    assert not (run / "checkpoints" / "final").exists()
    # Resumed while still starved: the guard state is the replay of the kept rows, so it stops after one round.
    again = _siri_train("-o", str(run), "--resume")
    assert again.returncode == 3, again.stdout + again.stderr
    assert [r["guard"] for r in _rows(run)] == ["starved"] * 3 + ["stop", "stop"]
    assert latest_checkpoint(run).name == "checkpoint-5"


@pytest.mark.parametrize("guard", ["warn", "stop"])
def test_dry_run_names_the_guard(tiny_toy_model, guard):
    from siri_rl.engines.trl import describe

    info = describe(config_from_dict(_config(tiny_toy_model, l_max=8, rounds=4, guard=guard)), "/tmp/unused")
    assert info["guard"]["mode"] == guard and info["guard"]["rounds"] == 4
