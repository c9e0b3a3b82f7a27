"""Every bad input to a ``siri`` command: one ``error:`` line on stderr, exit status 2, nothing on stdout, no file
created or changed, and no model loaded first. Real subprocesses (``python -m siri_rl.cli``) on real files: a
results directory written by ``siri eval`` and a run directory written by ``siri train``, both on a tiny Qwen2 with
the real R1-distill tokenizer; corrupt copies of their files are read through the public commands."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def siri(*args, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)  # rich's width comes from the pipe, as in a job log
    return subprocess.run([sys.executable, "-m", "siri_rl.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, errors="replace", timeout=timeout)


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one error line of a refused command: status 2, that line alone on stderr, stdout empty, no traceback;
    each of ``needles`` is in it."""
    everything = proc.stdout + proc.stderr
    assert proc.returncode == 2, everything[-3000:]
    assert "Traceback" not in everything, everything[-3000:]
    assert proc.stdout == "", proc.stdout[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(*paths: Path) -> dict[str, str | None]:
    """Path -> sha256 of every file under ``paths`` (None for a path that does not exist)."""
    out: dict[str, str | None] = {}
    for root in paths:
        if not root.exists():
            out[str(root)] = None
            continue
        for f in sorted([root] if root.is_file() else root.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_qwen2_dir, benchmarks_dir) -> dict[str, Path]:
    """A real ``siri eval`` results directory (2 benchmarks x 1 problem x 2 samples) and a real 2-round
    ``siri train`` run directory (metrics.jsonl, checkpoints/final with its card), made once."""
    root = tmp_path_factory.mktemp("made")
    result = root / "result"
    proc = siri("eval", "--model", tiny_qwen2_dir, "--out", result, "--benchmarks", "aime24,math500", "--data-dir",
                benchmarks_dir, "--backend", "transformers", "--n", "2", "--limit", "1", "--max-tokens", "4",
                "--no-progress", "--grade-workers", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "bad-input", "engine": "trl",
        "model": {"name_or_path": str(tiny_qwen2_dir), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 256},
        "schedule": {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        "training": {"rounds": 2, "prompts_per_round": 2, "group_size": 2, "device": "cpu"},
        "toy": {"train_problems": 16},
    }))
    run = root / "run"
    proc = siri("train", "-c", config, "-o", run)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (run / "checkpoints" / "final" / "siri_checkpoint.json").is_file()
    return {"result": result, "run": run, "config": config, "model": tiny_qwen2_dir, "bench": benchmarks_dir}


def copy_of(made: dict[str, Path], name: str, tmp_path: Path) -> Path:
    """A copy of a made directory (the checkpoint's weights as links: only its card is ever edited)."""
    dest = tmp_path / name
    shutil.copytree(made[name], dest, copy_function=os.symlink if name == "run" else shutil.copy2)
    if name == "run":  # files that tests edit are real copies
        for f in [dest / "metrics.jsonl", *dest.glob("checkpoints/*/siri_checkpoint.json")]:
            target = f.resolve()
            f.unlink()
            shutil.copy2(target, f)
    return dest


def eval_args(made, out: Path, *extra) -> list:
    return ["eval", "--model", made["model"], "--out", out, "--benchmarks", "aime24", "--data-dir", made["bench"],
            "--backend", "transformers", "--n", "1", "--limit", "1", "--max-tokens", "2", "--no-progress", *extra]


# --- options that make no sense: refused before anything is loaded or written ----------------------------------


