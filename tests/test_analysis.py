"""`siri analyze`: word-boundary pattern counts split by correctness across results (Figure 6), and run plots from a
metrics.jsonl in the run-directory format (Figures 4 and 9, tokens generated)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from siri_rl.analysis import (
    DYNAMICS_PNG,
    ENTROPY_PNG,
    PATTERNS_JSON,
    PATTERNS_MD,
    PATTERNS_PNG,
    RUN_MD,
    TOKENS_PNG,
    count_patterns,
    cumulative_tokens,
    pattern_frequencies,
    read_metrics,
    run_analysis,
    run_patterns,
)
from siri_rl.cli import app
from siri_rl.evaluate import EvalError

PNG = b"\x89PNG\r\n\x1a\n"


def test_counts_are_case_insensitive_whole_words():
    text = ("So, wait... Wait! That is also soon. Hold\non, HOLD ON. Alternatively we compute; computed, "
            "recompute, so-called, waiting")
    assert count_patterns(text) == {"wait": 2, "hold on": 2, "alternatively": 1, "so": 2, "compute": 1}
    assert count_patterns("", ["wait"]) == {"wait": 0}
    with pytest.raises(EvalError, match="empty pattern"):
        count_patterns("x", [" "])


def test_frequencies_split_by_correctness():
    recs = [
        {"response": "Wait, wait. So 4.", "correct": True},
        {"response": "so", "correct": True},
        {"response": "Hold on, wait wait wait.", "correct": False},
    ]
    f = pattern_frequencies(recs)
    assert (f["n_correct"], f["n_incorrect"]) == (2, 1)
    assert f["correct"]["wait"] == 1.0 and f["correct"]["so"] == 1.0
    assert f["incorrect"]["wait"] == 3.0 and f["incorrect"]["hold on"] == 1.0
    assert f["all"]["wait"] == pytest.approx(5 / 3)
    assert pattern_frequencies([{"response": "wait", "correct": True}])["incorrect"]["wait"] is None


def _results(root, step, n_wait):
    """A results dir whose correct responses say "wait" ``n_wait`` times and incorrect ones twice as often."""
    d = root / f"step{step}"
    d.mkdir(parents=True)
    rows = []
    for i in range(4):
        correct = i % 2 == 0
        k = n_wait if correct else 2 * n_wait
        rows.append({"benchmark": "amc", "problem_id": "1", "sample_index": i, "correct": correct,
                     "response": "<think>" + "Wait, so we compute. " * k + "</think> \\boxed{1}"})
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_patterns_across_checkpoints(tmp_path):
    dirs = [_results(tmp_path, s, k) for s, k in ((1280, 3), (1600, 2), (1920, 1))]
    freqs = run_patterns(dirs, tmp_path / "out")
    assert list(freqs) == ["step1280", "step1600", "step1920"]
    assert [freqs[n]["correct"]["wait"] for n in freqs] == [3.0, 2.0, 1.0]
    assert [freqs[n]["incorrect"]["compute"] for n in freqs] == [6.0, 4.0, 2.0]
    assert all(freqs[n]["correct"]["hold on"] == 0.0 for n in freqs)
    md = (tmp_path / "out" / PATTERNS_MD).read_text()
    assert '| step1600 | 2 | 2.00 | 0.00 | 0.00 | 2.00 | 2.00 |' in md and "## Incorrect responses" in md
    assert json.loads((tmp_path / "out" / PATTERNS_JSON).read_text())["results"]["step1920"]["n_correct"] == 2
    assert (tmp_path / "out" / PATTERNS_PNG).read_bytes()[:8] == PNG


def test_cli_analyze_patterns(tmp_path):
    dirs = [_results(tmp_path, s, k) for s, k in ((1, 1), (2, 2))]
    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["analyze", "patterns", *map(str, dirs), "--out", str(out),
                                   "--words", "wait,hold on", "--names", "early,late"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / PATTERNS_JSON).read_text())["patterns"] == ["wait", "hold on"]
    assert "| late | 2 | 2.00 | 0.00 |" in (out / PATTERNS_MD).read_text()
    res = CliRunner().invoke(app, ["analyze", "patterns", str(tmp_path / "nope"), "--out", str(out)])
    assert res.exit_code == 2 and res.output.startswith("error:")


def _metrics_rows(steps=96, cycle=32, cumulative=True):
    """Rows in the run-directory format of `siri train` (one per rollout round)."""
    from siri_rl.schedule import make_schedule

    sched = make_schedule("cosine", l_max=1024, l_min=512, cycle=cycle)
    rows, total = [], 0
    for t in range(steps):
        cap = sched(t)
        length = 0.8 * cap - 100 * t / steps
        tokens = int(length * 64)
        total += tokens
        rows.append({"step": t, "max_len": cap, "phase": sched.phase(t), "accuracy": 0.3 + 0.2 * t / steps,
                     "completion_len_mean": length, "completion_len_max": cap, "clipped_frac": 0.05,
                     "entropy": 0.6 + 0.1 * math.cos(2 * math.pi * t / cycle) - 0.2 * t / steps,
                     "tokens_generated": total if cumulative else tokens, "wall_s": 1.0 * t})
    return rows


def test_cumulative_tokens_reads_both_conventions():
    cum = _metrics_rows(cumulative=True)
    per = _metrics_rows(cumulative=False)
    assert cumulative_tokens(cum) == cumulative_tokens(per) == [r["tokens_generated"] for r in cum]
    assert cumulative_tokens([{"step": 0}]) is None


def test_analyze_run_writes_plots(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = _metrics_rows()
    # a run still writing leaves a half line at the end
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 96, "max_')
    assert len(read_metrics(run)) == 96
    written = run_analysis(run)
    out = run / "analysis"
    assert {p.name for p in written} == {DYNAMICS_PNG, ENTROPY_PNG, TOKENS_PNG, RUN_MD}
    for name in (DYNAMICS_PNG, ENTROPY_PNG, TOKENS_PNG):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / RUN_MD).read_text()
    assert "| rounds | 0 → 95 (96 rows) |" in md and "512 … 1024" in md
    assert f"| tokens generated (total) | {rows[-1]['tokens_generated']} |" in md


def test_analyze_run_without_entropy_and_bad_input(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("entropy", "tokens_generated")} for r in _metrics_rows(8)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = run_analysis(tmp_path / "metrics.jsonl", tmp_path / "a")
    assert {p.name for p in written} == {DYNAMICS_PNG, RUN_MD}
    with pytest.raises(EvalError, match="metrics.jsonl not found"):
        read_metrics(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 0\n{"step": 1}\n')
    with pytest.raises(EvalError, match=r"metrics.jsonl:1 is not valid JSON"):
        read_metrics(tmp_path / "bad")


def test_read_metrics_keeps_the_resumed_rows(tmp_path):
    # A run resumed from round 4's checkpoint after dying at round 6 logs rounds 5 and 6 again; the later rows count.
    rows = _metrics_rows(8)
    rerun = [dict(r, accuracy=0.99) for r in rows[5:7]]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:7] + rerun + rows[7:]))
    got = read_metrics(tmp_path)
    assert [r["step"] for r in got] == list(range(8))
    assert [r["accuracy"] for r in got[5:7]] == [0.99, 0.99]
    assert cumulative_tokens(got) == [r["tokens_generated"] for r in rows]


def test_cli_analyze_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _metrics_rows(16, 8)))
    res = CliRunner().invoke(app, ["analyze", "run", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / ENTROPY_PNG).exists() and "tokens generated" in res.output
