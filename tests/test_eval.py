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

from siri_rl.data import load_tokenizer
from siri_rl.evaluate import (
    ARGS_FILE,
    BUDGET_PNG,
    SAMPLES_FILE,
    SUMMARY_JSON,
    SUMMARY_MD,
    EvalConfig,
    EvalError,
    budget_curve,
    clip_to_budget,
    grade_records,
    read_samples,
    resolve_budgets,
    run_eval,
    summarize_samples,
    summary_markdown,
)
from siri_rl.metrics import delta_acc_cr

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
    from siri_rl.data import prompt_token_ids
    from siri_rl.evaluate import TransformersBackend, Unit
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
    curve = budget_curve([graded], [len(body), graded["response_tokens"]], tok, grade=_graded)
    assert [p["acc"] for p in curve["aime24"]] == [100.0, 100.0]  # clipped right after the box: still correct


def test_clip_to_budget(hand_records, tok):
    r = hand_records[0]
    b = r["response_tokens"] - 3
    (clipped,) = clip_to_budget([r], b, lambda ids: tok.decode(ids, skip_special_tokens=True))
    assert clipped["response_tokens"] == b and clipped["finish_reason"] == "length"
    assert clipped["correct"] is None and clipped["token_ids"] == r["token_ids"][:b]
    assert r["response"].startswith(clipped["response"]) and len(clipped["response"]) < len(r["response"])
    (kept,) = clip_to_budget([r], r["response_tokens"], lambda ids: "unused")
    assert kept is r


def test_budget_curve_on_real_correct_answers(hand_records, tok):
    longest = max(r["response_tokens"] for r in hand_records)
    # the "4" answer is 25 tokens: at 24 its \boxed{4} is complete, at 23 the closing brace is cut off
    budgets = [13, 23, 24, longest]
    curve = budget_curve(hand_records, budgets, tok, grade=_graded)
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
    assert budget_curve(iter(no_ids), budgets, tok, grade=_graded) == curve


def test_budget_grading_agrees_with_the_length_capped_reward(hand_records, tok):
    """Clipping at B and grading is the core's length-capping reward with cap B (§4.1)."""
    from siri_rl.reward import length_capped_reward

    for budget in (13, 23, 24):
        clipped = _graded([dict(r) for r in clip_to_budget(hand_records, budget, tok.decode)
                           if r["correct"] is None])
        by_key = {(r["problem_id"], r["sample_index"]): r["correct"] for r in clipped}
        for r in hand_records:
            mine = by_key.get((r["problem_id"], r["sample_index"]), r["correct"])
            assert mine == (length_capped_reward(r["token_ids"], r["gold"], budget, tok) == 1.0)


def test_resolve_budgets():
    assert resolve_budgets(None, 16384) == [2048, 4096, 8192, 16384]
    assert resolve_budgets([4096, 1000, 99999, 4096], 8192) == [1000, 4096, 8192]
    assert resolve_budgets(None, 16) == [2, 4, 8, 16]
    with pytest.raises(EvalError):
        resolve_budgets([0], 16)


def test_summary_markdown_table(hand_records):
    md = summary_markdown({"benchmarks": summarize_samples(hand_records), "meta": {}}, name="hand")
    assert "| Model | AIME24 Acc | AIME24 Len | AMC Acc | AMC Len | Avg Acc | Avg Len |" in md
    assert "| hand | 50.0 |" in md


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


def test_eval_writes_samples_summary_markdown_and_plot(tiny_run, tok, tiny_qwen2_dir):
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


def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here; this checks the message shown without it")
    except ImportError:
        pass
    with pytest.raises(EvalError, match=r"needs vLLM: pip install 'siri-rl\[vllm\]'"):
        run_eval(_cfg(tiny_qwen2_dir, tmp_path / "v", benchmarks_dir, backend="vllm"))


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
