"""The CLI a newcomer meets: every bad input is one error line with the right fix,
nothing half-written, no tracebacks, no noise. CLI behaviour is checked in real subprocesses (``python -m
siri_rl.cli``), where the output is a pipe, not a terminal, as in a job log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def siri(*args, env: dict | None = None, timeout: float = 180, python_code: str | None = None):
    """Run ``python -m siri_rl.cli ARGS`` (or ``python -c CODE ARGS``) from the checkout, output captured."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("COLUMNS", None)  # rich's width comes from the pipe (80), as in a job log
    head = ["-c", python_code] if python_code else ["-m", "siri_rl.cli"]
    return subprocess.run([sys.executable, *head, *map(str, args)], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command (exit status 2, no traceback)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_qwen2_dir) -> dict[str, Path]:
    """Valid inputs of every command: an eval results dir, a training run dir, a train config (tiny Qwen2, toy
    data), so that only the output path can be wrong."""
    root = tmp_path_factory.mktemp("inputs")
    result = root / "result"
    result.mkdir()
    (result / "summary.json").write_text(json.dumps({"benchmarks": {"aime24": {"acc": 10.0, "length": 100.0}}}))
    (result / "samples.jsonl").write_text(json.dumps(
        {"benchmark": "aime24", "problem_id": "1", "sample_index": 0, "response": "wait, so 4", "correct": True}) + "\n")
    run = root / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "max_len": 64, "accuracy": 0.5, "completion_len_mean": 30.0, "tokens_generated": 100 * (s + 1)})
        + "\n" for s in range(4)))
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "cli-errors", "engine": "trl",
        "model": {"name_or_path": str(tiny_qwen2_dir), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 256},
        "schedule": {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        "training": {"rounds": 2, "prompts_per_round": 2, "group_size": 2, "device": "cpu"},
        "toy": {"train_problems": 16},
    }))
    afile = root / "a-file"
    afile.write_text("not a directory\n")
    return {"result": result, "run": run, "config": config, "model": tiny_qwen2_dir, "file": afile}


def command(name: str, out: Path, inputs: dict[str, Path], benchmarks_dir: Path) -> list:
    """The arguments of command ``name`` writing into ``out`` (a directory; `schedule` writes ``out/s.png``)."""
    return {
        "schedule": ["schedule", "--steps", "20", "--plot", out / "s.png"],
        "eval": ["eval", "--model", inputs["model"], "--out", out, "--benchmarks", "aime24", "--data-dir",
                 benchmarks_dir, "--backend", "transformers", "--n", "1", "--limit", "1", "--max-tokens", "2"],
        "compare": ["compare", inputs["result"], "--base", inputs["result"], "--out", out],
        "analyze-patterns": ["analyze", "patterns", inputs["result"], "--out", out],
        "analyze-run": ["analyze", "run", inputs["run"], "--out", out],
        "train": ["train", "-c", inputs["config"], "-o", out],
    }[name]


COMMANDS = ["schedule", "eval", "compare", "analyze-patterns", "analyze-run", "train"]


# --- item 3: tracebacks where a line belongs ---------------------------------------------------------------------


def test_training_row_without_answer_is_one_line_and_writes_no_run_dir(tmp_path, inputs):
    """A data.train row without `answer`: one line naming the row and the working skip option
    (`data.skip_invalid=true`, item 4), and no half run directory with config.yaml."""
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n" + json.dumps({"problem": "2+2?"}) + "\n")
    run = tmp_path / "run"
    proc = siri("train", "-c", inputs["config"], "-o", run, f"data.train={data}")
    line = error_line(proc)
    assert "train.jsonl: row 1 (0-based) has no answer" in line
    assert "data.skip_invalid=true" in line and "--skip-invalid" not in line
    assert not run.exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_output_path_that_is_a_file(name, tmp_path, inputs, benchmarks_dir):
    """--out / -o / --plot's folder is an existing regular file: one line, before anything is loaded."""
    proc = siri(*command(name, inputs["file"], inputs, benchmarks_dir))
    line = error_line(proc)
    assert str(inputs["file"]) in line and "is a file" in line


