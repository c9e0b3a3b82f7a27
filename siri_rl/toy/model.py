"""Build the toy base model: a tiny Qwen2 trained by next-token loss on "overthinking" traces.

This is the embedded default's stand-in for DeepSeek-R1-Distill: a model that is right about half the time and
re-checks redundantly, so RL has accuracy to gain and length to compress (the task and its habits:
:mod:`siri_rl.toy.task`, ``ToyBaseSpec.task``). Built on first use and cached
under ``~/.cache/siri-rl/toy-base/<spec-hash>`` (``SIRI_TOY_CACHE`` overrides the root); deterministic given the
spec (seed included) on a given machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from siri_rl.toy.task import (
    MAX_SEARCH_DEPTH,
    SEARCH_FUNCS,
    TASKS,
    make_problems,
    make_search_trace,
    make_trace,
)
from siri_rl.toy.tokenizer import build_toy_tokenizer

SPEC_VERSION = 5  # bump when the task or trace format changes (invalidates cached base models)
# ToyBaseSpec.key() leaves these out at their defaults
_ADDED_AFTER_V5 = ("anchor_prob", "hunch_depths", "functions", "guess_target_prob", "step_check_prob",
                  "difficulties")


@dataclass(frozen=True)
class ToyBaseSpec:
    """Size and supervised-training budget of the toy base model (``toy:`` section of a config)."""

    task: str = "count"  # siri_rl.toy.task.TASKS
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 288
    sft_steps: int = 600
    sft_batch_size: int = 32
    sft_lr: float = 3e-3
    max_checks: int = 3
    check_prob: float = 0.5
    slip_prob: float = 0.5
    recount_slip_prob: float = 0.0
    guess_prob: float = 0.0
    verify_prob: float = 0.5
    give_up_prob: float = 0.2  # the search task only (make_search_trace)
    hunch_prob: float = 0.0  # the search task only: start from the answer ...
    hunch_depths: tuple[int, ...] = ()  # ... at these depths only (empty: every depth)
    anchor_prob: float = 0.0  # the search task only: else start from the target
    functions: int = 1  # the search task only: how many functions (f, g, h) the problems name
    guess_target_prob: float = 0.0  # the search task only: a guess boxes the number in the question (wrong)
    step_check_prob: float = 0.0  # the count task only: re-read each line after writing it
    min_terms: int = 3
    max_terms: int = 10
    difficulties: tuple[int, ...] = ()  # if not empty, the difficulties drawn instead of min_terms-max_terms
    seed: int = 0

    @property
    def levels(self) -> tuple[int, ...]:
        """The difficulties problems are drawn from (uniformly)."""
        return self.difficulties or tuple(range(self.min_terms, self.max_terms + 1))

    @classmethod
    def from_dict(cls, d: dict | None) -> ToyBaseSpec:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown toy model key(s) {unknown}; valid keys: {sorted(names)}")
        for name in ("hunch_depths", "difficulties"):
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        spec = cls(**d)
        for name in ("check_prob", "slip_prob", "recount_slip_prob", "guess_prob", "verify_prob", "give_up_prob",
                     "hunch_prob", "anchor_prob", "guess_target_prob", "step_check_prob"):
            value = getattr(spec, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(spec.hunch_depths, tuple) or not all(
                isinstance(k, int) and not isinstance(k, bool) for k in spec.hunch_depths):
            raise ValueError(f"hunch_depths must be a list of depths, got {spec.hunch_depths!r}")
        if spec.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {spec.task!r}")
        if not isinstance(spec.difficulties, tuple) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in spec.difficulties) or len(
                set(spec.difficulties)) != len(spec.difficulties):
            raise ValueError(f"difficulties must be a list of distinct positive integers, got {spec.difficulties!r}")
        if spec.difficulties:  # they replace min_terms-max_terms, which the checks below then read
            spec = dataclasses.replace(spec, min_terms=min(spec.difficulties), max_terms=max(spec.difficulties))
        if not 1 <= spec.min_terms <= spec.max_terms:
            raise ValueError(f"need 1 <= min_terms <= max_terms, got {spec.min_terms} and {spec.max_terms}")
        if spec.task == "search" and spec.max_terms > MAX_SEARCH_DEPTH:
            raise ValueError(f"the search task's depth (min_terms-max_terms) is at most {MAX_SEARCH_DEPTH}, got "
                             f"max_terms {spec.max_terms}")
        if isinstance(spec.functions, bool) or not isinstance(spec.functions, int) or not (
                1 <= spec.functions <= len(SEARCH_FUNCS)) or (spec.task != "search" and spec.functions != 1):
            raise ValueError(f"functions must be 1-{len(SEARCH_FUNCS)} (the search task only), got {spec.functions!r}")
        if spec.step_check_prob and spec.task != "count":
            raise ValueError(f"step_check_prob is a habit of the count task, not of {spec.task!r}")
        outside = [k for k in spec.hunch_depths if k not in spec.levels]
        if outside:
            raise ValueError(f"hunch_depths {outside} lie outside the depths {list(spec.levels)}")
        return spec

    def trace(self, problem, rng: random.Random) -> str:
        """A supervised response to ``problem`` with this spec's habits (the task's trace maker)."""
        if self.task == "search":
            return make_search_trace(problem, rng, guess_prob=self.guess_prob, give_up_prob=self.give_up_prob,
                                     check_prob=self.check_prob, max_checks=self.max_checks,
                                     hunch_prob=self.hunch_prob, anchor_prob=self.anchor_prob,
                                     hunch_depths=self.hunch_depths, guess_target_prob=self.guess_target_prob)
        return make_trace(problem, rng, max_checks=self.max_checks, check_prob=self.check_prob,
                          slip_prob=self.slip_prob, recount_slip_prob=self.recount_slip_prob,
                          guess_prob=self.guess_prob, verify_prob=self.verify_prob,
                          step_check_prob=self.step_check_prob)

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        for name in _ADDED_AFTER_V5:  # at their defaults they change no trace: earlier specs keep their cache key
            if fields[name] == getattr(ToyBaseSpec, name):
                del fields[name]
        blob = json.dumps({"v": SPEC_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get("SIRI_TOY_CACHE", Path.home() / ".cache" / "siri-rl" / "toy-base"))


def toy_prompt_messages(problem: str) -> list[dict]:
    """The chat messages for a toy problem: the same instruction the real models get (siri_rl.data)."""
    from siri_rl.prompts import build_messages

    return build_messages(problem)


def _model_config(spec: ToyBaseSpec, vocab_size: int, eos_id: int, pad_id: int):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )


def build_toy_base(spec: ToyBaseSpec, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Train the toy base model described by ``spec`` and ``save_pretrained`` it (with tokenizer) to ``out_dir``.

    Supervised next-token loss on the response tokens only (prompt tokens are masked). Takes ~``sft_steps`` x
    0.5-1 s on a 2-core CPU for the default spec.
    """
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    torch.manual_seed(spec.seed)
    rng = random.Random(spec.seed)
    tok = build_toy_tokenizer()
    config = _model_config(spec, len(tok), tok.eos_token_id, tok.pad_token_id)
    model = Qwen2ForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.sft_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, spec.sft_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, spec.sft_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # Training problems come from a seed stream disjoint from evaluation's (see siri_rl.toy.run).
    problems = make_problems(spec.sft_steps * spec.sft_batch_size, seed=10_000 + spec.seed,
                             min_terms=spec.min_terms, max_terms=spec.max_terms, prefix="sft", task=spec.task,
                             functions=spec.functions, difficulties=spec.difficulties)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.sft_steps, desc="toy base model (SFT)", unit="step")
    t0 = time.time()
    for step in range(spec.sft_steps):
        batch = problems[step * spec.sft_batch_size : (step + 1) * spec.sft_batch_size]
        seqs, masks = [], []
        for p in batch:
            prompt = tok.apply_chat_template(toy_prompt_messages(p.problem), add_generation_prompt=True,
                                             tokenize=False)
            p_ids = tok(prompt, add_special_tokens=False).input_ids
            r_ids = tok(spec.trace(p, rng),
                        add_special_tokens=False).input_ids + [tok.eos_token_id]
            seqs.append(p_ids + r_ids)
            masks.append([0] * len(p_ids) + [1] * len(r_ids))
        width = max(map(len, seqs))
        # Right padding and no attention mask: causal attention never lets a real token see the padding after
        # it, and CPU attention with a padding mask is ~3x slower (measured) for the same result.
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        labels = torch.full((len(seqs), width), -100)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, : len(s)] = torch.tensor([t if k else -100 for t, k in zip(s, m)])
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        elif step % 50 == 0:
            print(f"sft step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    if bar is not None:
        bar.close()
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "toy_spec.json").write_text(json.dumps({**dataclasses.asdict(spec), "spec_version": SPEC_VERSION,
                                                   "build_seconds": round(time.time() - t0, 1),
                                                   "final_loss": round(loss.item(), 4)}, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # atomic: a half-written cache entry is never picked up
    return out_dir


def ensure_toy_base(spec: ToyBaseSpec, *, force: bool = False, progress: bool = True) -> Path:
    """The cached base model for ``spec``, built first if missing (or if ``force``)."""
    path = cache_root() / spec.key()
    if force or not (path / "toy_spec.json").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_toy_base(spec, path, progress=progress)
    return path
