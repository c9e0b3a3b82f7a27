"""Held-out validation inside TRL's GRPOTrainer (``validation:``): a TrainerCallback that, before round 0 and after
every ``every``-th round and the last one, samples the validation problems with the trainer's own generation
engine at the fixed cap and hands the completions to the validator ``siri train`` built
(:class:`siri_rl.evaluate.validation.Validator`: ``siri eval``'s plan, grading and results directory).

* without vLLM: the unwrapped policy's ``generate`` (TRL's ``unwrap_model_for_generation``, which gathers
  DeepSpeed ZeRO-3 weights), batched and seeded as ``siri eval --backend transformers`` does
  (:func:`siri_rl.sampling.generate_batch`), so a validation equals ``siri eval`` of that round's checkpoint;
* with ``trl.use_vllm`` (colocate): the trainer's vLLM engine, after pushing the current weights to it, one
  seeded request per sample as ``siri eval --backend vllm`` does.

It never touches what training draws from: the rollout cap (it passes its own ``max_tokens``), TRL's sampler and
generation buffer, and the random streams (torch's CPU and CUDA generators are restored after each validation;
vLLM requests that all carry a seed draw from their own generators, vllm/v1/sample/ops/topk_topp_sampler.py's
``random_sample``). Generation calls are split across processes and gathered on the main one, which writes.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from transformers import TrainerCallback

from siri_rl.config import ConfigError
from siri_rl.prompts import eos_token_ids
from siri_rl.reward import decode_response
from siri_rl.sampling import Completion, generate_batch, sample_seed, strip_eos


class ModelSampler:
    """The trainer's policy, sampled with ``model.generate`` by ``siri eval --backend transformers``'s rule."""

    kind = "transformers"

    def __init__(self, trainer: Any, validator: Any):
        self.trainer, self.v = trainer, validator
        tok = trainer.processing_class
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos_ids = eos_token_ids(tok, trainer.model)

    def generate(self, units: list, seed: int) -> list[list[Completion]]:
        import torch
        from trl.models import unwrap_model_for_generation

        t, cfg = self.trainer, self.v.base
        rows = [(ui, u.prompt_ids) for ui, u in enumerate(units) for _ in u.sample_indices]
        with unwrap_model_for_generation(t.model_wrapped, t.accelerator,
                                         gather_deepspeed3_params=t.args.ds3_gather_for_generation) as model:
            was_training = model.training
            model.eval()  # as siri eval's loaded model (dropout off)
            try:
                torch.manual_seed(seed)  # one seed per call, as TransformersBackend.generate
                seqs = generate_batch(model, [ids for _, ids in rows], pad_id=self.pad_id, eos_ids=self.eos_ids,
                                      max_new_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                      device=str(t.accelerator.device))
            finally:
                model.train(was_training)
        out: list[list[Completion]] = [[] for _ in units]
        for (ui, _), new_ids in zip(rows, seqs, strict=True):
            ids, reason = strip_eos(new_ids, self.eos_ids, self.pad_id, cfg.max_tokens)
            out[ui].append(Completion(ids, decode_response(t.processing_class, ids), reason))
        return out


class ColocatedVLLMSampler:
    """The trainer's colocated vLLM engine (``trl.vllm_mode: colocate``), one seeded request per sample by ``siri
    eval --backend vllm``'s rule."""

    kind = "vllm"

    def __init__(self, trainer: Any, validator: Any):
        self.trainer, self.v = trainer, validator
        self.eos_ids = eos_token_ids(trainer.processing_class, trainer.model)

    def sync(self) -> None:
        """Push the current policy to the engine (TRL pushes only at its next rollout, grpo_trainer.py:1769-1772;
        pushing again there is harmless) and wake its KV cache under sleep mode (vllm_generation.py:704-705)."""
        vg = self.trainer.vllm_generation
        vg.sync_weights()  # wakes sleeping weights itself (vllm_generation.py:489-492)
        if vg.enable_sleep_mode:
            vg.llm.wake_up(tags=["kv_cache"])

    def done(self) -> None:
        vg = self.trainer.vllm_generation
        if vg.enable_sleep_mode:
            # Back to sleep as after a rollout (vllm_generation.py:750-752); the next rollout is at a new
            # global_step, so TRL pushes the weights again before it (grpo_trainer.py:1769).
            vg.llm.sleep(level=2)

    def generate(self, units: list, seed: int) -> list[list[Completion]]:
        from vllm import SamplingParams

        cfg, tok = self.v.base, self.trainer.processing_class
        rows = [(ui, i) for ui, u in enumerate(units) for i in u.sample_indices]
        params = [SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, max_tokens=cfg.max_tokens,
                                 seed=sample_seed(cfg.seed, units[ui].benchmark, units[ui].problem_id, i),
                                 skip_special_tokens=True) for ui, i in rows]
        prompts = [{"prompt_token_ids": units[ui].prompt_ids} for ui, _ in rows]
        outputs = self.trainer.vllm_generation.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        out: list[list[Completion]] = [[] for _ in units]
        for (ui, _), o in zip(rows, outputs, strict=True):
            c = o.outputs[0]
            ids, _ = strip_eos(list(c.token_ids), self.eos_ids, None, cfg.max_tokens)
            out[ui].append(Completion(ids, decode_response(tok, ids), "length" if c.finish_reason == "length" else "stop",
                                      prompt_token_ids=list(o.prompt_token_ids or [])))
        return out


