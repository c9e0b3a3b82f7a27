"""pass@1, pass@k and the paper's ΔAcc/CR on hand-computed inputs."""

import pytest

from siri_rl.metrics import delta_acc_cr, delta_acc_cr_table, mean_length, pass_at_1, pass_at_k


def test_pass_at_1_weighs_problems_equally():
    assert pass_at_1([[True, False, False, False], [True, True]]) == pytest.approx((0.25 + 1.0) / 2)
    with pytest.raises(ValueError):
        pass_at_1([])


def test_pass_at_k():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - (3 * 2) / (4 * 3))
    assert pass_at_k(4, 3, 2) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    assert mean_length([10, 20]) == 15.0 and mean_length([]) == 0.0


def test_delta_acc_cr_hand_computed():
    base = {"aime24": {"acc": 28.0, "length": 16000}, "math500": {"acc": 80.0, "length": 5000}}
    model = {"aime24": {"acc": 35.0, "length": 8000}, "math500": {"acc": 76.0, "length": 4000}, "amc": {"acc": 1, "length": 1}}
    # aime24: dAcc = 35/28 - 1 = 0.25, CR = 0.5 -> 0.5; math500: dAcc = max(0.95 - 1, 0) = 0 -> 0; amc not in base.
    table = delta_acc_cr_table(base, model)
    assert table["benchmarks"]["aime24"] == pytest.approx({"delta_acc": 0.25, "cr": 0.5, "delta_acc_cr": 0.5})
    assert table["benchmarks"]["math500"]["delta_acc_cr"] == 0.0
    assert "amc" not in table["benchmarks"]
    assert delta_acc_cr(base, model) == pytest.approx(0.25)
    # Fractions instead of percents give the same value.
    frac = lambda d: {k: {"acc": v["acc"] / 100, "length": v["length"]} for k, v in d.items()}  # noqa: E731
    assert delta_acc_cr(frac(base), frac(model)) == pytest.approx(0.25)


def test_delta_acc_cr_errors():
    with pytest.raises(ValueError, match="no benchmark in common"):
        delta_acc_cr({"a": {"acc": 1, "length": 1}}, {"b": {"acc": 1, "length": 1}})
    with pytest.raises(ValueError, match="must be"):
        delta_acc_cr({"a": {"acc": 1}}, {"a": {"acc": 1, "length": 1}})
