"""Where the recipe's Hydra config and agent-loop list are: shipped beside this module as package data
(pyproject.toml), read by :mod:`siri_rl.engines.verl.launch` and by a hand-written ``verl.trainer.main_ppo`` launch."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "config"
CONFIG_NAME = "siri_trainer"
AGENT_LOOP_YAML = CONFIG_DIR / "agent_loop.yaml"