def check_validation_engine(cfg: Any, kw: dict[str, Any]) -> None:
    """Refuse, before any model loads, a validation the trainer's engine cannot run: vLLM in server mode (its
    client samples without per-request seeds), or a fixed cap the colocated engine's context cannot hold."""
    if not cfg.validation.benchmarks or not kw.get("use_vllm"):
        return
    if kw.get("vllm_mode", "colocate") != "colocate":
        raise ConfigError("validation: with trl.use_vllm it needs trl.vllm_mode: colocate (the server client takes no "
                          "per-sample seeds); drop the validation: section or use the colocated engine")
    need = cfg.data.max_prompt_length + (cfg.validation.max_tokens or cfg.schedule.l_max)
    if kw.get("vllm_max_model_length", need) < need:
        raise ConfigError(f"validation.max_tokens does not fit trl.vllm_max_model_length="
                          f"{kw['vllm_max_model_length']} with data.max_prompt_length; set it to at least {need}")


class ValidationCallback(TrainerCallback):
    """Validates the policy after ``done`` rounds wherever ``validator.due(done)``; add it after the
    :class:`~siri_rl.engines.trl.callback.LengthScheduleCallback` (whose ``on_log`` writes the round's
    ``metrics.jsonl`` row first). ``schedule_cb`` gives the round layout and the progress bar."""

    def __init__(self, validator: Any, schedule_cb: Any):
        self.validator, self.schedule_cb = validator, schedule_cb
        self.trainer: Any = None
        self.sampler: ModelSampler | ColocatedVLLMSampler | None = None
        self.seconds = 0.0  # wall time spent validating in this start (what the benchmark reads)
        self._validated: set[int] = set()

    def bind(self, trainer: Any) -> ValidationCallback:
        self.trainer = trainer
        self.sampler = (ColocatedVLLMSampler if trainer.args.use_vllm else ModelSampler)(trainer, self.validator)
        trainer.add_callback(self)
        return self

    def _done_rounds(self, args, state) -> int | None:
        micro = state.global_step * args.gradient_accumulation_steps
        per_round = self.schedule_cb.micro_steps_per_round
        return None if micro % per_round else micro // per_round

    def on_train_begin(self, args, state, control, **kwargs):
        done = self._done_rounds(args, state) or 0
        if state.is_world_process_zero:
            self.validator.resume(done)  # rows after the resumed round go; a validation cut short is redone
        self.trainer.accelerator.wait_for_everyone()
        if self.validator.due(done) and not self.validator.done(done):
            self.validate(done, state)
        self._validated.add(done)

    def on_log(self, args, state, control, logs=None, **kwargs):
        done = self._done_rounds(args, state)
        if done is not None and done not in self._validated and self.validator.due(done):
            self.validate(done, state)
        if done is not None:
            self._validated.add(done)

    def validate(self, done: int, state) -> list[dict[str, Any]] | None:
        """One validation of the current policy, on every process; the main process writes and returns the rows."""
        import torch
        from accelerate.utils import gather_object

        t0 = time.time()
        acc, sampler = self.trainer.accelerator, self.sampler
        assert sampler is not None
        calls = self.validator.plan(done, sampler.kind)
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():  # training's random streams stay as they were
            if isinstance(sampler, ColocatedVLLMSampler):
                sampler.sync()
            try:
                mine = {i: sampler.generate(units, seed) for i, (seed, units) in enumerate(calls)
                        if i % acc.num_processes == acc.process_index}
            finally:
                if isinstance(sampler, ColocatedVLLMSampler):
                    sampler.done()
        if acc.num_processes > 1:
            parts = gather_object([mine])
            mine = {i: c for part in parts for i, c in part.items()}
        rows = None
        if state.is_world_process_zero:
            rows = self.validator.write(done, sampler.kind, calls, mine)
            progress = self.schedule_cb.progress
            line = "; ".join(f"{r['benchmark']} {r['acc']:.1f}% len {r['mean_len']:.0f}" for r in rows)
            with contextlib.suppress(Exception):  # a message, never a reason to stop training
                if progress is not None and progress.console.is_terminal:
                    progress.print(f"validation after round {done}: {line}")
        acc.wait_for_everyone()
        self.seconds += time.time() - t0
        return rows
