"""`siri compare`: Table 1 markdown, ΔAcc/CR from the core function, "–" for missing benchmarks, Pareto plot."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from siri_rl.cli import app
from siri_rl.compare import (
    COMPARISON_JSON,
    PARETO_PNG,
    TABLE_MD,
    compare_results,
    load_result,
    run_compare,
    table_markdown,
)
from siri_rl.evaluate import EvalError
from siri_rl.metrics import delta_acc_cr

# acc in percent, length in tokens, shaped like `siri eval`'s summary.json
RESULTS = {
    "base": {"aime24": (28.8, 12000), "aime25": (22.1, 12500), "amc": (62.0, 8000), "math500": (82.8, 5000)},
    "siri-low": {"aime24": (30.0, 7000), "aime25": (24.0, 7400), "amc": (66.0, 4800), "math500": (84.0, 2600)},
    "siri-high": {"aime24": (33.0, 9000), "aime25": (25.5, 9600), "amc": (70.5, 6000), "math500": (86.0, 3500)},
    "partial": {"aime24": (27.0, 6000), "math500": (80.0, 2500)},  # no AIME25 / AMC
}


def _write(root, name, benches):
    d = root / name
    d.mkdir(parents=True)
    summary = {"benchmarks": {b: {"acc": a, "length": n, "n_problems": 30, "n_samples": 64 * 30}
                              for b, (a, n) in benches.items()}, "meta": {"model": name}}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture()
def dirs(tmp_path):
    return {name: _write(tmp_path / "results", name, b) for name, b in RESULTS.items()}


def _rows(md, table=0):
    """The rows of the ``table``-th markdown table of ``md``: first cell -> the other cells."""
    tables, current = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            if current is None:
                current = {}
                tables.append(current)
            if line.startswith("| ") and not line.startswith("| Model"):
                name = line.split("|")[1].strip().removesuffix(" †")  # the front mark: test_compare_marks_the_pareto_front
                current[name] = [c.strip() for c in line.split("|")[2:-1]]
        else:
            current = None
    return tables[table]


def test_table_matches_core_delta_acc_cr_and_marks_best(dirs, tmp_path):
    comparison = run_compare(dirs["base"], [dirs["siri-low"], dirs["siri-high"], dirs["partial"]], tmp_path / "rep",
                             compact=True)
    md = (tmp_path / "rep" / TABLE_MD).read_text()
    assert md.splitlines()[0] == ("| Model | AIME24 Acc | AIME24 Len | AIME25 Acc | AIME25 Len | AMC Acc | AMC Len | "
                                  "MATH500 Acc | MATH500 Len | Avg Acc | Avg Len | ΔAcc/CR |")
    rows = _rows(md)
    assert list(rows) == ["base (base)", "siri-low", "siri-high", "partial"]
    base = {b: {"acc": a, "length": n} for b, (a, n) in RESULTS["base"].items()}
    for name in ("siri-low", "siri-high", "partial"):
        model = {b: {"acc": a, "length": n} for b, (a, n) in RESULTS[name].items()}
        expect = delta_acc_cr(base, model)
        assert float(rows[name][-1].strip("*")) == pytest.approx(expect, abs=5e-4)
        row = next(r for r in comparison["rows"] if r["name"] == name)
        assert row["delta_acc_cr"] == pytest.approx(expect)
    assert rows["base (base)"][-1] == "–"
    # best accuracy (siri-high) and shortest length (partial / siri-low) are bold
    assert rows["siri-high"][0] == "**33.0**" and rows["partial"][1] == "**6000**"
    assert rows["siri-low"][3] == "**7400**" and rows["siri-high"][2] == "**25.5**"
    assert rows["base (base)"][0] == "28.8"
    # missing benchmarks are "–" and left out of the row's average
    assert rows["partial"][2:6] == ["–", "–", "–", "–"]
    assert float(rows["partial"][8].strip("*")) == pytest.approx((27.0 + 80.0) / 2, abs=0.05)
    assert float(rows["partial"][9].strip("*")) == pytest.approx((6000 + 2500) / 2, abs=0.5)
    assert "not evaluated" in md
    saved = json.loads((tmp_path / "rep" / COMPARISON_JSON).read_text())
    assert saved["base"] == "base" and saved["benchmarks"] == ["aime24", "aime25", "amc", "math500"]
    assert (tmp_path / "rep" / PARETO_PNG).read_bytes()[:4] == b"\x89PNG"


def test_undefined_delta_acc_cr_is_a_dash(tmp_path):
    # a base accuracy of 0 leaves ΔAcc/CR undefined (division by the base accuracy): shown as "–", not a crash
    base = load_result(_write(tmp_path, "base", {"amc": (0.0, 100)}))
    other = load_result(_write(tmp_path, "other", {"amc": (5.0, 50)}))
    rows = _rows(table_markdown(compare_results(base, [other]), compact=True))
    assert rows["other"][-1] == "–"


def test_compare_marks_the_pareto_front(dirs, tmp_path):
    """Every row of comparison.json says whether it is on the accuracy/length front of the averages, and table.md
    marks those rows with †. Averages: base 48.9% / 9375 tokens, siri-low 51.0 / 5450, siri-high 53.75 / 7025,
    partial 53.5 / 4250 (over its two benchmarks)."""
    run_compare(dirs["base"], [dirs["siri-low"], dirs["siri-high"]], tmp_path / "a")
    rows = json.loads((tmp_path / "a" / COMPARISON_JSON).read_text())["rows"]
    assert {r["name"]: r["pareto"] for r in rows} == {"base": False, "siri-low": True, "siri-high": True}
    names = [line.split("|")[1].strip() for line in (tmp_path / "a" / TABLE_MD).read_text().splitlines()[2:5]]
    assert names == ["base (base)", "siri-low †", "siri-high †"]
    # partial is shorter and more accurate than siri-low: siri-low leaves the front
    comparison = run_compare(dirs["base"], [dirs["siri-low"], dirs["siri-high"], dirs["partial"]], tmp_path / "b")
    assert [r["name"] for r in comparison["rows"] if r["pareto"]] == ["siri-high", "partial"]
    saved = json.loads((tmp_path / "b" / COMPARISON_JSON).read_text())
    assert [r["pareto"] for r in saved["rows"]] == [False, False, True, True]
    # a base that nothing beats is on the front too
    best = load_result(_write(tmp_path, "best", {"amc": (90.0, 100)}))
    rows = compare_results(best, [load_result(dirs["siri-low"])])["rows"]
    assert [r["pareto"] for r in rows] == [True, False]


def test_duplicate_dir_names_get_their_parent(tmp_path):
    a = _write(tmp_path / "runA", "eval", RESULTS["siri-low"])
    b = _write(tmp_path / "runB", "eval", RESULTS["siri-high"])
    base = load_result(_write(tmp_path, "base", RESULTS["base"]))
    comparison = compare_results(base, [load_result(a), load_result(b)])
    assert [r["name"] for r in comparison["rows"]] == ["base", "runA/eval", "runB/eval"]
    assert "| runB/eval |" in table_markdown(comparison)


def test_bad_result_dirs_are_one_line_errors(tmp_path):
    with pytest.raises(EvalError, match=r"summary.json not found; run `siri eval"):
        load_result(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text('{"benchmarks": {"amc": {"acc": 1}}}')
    with pytest.raises(EvalError, match="not a siri eval summary"):
        load_result(bad)


def test_cli_compare(dirs, tmp_path):
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["compare", str(dirs["siri-low"]), str(dirs["siri-high"]),
                                   "--base", str(dirs["base"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "siri-high" in res.output and (out / PARETO_PNG).exists() and (out / TABLE_MD).exists()
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "missing"), "--base", str(dirs["base"]),
                                   "--out", str(out)])
    assert res.exit_code == 2 and res.output.startswith("error:") and "Traceback" not in res.output
    assert re.search(r"summary\.json not found", res.output.replace("\n", ""))


# --- real results directories: graded responses, `siri eval --report-only`, then `siri compare` -----------------

# (accuracy boost over the shared problem difficulty, "Let me check." repeats in the thinking)
MODELS = {"base": (0.0, (40, 80)), "short": (0.0, (10, 30)), "better": (0.25, (12, 32))}
N_SAMPLES, N_MATH = 8, 16


def _response(answer, words):
    return "<think>\n" + "Let me check. " * words + "\n</think>\n\nThe answer is $\\boxed{" + answer + "}$."


@pytest.fixture(scope="module")
def real_dirs(tmp_path_factory, r1_tokenizer_dir, benchmarks_dir):
    """Results directories made the way `siri eval` makes them, without a model: real responses (right or wrong
    answers, thinking of model-specific length) on the first AIME24 / MATH500 problems, tokenised by the R1
    tokenizer and graded by the pipeline into samples.jsonl, summarised by `siri eval --report-only`. Every model
    shares the problems' difficulty; "better" solves each problem more often, "short" and "better" think less,
    "short" evaluated only the first 20 AIME24 problems. Wrong answers alternate two spellings (26 / 026,
    \\frac{1}{7} / 1/7) so that maj@k has something to merge."""
    import numpy as np

    from siri_rl.data import load_benchmark
    from siri_rl.evaluate import ARGS_FILE, SAMPLES_FILE, EvalConfig, grade_records, report_only
    from siri_rl.prompts import load_tokenizer

    tok = load_tokenizer(str(r1_tokenizer_dir))
    problems = {"aime24": load_benchmark("aime24", str(benchmarks_dir)),
                "math500": load_benchmark("math500", str(benchmarks_dir))[:N_MATH]}
    rng = np.random.default_rng(0)
    skill = {b: rng.beta(0.8, 0.8, len(rows)) for b, rows in problems.items()}
    root = tmp_path_factory.mktemp("results")
    out = {}
    for name, (boost, (lo, hi)) in MODELS.items():
        cfg = EvalConfig(model=str(r1_tokenizer_dir), out=root / name, benchmarks=list(problems), n=N_SAMPLES,
                         max_tokens=512, backend="transformers", data_dir=str(benchmarks_dir), limit=N_MATH,
                         grade_workers=1)
        records = []
        for bench, rows in problems.items():
            for i, p in enumerate(rows[:20] if name == "short" and bench == "aime24" else rows):
                for j in range(N_SAMPLES):
                    right = rng.random() < min(1.0, skill[bench][i] + boost)
                    wrong = (["26", "026"] if bench == "aime24" else ["\\frac{1}{7}", "1/7"])[j % 2]
                    text = _response(p["answer"] if right else wrong, int(rng.integers(lo, hi)))
                    ids = tok.encode(text, add_special_tokens=False)
                    records.append({"benchmark": bench, "problem_id": p["id"], "sample_index": j, "gold": p["answer"],
                                    "response": text, "response_tokens": len(ids), "finish_reason": "stop",
                                    "answer": None, "correct": None, "grade_status": None, "token_ids": ids})
        grade_records(records, cfg)
        cfg.out.mkdir(parents=True)
        (cfg.out / ARGS_FILE).write_text(json.dumps(cfg.identity()))
        (cfg.out / SAMPLES_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
        report_only(cfg.out, tokenizer=tok, grade_workers=1)
        out[name] = cfg.out
    return out


def _rates(path, bench):
    """Per-problem fraction correct and token sum / count, straight from samples.jsonl."""
    from siri_rl.evaluate import SAMPLES_FILE, read_samples

    rates, tokens = {}, {}
    for r in read_samples(path / SAMPLES_FILE):
        if r["benchmark"] == bench:
            rates.setdefault(r["problem_id"], []).append(r["correct"])
            tokens.setdefault(r["problem_id"], []).append(r["response_tokens"])
    return {k: sum(v) / len(v) for k, v in rates.items()}, tokens


def test_compare_real_results_with_the_paired_column(real_dirs, tmp_path):
    """`siri compare` on real results: Acc/Len with their intervals, and the paired bootstrap of each model
    against the base over the problems both evaluated, checked against the samples themselves."""
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["compare", str(real_dirs["short"]), str(real_dirs["better"]),
                                   "--base", str(real_dirs["base"]), "--out", str(out), "--pair", "better,short"])
    assert res.exit_code == 0, res.output
    md = (out / TABLE_MD).read_text()
    assert md.splitlines()[0].endswith("| Avg Acc | Avg Len | ΔAcc/CR | ΔAcc vs base (paired) |")
    table1, paired = _rows(md, 0), _rows(md, 1)
    assert list(table1) == ["base (base)", "short", "better"]
    assert list(paired) == ["short", "better", "better − short"]
    comparison = json.loads((out / COMPARISON_JSON).read_text())
    rows = {r["name"]: r for r in comparison["rows"]}
    for name, row in rows.items():
        summary = json.loads((real_dirs[name] / "summary.json").read_text())
        for bench, v in row["benchmarks"].items():
            assert v["acc_ci"] == summary["benchmarks"][bench]["acc_ci"]
            lo, hi = v["acc_ci"]
            assert lo <= v["acc"] <= hi
            # the cell is "value ± half-width"
            assert f"{v['acc']:.1f} ± {(hi - lo) / 2:.1f}" in table1[name + (" (base)" if name == "base" else "")][
                comparison["benchmarks"].index(bench) * 2].replace("**", "")
        assert row["avg_acc_ci"][0] <= row["avg_acc"] <= row["avg_acc_ci"][1]
    assert rows["base"]["paired"] is None
    for name in ("short", "better"):
        p = rows[name]["paired"]
        deltas = []
        for bench in ("aime24", "math500"):
            mine, _ = _rates(real_dirs[name], bench)
            base, _ = _rates(real_dirs["base"], bench)
            shared = sorted(set(mine) & set(base))
            expect = 100 * sum(mine[k] - base[k] for k in shared) / len(shared)
            entry = p["benchmarks"][bench]
            # "short" evaluated 20 of the 30 AIME24 problems: only those are paired
            assert entry["n_problems"] == len(shared) == (20 if name == "short" and bench == "aime24" else len(base))
            assert entry["acc"]["delta"] == pytest.approx(expect, abs=0.01)
            lo, hi = entry["acc"]["ci"]
            assert lo <= entry["acc"]["delta"] <= hi and entry["acc"]["excludes_zero"] == (lo > 0 or hi < 0)
            deltas.append(expect)
        assert p["average"]["acc"]["delta"] == pytest.approx(sum(deltas) / 2, abs=0.01)
    # thinking a third as long is a length difference no resampling of problems explains away
    for name in ("short", "better"):
        assert rows[name]["paired"]["average"]["length"]["excludes_zero"]
        assert rows[name]["paired"]["average"]["length"]["ci"][1] < 0
    # "better" solves every problem 25 points more often (capped at 100%): a clear paired accuracy gain
    gain = rows["better"]["paired"]["average"]["acc"]
    assert gain["excludes_zero"] and gain["ci"][0] > 0
    assert table1["better"][-1].startswith(f"+{gain['delta']:.1f} [") and table1["better"][-1].endswith(" *")
    # pairing helps: the paired interval of Δ is narrower than the base's own interval (problem spread cancels)
    base_width = rows["base"]["avg_acc_ci"][1] - rows["base"]["avg_acc_ci"][0]
    assert gain["ci"][1] - gain["ci"][0] < base_width
    pair = comparison["pairs"][0]
    assert (pair["model"], pair["against"]) == ("better", "short") and pair["average"]["acc"]["excludes_zero"]
    assert (out / PARETO_PNG).read_bytes()[:4] == b"\x89PNG"
    # seeded: the same results give the same comparison
    again = tmp_path / "again"
    run_compare(real_dirs["base"], [real_dirs["short"], real_dirs["better"]], again, pairs=[("better", "short")])
    assert json.loads((again / COMPARISON_JSON).read_text())["rows"] == comparison["rows"]


def test_compact_table_and_maj_at_k_of_real_results(real_dirs, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(real_dirs["short"]), "--base", str(real_dirs["base"]),
                                   "--out", str(tmp_path / "c"), "--compact"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "c" / TABLE_MD).read_text()
    assert md.splitlines()[0].endswith("| Avg Acc | Avg Len | ΔAcc/CR |") and " ± " not in _rows(md)["short"][0]
    assert "Paired differences against base" in md  # the paired table still follows
    summary = json.loads((real_dirs["base"] / "summary.json").read_text())
    aime = summary["benchmarks"]["aime24"]
    assert [k for k in aime if k.startswith("maj@")] == ["maj@1", "maj@2", "maj@4", "maj@8"]
    assert aime["maj_checks"] > 0  # 26 and 026 were compared (the integer fast path, not math-verify)
    assert [g["value"] for g in summary["benchmarks"]["math500"]["groups"]["level"]] == sorted(
        {g["value"] for g in summary["benchmarks"]["math500"]["groups"]["level"]}, key=float)


def test_old_summaries_are_compared_without_pairing(dirs, tmp_path):
    """Summaries from before per-problem counts have no paired column, and the table says how to get one."""
    comparison = run_compare(dirs["base"], [dirs["siri-low"]], tmp_path / "old")
    assert comparison["rows"][1]["paired"] is None
    md = (tmp_path / "old" / TABLE_MD).read_text()
    assert _rows(md)["siri-low"][-1] == "–" and "siri eval --report-only DIR" in md
    res = CliRunner().invoke(app, ["compare", str(dirs["siri-low"]), "--base", str(dirs["base"]), "--out",
                                   str(tmp_path / "x"), "--pair", "siri-low"])
    assert res.exit_code == 2 and "NAME_A,NAME_B" in res.output
    res = CliRunner().invoke(app, ["compare", str(dirs["siri-low"]), "--base", str(dirs["base"]), "--out",
                                   str(tmp_path / "x"), "--pair", "siri-low,nobody"])
    assert res.exit_code == 2 and "must name a compared result" in res.output.replace("\n", "")
