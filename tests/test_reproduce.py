"""`siri reproduce table1`: the paper's Table 1 as data, the plan, one-line errors, and real evaluations of tiny
stand-in models (`--model ROW=PATH`, `--add LABEL=PATH`) set beside a Table 1 whose numbers are known."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from siri_rl.cli import app
from siri_rl.paper import SIZES, filled_cells, load_table1, paper_results
from siri_rl.reproduce import TABLE1_JSON, TABLE1_MD, TABLE1_PNG, compare_cell

# Sums the answering toy model was tuned on: it answers \boxed{3} or \boxed{4}, about half the time each.
SUMS = [("Compute 1 + 2.", "3"), ("Compute 0 + 3.", "3"), ("Compute 1 + 3.", "4")]


def _one_line_error(res, *needles):
    text = res.output.strip()
    assert res.exit_code == 2, res.output
    assert text.startswith("error:") and len(text.splitlines()) == 1 and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def test_table1_has_both_sizes_every_cell_sourced_and_released_ids():
    released = {"1.5b": {"base": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                         "deepscaler": "agentica-org/DeepScaleR-1.5B-Preview", "siri-low": "THU-KEG/SIRI-1.5B-low",
                         "siri-high": "THU-KEG/SIRI-1.5B-high"},
                "7b": {"base": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "siri-low": "THU-KEG/SIRI-7B-low",
                       "siri-high": "THU-KEG/SIRI-7B-high"}}
    for size in SIZES:
        table = load_table1(size)
        assert "2509.25176" in table["paper"] and table["base"] == "base"
        assert {r["key"]: r["model"] for r in table["rows"] if r["model"]} == released[size]
        # a number without a source is a bug: every filled cell is listed as confirmed, from a named source
        confirmed = {c["row"]: c for c in table["provenance"]["cells_confirmed"] if c["size"] == size}
        for r in table["rows"]:
            assert set(r["cells"]) == {"aime24", "aime25", "amc", "math500"} and r["model_source"]
            filled = [b for b, c in r["cells"].items() if c["acc"] is not None]
            assert filled == confirmed[r["key"]]["benchmarks"] and set(r["sources"]) <= set(table["provenance"]["sources"])
            assert all((c["acc"] is None) == (c["length"] is None) for c in r["cells"].values())
        assert filled_cells(table) == 2 * sum(len(c["benchmarks"]) for c in confirmed.values())
        assert len(paper_results(size)) == len(table["rows"])
    rows = {r["key"]: r for r in load_table1("1.5b")["rows"]}
    assert [k for k, r in rows.items() if not r["model"]] == ["dapo-deepscaler-16k", "overthink", "dast", "o1-pruner",
                                                              "adaptthink"]
    assert rows["base"]["cells"]["aime24"] == {"acc": 28.2, "length": 12333}  # §5.2: SIRI-low +43% on AIME24
    assert rows["siri-low"]["cells"]["aime24"] == {"acc": 40.4, "length": 7093}
    assert rows["overthink"]["cells"]["aime25"] == {"acc": None, "length": None}  # the paper's own dash
    assert {r["key"]: r["cells"]["math500"]["acc"] for r in load_table1("7b")["rows"]}["siri-high"] == 93.7


def test_the_cores_delta_acc_cr_on_table1s_cells_gives_its_column():
    """ΔAcc/CR (siri_rl.metrics, §5.2) recomputed from Table 1's own rounded cells matches the printed column to
    its two decimals, except for the 1.5B SIRI rows, where the paper prints 0.47 and 0.38 for 0.485 and 0.408."""
    from siri_rl.metrics import delta_acc_cr

    off = {}
    for size in SIZES:
        rows = {r["key"]: r["cells"] for r in load_table1(size)["rows"]}
        table = {r["key"]: r["delta_acc_cr"] for r in load_table1(size)["rows"]}

        def known(cells):
            return {b: c for b, c in cells.items() if c["acc"] is not None}

        for key, cells in rows.items():
            ours = delta_acc_cr(known(rows["base"]), known(cells))
            if abs(ours - table[key]) > 0.0051:
                off[(size, key)] = (round(ours, 3), table[key])
    assert off == {("1.5b", "siri-low"): (0.485, 0.47), ("1.5b", "siri-high"): (0.408, 0.38)}


def test_a_cell_flags_the_paper_outside_our_interval_on_known_numbers():
    ours = {"acc": 30.0, "acc_ci": [25.0, 35.0], "acc_se": 1.0}
    inside = compare_cell(33.0, ours, "acc")
    assert (inside["inside"], inside["diff"], inside["real"]) == (True, -3.0, True)  # inside the problem interval
    real = compare_cell(40.0, ours, "acc")
    assert real["inside"] is False and real["diff"] == -10.0
    assert real["sampling"] == pytest.approx(1.96, abs=1e-3) and real["needed"] == pytest.approx(2.772, abs=1e-3)
    assert real["real"] is True
    noise = compare_cell(36.0, {**ours, "acc_se": 4.0}, "acc")  # outside, but sampling noise could make it
    assert (noise["inside"], noise["real"]) == (False, False)
    missing = compare_cell(None, ours, "acc")
    assert (missing["inside"], missing["diff"], missing["ours"]) == (None, None, 30.0)


def test_dry_run_prints_the_plan_for_both_sizes_and_creates_nothing(tmp_path, benchmarks_dir):
    out = tmp_path / "t1"
    for size, models in (("1.5b", 4), ("7b", 3)):
        res = CliRunner().invoke(app, ["reproduce", "table1", "--size", size, "--out", str(out), "--dry-run",
                                       "--data-dir", str(benchmarks_dir)])
        assert res.exit_code == 0, res.output
        assert "aime24 (30 problems), aime25 (30 problems), amc (83 problems), math500 (500 problems)" in res.output
        assert "per model: 41,152 samples, at most 674,234,368 tokens" in res.output
        assert f"to generate: {models} of {models} models" in res.output and "settings: the paper's" in res.output
    res = CliRunner().invoke(app, ["reproduce", "table1", "--size", "1.5b", "--out", str(out), "--dry-run",
                                   "--rows", "siri-low", "--model", "siri-low=/somewhere/SIRI-1.5B-low", "--n", "4",
                                   "--limit", "2", "--max-tokens", "100", "--data-dir", str(benchmarks_dir)])
    assert res.exit_code == 0, res.output
    assert "siri-low             /somewhere/SIRI-1.5B-low" in res.output and "deepscaler" not in res.output
    assert "per model: 32 samples, at most 3,200 tokens" in res.output
    assert "settings that differ from the paper's: n 4 (paper 64); max_tokens 100 (paper 16384); limit 2" in res.output
    assert not out.exists()
    # the tokens Table 1's mean lengths imply: problems x n x length, summed over the benchmarks
    assert "about 169,464 tokens at Table 1's mean lengths" in res.output  # SIRI-low 1.5B, --limit 2, n 4
    res = CliRunner().invoke(app, ["reproduce", "table1", "--size", "1.5b", "--dry-run", "--rows", "base",
                                   "--data-dir", str(benchmarks_dir)])
    expected = 64 * (30 * 12333 + 30 * 12264 + 83 * 8449 + 500 * 4745)
    assert f"about {expected:,} tokens at Table 1's mean lengths" in res.output


def test_bad_rows_options_and_missing_models_are_one_line_errors(tmp_path):
    out = tmp_path / "t1"
    base = ["reproduce", "table1", "--out", str(out)]
    cases = [
        (["--size", "3b"], ["--size 3b", "1.5b, 7b"]),
        (["--size", "1.5b", "--rows", "siri-medium"], ["--rows siri-medium: no such row", "siri-low, siri-high"]),
        (["--size", "7b", "--model", "deepscaler=/x"], ["--model deepscaler: no such row of Table 1 (7b)"]),
        (["--size", "1.5b", "--rows", "dapo-deepscaler-16k"], ["no released checkpoint", "--model dapo-deepscaler"]),
        (["--size", "1.5b", "--model", "siri-low"], ["--model must look like NAME=PATH"]),
        (["--size", "1.5b", "--add", "my run=/x"], ["--add my run=/x", "letters, digits"]),
        (["--size", "1.5b", "--add", "siri-low=/x"], ["must differ from the rows"]),
        (["--size", "1.5b", "--rows", "siri-low", "--model", f"siri-low={tmp_path / 'nope'}"],
         ["no such local directory", "(--model siri-low)"]),
        (["--size", "1.5b", "--rows", "base", "--n", "0"], ["must be positive"]),
    ]
    for args, needles in cases:
        _one_line_error(CliRunner().invoke(app, [*base, *args]), *needles)
    assert not out.exists()
    afile = tmp_path / "a-file"
    afile.write_text("x\n")
    _one_line_error(CliRunner().invoke(app, ["reproduce", "table1", "--size", "1.5b", "--out", str(afile)]),
                    f"--out {afile}", "is a file")


def test_a_released_id_the_hub_cannot_give_is_one_line(tmp_path):
    """Offline (no hub here): the released id is checked before anything loads, and fails in one line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    res = subprocess.run([sys.executable, "-m", "siri_rl.cli", "reproduce", "table1", "--size", "7b", "--rows",
                          "siri-high", "--out", str(tmp_path / "t1")], capture_output=True, text=True, env=env,
                         timeout=120)
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, lines
    assert "row siri-high THU-KEG/SIRI-7B-high is not in the local cache" in lines[0]
    assert not (tmp_path / "t1").exists()


