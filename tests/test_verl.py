"""veRL engine, CPU parts with real veRL objects: the reward through veRL's reward loop, the parquet export through
veRL's RL dataset, and the launch overrides through veRL's Hydra composition and config validation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("verl", reason="veRL is not installed: pip install 'siri-rl[verl]'")

from siri_rl.config import ConfigError, config_from_dict  # noqa: E402
from siri_rl.data import load_problems  # noqa: E402
from siri_rl.engines.verl import AGENT_LOOP_YAML, launch  # noqa: E402
from siri_rl.engines.verl.dataset import TRAIN_DATA_SOURCE, write_verl_parquet  # noqa: E402
from siri_rl.engines.verl.reward import ENDED_KEY, MAX_LEN_KEY, RESPONSE_TOKENS_KEY  # noqa: E402
from siri_rl.prompts import build_messages, prompt_token_ids  # noqa: E402

warnings.filterwarnings("ignore", message=".*engine is not available.*")


def experiment(model_path: str, **sections) -> object:
    data = {
        "name": "verl-test",
        "model": {"name_or_path": model_path},
        "data": {"train": "unused.jsonl", "max_prompt_length": 512},
        "schedule": {"kind": "cosine", "l_max": 1024, "l_min": 512, "cycle": 8},
        "training": {"rounds": 16, "prompts_per_round": 4, "group_size": 2},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


def overrides_for(cfg, tmp_path) -> list[str]:
    return launch.build_overrides(
        cfg,
        train_file=tmp_path / "train.parquet",
        val_file=tmp_path / "val.parquet",
        checkpoint_dir=tmp_path / "ckpt",
        metrics_path=tmp_path / "metrics.jsonl",
    )


@pytest.fixture(scope="module")
def verl_config(tiny_qwen2_dir, tmp_path_factory):
    """veRL's composed ppo_trainer config for a SIRI run on the tiny Qwen2 (saved with the R1 tokenizer)."""
    tmp = tmp_path_factory.mktemp("verl-config")
    return launch.compose_config(overrides_for(experiment(str(tiny_qwen2_dir)), tmp))


# --- reward through veRL's reward loop -------------------------------------------------------------------------


def scored(
    worker, tokenizer, response: str, gold: str, *, max_len: int | None, ended: bool = True, pad_to=None
):
    """Score one response the way veRL's agent-loop worker sends it to a reward-loop worker."""
    prompt = tokenizer.apply_chat_template(
        build_messages("What is 2+2?"), tokenize=True, add_generation_prompt=True
    )
    if hasattr(prompt, "keys"):
        prompt = prompt["input_ids"]
    response_ids = tokenizer.encode(response, add_special_tokens=False) + (
        [tokenizer.eos_token_id] if ended else []
    )
    if pad_to is not None:
        response_ids = response_ids[:pad_to]
    prompts = torch.tensor([prompt])
    responses = torch.tensor([response_ids])
    from verl.protocol import DataProto

    data = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": torch.ones(1, prompts.shape[1] + responses.shape[1], dtype=torch.int64),
        },
        non_tensors={
            "data_source": np.array([TRAIN_DATA_SOURCE], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": gold}], dtype=object),
            "extra_info": np.array([{"index": 0, "split": "train"}], dtype=object),
            "tool_extra_fields": np.array(
                [
                    {
                        MAX_LEN_KEY: max_len,
                        RESPONSE_TOKENS_KEY: len(response_ids),
                        ENDED_KEY: bool(response_ids) and response_ids[-1] == tokenizer.eos_token_id,
                    }
                ],
                dtype=object,
            ),
            "__num_turns__": np.array([2]),
        },
    )
    return worker.loop.run_until_complete(worker.compute_score(data))  # the loop veRL bound the worker to


