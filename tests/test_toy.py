"""The toy task, tokenizer and base-model builder (fast), and the toy pipeline end to end (slow)."""

from __future__ import annotations

import json
import random
import re

import pytest

from siri_rl.reward import length_capped_reward
from siri_rl.toy.task import (
    CHECK_PHRASES,
    GUESS_PHRASE,
    SEARCH_BASE,
    SEARCH_F,
    SEARCH_FUNCS,
    SearchProblem,
    ToyProblem,
    anchor_tries,
    balanced_problems,
    make_problems,
    make_search_trace,
    make_trace,
    search_apply,
    search_try,
    shortest_search_trace,
    shortest_trace,
)
from siri_rl.toy.tokenizer import build_toy_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def test_problems_mix_difficulties_and_are_deterministic():
    a, b = make_problems(400, seed=3), make_problems(400, seed=3)
    assert a == b and a != make_problems(400, seed=4)
    assert {p.difficulty for p in a} == set(range(3, 11))
    assert all(int(p.answer) == p.start + p.step * p.count for p in a)
    assert a[0].problem == f"Compute {a[0].start}+{a[0].count}." and a[0].step == 1
    held_out = balanced_problems(5, seed=9)
    assert [p.difficulty for p in held_out] == [k for k in range(3, 11) for _ in range(5)]


def _boxed(text: str) -> str:
    return text.rsplit("\\boxed{", 1)[1].rstrip("}")


def test_traces_round_trip_and_are_graded_by_their_last_pass(tok):
    rng = random.Random(0)
    n_checks, rewards = [], []
    for p in make_problems(400, seed=1):
        text = make_trace(p, rng, guess_prob=0.3)
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text  # exact decode: the reward must see the text the model wrote
        reward = length_capped_reward(ids, p.answer, len(ids), tok)
        assert reward == float(_boxed(text) == p.answer)
        assert length_capped_reward(ids, p.answer, len(ids) - 2, tok) == 0.0  # cut inside \boxed{} -> 0
        n_checks.append(sum(text.count(c) for c in CHECK_PHRASES))
        rewards.append(reward)
    # the supervised traces are imperfect (uncorrected slips, unverified guesses): the base model copies that
    assert 0.55 < sum(rewards) / len(rewards) < 0.75
    assert set(n_checks) == {0, 1, 2, 3}


def test_only_a_recount_corrects_a_slip_and_recounts_of_a_clean_pass_add_nothing(tok):
    rng = random.Random(5)
    p = ToyProblem("x", 7, 1, 5)
    slipped = [make_trace(p, rng, slip_prob=1.0) for _ in range(60)]
    for text in slipped:
        assert text.split("\n")[4] in ("5:11", "5:13")  # the slip: the first pass's last line is off by one
        checked = any(c in text for c in CHECK_PHRASES)
        assert (_boxed(text) == p.answer) == checked
    assert 10 < sum(any(c in t for c in CHECK_PHRASES) for t in slipped) < 50  # checks by habit, not by need
    clean = [make_trace(p, rng, slip_prob=0.0) for _ in range(60)]
    assert all(_boxed(t) == p.answer for t in clean) and any("wait" in t for t in clean)
    # a recount can slip too (recount_slip_prob): then a check after a clean pass turns it wrong
    overthought = [make_trace(p, rng, slip_prob=0.0, check_prob=1.0, recount_slip_prob=1.0) for _ in range(20)]
    assert all(_boxed(t) != p.answer for t in overthought)