def _ours_from_samples(results_dir, bench):
    """pass@1 (%) and mean length (tokens) of one benchmark, from the samples themselves."""
    by_problem: dict[str, list[dict]] = {}
    for line in (results_dir / "samples.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["benchmark"] == bench:
            by_problem.setdefault(rec["problem_id"], []).append(rec)
    acc = 100 * sum(sum(r["correct"] for r in rs) / len(rs) for rs in by_problem.values()) / len(by_problem)
    tokens = [r["response_tokens"] for rs in by_problem.values() for r in rs]
    return acc, sum(tokens) / len(tokens)


def _stamp(out):
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*/samples.jsonl")}


def test_stand_in_models_fill_the_table_flag_known_cells_and_resume(tmp_path, answering_toy_model, tiny_toy_model):
    """Real generation and grading: the answering toy model stands in for the base and SIRI-low rows, a random
    one is added as the user's own checkpoint. The paper's numbers are then set from the measured samples — one
    cell equal to ours (inside), one beyond our interval (outside) — and a rerun reads them without generating."""
    data = tmp_path / "data"
    data.mkdir()
    for bench in ("aime24", "amc"):  # Table 1's benchmark names, holding sums the stand-ins can answer
        (data / f"{bench}.jsonl").write_text("".join(json.dumps({"id": f"{bench}-{i}", "problem": p, "answer": a})
                                                     + "\n" for i, (p, a) in enumerate(SUMS)))
    out = tmp_path / "t1"
    args = ["reproduce", "table1", "--size", "1.5b", "--out", str(out), "--rows", "base,siri-low",
            "--model", f"base={answering_toy_model}", "--model", f"siri-low={answering_toy_model}",
            "--add", f"mine={tiny_toy_model}", "--benchmarks", "aime24,amc", "--data-dir", str(data), "--n", "8",
            "--max-tokens", "12", "--top-p", "1.0", "--backend", "transformers", "--device", "cpu", "--dtype",
            "float32", "--batch-size", "24", "--grade-workers", "1", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [line.split(" (")[0] for line in res.output.splitlines() if line.startswith("evaluating")] == [
        "evaluating base", "evaluating siri-low", "evaluating mine"]
    table = json.loads((out / TABLE1_JSON).read_text())
    rows = {r["key"]: r for r in table["rows"]}
    package = {r["key"]: r for r in load_table1("1.5b")["rows"]}
    assert list(rows) == [*package, "mine"]
    assert not rows["deepscaler"]["evaluated"] and rows["mine"]["added"] and rows["mine"]["evaluated"]
    for key in ("base", "siri-low", "mine"):
        for bench in ("aime24", "amc"):
            acc, length = _ours_from_samples(out / key, bench)
            cell = rows[key]["cells"][bench]
            assert cell["acc"]["ours"] == pytest.approx(acc, abs=0.01)
            assert cell["length"]["ours"] == pytest.approx(length, abs=0.01)
            assert cell["acc"]["ci"][0] <= cell["acc"]["ours"] <= cell["acc"]["ci"][1]
            paper = package[key]["cells"][bench] if key in package else {"acc": None, "length": None}
            assert (cell["acc"]["paper"], cell["length"]["paper"]) == (paper["acc"], paper["length"])
            assert (cell["acc"]["inside"] is None) == (key == "mine")  # Table 1's number, inside ours or not
    base_acc = rows["base"]["cells"]["aime24"]["acc"]["ours"]
    assert 0 < base_acc < 100, "the answering stand-in should answer some sums right and some wrong"
    assert table["overrides"]["n"] == {"paper": 64, "ours": 8} and "limit" not in table["overrides"]
    md = (out / TABLE1_MD).read_text()
    assert "| SIRI-low | AIME24 | 40.4 |" in md and "| mine (ours) | AMC | – |" in md
    assert "| SIRI-high (not evaluated) | AIME24 | 43.6 | – | – | 10049 | – | – |" in md
    assert "Settings that differ from the paper's" in md and (out / TABLE1_PNG).read_bytes()[:4] == b"\x89PNG"

    # a Table 1 whose numbers are known relative to ours: base aime24 Acc = ours (inside), base amc Acc = the top
    # of our interval + 30 points (outside, and beyond sampling noise: √2 x 1.96 x the largest sampling
    # error of 3 problems x 8 samples is 28.3 points), SIRI-low aime24 Len = ours (inside)
    ref = load_table1("1.5b")
    ref_rows = {r["key"]: r for r in ref["rows"]}
    amc = rows["base"]["cells"]["amc"]["acc"]
    ref_rows["base"]["cells"]["aime24"]["acc"] = base_acc
    ref_rows["base"]["cells"]["amc"]["acc"] = amc["ci"][1] + 30  # a number, not a rate: may pass 100
    ref_rows["siri-low"]["cells"]["aime24"]["length"] = rows["siri-low"]["cells"]["aime24"]["length"]["ours"]
    ref["provenance"] = {**ref["provenance"], "cells": "set by the test from the measured samples"}
    ref_file = tmp_path / "table1-known.json"
    ref_file.write_text(json.dumps({**{k: v for k, v in ref.items() if k not in ("size", "base", "rows")},
                                    "sizes": {"1.5b": {"base": "base", "rows": ref["rows"]}}}))
    before = _stamp(out)
    res = CliRunner().invoke(app, [*args, "--reference", str(ref_file)])
    assert res.exit_code == 0, res.output
    assert res.output.count("evaluated already") == 3 and _stamp(out) == before
    rows = {r["key"]: r for r in json.loads((out / TABLE1_JSON).read_text())["rows"]}
    assert rows["base"]["cells"]["aime24"]["acc"]["inside"] is True
    outside = rows["base"]["cells"]["amc"]["acc"]
    assert outside["inside"] is False and outside["real"] is True and outside["diff"] < -outside["needed"]
    assert rows["siri-low"]["cells"]["aime24"]["length"]["inside"] is True
    md = (out / TABLE1_MD).read_text()
    base_aime = next(line for line in md.splitlines() if line.startswith("| DeepSeek-R1-Distill-Qwen-1.5B | AIME24"))
    base_amc = next(line for line in md.splitlines() if line.startswith("| DeepSeek-R1-Distill-Qwen-1.5B | AMC"))
    assert "| ✓ |" in base_aime and ": real |" in base_amc and "⚠ Δ-" in base_amc

    # resume: a model cut short is completed, the others are not opened again
    samples = (out / "mine" / "samples.jsonl").read_text().splitlines()
    (out / "mine" / "samples.jsonl").write_text("\n".join(samples[:5]) + "\n")
    (out / "mine" / "summary.json").unlink()
    before = _stamp(out)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("evaluated already") == 2 and "evaluating mine" in res.output
    after = _stamp(out)
    assert {k: after[k] for k in ("base", "siri-low")} == {k: before[k] for k in ("base", "siri-low")}
    assert len((out / "mine" / "samples.jsonl").read_text().splitlines()) == len(samples) == 2 * 3 * 8


def _summary_dir(path, benches):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"benchmarks": {b: {"acc": a, "length": n} for b, (a, n) in
                                                                  benches.items()}, "meta": {}}))
    return path


