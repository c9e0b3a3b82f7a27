"""The ``siri_single_turn`` agent loop: veRL's single-turn loop with a per-round response cap L (SIRI §4.3).

veRL has no per-step max-length setting, but every field of a rollout batch reaches ``AgentLoop.run`` as a keyword
argument, and the async vLLM/SGLang servers honour a per-request ``sampling_params["max_tokens"]``. The
:class:`~siri_rl.engines.verl.manager.SiriAgentLoopManager` writes L into the field ``siri_max_len`` of training
batches; this loop turns it into ``max_tokens = min(L, rollout.response_length)``. Validation batches carry no L
and generate up to ``response_length`` as usual.

Registered in veRL's agent-loop registry when imported; the agent-loop yaml that ``siri train --engine verl``
writes names it too, so veRL's workers (separate Ray processes) find it through
``actor_rollout_ref.rollout.agent.agent_loop_config_path``.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from siri_rl.engines.verl.reward import ENDED_KEY, MAX_LEN_KEY, RESPONSE_TOKENS_KEY
from siri_rl.prompts import eos_token_ids

AGENT_NAME = "siri_single_turn"
# Rollout engines whose server honours a per-request max_tokens. TensorRT-LLM's server recomputes max_tokens
# from the configured response_length and would silently ignore the schedule.
SUPPORTED_ROLLOUTS = ("vllm", "sglang")


class UnsupportedRolloutError(ValueError):
    """The configured rollout engine cannot apply a per-request length cap."""


def check_rollout_name(name: str | None) -> None:
    """Raise :class:`UnsupportedRolloutError` unless ``name`` is a rollout engine that honours per-request
    ``max_tokens`` (vLLM or SGLang)."""
    if name not in SUPPORTED_ROLLOUTS:
        raise UnsupportedRolloutError(
            f"actor_rollout_ref.rollout.name={name!r} cannot apply SIRI's per-round length cap: only "
            f"{' and '.join(SUPPORTED_ROLLOUTS)} honour a per-request max_tokens (TensorRT-LLM ignores it); "
            "set verl: {actor_rollout_ref.rollout.name: vllm} or sglang"
        )


def scheduled_cap(value: Any, response_length: int) -> int | None:
    """The per-request cap for a batch field value: ``min(L, response_length)`` tokens (at least 1), or None when
    the sample carries no L (validation)."""
    if value is None:
        return None
    try:
        cap = int(value)
    except (TypeError, ValueError):
        return None
    return max(1, min(cap, int(response_length)))


def token_builder_model_type(tokenizer: Any, hf_model_type: str | None) -> str | None:
    """The ``hf_model_type`` to pick veRL's prompt-token builder with.

    veRL chooses the builder from the model config's ``model_type``; for ``qwen2`` that builder expects Qwen's
    ``<|im_end|>`` chat markup. DeepSeek-R1-Distill-Qwen models are ``qwen2`` underneath but use DeepSeek's chat
    template, which has no ``<|im_end|>``, and the Qwen builder refuses them. For such tokenizers we pass no model
    type, so veRL uses its generic builder, which renders the tokenizer's own chat template.
    """
    if tokenizer is None or hf_model_type is None:
        return hf_model_type
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    try:
        create_continuous_token_builder(tokenizer, hf_model_type=hf_model_type)
    except ValueError:
        return None
    return hf_model_type


@register(AGENT_NAME)
class SiriSingleTurnAgentLoop(SingleTurnAgentLoop):
    """Single-turn generation capped at the rollout round's L (from the batch field ``siri_max_len``)."""

    def __init__(self, *args: Any, hf_model_type: str | None = None, **kwargs: Any) -> None:
        hf_model_type = token_builder_model_type(kwargs.get("tokenizer"), hf_model_type)
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)
        check_rollout_name(self.rollout_config.name)
        # vLLM/SGLang stop on the model's generation_config.json EOS list, not only the tokenizer's EOS.
        self.eos_token_ids = set(eos_token_ids(self.tokenizer, self.config.actor_rollout_ref.model.path))

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        cap = scheduled_cap(kwargs.get(MAX_LEN_KEY), self.response_length)
        params = dict(sampling_params)
        if cap is not None:
            params["max_tokens"] = cap
        output = await super().run(params, **kwargs)
        response = output.response_ids
        # Recorded per response: the reward module reads them from extra_info, the manager logs them per round.
        output.extra_fields.update(
            {
                MAX_LEN_KEY: cap,
                RESPONSE_TOKENS_KEY: len(response),
                ENDED_KEY: bool(response) and response[-1] in self.eos_token_ids,
            }
        )
        return output
