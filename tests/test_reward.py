"""Answer extraction, math-verify equivalence with bounded time, the length-capped reward, the grader cases."""

import json
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from siri_rl.reward import (
    Grade,
    decode_response,
    extract_answer,
    grade_batch,
    grade_response,
    grader_stats,
    is_equivalent,
    length_capped_reward,
    verify_equivalence,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think> so \\boxed{42}", "42"),
        ("<think>\\boxed{1}</think> final \\boxed{2}", "2"),  # only after </think>
        ("</think> \\boxed{\\frac{1}{2}} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # last box, escaped braces
        ("</think> \\boxed{\\frac{a}{b^{2}}}.", "\\frac{a}{b^{2}}"),  # nested braces
        ("</think> so it is \\boxed 5.", "5"),
        ("</think> \\fbox{7}", "7"),
        ("</think> $\\boxed{ 12 }$", "12"),
        ("</think> \\boxed{5", None),  # truncated box
        ("thinking forever \\boxed{5}", None),  # no </think>: thinking never ended
        ("</think> no box here", None),
        ("</think> \\boxed{}", None),
        ("", None),
        (None, None),
        ("</think> \\boxeddots", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_without_think_tags():
    assert extract_answer("plain \\boxed{3}", require_think_end=False) == "3"
    assert extract_answer("a</think>b</think> \\boxed{4}") == "4"


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("025", "25", True),
        ("25", "025", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac12", "\\frac{1}{2}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("[0,1)", "[0,1]", False),
        ("\\text{Evelyn}", "\\text{Evelyn}", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("90^\\circ", "90", True),
        ("7", "8", False),
        (None, "8", False),
        ("", "8", False),
    ],
)
def test_is_equivalent(pred, gold, expected):
    assert is_equivalent(pred, gold) is expected


def test_pathological_answers_are_bounded_and_zero():
    nasty = [
        "9^{9^{9^{9^{9}}}}",
        "\\frac{" * 300 + "1" + "}" * 300,
        "(" * 2000 + "1" + ")" * 2000,
        "x" * 25_000,
        "\\sqrt{" * 100 + "2" + "}" * 100,
    ]
    for pred in nasty:
        start = time.monotonic()
        correct, status = verify_equivalence(pred, "1", timeout=3.0)
        assert time.monotonic() - start < 3.0 + 12.0  # timeout + a possible one-off worker start
        assert correct is False, (pred[:40], status)


def test_hard_timeout_kills_and_recovers():
    assert is_equivalent("\\frac{2}{4}", "0.5")  # a warm worker: its start-up grace is spent
    before = grader_stats().get("restarts", 0)
    slow = "+".join(f"x^{{{i}}}" for i in range(1500))  # math-verify needs about a second on this
    start = time.monotonic()
    correct, status = verify_equivalence(slow, "1", timeout=0.3)
    assert (correct, status) == (False, "timeout")
    assert time.monotonic() - start < 0.9  # killed from outside, not waited for
    assert grader_stats()["restarts"] == before + 1
    assert is_equivalent("\\frac{3}{6}", "0.5")  # a fresh worker takes over


def test_math_verify_alarm_is_a_timeout_and_never_cached():
    """math-verify catches its own alarm and answers False (grader.py:875-880): that is a timeout, not a graded
    "incorrect", and asking again must run math-verify again (no memo, no cached parse)."""
    tower = "9^{9^{9^{9^{9}}}}"  # sympy tries to evaluate it: the 1 s alarm of timeout=5.0 always fires
    before = grader_stats()
    for _ in range(2):
        assert verify_equivalence(tower, "1") == (False, "timeout")
    after = grader_stats()
    assert after.get("timeout", 0) - before.get("timeout", 0) == 2
    assert after.get("cached", 0) == before.get("cached", 0)
    assert after.get("restarts", 0) == before.get("restarts", 0)  # math-verify's alarm, not the outside kill
    assert grade_response(f"</think> \\boxed{{{tower}}}", "1").status == "timeout"


def test_gold_whose_parse_timed_out_is_not_remembered_as_unparsable():
    """A gold answer that math-verify could not parse within a tiny budget (as under load) is a timeout; with a
    budget it fits in, the same worker parses it and grades against it (an empty parse is never cached)."""
    # math-verify parses it in ~2.5 s on a 2-core CPU (200 terms took 1.3 s, close enough to the 1 s alarm below
    # that an idle machine sometimes parsed it in time and the first assertion failed)
    poly = "$" + "+".join(f"x^{{{i}}}" for i in range(400)) + "$"
    # raw_text: no fast path for identical strings, so math-verify really parses and compares
    assert verify_equivalence(poly, poly, raw_text=True, timeout=3.0) == (False, "timeout")  # a 1 s alarm
    assert verify_equivalence(poly, poly, raw_text=True, timeout=40.0) == (True, "ok")  # a 13 s alarm


def test_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(is_equivalent("\\frac{3}{6}", "0.5")))
    thread.start()
    thread.join(60)
    assert results == [True]


def _grade_in_child(pair):
    return is_equivalent(*pair)


def test_works_in_worker_processes():
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(_grade_in_child, [("\\frac{1}{4}", "0.25"), ("3", "4")])) == [True, False]


def test_grade_batch_keeps_order_and_statuses():
    texts = ["</think> \\boxed{4}", "no answer", "</think> \\boxed{\\frac{6}{3}}", "</think> \\boxed{5}"] * 5
    golds = ["4", "4", "2", "4"] * 5
    grades = grade_batch(texts, golds, workers=2)
    assert [g.correct for g in grades] == [True, False, True, False] * 5
    assert grades[1] == Grade(None, False, "no_answer")
    assert grade_response("</think> \\boxed{4}", "4").answer == "4"
    with pytest.raises(ValueError, match="2 responses but 1 gold"):
        grade_batch(["a", "b"], ["1"])


def test_length_capped_reward_with_real_tokenizer(r1_tokenizer):
    response = "Let me add: 2 + 2 = 4. Wait, let me check: yes, 4.\n</think>\n\nThe answer is \\boxed{4}."
    ids = r1_tokenizer(response, add_special_tokens=False)["input_ids"] + [r1_tokenizer.eos_token_id]
    assert length_capped_reward(ids, "4", max_len=len(ids), tokenizer=r1_tokenizer) == 1.0
    assert length_capped_reward(ids, "5", max_len=len(ids), tokenizer=r1_tokenizer) == 0.0
    # Cut before the box closes: no answer in the first L tokens, reward 0 even though the full text is right.
    assert length_capped_reward(ids, "4", max_len=len(ids) - 4, tokenizer=r1_tokenizer) == 0.0
    # Cut inside the thinking: no </think>, no answer.
    assert length_capped_reward(ids, "4", max_len=5, tokenizer=r1_tokenizer) == 0.0
    assert length_capped_reward(ids, "4", max_len=0, tokenizer=r1_tokenizer) == 0.0


def test_decode_response_keeps_think_end_even_when_special(think_special_model_dir, r1_tokenizer):
    """One decoding rule: special tokens go (EOS), ``</think>`` stays even where the tokenizer marks it special."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(think_special_model_dir)
    text = "2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}."
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == text.replace("</think>", "")  # the answer is gone
    assert decode_response(tok, ids) == decode_response(tok, torch.tensor(ids)) == text
    assert length_capped_reward(ids, "4", max_len=len(ids), tokenizer=tok) == 1.0
    # R1-distill's own tokenizer: </think> (151649) is an added token that is not special; there the rule is
    # exactly skip_special_tokens=True.
    assert r1_tokenizer.convert_tokens_to_ids("</think>") == 151649
    assert not r1_tokenizer.added_tokens_decoder[151649].special
    r1_ids = r1_tokenizer.encode(text, add_special_tokens=False) + [r1_tokenizer.eos_token_id]
    assert decode_response(r1_tokenizer, r1_ids) == r1_tokenizer.decode(r1_ids, skip_special_tokens=True) == text


def _grader_case_prediction(row):
    """Run one shared grader case through our API the way its source harness ran it."""
    harness, kwargs = row["harness"], row.get("harness_kwargs") or {}
    if harness.startswith("compare_strings") or harness.startswith("verify(parse"):
        return is_equivalent(row["pred"], row["gold"], raw_text=True, **kwargs)
    if harness.startswith("open_r1"):  # pred is a whole completion; gold is LaTeX
        return is_equivalent(row["pred"], row["gold"], raw_text=True)
    # verl / deepscaler: pred and gold are final answers (DeepScaleR also accepts a list of golds)
    golds = row["gold"] if isinstance(row["gold"], list) else [row["gold"]]
    return any(is_equivalent(row["pred"], gold) for gold in golds)


def test_grader_cases_agreement(shared_dir):
    path = shared_dir / "data" / "grader_cases.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not found")
    rows = [json.loads(line) for line in path.open()]
    predictions = [_grader_case_prediction(row) for row in rows]
    mismatches = [
        f"{row['source']}: pred={row['pred'][:60]!r} gold={str(row['gold'])[:40]!r} expected={row['expected']}"
        for row, got in zip(rows, predictions)
        if got != row["expected"]
    ]
    agreement = 1 - len(mismatches) / len(rows)
    assert agreement >= 0.99, f"agreement {agreement:.3f}; mismatches:\n" + "\n".join(mismatches)
