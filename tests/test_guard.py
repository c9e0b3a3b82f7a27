"""The no-learning guard: the share of groups that carry a GRPO gradient, and a warning (or a stop)
once per starved episode, never on a healthy run."""

import pytest
import yaml

from siri_rl.guard import (
    GuardError,
    NoLearningGuard,
    frac_groups_all_correct_and_wrong,
    frac_groups_with_reward_variance,
    guard_from_dict,
)


def test_frac_groups_with_reward_variance_on_known_groups():
    rewards = [1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert frac_groups_with_reward_variance(rewards, [i // 4 for i in range(12)]) == pytest.approx(1 / 3)
    # veRL's uids: strings, and a group need not be contiguous
    uids = ["b", "a", "c", "a", "b", "c"]
    assert frac_groups_with_reward_variance([0.0, 1.0, 0.5, 0.0, 0.0, 0.5], uids) == pytest.approx(1 / 3)  # only "a"
    assert frac_groups_with_reward_variance([1.0], ["x"]) == 0.0  # a group of one has no variance
    assert frac_groups_with_reward_variance([0.0, 1.0], [0, 0]) == 1.0
    with pytest.raises(ValueError, match="3 rewards but 2 group ids"):
        frac_groups_with_reward_variance([0, 1, 0], [0, 0])
    with pytest.raises(ValueError, match="at least one reward"):
        frac_groups_with_reward_variance([], [])
    with pytest.raises(ValueError, match="non-finite reward"):
        frac_groups_with_reward_variance([0.0, float("nan")], [0, 0])


def test_frac_groups_with_reward_variance_is_the_complement_of_trls_zero_std_share():
    """TRL's ``frac_reward_zero_std`` (grpo_trainer.py:2770-2771, 2788, 2830) over groups of num_generations."""
    import torch
    from trl.trainer.utils import nanstd

    g = 4
    rewards = torch.tensor([1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1], dtype=torch.float32)
    std = nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    trl_zero_std = torch.isclose(std, torch.zeros_like(std)).float().mean().item()
    ours = frac_groups_with_reward_variance(rewards.tolist(), [i // g for i in range(len(rewards))])
    assert ours == pytest.approx(1 - trl_zero_std) and ours == pytest.approx(2 / 5)


def _row(step, *, signal=0.5, clipped=0.1, accuracy=0.4, max_len=36):
    return {"step": step, "max_len": max_len, "accuracy": accuracy, "clipped_frac": clipped,
            "frac_groups_with_reward_variance": signal}


def _starved(step):
    return _row(step, signal=0.0, clipped=1.0, accuracy=0.0)


def test_a_starved_run_warns_once():
    guard = guard_from_dict("warn")
    verdicts = guard.replay([_starved(r) for r in range(12)])
    actions = [v.action for v in verdicts]
    assert actions == ["ok"] * 3 + ["warn"] + ["ok"] * 8  # after 4 rounds, and once per episode
    assert all(v.starved for v in verdicts)
    message = verdicts[3].message
    assert message.startswith("no-learning guard: for rounds 0-3 GRPO had almost nothing to learn from")
    for part in ("0.00 of the prompt groups had any reward variance (threshold 0.05)",
                 "1.00 of the completions hit the cap L=36 (threshold 0.95)", "training accuracy 0.00",
                 "below the shortest correct answer", "</think>", "grader mismatch", "Training continues"):
        assert part in message
    assert "\n" not in message


def test_stop_mode_stops_and_stops_again_after_a_resume():
    guard = guard_from_dict({"mode": "stop", "rounds": 3})
    rows = [_starved(r) for r in range(3)]
    verdicts = guard.replay(rows)
    assert [v.action for v in verdicts] == ["ok", "ok", "stop"]
    assert "Stopping with a resumable checkpoint" in verdicts[-1].message
    # The resumed run rebuilds the state from the kept rows; still starved, it stops again at once.
    state = guard.replay(rows)[-1].state
    assert guard.check(state, _starved(3)).action == "stop"
    # warn mode does not repeat its warning after a resume
    warn = NoLearningGuard(mode="warn", rounds=3)
    assert warn.check(warn.replay(rows)[-1].state, _starved(3)).action == "ok"


def test_a_healthy_run_never_warns():
    guard = guard_from_dict(None)  # the default: warn
    assert guard.mode == "warn"
    # noisy but healthy, with a single starved round (an unlucky batch) now and then
    rows = [_row(r, signal=0.3 + 0.2 * ((r * 7) % 5) / 4, clipped=0.2 + 0.7 * ((r * 3) % 4) / 3) for r in range(200)]
    rows[50] = _starved(50)
    rows[120] = _row(120, signal=0.02)
    assert all(v.action == "ok" for v in guard.replay(rows))


def test_recovering_resets_the_streak_and_a_new_episode_warns_again():
    guard = NoLearningGuard(rounds=3)
    almost = [_starved(0), _starved(1), _row(2), _starved(3), _starved(4), _row(5)]
    assert [v.action for v in guard.replay(almost)] == ["ok"] * 6
    episodes = [_starved(r) for r in range(3)] + [_row(3)] + [_starved(r) for r in range(4, 7)]
    verdicts = guard.replay(episodes)
    assert [v.action for v in verdicts] == ["ok", "ok", "warn", "ok", "ok", "ok", "warn"]
    assert "rounds 4-6" in verdicts[-1].message


def test_either_condition_starves():
    guard = NoLearningGuard(rounds=2)
    only_clipped = [_row(r, signal=0.5, clipped=0.97) for r in range(2)]
    assert guard.replay(only_clipped)[-1].action == "warn"
    only_no_signal = [_row(r, signal=0.04, clipped=0.1) for r in range(2)]
    assert guard.replay(only_no_signal)[-1].action == "warn"
    # rows of an engine that does not log frac_groups_with_reward_variance yet: the cap condition alone
    legacy = [{"step": r, "max_len": 36, "accuracy": 0.0, "clipped_frac": 1.0} for r in range(2)]
    verdict = guard.replay(legacy)[-1]
    assert verdict.action == "warn" and "reward variance" not in verdict.message
    with pytest.raises(ValueError, match="needs 'clipped_frac' in every metrics row"):
        guard.check(guard.initial_state(), {"step": 0, "accuracy": 0.0})


def test_all_right_groups_blame_easy_data():
    guard = NoLearningGuard(rounds=2)
    message = guard.replay([_row(r, signal=0.0, clipped=0.0, accuracy=1.0) for r in range(2)])[-1].message
    assert "too easy" in message and "grader mismatch" not in message


def test_groups_all_right_and_all_wrong_are_counted_apart():
    rewards = [1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1]
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]  # all right, all wrong, a spread, all right
    assert frac_groups_all_correct_and_wrong(rewards, groups) == (0.5, 0.25)
    assert frac_groups_with_reward_variance(rewards, groups) == 0.25  # the three shares add up to 1


def test_a_trough_of_all_right_and_all_wrong_groups_is_not_blamed_on_easy_data():
    """The toy's rounds near a trough: accuracy 0.62-0.81 and a fifth to a third of the completions cut by the cap,
    every group all right or all wrong (the problems that do not fit the cap fail every time). The warning says
    what it saw (both shares) and names the compression phase, not data that is too easy."""
    guard = NoLearningGuard(rounds=4)
    rows = [{**_row(93 + i, signal=0.0, clipped=c, accuracy=a, max_len=cap), "phase": "compressing",
             "frac_groups_all_correct": a, "frac_groups_all_wrong": 1 - a}
            for i, (a, c, cap) in enumerate([(0.62, 0.38, 54), (0.7, 0.3, 47), (0.75, 0.25, 41), (0.81, 0.19, 36)])]
    message = guard.replay(rows)[-1].message
    assert "0.62-0.81 of the groups all right, 0.19-0.38 all wrong" in message
    assert "too easy" not in message and "compression phase" in message and "schedule.l_min" in message
    # the same shares outside a compression phase: the cap or the data, not the schedule's design
    expanding = guard.replay([{**r, "phase": "expanding"} for r in rows])[-1].message
    assert "compression phase" not in expanding and "too easy" not in expanding


def test_off_never_acts():
    guard = guard_from_dict("off")
    assert all(v.action == "ok" and not v.starved for v in guard.replay([_starved(r) for r in range(10)]))


def test_guard_from_dict():
    assert guard_from_dict(yaml.safe_load("guard: off")["guard"]).mode == "off"  # YAML reads a bare off as false
    assert guard_from_dict({"mode": "STOP"}).mode == "stop"
    g = guard_from_dict({"rounds": 5, "min_signal_frac": 0.1, "max_clipped_frac": 0.9})
    assert g == NoLearningGuard("warn", 5, 0.1, 0.9) and guard_from_dict(g.to_dict()) == g


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "training.guard must be one of warn, stop, off"),
        ("loud", "mode must be one of warn, stop, off, got 'loud'"),
        ({"mode": "warn", "k": 3}, r"unknown training.guard keys \['k'\]"),
        ({"rounds": 0}, "rounds must be an integer number of rollout rounds >= 1"),
        ({"rounds": 2.5}, "rounds must be an integer"),
        ({"min_signal_frac": 1.5}, r"min_signal_frac must be a fraction in \[0, 1\]"),
        ({"max_clipped_frac": "high"}, r"max_clipped_frac must be a fraction in \[0, 1\]"),
    ],
)
def test_guard_config_errors(value, message):
    with pytest.raises(GuardError, match=message):
        guard_from_dict(value)