def test_step_checks_re_read_each_line_and_change_no_answer(tok):
    # step_check_prob: after each line, a check phrase and the same line again -- redundancy that grows with the
    # count (a 10-step problem carries ~10 re-reads, a 3-step one ~3), never a different answer
    rng = random.Random(2)
    p = ToyProblem("x", 8, 1, 6)
    always = [make_trace(p, rng, check_prob=0.0, slip_prob=0.0, step_check_prob=1.0) for _ in range(20)]
    for text in always:
        lines = text.split("</think>")[0].splitlines()
        assert [lines[i] for i in range(0, len(lines), 3)] == [f"{i}:{8 + i}" for i in range(1, 7)]
        assert all(lines[i] in CHECK_PHRASES and lines[i + 1] == lines[i - 1] for i in range(1, len(lines), 3))
        assert _boxed(text) == p.answer
    assert all(any(c in text for text in always) for c in CHECK_PHRASES)  # both phrases are drawn
    sometimes = [make_trace(p, rng, check_prob=0.0, slip_prob=0.0, step_check_prob=0.5) for _ in range(200)]
    counts = [sum(t.count(c) for c in CHECK_PHRASES) for t in sometimes]
    assert set(counts) <= set(range(7)) and 2.5 < sum(counts) / len(counts) < 3.5
    assert all(_boxed(t) == p.answer for t in sometimes)
    lengths = [len(tok(t).input_ids) for t in sometimes]
    assert min(lengths) < len(tok(shortest_trace(p)).input_ids) + 20 < max(lengths)


def test_shipped_traces_are_wrong_often_and_verbose(tok):
    # configs/toy-count.yaml's supervised traces: about half end wrong (the base model copies that), and the
    # correct ones carry recounts to compress (the toy's aims: base accuracy 35-75%, room to shorten by >= 40%)
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_spec

    spec = toy_spec(load_config(files("siri_rl") / "configs" / "toy-count.yaml"))
    assert spec.task == "count"
    rng = random.Random(0)
    problems = make_problems(1000, seed=1)
    texts = [spec.trace(p, rng) for p in problems]  # what build_toy_base trains on
    accuracy = sum(_boxed(t) == p.answer for t, p in zip(texts, problems)) / len(texts)
    mean_len = sum(len(tok(t).input_ids) for t in texts) / len(texts)
    shortest = sum(len(tok(shortest_trace(p)).input_ids) for p in problems) / len(problems)
    assert 0.4 < accuracy < 0.65 and mean_len > 1.6 * shortest


def test_hard_problems_do_not_fit_l_min(tok):
    # The point of the mixed task: with toy-count.yaml's caps the hardest sums' shortest correct trace exceeds L_min.
    from importlib.resources import files

    from siri_rl.config import load_config

    cfg = load_config(files("siri_rl") / "configs" / "toy-count.yaml")
    def shortest(start, step, k):
        return len(tok(shortest_trace(ToyProblem("x", start, step, k))).input_ids)

    assert min(shortest(1, 1, k) for k in (8, 9, 10)) > cfg.schedule.l_min  # never fits, whatever the start
    assert max(shortest(9, 1, k) for k in (3, 4, 5)) < cfg.schedule.l_min  # always fits
    # L_max holds the base model's most verbose trace (a pass and three recounts of the hardest problem), so a
    # constant L_max puts no pressure on length (the toy-constant comparison)
    answer = len(tok("</think>\n\\boxed{19}").input_ids)
    one_pass = shortest(9, 1, 10) - answer
    most_verbose = 4 * one_pass + 3 * len(tok("wait, let me check:\n").input_ids) + answer + 1  # + EOS
    assert most_verbose <= cfg.schedule.l_max


def test_chat_template_matches_r1_format(tok):
    from siri_rl.prompts import build_prompt

    prompt = build_prompt("Compute 1+2+3.", tok)
    assert prompt.endswith("<|assistant|><think>\n") and "\\boxed{}" in prompt
    assert tok.unk_token_id not in tok(prompt, add_special_tokens=False).input_ids


