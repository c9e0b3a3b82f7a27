"""veRL rollout path on CPU with real veRL objects and a fake in-process LLM server (the pattern of veRL's own
``*_on_cpu`` agent-loop tests): the ``siri_single_turn`` agent loop sends the scheduled ``max_tokens`` and its
response is capped; the SIRI agent-loop manager, inside a real local Ray, attaches L for training rounds only."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

pytest.importorskip("verl", reason="veRL is not installed: pip install 'siri-rl[verl]'")

from siri_rl.config import config_from_dict  # noqa: E402
from siri_rl.data import load_problems  # noqa: E402
from siri_rl.engines.verl import launch  # noqa: E402
from siri_rl.engines.verl.dataset import write_verl_parquet  # noqa: E402
from siri_rl.prompts import build_messages, prompt_token_ids  # noqa: E402
from siri_rl.schedule import make_schedule  # noqa: E402

warnings.filterwarnings("ignore", message=".*engine is not available.*")


L_MAX, L_MIN, CYCLE = 64, 16, 8  # a small cosine schedule: L(0)=64, L(T/4)=40, L(T/2)=16, L(3T/4)=40
NATURAL_LEN = 100  # tokens the fake model would write if nothing stopped it


class FakeServer:
    """Stands in for veRL's LLMServerClient: generates a fixed R1-style response and, like veRL's vLLM/SGLang
    servers, stops at ``sampling_params["max_tokens"]`` (default: the rollout's ``response_length``)."""

    def __init__(self, response_ids: list[int], response_length: int) -> None:
        self.response_ids = list(response_ids)
        self.response_length = response_length
        self.requests: list[dict[str, Any]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.requests.append({"prompt_ids": list(prompt_ids), "sampling_params": dict(sampling_params)})
        limit = min(sampling_params.get("max_tokens", self.response_length), self.response_length)
        return TokenOutput(
            token_ids=self.response_ids[:limit], log_probs=[-0.5] * min(limit, len(self.response_ids))
        )


def natural_response(tokenizer, length: int) -> list[int]:
    text = "Okay, let me think. " * 200 + "</think>\n\nSo the answer is \\boxed{204}."
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[-(length - 1) :] + [tokenizer.eos_token_id]


def siri_config(model_path, tmp_path, training=None, schedule=None, **verl):
    cfg = config_from_dict(
        {
            "name": "verl-rollout-test",
            "model": {"name_or_path": str(model_path)},
            "data": {"train": "unused.jsonl", "max_prompt_length": 512},
            "schedule": schedule or {"kind": "cosine", "l_max": L_MAX, "l_min": L_MIN, "cycle": CYCLE},
            "training": {"rounds": 2 * CYCLE, "prompts_per_round": 2, "group_size": 2, **(training or {})},
            "verl": {"actor_rollout_ref.rollout.agent.num_workers": 1, **verl},
        }
    )
    overrides = launch.build_overrides(
        cfg,
        train_file=tmp_path / "train.parquet",
        val_file=tmp_path / "train.parquet",
        checkpoint_dir=tmp_path / "ckpt",
        metrics_path=tmp_path / "metrics.jsonl",
    )
    return launch.compose_config(overrides)


# --- the agent loop, in process ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_setup(tiny_qwen2_dir, tokenizer, tmp_path_factory):
    config = siri_config(tiny_qwen2_dir, tmp_path_factory.mktemp("agent-loop"))
    OmegaConf.resolve(config)
    return config, FakeServer(natural_response(tokenizer, NATURAL_LEN), response_length=L_MAX)


def make_loop(config, server, tokenizer):
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from siri_rl.engines.verl.agent_loop import SiriSingleTurnAgentLoop

    return SiriSingleTurnAgentLoop(
        trainer_config=DictConfigWrap(config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        hf_model_type="qwen2",
    )


def run_loop(loop, **kwargs):
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}
    # veRL's loops bind to the event loop they were created on (run_in_executor for tokenization).
    return loop.loop.run_until_complete(loop.run(params, **kwargs))


def test_agent_loop_sends_scheduled_max_tokens_and_caps_response(agent_setup, tokenizer):
    config, server = agent_setup
    loop = make_loop(config, server, tokenizer)
    problem = "Find the number of minutes the walk takes her."
    messages = np.array(build_messages(problem), dtype=object)

    out = run_loop(loop, raw_prompt=messages, siri_max_len=np.int64(40))
    assert server.requests[-1]["sampling_params"]["max_tokens"] == 40
    assert (
        server.requests[-1]["sampling_params"]["temperature"] == 1.0
    )  # the rest of veRL's params pass through
    assert len(out.response_ids) == 40 and out.response_ids == server.response_ids[:40]
    assert out.extra_fields["siri_max_len"] == 40 and out.extra_fields["siri_ended"] is False
    assert out.extra_fields["siri_response_tokens"] == 40
    # veRL built the same prompt tokens as the core (chat template, one BOS).
    assert out.prompt_ids == prompt_token_ids(problem, tokenizer)

    # L above the padded width is clipped to rollout.response_length.
    out = run_loop(loop, raw_prompt=messages, siri_max_len=10_000)
    assert server.requests[-1]["sampling_params"]["max_tokens"] == L_MAX and len(out.response_ids) == L_MAX

    # No L (validation): veRL's sampling params are sent unchanged, and the server's default applies.
    out = run_loop(loop, raw_prompt=messages)
    assert "max_tokens" not in server.requests[-1]["sampling_params"]
    assert out.extra_fields["siri_max_len"] is None and len(out.response_ids) == L_MAX


def test_agent_loop_marks_responses_that_end_before_the_cap(agent_setup, tokenizer):
    config, _ = agent_setup
    short = FakeServer(natural_response(tokenizer, 20), response_length=L_MAX)
    out = run_loop(make_loop(config, short, tokenizer), raw_prompt=build_messages("1+1?"), siri_max_len=40)
    assert len(out.response_ids) == 20 and out.extra_fields["siri_ended"] is True


def test_agent_loop_ends_on_every_generation_config_eos(think_special_model_dir, tmp_path):
    """A response that stops on the generation config's second EOS (vLLM stops on every one,
    vllm/sampling_params.py:709-734) ended on its own: it is not reported as cut by the cap."""
    from transformers import AutoTokenizer

    config = siri_config(think_special_model_dir, tmp_path)
    OmegaConf.resolve(config)
    tok = AutoTokenizer.from_pretrained(think_special_model_dir)
    response = natural_response(tok, 20)[:-1] + [tok.convert_tokens_to_ids("<|EOT|>")]
    out = run_loop(make_loop(config, FakeServer(response, response_length=L_MAX), tok),
                   raw_prompt=build_messages("1+1?"), siri_max_len=20)
    assert len(out.response_ids) == 20 and out.extra_fields["siri_ended"] is True


def test_agent_loop_rejects_tensorrt_llm(agent_setup, tokenizer):
    from siri_rl.engines.verl.agent_loop import UnsupportedRolloutError

    config, server = agent_setup
    trt = config.copy()
    trt.actor_rollout_ref.rollout.name = "trtllm"
    with pytest.raises(UnsupportedRolloutError, match="TensorRT-LLM ignores it"):
        make_loop(trt, server, tokenizer)


# --- the manager, inside a real local Ray ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
    # The fake server lives in this test module, which Ray's worker processes cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    if started:
        ray.shutdown()


def _aime_batch(config, tokenizer, shared_dir: Path, tmp_path: Path, answer: str | None = None,
                name: str = "train") -> dict:
    """Two AIME training problems as veRL's RL dataset and collate function make a training batch of them
    (``answer``: give both this gold answer instead of their own)."""
    from torch.utils.data import DataLoader
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    problems = load_problems(shared_dir / "data/train/deepscaler_aime.jsonl")[:2]
    if answer is not None:
        problems = [{**p, "answer": answer} for p in problems]
    write_verl_parquet(problems, tmp_path / f"{name}.parquet")
    dataset = get_dataset_class(config.data)(
        data_files=str(tmp_path / f"{name}.parquet"), tokenizer=tokenizer, config=config.data
    )
    return next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_fn)))


