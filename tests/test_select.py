"""`siri select`: every exported checkpoint of a run evaluated with `siri eval`'s code, the accuracy/length Pareto
front named in pareto.json beside the paper's SIRI-low / SIRI-high picks; on known values and on a real toy run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from siri_rl.cli import app
from siri_rl.metrics import delta_acc_cr
from siri_rl.run_dir import write_checkpoint_card
from siri_rl.selection import PARETO_JSON, PARETO_PNG, SELECTION_MD, paper_picks, run_select

# checkpoint -> (round, training cap L, acc %, mean length in tokens) on one benchmark
CHECKPOINTS = {
    "cycle1-compressed": (3, 8192, 30.0, 5000),   # beaten by cycle2-compressed (shorter and more accurate)
    "cycle1-expanded": (7, 16384, 33.0, 7000),
    "cycle2-compressed": (11, 8192, 32.0, 4500),
    "cycle2-expanded": (15, 16384, 34.0, 8000),   # beaten by final (shorter and more accurate)
    "final": (17, 12000, 35.0, 7800),
}
BASE = (28.0, 9000)
SETTINGS = {"benchmarks": ["amc"], "n": 4, "backend": "transformers", "max_tokens": 64, "progress": False}


def _summary(acc, length):
    return {"benchmarks": {"amc": {"acc": acc, "length": length, "acc_ci": [acc - 2, acc + 2],
                                   "length_ci": [length - 100, length + 100], "n_problems": 40, "n_samples": 160}},
            "meta": {}}


def _results_dir(path, acc, length, identity=None):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(_summary(acc, length)))
    (path / "summary.md").write_text("# done\n")
    if identity is not None:
        (path / "eval_args.json").write_text(json.dumps(identity))
    return path


@pytest.fixture()
def evaluated(tmp_path):
    """A run directory with five checkpoint cards (no weights), and a selection directory in which each has been
    evaluated already with SETTINGS (what `siri eval` leaves: eval_args.json, summary.json, summary.md), so that
    `siri select` only reads them; a base results directory."""
    from siri_rl.evaluate import EvalConfig

    run, out = tmp_path / "run", tmp_path / "select"
    for name, (step, cap, acc, length) in CHECKPOINTS.items():
        ckpt = run / "checkpoints" / name
        ckpt.mkdir(parents=True)
        write_checkpoint_card(ckpt, name=name, step=step, max_len=cap, phase=None, source="test")
        identity = EvalConfig(model=str(ckpt.resolve()), out=out / name, **SETTINGS).identity()
        _results_dir(out / name, acc, length, identity)
    base = _results_dir(tmp_path / "base", *BASE)
    return run, out, base


def test_paper_picks_are_the_last_trough_and_peak():
    names = ["cycle1-compressed", "cycle1-expanded", "cycle10-compressed", "cycle2-compressed", "final", "step-40"]
    assert paper_picks(names) == {"SIRI-low": "cycle10-compressed", "SIRI-high": "cycle1-expanded"}
    assert paper_picks(["final"]) == {"SIRI-low": None, "SIRI-high": None}


def test_pareto_json_names_the_front_on_known_values(evaluated):
    run, out, base = evaluated
    selection = run_select(run, out, SETTINGS, base=base)
    data = json.loads((out / PARETO_JSON).read_text())
    assert data["rows"] == selection["rows"] and data["run_dir"] == str(run)
    assert [r["name"] for r in data["front"]] == ["cycle2-compressed", "cycle1-expanded", "final"]  # by length
    assert {r["name"]: r["pareto"] for r in data["rows"]} == {
        "cycle1-compressed": False, "cycle1-expanded": True, "cycle2-compressed": True, "cycle2-expanded": False,
        "final": True}
    low, high = data["picks"]["SIRI-low"], data["picks"]["SIRI-high"]
    assert (low["name"], low["pareto"], low["dominated_by"]) == ("cycle2-compressed", True, [])
    assert (high["name"], high["pareto"], high["dominated_by"]) == ("cycle2-expanded", False, ["final"])
    rows = {r["name"]: r for r in data["rows"]}
    for name, (step, cap, acc, length) in CHECKPOINTS.items():
        r = rows[name]
        assert (r["step"], r["max_len"], r["avg_acc"], r["avg_length"]) == (step, cap, acc, length)
        assert r["avg_acc_ci"] == [acc - 2, acc + 2]
        expect = delta_acc_cr({"amc": {"acc": BASE[0], "length": BASE[1]}}, {"amc": {"acc": acc, "length": length}})
        assert r["delta_acc_cr"] == pytest.approx(expect)
    assert [r["name"] for r in data["rows"]] == list(CHECKPOINTS)  # round order
    assert data["base"] == "base" and data["base_row"]["pareto"] is False
    md = (out / SELECTION_MD).read_text()
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in md.splitlines() if line.startswith("| ") and not line.startswith("| checkpoint")}
    assert list(table) == ["base (base)", *CHECKPOINTS]
    assert table["final"] == ["17", "12000", "35.0 [33.0, 37.0]", "7800 [7700, 7900]",
                              f"{rows['final']['delta_acc_cr']:.3f}", "†", ""]
    assert table["cycle2-expanded"][-2:] == ["", "SIRI-high"] and table["cycle2-compressed"][-2:] == ["†", "SIRI-low"]
    assert "SIRI-high (last cycleK-expanded): cycle2-expanded, dominated by final." in md
    assert (out / PARETO_PNG).read_bytes()[:4] == b"\x89PNG"


def test_cli_select_reads_finished_results_and_refuses_runs_without_checkpoints(evaluated, tmp_path):
    run, out, base = evaluated
    args = ["select", str(run), "--out", str(out), "--benchmarks", "amc", "--n", "4", "--backend", "transformers",
            "--max-tokens", "64", "--no-progress"]
    res = CliRunner().invoke(app, args)  # no --base: no ΔAcc/CR
    assert res.exit_code == 0, res.output
    assert "cycle1-compressed: evaluated already" in res.output and "| final | 17 | 12000 |" in res.output
    assert json.loads((out / PARETO_JSON).read_text())["base"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, message in ((empty, "has no exported checkpoints"), (tmp_path / "nope", "is not a directory")):
        res = CliRunner().invoke(app, ["select", str(bad), "--out", str(tmp_path / "o")])
        assert res.exit_code == 2 and res.output.startswith("error:") and "Traceback" not in res.output
        assert message in res.output.replace("\n", "") and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, [*args, "--base", str(tmp_path / "no-such-base")])
    assert res.exit_code == 2 and "neither a results directory" in res.output.replace("\n", "")
    afile = tmp_path / "a-file"
    afile.write_text("x\n")
    res = CliRunner().invoke(app, ["select", str(run), "--out", str(afile)])
    assert res.exit_code == 2 and "is a file" in res.output.replace("\n", "")


def _samples_stamp(out):
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*/samples.jsonl")}


def test_select_evaluates_only_what_is_missing(tmp_path, tiny_toy_model):
    """Real evaluations (the tiny toy-tokenizer Qwen2 as every checkpoint, the transformers backend): a base given
    as a model is evaluated into OUT/base; a checkpoint exported later is the only one a rerun generates for."""
    import shutil

    from siri_rl.toy.task import balanced_problems

    bench = tmp_path / "sums.jsonl"
    bench.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in balanced_problems(1, seed=0, min_terms=3,
                                                                                        max_terms=4)))
    run, out = tmp_path / "run", tmp_path / "select"

    def export(name, step, cap):
        shutil.copytree(tiny_toy_model, run / "checkpoints" / name)
        write_checkpoint_card(run / "checkpoints" / name, name=name, step=step, max_len=cap, phase=None, source="t")

    export("cycle1-compressed", 1, 8)
    export("cycle1-expanded", 3, 16)
    settings = {"benchmarks": [str(bench)], "n": 2, "backend": "transformers", "max_tokens": 8, "top_p": 1.0,
                "dtype": "float32", "device": "cpu", "batch_size": 8, "progress": False, "grade_workers": 1}
    lines: list[str] = []
    run_select(run, out, settings, base=str(tiny_toy_model), log=lines.append)
    assert [line.split(" (")[0] for line in lines] == ["evaluating base", "evaluating cycle1-compressed",
                                                      "evaluating cycle1-expanded"]
    for name in ("base", "cycle1-compressed", "cycle1-expanded"):
        assert len((out / name / "samples.jsonl").read_text().splitlines()) == 2 * 2  # n=2 x 2 problems
    before = _samples_stamp(out)
    export("final", 4, 12)
    lines.clear()
    data = run_select(run, out, settings, base=str(tiny_toy_model), log=lines.append)
    assert [line.split(" (")[0] for line in lines] == ["base: evaluated already", "cycle1-compressed: evaluated "
                                                      "already", "cycle1-expanded: evaluated already",
                                                      "evaluating final"]
    after = _samples_stamp(out)
    assert {k: after[k] for k in before} == before and "final" in after
    assert [r["name"] for r in data["rows"]] == ["cycle1-compressed", "cycle1-expanded", "final"]
    assert data["base"] == "base" and json.loads((out / PARETO_JSON).read_text())["rows"] == data["rows"]
    # every copy is the same model with the same seed: the same samples, so all three tie on the front
    assert all(r["pareto"] for r in data["rows"])


@pytest.mark.slow
def test_select_on_a_toy_run_end_to_end(tmp_path, monkeypatch):
    """toy-quick trained on TRL (base model, cosine cycle of 4 rounds: cycle1-compressed, cycle1-expanded, final),
    then `siri select` on its held-out file: every checkpoint evaluated, a rerun generates nothing."""
    import time
    from pathlib import Path

    from siri_rl.config import load_config
    from siri_rl.toy.run import EVAL_SUBDIR, HELDOUT_FILE, run_toy

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    cfg = load_config(Path(__file__).parents[1] / "configs" / "toy-quick.yaml", ["toy.eval.per_difficulty=2"])
    run = tmp_path / "run"
    run_toy(cfg, run)
    heldout = run / EVAL_SUBDIR / HELDOUT_FILE
    out = tmp_path / "select"
    args = ["select", str(run), "--out", str(out), "--benchmarks", str(heldout), "--n", "2", "--backend",
            "transformers", "--top-p", "1.0", "--max-tokens", str(cfg.schedule.l_max), "--dtype", "float32",
            "--device", "cpu", "--batch-size", "64", "--no-progress", "--base", str(run / EVAL_SUBDIR / "base")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    names = ["cycle1-compressed", "cycle1-expanded", "final"]
    for name in names:
        samples = (out / name / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 2 * 2 * 3  # n=2 x 2 problems x 3 difficulties (toy-quick: 3-5 lines)
    data = json.loads((out / PARETO_JSON).read_text())
    assert [r["name"] for r in data["rows"]] == names
    assert [r["step"] for r in data["rows"]] == sorted(r["step"] for r in data["rows"])
    assert {r["name"] for r in data["front"]} == {r["name"] for r in data["rows"] if r["pareto"]} != set()
    assert data["picks"]["SIRI-low"]["name"] == "cycle1-compressed"
    assert data["picks"]["SIRI-high"]["name"] == "cycle1-expanded"
    for r in data["rows"]:
        summary = json.loads((out / r["name"] / "summary.json").read_text())
        bench = summary["benchmarks"][heldout.stem]
        assert (r["avg_acc"], r["avg_length"]) == (bench["acc"], bench["length"])
        assert r["delta_acc_cr"] is not None or data["base_row"]["avg_acc"] == 0
    md = (out / SELECTION_MD).read_text()
    assert all(f"| {name}" in md for name in names) and (out / PARETO_PNG).stat().st_size > 10_000
    before = _samples_stamp(out)
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert time.perf_counter() - t0 < 15 and res.output.count("evaluated already") == len(names)
    assert _samples_stamp(out) == before and json.loads((out / PARETO_JSON).read_text()) == data