def test_reward_scores_r1_responses_through_verl_reward_loop(verl_config, tokenizer, shared_dir):
    """veRL's RewardLoopWorker loads our compute_score from reward.custom_reward_function.path and grades real
    R1-style responses: correct/equivalent = 1, wrong or unfinished thinking = 0, cap and clipping reported."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(verl_config)
    aime = json.loads((shared_dir / "data/benchmarks/aime24.jsonl").read_text().splitlines()[0])
    gold = str(aime["answer"])  # 204
    think = "Okay, so Aya walks 9 km. Let me set up 9/s + t/60 = 4 and 9/(s+2) + t/60 = 2.4. Wait, solve: s = 2.5."
    correct = f"{think}\n</think>\n\nThe walk takes $\\boxed{{{gold}}}$ minutes."

    out = scored(worker, tokenizer, correct, gold, max_len=600)
    info = out["reward_extra_info"]
    assert out["reward_score"] == 1.0 and info["acc"] == 1.0
    assert info["max_len"] == 600 and info["hit_cap"] == 0.0 and 0 < info["response_tokens"] < 600

    wrong = correct.replace(f"\\boxed{{{gold}}}", "\\boxed{205}")
    assert scored(worker, tokenizer, wrong, gold, max_len=600)["reward_score"] == 0.0

    # LaTeX gold from MATH500, answered in an equivalent form: math-verify decides.
    assert (
        scored(
            worker, tokenizer, f"{think}</think>\n\\boxed{{4\\frac{{2}}{{3}}}}", "\\frac{14}{3}", max_len=600
        )["reward_score"]
        == 1.0
    )

    # Cut by the cap mid-thought: a box inside the unfinished thinking does not count, and the cut is reported.
    cut_ids = tokenizer.encode(
        f"{think} Maybe \\boxed{{{gold}}} but let me double-check", add_special_tokens=False
    )
    cap = len(cut_ids)
    cut = scored(
        worker,
        tokenizer,
        f"{think} Maybe \\boxed{{{gold}}} but let me double-check",
        gold,
        max_len=cap,
        ended=False,
    )
    assert cut["reward_score"] == 0.0 and cut["reward_extra_info"]["hit_cap"] == 1.0

    # A server that ignored the cap (generated more than L tokens) earns nothing even with the right answer.
    assert scored(worker, tokenizer, correct, gold, max_len=10)["reward_score"] == 0.0

    # Validation rollouts carry no cap.
    val = scored(worker, tokenizer, correct, gold, max_len=None)
    assert val["reward_score"] == 1.0 and val["reward_extra_info"]["max_len"] == -1.0


def test_reward_loop_keeps_a_special_think_end(think_special_model_dir, tmp_path):
    """With a tokenizer that marks </think> special, veRL's reward loop (our SiriRewardManager, chosen by the launch
    overrides) still grades the answer after it; veRL's naive manager would decode it away and score 0."""
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    config = launch.compose_config(overrides_for(experiment(str(think_special_model_dir)), tmp_path))
    worker = RewardLoopWorker(config)
    tok = AutoTokenizer.from_pretrained(think_special_model_dir)
    assert tok.added_tokens_decoder[tok.convert_tokens_to_ids("</think>")].special
    out = scored(worker, tok, "2 + 2 = 4.\n</think>\n\nThe answer is $\\boxed{4}$.", "4", max_len=600)
    assert out["reward_score"] == 1.0
    assert type(worker.reward_manager).__name__ == "SiriRewardManager"


def test_reward_tolerates_malformed_rows():
    from siri_rl.engines.verl.reward import compute_score

    assert compute_score("x", None, "5")["score"] == 0.0
    assert compute_score("x", "</think>\\boxed{5}", None)["score"] == 0.0
    assert compute_score("x", "</think>\\boxed{5}", ["5"], extra_info="junk")["score"] == 1.0
    assert compute_score("x", "\\boxed{5}", "5", require_think_end=False)["score"] == 1.0
    assert compute_score("x", "\\boxed{5}", "5")["score"] == 0.0  # R1 models must finish thinking


# --- parquet export through veRL's RL dataset ------------------------------------------------------------------


def test_parquet_export_loads_with_verl_rl_dataset(verl_config, tokenizer, shared_dir, tmp_path):
    from torch.utils.data import DataLoader
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    problems = load_problems(shared_dir / "data/train/deepscaler_aime.jsonl")[:12]
    path = write_verl_parquet(problems, tmp_path / "train.parquet")
    # veRL's prompt-length filter must count the same prompt tokens as the core does: with a limit at the median
    # length, exactly the prompts the core measures as fitting survive.
    lengths = [len(prompt_token_ids(p["problem"], tokenizer)) for p in problems]
    limit = sorted(lengths)[len(lengths) // 2]
    fitting = [p for p, n in zip(problems, lengths, strict=True) if n <= limit]
    data_config = OmegaConf.create(OmegaConf.to_container(verl_config.data, resolve=True))
    data_config.max_prompt_length = limit
    dataset_cls = get_dataset_class(data_config)
    dataset = dataset_cls(data_files=str(path), tokenizer=tokenizer, config=data_config)
    assert 0 < len(dataset) == len(fitting) < len(problems)

    row = dataset[1]
    assert row["raw_prompt"] == build_messages(fitting[1]["problem"])
    assert row["data_source"] == TRAIN_DATA_SOURCE
    assert row["reward_model"]["ground_truth"] == fitting[1]["answer"]
    assert row["extra_info"]["id"] == fitting[1]["id"] and row["index"] == problems.index(fitting[1])

    batch = DataProto.from_single_dict(next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_fn))))
    assert len(batch) == 2 and list(batch.non_tensor_batch["data_source"]) == [TRAIN_DATA_SOURCE] * 2


def test_parquet_export_rejects_rows_without_answers(tmp_path):
    from siri_rl.errors import DataError

    with pytest.raises(DataError, match="no problem text or answer"):
        write_verl_parquet([{"id": "a", "problem": "1+1?", "answer": ""}], tmp_path / "x.parquet")


# --- launch overrides through veRL's Hydra composition and validation -----------------------------------------