def test_base_model_build_is_cached_and_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from siri_rl.toy.model import ToyBaseSpec, build_toy_base, ensure_toy_base

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    spec = ToyBaseSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, sft_steps=3,
                       sft_batch_size=4, max_terms=4)
    path = ensure_toy_base(spec, progress=False)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_toy_base(spec, progress=False) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = build_toy_base(spec, tmp_path / "again", progress=False)
    a, b = load_file(path / "model.safetensors"), load_file(other / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert json.loads((path / "toy_spec.json").read_text())["sft_steps"] == 3


@pytest.mark.slow
def test_toy_quick_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from siri_rl.cli import app

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-c", "toy-quick", "-o", str(run)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert all(r["completion_len_max"] <= r["max_len"] for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    names = [r["name"] for r in summary["results"]]
    assert names == ["base", "cycle1-compressed", "cycle1-expanded", "final"]
    assert (run / "dynamics.png").stat().st_size > 10_000 and (run / "summary.md").exists()


def test_guesses_are_premature_answers_unless_a_count_verifies_them(tok):
    rng = random.Random(2)
    p = ToyProblem("x", 4, 1, 9)
    unverified = [make_trace(p, rng, guess_prob=1.0, verify_prob=0.0) for _ in range(50)]
    assert all(t.startswith(GUESS_PHRASE) and t.count("\n") == 2 for t in unverified)  # no counting at all
    answers = {int(_boxed(t)) for t in unverified}
    assert answers == set(range(11, 16))  # within +-2: right 1 time in 5
    verified = [make_trace(p, rng, guess_prob=1.0, verify_prob=1.0) for _ in range(20)]
    assert all(t.startswith(GUESS_PHRASE) and "wait, let me check:" in t and _boxed(t) == p.answer for t in verified)
    assert not any(make_trace(p, rng).startswith(GUESS_PHRASE) for _ in range(50))  # off by default


def test_toy_evaluates_with_siri_eval(tmp_path, monkeypatch):
    """The toy's table comes from `siri eval`'s code: the held-out problems become a benchmark file, each model a
    results directory RUN/eval/<name>/ (resumable, readable by `siri compare`), broken down by difficulty."""
    from pathlib import Path

    from typer.testing import CliRunner

    from siri_rl.cli import app
    from siri_rl.config import load_config
    from siri_rl.toy import toy_model_path
    from siri_rl.toy.run import evaluate_run, render_summary

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    cfg = load_config(Path(__file__).parents[1] / "configs" / "toy-quick.yaml",
                      ["toy.base.sft_steps=3", "toy.eval.per_difficulty=2", "toy.eval.max_len=16"])
    run = tmp_path / "run"
    run.mkdir()
    [base] = evaluate_run(cfg, run, toy_model_path(cfg))  # no checkpoints yet: the base model alone
    heldout = [json.loads(line) for line in (run / "eval" / "toy-heldout.jsonl").read_text().splitlines()]
    assert heldout == [p.to_dict() for p in balanced_problems(2, seed=cfg.toy.eval.seed, difficulties=(3, 4, 5))]
    assert base["name"] == "base" and base["n"] == 6 and set(base["by_difficulty"]) == {"3", "4", "5"}
    args = json.loads((run / "eval" / "base" / "eval_args.json").read_text())
    assert (args["backend"], args["max_tokens"], args["temperature"], args["top_p"], args["n"]) == (
        "transformers", 16, 0.6, 1.0, 1)
    samples = [json.loads(line) for line in (run / "eval" / "base" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(s["response_tokens"] <= 16 for s in samples)
    checks = sum(s["response"].count("wait") + s["response"].count("alternatively") for s in samples)
    assert base["wait_per_response"] == checks / 6
    assert base["mean_length"] == pytest.approx(sum(s["response_tokens"] for s in samples) / 6, abs=0.01)
    stamp = (run / "eval" / "base" / "samples.jsonl").stat().st_mtime_ns
    assert evaluate_run(cfg, run, toy_model_path(cfg))[0]["accuracy"] == base["accuracy"]  # resumed: nothing new
    assert (run / "eval" / "base" / "samples.jsonl").stat().st_mtime_ns == stamp
    result = CliRunner().invoke(app, ["compare", str(run / "eval" / "base"), "--base", str(run / "eval" / "base"),
                                      "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "n=5" in render_summary([base], title="t")[1]


def test_no_engine_knows_the_toy():
    """The toy sits above the engines: it resolves `toy` to a model directory and problems before calling one."""
    from pathlib import Path

    import siri_rl.engines

    root = Path(siri_rl.engines.__file__).parent
    for path in root.rglob("*.py"):
        assert "siri_rl.toy" not in path.read_text(), f"{path} refers to siri_rl.toy"


# --- the search task (toy.base.task: search) ---------------------------------------------------------------


def test_search_problems_have_exactly_one_answer_and_are_deterministic():
    a = make_problems(300, seed=3, min_terms=2, max_terms=5, task="search")
    assert a == make_problems(300, seed=3, min_terms=2, max_terms=5, task="search") != make_problems(
        300, seed=4, min_terms=2, max_terms=5, task="search")
    assert {p.difficulty for p in a} == {2, 3, 4, 5} and all(isinstance(p, SearchProblem) for p in a)
    for p in a:
        assert [x for x in range(SEARCH_BASE) if search_apply(x, p.depth) == p.target] == [int(p.answer)]
        assert p.problem == f"Compute x: f{p.depth}(x)={p.target}."
    held_out = balanced_problems(4, seed=9, min_terms=2, max_terms=5, task="search")
    assert [p.difficulty for p in held_out] == [k for k in range(2, 6) for _ in range(4)]
    # f is one cycle through all digits, so the base model's walk (next candidate = f(last value)) visits each
    x, seen = 0, []
    for _ in range(SEARCH_BASE):
        seen.append(x)
        x = SEARCH_F[x]
    assert sorted(seen) == list(range(SEARCH_BASE)) and x == 0


_TRY = re.compile(r"try (\d)((?:>\d)+) is (\d)\? (yes|no)\n")


def test_search_traces_check_every_try_and_are_graded_by_their_answer(tok):
    rng = random.Random(0)
    outcomes = {"found": 0, "guessed": 0}
    for p in make_problems(400, seed=1, min_terms=2, max_terms=5, task="search"):
        text = make_search_trace(p, rng, guess_prob=0.1, give_up_prob=0.2, check_prob=0.6)
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text and tok.unk_token_id not in ids
        assert length_capped_reward(ids, p.answer, len(ids), tok) == float(_boxed(text) == p.answer)
        tries = _TRY.findall(text)
        for x, chain, target, verdict in tries:  # every try applies f correctly and says yes iff it hits
            values = [int(x)] + [int(c) for c in chain[1::2]]
            assert len(values) == p.depth + 1 and all(SEARCH_F[u] == w for u, w in zip(values, values[1:]))
            assert int(target) == p.target and (verdict == "yes") == (values[-1] == p.target)
        if any(v == "yes" for *_, v in tries):  # found: the answer is the hit, re-checks repeat it
            assert _boxed(text) == p.answer and GUESS_PHRASE not in text
            assert all(t[0] == p.answer for t in tries if t[3] == "yes")
            outcomes["found"] += 1
        else:  # gave up (or never started): a guess
            assert GUESS_PHRASE in text
            outcomes["guessed"] += 1
    assert 0.45 < outcomes["found"] / 400 < 0.65  # the supervised traces give up often: room for RL


def test_search_base_model_must_search_and_re_checks_add_nothing(tok):
    p = SearchProblem("x", 4, 3)
    rng = random.Random(3)
    # never giving up, it always finds the answer, starting from a random digit and walking the cycle
    found = [make_search_trace(p, rng, guess_prob=0.0, give_up_prob=0.0, check_prob=0.0) for _ in range(100)]
    assert all(_boxed(t) == p.answer for t in found)
    assert {len(_TRY.findall(t)) for t in found} == set(range(1, SEARCH_BASE + 1))  # 1 to 7 tries
    # a re-check after the "yes" adds tokens and no accuracy; the shortest response is the right try alone
    checked = [make_search_trace(p, rng, guess_prob=0.0, give_up_prob=0.0, check_prob=1.0) for _ in range(50)]
    assert all(_boxed(t) == p.answer and any(c in t for c in CHECK_PHRASES) for t in checked)
    shortest = shortest_search_trace(p)
    assert len(_TRY.findall(shortest)) == 1 and _boxed(shortest) == p.answer
    assert all(len(tok(t).input_ids) > len(tok(shortest).input_ids) for t in checked)


def test_anchored_searches_start_at_the_target_and_hunches_only_at_their_depths():
    rng = random.Random(5)
    # anchor_prob 1: the first candidate is the number in the question; never giving up, the search from there
    # takes anchor_tries(depth) tries (5 / 2 / 3 / 6 for depth 2 / 3 / 4 / 5), whatever the target
    assert [anchor_tries(d) for d in (2, 3, 4, 5)] == [5, 2, 3, 6]
    for depth in (2, 3, 4, 5):
        for target in range(SEARCH_BASE):
            p = SearchProblem("x", target, depth)
            text = make_search_trace(p, rng, guess_prob=0.0, give_up_prob=0.0, check_prob=0.0, anchor_prob=1.0)
            tries = _TRY.findall(text)
            assert int(tries[0][0]) == target and len(tries) == anchor_tries(depth) and _boxed(text) == p.answer
    # a hunch (the answer first) only at the depths in hunch_depths; elsewhere the anchor
    for depth in (2, 3, 4, 5):
        p = SearchProblem("x", 1, depth)
        firsts = {int(_TRY.findall(make_search_trace(p, rng, guess_prob=0.0, hunch_prob=1.0, anchor_prob=1.0,
                                                     hunch_depths=(4,)))[0][0]) for _ in range(20)}
        assert firsts == ({p.solution} if depth == 4 else {p.target})
    # with neither, the start is random: all seven digits turn up
    p = SearchProblem("x", 1, 3)
    firsts = {int(_TRY.findall(make_search_trace(p, rng, guess_prob=0.0, hunch_prob=0.0, anchor_prob=0.0))[0][0])
              for _ in range(200)}
    assert firsts == set(range(SEARCH_BASE))


def test_problems_with_several_functions_name_theirs_and_the_traces_apply_it(tok):
    problems = make_problems(600, seed=2, min_terms=2, max_terms=5, task="search", functions=3)
    assert {p.func for p in problems} == {0, 1, 2} and {p.problem[11] for p in problems} == {"f", "g", "h"}
    assert len({(p.func, p.depth, p.target) for p in problems}) == 3 * 4 * SEARCH_BASE  # 84 facts to recall
    # one function draws no function: the problems of every earlier spec are the ones it drew before
    assert {p.func for p in make_problems(600, seed=2, min_terms=2, max_terms=5, task="search")} == {0}
    rng = random.Random(4)
    for p in problems:
        f = SEARCH_FUNCS[p.func]
        assert [x for x in range(SEARCH_BASE) if search_apply(x, p.depth, p.func) == p.target] == [int(p.answer)]
        assert p.problem == f"Compute x: {'fgh'[p.func]}{p.depth}(x)={p.target}."
        text = make_search_trace(p, rng, guess_prob=0.0, give_up_prob=0.0, check_prob=0.3, anchor_prob=0.5)
        ids = tok(p.problem + text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids and _boxed(text) == p.answer
        for x, chain, _target, verdict in _TRY.findall(text):  # each step applies the function the prompt names
            values = [int(x)] + [int(c) for c in chain[1::2]]
            assert all(f[u] == w for u, w in zip(values, values[1:])) and (verdict == "yes") == (
                values[-1] == p.target)
    # the functions differ (a try of f is no try of g) and every one is a 7-cycle: the walk visits every digit
    assert len(set(SEARCH_FUNCS)) == len(SEARCH_FUNCS)
    for f in SEARCH_FUNCS:
        x, seen = 0, set()
        for _ in range(SEARCH_BASE):
            seen.add(x)
            x = f[x]
        assert seen == set(range(SEARCH_BASE)) and x == 0
    # conjugate 7-cycles: the anchored search takes as many tries under each (anchor_tries' docstring)
    assert all([anchor_tries(d, fn) for d in (2, 3, 4, 5)] == [5, 2, 3, 6] for fn in range(len(SEARCH_FUNCS)))
    from siri_rl.toy.model import ToyBaseSpec

    with pytest.raises(ValueError, match="functions must be 1-3"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "functions": 4})
    with pytest.raises(ValueError, match="the search task only"):
        ToyBaseSpec.from_dict({"task": "count", "functions": 2})
    three = ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "functions": 3})
    assert three.key() != ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5}).key()


def test_guesses_from_the_question_are_never_right():
    # guess_target_prob 1: every guess (at once or after a "no") boxes the target, which f^depth never maps to
    # itself, so a guess earns no reward at any cap; the searches that find the answer are unchanged
    rng = random.Random(6)
    problems = make_problems(400, seed=5, min_terms=2, max_terms=5, task="search", functions=2)
    guessed = 0
    for p in problems:
        text = make_search_trace(p, rng, guess_prob=0.3, give_up_prob=0.3, guess_target_prob=1.0)
        if GUESS_PHRASE in text:
            guessed += 1
            assert _boxed(text) == str(p.target) != p.answer
        else:
            assert _boxed(text) == p.answer
    assert guessed > 100
    rng = random.Random(6)  # at 0.5 some guesses are random digits again, and some of those are right
    texts = [make_search_trace(p, rng, guess_prob=1.0, guess_target_prob=0.5) for p in problems]
    assert 0 < sum(_boxed(t) == p.answer for t, p in zip(texts, problems)) < sum(
        _boxed(t) == str(p.target) for t, p in zip(texts, problems))


def test_toy_spec_rejects_bad_probabilities_and_hunch_depths():
    from siri_rl.toy.model import ToyBaseSpec

    with pytest.raises(ValueError, match="anchor_prob must be a probability"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "anchor_prob": 1.5})
    with pytest.raises(ValueError, match="give_up_prob must be a probability"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "give_up_prob": "often"})
    with pytest.raises(ValueError, match=r"hunch_depths \[6\] lie outside the depths \[2, 3, 4, 5\]"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "hunch_depths": [4, 6]})
    with pytest.raises(ValueError, match="step_check_prob is a habit of the count task, not of 'search'"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "step_check_prob": 0.5})
    with pytest.raises(ValueError, match="step_check_prob must be a probability"):
        ToyBaseSpec.from_dict({"step_check_prob": -0.1})
    with pytest.raises(ValueError, match="hunch_depths must be a list of depths"):
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "hunch_depths": 4})
    # a YAML list becomes a tuple (the spec stays hashable) and is part of the cache key
    spec = ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5, "hunch_depths": [4]})
    assert spec.hunch_depths == (4,) and hash(spec)
    assert spec.key() != ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5}).key()


