"""GPU check: the paper-scale model through `siri train` (TRL engine) and `siri eval` on one GPU, in one command.

What it does, in order (sized for at most 8 minutes on one H100, from the step counts below; docs/gpu-check.md
says how to run it there):

1. Builds DeepSeek-R1-Distill-Qwen-1.5B's architecture (its Qwen2 config.json: hidden 1536, 28 layers, 12 heads,
   2 KV heads, intermediate 8960, vocab 151936, untied embeddings) with random weights, saved in bf16 as the hub's
   checkpoint is, beside the real R1-distill tokenizer.
2. Trains it for 3 rollout rounds with the TRL engine (``siri_rl.engines.trl.train``, the function `siri train
   --engine trl` calls) on the shipped ``r1-distill-1.5b-siri-cosine640`` config with only what one GPU and a short
   run need changed: the schedule (caps 1024 -> 512 -> 1024, ``kind: stages``), 4 prompts per round, transformers
   generation instead of vLLM, and ``trl.entropy_coef`` (a random model's rewards are all 0, so the policy gradient
   is 0 and only an entropy bonus moves the weights; the same device as tests/test_train_trl.py uses), and no
   held-out validation during training (step 3 times evaluation on its own). The
   precision policy is the shipped one (``model.dtype: auto``: fp32 master weights, bf16 autocast), as are the group
   size (8), the micro-batch (4) and the learning rate (1e-6). Checks: every completion is at most its round's cap,
   the weights move at lr 1e-6, the policy is fp32 and computes in bf16. Reports the peak GPU memory and each
   round's time split into generation / scoring / update (read from forward hooks on the policy, see
   :class:`RoundClock`) and tokens per second.
3. Evaluates the built model with `siri eval --backend transformers` in bf16 (``siri_rl.evaluate.run_eval``, what
   the command calls) on the first AIME24 problems, against a bare batched ``model.generate`` on the same prompt
   ids, seeds, rows per call, sampling settings and lengths: the ratio of generated tokens per second (target
   >= 0.95).
4. Projects the per-GPU memory of the paper configs (1.5B: 8 GPUs, DDP, vLLM colocate at 0.35; 7B: FSDP2, vLLM at
   0.3) against the card, from the measured memory, as an estimate with its formula (:func:`project_memory`).

Writes ``report.json`` and ``report.md`` to ``--out``; exit status 1 if a check failed.

    python benchmarks/gpu_check.py --out DIR --tokenizer TOKENIZER_DIR --aime24 aime24.jsonl     # one GPU
    python benchmarks/gpu_check.py --tiny --out DIR                                               # CPU, ~1 min

``--tiny`` runs the same code on the CPU with a 2-layer model of the same vocabulary (caps 16 -> 8 -> 16); it is
the test tests/test_gpu_check.py. The tokenizer and AIME24 default to ``../shared`` beside the checkout
(``$SIRI_SHARED_DIR``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIRI_SHARED_DIR", REPO.parent / "shared"))
SHIPPED_CONFIG = "r1-distill-1.5b-siri-cosine640"
GiB = 1024**3

# deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, config.json on the hub (model_type qwen2, transformers 4.44 export).
R1_DISTILL_1_5B = {
    "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 131072, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6, "sliding_window": 4096, "use_sliding_window": False, "max_window_layers": 21,
    "tie_word_embeddings": False, "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643,
}
# deepseek-ai/DeepSeek-R1-Distill-Qwen-7B, config.json on the hub: only counted (on the meta device), never built.
R1_DISTILL_7B = {**R1_DISTILL_1_5B, "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
                 "num_key_value_heads": 4, "vocab_size": 152064, "max_window_layers": 28}
# The --tiny model: the same vocabulary and untied head, two narrow layers.
TINY = {**R1_DISTILL_1_5B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}

# H100 80GB HBM3 as torch reports it on the lent machines (81,559 MiB); the projection's card when no GPU is seen.
H100_BYTES = 81559 * 1024**2


class CheckError(Exception):
    """Bad input: one line on stderr, exit 2, before any model loads."""


# ---------------------------------------------------------------------------------------------------------------
# 1. the model


def qwen2_config(spec: dict[str, Any], tokenizer: Any = None):
    from transformers import Qwen2Config

    extra = {"pad_token_id": tokenizer.pad_token_id} if tokenizer is not None else {}
    return Qwen2Config(**spec, **extra)


def count_parameters(spec: dict[str, Any]) -> dict[str, int]:
    """Parameter counts of a Qwen2 built on the meta device (no memory): total, per decoder layer, embedding."""
    import torch
    from transformers import Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(qwen2_config(spec))
    return {"total": sum(p.numel() for p in model.parameters()),
            "layer": sum(p.numel() for p in model.model.layers[0].parameters()),
            "embedding": model.model.embed_tokens.weight.numel()}


def build_policy(path: Path, tokenizer_dir: Path, spec: dict[str, Any], device: str) -> dict[str, Any]:
    """A random-init Qwen2 of ``spec`` saved in bf16 (the hub checkpoint's dtype) with the R1-distill tokenizer.

    The tokenizer is saved into the model directory, whose config.json says qwen2: loaded from the bare tokenizer
    folder, transformers 5 picks a LlamaTokenizer (tests/conftest.py)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from siri_rl.data import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    if len(tok) > spec["vocab_size"]:
        raise CheckError(f"the tokenizer at {tokenizer_dir} has {len(tok)} tokens, more than the model's vocabulary "
                         f"({spec['vocab_size']}): not the R1-distill tokenizer")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):  # initialising 1.8B parameters on the GPU takes seconds, on the CPU a minute
        model = Qwen2ForCausalLM(qwen2_config(spec, tok))
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    del model
    _free_gpu()
    return {"parameters": n, "tokenizer_tokens": len(tok), "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            "build_seconds": round(time.perf_counter() - t0, 1)}


def _free_gpu() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# 2. training


def train_config(model_dir: Path, train_file: Path, caps: list[int], *, prompts: int, group_size: int,
                 device: str, entropy_coef: float):
    """The shipped 1.5B config with the changes a one-GPU, three-round run needs (module docstring)."""
    from importlib.resources import files

    from siri_rl.config import config_from_dict, load_config

    shipped = load_config(Path(str(files("siri_rl") / "configs" / f"{SHIPPED_CONFIG}.yaml")))
    d = shipped.to_dict()
    d["name"] = "gpu-check"
    d["model"]["name_or_path"] = str(model_dir)  # model.dtype stays as shipped (auto)
    d["data"]["train"] = str(train_file)
    d["schedule"] = {"kind": "stages", "l_max": max(caps), "stages": [[r, c] for r, c in enumerate(caps)]}
    d["training"].update({"rounds": len(caps), "prompts_per_round": prompts, "group_size": group_size,
                          "device": device, "save_every": None})
    trl = {k: v for k, v in d["trl"].items() if not k.startswith("vllm_")}
    trl.update({"use_vllm": False, "report_to": "none", "entropy_coef": entropy_coef})
    d["trl"] = trl
    d["validation"] = {"benchmarks": []}  # rounds timed alone: step 3 measures evaluation
    return config_from_dict(d), shipped


def round_clock(device: str):
    """A :class:`RoundClock` (a ``TrainerCallback``; transformers is imported here, not at module import)."""
    import torch
    from transformers import TrainerCallback

    cuda = device.startswith("cuda")

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    class RoundClock(TrainerCallback):
        """Times each rollout round (one optimizer step here) from the Trainer's events and forward hooks on the
        policy, and samples weights before and after training.

        A round: ``on_step_begin`` -> TRL generates (``model.generate``: forwards under no_grad without
        ``labels``) -> scores (the reward, advantages) -> updates (forwards with grad, backward, optimizer step)
        -> ``on_step_end``. Generation = round start to the end of its last generation forward; scoring = from
        there to the first forward with grad; update = from there to ``on_step_end``. Generation forwards are
        counted: one per new token (prefill + decode steps), so their count bounds every completion's length.
        """

        def __init__(self) -> None:
            self.rounds: list[dict[str, Any]] = []
            self.compute_dtypes: dict[str, set[str]] = {"generation": set(), "update": set()}
            self._hooks: list[Any] = []

        # -- hooks ------------------------------------------------------------------------------------------
        def _pre(self, module, args, kwargs):
            cur = self._cur
            if cur is None:
                return
            if torch.is_grad_enabled():
                if cur.get("update_start") is None:
                    cur["update_start"] = now()
                    cur["scoring_end_peak"] = _peak_and_reset(cuda)
                ids = kwargs.get("input_ids", args[0] if args else None)
                if ids is not None:
                    cur["micro_batch"] = max(cur.get("micro_batch", 0), int(ids.shape[0]))
                    cur["sequence_width"] = max(cur.get("sequence_width", 0), int(ids.shape[1]))
            elif "labels" not in kwargs and cur.get("update_start") is None:
                cur["generation_forwards"] += 1

        def _post(self, module, args, kwargs, output):
            cur = self._cur
            if cur is not None and not torch.is_grad_enabled() and "labels" not in kwargs \
                    and cur.get("update_start") is None:
                cur["generation_end"] = now()

        # -- Trainer events ---------------------------------------------------------------------------------
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._cur = None
            self.param_dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
            self.parameters = sum(p.numel() for p in model.parameters())
            # Up to 4096 evenly spaced elements of every tensor: enough to see which tensors an update moves.
            self.before = {}
            for name, p in model.named_parameters():
                flat = p.detach().reshape(-1)
                idx = torch.linspace(0, flat.numel() - 1, min(flat.numel(), 4096), device=flat.device).long()
                self.before[name] = (idx, flat[idx].clone())
            self._hooks = [model.register_forward_pre_hook(self._pre, with_kwargs=True),
                           model.register_forward_hook(self._post, with_kwargs=True)]
            mlp = model.model.layers[0].mlp.down_proj
            self._hooks.append(mlp.register_forward_hook(
                lambda m, i, out: self.compute_dtypes["update" if torch.is_grad_enabled() else "generation"]
                .add(str(out.dtype).removeprefix("torch."))))

        def on_step_begin(self, args, state, control, **kwargs):
            _peak_and_reset(cuda)
            self._cur = {"start": now(), "generation_forwards": 0,
                         "allocated_at_start": torch.cuda.memory_allocated() if cuda else None}

        def on_step_end(self, args, state, control, **kwargs):
            cur, self._cur = self._cur, None
            end = now()
            gen_end = cur.get("generation_end", cur["start"])
            upd = cur.get("update_start", end)
            self.rounds.append({
                "round": len(self.rounds),
                "round_seconds": end - cur["start"],
                "generation_seconds": gen_end - cur["start"],
                "scoring_seconds": upd - gen_end,
                "update_seconds": end - upd,
                "generation_forwards": cur["generation_forwards"],
                "micro_batch": cur.get("micro_batch"),
                "sequence_width": cur.get("sequence_width"),
                "allocated_at_start_bytes": cur["allocated_at_start"],
                "peak_generation_scoring_bytes": cur.get("scoring_end_peak"),
                "peak_update_bytes": _peak_and_reset(cuda),
            })

        def on_train_end(self, args, state, control, model=None, **kwargs):
            for h in self._hooks:
                h.remove()
            self.changed = {}
            for name, p in model.named_parameters():
                idx, old = self.before[name]
                self.changed[name] = (p.detach().reshape(-1)[idx] != old).float().mean().item()
            self.before = {}

    return RoundClock()


_PEAKS = {"allocated": 0, "reserved": 0}  # the largest peaks seen across resets, for the whole run


def _peak_and_reset(cuda: bool) -> int | None:
    """The peak of allocated GPU memory since the last reset (bytes), then a reset; None on the CPU."""
    import torch

    if not cuda:
        return None
    peak = int(torch.cuda.max_memory_allocated())
    _PEAKS["allocated"] = max(_PEAKS["allocated"], peak)
    _PEAKS["reserved"] = max(_PEAKS["reserved"], int(torch.cuda.max_memory_reserved()))
    torch.cuda.reset_peak_memory_stats()
    return peak


def run_training(cfg, run_dir: Path, device: str) -> dict[str, Any]:
    """``siri_rl.engines.trl.train`` (what `siri train --engine trl` runs) with a :class:`RoundClock`; the rounds'
    metrics.jsonl rows joined with the clock's split."""

    from siri_rl.engines.trl import describe
    from siri_rl.engines.trl import train as trl_train
    from siri_rl.run_dir import METRICS_FILE, read_metric_rows

    plan = describe(cfg, run_dir)
    clock = round_clock(device)
    _peak_and_reset(device.startswith("cuda"))
    t0 = time.perf_counter()
    result = trl_train(cfg, output_dir=run_dir, progress=False, callbacks=[clock])
    wall = time.perf_counter() - t0
    rows = read_metric_rows(run_dir / METRICS_FILE)
    rounds = []
    for row, timing in zip(rows, clock.rounds, strict=True):
        gen_s = timing["generation_seconds"]
        rounds.append({
            **timing,
            "cap": row["max_len"],
            "completions": row["num_completions"],
            "completion_len_max": row["completion_len_max"],
            "completion_len_mean": row["completion_len_mean"],
            "clipped_frac": row["clipped_frac"],
            "tokens": row["tokens_round"],
            "generation_tokens_per_s": row["tokens_round"] / gen_s if gen_s > 0 else None,
            "round_tokens_per_s": row["tokens_round"] / timing["round_seconds"],
            "loss": row.get("loss"),
            "entropy": row.get("entropy"),
        })
    changed = clock.changed
    embed = [n for n in changed if "embed_tokens" in n]
    rest = [n for n in changed if n not in embed]
    out = {
        "planned_caps": [c["max_len"] for c in plan["first_caps"]],
        "planned_precision": plan["precision"],
        "grpo": {k: plan["grpo_config"][k] for k in ("learning_rate", "num_generations", "generation_batch_size",
                                                     "per_device_train_batch_size", "gradient_accumulation_steps",
                                                     "bf16", "gradient_checkpointing", "loss_type", "entropy_coef")},
        "param_dtypes": clock.param_dtypes,
        "compute_dtypes": {k: sorted(v) for k, v in clock.compute_dtypes.items()},
        "parameters": clock.parameters,
        "rounds": rounds,
        "rounds_done": result.rounds_done,
        "wall_seconds": wall,
        # Time outside the rounds: model and dataset loading, the final export and Trainer checkpoint.
        "outside_rounds_seconds": wall - sum(r["round_seconds"] for r in rounds),
        "weights_changed": {
            "min_tensor_fraction": min(changed[n] for n in rest),
            "mean_fraction": sum(changed[n] for n in rest) / len(rest),
            "norm_fraction_min": min((changed[n] for n in rest if "norm" in n), default=None),
            "embedding_fraction": sum(changed[n] for n in embed) / len(embed) if embed else None,
            "tensors": len(changed),
        },
    }
    cuda = device.startswith("cuda")
    _peak_and_reset(cuda)  # the final export and Trainer checkpoint, after the last round
    out["peak_allocated_bytes"] = _PEAKS["allocated"] if cuda else None
    out["peak_reserved_bytes"] = _PEAKS["reserved"] if cuda else None
    return out


# ---------------------------------------------------------------------------------------------------------------
# 3. evaluation throughput


def bare_generate(model, calls, *, pad_id: int, eos_ids: list[int], max_new_tokens: int, temperature: float,
                  top_p: float, device: str) -> tuple[int, float]:
    """The reference: for each call, left-pad its rows and call ``model.generate`` once, seeded as siri eval
    seeds the call; returns (new tokens up to the first EOS, seconds in generate)."""
    import torch

    tokens, seconds = 0, 0.0
    eos = set(eos_ids)
    for seed, rows in calls:
        torch.manual_seed(seed)
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, top_p=top_p, top_k=0, pad_token_id=pad_id,
                                 eos_token_id=eos_ids)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        for row in out[:, width:].tolist():
            tokens += next((i for i, t in enumerate(row) if t in eos), len(row))
    return tokens, seconds


