"""The paper's schedule formulas (§4.3) pinned at characteristic steps, checkpoints and validation."""

import math

import pytest

from siri_rl.schedule import ScheduleError, make_schedule, schedule_from_dict

L_MAX, L_MIN, T = 16384, 8192, 640
MID = (L_MAX + L_MIN) // 2


def test_constant():
    s = make_schedule("constant", l_max=L_MAX)
    assert [s(t) for t in (0, 1, 999)] == [L_MAX] * 3
    assert s.phase(10) == "holding" and s.troughs(2000) == [] and s.peaks(2000) == []


def test_cosine_characteristic_steps():
    s = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=T)
    # start, quarter, trough, three quarters, cycle end, second and third cycle
    assert s(0) == L_MAX
    assert s(T // 4) == MID
    assert s(T // 2) == L_MIN
    assert s(3 * T // 4) == MID
    assert s(T) == L_MAX and s(2 * T + T // 2) == L_MIN and s(3 * T - 1) == round(MID + (L_MAX - L_MIN) / 2 * math.cos(2 * math.pi * (T - 1) / T))
    assert s(100) == round(MID + (L_MAX - L_MIN) / 2 * math.cos(2 * math.pi * 100 / T))
    assert s.phase(0) == "compressing" and s.phase(T // 4) == "compressing"
    assert s.phase(T // 2) == "expanding" and s.phase(3 * T // 4) == "expanding"


def test_stair_characteristic_steps():
    s = make_schedule("stair", l_max=L_MAX, l_min=L_MIN, cycle=T)
    assert [s(0), s(T // 2 - 1), s(T // 2), s(T - 1), s(T), s(T + T // 2)] == [L_MAX, L_MAX, L_MIN, L_MIN, L_MAX, L_MIN]
    assert s.phase(T // 2 - 1) == "compressing" and s.phase(T - 1) == "expanding" and s.phase(10) == "holding"


def test_stair_cosine_characteristic_steps():
    s = make_schedule("stair-cosine", l_max=L_MAX, l_min=L_MIN, cycle=T)
    assert s(0) == s(T // 4 - 1) == L_MAX  # hold L_max for phi < pi/2
    assert s(T // 4) == L_MAX  # cos(0) at phi = pi/2: the descent starts at L_max
    assert s(3 * T // 8) == MID  # halfway down: cos(2 * pi/4) = 0
    assert s(T // 2) == s(3 * T // 4 - 1) == L_MIN  # hold L_min over [pi, 3pi/2)
    assert s(7 * T // 8) == MID  # halfway back up
    assert s(T) == L_MAX
    assert s.phase(10) == "holding" and s.phase(3 * T // 8) == "compressing" and s.phase(7 * T // 8) == "expanding"


def test_stages_is_deepscaler_two_stage_baseline():
    s = make_schedule("stages", l_max=16384, stages=[(0, 8192), (320, 16384)])
    assert [s(0), s(319), s(320), s(5000)] == [8192, 8192, 16384, 16384]
    assert s.l_min == 8192 and s.phase(319) == "expanding" and s.troughs(1000) == []


def test_troughs_and_peaks_paper_run():
    s = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=T)
    assert s.troughs(3 * T) == [320, 960, 1600]
    assert s.peaks(3 * T) == [640, 1280, 1919]
    assert s.checkpoints(3 * T)[:2] == [(320, "cycle1-compressed"), (640, "cycle1-expanded")]
    assert all(s(t) == L_MIN for t in s.troughs(3 * T))


def test_troughs_and_peaks_other_shapes():
    stair = make_schedule("stair", l_max=L_MAX, l_min=L_MIN, cycle=480)
    assert stair.troughs(1440) == [479, 959, 1439]  # end of each L_min half
    assert stair.peaks(1440) == [719, 1199]  # end of the following L_max half; none after the last trough
    sc = make_schedule("stair-cosine", l_max=L_MAX, l_min=L_MIN, cycle=480)
    assert sc.troughs(960) == [360, 840]  # end of the L_min hold, where the rise begins
    assert all(sc(t) == L_MIN for t in sc.troughs(960))


def test_partial_cycle_has_no_trough_until_the_cap_stops_falling():
    s = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=T)
    assert s.troughs(300) == []  # still compressing at step 299
    assert s.troughs(T // 2 + 1) == [T // 2]
    assert s.peaks(T // 2 + 1) == []


def test_round_to_stays_within_bounds():
    s = make_schedule("cosine", l_max=16000, l_min=8100, cycle=T, round_to=1024)
    values = {s(t) for t in range(T)}
    assert all(v % 1024 == 0 for v in values)
    assert min(values) >= 8100 and max(values) <= 16000
    assert min(values) == 8192 and max(values) == 15360  # 16384 would leave [l_min, l_max]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="cosine", l_max=8192, l_min=16384, cycle=640), "must not exceed"),
        (dict(kind="cosine", l_max=0, l_min=0, cycle=640), "l_max must be a positive integer"),
        (dict(kind="cosine", l_max=16384, l_min=-1, cycle=640), "l_min must be a positive integer"),
        (dict(kind="cosine", l_max=16384, l_min=8192, cycle=1), "cycle must be an integer"),
        (dict(kind="cosine", l_max=16384, l_min=8192), "needs cycle"),
        (dict(kind="stair", l_max=16384, cycle=10), "needs l_min"),
        (dict(kind="triangle", l_max=16384), "unknown schedule kind 'triangle'"),
        (dict(kind="stages", l_max=16384, stages=[(320, 16384), (0, 8192)]), "first stage must start at step 0"),
        (dict(kind="stages", l_max=16384, stages=[(0, 8192), (320, 16384), (320, 8192)]), "strictly increasing"),
        (dict(kind="stages", l_max=16384), "needs stages"),
        (dict(kind="cosine", l_max=1000, l_min=900, cycle=10, round_to=512), "no multiple of round_to"),
    ],
)
def test_validation_errors(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ScheduleError, match=message):
        make_schedule(kind, **kwargs)


def test_negative_step_and_unknown_config_keys():
    s = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=T)
    with pytest.raises(ScheduleError, match="step must be >= 0"):
        s(-1)
    with pytest.raises(ScheduleError, match="unknown schedule keys"):
        schedule_from_dict({"kind": "cosine", "l_max": 1, "period": 3})
    assert schedule_from_dict(s.to_dict()) == s