def _read_only_dir() -> Path:
    """A directory that cannot be created even by root (chmod does not stop root): a new entry under sysfs,
    which refuses mkdir for every user."""
    if not sys.platform.startswith("linux") or not os.path.ismount("/sys"):
        pytest.skip("needs Linux's /sys (a filesystem on which nobody, root included, can create a directory)")
    path = Path("/sys/siri-rl-test-out")
    try:
        path.mkdir()
    except OSError:
        return path
    path.rmdir()
    pytest.skip("/sys accepted a new directory here")


@pytest.mark.parametrize("name", COMMANDS)
def test_read_only_output_dir(name, inputs, benchmarks_dir):
    out = _read_only_dir()
    proc = siri(*command(name, out, inputs, benchmarks_dir))
    line = error_line(proc)
    assert str(out) in line and "cannot write" in line


def test_write_that_fails_midway_is_one_line(tmp_path, inputs):
    """A write that fails after the up-front checks (here a folder where `siri analyze run` writes tokens.png):
    one line naming the file, from the CLI's last resort for OS write errors."""
    out = tmp_path / "analysis"
    (out / "tokens.png").mkdir(parents=True)
    line = error_line(siri("analyze", "run", inputs["run"], "--out", out))
    assert f"{out / 'tokens.png'}: Is a directory" in line


def test_plot_path_that_is_a_directory(tmp_path):
    proc = siri("schedule", "--steps", "20", "--plot", tmp_path)
    assert "is a directory" in error_line(proc)


def test_failed_command_is_one_line_naming_the_log(tmp_path):
    """The launcher veRL runs under: the child's output goes to the terminal *and* a log file; a failure is one
    line naming that log and the child's last error (a real child process that fails)."""
    from siri_rl.engines import EngineError
    from siri_rl.engines.verl.launch import run_logged

    log = tmp_path / "verl" / "train.log"
    code = "import sys; print('starting'); sys.stdout.flush(); raise ValueError('Total available GPUs 0 is less than 8')"
    with pytest.raises(EngineError) as info:
        run_logged([sys.executable, "-c", code], log)
    message = str(info.value)
    assert "\n" not in message and str(log) in message and "status 1" in message
    assert "ValueError: Total available GPUs 0 is less than 8" in message
    assert "starting" in log.read_text() and "Traceback" in log.read_text()
    run_logged([sys.executable, "-c", "print('ok')"], log)  # status 0: no error
    assert log.read_text().endswith("ok\n")  # appended: a resumed run keeps the failed attempt's log


@pytest.mark.slow
def test_failed_verl_run_is_one_line_naming_the_log(tmp_path, tiny_qwen2_dir, shared_dir, benchmarks_dir):
    """A real veRL launch on a machine without the GPUs the config asks for (about 2 minutes on 2 CPU cores); the
    config's held-out validation (AIME24) read from the local benchmark files, as an offline machine must."""
    pytest.importorskip("verl")
    run = tmp_path / "run"
    proc = siri("train", "-c", "r1-distill-1.5b-siri-cosine640", "--engine", "verl", "-o", run,
                f"model.name_or_path={tiny_qwen2_dir}", f"data.train={shared_dir}/data/train/deepscaler_aime.jsonl",
                "data.max_problems=8", "data.max_prompt_length=512", "schedule.l_max=1024", "schedule.l_min=512",
                "training.rounds=2", "training.prompts_per_round=4", "training.group_size=2",
                "validation.max_tokens=1024", env={"SIRI_DATA_DIR": str(benchmarks_dir)}, timeout=900)
    # veRL's own output, its traceback included, is shown as it comes (and logged); siri adds one line, no traceback.
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "siri_rl/cli/" not in out and "RuntimeError" not in out, out[-3000:]
    line = proc.stderr.strip().splitlines()[-1]  # siri's error line: the last on stderr (veRL's output on stdout)
    assert line.startswith("error: veRL exited with status 1 (ValueError: Total available GPUs 0"), line
    assert f"full log: {run.resolve()}/verl/train.log" in line and "rerun the same command" in line
    assert "Total available GPUs 0" in (run / "verl" / "train.log").read_text()


# --- item 4: the right fix hints ---------------------------------------------------------------------------------


def test_bracketed_text_in_errors_is_printed_as_is():
    """User text in an error line is not read as rich markup (`[vllm]` used to vanish)."""
    line = error_line(siri("train", "-c", "no-such-config[vllm]"))
    assert "'no-such-config[vllm]'" in line