def run_eval_check(model_dir: Path, aime24: Path, work: Path, *, problems: int, n: int, max_tokens: int,
                   dtype: str, device: str, repeats: int, deadline: float | None = None) -> dict[str, Any]:
    """`siri eval --backend transformers` (``run_eval``, what the command runs) against :func:`bare_generate`
    on the same calls, alternating (bare, siri, bare, siri, ...) so that drift hits both; the best of each. A
    repeat after the first starts only if the previous one would end before ``deadline`` (``time.perf_counter``)."""
    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.data import eos_token_ids, load_tokenizer, prompt_token_ids
    from siri_rl.evaluate import EvalConfig, plan_units, run_eval
    from siri_rl.evaluate.driver import load_eval_problems

    def config(out: Path) -> EvalConfig:
        return EvalConfig(model=str(model_dir), out=out, benchmarks=[str(aime24)], n=n, max_tokens=max_tokens,
                          backend="transformers", limit=problems, batch_size=problems * n, dtype=dtype,
                          device=device, progress=False)

    cfg = config(work / "eval0")
    tok = load_tokenizer(str(model_dir))
    table = load_eval_problems(cfg)
    prompt_ids = {(b, str(p["id"])): prompt_token_ids(p["problem"], tok) for b, rows in table.items() for p in rows}
    calls = [(seed, [u.prompt_ids for u in units for _ in u.sample_indices])
             for seed, units in plan_units(table, prompt_ids, cfg, set())]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype)).to(device).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = eos_token_ids(tok, model)
    gen = {"pad_id": pad, "eos_ids": eos, "temperature": cfg.temperature, "top_p": cfg.top_p, "device": device}
    bare_generate(model, calls[:1], max_new_tokens=min(8, max_tokens), **gen)  # warm-up (kernels, allocator)
    bare, ours, summary, last = [], [], None, 0.0
    for r in range(repeats):
        t_rep = time.perf_counter()
        if r and deadline is not None and t_rep + last > deadline:
            break
        bare.append(bare_generate(model, calls, max_new_tokens=max_tokens, **gen))
        summary = run_eval(config(work / f"eval{r}"))  # loads its own copy of the model, as the command does
        g = summary["meta"]["generation"]
        ours.append((g["new_tokens"], g["generate_seconds"]))
        last = time.perf_counter() - t_rep
    del model
    _free_gpu()
    b_tok, b_s = max(bare, key=lambda x: x[0] / x[1])
    o_tok, o_s = max(ours, key=lambda x: x[0] / x[1])
    assert summary is not None
    return {
        "command": (f"siri eval --model MODEL --benchmarks {aime24.name} --limit {problems} --n {n} --max-tokens "
                    f"{max_tokens} --backend transformers --dtype {dtype} --batch-size {problems * n}"),
        "rows": sum(len(rows) for _, rows in calls), "calls": len(calls), "max_tokens": max_tokens, "dtype": dtype,
        "bare_tokens": b_tok, "bare_seconds": b_s, "bare_tokens_per_s": b_tok / b_s,
        "eval_tokens": o_tok, "eval_seconds": o_s, "eval_tokens_per_s": o_tok / o_s,
        "ratio": (o_tok / o_s) / (b_tok / b_s),
        "repeats": len(ours),
        "all_runs": {"bare": bare, "eval": ours},
    }


