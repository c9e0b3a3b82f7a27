"""`siri train` as a user runs it: cheap checks before the toy base model, --resume from the stored
config, Ctrl-C in a real terminal, and --resume of a finished toy run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_train_trl import _cfg
from typer.testing import CliRunner

from siri_rl.cli import app

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _text(result) -> str:
    """The output with rich's wrapping undone (the error line itself is another fix's business)."""
    return " ".join(result.output.split())


def _hashes(run: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and str(p.relative_to(run)) not in skip}


# --- item 6: the cheap checks come before the toy base model is built or loaded ---------------------------


def _bad_call(case: str, tmp: Path) -> tuple[list[str], str]:
    run = tmp / "run"
    if case == "holds a run":
        run.mkdir()
        (run / "metrics.jsonl").write_text('{"step": 0, "max_len": 48}\n')
        return ["-o", str(run)], "already holds a run"
    if case == "nothing to resume":
        return ["-o", str(run), "--resume"], "holds no run to resume"
    if case == "batch geometry":
        return ["-o", str(run), "training.updates_per_round=3"], "not divisible"
    if case == "unknown trl key":
        return ["-o", str(run), "trl.per_device_batch_size=2"], "unknown trl"
    if case == "output is a file":
        (tmp / "notes.txt").write_text("x")
        return ["-o", str(tmp / "notes.txt")], "is a file"
    assert case == "output inside a file"
    (tmp / "notes.txt").write_text("x")
    return ["-o", str(tmp / "notes.txt" / "run")], "notes.txt is a file"


@pytest.mark.parametrize("case", ["holds a run", "nothing to resume", "batch geometry", "unknown trl key",
                                  "output is a file", "output inside a file"])
def test_bad_toy_calls_fail_before_the_base_model(tmp_path, monkeypatch, case):
    """With a cold toy cache the old CLI built the base model (minutes for `toy`) before each of these errors."""
    cache = tmp_path / "toy-cache"
    monkeypatch.setenv("SIRI_TOY_CACHE", str(cache))
    args, match = _bad_call(case, tmp_path)
    result = runner.invoke(app, ["train", "-c", "toy-quick", *args])
    assert result.exit_code == 2, result.output
    assert _text(result).startswith("error: ") and match in _text(result), result.output
    assert not cache.exists() or not any(cache.iterdir())


def test_bad_toy_call_fails_in_seconds_in_a_fresh_process(tmp_path):
    cache = tmp_path / "toy-cache"
    (tmp_path / "notes.txt").write_text("x")
    env = {**os.environ, "SIRI_TOY_CACHE": str(cache)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "siri_rl.cli", "train", "-c", "toy-quick", "-o",
                           str(tmp_path / "notes.txt")], env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is a file" in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s"  # imports only (the toy-quick base alone takes ~40 s here)
    assert not cache.exists()


# --- item 2: --resume reads the run's config.yaml -----------------------------------------------------------


def _stored_run(tmp_path: Path, overrides: list[str]) -> Path:
    """A run directory holding the config.yaml the engine writes for `-c toy-quick OVERRIDES`."""
    from importlib.resources import files

    from siri_rl.config import load_config

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(Path(str(files("siri_rl") / "configs" / "toy-quick.yaml")), overrides)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # as both engines write it
    return run


def _dry_run(*args: str) -> dict:
    result = runner.invoke(app, ["train", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_resume_uses_the_stored_config_and_names_every_difference(tmp_path):
    """Started with training.rounds=12 schedule.cycle=8; the old CLI resumed with the defaults of -c (cycle 4 for
    toy-quick, 40 for the default toy), capping the remaining rounds by another schedule, and overwrote config.yaml."""
    from siri_rl.schedule import make_schedule

    run = _stored_run(tmp_path, ["training.rounds=12", "schedule.cycle=8"])
    stored = (run / "config.yaml").read_bytes()
    info = _dry_run("-o", str(run), "--resume")
    assert info["config"]["schedule"]["cycle"] == 8 and info["config"]["training"]["rounds"] == 12
    sched = make_schedule("cosine", l_max=48, l_min=24, cycle=8)
    assert [c["max_len"] for c in info["first_caps"]] == [sched(s) for s in range(8)]
    # -c and the overrides may repeat the stored config ...
    assert _dry_run("-c", "toy-quick", "-o", str(run), "--resume", "training.rounds=12",
                    "schedule.cycle=8")["config"] == info["config"]
    # ... or extend it by rounds, given explicitly
    assert _dry_run("-o", str(run), "--resume", "training.rounds=20")["config"]["training"]["rounds"] == 20
    for args, named in [
        (["-c", "toy-quick"], ["schedule.cycle 8 -> 4", "training.rounds 12 -> 6"]),
        (["schedule.cycle=4"], ["schedule.cycle 8 -> 4"]),
        (["--engine", "verl"], ['engine "trl" -> "verl"']),
        (["training.rounds=20", "schedule.l_min=16"], ["schedule.l_min 24 -> 16", "training.rounds 12 -> 20"]),
        (["training.rounds=6"], ["not shortened"]),
    ]:
        result = runner.invoke(app, ["train", "-o", str(run), "--resume", "--dry-run", *args])
        assert result.exit_code == 2, (args, result.output)
        assert all(n in _text(result) for n in named), (args, result.output)
    assert (run / "config.yaml").read_bytes() == stored
    result = runner.invoke(app, ["train", "--resume", "--dry-run"])
    assert result.exit_code == 2 and "needs --output-dir" in _text(result)


# --- the toy sits above the engines -------------------------------------------------------------------------


def test_toy_model_on_verl_is_one_line(tmp_path):
    """veRL would receive the name "toy" as a model path (the old CLI passed it through)."""
    result = runner.invoke(app, ["train", "-c", "toy-quick", "--engine", "verl", "-o", str(tmp_path / "run"),
                                 "--dry-run"])
    assert result.exit_code == 2, result.output
    assert _text(result).startswith("error: model.name_or_path: toy (the toy base model) runs on --engine trl only")


def test_toy_data_reaches_verl_as_a_file(tmp_path, monkeypatch, tiny_qwen2_dir):
    """data.train: toy with a real model on veRL (which reads data.train from disk): the toy's problems as a JSONL
    file, the same file on --resume, so the stored config matches."""
    from siri_rl.cli.train import _train_config
    from siri_rl.data import load_problems
    from siri_rl.toy import toy_train_rows

    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    overrides = [f"model.name_or_path={tiny_qwen2_dir}", "toy.train_problems=8"]
    cfg = _train_config("toy-quick", overrides, "verl", None, False)
    assert cfg.engine == "verl" and cfg.data.train.endswith(".jsonl")
    rows = load_problems(cfg.data.train)
    assert [(r["problem"], r["answer"]) for r in rows] == [(r["problem"], r["answer"]) for r in toy_train_rows(cfg)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # as veRL stores it
    assert _train_config("toy-quick", overrides, "verl", run, True).data.train == cfg.data.train
    assert _train_config(None, [], None, run, True).data.train == cfg.data.train


# --- item 8: Ctrl-C in a terminal -----------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_says_where_to_continue_and_restores_the_terminal(tiny_toy_model, tmp_path):
    """SIGINT to the process group of `siri train` in a pseudo-terminal (what Ctrl-C does) once a round is logged:
    exit 130, the bar ends its line, the cursor is shown again, one line says how to continue, no traceback."""
    import pty

    cfg_file = tmp_path / "cfg.yaml"
    # far more rounds than the signal needs: a tiny model runs 200 rounds in 10 s, which a loaded machine has let
    # finish before the interrupt landed
    cfg_file.write_text(yaml.safe_dump(_cfg(tiny_toy_model, rounds=5000).to_dict()))
    run = tmp_path / "run"
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(TERM="xterm-256color", COLUMNS="120", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "siri_rl.cli", "train", "-c", str(cfg_file), "-o", str(run)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    sent, deadline = False, time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            import select

            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n"):
                os.killpg(proc.pid, signal.SIGINT)
                sent = True
            if proc.poll() is not None and not ready:
                break
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None  # still running: said below, with what it printed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
    text = out.decode(errors="replace")
    assert rc is not None, f"no exit {'after the SIGINT' if sent else 'and no SIGINT sent'}:\n{text[-3000:]}"
    assert sent, text[-3000:]
    assert rc == 130, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l") >= 0  # the cursor hidden by the bar is shown again
    at = text.index("interrupted at round ")
    assert ANSI.sub("", text[:at]).rstrip(" ").endswith("\n")  # the bar's line was ended before the message
    line = text[at:].splitlines()[0]
    assert re.fullmatch(r"interrupted at round \d+ of 5000; continue with --resume \(.*\)", line.strip()), line


# --- item 1: --resume of a finished toy run -----------------------------------------------------------------


@pytest.mark.slow
def test_resume_of_a_finished_toy_run_changes_nothing(tmp_path, monkeypatch):
    """`siri train -c toy-quick -o R && siri train -o R --resume`: the second call trains nothing, rewrites
    nothing and prints the summary; after a kill during the final evaluation (no summary.json) it evaluates and
    writes the summary, and leaves metrics.jsonl and every checkpoint as they were."""
    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    small = ["training.rounds=2", "toy.base.sft_steps=4", "toy.eval.per_difficulty=1"]
    result = runner.invoke(app, ["train", "-c", "toy-quick", "-o", str(run), *small])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "final" / "siri_checkpoint.json").exists()
    before = _hashes(run)
    summary = json.loads((run / "summary.json").read_text())
    for args in (["-c", "toy-quick", "-o", str(run), "--resume", *small], ["-o", str(run), "--resume"]):
        result = runner.invoke(app, ["train", *args])
        assert result.exit_code == 0, result.output
        assert _hashes(run) == before
        assert "--resume changed nothing" in _text(result) and "| final | 1 |" in result.output
    (run / "summary.json").unlink()  # killed during the evaluation
    result = runner.invoke(app, ["train", "-o", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    # The evaluation resumes from each RUN/eval/<model>/samples.jsonl (kept as they are) and rewrites the
    # summaries derived from them (siri eval's own resume), as it rewrites the run's.
    derived = {"summary.json", "summary.md", *(str(p.relative_to(run)) for p in run.glob("eval/*/*")
                                               if p.name in ("summary.json", "summary.md", "budget_curve.png"))}
    after = _hashes(run, skip=tuple(derived))
    assert after == {k: v for k, v in before.items() if k not in derived}
    again = json.loads((run / "summary.json").read_text())
    assert again["rounds"] == 2 and again["results"] == summary["results"]


def test_dry_run_checks_the_toy_base_spec_without_building_it(tmp_path, monkeypatch):
    """A bad toy.base key used to pass --dry-run and fail only in the real run, after the resolved config looked
    fine; now both give the same one-line error, and the dry run builds nothing."""
    monkeypatch.setenv("SIRI_TOY_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["train", "toy.base.anchor_prob=2", "--dry-run"])
    assert result.exit_code != 0
    assert "toy.base: anchor_prob must be a probability in [0, 1], got 2" in _text(result)
    assert "Traceback" not in result.output
    info = _dry_run("-c", "toy-search", "toy.base.anchor_prob=1.0", "toy.base.hunch_depths=[2,3,4]")
    assert info is not None and not (tmp_path / "cache").exists()
