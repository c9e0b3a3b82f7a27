"""`siri eval`: samples/summary/markdown/budget curve on a tiny random Qwen2 with the real R1 tokenizer, resume after
a real kill, and the summary/budget arithmetic on hand-written responses that are actually correct."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siri_rl.evaluate import (
    ARGS_FILE,
    BUDGET_PNG,
    SAMPLES_FILE,
    SUMMARY_JSON,
    SUMMARY_MD,
    EvalConfig,
    EvalError,
    budget_pass,
    grade_records,
    read_samples,
    resolve_budgets,
    run_eval,
    summarize_samples,
    summary_markdown,
)
from siri_rl.metrics import delta_acc_cr
from siri_rl.prompts import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"benchmark", "problem_id", "sample_index", "gold", "response", "response_tokens", "finish_reason",
               "answer", "correct", "grade_status", "token_ids"}


# --- hand-written responses: grading, pass@1, lengths, budgets -------------------------------------------------


def _record(tok, bench, pid, idx, gold, text, finish="stop"):
    ids = tok.encode(text, add_special_tokens=False)
    return {"benchmark": bench, "problem_id": pid, "sample_index": idx, "gold": gold, "response": text,
            "response_tokens": len(ids), "finish_reason": finish, "token_ids": ids}


def _graded(records):
    cfg = EvalConfig(model="unused", out=Path("unused"), benchmarks=["x"], backend="transformers",
                     grade_workers=1)
    return grade_records(records, cfg)


@pytest.fixture(scope="module")
def tok(r1_tokenizer_dir):
    return load_tokenizer(str(r1_tokenizer_dir))


def test_load_tokenizer_round_trips_the_r1_tokenizer(tok, r1_tokenizer_dir):
    from tokenizers import Tokenizer

    text = "<think>\nWe need 2+2.\n</think>\n\n$\\boxed{4}$"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids == Tokenizer.from_file(str(r1_tokenizer_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.bos_token_id, tok.eos_token_id) == (151646, 151643) and tok.chat_template


@pytest.fixture(scope="module")
def hand_records(tok):
    right4 = "<think>\nWe need 2+2. That is 4.\n</think>\n\nThe answer is $\\boxed{4}$."
    wrong4 = "<think>\nWe need 2+2. That is 5.\n</think>\n\nThe answer is $\\boxed{5}$."
    frac = "<think>\nHalf of one.\n</think>\n\n$\\boxed{\\frac{1}{2}}$"
    no_think_end = "We need 2+2, so \\boxed{4}"  # no </think>: not graded as an answer (require_think_end)
    recs = [
        _record(tok, "aime24", "p1", 0, "4", right4),
        _record(tok, "aime24", "p1", 1, "4", wrong4),
        _record(tok, "aime24", "p1", 2, "4", right4 + " Done."),
        _record(tok, "aime24", "p2", 0, "0.5", frac),  # math-verify: 1/2 == 0.5
        _record(tok, "aime24", "p2", 1, "0.5", wrong4),
        _record(tok, "aime24", "p2", 2, "0.5", no_think_end),
        _record(tok, "amc", "q1", 0, "4", right4),
        _record(tok, "amc", "q1", 1, "4", "<think>\n" + "wait, " * 40, finish="length"),
    ]
    return _graded(recs)


def test_grading_of_hand_written_responses(hand_records):
    assert [r["correct"] for r in hand_records] == [True, False, True, True, False, False, True, False]
    assert hand_records[0]["answer"] == "4" and hand_records[1]["answer"] == "5"
    assert hand_records[5]["answer"] is None  # no </think>


def test_summary_pass_at_1_and_lengths(hand_records):
    s = summarize_samples(hand_records)
    assert list(s) == ["aime24", "amc"]
    a = s["aime24"]
    # pass@1 = mean over problems of the fraction correct: (2/3 + 1/3) / 2
    assert a["acc"] == pytest.approx(50.0)
    assert (a["n_problems"], a["n_samples"]) == (2, 6)
    lens = [r["response_tokens"] for r in hand_records[:6]]
    correct = [r["response_tokens"] for r in hand_records[:6] if r["correct"]]
    wrong = [r["response_tokens"] for r in hand_records[:6] if not r["correct"]]
    assert a["length"] == pytest.approx(sum(lens) / 6, abs=0.01)
    assert a["length_correct"] == pytest.approx(sum(correct) / len(correct), abs=0.01)
    assert a["length_incorrect"] == pytest.approx(sum(wrong) / len(wrong), abs=0.01)
    assert s["amc"]["acc"] == pytest.approx(50.0) and s["amc"]["truncated"] == pytest.approx(50.0)
    # the benchmarks part feeds the core's ΔAcc/CR directly
    shorter = {k: {**v, "length": v["length"] / 2} for k, v in s.items()}
    assert delta_acc_cr(s, shorter) == pytest.approx(0.0)
    better = {k: {**v, "acc": v["acc"] * 1.2, "length": v["length"] / 2} for k, v in s.items()}
    assert delta_acc_cr(s, better) == pytest.approx(0.2 / 0.5)


def test_grade_timeouts_are_counted_per_benchmark(tok):
    """A response whose grading times out (math-verify's 1 s alarm on a power tower, timeout 3 s) is incorrect
    with grade_status "timeout", and summary.json counts it per benchmark instead of hiding it among the wrong."""
    from siri_rl.evaluate import summarize_run

    tower = "<think>\nBig.\n</think>\n\n$\\boxed{9^{9^{9^{9^{9}}}}}$"
    right = "<think>\nWe need 2+2.\n</think>\n\n$\\boxed{4}$"
    recs = [_record(tok, "aime24", "p1", 0, "1", tower), _record(tok, "aime24", "p1", 1, "4", right),
            _record(tok, "amc", "q1", 0, "4", right)]
    cfg = EvalConfig(model="unused", out=Path("unused"), benchmarks=["aime24", "amc"], backend="transformers",
                     grade_workers=1, grade_timeout=3.0)
    graded = grade_records(recs, cfg)
    assert [(r["correct"], r["grade_status"]) for r in graded] == [(False, "timeout"), (True, "fast"), (True, "fast")]
    summary = summarize_run(graded, cfg, tok)["benchmarks"]
    assert (summary["aime24"]["grade_timeouts"], summary["amc"]["grade_timeouts"]) == (1, 0)


def test_eval_decoding_keeps_a_special_think_end(think_special_model_dir):
    """`siri eval` decodes by the core's rule: with a tokenizer that marks </think> special, the answer after it
    survives both in the generated samples and in the budget curve's clipped responses. The tiny model is steered
    with transformers' ``sequence_bias`` to write a fixed response and end on the generation config's second EOS."""
    from siri_rl.evaluate import TransformersBackend, Unit
    from siri_rl.prompts import prompt_token_ids
    from siri_rl.reward import grade_response

    model = str(think_special_model_dir)
    tok = load_tokenizer(model)
    cfg = EvalConfig(model=model, out=Path("unused"), benchmarks=["aime24"], backend="transformers",
                     temperature=0.0, max_tokens=40, device="cpu", dtype="float32", grade_workers=1)
    backend = TransformersBackend(model, tok, cfg)
    body = tok.encode("2 + 2 = 4.\n</think>\n\n$\\boxed{4}$", add_special_tokens=False)
    script = body + [tok.convert_tokens_to_ids("<|EOT|>")]
    # a longer matching prefix gets a larger bias, so the script wins wherever a shorter prefix also matches
    backend.model.generation_config.sequence_bias = [[script[: i + 1], 100.0 + 10 * i] for i in range(len(script))]
    (comps,) = backend.generate([Unit("aime24", "p1", "4", prompt_token_ids("2+2?", tok), [0], 0)], seed=0)
    assert (comps[0].token_ids, comps[0].finish_reason) == (body, "stop")
    assert "</think>" in comps[0].text and grade_response(comps[0].text, "4").correct

    longer = _record(tok, "aime24", "p1", 0, "4", comps[0].text + " Done, that was easy.")
    (graded,) = _graded([longer])
    _, curve = budget_pass([graded], [len(body), graded["response_tokens"]], tok, grade=_graded)
    assert [p["acc"] for p in curve["aime24"]] == [100.0, 100.0]  # clipped right after the box: still correct


def test_budget_curve_on_real_correct_answers(hand_records, tok):
    longest = max(r["response_tokens"] for r in hand_records)
    # the "4" answer is 25 tokens: at 24 its \boxed{4} is complete, at 23 the closing brace is cut off
    budgets = [13, 23, 24, longest]
    slim, curve = budget_pass(hand_records, budgets, tok, grade=_graded)
    # the summary's records keep no text and no token ids (a paper-scale file holds gigabytes of them)
    assert [r["correct"] for r in slim] == [r["correct"] for r in hand_records]
    assert not any({"response", "token_ids", "gold"} & set(r) for r in slim)
    full = summarize_samples(hand_records)
    assert [p["acc"] for p in curve["aime24"]] == pytest.approx([0.0, 100 / 6, 50.0, 50.0], abs=1e-3)
    assert [p["acc"] for p in curve["amc"]] == pytest.approx([0.0, 0.0, 50.0, 50.0])
    for bench, pts in curve.items():
        assert [p["budget"] for p in pts] == budgets
        # at the largest budget nothing is clipped: the curve ends at the full evaluation
        assert pts[-1]["acc"] == pytest.approx(full[bench]["acc"])
        assert pts[-1]["length"] == pytest.approx(full[bench]["length"])
        mine = [r["response_tokens"] for r in hand_records if r["benchmark"] == bench]
        for p in pts:
            assert p["length"] == pytest.approx(sum(min(n, p["budget"]) for n in mine) / len(mine), abs=0.01)
    # samples without stored token ids (e.g. from another tool) are re-tokenized: same curve
    no_ids = [{k: v for k, v in r.items() if k != "token_ids"} for r in hand_records]
    assert budget_pass(iter(no_ids), budgets, tok, grade=_graded)[1] == curve


def test_budget_grading_agrees_with_the_length_capped_reward(hand_records, tok):
    """The budget curve counts a response correct at budget B exactly when the core's length-capping reward with
    cap B (§4.1) pays 1: its answer lies within the first B tokens. Each record is its own "benchmark" here, so
    the curve of :func:`budget_pass` (the code ``siri eval`` runs) shows each verdict as 100 or 0."""
    from siri_rl.reward import length_capped_reward

    budgets = [13, 23, 24]
    alone = [{**r, "benchmark": f"r{i}"} for i, r in enumerate(hand_records)]
    _, curve = budget_pass(alone, budgets, tok, grade=_graded)
    for i, r in enumerate(hand_records):
        for point, budget in zip(curve[f"r{i}"], budgets, strict=True):
            capped = length_capped_reward(r["token_ids"], r["gold"], budget, tok) == 1.0
            assert point["acc"] == (100.0 if capped else 0.0), (i, budget)
    # the rule has both outcomes here: answers cut off at 13 tokens and kept at 24
    verdicts = {p["acc"] for pts in curve.values() for p in pts}
    assert verdicts == {0.0, 100.0}


def test_resolve_budgets():
    assert resolve_budgets(None, 16384) == [2048, 4096, 8192, 16384]
    assert resolve_budgets([4096, 1000, 99999, 4096], 8192) == [1000, 4096, 8192]
    assert resolve_budgets(None, 16) == [2, 4, 8, 16]
    with pytest.raises(EvalError):
        resolve_budgets([0], 16)


def test_summary_markdown_table(hand_records):
    from siri_rl.evaluate import problem_table, summarize_average

    b = summarize_samples(hand_records)
    md = summary_markdown({"benchmarks": b, "average": summarize_average(problem_table(hand_records)), "meta": {}},
                          name="hand")
    assert "| Model | AIME24 Acc | AIME24 Len | AMC Acc | AMC Len | Avg Acc | Avg Len |" in md
    half = (b["aime24"]["acc_ci"][1] - b["aime24"]["acc_ci"][0]) / 2
    assert f"| hand | 50.0 ± {half:.1f} |" in md
    assert "| Benchmark | pass@1 | pass@2 | pass@3 | maj@1 |" not in md  # no maj@k without the grader's clustering
    assert "| Benchmark | pass@1 | pass@2 | pass@3 |" in md and "| AMC | 50.0 | 100.0 | – |" in md
    # an old summary (no intervals) still renders, without the ±
    old = {k: {kk: vv for kk, vv in v.items() if not kk.endswith(("_ci", "_se")) and "@" not in kk}
           for k, v in b.items()}
    assert "| hand | 50.0 | " in summary_markdown({"benchmarks": old, "meta": {}}, name="hand")


def test_summary_statistics_of_hand_records(hand_records):
    """pass@k, the bootstrap interval and the sampling standard error of two problems worked out by hand, and the
    same numbers whatever the order of the records."""
    import math

    a = summarize_samples(hand_records)["aime24"]
    # p1: 2 of 3 correct, p2: 1 of 3. pass@2 = mean(1 - C(1,2)/C(3,2), 1 - C(2,2)/C(3,2)) = (1 + 2/3) / 2
    assert a["pass@1"] == a["acc"] == pytest.approx(50.0)
    assert a["pass@2"] == pytest.approx(100 * (1 + 2 / 3) / 2, abs=1e-3) and a["pass@3"] == 100.0
    # resampling two problems gives means of {1/3, 1/2, 2/3}: the 95% interval spans the extremes
    assert a["acc_ci"] == pytest.approx([100 / 3, 200 / 3], abs=1e-3)
    # sqrt(sum p(1-p)/(n-1)) / P = sqrt(2 * (2/9) / 2) / 2
    assert a["acc_se"] == pytest.approx(100 * math.sqrt(2 / 9) / 2, abs=1e-3)
    lo, hi = a["length_ci"]
    assert lo <= a["length"] <= hi and a["length_se"] > 0
    shuffled = summarize_samples(list(reversed(hand_records)))
    assert shuffled["aime24"] == a and shuffled["amc"] == summarize_samples(hand_records)["amc"]


def test_maj_at_k_of_graded_responses(tok):
    """Real responses, graded by the pipeline: zero-padded integers (AIME) and 1/2 written three ways (MATH) vote
    together; ties go to the answer seen first (samples in sample_index order)."""
    from siri_rl.evaluate import summarize_majority
    from siri_rl.reward import is_equivalent

    def boxed(x):
        return f"<think>\nWorking.\n</think>\n\nSo $\\boxed{{{x}}}$."

    aime = ["3", "025", "25", "3", "0025", "7"]
    math = ["\\frac12", "\\frac{1}{3}", "0.5", "\\dfrac{1}{3}", "\\frac{1}{2}", "1/3"]
    recs = [_record(tok, "aime24", "p", i, "3", boxed(x)) for i, x in enumerate(aime)]
    recs += [_record(tok, "math500", "q", i, "\\frac{1}{3}", boxed(x)) for i, x in enumerate(math)]
    graded = _graded(recs)[::-1]  # file order does not matter, sample_index does
    assert [r["correct"] for r in graded[::-1]] == [True, False, False, True, False, False,
                                                     False, True, False, True, False, True]
    m = summarize_majority(graded, equivalent=is_equivalent)
    # AIME blocks of 2: [3, 025] right, [25, 3] tie -> 25 first, [0025, 7] wrong; of 4: 3 and 25 tie, 3 first;
    # of 6: 25 (three spellings) beats 3 (two votes)
    assert m["aime24"] == {"maj@1": pytest.approx(100 * 2 / 6, abs=1e-3), "maj@2": pytest.approx(100 / 3, abs=1e-3),
                           "maj@4": 100.0, "maj@6": 0.0, "maj_checks": 3}
    # MATH: 1/2 (3 spellings) and 1/3 (3 spellings, graded correct) alternate, 1/2 first: every block is a tie
    # that 1/2 wins
    assert m["math500"] == {"maj@1": 50.0, "maj@2": 0.0, "maj@4": 0.0, "maj@6": 0.0, "maj_checks": 2}


def test_breakdown_by_level_and_by_a_named_field(tok, benchmarks_dir, tmp_path):
    """MATH500 is broken down by its `level` by default; --group-by names any field of a benchmark file (AMC's
    `difficulty`), and a field no benchmark has is a one-line error that lists the fields there are."""
    from siri_rl.data import load_benchmark
    from siri_rl.evaluate import problem_fields, summarize_groups

    cfg = EvalConfig(model="unused", out=tmp_path, benchmarks=["math500", "amc", "aime25"], backend="transformers",
                     data_dir=str(benchmarks_dir), group_by=["difficulty"])
    fields, note = problem_fields(cfg)
    assert note is None and set(fields) == {"math500", "amc"}
    assert set(fields["math500"]) == {"level", "difficulty"} and set(fields["amc"]) == {"difficulty"}
    math = load_benchmark("math500", str(benchmarks_dir))
    by_level = {}
    for p in math:
        by_level.setdefault(p["level"], []).append(p)
    right = "<think>\nOk.\n</think>\n\n$\\boxed{ANSWER}$"
    recs = []
    # level 1: two problems, one always right; level 5: one problem, right once in two
    for pid, gold, texts in [(by_level[1][0]["id"], by_level[1][0]["answer"], [right, right]),
                             (by_level[1][1]["id"], by_level[1][1]["answer"], ["no", "no"]),
                             (by_level[5][0]["id"], by_level[5][0]["answer"], [right, "no"])]:
        for i, t in enumerate(texts):
            recs.append(_record(tok, "math500", pid, i, gold, t.replace("ANSWER", gold)))
    groups = summarize_groups(_graded(recs), fields)
    rows = groups["math500"]["level"]
    assert [(r["value"], r["n_problems"], r["acc"]) for r in rows] == [("1", 2, 50.0), ("5", 1, 50.0)]
    assert rows[0]["acc_ci"] == [0.0, 100.0] and rows[1]["length"] == pytest.approx(
        sum(r["response_tokens"] for r in recs[4:]) / 2)
    with pytest.raises(EvalError, match=r"--group-by nope: no problem of math500, amc has a field 'nope'; name a"):
        problem_fields(EvalConfig(model="unused", out=tmp_path, benchmarks=["math500", "amc"],
                                  backend="transformers", data_dir=str(benchmarks_dir), group_by=["nope"]))


def test_breakdown_of_a_benchmark_given_as_a_file(tmp_path):
    """A benchmark file is named by its stem in samples (``sets/toy-heldout.jsonl`` -> ``toy-heldout``); its
    --group-by breakdown must be keyed the same way, or summarize_groups finds no samples and the summary has no
    groups (the toy's per-difficulty columns come from this)."""
    from siri_rl.evaluate import problem_fields

    bench = tmp_path / "sets" / "toy-heldout.jsonl"
    bench.parent.mkdir()
    bench.write_text("".join(json.dumps({"id": f"p{i}", "problem": "Compute 1+3.", "answer": "4",
                                         "difficulty": 3 + i % 2}) + "\n" for i in range(4)))
    cfg = EvalConfig(model="unused", out=tmp_path, benchmarks=[str(bench)], backend="transformers",
                     group_by=["difficulty"])
    fields, _ = problem_fields(cfg)
    assert fields == {"toy-heldout": {"difficulty": {"p0": 3, "p1": 4, "p2": 3, "p3": 4}}}


def test_summary_files_are_replaced_atomically(tmp_path):
    """A write that fails part-way (here: the plot of an unplottable curve) leaves the previous file whole."""
    from siri_rl.evaluate import replace_atomically

    target = tmp_path / "summary.json"
    target.write_text("old")

    def half_then_fail(p):
        p.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replace_atomically(half_then_fail, target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    replace_atomically(lambda p: p.write_text("new"), target)
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_read_samples_drops_half_written_last_line(tmp_path):
    path = tmp_path / SAMPLES_FILE
    good = [{"benchmark": "amc", "problem_id": "1", "sample_index": i} for i in range(2)]
    text = "".join(json.dumps(r) + "\n" for r in good)
    path.write_text(text + json.dumps(good[0]) + "\n" + '{"benchmark": "amc", "problem_id": "1", "sam')
    assert read_samples(path) == good  # duplicate dropped, half line ignored
    assert path.read_text().endswith("sam")  # reading alone does not touch the file
    assert read_samples(path, repair=True) == good
    assert path.read_text() == text + json.dumps(good[0]) + "\n"
    path.write_text('{"benchmark": "amc"\n' + text)
    with pytest.raises(EvalError, match=r"samples.jsonl:1 is not valid JSON"):
        read_samples(path)


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(EvalError, match="unknown backend"):
        EvalConfig(model="m", out=tmp_path, backend="tgi")
    with pytest.raises(EvalError, match="--limit"):
        EvalConfig(model="m", out=tmp_path, limit=0)


# --- end to end on a tiny random Qwen2 -------------------------------------------------------------------------


def _cfg(model_dir, out, data_dir, **kw):
    args = dict(model=str(model_dir), out=out, benchmarks=["aime24", "math500"], n=2, max_tokens=8,
                backend="transformers", data_dir=str(data_dir), limit=2, batch_size=4, grade_workers=1,
                progress=False)
    return EvalConfig(**(args | kw))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_qwen2_dir, benchmarks_dir):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "tiny"
    summary = run_eval(_cfg(tiny_qwen2_dir, out, benchmarks_dir))
    return out, summary


def test_eval_writes_samples_summary_markdown_and_plot(tiny_run, tok, tiny_qwen2_dir, benchmarks_dir):
    from siri_rl.data import load_benchmark

    out, summary = tiny_run
    records = read_samples(out / SAMPLES_FILE)
    assert len(records) == 2 * 2 * 2
    assert {(r["benchmark"], r["sample_index"]) for r in records} == {(b, i) for b in ("aime24", "math500")
                                                                     for i in (0, 1)}
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["response_tokens"] == len(r["token_ids"]) <= 8
        assert r["finish_reason"] in ("stop", "length")
        assert (r["finish_reason"] == "length") == (r["response_tokens"] == 8)
        assert tok.eos_token_id not in r["token_ids"]
        assert r["response"] == tok.decode(r["token_ids"], skip_special_tokens=True)
        assert isinstance(r["correct"], bool) and r["grade_status"]
    b = summary["benchmarks"]
    assert list(b) == ["aime24", "math500"]
    for name, v in b.items():
        assert (v["n_problems"], v["n_samples"]) == (2, 4)
        mine = [r["response_tokens"] for r in records if r["benchmark"] == name]
        assert v["length"] == pytest.approx(sum(mine) / 4, abs=0.01)
        assert [p["budget"] for p in v["budgets"]] == [1, 2, 4, 8]
        assert v["budgets"][-1]["acc"] == v["acc"] and v["budgets"][-1]["length"] == v["length"]
        assert v["budgets"][-1]["acc_ci"] == v["acc_ci"] and v["budgets"][-1]["length_ci"] == v["length_ci"]
        assert v["pass@1"] == v["acc"] and v["maj@1"] == v["acc"] and {"pass@2", "maj@2", "maj_checks"} <= set(v)
        assert v["acc_ci"][0] <= v["acc"] <= v["acc_ci"][1] and v["length_ci"][0] <= v["length"] <= v["length_ci"][1]
        assert v["acc_se"] is not None and v["length_se"] is not None
        assert summary["problems"][name]["n"] == [2, 2] and sum(summary["problems"][name]["tokens"]) == sum(mine)
    levels = [str(p["level"]) for p in load_benchmark("math500", str(benchmarks_dir))[:2]]
    assert sorted({g["value"] for g in b["math500"]["groups"]["level"]}) == sorted(set(levels))
    assert "groups" not in b["aime24"]
    avg = summary["average"]
    assert avg["benchmarks"] == ["aime24", "math500"] and [p["budget"] for p in avg["budgets"]] == [1, 2, 4, 8]
    assert avg["acc"] == pytest.approx((b["aime24"]["acc"] + b["math500"]["acc"]) / 2)
    meta = summary["meta"]
    assert meta["model"] == str(tiny_qwen2_dir)
    assert meta["config"]["n"] == 2 and meta["config"]["backend"] == "transformers"
    assert "siri_rl_git_revision" in meta and meta["generation"]["new_samples"] == 8
    assert json.loads((out / SUMMARY_JSON).read_text())["benchmarks"] == b
    md = (out / SUMMARY_MD).read_text()
    assert "| AIME24 | " in md and "| Budget | AIME24 | MATH500 |" in md
    assert (out / BUDGET_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_rerun_skips_finished_and_refuses_other_args(tiny_run, tiny_qwen2_dir, benchmarks_dir):
    out, first = tiny_run
    before = (out / SAMPLES_FILE).read_bytes()
    again = run_eval(_cfg(tiny_qwen2_dir, out, benchmarks_dir))
    assert again["meta"]["generation"]["new_samples"] == 0
    assert (out / SAMPLES_FILE).read_bytes() == before
    assert again["benchmarks"] == first["benchmarks"]
    with pytest.raises(EvalError, match=r"n: 2 -> 3.*new --out"):
        run_eval(_cfg(tiny_qwen2_dir, out, benchmarks_dir, n=3))
    assert json.loads((out / ARGS_FILE).read_text())["n"] == 2


def test_report_only_recomputes_old_results_without_the_model(tiny_run, r1_tokenizer_dir, tmp_path):
    """`siri eval --report-only DIR` rewrites an old results directory's summaries from its samples.jsonl: the
    new statistics appear and equal those of a fresh run on the same samples; only a tokenizer is loaded."""
    import shutil

    from typer.testing import CliRunner

    from siri_rl.cli import app

    out, _ = tiny_run
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    # the directory's summary as it is now (another test may have rerun eval there: new_samples 0)
    summary = json.loads((copy / SUMMARY_JSON).read_text())
    old = json.loads(json.dumps(summary))
    # as an older siri-rl wrote it: no intervals, pass@k, maj@k, breakdowns, average or per-problem counts
    old["benchmarks"] = {k: {kk: vv for kk, vv in v.items() if kk in ("acc", "length", "n_problems", "n_samples",
                                                                      "budgets")}
                         for k, v in old["benchmarks"].items()}
    del old["average"], old["problems"]
    (copy / SUMMARY_JSON).write_text(json.dumps(old))
    args = json.loads((copy / ARGS_FILE).read_text())
    (copy / ARGS_FILE).write_text(json.dumps({**args, "model": str(tmp_path / "deleted-model")}))
    before = (copy / SAMPLES_FILE).read_bytes()

    res = CliRunner().invoke(app, ["eval", "--report-only", str(copy), "--grade-workers", "1"])
    assert res.exit_code == 2 and "cannot load the tokenizer" in res.output.replace("\n", "") and "--model" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["eval", "--report-only", str(copy), "--model", str(r1_tokenizer_dir),
                                   "--grade-workers", "1"])
    assert res.exit_code == 0, res.output
    new = json.loads((copy / SUMMARY_JSON).read_text())
    assert new["benchmarks"] == summary["benchmarks"]  # seeded: the same samples give the same intervals
    assert new["average"] == summary["average"] and new["problems"] == summary["problems"]
    assert new["meta"]["generation"] == summary["meta"]["generation"]  # kept from the old summary
    assert new["meta"]["report_only"] == {"tokenizer": str(r1_tokenizer_dir)}
    assert (copy / SAMPLES_FILE).read_bytes() == before
    assert " ± " in (copy / SUMMARY_MD).read_text() and "rewrote" in res.output

    res = CliRunner().invoke(app, ["eval", "--report-only", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "is not a siri eval results directory" in res.output.replace("\n", "")
    res = CliRunner().invoke(app, ["eval"])
    assert res.exit_code == 2 and "needs --model and --out" in res.output.replace("\n", "")


def test_resume_regenerates_the_same_batches(tiny_run, tiny_qwen2_dir, benchmarks_dir, tmp_path):
    """Batches are planned over the whole run and seeded per batch: losing the last batch and resuming gives
    back the very same samples."""
    import shutil

    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    full = (copy / SAMPLES_FILE).read_text().splitlines(keepends=True)
    (copy / SAMPLES_FILE).write_text("".join(full[:4]))  # batch 2 of 2 (4 rows each) lost
    summary = run_eval(_cfg(tiny_qwen2_dir, copy, benchmarks_dir))
    assert summary["meta"]["generation"]["new_samples"] == 4
    assert read_samples(copy / SAMPLES_FILE) == read_samples(out / SAMPLES_FILE)


def test_resume_of_a_batch_cut_part_way_gives_the_same_samples(tiny_run, tiny_qwen2_dir, benchmarks_dir, tmp_path):
    """A transformers batch has one random stream: when only some of its rows reached the file, the batch is
    generated again in full and only the missing rows are written, so they equal an uninterrupted run's."""
    import shutil

    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    full = (copy / SAMPLES_FILE).read_text().splitlines(keepends=True)
    (copy / SAMPLES_FILE).write_text("".join(full[:5]))  # batch 2 of 2 cut after its first row
    summary = run_eval(_cfg(tiny_qwen2_dir, copy, benchmarks_dir))
    assert summary["meta"]["generation"]["new_samples"] == 3
    assert read_samples(copy / SAMPLES_FILE) == read_samples(out / SAMPLES_FILE)


def test_eval_resumes_after_a_real_kill(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    """Kill `siri eval` (SIGKILL) after some samples are written; the rerun loses and duplicates nothing."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "siri_rl.cli", "eval", "--model", str(tiny_qwen2_dir), "--out", str(out),
           "--benchmarks", "amc,aime24", "--n", "4", "--max-tokens", "10", "--backend", "transformers",
           "--data-dir", str(benchmarks_dir), "--limit", "3", "--batch-size", "2", "--grade-workers", "1",
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    total = 2 * 3 * 4
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = out / SAMPLES_FILE
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if samples.exists() and samples.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"eval ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = read_samples(samples)
    assert 4 <= len(before) < total
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = samples.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    keys = [(r["benchmark"], r["problem_id"], r["sample_index"]) for r in records]
    assert len(keys) == len(set(keys)) == total  # nothing lost, nothing duplicated
    assert {(b, i) for b, _, i in keys} == {(b, i) for b in ("amc", "aime24") for i in range(4)}
    assert records[: len(before)] == before  # finished samples were kept, not regenerated
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert summary["benchmarks"]["amc"]["n_samples"] == summary["benchmarks"]["aime24"]["n_samples"] == 12
    assert summary["meta"]["generation"]["new_samples"] == total - len(before)


# --- data-parallel engines: splitting problems between engines and merging their samples ------------------------


def _units(sizes):
    from siri_rl.evaluate import Unit

    return [Unit("amc", f"p{i}", "1", [1, 2, i], list(range(n)), i) for i, n in enumerate(sizes)]


def test_split_units_keeps_problems_whole_and_balances_samples():
    from siri_rl.evaluate.data_parallel import split_units

    units = _units([64, 64, 64, 10, 64, 3, 30])  # a resumed call: some problems need fewer samples
    for engines in (1, 2, 3, 4):
        shards = split_units(units, engines)
        assert sorted(i for s in shards for i in s) == list(range(len(units)))  # each problem once
        load = [sum(len(units[i].sample_indices) for i in s) for s in shards]
        assert max(load) - min(load) <= 64  # no engine waits on more than one extra problem
        assert shards == split_units(units, engines) and all(s == sorted(s) for s in shards)
    # most samples first onto the least loaded engine: 64+64+30 = 158 vs 64+64+10+3 = 141
    assert split_units(units, 2) == [[0, 2, 6], [1, 3, 4, 5]]
    assert split_units(_units([5]), 3) == [[0], [], []]
    with pytest.raises(ValueError):
        split_units(units, 0)


def test_merge_completions_restores_the_call_order():
    from siri_rl.evaluate import Completion
    from siri_rl.evaluate.data_parallel import merge_completions, split_units

    units = _units([2, 1, 3, 1])
    shards = split_units(units, 2)

    def engine(shard):  # what an engine returns for its share: one completion per sample, tagged with its unit
        return [[Completion([i], f"{units[i].problem_id}/{j}", "stop") for j in units[i].sample_indices]
                for i in shard]

    merged = merge_completions(units, shards, [engine(s) for s in shards])
    assert [[c.text for c in comps] for comps in merged] == [["p0/0", "p0/1"], ["p1/0"], ["p2/0", "p2/1", "p2/2"],
                                                             ["p3/0"]]
    with pytest.raises(EvalError, match=r"returned 1 samples of amc/p\d, [23] were asked for"):
        merge_completions(units, shards, [[c[:1] for c in engine(s)] for s in shards])
    with pytest.raises(EvalError, match="returned 1 problems for the 2"):
        merge_completions(units, shards, [engine(s)[:1] for s in shards])
    with pytest.raises(EvalError, match="came back from two engines"):
        merge_completions(units, [shards[0], shards[0]], [engine(shards[0])] * 2)
    with pytest.raises(EvalError, match="no engine returned amc/p"):
        merge_completions(units, [shards[0]], [engine(shards[0])])


def test_engine_devices():
    from siri_rl.evaluate.data_parallel import engine_devices

    assert engine_devices(2, 2, "4,5,6,7", 8) == ["4,5", "6,7"]  # within this process's CUDA_VISIBLE_DEVICES
    assert engine_devices(4, 1, None, 4) == ["0", "1", "2", "3"]
    assert engine_devices(2, 1, None, 0) == [None, None]  # CPU build: no GPUs to split
    with pytest.raises(EvalError, match=r"--data-parallel-size 3 x --tp 2 needs 6 GPUs, 4 visible"):
        engine_devices(3, 2, None, 4)
    with pytest.raises(EvalError, match="needs --backend vllm"):
        EvalConfig(model="m", out=Path("unused"), backend="transformers", data_parallel_size=2)
    with pytest.raises(EvalError, match="positive number of engines"):
        EvalConfig(model="m", out=Path("unused"), data_parallel_size=0)


@pytest.mark.slow  # two fresh interpreters import torch and transformers: about a minute on 2 CPU cores
def test_engine_pool_runs_two_real_engine_processes(tiny_qwen2_dir, tok):
    """Two spawned engine processes (the transformers backend on the tiny Qwen2: vLLM engines take minutes to
    start) each generate their share of a call; the merged samples equal those of one in-process engine given the
    same shares, and a failing engine is one EvalError that names it."""
    from siri_rl.evaluate import TransformersBackend, Unit
    from siri_rl.evaluate.data_parallel import EnginePool, split_units
    from siri_rl.prompts import prompt_token_ids

    cfg = EvalConfig(model=str(tiny_qwen2_dir), out=Path("unused"), benchmarks=["amc"], backend="transformers",
                     temperature=0.0, max_tokens=6, device="cpu", dtype="float32")
    units = [Unit("amc", f"p{i}", "1", prompt_token_ids(q, tok), list(range(n)), 0)
             for i, (q, n) in enumerate([("1+1?", 2), ("2+3?", 1), ("What is 7*6?", 2)])]
    pool = EnginePool(str(tiny_qwen2_dir), None, cfg, engines=2, devices=[None, None])
    try:
        merged = pool.generate(units, seed=0)
        assert all(p.is_alive() for p in pool.procs)  # engines stay up between calls
    finally:
        pool.close()
    assert not any(p.is_alive() for p in pool.procs)
    local = TransformersBackend(str(tiny_qwen2_dir), tok, cfg)
    expect = [None] * len(units)
    for shard in split_units(units, 2):
        for i, comps in zip(shard, local.generate([units[i] for i in shard], 0), strict=True):
            expect[i] = comps
    assert [[(c.token_ids, c.finish_reason) for c in comps] for comps in merged] == \
        [[(c.token_ids, c.finish_reason) for c in comps] for comps in expect]
    assert [len(c) for c in merged] == [2, 1, 2]
    with pytest.raises(EvalError, match=r"engine 0 failed to start: .*"):
        EnginePool(str(tiny_qwen2_dir / "missing"), None, cfg, engines=1, devices=[None])