# ---------------------------------------------------------------------------------------------------------------
# 4. memory projection


def project_memory(measured: dict[str, Any] | None, *, p15: dict[str, int], p7: dict[str, int], card_bytes: int,
                   gpus: int = 8) -> dict[str, Any]:
    """Per-GPU memory of the paper configs, an estimate (bytes). ``measured``: from the training rounds, None
    without a GPU (then the activation terms are unknown and the totals are lower bounds).

    1.5B (``r1-distill-1.5b-siri-cosine640``: 8 GPUs, DDP, one micro-batch of B=4 sequences of up to
    S = max_prompt_length + L_max = 1024 + 16384 tokens, vLLM colocate at 0.35)::

        M = peak_update(L=1024) + a * B * (S - s_1024) + 4 P + 0.35 * card

    where peak_update is the measured peak of the update phase (fp32 weights 4P, gradients 4P, AdamW moments 8P,
    the activations of one micro-batch of width s_1024), a = (peak(1024) - peak(512)) / (B * (s_1024 - s_512)) the
    measured bytes per token of a micro-batch (linear in the width: gradient checkpointing keeps one hidden state
    per layer, TRL computes log-probs through transformers' fused LM-head loss), 4P DDP's fp32 gradient buckets,
    and vLLM's share of the card (its bf16 weights 2P and KV cache).

    7B (``r1-distill-7b-siri-cosine640``: FSDP2 full shard over N GPUs, B=2, vLLM at 0.3)::

        M = 16 P7 / N + 2 * 2 * max(layer, embedding) + a * (h7 / h15) * 2 * S + 0.3 * card

    sharded fp32 weights, gradients and moments; two gathered bf16 units (the current one and the prefetched next;
    the embedding and the untied head are the largest); activations scaled from the 1.5B's by the hidden size.
    """
    S = 1024 + 16384
    out: dict[str, Any] = {"card_bytes": card_bytes, "sequence_tokens": S, "gpus": gpus}
    a = peak1024 = None
    if measured is not None:
        a, peak1024, s1024 = measured["bytes_per_token"], measured["peak_update_1024"], measured["width_1024"]
    P = p15["total"]
    act15 = None if a is None else a * 4 * (S - s1024)
    base15 = peak1024 if peak1024 is not None else 16 * P
    terms15 = {
        "train_peak_measured" if peak1024 is not None else "weights_grads_adam_16P": base15,
        "activations_to_17408_tokens": act15,
        "ddp_gradient_buckets_4P": 4 * P,
        "vllm_share_0.35": int(0.35 * card_bytes),
    }
    out["r1-distill-1.5b"] = _total(terms15, card_bytes, {
        "parameters": P, "formula": "peak_update(L=1024) + a*B*(S - s_1024) + 4P + 0.35*card, B=4, S=17408",
        "vllm_weights_bf16": 2 * P,
        "kv_bytes_per_token": _kv_bytes(R1_DISTILL_1_5B)})
    P7 = p7["total"]
    gathered = 2 * 2 * max(p7["layer"], p7["embedding"])
    for n in (gpus, 2 * gpus):
        act7 = None if a is None else a * (R1_DISTILL_7B["hidden_size"] / R1_DISTILL_1_5B["hidden_size"]) * 2 * S
        terms7 = {
            f"sharded_weights_grads_adam_16P/{n}": 16 * P7 // n,
            "gathered_bf16_units": gathered,
            "activations_17408_tokens_B2": act7,
            "vllm_share_0.3": int(0.3 * card_bytes),
        }
        out[f"r1-distill-7b-fsdp{n}"] = _total(terms7, card_bytes, {
            "parameters": P7, "gpus": n,
            "formula": f"16*P7/{n} + 2*2*max(layer, embedding) + a*(h7/h15)*B*S + 0.3*card, B=2, S=17408",
            "vllm_weights_bf16": 2 * P7,
            "kv_bytes_per_token": _kv_bytes(R1_DISTILL_7B)})
    for key in ("r1-distill-1.5b", f"r1-distill-7b-fsdp{gpus}", f"r1-distill-7b-fsdp{2 * gpus}"):
        e = out[key]
        share = e["terms"].get("vllm_share_0.35", e["terms"].get("vllm_share_0.3"))
        e["vllm_kv_room_bytes"] = share - e["vllm_weights_bf16"]
        e["vllm_kv_sequences_of_17408"] = e["vllm_kv_room_bytes"] / (e["kv_bytes_per_token"] * S)
    return out


