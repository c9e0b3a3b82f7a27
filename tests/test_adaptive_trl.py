"""``schedule.kind: adaptive`` on the TRL engine, on real TRL with a tiny Qwen2 that answers.

``answering_toy_model`` (tests/conftest.py) answers with ``</think>\\n\\boxed{3}`` (gold, ~80% of the time) or
``...{4}`` in 8 tokens: at caps of 8 and above its training accuracy is noisy and well above 0, at 4 it is 0. The
controller (window 1, tolerance 0, patience 1, cycle 4 between 12 and 4 tokens) therefore compresses, holds and
expands on the real signal within a few rounds, which is what the resume test needs to be worth anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siri_rl.config import ConfigError, config_from_dict

SCHEDULE = {"kind": "adaptive", "l_max": 12, "l_min": 4, "cycle": 4, "window": 1, "tolerance": 0.0, "patience": 1}


def _cfg(model_dir: Path, *, rounds: int = 9, training=None):
    return config_from_dict({
        "name": "adaptive-test",
        "model": {"name_or_path": str(model_dir), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": SCHEDULE,
        "training": {"rounds": rounds, "prompts_per_round": 2, "group_size": 4, "learning_rate": 1e-3,
                     "device": "cpu", "seed": 1, "guard": "off", **(training or {})},
        "toy": {"train_problems": 64},
    })


def _train(cfg, **kwargs):
    from siri_rl.engines.trl import train
    from siri_rl.toy import toy_train_rows

    rows = [{"problem": r["problem"], "answer": "3"} for r in toy_train_rows(cfg)]
    return train(cfg, train_rows=rows, progress=False, **kwargs)


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _state(run: Path, step: int) -> dict:
    return json.loads((run / "trainer" / f"checkpoint-{step}" / "siri_adaptive_state.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(answering_toy_model, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("adaptive") / "run"
    _train(_cfg(answering_toy_model, training={"save_every": 1}), output_dir=run)
    return run


def test_caps_follow_the_controller_and_every_decision_is_logged(answering_toy_model, uninterrupted):
    cfg = _cfg(answering_toy_model)
    rows = _rows(uninterrupted)
    assert [r["step"] for r in rows] == list(range(9))
    # The caps are the controller's replay of the logged accuracies: round r+1's from rounds <= r.
    decisions = cfg.schedule.replay([r["accuracy"] for r in rows])
    assert [r["max_len"] for r in rows] == [12] + [d.max_len for d in decisions[:-1]]
    for row, d in zip(rows, decisions):
        assert {k: row[k] for k in d.row_fields()} == d.row_fields()
    # Completions really ran under those caps (EOS is not suppressed: <= the cap).
    assert all(r["completion_len_max"] <= r["max_len"] for r in rows)
    assert len({r["max_len"] for r in rows}) >= 3 and {"compressing", "expanding"} <= {r["phase"] for r in rows}
    # Troughs and peaks exported where the controller turned, each beside a resumable checkpoint.
    turns = cfg.schedule.checkpoints(decisions[-1].state)
    assert turns, [r["adaptive_reason"] for r in rows]
    for step, name in turns:
        card = json.loads((uninterrupted / "checkpoints" / name / "siri_checkpoint.json").read_text())
        assert card["step"] == step and card["max_len"] == rows[step]["max_len"]
        assert (uninterrupted / "trainer" / f"checkpoint-{step + 1}").is_dir()
    # The controller state after every round is in that round's Trainer checkpoint.
    for k in range(1, 10):
        assert _state(uninterrupted, k) == decisions[k - 1].state


@pytest.mark.parametrize("stop", [2, 5])
def test_kill_and_resume_gives_the_uninterrupted_cap_sequence(answering_toy_model, uninterrupted, tmp_path, stop):
    cfg = _cfg(answering_toy_model, training={"save_every": 1})
    run = tmp_path / "run"
    _train(cfg, output_dir=run, stop_after_rounds=stop)
    # Controller level: the state rebuilt from the kept rows is the one the uninterrupted run had after that round
    # (and the one the stopped run saved in its checkpoint).
    kept = _rows(run)
    assert len(kept) == stop
    assert cfg.schedule.resume(kept) == _state(uninterrupted, stop) == _state(run, stop)
    _train(cfg, output_dir=run, resume=True)
    rows, full = _rows(run), _rows(uninterrupted)
    assert [r["max_len"] for r in rows] == [r["max_len"] for r in full]
    assert [r["phase"] for r in rows] == [r["phase"] for r in full]
    # The signal itself is reproduced (TRL restores the RNG states and the optimizer), so every decision is too.
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in full]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (uninterrupted / "checkpoints").iterdir())


def test_resume_refuses_edited_metrics(answering_toy_model, tmp_path):
    cfg = _cfg(answering_toy_model, rounds=4)
    run = tmp_path / "run"
    _train(cfg, output_dir=run, stop_after_rounds=2)
    rows = _rows(run)
    # another signal: the saved state no longer matches (not 1 - acc, which leaves an accuracy of 0.5 unchanged)
    rows[1]["accuracy"] = 0.0 if rows[1]["accuracy"] >= 0.5 else 1.0
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="adaptive"):
        _train(cfg, output_dir=run, resume=True)


def test_dry_run_says_the_schedule_is_closed_loop(tiny_toy_model):
    from siri_rl.engines.trl import describe

    info = describe(_cfg(tiny_toy_model), "/tmp/unused")
    assert "closed-loop" in info["schedule"] and info["first_caps"] == [{"step": 0, "max_len": 12, "phase": "filling"}]


def test_own_script_accepts_the_adaptive_schedule(tokenizer, tmp_path):
    from siri_rl.adaptive import adaptive_from_dict
    from siri_rl.engines.trl import siri_grpo

    siri = siri_grpo(adaptive_from_dict(SCHEDULE), tokenizer, rounds=4, run_dir=tmp_path / "run")
    assert siri.required_config["max_completion_length"] == 12
    assert siri.callback.cap.cap_of(0) == 12
