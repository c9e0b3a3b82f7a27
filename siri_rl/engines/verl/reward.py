"""SIRI's length-capped reward as a veRL ``reward.custom_reward_function`` (SIRI §3; DeepScaleR's reward).

veRL's reward managers call ``compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)``
once per response, with ``solution_str`` decoded from the response tokens. Point veRL at this file with::

    reward.custom_reward_function.path=<site-packages>/siri_rl/engines/verl/reward.py
    reward.custom_reward_function.name=compute_score

(the old top-level ``custom_reward_function.*`` keys are silently ignored by veRL 0.9.x: use the ``reward.`` ones).

The cap L itself is enforced at generation time: the ``siri_single_turn`` agent loop sends ``max_tokens = L`` to
vLLM/SGLang, so the response veRL decodes here is already at most L tokens, exactly what
:func:`siri_rl.reward.length_capped_reward` grades. The agent loop also records L and the response's token count in
its ``extra_fields``, which veRL's reward managers merge into ``extra_info``; they come back as per-response
metrics (``max_len``, ``hit_cap``, ``response_tokens``) and guard against a server that ignored the cap.

This file must stay importable by path (veRL loads it with ``importlib`` from a file), so it imports the core by
absolute name and imports no veRL module.
"""

from __future__ import annotations

from typing import Any

from siri_rl.reward import DEFAULT_TIMEOUT, grade_response

# Keys the siri_single_turn agent loop writes into AgentLoopOutput.extra_fields (and so into extra_info).
MAX_LEN_KEY = "siri_max_len"
RESPONSE_TOKENS_KEY = "siri_response_tokens"
ENDED_KEY = "siri_ended"  # the response ended with an EOS token of its own (not cut by the cap)


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def compute_score(
    data_source: str | None,
    solution_str: str | None,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    *,
    require_think_end: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one rollout with SIRI's length-capped reward: 1.0 iff its final answer (last ``\\boxed{}`` after
    ``</think>``) equals ``ground_truth``, else 0.0 (SIRI §3).

    Args:
        data_source: the row's ``data_source`` (any; scoring does not depend on it).
        solution_str: the decoded response, at most L tokens long.
        ground_truth: the row's ``reward_model.ground_truth`` (a string; lists take their first element).
        extra_info: the row's ``extra_info`` plus the agent loop's fields: ``siri_max_len`` (L of this rollout
            round, tokens; absent in validation), ``siri_response_tokens`` and ``siri_ended``.
        require_think_end: as in :func:`siri_rl.reward.extract_answer`; pass
            ``+reward.custom_reward_function.reward_kwargs.require_think_end=false`` for models without think tags.
        timeout: seconds allowed to math-verify per answer.
        **kwargs: other keyword arguments veRL may pass (e.g. ``reward_router_address``); ignored.

    Returns:
        ``{"score", "acc", "max_len", "hit_cap", "response_tokens"}``; every value is a number, because veRL
        averages each key into a metric. ``max_len`` is -1 and ``hit_cap`` 0 when no cap was scheduled
        (validation). Never raises on bad input: a malformed row scores 0.
    """
    extra = extra_info if isinstance(extra_info, dict) else {}
    max_len = _as_int(extra.get(MAX_LEN_KEY))
    n_tokens = _as_int(extra.get(RESPONSE_TOKENS_KEY))
    ended = extra.get(ENDED_KEY)
    # A response is cut by the cap when it used all L tokens without ending on its own.
    hit_cap = bool(max_len is not None and n_tokens is not None and n_tokens >= max_len and not ended)

    if isinstance(ground_truth, (list, tuple)):
        ground_truth = ground_truth[0] if ground_truth else None
    correct = False
    if ground_truth is not None and str(ground_truth).strip() and isinstance(solution_str, str):
        if max_len is not None and n_tokens is not None and n_tokens > max_len:
            # The server generated past L (an engine that ignores per-request max_tokens): no reward.
            correct = False
        else:
            correct = grade_response(
                solution_str, str(ground_truth), require_think_end=require_think_end, timeout=timeout
            ).correct
    score = 1.0 if correct else 0.0
    return {
        "score": score,
        "acc": score,
        "max_len": float(max_len if max_len is not None else -1),
        "hit_cap": float(hit_cap),
        "response_tokens": float(n_tokens if n_tokens is not None else -1),
    }