def test_launch_overrides_compose_and_validate(verl_config, tmp_path):
    c = verl_config
    assert c.algorithm.adv_estimator == "grpo" and not c.algorithm.use_kl_in_reward
    a = c.actor_rollout_ref.actor
    assert (a.clip_ratio_low, a.clip_ratio_high, a.loss_agg_mode, a.use_kl_loss) == (
        0.2,
        0.28,
        "token-mean",
        False,
    )
    assert a.optim.lr == 1e-6 and a.ppo_max_token_len_per_gpu >= 512 + 1024
    r = c.actor_rollout_ref.rollout
    assert (r.name, r.n, r.response_length, r.prompt_length) == ("vllm", 2, 1024, 512)
    assert r.agent.default_agent_loop == "siri_single_turn"
    assert r.agent.agent_loop_manager_class == "siri_rl.engines.verl.manager.SiriAgentLoopManager"
    assert r.agent.agent_loop_config_path == str(AGENT_LOOP_YAML) and AGENT_LOOP_YAML.is_file()
    assert c.reward.custom_reward_function.path == "pkg://siri_rl.engines.verl.reward"
    assert c.trainer.total_training_steps == 16 and c.trainer.max_actor_ckpt_to_keep is None
    assert c.siri.total_rounds == 16 and c.siri.save_every is None  # the manager's save plan (checkpoints.py)
    assert dict(c.siri.schedule) == {
        "kind": "cosine", "l_max": 1024, "l_min": 512, "cycle": 8, "stages": None, "round_to": None,
        "tolerance": None, "patience": None, "window": None,  # the adaptive kind's keys, unused
    }  # fmt: skip
    # A schedule of another kind replaces the recipe's cosine whole (no l_min or cycle left over).
    stages = experiment("/m", schedule={"kind": "stages", "l_max": 1024, "stages": [[0, 512], [8, 1024]]})
    composed = launch.compose_config(overrides_for(stages, tmp_path))
    assert launch_schedule(composed) == stages.schedule and composed.siri.schedule.cycle is None

    # The verl: section goes last and wins; veRL's validation still runs on the result.
    cfg = experiment(
        "/m", verl={"actor_rollout_ref": {"rollout": {"name": "sglang"}}, "trainer.n_gpus_per_node": 4}
    )
    composed = launch.compose_config(overrides_for(cfg, tmp_path))
    assert composed.actor_rollout_ref.rollout.name == "sglang" and composed.trainer.n_gpus_per_node == 4

    # A setting veRL's own validation rejects fails composition.
    bad = experiment("/m", verl={"actor_rollout_ref.actor.use_dynamic_bsz": False})
    with pytest.raises(ConfigError, match="veRL rejected.*ppo_micro_batch_size"):
        launch.compose_config(overrides_for(bad, tmp_path))


def test_training_and_validation_data_for_a_run(shared_dir, monkeypatch):
    """Training problems come from data.train (capped by data.max_problems); validation from
    validation.benchmarks (the first validation.limit of each), each row tagged with its benchmark as veRL's
    data_source (so veRL reports validation per benchmark)."""
    from siri_rl.engines.verl.dataset import load_run_problems, to_verl_rows

    monkeypatch.setenv("SIRI_DATA_DIR", str(shared_dir / "data" / "benchmarks"))
    cfg = experiment(
        "/m",
        data={"train": str(shared_dir / "data/train/deepscaler_aime.jsonl"), "max_problems": 5},
        validation={"benchmarks": ["aime24", "amc"]},
    )
    train, val = load_run_problems(cfg)
    assert len(train) == 5
    sources = [row["data_source"] for row in to_verl_rows(val, split="test")]
    assert sources.count("aime24") == 30 and sources.count("amc") == 83
    cfg = experiment("/m", data={"train": str(shared_dir / "data/train/deepscaler_aime.jsonl")},
                     validation={"benchmarks": ["aime24", "amc"], "limit": 4})
    sources = [row["data_source"] for row in to_verl_rows(load_run_problems(cfg)[1], split="test")]
    assert sources == ["aime24"] * 4 + ["amc"] * 4


def test_tensorrt_llm_rollout_is_rejected(tmp_path):
    cfg = experiment("/m", verl={"actor_rollout_ref.rollout.name": "trtllm"})
    with pytest.raises(ConfigError, match="TensorRT-LLM ignores it"):
        overrides_for(cfg, tmp_path)


def test_checkpoint_steps_follow_troughs_and_peaks():
    from siri_rl.engines.verl.checkpoints import checkpoint_steps
    from siri_rl.schedule import make_schedule

    s = make_schedule("cosine", l_max=16384, l_min=8192, cycle=640)
    # The paper's run: 3 cycles of T=640; troughs at rounds 320/960/1600, peaks at 640/1280 and the final round;
    # the model after round r (what the TRL engine exports for round r) is veRL's global_step_{r+1}.
    assert checkpoint_steps(s, 1920) == {
        321: "cycle1-compressed", 641: "cycle1-expanded", 961: "cycle2-compressed",
        1281: "cycle2-expanded", 1601: "cycle3-compressed", 1920: "cycle3-expanded",
    }  # fmt: skip
    # baselines without troughs/peaks still end with a comparable model, as in the TRL engine
    assert checkpoint_steps(make_schedule("constant", l_max=8192), 100) == {100: "final"}
    two_stage = make_schedule("stages", l_max=16384, stages=[(0, 8192), (320, 16384)])
    assert checkpoint_steps(two_stage, 1000) == {1000: "final"}