def test_new_habits_left_off_keep_the_shipped_traces_and_cache_key():
    # anchor_prob / hunch_depths / functions / guess_target_prob / step_check_prob came after SPEC_VERSION 5: at their defaults they
    # draw no random number and stay out of the cache key, so configs/toy-search.yaml's base model (cache
    # key 1ad4ce2a4285) is unchanged
    import hashlib
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_spec

    spec = toy_spec(load_config(files("siri_rl") / "configs" / "toy-search.yaml"))
    assert (spec.anchor_prob, spec.hunch_depths, spec.functions, spec.guess_target_prob) == (0.0, (), 1, 0.0)
    count = toy_spec(load_config(files("siri_rl") / "configs" / "toy-count.yaml"))
    assert spec.step_check_prob == count.step_check_prob == 0.0
    rng = random.Random(0)
    count_traces = "".join(count.trace(p, rng) for p in make_problems(300, seed=1))
    assert count.key() == "ce5de048bc7f"
    assert hashlib.sha256(count_traces.encode()).hexdigest()[:16] == "dd6a36c3cf8e84f4"  # as before step checks
    rng = random.Random(0)
    problems = make_problems(300, seed=1, min_terms=spec.min_terms, max_terms=spec.max_terms, task="search")
    traces = "".join(spec.trace(p, rng) for p in problems)
    assert spec.key() == "1ad4ce2a4285"
    assert hashlib.sha256(traces.encode()).hexdigest()[:16] == "d21ed2284f0f888f"  # as before the new habits


