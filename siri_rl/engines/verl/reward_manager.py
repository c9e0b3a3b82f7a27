"""The ``SiriRewardManager``: veRL's naive reward manager, decoding responses by SIRI's one decoding rule.

veRL's reward managers decode each response with ``skip_special_tokens=True``
(verl/experimental/reward_loop/reward_manager/naive.py:54-56) before ``compute_score`` sees the text. With a
tokenizer that marks ``</think>`` special, that drops the one marker the answer is read after, and every response
would score 0 while the TRL reward and ``siri eval`` grade it. This manager is the naive one with a tokenizer whose
``decode`` is :func:`siri_rl.reward.decode_response`; everything else (the reward function, ``extra_info``, the
per-response metrics) is veRL's. ``siri train --engine verl`` selects it through veRL's reward-manager config:
``reward.reward_manager.source=importlib``, ``.name=SiriRewardManager``, ``.module.path=pkg://`` this module
(verl/trainer/ppo/reward.py:89-108).
"""

from __future__ import annotations

from typing import Any

from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

from siri_rl.reward import decode_response


class ResponseDecoding:
    """A tokenizer whose ``decode`` is :func:`~siri_rl.reward.decode_response` (whatever
    ``skip_special_tokens`` the caller asks for); every other attribute is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def decode(self, token_ids: Any, **_: Any) -> str:
        return decode_response(self.tokenizer, token_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


class SiriRewardManager(NaiveRewardManager):
    """veRL's naive reward manager; responses are decoded with :func:`siri_rl.reward.decode_response`."""

    def __init__(self, config: Any, tokenizer: Any, compute_score: Any, **kwargs: Any) -> None:
        super().__init__(config, ResponseDecoding(tokenizer), compute_score, **kwargs)