SHIPPED_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "siri_rl" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_save_plan_of_every_shipped_config(path, tmp_path):
    """The steps veRL saves at under veRL's own save condition (ray_trainer.py:1704-1707) with the save_freq the
    manager sets before each step: every trough/peak model (global_step_{r+1}), every training.save_every rounds
    and the last round, and nothing else; a few dozen at most over the paper's 1920 rounds (the old gcd rule saved
    all 1920 steps of stair T=480). The manager's plan comes from the config veRL composes."""
    from siri_rl.adaptive import AdaptiveSchedule
    from siri_rl.config import load_config
    from siri_rl.engines.verl.checkpoints import save_plan

    cfg = load_config(path, ["engine=verl"])
    rounds, every = cfg.training.rounds, cfg.training.save_every
    composed = launch.compose_config(overrides_for(cfg, tmp_path), validate=False)
    plan = save_plan(launch_schedule(composed), composed.siri.total_rounds, composed.siri.save_every)

    saved = [g for g in range(1, rounds + 1) if (f := plan.save_freq_at(g)) > 0 and (g == rounds or g % f == 0)]
    if isinstance(cfg.schedule, AdaptiveSchedule):  # closed loop: the manager adds turning points as they happen
        exports = {}
    else:
        exports = {r + 1: name for r, name in cfg.schedule.checkpoints(rounds)}
    assert exports.items() <= plan.exports.items()
    resumable = range(every, rounds + 1, every) if every else ()
    assert saved == plan.steps == sorted({*plan.exports, *resumable, rounds})
    assert len(saved) <= 30 and plan.to_dict()["saves"] == len(saved)
    if path.stem == "r1-distill-1.5b-siri-stair480":
        assert len(saved) == 15  # 160, 320, 480, 640, 720, 800, 960, ..., 1920 (exports 480, 720, ... 1920)
    if path.stem == "r1-distill-1.5b-siri-cosine640":
        assert len(saved) == 17  # 12 resumable (every 160) + 321, 641, 961, 1281, 1601 (1920 is both)


def launch_schedule(composed):
    from siri_rl.engines.verl.manager import schedule_from_verl_config

    return schedule_from_verl_config(composed)


def test_manager_round_metrics_are_the_trl_engines_fields():
    """The veRL manager's metrics row has the rollout fields the TRL engine writes (siri_rl.run_dir.rollout_stats):
    it lacked completion_len_min and num_completions, and had no share of groups with a reward spread."""
    from verl.protocol import DataProto

    from siri_rl.engines.verl.manager import round_metrics
    from siri_rl.metrics import rollout_stats

    prompt_width, lengths = 3, [8, 8, 5, 2]  # responses of 2 prompts x 2; L = 8
    mask = torch.tensor([[1] * prompt_width + [1] * n + [0] * (8 - n) for n in lengths])
    scores = torch.zeros(4, 8)
    scores[0, 7] = scores[2, 4] = scores[3, 1] = 1.0  # veRL's rm_scores: the reward on the last response token
    output = DataProto.from_dict(
        tensors={"prompts": torch.zeros(4, prompt_width, dtype=torch.int64), "attention_mask": mask,
                 "rm_scores": scores},
        non_tensors={ENDED_KEY: np.array([True, False, True, True], dtype=object)},
    )
    row = round_metrics(output, 8, np.array(["a", "a", "b", "b"], dtype=object))
    trl_fields = rollout_stats([1], 8, [True], rewards=[1.0], group_ids=[0])
    assert set(row) == set(trl_fields)
    assert row["clipped_frac"] == 0.25 and row["completion_len_min"] == 2 and row["num_completions"] == 4
    assert row["accuracy"] == 0.75 and row["frac_groups_with_reward_variance"] == 0.5 and row["tokens_round"] == 23


def test_verl_section_cannot_take_over_checkpointing(tmp_path):
    for key in ("trainer.save_freq", "trainer.max_actor_ckpt_to_keep"):
        with pytest.raises(ConfigError, match=f"verl: {key} is set by siri's save plan"):
            overrides_for(experiment("/m", verl={key: 5}), tmp_path)


def test_fresh_run_into_an_existing_run_is_refused(tmp_path):
    """One resume policy for both engines: like the TRL engine, a fresh veRL run never appends to (and inherits the
    totals of) another run's metrics.jsonl; --resume needs a veRL checkpoint to resume from."""
    from siri_rl.engines.verl import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "tokens_generated": 100, "wall_s": 1.0}) + "\n")
    with pytest.raises(ConfigError, match="already holds a run .* pass --resume or pick a new --output-dir"):
        train(experiment("/m"), output_dir=run)
    with pytest.raises(ConfigError, match="--resume: no veRL checkpoint under .*; start without --resume"):
        train(experiment("/m"), output_dir=run, resume=True)


