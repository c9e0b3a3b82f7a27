"""TRL engine: SIRI on ``trl.GRPOTrainer`` through its extension points (a TrainerCallback that sets the rollout
cap per rollout round, a length-capped reward function, and a GRPOConfig mapping)."""

from siri_rl.engines.trl.callback import LengthScheduleCallback, RolloutCap
from siri_rl.engines.trl.config import grpo_kwargs, policy_precision, round_layout, validate_trl_section
from siri_rl.engines.trl.reward import LengthCappedReward
from siri_rl.engines.trl.train import describe, latest_checkpoint, train

__all__ = [
    "LengthCappedReward",
    "LengthScheduleCallback",
    "RolloutCap",
    "describe",
    "grpo_kwargs",
    "latest_checkpoint",
    "policy_precision",
    "round_layout",
    "train",
    "validate_trl_section",
]
