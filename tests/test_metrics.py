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


# --- pass@k against exact fractions ----------------------------------------------------------------------------


def _exact_pass_at_k(n, c, k):
    from fractions import Fraction
    from math import comb

    return 1 - Fraction(comb(n - c, k), comb(n, k))  # comb(m, k) = 0 for m < k: pass@k = 1


def test_pass_at_k_equals_the_exact_fraction():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(_exact_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)
    from fractions import Fraction

    # the edges, exactly: no correct sample, all correct, k = n (any correct sample among all n)
    assert pass_at_k(64, 0, 1) == pass_at_k(64, 0, 64) == 0.0
    assert pass_at_k(64, 64, 1) == pass_at_k(64, 64, 64) == 1.0
    assert pass_at_k(64, 1, 64) == 1.0 and pass_at_k(64, 63, 2) == 1.0  # n - c < k: every k-subset has a correct one
    assert pass_at_k(64, 1, 32) == pytest.approx(float(Fraction(1, 2)))  # 1 - C(63,32)/C(64,32) = 32/64
    assert pass_at_k(64, 16, 4) == pytest.approx(float(_exact_pass_at_k(64, 16, 4)), rel=1e-12)
    for bad in ((4, 5, 1), (4, 1, 0), (4, 1, 5)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_pass_at_k_ks_and_mean():
    from siri_rl.metrics import mean_pass_at_k, pass_at_k_ks

    assert pass_at_k_ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert pass_at_k_ks(6) == [1, 2, 4, 6] and pass_at_k_ks(1) == [1] and pass_at_k_ks(0) == []
    # two problems: (4 samples, 1 correct) and (4, 4): pass@2 = ((1 - 3/6) + 1) / 2
    assert mean_pass_at_k([(4, 1), (4, 4)], 2) == pytest.approx(0.75)


# --- maj@k: equivalent spellings vote together -----------------------------------------------------------------


def test_maj_at_k_equivalent_spellings_vote_together():
    """`025`/`25`/`0025` are one AIME answer and `\\frac12`/`0.5`/`\\frac{1}{2}` one MATH answer, decided by the
    core's math-verify grader; voted apart they would lose to the correct answer, voted together they win."""
    from siri_rl.metrics import answer_clusters, maj_at_k
    from siri_rl.reward import is_equivalent

    # gold "3": the correct answer has 2 votes, the value 25 has 3 votes in three spellings
    answers = ["025", "3", "25", "3", "7", "0025"]
    correct = [False, True, False, True, False, False]
    labels, checks = answer_clusters(answers, correct, is_equivalent)
    assert labels[1] == labels[3] == 0
    assert labels[0] == labels[2] == labels[5] != labels[4]
    assert maj_at_k([labels], 6) == 0.0
    apart, _ = answer_clusters(answers, correct, lambda a, b: a == b)  # exact strings only
    assert maj_at_k([apart], 6) == 1.0

    # gold 1/3, written two ways (both graded correct: free); 1/2 written three ways
    answers = ["\\frac12", "\\frac{1}{3}", "0.5", "\\dfrac{1}{3}", "\\frac{1}{2}", None]
    correct = [False, True, False, True, False, False]
    labels, checks = answer_clusters(answers, correct, is_equivalent)
    assert labels == [1, 0, 1, 0, 1, None]
    assert checks == 2  # "0.5" and "\frac{1}{2}" each against the one representative "\frac12"
    assert maj_at_k([labels], 6) == 0.0 and maj_at_k([labels], 1) == pytest.approx(2 / 6)


def test_answer_clustering_cost_bound():
    """u distinct wrong answers that are all different values cost u(u-1)/2 checks (2016 for 64 samples);
    repeated strings and correct answers cost nothing."""
    from siri_rl.metrics import answer_clusters

    calls = []

    def same_value(a, b):
        calls.append((a, b))
        return int(a) == int(b)

    labels, checks = answer_clusters([str(i) for i in range(64)], [False] * 64, same_value)
    assert checks == len(calls) == 64 * 63 // 2 == 2016 and len(set(labels)) == 64
    calls.clear()
    labels, checks = answer_clusters(["5"] * 40 + ["4"] * 24, [False] * 40 + [True] * 24, same_value)
    assert checks == len(calls) == 0 and set(labels) == {0, 1}


def test_majority_ties_and_blocks_are_deterministic():
    from siri_rl.metrics import maj_at_k, majority_votes

    # ties go to the answer seen first in the block; blocks are consecutive samples, the rest is dropped
    assert majority_votes([1, 0], 2) == [False] and majority_votes([0, 1], 2) == [True]
    assert majority_votes([0, 1, 1, 0, 0], 2) == [True, False]
    assert majority_votes([None, None, 2, 0, 0], 5) == [True] and majority_votes([None, None], 2) == [False]
    # maj@1 is pass@1: a lone sample's answer is its majority
    labels = [[0, 1, None, 0], [2, 2, 0, None]]
    assert maj_at_k(labels, 1) == pytest.approx(pass_at_1([[x == 0 for x in p] for p in labels]))
    with pytest.raises(ValueError):
        majority_votes([0, 1], 3)


# --- bootstrap and standard errors -----------------------------------------------------------------------------


def test_bootstrap_is_seeded():
    from siri_rl.metrics import bootstrap_ci, bootstrap_replicates, name_seed

    values = [0.0, 0.25, 1.0, 0.5, 0.75, 0.0, 1.0]
    a = bootstrap_replicates([(values, [1] * 7)], resamples=3000, seed=name_seed(0, "aime24"))
    b = bootstrap_replicates([(values, [1] * 7)], resamples=3000, seed=name_seed(0, "aime24"))
    c = bootstrap_replicates([(values, [1] * 7)], resamples=3000, seed=name_seed(0, "aime25"))
    assert (a == b).all() and not (a == c).all()
    assert bootstrap_ci(values, resamples=500, seed=3) == bootstrap_ci(values, resamples=500, seed=3)
    lo, hi = bootstrap_ci(values)
    assert lo < sum(values) / 7 < hi
    # the chunked draw is the same draw whatever the chunk size
    assert (bootstrap_replicates([(values, [1] * 7)], resamples=3000, seed=1, chunk=7)
            == bootstrap_replicates([(values, [1] * 7)], resamples=3000, seed=1)).all()
    with pytest.raises(ValueError, match="same positive number"):
        bootstrap_replicates([(values, [1] * 6)])


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    """Draw 50 problems with known mean pass rate (U-shaped difficulties, 16 samples each, like AIME) and 50
    problems with known mean length (lognormal lengths) many times; the 95% interval must contain the truth in
    about 95% of the repetitions (400 of them: ±2.2 points of Monte Carlo error)."""
    np = pytest.importorskip("numpy")
    from siri_rl.metrics import bootstrap_ci

    rng = np.random.default_rng(1234)
    reps, problems = 400, 50
    p = rng.beta(0.5, 0.5, size=(reps, problems))  # E[p] = 0.5
    rates = rng.binomial(16, p) / 16
    mu, sigma = 7.0, 0.6
    n = rng.integers(8, 17, size=(reps, problems))
    sums = np.array([[rng.lognormal(mu, sigma, k).sum() for k in row] for row in n])
    true_len = np.exp(mu + sigma**2 / 2)
    hit_acc = hit_len = 0
    for r in range(reps):
        lo, hi = bootstrap_ci(rates[r], resamples=1000, seed=r)
        hit_acc += lo <= 0.5 <= hi
        lo, hi = bootstrap_ci(sums[r], n[r], resamples=1000, seed=r)
        hit_len += lo <= true_len <= hi
    assert 0.90 <= hit_acc / reps <= 0.98, hit_acc / reps
    assert 0.90 <= hit_len / reps <= 0.98, hit_len / reps


def test_paired_bootstrap_covers_the_true_difference_and_is_narrower():
    """Two models on the same problems, the second solving every problem 5 points more often: the paired interval
    of the difference covers 5 points about 95% of the time, and is narrower than the two unpaired intervals."""
    np = pytest.importorskip("numpy")
    from siri_rl.metrics import bootstrap_ci, bootstrap_replicates, percentile_interval

    rng = np.random.default_rng(7)
    reps, problems, delta = 300, 60, 0.05
    hits, widths_paired, widths_apart = 0, [], []
    for r in range(reps):
        p = rng.uniform(0.1, 0.85, problems)
        a, b = rng.binomial(64, p + delta) / 64, rng.binomial(64, p) / 64
        ones = np.ones(problems)
        out = bootstrap_replicates([(a, ones), (b, ones)], resamples=1000, seed=r)
        lo, hi = percentile_interval(out[0] - out[1])
        hits += lo <= delta <= hi
        widths_paired.append(hi - lo)
        la, ha = bootstrap_ci(a, resamples=1000, seed=r)
        widths_apart.append(ha - la)
    assert 0.90 <= hits / reps <= 0.99, hits / reps
    assert np.mean(widths_paired) < 0.5 * np.mean(widths_apart)


def test_sampling_standard_error_matches_reruns():
    """The standard error over samples predicts how far pass@1 and mean length move between reruns with other
    seeds on the same problems (2000 simulated reruns, within 10%)."""
    np = pytest.importorskip("numpy")
    from siri_rl.metrics import sampling_se_of_mean, sampling_se_of_rate

    rng = np.random.default_rng(5)
    problems, n, reruns = 30, 16, 2000
    p = rng.beta(0.7, 0.7, problems)
    correct = rng.binomial(n, p, size=(reruns, problems))
    se = np.array([sampling_se_of_rate([n] * problems, c) for c in correct])
    assert se.mean() == pytest.approx((correct / n).mean(axis=1).std(), rel=0.1)
    scale = rng.uniform(500, 5000, problems)
    lengths = rng.exponential(scale[:, None], size=(reruns, problems, n))
    se_len = np.array([sampling_se_of_mean([n] * problems, x.sum(1), (x**2).sum(1)) for x in lengths])
    assert se_len.mean() == pytest.approx(lengths.mean(axis=(1, 2)).std(), rel=0.1)
    assert sampling_se_of_rate([1, 4], [1, 2]) is None  # one sample says nothing about sampling noise


# --- the accuracy/length Pareto front --------------------------------------------------------------------------


def test_pareto_front_on_known_points():
    from siri_rl.metrics import pareto_front

    points = [
        {"acc": 30.0, "length": 9000},   # 0: dominated by 3 (as accurate, shorter)
        {"acc": 34.0, "length": 12000},  # 1: front (the most accurate)
        {"acc": 25.0, "length": 5000},   # 2: front (the shortest)
        {"acc": 31.0, "length": 8000},   # 3: front
        {"acc": 34.0, "length": 13000},  # 4: dominated by 1 (same accuracy, longer)
        {"acc": 20.0, "length": 5000},   # 5: dominated by 2 (same length, less accurate)
        {"acc": 28.0, "length": 11000},  # 6: dominated by 3
    ]
    assert pareto_front(points) == [2, 3, 1]  # by length
    # an exact duplicate of a front point dominates neither: both are on it; metrics rows' "accuracy" works too
    dup = points + [{"accuracy": 31.0, "length": 8000}]
    assert pareto_front(dup) == [2, 3, 7, 1]
    assert pareto_front([{"acc": 0.5, "length": 100}]) == [0] and pareto_front([]) == []
    # exact comparison: a hair more accurate at the same length wins alone
    assert pareto_front([{"acc": 0.5, "length": 100}, {"acc": 0.5 + 1e-12, "length": 100}]) == [1]


def test_pareto_front_agrees_with_the_definition():
    import random

    from siri_rl.metrics import pareto_front

    rng = random.Random(0)
    for _ in range(200):
        pts = [{"acc": rng.randint(0, 5), "length": rng.randint(0, 5)} for _ in range(rng.randint(1, 9))]
        beats = lambda q, p: (q["acc"] >= p["acc"] and q["length"] <= p["length"]  # noqa: E731
                              and (q["acc"] > p["acc"] or q["length"] < p["length"]))
        expected = [i for i, p in enumerate(pts) if not any(beats(q, p) for q in pts)]
        assert sorted(pareto_front(pts)) == expected


def test_pareto_front_errors():
    from siri_rl.metrics import pareto_front

    with pytest.raises(ValueError, match="point 1 must have numeric 'acc' and 'length'"):
        pareto_front([{"acc": 1, "length": 2}, {"acc": None, "length": 3}])
    with pytest.raises(ValueError, match="point 0 has a NaN"):
        pareto_front([{"acc": float("nan"), "length": 2}])