@pytest.mark.parametrize(
    "value",
    [
        "/data/my runs/train.parquet", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "~/data/train.parquet",
        "true", "null", "1e-6", "-1", "", "it's", "C:\\runs\\", "back\\slash", "a'b\\'c", "@x", "a,b", "x=y",
        "[x]", 3, 1e-6, True, None, [1, "x", "a b"], [[0, 8192], [320, 16384]], {"a": "b c"},
    ],
)  # fmt: skip
def test_hydra_values_round_trip(value):
    """Each per-experiment value reads back unchanged through Hydra's own override parser (the one main_ppo
    runs): a string that would read as a bool, null or number stays a string, paths keep spaces and backslashes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from siri_rl.engines.verl.hydra_overrides import hydra_value

    assert OverridesParser.create().parse_override(f"key={hydra_value(value)}").value() == value


def test_resume_refuses_to_prune_unmerged_saves_of_an_older_plan(tmp_path):
    """A run started before the save plan moved trough/peak saves to global_step_{r+1} (here cycle1-compressed at
    global_step_4, where the plan now says 5): resuming would prune that save, so it must be exported first."""
    from siri_rl.engines.verl import train
    from siri_rl.engines.verl.merge import PLAN_FILE

    run = tmp_path / "run"
    ckpt = run / "verl" / "checkpoints"
    (ckpt / "global_step_4" / "actor").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    (run / PLAN_FILE).write_text(json.dumps({"checkpoint_dir": str(ckpt), "checkpoints": {"4": "cycle1-compressed"}}))
    with pytest.raises(ConfigError, match=r"global_step_4 \(cycle1-compressed\).*siri export"):
        train(experiment("/m"), output_dir=run, resume=True)


# --- train: dry run through veRL's own `main_ppo --cfg job` ----------------------------------------------------


@pytest.mark.slow
def test_dry_run_prints_command_and_config_composed_by_main_ppo(tmp_path):
    """`siri train --engine verl --dry-run` on the paper's 1.5B config: veRL's `main_ppo --cfg job` composes it,
    veRL's validation passes, and nothing is written."""
    from pathlib import Path

    from siri_rl.config import load_config
    from siri_rl.engines import train

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "r1-distill-1.5b-siri-cosine640.yaml", ["engine=verl"])
    info = train(cfg, output_dir=tmp_path / "run", dry_run=True)
    assert info["command"].split()[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert f"--config-path {launch.CONFIG_DIR} --config-name siri_trainer" in info["command"]
    v = info["verl_config"]
    assert v["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == "siri_single_turn"  # the recipe's
    assert v["actor_rollout_ref"]["model"]["path"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert v["actor_rollout_ref"]["rollout"]["response_length"] is not None
    assert v["data"]["max_response_length"] == 16384 and v["data"]["train_batch_size"] == 128
    assert v["siri"]["schedule"] == {
        "kind": "cosine", "l_max": 16384, "l_min": 8192, "cycle": 640, "stages": None, "round_to": None,
        "tolerance": None, "patience": None, "window": None,
    }  # fmt: skip
    assert "schedule" not in info  # open loop: the trough/peak steps above are the plan
    assert info["checkpoints"]["global_step_321"] == "cycle1-compressed"
    assert info["checkpoints"]["global_step_1920"] == "cycle3-expanded" and info["save_plan"]["saves"] == 17
    assert not (tmp_path / "run").exists()


ADAPTIVE = {"kind": "adaptive", "l_max": 1024, "l_min": 512, "cycle": 8, "tolerance": 0.1, "window": 2}


def test_adaptive_schedule_and_guard_reach_the_manager_through_hydra(tmp_path):
    """`siri train` passes the adaptive schedule's own keys (tolerance, patience, window) and training.guard
    through siri.* without '+' (the recipe lists them), and the manager parses back the same schedule and guard;
    for the open-loop kinds those keys stay null. A hand-written launch can switch to adaptive the same way."""
    from siri_rl.adaptive import AdaptiveSchedule
    from siri_rl.engines.verl.manager import guard_from_verl_config, schedule_from_verl_config
    from siri_rl.guard import guard_from_dict
    from siri_rl.schedule import ScheduleError

    cfg = experiment("m", schedule=ADAPTIVE, training={"guard": {"mode": "stop", "rounds": 2}})
    overrides = overrides_for(cfg, tmp_path)
    assert "siri.schedule.tolerance=0.1" in overrides and not any(o.startswith("+siri.") for o in overrides)
    composed = launch.compose_config(overrides)
    assert isinstance(schedule_from_verl_config(composed), AdaptiveSchedule)
    assert schedule_from_verl_config(composed) == cfg.schedule  # patience: the default, cycle // 4
    assert guard_from_verl_config(composed) == guard_from_dict({"mode": "stop", "rounds": 2})

    cosine = launch.compose_config(overrides_for(experiment("m"), tmp_path))
    assert cosine.siri.schedule.tolerance is None and guard_from_verl_config(cosine) == guard_from_dict("warn")
    by_hand = launch.compose_config(
        [*overrides_for(experiment("m"), tmp_path), "siri.schedule.kind=adaptive", "siri.schedule.window=3"]
    )
    assert schedule_from_verl_config(by_hand).window == 3
    with pytest.raises(ScheduleError, match="unknown schedule keys"):
        schedule_from_verl_config(launch.compose_config([*overrides_for(experiment("m"), tmp_path),
                                                         "siri.schedule.tolerance=0.1"]))


def test_closed_loop_turning_points_come_from_metrics_rows(tmp_path):
    """An adaptive run's plan has only `final`; its troughs/peaks are the rows' `checkpoint` (the model after
    round r: global_step_{r+1}), which prune keeps and export merges; open-loop runs ignore such fields."""
    from siri_rl.engines.verl.checkpoints import checkpoint_steps, prune_checkpoints, save_plan
    from siri_rl.engines.verl.merge import planned_exports

    cfg = experiment("m", schedule=ADAPTIVE)
    assert checkpoint_steps(cfg.schedule, 16) == {16: "final"} == save_plan(cfg.schedule, 16).exports
    rows = [{"step": r} for r in range(8)]
    rows[3]["checkpoint"], rows[7]["checkpoint"] = "cycle1-compressed", "cycle1-expanded"
    plan = {"checkpoints": {"16": "final"}, "closed_loop": True}
    exports = planned_exports(plan, rows)
    assert exports == {4: "cycle1-compressed", 8: "cycle1-expanded", 16: "final"}
    assert planned_exports({**plan, "closed_loop": False}, rows) == {16: "final"}

    ckpt = tmp_path / "ckpt"
    for g in (2, 4, 6, 8):
        actor = ckpt / f"global_step_{g}" / "actor"
        actor.mkdir(parents=True)
        (actor / "model_world_size_1_rank_0.pt").write_bytes(b"m")
        (actor / "optim_world_size_1_rank_0.pt").write_bytes(b"o")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("8")
    prune_checkpoints(ckpt, exports)
    assert sorted(p.name for p in ckpt.glob("global_step_*")) == ["global_step_4", "global_step_8"]
    assert sorted(p.name for p in (ckpt / "global_step_4/actor").iterdir()) == ["model_world_size_1_rank_0.pt"]


@pytest.mark.slow
def test_dry_run_of_an_adaptive_config_says_closed_loop(tmp_path):
    """`siri train --engine verl --dry-run` on an adaptive config: veRL's `main_ppo --cfg job` composes it with
    the adaptive keys, and the plan says the schedule is closed-loop (no trough/peak step in advance)."""
    from dataclasses import replace

    from siri_rl.engines import train

    cfg = replace(experiment("m", schedule=ADAPTIVE), engine="verl")  # what `siri train --engine verl` loads
    info = train(cfg, output_dir=tmp_path / "run", dry_run=True)
    assert info["schedule"].startswith("closed-loop (adaptive)") and "no trough/peak step is known" in info["schedule"]
    assert info["checkpoints"] == {"global_step_16": "final"} and info["save_plan"]["steps"] == [16]
    assert info["verl_config"]["siri"]["schedule"] == {
        "kind": "adaptive", "l_max": 1024, "l_min": 512, "cycle": 8, "stages": None, "round_to": None,
        "tolerance": 0.1, "patience": 2, "window": 2,
    }  # fmt: skip
    assert info["verl_config"]["siri"]["guard"]["mode"] == "warn"
    assert not (tmp_path / "run").exists()


# --- export: veRL checkpoints -> Hugging Face models with veRL's model merger ----------------------------------


def fake_verl_actor_checkpoint(model_dir, actor_dir):
    """An actor checkpoint in veRL's FSDP layout (world size 1: one rank file holding the full state dict, the
    fsdp_config.json veRL writes, and the huggingface/ folder with config and tokenizer)."""
    import shutil

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.model.norm.weight.add_(0.5)  # a trained model differs from the base
    actor_dir.mkdir(parents=True)
    torch.save(model.state_dict(), actor_dir / "model_world_size_1_rank_0.pt")
    (actor_dir / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    shutil.copytree(model_dir, actor_dir / "huggingface", ignore=shutil.ignore_patterns("*.safetensors"))
    return model


def test_export_merges_trough_and_peak_checkpoints(tiny_qwen2_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from siri_rl.cli import app
    from siri_rl.engines.verl.merge import PLAN_FILE, actor_checkpoint_dir

    run = tmp_path / "run"
    ckpts = run / "verl" / "checkpoints"
    (run / "verl").mkdir(parents=True)
    plan = {"checkpoint_dir": str(ckpts), "checkpoints": {"4": "cycle1-compressed", "8": "cycle1-expanded"}}
    (run / PLAN_FILE).write_text(json.dumps(plan))
    trained = fake_verl_actor_checkpoint(tiny_qwen2_dir, actor_checkpoint_dir(ckpts, 4))

    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code == 0, result.output
    assert (
        "cycle1-compressed" in result.output and "cycle1-expanded" not in result.output
    )  # step 8 not saved yet
    merged = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "cycle1-compressed")
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[name].float(), tensor.float(), atol=1e-2, rtol=1e-2)
    card = json.loads((run / "checkpoints/cycle1-compressed/siri_checkpoint.json").read_text())
    assert card["step"] == 3 and card["source"] == str(actor_checkpoint_dir(ckpts, 4))  # global_step 4 = round 3

    bad = CliRunner().invoke(app, ["export", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "not a run directory" in " ".join(bad.output.split())


def test_export_reports_a_failed_merge_in_one_line(tiny_qwen2_dir, tmp_path):
    """`siri export` runs veRL's public merger command; a checkpoint it cannot read fails as one line with the
    merger's exception and the command to rerun, not a traceback."""
    from typer.testing import CliRunner

    from siri_rl.cli import app
    from siri_rl.engines.verl.merge import PLAN_FILE, actor_checkpoint_dir

    run = tmp_path / "run"
    ckpts = run / "verl" / "checkpoints"
    (run / "verl").mkdir(parents=True)
    (run / PLAN_FILE).write_text(json.dumps({"checkpoint_dir": str(ckpts), "checkpoints": {"4": "cycle1-compressed"}}))
    fake_verl_actor_checkpoint(tiny_qwen2_dir, actor_checkpoint_dir(ckpts, 4))
    (actor_checkpoint_dir(ckpts, 4) / "model_world_size_1_rank_0.pt").write_bytes(b"not a torch file")

    result = CliRunner().invoke(app, ["export", str(run)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "veRL's model merger failed" in output and "Error" in output
    assert "by hand: " in output and "-m verl.model_merger merge --backend fsdp" in output


# --- GPUs per node ---------------------------------------------------------------------------------------------


def test_gpus_per_node_comes_from_the_config_or_this_machine(tmp_path):
    """trainer.n_gpus_per_node is not a constant: the verl: section's value, else the CUDA devices of the launching
    machine; with neither, a launch stops with the fix before anything is written, a dry run keeps veRL's 8."""
    from siri_rl.engines.verl import train

    explicit = experiment("/m", verl={"trainer": {"n_gpus_per_node": 4}})
    assert launch.gpus_per_node(explicit) is None  # the verl: section, applied last, sets it
    assert launch.compose_config(overrides_for(explicit, tmp_path)).trainer.n_gpus_per_node == 4
    two = launch.build_overrides(experiment("/m"), gpus_per_node=2, train_file="t", val_file="v", checkpoint_dir="c")
    assert launch.compose_config(two).trainer.n_gpus_per_node == 2

    if torch.cuda.is_available():
        assert launch.gpus_per_node(experiment("/m")) == torch.cuda.device_count()
    else:
        assert launch.gpus_per_node(experiment("/m"), dry_run=True) is None
        with pytest.raises(ConfigError, match=r"no CUDA GPU is visible .* `verl.trainer.n_gpus_per_node=8`.*"
                                              r"`training.device: cpu`"):
            train(experiment("/m"), output_dir=tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_cpu_device_adds_the_cpu_overrides_and_environment_and_dry_run_shows_them(tmp_path):
    """training.device cpu (and only it: auto without GPUs stops, above) runs veRL on the CPU: one training process
    declared to Ray as a GPU resource, FSDP2, sdpa, fp32, no vLLM sleep mode; the dry run shows the environment
    that selects siri's CPU platform. A verl: section's GPU count is the Ray resource count too."""
    from siri_rl.engines.verl import train
    from siri_rl.engines.verl.cpu import CPU_ENV

    cpu = experiment("/m", training={"device": "cpu"})
    assert launch.gpus_per_node(cpu) == 1
    composed = launch.compose_config(overrides_for(cpu, tmp_path))
    assert composed.trainer.n_gpus_per_node == 1 and composed.ray_kwargs.ray_init.num_gpus == 1
    a = composed.actor_rollout_ref
    assert (a.actor.strategy, a.model.override_config.attn_implementation, a.rollout.dtype) == \
        ("fsdp2", "sdpa", "float32")
    assert a.rollout.enable_sleep_mode is False and a.rollout.agent.num_workers == 1
    assert a.rollout.max_num_batched_tokens >= a.rollout.max_num_seqs  # vLLM's own check
    two = experiment("/m", training={"device": "cpu"}, verl={"trainer.n_gpus_per_node": 2})
    assert launch.compose_config(overrides_for(two, tmp_path)).ray_kwargs.ray_init.num_gpus == 2
    gpu = launch.compose_config(overrides_for(experiment("/m", verl={"trainer.n_gpus_per_node": 8}), tmp_path))
    assert gpu.actor_rollout_ref.actor.strategy == "fsdp" and gpu.ray_kwargs.ray_init.get("num_gpus") is None

    (tmp_path / "t.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    info = train(experiment("/m", training={"device": "cpu"}), output_dir=tmp_path / "run", dry_run=True)
    assert info["environment"] == CPU_ENV == {"VERL_PLATFORM": "cpu", "VERL_ENGINE_DEVICE": "cuda",
                                              "VLLM_TARGET_DEVICE": "cpu"}
    assert "actor_rollout_ref.actor.strategy=fsdp2" in info["overrides"]
    assert info["verl_config"]["actor_rollout_ref"]["rollout"]["dtype"] == "float32"
    assert not (tmp_path / "run").exists()



def test_recipe_config_ships_as_package_data():
    """An installed siri-rl (not only a checkout) holds the recipe config: pyproject's package-data covers it."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from siri_rl.engines.verl import CONFIG_DIR

    repo = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["siri_rl"]
    shipped = sorted(CONFIG_DIR.glob("*"))
    assert {p.name for p in shipped} == {"siri_trainer.yaml", "agent_loop.yaml"}
    for path in shipped:
        assert any(fnmatch.fnmatch(path.relative_to(repo / "siri_rl").as_posix(), g) for g in globs), path

# --- the README's own-launch command ---------------------------------------------------------------------------


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_verl_block() -> str:
    """The bash block of the README's section "Use SIRI in your own veRL launch", as written."""
    import re

    text = README.read_text()
    section = text[text.index("## Use SIRI in your own veRL launch") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section should hold one bash block"
    return blocks[0].strip()


def test_readme_verl_launch_composes_siri(tmp_path):
    """The README's `python -m verl.trainer.main_ppo --config-name siri_trainer ...` block, run by bash with the
    `--cfg job` the README says to append: veRL's main composes it, veRL's validation passes, and the composed config
    has SIRI's agent loop and manager, the length-capped reward, the paper's schedule and DAPO's constant settings.
    `siri train` on the paper's config composes the same settings."""
    import os
    import subprocess
    import sys

    from verl.utils.import_utils import load_class_from_fqn, load_extern_object

    from siri_rl.config import load_config
    from siri_rl.engines.verl.manager import SiriAgentLoopManager, schedule_from_verl_config
    from siri_rl.engines.verl.reward import compute_score
    from siri_rl.schedule import make_schedule

    env = dict(os.environ, HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", "-c", readme_verl_block() + " --cfg job"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = OmegaConf.create(proc.stdout)
    launch.validate_verl_config(c)

    a, r = c.actor_rollout_ref.actor, c.actor_rollout_ref.rollout
    assert c.algorithm.adv_estimator == "grpo" and c.algorithm.use_kl_in_reward is False
    assert (a.clip_ratio_low, a.clip_ratio_high, a.loss_agg_mode, a.use_kl_loss) == (0.2, 0.28, "token-mean", False)
    assert a.optim.lr == 1e-6 and a.ppo_max_token_len_per_gpu == 1024 + 16384 and c.trainer.use_v1 is False
    assert c.actor_rollout_ref.model.path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert c.data.train_files == str(tmp_path / "data/siri/train.parquet") and c.trainer.n_gpus_per_node == 8
    assert (r.name, r.n, r.response_length, c.data.train_batch_size) == ("vllm", 8, 16384, 128)

    assert r.agent.default_agent_loop == "siri_single_turn"
    (loop,) = OmegaConf.load(r.agent.agent_loop_config_path)  # the list veRL's rollout workers register
    assert loop.name == "siri_single_turn" and loop._target_ == "siri_rl.engines.verl.agent_loop.SiriSingleTurnAgentLoop"
    assert load_class_from_fqn(r.agent.agent_loop_manager_class) is SiriAgentLoopManager
    rf = c.reward.custom_reward_function
    assert load_extern_object(rf.path, rf.name) is compute_score and rf.reward_kwargs.require_think_end is True
    assert (c.reward.reward_manager.source, c.reward.reward_manager.name) == ("importlib", "SiriRewardManager")

    assert schedule_from_verl_config(c) == make_schedule("cosine", l_max=16384, l_min=8192, cycle=640)
    assert (c.siri.total_rounds, c.trainer.total_training_steps, c.siri.save_every) == (1920, 1920, None)
    assert c.siri.metrics_path == str(tmp_path / "runs/siri-1.5b/metrics.jsonl")

    paper = load_config(README.parent / "configs" / "r1-distill-1.5b-siri-cosine640.yaml", ["engine=verl"])
    ours = launch.compose_config(overrides_for(paper, tmp_path))
    for key in (
        "algorithm", "actor_rollout_ref.actor.clip_ratio_high", "actor_rollout_ref.actor.loss_agg_mode",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu", "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
        "actor_rollout_ref.rollout.agent.default_agent_loop", "actor_rollout_ref.rollout.n", "data.train_batch_size",
        "reward.custom_reward_function", "reward.reward_manager", "siri.schedule", "trainer.total_training_steps",
    ):  # fmt: skip
        assert OmegaConf.select(ours, key) == OmegaConf.select(c, key), key