def test_difficulties_replace_the_range_for_training_and_held_out_problems():
    # toy.base.difficulties: a mix with a gap (easy 3-6, hard 11-12) instead of every difficulty in a range
    from siri_rl.toy.model import ToyBaseSpec

    spec = ToyBaseSpec.from_dict({"difficulties": [3, 4, 5, 6, 11, 12], "step_check_prob": 0.9})
    assert spec.levels == (3, 4, 5, 6, 11, 12) and (spec.min_terms, spec.max_terms) == (3, 12)
    drawn = make_problems(600, seed=1, difficulties=spec.difficulties)
    counts = {k: sum(p.difficulty == k for p in drawn) for k in spec.levels}
    assert set(counts) == {p.difficulty for p in drawn} and min(counts.values()) > 70  # uniform over the list
    assert all(int(p.answer) == p.start + p.count for p in drawn)
    held_out = balanced_problems(3, seed=9, difficulties=spec.difficulties)
    assert [p.difficulty for p in held_out] == [k for k in spec.levels for _ in range(3)]
    assert make_problems(50, seed=1) == make_problems(50, seed=1, difficulties=())  # no list: the range, as before
    assert spec.key() != ToyBaseSpec.from_dict({"min_terms": 3, "max_terms": 12, "step_check_prob": 0.9}).key()
    for bad in ([3, 3], [0, 4], ["4"], 4):
        with pytest.raises(ValueError, match="difficulties must be a list of distinct positive integers"):
            ToyBaseSpec.from_dict({"difficulties": bad})
    with pytest.raises(ValueError, match="depth .* is at most 5"):
        ToyBaseSpec.from_dict({"task": "search", "difficulties": [2, 6]})