def test_missing_vllm_names_the_extra(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    """A machine without vLLM (its import blocked in the child: vLLM is installed here)."""
    block = "import sys; sys.modules['vllm'] = None; sys.argv[0] = 'siri'; from siri_rl.cli import main; main()"
    proc = siri("eval", "--model", tiny_qwen2_dir, "--out", tmp_path / "out", "--benchmarks", "aime24",
                "--data-dir", benchmarks_dir, "--n", "1", "--limit", "1", "--max-tokens", "2", python_code=block)
    assert "pip install 'siri-rl[vllm]'" in error_line(proc)


def test_benchmark_row_without_answer_does_not_suggest_a_missing_flag(tmp_path, tiny_qwen2_dir):
    bench = tmp_path / "mine.jsonl"
    bench.write_text(json.dumps({"problem": "2+2?"}) + "\n")
    proc = siri("eval", "--model", tiny_qwen2_dir, "--out", tmp_path / "out", "--benchmarks", bench,
                "--backend", "transformers")
    line = error_line(proc)
    assert "mine.jsonl: row 0 (0-based) has no answer" in line and "--skip-invalid" not in line
    assert not (tmp_path / "out").exists()


def test_unloadable_training_dataset_names_the_config_key(tmp_path, inputs):
    """The default training set (a hub dataset) offline and not cached: the fix is `data.train`, not the eval
    options --data-dir / $SIRI_DATA_DIR."""
    proc = siri("train", "-c", inputs["config"], "-o", tmp_path / "run", "data.train=agentica-org/DeepScaleR-Preview-Dataset",
                env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    line = error_line(proc)
    assert "Set data.train to a local" in line and "--data-dir" not in line
    assert not (tmp_path / "run").exists()


# --- item 5: a failed eval does not block its own retry ----------------------------------------------------------


def test_failed_vllm_eval_leaves_nothing_that_blocks_a_retry(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    """vLLM refuses to start (tensor_parallel_size 0, rejected by vLLM's own ParallelConfig before any engine
    process starts): one line, no eval_args.json; the retry with the transformers backend into the same --out runs.
    The transformers run shows no "Loading weights" bar (item 9)."""
    out = tmp_path / "out"
    common = ["eval", "--model", tiny_qwen2_dir, "--out", out, "--benchmarks", "aime24", "--data-dir", benchmarks_dir,
              "--n", "1", "--limit", "1", "--max-tokens", "2", "--grade-workers", "1"]
    failed = siri(*common, "--backend", "vllm", "--tensor-parallel-size", "0", env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    assert "tensor_parallel_size" in error_line(failed)
    assert not (out / "eval_args.json").exists()
    retry = siri(*common, "--backend", "transformers", "--no-progress")
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert (out / "samples.jsonl").read_text().count("\n") == 1
    assert "Loading weights" not in retry.stdout + retry.stderr


def test_arguments_of_a_run_without_samples_may_change(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    """An eval_args.json left by an older siri (or a run killed before its first sample) does not refuse a run
    with other arguments: there are no samples to protect."""
    from siri_rl.evaluate import ARGS_FILE, EvalConfig, run_eval

    out = tmp_path / "out"
    kw = dict(model=str(tiny_qwen2_dir), out=out, benchmarks=["aime24"], n=1, max_tokens=2, data_dir=str(benchmarks_dir),
              limit=1, grade_workers=1, progress=False)
    out.mkdir()
    (out / ARGS_FILE).write_text(json.dumps(EvalConfig(**kw, backend="vllm").identity()))
    summary = run_eval(EvalConfig(**kw, backend="transformers"))
    assert summary["benchmarks"]["aime24"]["n_samples"] == 1
    assert json.loads((out / ARGS_FILE).read_text())["backend"] == "transformers"


# --- item 7: a local path that does not exist, an unreachable hub -----------------------------------------------


@pytest.mark.parametrize("model", ["/nonexistent/run/checkpoints/cycle1-compressed", "./runs/no-such-run/final",
                                   "runs/no-such-run/checkpoints/final", "~/no-such-model-dir"])
def test_missing_local_model_is_no_such_directory(model, tmp_path):
    proc = siri("eval", "--model", model, "--out", tmp_path / "out", "--benchmarks", "aime24")
    line = error_line(proc)
    assert f"no such local directory: {model}" in line and "Repo id" not in line
    assert not (tmp_path / "out").exists()


def test_train_with_missing_local_model_is_no_such_directory(tmp_path):
    proc = siri("train", "-c", "r1-distill-1.5b-siri-cosine640", "-o", tmp_path / "run",
                "model.name_or_path=/nonexistent/model")
    assert "no such local directory: /nonexistent/model" in error_line(proc)
    assert not (tmp_path / "run").exists()


def test_unreachable_hub_fails_fast(tmp_path):
    """A hub id that is not cached, with the hub unreachable (a closed local port: connection refused at once):
    one clear line within seconds, not ~50 s of retries. Offline mode (HF_HUB_OFFLINE=1) says so."""
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
           "TRANSFORMERS_OFFLINE": "0"}
    t0 = time.monotonic()
    proc = siri("eval", "--model", "someorg/somemodel", "--out", tmp_path / "out", "--benchmarks", "aime24",
                env=env, timeout=40)
    assert time.monotonic() - t0 < 20
    line = error_line(proc)
    assert "someorg/somemodel" in line and "cannot reach" in line and "http://127.0.0.1:9" in line
    offline = siri("eval", "--model", "someorg/somemodel", "--out", tmp_path / "out", "--benchmarks", "aime24",
                   env={**env, "HF_HUB_OFFLINE": "1"}, timeout=40)
    assert "HF_HUB_OFFLINE" in error_line(offline) and "not in the local cache" in error_line(offline)


# --- item 9: noise -----------------------------------------------------------------------------------------------


def test_resume_is_quiet(tmp_path, tiny_toy_model):
    """A non-toy TRL run stopped after one round, resumed by `siri train --resume`: no transformers "missing keys
    ['lm_head.weight']" (the tied output embedding is re-tied to the input embedding, not missing), no "Loading
    weights" / "Writing model shards" bars (the resumed run saves its checkpoints), and a short human summary at
    the end instead of a JSON dict."""
    from siri_rl.config import load_config
    from siri_rl.engines.trl import train
    from siri_rl.toy.tokenizer import build_toy_tokenizer

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "quiet", "engine": "trl",
        "model": {"name_or_path": str(tiny_toy_model), "dtype": "float32"},
        "data": {"train": "toy", "max_prompt_length": 64},
        "schedule": {"kind": "cosine", "l_max": 12, "l_min": 4, "cycle": 4},
        "training": {"rounds": 2, "prompts_per_round": 2, "group_size": 4, "device": "cpu", "seed": 1},
        "toy": {"train_problems": 16},
        "trl": {"generation_kwargs": {"suppress_tokens": [build_toy_tokenizer().eos_token_id]}},
    }))
    run = tmp_path / "run"
    from siri_rl.toy import toy_train_rows

    cfg = load_config(config)
    train(cfg, output_dir=run, stop_after_rounds=1, progress=False, train_rows=toy_train_rows(cfg))  # round 1
    resumed = siri("train", "-c", config, "-o", run, "--resume")
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert "missing keys" not in out and "Writing model shards" not in out and "Loading weights" not in out, out
    assert "{" not in resumed.stdout, resumed.stdout
    assert f"run directory: {run}" in resumed.stdout and "2 rounds" in resumed.stdout


def test_dependency_extras_exist_as_spelled():
    """pip (23.x, which does not normalise extra names) warned "math-verify 0.9.0 does not provide the extra
    'antlr4_9_3'": every extra named in the dependencies must be one the installed package declares, as spelled.
    math-verify >= 0.9 needs none: its latex2sympy2_extended requires an ANTLR runtime (4.9.3 to 4.13.2) itself."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    deps = [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in deps:
        if req.extras:
            provided = md.metadata(req.name).get_all("Provides-Extra") or []
            assert req.extras <= set(provided), f"{req} names extras {req.extras - set(provided)} not in {provided}"
    latex = [Requirement(r) for r in md.requires("latex2sympy2_extended") or []]
    assert any(r.name == "antlr4-python3-runtime" and r.marker is None for r in latex)


# --- item 10: small things ---------------------------------------------------------------------------------------


def test_long_error_stays_on_one_line(tmp_path):
    """Output to a pipe is 80 columns wide for rich: an error line must not be wrapped there."""
    model = "/nonexistent/" + "a-long-run-directory-name/" * 5 + "checkpoints/final"
    line = error_line(siri("eval", "--model", model, "--out", tmp_path / "out", "--benchmarks", "aime24"))
    assert len(line) > 100 and model in line


def test_schedule_json_for_too_many_rounds_is_refused_at_once():
    t0 = time.monotonic()
    proc = siri("schedule", "--steps", "100000000", "--json", timeout=30)
    assert time.monotonic() - t0 < 10
    assert "--steps 100000000" in error_line(proc)


def test_benchmark_file_is_labelled_by_its_stem(tmp_path, tiny_qwen2_dir, benchmarks_dir):
    from siri_rl.evaluate import EvalConfig, read_samples, run_eval

    bench = tmp_path / "sets" / "my-set.jsonl"
    bench.parent.mkdir()
    bench.write_text((benchmarks_dir / "aime24.jsonl").read_text())
    out = tmp_path / "out"
    summary = run_eval(EvalConfig(model=str(tiny_qwen2_dir), out=out, benchmarks=[str(bench)], n=1, max_tokens=2,
                                  limit=1, backend="transformers", grade_workers=1, progress=False))
    assert list(summary["benchmarks"]) == ["my-set"]
    assert {r["benchmark"] for r in read_samples(out / "samples.jsonl")} == {"my-set"}
    assert str(bench) not in (out / "summary.md").read_text().split("\n\n", 2)[-1]  # tables: the stem only


def test_benchmark_files_with_one_stem_are_refused(tmp_path):
    from siri_rl.evaluate import EvalConfig, EvalError

    with pytest.raises(EvalError, match="same name"):
        EvalConfig(model="m", out=tmp_path, benchmarks=["a/x.jsonl", "b/x.jsonl"])


def test_toy_summary_has_no_minus_zero_and_keeps_the_legend():
    from siri_rl.toy.run import render_summary

    def result(name, length):
        return {"name": name, "step": None if name == "base" else 10, "train_cap": None if name == "base" else 36,
                "accuracy": 0.5, "mean_length": length, "wait_per_response": 1.0, "by_difficulty": {"3": 1.0}}

    _, markdown = render_summary([result("base", 100.0), result("cycle1-compressed", 100.2),
                                  result("cycle1-expanded", 60.0)], title="t")
    assert "-0%" not in markdown and "+0%" not in markdown and "| 0% |" in markdown
    assert "| -40% |" in markdown
    assert "Δlen: mean length vs base" in markdown and "checks:" in markdown


def _legend_clear_of_data(fig) -> list[str]:
    """Legends of ``fig`` that lie over an axes' plotting area (where they can hide a curve)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = []
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None] + list(fig.legends)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if box.overlaps(ax.get_window_extent(renderer)):
                hidden.append(" / ".join(t.get_text() for t in legend.get_texts()))
    return hidden


def _metrics_rows(n=120):
    from siri_rl.schedule import make_schedule

    sched = make_schedule("cosine", l_max=256, l_min=36, cycle=40)
    return [{"step": t, "max_len": sched(t), "accuracy": 0.9 - 0.5 * (sched(t) < 60), "completion_len_mean": 40.0,
             "tokens_generated": 1000 * (t + 1) + 10 * sched(t) * t} for t in range(n)]


def test_dynamics_legend_hides_no_curve_and_explains_the_faint_line():
    import matplotlib.pyplot as plt

    from siri_rl.plots import training_dynamics_figure

    fig = training_dynamics_figure(_metrics_rows(), smooth=3)
    try:
        assert _legend_clear_of_data(fig) == []
        labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert any("per round" in t for t in labels) and any("mean of 3 rounds" in t for t in labels)
    finally:
        plt.close(fig)


def test_tokens_legend_hides_no_bar():
    import matplotlib.pyplot as plt

    from siri_rl.analysis import tokens_figure

    fig = tokens_figure(_metrics_rows())
    try:
        assert _legend_clear_of_data(fig) == []
    finally:
        plt.close(fig)