@pytest.mark.parametrize("option, value, needle", [
    ("--group-by", "nosuchfield", "--group-by nosuchfield"),  # was refused only after generating and grading
    ("--dtype", "float8", "--dtype"),  # was a torch AttributeError
    ("--grade-workers", "0", "--grade-workers"),
    ("--grade-timeout", "-1", "--grade-timeout"),
    ("--temperature", "inf", "--temperature"),  # was written into eval_args.json as Infinity
    ("--top-p", "1.5", "--top-p"),
])
def test_eval_option_that_makes_no_sense(option, value, needle, made, tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    refused(siri(*eval_args(made, out, option, value)), needle)
    assert not out.exists()
    assert time.monotonic() - t0 < 60  # imports and the benchmark file only (generation and grading take longer)


@pytest.mark.parametrize("override, key", [
    ("training.top_p=1.5", "training.top_p"), ("data.max_prompt_length=-5", "data.max_prompt_length"),
    ("training.kl_coef=-1", "training.kl_coef"), ("training.save_every=0", "training.save_every"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_train_value_that_makes_no_sense(override, key, dry_run, made, tmp_path):
    """Refused at --dry-run too (which printed such a config as valid), and blamed on the override, not the YAML."""
    run = tmp_path / "run"
    proc = siri("train", "-c", made["config"], "-o", run, override, *(["--dry-run"] if dry_run else []))
    refused(proc, key, f"with the override {override}")
    assert not run.exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_train_stop_after_below_one(value, made, tmp_path):
    """It exited 0 naming a run directory it never made."""
    run = tmp_path / "run"
    refused(siri("train", "-c", made["config"], "-o", run, "--stop-after", value), "--stop-after")
    assert not run.exists()


def test_schedule_plot_that_is_not_an_image(tmp_path):
    refused(siri("schedule", "--steps", "20", "--plot", tmp_path / "plot.txt"), "--plot", "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_errors_go_to_stderr_so_redirected_results_stay_clean(tmp_path):
    """`siri schedule --kind cosin --json > schedule.json` wrote the error into the JSON file and showed nothing."""
    refused(siri("schedule", "--kind", "cosin", "--json"), "cosin")


# --- no command writes into another command's directory --------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "analyze-run", "compare"])
def test_no_command_writes_into_an_eval_results_directory(command, made, tmp_path):
    result = copy_of(made, "result", tmp_path)
    argv = {"train": ["train", "-c", made["config"], "-o", result],
            "analyze-run": ["analyze", "run", made["run"], "--out", result],
            "compare": ["compare", made["result"], "--base", made["result"], "--out", result]}[command]
    before = snapshot(result)
    refused(siri(*argv), str(result), "siri eval")
    assert snapshot(result) == before


def test_eval_does_not_write_into_a_run_directory(made, tmp_path):
    run = copy_of(made, "run", tmp_path)
    before = snapshot(run)
    refused(siri(*eval_args(made, run)), "siri train")
    assert snapshot(run) == before


# --- corrupt but plausible files: one line naming the file and line ---------------------------------------------


SAMPLE_LINES = {
    "no key": b'{"response": "4", "correct": true}\n',
    "a list": b"[1, 2]\n",
    "not UTF-8": b'{"benchmark": "aime24\xff\xfe"}\n',
    "wrong type": None,  # the first record with sample_index "zz"
}


@pytest.mark.parametrize("kind", list(SAMPLE_LINES))
@pytest.mark.parametrize("command", ["report-only", "rerun", "patterns"])
def test_samples_line_that_is_not_a_sample(kind, command, made, tmp_path):
    """A complete line in the middle of samples.jsonl that is not a sample (not the half-written last line, which is
    repaired): refused with file and line, for every command that reads the store; nothing changes."""
    result = copy_of(made, "result", tmp_path)
    samples = result / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    bad = SAMPLE_LINES[kind] or (json.dumps({**json.loads(lines[0]), "sample_index": "zz"}).encode() + b"\n")
    samples.write_bytes(lines[0] + bad + b"".join(lines[1:]))
    argv = {"report-only": ["eval", "--report-only", result],
            "rerun": ["eval", "--model", made["model"], "--out", result, "--benchmarks", "aime24,math500",
                      "--data-dir", made["bench"], "--backend", "transformers", "--n", "2", "--limit", "1",
                      "--max-tokens", "4", "--no-progress", "--grade-workers", "1"],
            "patterns": ["analyze", "patterns", result, "--out", tmp_path / "patterns"]}[command]
    before = snapshot(result)
    refused(siri(*argv), f"{samples}:2")
    assert snapshot(result) == before and not (tmp_path / "patterns").exists()


def test_metrics_row_with_a_word_where_a_number_belongs(made, tmp_path):
    run = copy_of(made, "run", tmp_path)
    metrics = run / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[0]["accuracy"] = "high"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refused(siri("analyze", "run", run), f"{metrics}:1", "accuracy")
    assert not (run / "analysis").exists()


@pytest.mark.parametrize("card", [b"{", b"[1]", b'{"step": "x"}', b'{"step": 1, "name": "\xff"}'])
def test_broken_checkpoint_card(card, made, tmp_path):
    run = copy_of(made, "run", tmp_path)
    path = run / "checkpoints" / "final" / "siri_checkpoint.json"
    path.write_bytes(card)
    refused(siri("select", run, "--out", tmp_path / "sel", "--backend", "transformers"), str(path))
    assert not (tmp_path / "sel").exists()


def test_select_reads_a_broken_base_summary_before_evaluating(made, tmp_path):
    """It evaluated every checkpoint before reading --base."""
    base = copy_of(made, "result", tmp_path)
    (base / "summary.json").write_text("{")
    sel = tmp_path / "sel"
    refused(siri("select", made["run"], "--out", sel, "--base", base, "--backend", "transformers", "--benchmarks",
                 "aime24", "--data-dir", made["bench"], "--limit", "1", "--n", "1"), f"{base / 'summary.json'}")
    assert not sel.exists()


@pytest.mark.parametrize("what", ["config", "training file", "benchmark file"])
def test_text_that_is_not_utf8(what, made, tmp_path):
    bad = tmp_path / ("bad.yaml" if what == "config" else "bad.jsonl")
    bad.write_bytes(b"name: caf\xe9\n" if what == "config" else b'{"problem": "caf\xe9", "answer": "1"}\n')
    if what == "config":
        argv = ["train", "-c", bad, "-o", tmp_path / "run"]
    elif what == "training file":
        argv = ["train", "-c", made["config"], "-o", tmp_path / "run", f"data.train={bad}"]
    else:
        argv = ["eval", "--model", made["model"], "--out", tmp_path / "run", "--benchmarks", bad, "--backend",
                "transformers"]
    refused(siri(*argv), str(bad), "UTF-8")
    assert not (tmp_path / "run").exists()


# --- messages that said the wrong thing -------------------------------------------------------------------------


def test_model_folder_without_tokenizer_files(made, tmp_path):
    model = tmp_path / "weights-only"
    model.mkdir()
    for f in made["model"].iterdir():
        if not f.name.startswith("tokenizer"):
            os.symlink(f, model / f.name)
    refused(siri("eval", "--model", model, "--out", tmp_path / "out", "--benchmarks", "aime24", "--data-dir",
                 made["bench"], "--backend", "transformers"), "no tokenizer files", "tokenizer.json")


def test_data_dir_that_is_a_file(made, tmp_path):
    afile = tmp_path / "benchmarks.jsonl"
    afile.write_text("{}\n")
    refused(siri("eval", "--model", made["model"], "--out", tmp_path / "out", "--benchmarks", "aime24", "--data-dir",
                 afile, "--backend", "transformers"), str(afile), "is a file, not a directory")


def test_missing_base_is_named_as_base(made, tmp_path):
    run_rel = "no-such-runs/base-model"  # looks like org/name but is meant as a local folder
    (tmp_path / "no-such-runs").mkdir()
    line = refused(siri("select", made["run"], "--out", tmp_path / "sel", "--base", run_rel, "--backend",
                        "transformers", cwd=tmp_path), run_rel)
    assert "--base" in line and "--model" not in line


def test_relative_model_resolves_from_any_directory(made, tmp_path):
    """A relative --model is stored as the absolute folder, so --report-only works from anywhere; a relative path
    stored by an older siri that does not resolve fails at once, naming it (it tried the hub for ~46 s)."""
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(made["model"], work / "model")
    proc = siri("eval", "--model", "model", "--out", "res", "--benchmarks", "aime24", "--data-dir", made["bench"],
                "--backend", "transformers", "--n", "1", "--limit", "1", "--max-tokens", "2", "--no-progress",
                cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = json.loads((work / "res" / "eval_args.json").read_text())
    assert args["model"] == str(work / "model")
    assert siri("eval", "--report-only", work / "res", cwd=tmp_path).returncode == 0
    args["model"] = "./model"
    (work / "res" / "eval_args.json").write_text(json.dumps(args))
    t0 = time.monotonic()
    refused(siri("eval", "--report-only", work / "res", cwd=tmp_path), "./model", "eval_args.json")
    assert time.monotonic() - t0 < 30


# --- fuzz: damaged copies of real files, read through the public commands ---------------------------------------


DAMAGES = ("truncate", "flip", "retype")


def _mutate(data: bytes, rng: random.Random, how: str) -> tuple[str, bytes]:
    """One damage at a random place: a truncation, a flipped bit, or a JSON field of another type."""
    if how == "truncate":
        return how, data[: rng.randrange(len(data))]
    if how == "flip":
        i = rng.randrange(len(data))
        return how, data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    lines = data.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    try:
        value = json.loads(lines[i])
    except ValueError:
        return how, data
    holder = value
    while isinstance(holder, dict) and holder:  # a random field, possibly nested
        key = rng.choice(sorted(holder))
        if isinstance(holder[key], dict) and holder[key] and rng.random() < 0.6:
            holder = holder[key]
            continue
        holder[key] = rng.choice(["x", -1, 1.5, None, [], {}, True, "\u00e9"])
        break
    else:
        value = rng.choice(["x", 3, [], None])
    end = b"\n" if lines[i].endswith(b"\n") else b""
    return how, b"".join(lines[:i]) + json.dumps(value, indent=None).encode() + end + b"".join(lines[i + 1:])


# (file, command reading it): each reads one damaged file through a public command. select reads its cards before
# checking its options, so a bad --n keeps a card that survived the damage from starting an evaluation.
FUZZ_TARGETS = [
    ("result/samples.jsonl", lambda d, out: ["analyze", "patterns", d["result"], "--out", out]),
    ("result/summary.json", lambda d, out: ["compare", d["result"], "--base", d["result"], "--out", out]),
    ("result/eval_args.json", lambda d, out: ["eval", "--report-only", d["result"]]),
    ("run/metrics.jsonl", lambda d, out: ["analyze", "run", d["run"], "--out", out]),
    ("run/checkpoints/final/siri_checkpoint.json", lambda d, out: ["select", d["run"], "--out", out, "--n", "0"]),
]
FUZZ_ROUNDS = 6  # damaged copies per file kind, each damage twice (--report-only loads a tokenizer: 3)


@pytest.mark.parametrize("target", [t[0] for t in FUZZ_TARGETS])
def test_damaged_files_never_give_a_traceback(target, made, tmp_path):
    """Random truncations, byte flips and retyped fields (seeded): the command either works or refuses with one
    line on stderr and nothing on stdout; the files it reads are never changed."""
    argv = dict(FUZZ_TARGETS)[target]
    rng = random.Random(f"siri-fuzz-{target}")
    seen = []
    for k in range(3 if "eval_args" in target else FUZZ_ROUNDS):
        case = tmp_path / str(k)
        dirs = {"result": copy_of(made, "result", case), "run": copy_of(made, "run", case)}
        path = case / target
        how, damaged = _mutate(path.read_bytes(), rng, DAMAGES[k % len(DAMAGES)])
        path.write_bytes(damaged)
        reads = [dirs["result"] / "samples.jsonl", dirs["result"] / "eval_args.json", dirs["run"]]
        before = snapshot(*reads)
        proc = siri(*argv({**made, **dirs}, case / "out"))
        everything = proc.stdout + proc.stderr
        assert "Traceback" not in everything, (how, damaged[:300], everything[-3000:])
        assert proc.returncode in (0, 2), (how, everything[-3000:])
        if proc.returncode == 2:
            refused(proc)
            assert not (case / "out").exists(), how
        assert snapshot(*reads) == before, how
        seen.append((how, proc.returncode))
    assert {how for how, _ in seen} == set(DAMAGES)
