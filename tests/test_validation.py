"""Held-out validation during training (``validation:``): the section's checks, the record format of
``RUN/validation.jsonl``, and the TRL engine's validation on real TRL with a tiny model (the transformers path;
the vLLM path is in tests/test_trl_vllm.py).

The model (``answering_toy_model``) answers ``\\boxed{3}`` or ``\\boxed{4}`` about half the time each; the
held-out file's gold answer is 3, so accuracies sit away from 0 and 100 and move as training changes the policy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from siri_rl.config import ConfigError, config_from_dict
from siri_rl.run_dir import (
    VALIDATION_FIELDS,
    append_validation_rows,
    read_validation_rows,
    truncate_validation,
    validation_results_dir,
)

BASE = {"schedule": {"kind": "constant", "l_max": 16}, "model": {"name_or_path": "m"}}


@pytest.mark.parametrize("section,match", [
    ({"benchmarks": "aime24"}, "validation.benchmarks must be a list"),
    ({"benchmarks": ["aime24", "aime24"]}, "lists a benchmark twice"),
    ({"benchmarks": ["aime24"], "every": 0}, "validation.every must be a positive integer"),
    ({"benchmarks": ["aime24"], "every": True}, "validation.every must be a positive integer"),
    ({"benchmarks": ["aime24"], "n": 0}, "validation.n must be a positive number"),
    ({"benchmarks": ["aime24"], "temperature": -1}, "validation.temperature must be a number >= 0"),
    ({"benchmarks": ["aime24"], "top_p": 0}, r"validation.top_p must be in \(0, 1\]"),
    ({"benchmarks": ["aime24"], "max_tokens": 1.5}, "validation.max_tokens must be a positive integer"),
    ({"benchmarks": ["aime24"], "limit": -3}, "validation.limit must be a positive integer"),
    ({"benchmarks": ["aime24"], "at_start": "yes"}, "validation.at_start must be true or false"),
    ({"benchmarks": ["aime24"], "seed": 1.5}, "validation.seed must be an integer"),
    ({"benchmarks": ["aime24"], "batch_size": 0}, "validation.batch_size must be a positive number"),
    ({"benchmarks": ["aime24"], "evry": 4}, r"unknown key\(s\) validation.evry"),
])
def test_bad_validation_values_fail_at_load_with_one_line(section, match):
    with pytest.raises(ConfigError, match=match) as err:
        config_from_dict({**BASE, "validation": section})
    assert "\n" not in str(err.value)


def test_an_old_eval_section_names_the_new_keys():
    with pytest.raises(ConfigError, match=r"eval: section is now validation:.*benchmarks, every, n, temperature"):
        config_from_dict({**BASE, "eval": {"benchmarks": ["aime24"]}})


def test_validation_max_tokens_must_fit_the_context():
    with pytest.raises(ConfigError, match=r"validation.max_tokens \(4096\) \+ data.max_prompt_length"):
        config_from_dict({**BASE, "model": {"name_or_path": "m", "max_context": 2048},
                          "validation": {"benchmarks": ["aime24"], "max_tokens": 4096}})


def test_validation_rounds_are_the_start_every_kth_and_the_last():
    from siri_rl.validation import ValidationSection, validation_rounds

    assert validation_rounds(ValidationSection(benchmarks=["b"], every=4), 10) == [0, 4, 8, 10]
    assert validation_rounds(ValidationSection(benchmarks=["b"], every=5, at_start=False), 10) == [5, 10]
    assert validation_rounds(ValidationSection(benchmarks=["b"]), 10) == [0, 10]
    assert validation_rounds(ValidationSection(), 10) == []


def _row(r: int, bench: str = "b", acc: float = 50.0) -> dict:
    return {"round": r, "benchmark": bench, "acc": acc, "acc_ci": [40.0, 60.0], "mean_len": 10.0,
            "truncated_frac": 0.0, "n": 2, "problems": 4, "max_tokens": 16, "temperature": 0.6}


def test_validation_records_resume_drops_later_rounds_and_cut_short_ones(tmp_path):
    append_validation_rows(tmp_path, [_row(0), _row(0, "c")])
    append_validation_rows(tmp_path, [_row(4)])
    append_validation_rows(tmp_path, [_row(8)])
    for r in (0, 4, 8, 12):  # 12: a validation a kill cut short (a results directory without rows)
        validation_results_dir(tmp_path, r).mkdir(parents=True)
    with (tmp_path / "validation.jsonl").open("a") as f:
        f.write('{"round": 12, "bench')  # and half of its first line
    assert [(r["round"], r["benchmark"]) for r in read_validation_rows(tmp_path)] == [(0, "b"), (0, "c"), (4, "b"),
                                                                                     (8, "b")]
    kept = truncate_validation(tmp_path, 4)
    assert [(r["round"], r["benchmark"]) for r in kept] == [(0, "b"), (0, "c"), (4, "b")]
    assert read_validation_rows(tmp_path) == kept
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == ["round-00000", "round-00004"]
    assert all(set(r) == set(VALIDATION_FIELDS) for r in kept)


def test_a_bad_validation_line_is_one_error_naming_it(tmp_path):
    (tmp_path / "validation.jsonl").write_text('{"round": "x", "benchmark": "b"}\n' + json.dumps(_row(0)) + "\n")
    with pytest.raises(ConfigError, match=r"validation.jsonl:1 is not a validation row"):
        read_validation_rows(tmp_path)


# --- the TRL engine ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """Eight held-out problems with gold answer 3 (the answering model says 3 or 4)."""
    path = tmp_path_factory.mktemp("bench") / "held.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"Compute {i % 2} + {3 - i % 2}.", "answer": "3"})
                            + "\n" for i in range(8)))
    return path


def _cfg(model: Path, heldout: Path | None, *, rounds: int = 4, every: int = 2, trl: dict | None = None):
    return config_from_dict({
        "name": "val",
        "model": {"name_or_path": str(model), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": {"kind": "constant", "l_max": 12},
        "training": {"rounds": rounds, "prompts_per_round": 2, "group_size": 4, "learning_rate": 2e-3,
                     "device": "cpu", "seed": 3},
        "toy": {"train_problems": 64},
        **({"validation": {"benchmarks": [str(heldout)], "every": every, "n": 3, "temperature": 1.0,
                           "top_p": 1.0, "max_tokens": 12, "seed": 7}} if heldout else {}),
        **({"trl": trl} if trl else {}),
    })


def _train(cfg, run: Path, **kwargs):
    from siri_rl.engines.trl import train
    from siri_rl.evaluate.validation import Validator
    from siri_rl.toy import toy_train_rows

    validator = Validator(cfg, run) if cfg.validation.benchmarks else None
    return train(cfg, output_dir=run, train_rows=toy_train_rows(cfg), progress=False, validator=validator, **kwargs)


def _training_rows(run: Path) -> list[dict]:
    # wall_s is the clock; every other field is what training did
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _samples(folder: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    return sorted((r["problem_id"], r["sample_index"], r["response"], tuple(r["token_ids"]), r["correct"])
                  for r in rows)


@pytest.fixture(scope="module")
def validated_run(answering_toy_model, heldout, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("validated") / "run"
    _train(_cfg(answering_toy_model, heldout), run)
    return run


def test_trl_validates_at_start_every_kth_round_and_the_end(validated_run):
    from siri_rl.results import load_result

    rows = read_validation_rows(validated_run)
    assert [r["round"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert r["benchmark"] == "held" and r["n"] == 3 and r["problems"] == 8 and r["max_tokens"] == 12
        folder = validation_results_dir(validated_run, r["round"])
        summary = json.loads((folder / "summary.json").read_text())["benchmarks"]["held"]
        assert (r["acc"], r["acc_ci"], r["mean_len"]) == (summary["acc"], summary["acc_ci"], summary["length"])
        assert len(_samples(folder)) == 24
        assert load_result(folder).benchmarks  # what `siri compare` reads
    assert 0 < rows[0]["acc"] < 100  # the base model answers 3 about half the time


def test_validation_does_not_perturb_training(validated_run, answering_toy_model, tmp_path):
    plain = tmp_path / "plain"
    _train(_cfg(answering_toy_model, None), plain)
    assert _training_rows(plain) == _training_rows(validated_run)
    assert not (plain / "validation.jsonl").exists()


def test_validation_equals_siri_eval_of_the_rounds_checkpoint(validated_run, heldout, tmp_path):
    """The last validation (round 4: the policy after 4 rounds) and `siri eval` of checkpoints/final (exported after
    round index 3) with the same arguments draw the same samples and give the same numbers."""
    from siri_rl.evaluate import EvalConfig, run_eval

    final = validated_run / "checkpoints" / "final"
    assert json.loads((final / "siri_checkpoint.json").read_text())["step"] == 3
    out = tmp_path / "eval"
    summary = run_eval(EvalConfig(model=str(final), out=out, benchmarks=[str(heldout)], n=3, temperature=1.0,
                                  top_p=1.0, max_tokens=12, backend="transformers", seed=7, batch_size=64,
                                  dtype="float32", device="cpu", progress=False))
    folder = validation_results_dir(validated_run, 4)
    assert _samples(out) == _samples(folder)
    row = read_validation_rows(validated_run)[-1]
    b = summary["benchmarks"]["held"]
    assert (row["acc"], row["acc_ci"], row["mean_len"]) == (b["acc"], b["acc_ci"], b["length"])


def test_resume_redoes_a_validation_cut_short_and_keeps_one_row_each(validated_run, answering_toy_model, heldout,
                                                                     tmp_path):
    cfg = _cfg(answering_toy_model, heldout, rounds=4)
    run = tmp_path / "run"
    _train(cfg, run, stop_after_rounds=2)  # a resumable checkpoint after round 2, validated
    assert [r["round"] for r in read_validation_rows(run)] == [0, 2]
    # A kill during the validation after round 2: its rows are not written, its results directory is half there;
    # and a stale validation of a later round (from before an earlier resume) is left over.
    lines = (run / "validation.jsonl").read_text().splitlines()
    (run / "validation.jsonl").write_text(lines[0] + "\n" + '{"round": 2, "bench')
    (validation_results_dir(run, 2) / "summary.json").unlink()
    shutil.copytree(validation_results_dir(run, 2), validation_results_dir(run, 4))
    _train(cfg, run, resume=True)
    rows = read_validation_rows(run)
    assert [r["round"] for r in rows] == [0, 2, 4]
    assert len((run / "validation.jsonl").read_text().splitlines()) == 3
    want = {r["round"]: r for r in read_validation_rows(validated_run)}
    assert rows[0] == want[0] and rows[1] == want[2]  # the same policies give the same validations
    assert _samples(validation_results_dir(run, 2)) == _samples(validation_results_dir(validated_run, 2))
    assert (validation_results_dir(run, 4) / "summary.json").is_file()


def test_the_engine_refuses_a_validation_section_without_a_validator(answering_toy_model, heldout, tmp_path):
    from siri_rl.engines.trl import train
    from siri_rl.toy import toy_train_rows

    cfg = _cfg(answering_toy_model, heldout)
    with pytest.raises(ConfigError, match="validation: is run by `siri train`"):
        train(cfg, output_dir=tmp_path / "run", train_rows=toy_train_rows(cfg), progress=False)


# --- the veRL engine's side (its end-to-end run is in tests/test_verl_e2e.py) ---------------------------------------


def test_verl_validation_overrides_set_veRLs_own_validation_loop(tmp_path):
    from siri_rl.engines.verl.validation import validation_overrides

    cfg = config_from_dict({**BASE, "schedule": {"kind": "constant", "l_max": 64}, "training": {"rounds": 10},
                            "validation": {"benchmarks": ["aime24"], "every": 4, "n": 8, "at_start": False}})
    o = validation_overrides(cfg, tmp_path / "metrics.jsonl")
    assert (o["trainer.test_freq"], o["trainer.val_before_train"], o["actor_rollout_ref.rollout.val_kwargs.n"],
            o["actor_rollout_ref.rollout.val_kwargs.do_sample"], o["siri.validation.max_tokens"],
            o["siri.validation.run_dir"]) == (4, False, 8, True, 64, str(tmp_path))
    assert validation_overrides(config_from_dict(BASE), None) == {}
    wide = validation_overrides(config_from_dict({**cfg.to_dict(), "validation": {"benchmarks": ["aime24"],
                                                                                  "max_tokens": 128}}), None)
    # a fixed cap above L_max widens veRL's padded response width and its token budgets (prompt 1024 + 128)
    assert (wide["data.max_response_length"], wide["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"]) == (128, 1152)


def test_verl_validation_rows_per_benchmark_leave_out_veRLs_padding():
    from siri_rl.engines.verl.validation import validation_rows

    # two problems of "a" (2 samples each), one of "b"; the last row is veRL's padding, a copy of the first
    rows = validation_rows(6, lengths=[4, 10, 10, 3, 7, 4], ended=[True, False, True, True, True, True],
                           rewards=[1.0, 0.0, 0.0, 0.0, 1.0, 1.0], sources=["a", "a", "a", "a", "b", "a"],
                           uids=["p", "p", "q", "q", "r", "p"], n=2, max_tokens=10, temperature=0.6)
    a, b = rows
    assert (a["benchmark"], a["round"], a["acc"], a["mean_len"], a["truncated_frac"], a["problems"]) == (
        "a", 6, 25.0, 6.75, 0.25, 2)
    assert (b["benchmark"], b["acc"], b["problems"]) == ("b", 100.0, 1)
    assert set(a) == set(VALIDATION_FIELDS)