def test_the_shipped_default_trains_and_evaluates_on_its_difficulties_only(tmp_path, monkeypatch):
    # the training rows (TRL), the veRL train file and the held-out benchmark all follow toy.base.difficulties
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_train_file, toy_train_rows
    from siri_rl.toy.run import write_heldout_benchmark

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    cfg = load_config(files("siri_rl") / "configs" / "toy.yaml")
    rows = toy_train_rows(cfg)
    assert len(rows) == cfg.toy.train_problems and {r["difficulty"] for r in rows} == {3, 4, 5, 6, 11, 12}
    assert [json.loads(line) for line in toy_train_file(cfg).read_text().splitlines()] == rows
    held_out = [json.loads(line) for line in write_heldout_benchmark(cfg, tmp_path).read_text().splitlines()]
    assert [r["difficulty"] for r in held_out] == [k for k in (3, 4, 5, 6, 11, 12) for _ in range(128)]
    assert not {r["problem"] for r in held_out} - {f"Compute {s}+{k}." for s in range(1, 10) for k in (3, 4, 5, 6, 11, 12)}


def test_toy_spec_rejects_unknown_tasks_and_empty_difficulty_ranges():
    from siri_rl.toy.model import ToyBaseSpec

    with pytest.raises(ValueError, match="task must be one of"):
        ToyBaseSpec.from_dict({"task": "sort"})
    with pytest.raises(ValueError, match="min_terms <= max_terms"):
        ToyBaseSpec.from_dict({"min_terms": 5, "max_terms": 4})
    with pytest.raises(ValueError, match="depth .* is at most 5"):  # depth 6 would re-try one digit forever
        ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 6})
    assert ToyBaseSpec.from_dict({"task": "search", "min_terms": 2, "max_terms": 5}).key() != ToyBaseSpec().key()


