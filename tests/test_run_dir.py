"""The run directory (siri_rl.run_dir): the one writer and reader of metrics.jsonl, the per-round rollout
statistics both engines log, checkpoint cards, the config copy, and the engine protocol's names."""

from __future__ import annotations

import json

import pytest

from siri_rl.config import ConfigError
from siri_rl.metrics import rollout_stats
from siri_rl.run_dir import (
    CHECKPOINT_CARD,
    append_metrics_row,
    read_checkpoint_cards,
    read_metric_rows,
    truncate_metrics,
    write_checkpoint_card,
)


def test_rollout_stats_clips_against_the_cap_and_counts_groups_with_a_reward_spread():
    # Two groups of G=2: lengths against L=8; one completion ended exactly at L (not clipped), one ran into it.
    row = rollout_stats([8, 8, 3, 5], 8, [True, False, True, True], rewards=[1.0, 0.0, 1.0, 1.0],
                        group_ids=[0, 0, 1, 1])
    assert row == {"max_len": 8, "completion_len_mean": 6.0, "completion_len_max": 8, "completion_len_min": 3,
                   "clipped_frac": 0.25, "num_completions": 4, "tokens_round": 24, "accuracy": 0.75,
                   "frac_groups_with_reward_variance": 0.5, "frac_groups_all_correct": 0.5, "frac_groups_all_wrong": 0.0}
    assert "accuracy" not in rollout_stats([4], 8, [True])  # not scored yet (veRL without a reward loop)
    assert rollout_stats([], 8, [])["completion_len_mean"] == 0.0
    with pytest.raises(ValueError, match="one entry per completion"):
        rollout_stats([1, 2], 8, [True])


def test_one_writer_one_tolerant_reader_one_resume_policy(tmp_path):
    for step in range(4):
        append_metrics_row(tmp_path, {"step": step, "tokens_generated": 10 * (step + 1)})
    with (tmp_path / "metrics.jsonl").open("a") as f:  # an older siri's repeat of round 2, then a torn line
        f.write(json.dumps({"step": 2, "tokens_generated": 99}) + "\n" + '{"step": 4, "tok')
    rows = read_metric_rows(tmp_path)  # the run directory or the file
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and rows[2]["tokens_generated"] == 99
    assert read_metric_rows(tmp_path / "metrics.jsonl") == rows
    kept = truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert [r["step"] for r in kept] == [0, 1]
    assert read_metric_rows(tmp_path) == kept and '"step": 4' not in (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text('{"step": 0\n{"step": 1}\n')
    with pytest.raises(ConfigError, match=r"metrics.jsonl:1 is not valid JSON"):
        read_metric_rows(tmp_path)
    assert read_metric_rows(tmp_path / "nowhere.jsonl") == []


def test_checkpoint_cards_one_schema_and_the_old_ones(tmp_path):
    run = tmp_path / "run"
    for name in ("cycle1-expanded", "cycle1-compressed", "old-trl", "old-verl", "cut.tmp", "no-card"):
        (run / "checkpoints" / name).mkdir(parents=True)
    write_checkpoint_card(run / "checkpoints" / "cycle1-compressed", name="cycle1-compressed", step=2, max_len=8,
                          phase="compressing", source="trl GRPOTrainer, optimizer step 3", metrics={"step": 2})
    write_checkpoint_card(run / "checkpoints" / "cycle1-expanded", name="cycle1-expanded", step=4, max_len=12,
                          phase="expanding", source="verl", metrics=None)
    (run / "checkpoints/old-trl" / CHECKPOINT_CARD).write_text(json.dumps({"step": 1, "max_len": 10, "accuracy": 0.5}))
    (run / "checkpoints/old-verl" / CHECKPOINT_CARD).write_text(
        json.dumps({"name": "old-verl", "step": 6, "global_step": 7, "source": "/x/global_step_7/actor"}))
    (run / "checkpoints/cut.tmp" / CHECKPOINT_CARD).write_text("{}")
    cards = read_checkpoint_cards(run)
    assert [(c.name, c.step, c.max_len) for c in cards] == [
        ("old-trl", 1, 10), ("cycle1-compressed", 2, 8), ("cycle1-expanded", 4, 12), ("old-verl", 6, None)]
    assert cards[0].metrics == {"step": 1, "max_len": 10, "accuracy": 0.5}
    assert cards[1].phase == "compressing" and cards[1].path == run / "checkpoints" / "cycle1-compressed"
    assert json.loads((run / "checkpoints/cycle1-compressed" / CHECKPOINT_CARD).read_text())["metrics"] == {"step": 2}


def test_engines_are_listed_once():
    import siri_rl.config
    import siri_rl.engines

    assert siri_rl.config.ENGINES is siri_rl.engines.ENGINES == ("trl", "verl")
