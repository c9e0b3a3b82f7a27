"""TRL engine: SIRI on ``trl.GRPOTrainer`` through its extension points (a TrainerCallback that sets the rollout
cap per rollout round, a length-capped reward function, and a GRPOConfig mapping). ``siri train --engine trl`` is
:func:`train`; an own GRPOTrainer script adds SIRI with :func:`siri_grpo`."""

from siri_rl.engines.trl.callback import LengthScheduleCallback, RolloutCap, set_rollout_cap
from siri_rl.engines.trl.config import grpo_kwargs, policy_precision, round_layout, validate_trl_section
from siri_rl.engines.trl.own_script import SiriGRPO, siri_grpo
from siri_rl.engines.trl.reward import LengthCappedReward
from siri_rl.engines.trl.train import describe, latest_checkpoint, train

__all__ = [
    "LengthCappedReward",
    "LengthScheduleCallback",
    "RolloutCap",
    "SiriGRPO",
    "describe",
    "grpo_kwargs",
    "latest_checkpoint",
    "policy_precision",
    "round_layout",
    "set_rollout_cap",
    "siri_grpo",
    "train",
    "validate_trl_section",
]
