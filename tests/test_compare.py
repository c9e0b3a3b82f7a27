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
    pareto_front,
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


def _rows(md):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Model")}


def test_table_matches_core_delta_acc_cr_and_marks_best(dirs, tmp_path):
    comparison = run_compare(dirs["base"], [dirs["siri-low"], dirs["siri-high"], dirs["partial"]], tmp_path / "rep")
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
    rows = _rows(table_markdown(compare_results(base, [other])))
    assert rows["other"][-1] == "–"


def test_pareto_front():
    pts = [(12000, 28.8), (7000, 30.0), (9000, 33.0), (6000, 27.0), (9500, 31.0), (7000, 29.0)]
    # (9500, 31) is beaten by (9000, 33); (7000, 29) by (7000, 30); the base by everything shorter and better
    assert pareto_front(pts) == [3, 1, 2]
    assert pareto_front([(1, 1.0)]) == [0]


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