def test_shipped_search_traces_are_wrong_often_and_verbose(tok):
    # configs/toy-search.yaml's supervised traces: about half give up and guess (the base model copies that), and the
    # found ones carry re-checks to compress (the toy's aims: base accuracy 35-75%, room to shorten by >= 40%)
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_spec

    spec = toy_spec(load_config(files("siri_rl") / "configs" / "toy-search.yaml"))
    assert spec.task == "search"
    rng = random.Random(0)
    problems = make_problems(1000, seed=1, min_terms=spec.min_terms, max_terms=spec.max_terms, task="search")
    texts = [spec.trace(p, rng) for p in problems]
    accuracy = sum(_boxed(t) == p.answer for t, p in zip(texts, problems)) / len(texts)
    mean_len = sum(len(tok(t).input_ids) for t in texts) / len(texts)
    shortest = sum(len(tok(shortest_search_trace(p)).input_ids) for p in problems) / len(problems)
    checks = sum(sum(t.count(c) for c in CHECK_PHRASES) for t in texts) / len(texts)
    assert 0.5 < accuracy < 0.7 and mean_len > 2.5 * shortest and checks > 0.8


def test_hardest_search_problems_cannot_be_checked_once_within_l_min(tok):
    from importlib.resources import files

    from siri_rl.config import load_config

    cfg = load_config(files("siri_rl") / "configs" / "toy-search.yaml")
    l_min, l_max = cfg.schedule.l_min, cfg.schedule.l_max

    def tokens(text):
        return len(tok(text).input_ids) + 1  # + EOS

    for target in range(SEARCH_BASE):
        shortest = {d: tokens(shortest_search_trace(SearchProblem("x", target, d))) for d in (2, 3, 4, 5)}
        assert shortest[2] <= shortest[3] <= l_min < shortest[4] <= shortest[5]  # one try of depth 4-5 does not fit
    # L_max holds five tries of the hardest depth and the answer, not the full search of seven: it still binds
    one_try = len(tok(search_try(SearchProblem("x", 0, 5), 3)[0]).input_ids)
    answer = tokens("</think>\n\\boxed{3}")
    assert one_try == 21 and 5 * one_try + answer <= l_max < 6 * one_try + answer