def grouped(batch_dict: dict, global_steps: int, group_size: int = 2):
    """A training batch as veRL's fit loop hands it to the manager: a uid per prompt, then each prompt repeated
    rollout.n times, interleaved (ray_trainer.py:1481-1494)."""
    from verl.protocol import DataProto

    batch = DataProto.from_single_dict(dict(batch_dict))
    batch.non_tensor_batch["uid"] = np.array([f"p{i}" for i in range(len(batch))], dtype=object)
    batch.meta_info["global_steps"] = global_steps
    return batch.repeat(repeat_times=group_size, interleave=True)


def test_manager_attaches_scheduled_cap_per_training_round_in_ray(
    local_ray, tiny_qwen2_dir, tokenizer, shared_dir, tmp_path
):
    """Rounds 0, T/4, T/2, 3T/4 and T (veRL global_steps 1, 3, 5, 7, 9) get L = schedule(round); validation
    batches get no cap. veRL's own AgentLoopWorker runs in a Ray actor and loads the agent loop from the yaml;
    veRL's RewardLoopWorker actor scores every response with our compute_score, which sees the round's L."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto

    from siri_rl.engines.verl.manager import SiriAgentLoopManager

    config = siri_config(tiny_qwen2_dir, tmp_path, **{"data.filter_overlong_prompts": False})
    batch_dict = _aime_batch(config, tokenizer, shared_dir, tmp_path)

    server = FakeServer(natural_response(tokenizer, NATURAL_LEN), response_length=L_MAX)
    reward_worker = local_ray.remote(RewardLoopWorker).options(num_cpus=0).remote(config)
    manager = SiriAgentLoopManager.create(
        config=config, llm_client=server, reward_loop_worker_handles=[reward_worker]
    )
    schedule = make_schedule("cosine", l_max=L_MAX, l_min=L_MIN, cycle=CYCLE)

    seen = {}
    for global_steps in (1, 1 + CYCLE // 4, 1 + CYCLE // 2, 1 + 3 * CYCLE // 4, 1 + CYCLE):
        batch = DataProto.from_single_dict(dict(batch_dict))
        batch.meta_info["global_steps"] = global_steps
        out = manager.generate_sequences(batch)
        lengths = out.batch["response_mask"].sum(-1).tolist()
        caps = set(out.non_tensor_batch["siri_max_len"].tolist())
        seen[global_steps] = (caps, set(lengths))
        assert out.meta_info["timing"]["siri/max_len"] == schedule(global_steps - 1)
        # The reward loop saw the same L, found every response cut by it (the answer comes after the cap), scored 0.
        assert set(out.non_tensor_batch["max_len"].tolist()) == caps
        assert set(out.non_tensor_batch["hit_cap"].tolist()) == {1.0}
        assert out.batch["rm_scores"].sum().item() == 0.0
    assert seen == {
        1: ({64}, {64}),  # round 0: L_max
        3: ({40}, {40}),  # round T/4: midway
        5: ({16}, {16}),  # round T/2: the trough, L_min
        7: ({40}, {40}),
        9: ({64}, {64}),  # round T: back at L_max
    }

    val = DataProto.from_single_dict(dict(batch_dict))
    val.meta_info.update({"validate": True, "global_steps": 5})
    out = manager.generate_sequences(val)
    assert set(out.non_tensor_batch["siri_max_len"].tolist()) == {None}
    assert set(out.non_tensor_batch["max_len"].tolist()) == {-1.0}  # the reward saw no cap either
    assert set(out.batch["response_mask"].sum(-1).tolist()) == {L_MAX}  # uncapped: the full response_length
    assert "siri/max_len" not in out.meta_info["timing"]

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["global_step"], r["max_len"]) for r in rows] == [
        (0, 1, 64),
        (2, 3, 40),
        (4, 5, 16),
        (6, 7, 40),
        (8, 9, 64),
    ]
    assert all(r["clipped_frac"] == 1.0 and r["completion_len_max"] == r["max_len"] for r in rows)
    assert all(r["accuracy"] == 0.0 for r in rows)
    # running totals, as the TRL engine writes them: tokens_generated is the cumulative sum of each round's tokens
    totals = [sum(r["tokens_round"] for r in rows[: i + 1]) for i in range(len(rows))]
    assert [r["tokens_generated"] for r in rows] == totals and totals[-1] > totals[0] > 0
    assert all(a["wall_s"] <= b["wall_s"] for a, b in zip(rows, rows[1:]))
    assert [r["phase"] for r in rows] == [
        "compressing",
        "compressing",
        "expanding",
        "expanding",
        "compressing",
    ]


@pytest.fixture
def make_manager(local_ray, tiny_qwen2_dir, tokenizer, shared_dir, tmp_path):
    """A SIRI agent-loop manager in the real local Ray (veRL's AgentLoopWorker actor, the fake server, no reward
    workers) and a function that runs one training round through it at a given veRL global step."""
    from verl.protocol import DataProto

    from siri_rl.engines.verl.manager import SiriAgentLoopManager

    def make(**training):
        config = siri_config(tiny_qwen2_dir, tmp_path, training, **{"data.filter_overlong_prompts": False})
        batch_dict = _aime_batch(config, tokenizer, shared_dir, tmp_path)
        server = FakeServer(natural_response(tokenizer, NATURAL_LEN), response_length=L_MAX)
        manager = SiriAgentLoopManager.create(config=config, llm_client=server)

        def train_round(global_steps):
            batch = DataProto.from_single_dict(dict(batch_dict))
            batch.meta_info["global_steps"] = global_steps
            return manager.generate_sequences(batch)

        return manager, config, train_round

    return make


def veRL_save(checkpoint_dir, global_step):
    """The files veRL's _save_checkpoint leaves for one FSDP save (ray_trainer.py:983-1050,
    fsdp_checkpoint_manager.py:316-418), world size 1, the tracker file last."""
    actor = checkpoint_dir / f"global_step_{global_step}" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    for kind in ("model", "optim", "extra_state"):
        (actor / f"{kind}_world_size_1_rank_0.pt").write_bytes(b"shard")
    (actor / "fsdp_config.json").write_text('{"FSDP_version": 2, "world_size": 1}')
    (actor.parent / "data.pt").write_bytes(b"dataloader")
    (checkpoint_dir / "latest_checkpointed_iteration.txt").write_text(str(global_step))


def test_manager_makes_verl_save_only_planned_steps_and_prunes(make_manager, tmp_path):
    """Before each round the manager sets trainer.save_freq on the config veRL shares with it so that veRL's save
    condition (ray_trainer.py:1704-1707: save_freq > 0 and (last step or g % save_freq == 0)) holds exactly at the
    planned steps: every save_every=4 rounds and after every trough/peak round r (global_step_{r+1}: 5, 9, 13, 16).
    Superseded saves are pruned (resumable-only ones deleted, trough/peak ones keep their model shards), and a
    planned save that veRL did not make stops the run with a clear error."""
    manager, config, train_round = make_manager(save_every=4)
    ckpt = tmp_path / "ckpt"

    def verl_saves(g):  # veRL's condition, with the value the manager left for step g
        f = config.trainer.save_freq
        return f > 0 and (g >= config.trainer.total_training_steps or g % f == 0)

    decisions = {}
    for g in (4, 5, 6):
        train_round(g)
        decisions[g] = verl_saves(g)
        if decisions[g]:
            veRL_save(ckpt, g)
    assert decisions == {4: True, 5: True, 6: False}
    assert not (ckpt / "global_step_4").exists()  # resumable-only, superseded by global_step_5
    assert (ckpt / "global_step_5/actor/optim_world_size_1_rank_0.pt").exists()  # the newest: kept in full

    veRL_save(ckpt, 8)
    train_round(9)
    assert verl_saves(9)
    model = ckpt / "global_step_5/actor"  # the cycle1-compressed model: what `siri export` merges
    kept = ["fsdp_config.json", "huggingface", "model_world_size_1_rank_0.pt"]
    assert sorted(p.name for p in model.iterdir()) == kept
    assert (ckpt / "global_step_8/actor/optim_world_size_1_rank_0.pt").exists()

    with pytest.raises(RuntimeError, match="veRL did not save global_step_9"):
        train_round(10)  # step 9 was planned, but nothing was saved
    assert manager.saves.steps == [4, 5, 8, 9, 12, 13, 16]


def test_manager_resume_drops_redone_rounds_and_continues_totals(make_manager, tmp_path):
    """On resume veRL restarts at global_steps = g (here 4: trained on rounds 0..2): the rows of rounds 3.. of the
    interrupted run (and its half-written last line) are dropped, and tokens_generated/wall_s continue from round
    2, not from the last row of the file."""
    metrics = tmp_path / "metrics.jsonl"
    old = [
        {"step": r, "global_step": r + 1, "tokens_generated": 100 * (r + 1), "wall_s": 10.0 * (r + 1),
         "max_len": 64, "clipped_frac": 0.0}
        for r in range(6)
    ]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in old) + '{"step": 6, "tokens_gen')
    import time

    started = time.time()
    _, _, train_round = make_manager()
    train_round(4)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and rows[:3] == old[:3]
    new = rows[3]
    assert new["global_step"] == 4 and new["tokens_generated"] == 300 + new["tokens_round"] > 300
    assert 30.0 <= new["wall_s"] <= 30.0 + (time.time() - started)


# --- the closed-loop schedule and the no-learning guard on veRL ---------------------------------------

ADAPTIVE = {"kind": "adaptive", "l_max": L_MAX, "l_min": L_MIN, "cycle": CYCLE, "window": 1, "patience": 1,
            "tolerance": 0.05}
SHORT_LEN = 14  # a response that ends (</think>, \boxed{204}, EOS) within every cap >= L_MIN: never clipped


def test_manager_drives_the_adaptive_schedule_and_resumes_it(local_ray, tiny_qwen2_dir, tokenizer, shared_dir,
                                                             tmp_path, capsys):
    """schedule.kind adaptive on veRL: each round's cap is the controller's, decided from the accuracy veRL's
    reward loop gave the rounds before it. All-correct rounds compress (64 -> 57 -> 40 -> 23), all-wrong ones hold
    once (patience 1) and then expand; the trough (round 4) is saved at its own step (global_step_5, save_freq
    set before veRL's save check) and named in its row. Every group's rewards are equal, so the guard warns once,
    after 4 rounds, and the warning is printed once. A manager resumed at global step 6 rebuilds the controller,
    the guard and the trough's save from the kept rows and continues with the same cap and the same rows."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from siri_rl.adaptive import adaptive_from_dict
    from siri_rl.engines.verl.manager import SiriAgentLoopManager

    config = siri_config(tiny_qwen2_dir, tmp_path, schedule=ADAPTIVE, **{"data.filter_overlong_prompts": False})
    right = _aime_batch(config, tokenizer, shared_dir, tmp_path, answer="204", name="right")
    wrong = _aime_batch(config, tokenizer, shared_dir, tmp_path, name="wrong")
    reward_worker = local_ray.remote(RewardLoopWorker).options(num_cpus=0).remote(config)
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"

    def manager_for():
        server = FakeServer(natural_response(tokenizer, SHORT_LEN), response_length=L_MAX)
        return SiriAgentLoopManager.create(config=config, llm_client=server, reward_loop_worker_handles=[reward_worker])

    def verl_saves(g):  # veRL's save condition (ray_trainer.py:1704-1707) with the save_freq left for step g
        f = config.trainer.save_freq
        return f > 0 and (g >= config.trainer.total_training_steps or g % f == 0)

    batches = [right, right, right, wrong, wrong, wrong]
    manager, saves = manager_for(), {}
    for g, batch in enumerate(batches, start=1):
        out = manager.generate_sequences(grouped(batch, g))
        assert set(out.non_tensor_batch["siri_max_len"].tolist()) == {out.meta_info["timing"]["siri/max_len"]}
        saves[g] = verl_saves(g)
        if saves[g]:
            veRL_save(ckpt, g)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["accuracy"] for r in rows] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert [r["max_len"] for r in rows] == [64, 57, 40, 23, 23, 29]
    # the caps are the controller's, fed the rounds' accuracies in order
    schedule = adaptive_from_dict(ADAPTIVE)
    decisions = schedule.replay(r["accuracy"] for r in rows)
    assert [r["max_len"] for r in rows[1:]] == [d.max_len for d in decisions[:-1]]
    assert [r["phase"] for r in rows] == ["compressing"] * 3 + ["holding", "expanding", "expanding"]
    assert [r["adaptive_reason"] for r in rows] == [d.reason for d in decisions]
    assert all(r["adaptive_reference"] == 1.0 and "adaptive_signal" in r for r in rows)
    assert [r.get("checkpoint") for r in rows] == [None] * 4 + ["cycle1-compressed", None]
    assert saves == {1: False, 2: False, 3: False, 4: False, 5: True, 6: False}
    assert manager.saves.exports == {5: "cycle1-compressed", 2 * CYCLE: "final"}
    # the guard: every group all right or all wrong, no gradient; one warning, after `rounds` = 4 rounds
    assert all(r["frac_groups_with_reward_variance"] == 0.0 for r in rows)
    assert [r.get("guard") for r in rows] == [None] * 3 + ["warn", None, None]
    assert rows[3]["guard_message"].startswith("no-learning guard: for rounds 0-3 GRPO had almost nothing")
    assert capsys.readouterr().out.count("no-learning guard:") == 1

    resumed = manager_for()  # veRL resumed from global_step_5: it redoes round 5 at global step 6
    resumed.generate_sequences(grouped(batches[5], 6))
    again = [json.loads(line) for line in metrics.read_text().splitlines()]
    timing = ("tokens_generated", "rollout_s", "wall_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in again] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows
    ]
    assert resumed.adaptive_state == manager.adaptive_state and resumed.guard_state == manager.guard_state
    assert resumed.saves.exports == manager.saves.exports
    assert capsys.readouterr().out.count("no-learning guard:") == 0  # the episode was reported before the resume