def test_compare_sets_the_paper_rows_beside_results(tmp_path):
    from siri_rl.compare import COMPARISON_JSON, compare_results, load_result, table_markdown

    base = _summary_dir(tmp_path / "base", {"aime24": (28.0, 12000), "amc": (62.0, 8000)})
    mine = _summary_dir(tmp_path / "mine", {"aime24": (31.0, 7000), "amc": (66.0, 5000)})
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["compare", str(mine), "--base", str(base), "--out", str(out), "--paper",
                                   "table1-1.5b"])
    assert res.exit_code == 0, res.output
    names = [r["name"] for r in json.loads((out / COMPARISON_JSON).read_text())["rows"]]
    assert names == ["base", "mine", *[f"paper: {r['name']}" for r in load_table1("1.5b")["rows"]]]
    # Table 1's numbers, without intervals, the paper's dashes kept
    assert "| paper: SIRI-high † | **43.6** | 10049 | **32.2** | 9739 | **75.9** | 7396 | **88.4** | 4633 |" in res.output
    assert "| paper: OverThink | 28.3 | 11269 | – | – | – | – | 81.2 | 4131 |" in res.output
    # a Table 1 with numbers: the paper's rows take part in the table, ΔAcc/CR and the front like any other
    none = {"acc": None, "length": None}
    rows = [{"key": "base", "name": "Original", "cells": {b: none for b in ("aime24", "amc")}},
            {"key": "siri-low", "name": "SIRI-low", "cells": {"aime24": {"acc": 32.0, "length": 6000},
                                                              "amc": {"acc": 67.0, "length": 4500}}}]
    ref_file = tmp_path / "known.json"
    ref_file.write_text(json.dumps({"paper": "a test table", "sizes": {"1.5b": {"base": "base", "rows": rows}}}))
    comparison = compare_results(load_result(base), [load_result(mine), *paper_results("1.5b", ref_file)])
    low = next(r for r in comparison["rows"] if r["name"] == "paper: SIRI-low")
    assert low["benchmarks"] == {"aime24": {"acc": 32.0, "acc_ci": None, "length": 6000.0, "length_ci": None},
                                 "amc": {"acc": 67.0, "acc_ci": None, "length": 4500.0, "length_ci": None}}
    assert low["pareto"] and low["delta_acc_cr"] is not None and low["paired"] is None
    assert "| paper: SIRI-low † | **32.0** | **6000** | **67.0** | **4500** |" in table_markdown(comparison)
    for bad in ("table1-3b", "table2-1.5b"):
        _one_line_error(CliRunner().invoke(app, ["compare", str(mine), "--base", str(base), "--out", str(out),
                                                 "--paper", bad]), f"--paper {bad}: choose one of table1-1.5b")