def test_shipped_default_re_reads_keep_the_hard_problems_out_of_l_max_and_only_there(tok):
    # configs/toy.yaml: with the base model's re-reads every easy problem fits L_max and almost no hard one does;
    # without them every problem fits L_max, every easy one fits L_min and no hard one does (the constant L_max must
    # have next to nothing to learn from, SIRI a falling cap that makes the easy problems drop the re-reads first,
    # and at L_min no easy problem is solvable only by stopping early)
    from importlib.resources import files

    from siri_rl.config import load_config
    from siri_rl.toy import toy_spec

    cfg = load_config(files("siri_rl") / "configs" / "toy.yaml")
    spec, l_min, l_max = toy_spec(cfg), cfg.schedule.l_min, cfg.schedule.l_max
    assert spec.task == "count" and spec.levels == (3, 4, 5, 6, 11, 12) and (l_min, l_max) == (40, 128)
    assert cfg.toy.eval.max_len == l_max

    def tokens(text):
        return len(tok(text).input_ids) + 1  # + EOS

    rng = random.Random(0)
    problems = make_problems(3000, seed=1, difficulties=spec.difficulties)
    fits = {k: [] for k in spec.levels}
    for p in problems:
        text = spec.trace(p, rng)  # what build_toy_base trains on
        assert _boxed(text) == p.answer  # re-reads never change the answer: only the cap does
        fits[p.difficulty].append(tokens(text) <= l_max)
    assert all(all(fits[k]) for k in (3, 4, 5)) and sum(fits[6]) / len(fits[6]) > 0.99
    assert sum(fits[11] + fits[12]) / len(fits[11] + fits[12]) < 0.01
    for start in range(1, 10):
        shortest = {k: tokens(shortest_trace(ToyProblem("x", start, 1, k))) for k in spec.levels}
        assert shortest[12] <= l_max and shortest[6] <= l_min < shortest[11]