def test_manager_adaptive_refuses_a_colocated_reward_model(local_ray, tiny_qwen2_dir, tmp_path):
    """Without the agent loop's reward workers (veRL's colocated reward model, ray_trainer.py:949, 958-963) the
    manager has no accuracy to give the controller: one clear error when it is built."""
    from siri_rl.engines.verl.manager import SiriAgentLoopManager

    config = siri_config(tiny_qwen2_dir, tmp_path, schedule=ADAPTIVE)
    with pytest.raises(ValueError, match="colocated reward model .* not supported with adaptive"):
        SiriAgentLoopManager.create(config=config, llm_client=FakeServer([1], response_length=L_MAX))


def test_manager_guard_stop_saves_then_ends_the_run(make_manager, tmp_path):
    """training.guard: stop with a cap below every answer (all completions clipped): after `rounds` = 2 starved
    rounds the row records the stop, veRL is made to save that step, and the next training round ends the run
    with NoLearningError, once the save is on disk (a missing save is the save-plan error)."""
    from siri_rl.engines.verl.manager import NoLearningError

    manager, config, train_round = make_manager(guard={"mode": "stop", "rounds": 2})
    ckpt = tmp_path / "ckpt"
    train_round(1)
    train_round(2)
    assert config.trainer.save_freq == 1  # veRL saves global_step_2 after its update (ray_trainer.py:1704-1712)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["clipped_frac"] for r in rows] == [1.0, 1.0] and [r.get("guard") for r in rows] == [None, "stop"]
    assert "Stopping with a resumable checkpoint" in rows[1]["guard_message"]
    with pytest.raises(RuntimeError, match="veRL did not save global_step_2"):
        train_round(3)
    veRL_save(ckpt, 2)
    with pytest.raises(NoLearningError, match=r"no-learning guard: for rounds 0-1 .* saved global_step_2 \(resumable\)"):
        train_round(3)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2  # round 2 was not generated