def _kv_bytes(spec: dict[str, Any]) -> int:
    """bf16 K and V of one token over all layers."""
    head_dim = spec["hidden_size"] // spec["num_attention_heads"]
    return spec["num_hidden_layers"] * 2 * spec["num_key_value_heads"] * head_dim * 2


def _total(terms: dict[str, Any], card: int, extra: dict[str, Any]) -> dict[str, Any]:
    known = [v for v in terms.values() if v is not None]
    total = int(sum(known))
    complete = len(known) == len(terms)
    return {**extra, "terms": terms, "total_bytes": total, "complete": complete,
            "fits": (total <= card) if complete else None, "headroom_bytes": card - total}


def measured_memory(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The activation slope from the rounds at the largest and the smallest cap (None without GPU figures)."""
    if not rounds or rounds[0]["peak_update_bytes"] is None:
        return None
    # The last round at each cap: after round 0 the AdamW moments exist throughout (created in its first step).
    hi = max(rounds, key=lambda r: (r["cap"], r["round"]))
    lo = min(rounds, key=lambda r: (r["cap"], -r["round"]))
    dw = hi["sequence_width"] - lo["sequence_width"]
    if dw <= 0:
        return None
    a = (hi["peak_update_bytes"] - lo["peak_update_bytes"]) / (hi["micro_batch"] * dw)
    return {"bytes_per_token": a, "peak_update_1024": hi["peak_update_bytes"], "width_1024": hi["sequence_width"],
            "peak_update_512": lo["peak_update_bytes"], "width_512": lo["sequence_width"],
            "micro_batch": hi["micro_batch"]}


# ---------------------------------------------------------------------------------------------------------------
# report


def checks_of(train: dict[str, Any], caps: list[int], want_compute: str) -> list[dict[str, Any]]:
    rounds = train["rounds"]
    w = train["weights_changed"]
    return [
        {"name": "three rounds trained", "passed": train["rounds_done"] == len(caps) == len(rounds),
         "detail": f"{train['rounds_done']} of {len(caps)}"},
        {"name": "caps as planned", "passed": [r["cap"] for r in rounds] == caps == train["planned_caps"][: len(caps)],
         "detail": f"rows {[r['cap'] for r in rounds]}, schedule {train['planned_caps']}"},
        {"name": "every completion <= its round's cap",
         "passed": all(r["completion_len_max"] <= r["cap"] and 0 < r["generation_forwards"] <= r["cap"]
                       for r in rounds),
         "detail": "; ".join(f"round {r['round']}: longest {r['completion_len_max']}, generate forwards "
                             f"{r['generation_forwards']}, cap {r['cap']}" for r in rounds)},
        {"name": "weights move at lr 1e-6",
         "passed": train["grpo"]["learning_rate"] == 1e-6 and w["min_tensor_fraction"] > 0 and w["mean_fraction"] > 0.9,
         "detail": (f"sampled elements changed: mean {w['mean_fraction']:.3f}, least-changed tensor "
                    f"{w['min_tensor_fraction']:.3f}, norms {w['norm_fraction_min']}, input embedding "
                    f"{w['embedding_fraction']:.3f} (only the rows of tokens in the batch get a gradient)")},
        {"name": "fp32 master weights", "passed": train["param_dtypes"] == ["float32"]
         and train["planned_precision"]["weights"] == "float32", "detail": f"parameters {train['param_dtypes']}"},
        {"name": f"update computes in {want_compute}", "passed": train["compute_dtypes"]["update"] == [want_compute],
         "detail": f"MLP output dtypes {train['compute_dtypes']}"},
    ]


def write_report(report: dict[str, Any], out: Path) -> None:
    """report.json and report.md, each written beside and renamed (atomic)."""
    from siri_rl.results import replace_atomically

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    replace_atomically(lambda tmp: tmp.write_text(text), out / "report.json")
    md = markdown(report)
    replace_atomically(lambda tmp: tmp.write_text(md), out / "report.md")


def _gib(x: float | None) -> str:
    return "–" if x is None else f"{x / GiB:.1f}"


def markdown(r: dict[str, Any]) -> str:
    t, e, m = r["train"], r["eval"], r["memory_projection"]
    lines = [f"# GPU check ({'tiny, CPU' if r['tiny'] else 'R1-Distill-Qwen-1.5B architecture, random weights'})",
             "", f"{r['device']}, {r['date']}, torch {r['versions']['torch']}, transformers "
             f"{r['versions']['transformers']}, trl {r['versions']['trl']}; {r['wall_seconds']:.0f} s in all.", "",
             f"`{r['command']}`", "", "## Checks", "", "| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'yes' if c['passed'] else '**no**'} | {c['detail']} |" for c in r["checks"]]
    lines += ["", "## Training (siri train, TRL engine)", "",
              f"{t['parameters']:,} parameters, {', '.join(t['param_dtypes'])} weights, compute "
              f"{t['compute_dtypes']}; group size {t['grpo']['num_generations']}, "
              f"{t['grpo']['generation_batch_size']} completions per round, micro-batch "
              f"{t['grpo']['per_device_train_batch_size']} x {t['grpo']['gradient_accumulation_steps']}, "
              f"lr {t['grpo']['learning_rate']:g}. Peak GPU memory allocated: {_gib(t['peak_allocated_bytes'])} GiB "
              f"(reserved {_gib(t['peak_reserved_bytes'])} GiB); host peak RSS {r['host_max_rss_bytes'] / GiB:.1f} "
              f"GiB. Allocated at each round's start: "
              f"{', '.join(_gib(x['allocated_at_start_bytes']) for x in t['rounds'])} GiB (fp32 weights 4P = "
              f"{_gib(4 * t['parameters'])} GiB; with the AdamW moments, from round 1 on, 12P = "
              f"{_gib(12 * t['parameters'])} GiB).", "",
              "| round | cap | longest | tokens | generation s | scoring s | update s | round s | generation tok/s "
              "| round tok/s | peak gen+score GiB | peak update GiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in t["rounds"]:
        lines.append(f"| {x['round']} | {x['cap']} | {x['completion_len_max']} | {x['tokens']} | "
                     f"{x['generation_seconds']:.1f} | {x['scoring_seconds']:.2f} | {x['update_seconds']:.1f} | "
                     f"{x['round_seconds']:.1f} | {x['generation_tokens_per_s']:.0f} | {x['round_tokens_per_s']:.0f} | "
                     f"{_gib(x['peak_generation_scoring_bytes'])} | {_gib(x['peak_update_bytes'])} |")
    lines += ["", f"Outside the rounds (loading, final export and Trainer checkpoint): "
              f"{t['outside_rounds_seconds']:.0f} s.", "", "## Evaluation throughput", "",
              f"`{e['command']}` against a bare batched `model.generate` on the same {e['rows']} rows "
              f"({e['calls']} call(s)), best of {e['repeats']}:", "",
              "| path | tokens | seconds | tokens/s |", "|---|---|---|---|",
              f"| bare model.generate | {e['bare_tokens']} | {e['bare_seconds']:.2f} | {e['bare_tokens_per_s']:.0f} |",
              f"| siri eval (generation) | {e['eval_tokens']} | {e['eval_seconds']:.2f} | "
              f"{e['eval_tokens_per_s']:.0f} |", "",
              f"Ratio siri eval / bare: **{e['ratio']:.3f}x** (target >= 0.95: "
              f"{'met' if e['ratio'] >= 0.95 else 'not met'}).", "",
              "## Per-GPU memory of the paper configs (estimate)", "",
              f"Card: {_gib(m['card_bytes'])} GiB. Measured activation slope: "
              + (f"{r['memory_measured']['bytes_per_token'] / 1024:.1f} KiB per micro-batch token"
                 if r["memory_measured"] else "not measured (no GPU): totals are lower bounds") + ".", ""]
    for key in ("r1-distill-1.5b", "r1-distill-7b-fsdp8", "r1-distill-7b-fsdp16"):
        p = m[key]
        terms = ", ".join(f"{k} {_gib(v)}" for k, v in p["terms"].items())
        verdict = ("fits" if p["fits"] else "does NOT fit") if p["complete"] else "lower bound"
        lines.append(f"- **{key}**: {_gib(p['total_bytes'])} GiB ({verdict}; headroom {_gib(p['headroom_bytes'])} "
                     f"GiB) = {terms}. Formula: {p['formula']}. vLLM's share holds its bf16 weights "
                     f"({_gib(p['vllm_weights_bf16'])} GiB) and KV cache for "
                     f"{p['vllm_kv_sequences_of_17408']:.0f} sequences of 17408 tokens.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints its usage too)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for report.json and report.md")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model on the CPU (the CI test of this script)")
    ap.add_argument("--tokenizer", type=Path, default=SHARED / "tokenizers" / "deepseek-r1-distill-qwen",
                    help="the R1-distill tokenizer folder (tokenizer.json)")
    ap.add_argument("--aime24", type=Path, default=SHARED / "data" / "benchmarks" / "aime24.jsonl",
                    help="AIME24 as JSONL (problem, answer): training prompts and evaluation problems")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (model, run; default: a temporary one)")
    ap.add_argument("--caps", default=None, help="rollout caps per round (default 1024,512,1024; --tiny 16,8,16)")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per round (default 4; --tiny 2)")
    ap.add_argument("--group-size", type=int, default=None, help="completions per prompt (default 8 as shipped; "
                    "--tiny 4)")
    ap.add_argument("--eval-problems", type=int, default=None, help="AIME24 problems (default 4; --tiny 2)")
    ap.add_argument("--eval-n", type=int, default=None, help="samples per problem (default 8; --tiny 2)")
    ap.add_argument("--eval-max-tokens", type=int, default=None, help="(default 1024; --tiny 16)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats of each evaluation path")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds: a further evaluation repeat starts only "
                    "if the run would still end within this (default 450: the device call's 8 minutes)")
    args = ap.parse_args(argv)
    d = {"caps": "16,8,16", "prompts": 2, "group_size": 4, "eval_problems": 2, "eval_n": 2, "eval_max_tokens": 16} \
        if args.tiny else {"caps": "1024,512,1024", "prompts": 4, "group_size": 8, "eval_problems": 4, "eval_n": 8,
                           "eval_max_tokens": 1024}
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    try:
        args.caps = [int(c) for c in args.caps.split(",")]
    except ValueError:
        ap.error(f"--caps must be comma-separated token counts like 1024,512,1024, got {args.caps!r}")
    if len(args.caps) < 2 or min(args.caps) < 1 or len(set(args.caps)) < 2:
        ap.error(f"--caps needs at least two rounds with two different positive caps, got {args.caps}")
    for k in ("prompts", "group_size", "eval_problems", "eval_n", "eval_max_tokens", "repeats"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be a positive integer")
    if args.group_size < 2:
        ap.error("--group-size must be at least 2 (GRPO compares the completions of one prompt)")
    return args


def check_inputs(args: argparse.Namespace) -> str:
    """Everything that can be wrong before a model loads; returns the device."""
    import importlib.util

    if not (args.tokenizer / "tokenizer.json").is_file():
        raise CheckError(f"--tokenizer {args.tokenizer}: no tokenizer.json there; give the R1-distill tokenizer folder")
    if not args.aime24.is_file():
        raise CheckError(f"--aime24 {args.aime24}: no such file; give AIME24 as JSONL (problem, answer)")
    missing = [m for m in ("trl", "datasets", "math_verify", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise CheckError(f"missing Python packages {', '.join(missing)}: install siri-rl's dependencies (on the GPU "
                         "machine: the wheels of docs/gpu-check.md)")
    from siri_rl.data import load_problems
    from siri_rl.run_dir import check_output_dir

    need = args.prompts * len(args.caps)
    rows = load_problems(str(args.aime24))
    if len(rows) < max(args.eval_problems, 1):
        raise CheckError(f"--aime24 {args.aime24} has {len(rows)} problems, fewer than --eval-problems")
    if len(rows) < args.prompts:
        raise CheckError(f"--aime24 {args.aime24} has {len(rows)} problems, fewer than --prompts ({need} in all "
                         f"are drawn with repetition)")
    check_output_dir(args.out)
    import torch

    if args.tiny:
        return "cpu"
    if not torch.cuda.is_available():
        raise CheckError("no CUDA GPU visible; run with --tiny on a machine without one")
    return "cuda"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    from siri_rl.config import ConfigError
    from siri_rl.errors import DataError

    try:
        device = check_inputs(args)
    except (CheckError, ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import torch
    import transformers
    import trl

    if args.tiny:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work = args.work or Path(tempfile.mkdtemp(prefix="siri-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        spec = TINY if args.tiny else R1_DISTILL_1_5B
        model_dir = work / "model"
        built = build_policy(model_dir, args.tokenizer, spec, device)
        cfg, shipped = train_config(model_dir, args.aime24, args.caps, prompts=args.prompts,
                                    group_size=args.group_size, device=device, entropy_coef=0.1)
        train = run_training(cfg, work / "run", device)
        shutil.rmtree(work / "run", ignore_errors=True)  # 28 GB of fp32 exports and optimizer state at full size
        _free_gpu()
        compute = "bfloat16" if device == "cuda" else "float32"
        evaluation = run_eval_check(model_dir, args.aime24, work, problems=args.eval_problems, n=args.eval_n,
                                    max_tokens=args.eval_max_tokens, dtype=compute, device=device,
                                    repeats=args.repeats, deadline=t_start + args.budget)
    except (ConfigError, CheckError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    card = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else H100_BYTES
    measured = measured_memory(train["rounds"])
    report = {
        "tiny": args.tiny,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()}, "
                  f"{torch.get_num_threads()} torch threads)",
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "python": platform.python_version()},
        "model": {"architecture": {k: spec[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                        "num_key_value_heads", "intermediate_size", "vocab_size",
                                                        "tie_word_embeddings")}, **built},
        "shipped_config": {"name": SHIPPED_CONFIG, "model.dtype": shipped.model.dtype,
                           "group_size": shipped.training.group_size,
                           "per_device_train_batch_size": shipped.trl.get("per_device_train_batch_size"),
                           "learning_rate": shipped.training.learning_rate},
        "train": train,
        "eval": evaluation,
        "memory_measured": measured,
        "memory_projection": project_memory(measured, p15=count_parameters(R1_DISTILL_1_5B),
                                            p7=count_parameters(R1_DISTILL_7B), card_bytes=card),
        "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "checks": checks_of(train, args.caps, compute),
        "eval_ratio_target": {"target": 0.95, "ratio": evaluation["ratio"], "met": evaluation["ratio"] >= 0.95},
        "wall_seconds": time.perf_counter() - t_start,
    }
    write_report(report, args.out)
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    print((args.out / "report.md").read_text())
    if failed:
        print(f"failed checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
