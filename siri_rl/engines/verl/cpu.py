"""veRL on the CPU (``training.device: cpu``): the overrides, the environment and the start-up check that
``siri train --engine verl`` adds to a launch, beside siri's veRL and vLLM plugins (:mod:`.plugin`, :mod:`.vllm_cpu`).

A CPU run is what ``training.device: cpu`` asks for, never a fallback: ``auto`` on a machine without GPUs (a GPU
cluster's head node) stops with the fix instead (:func:`siri_rl.engines.verl.launch.gpus_per_node`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from siri_rl.config import ConfigError, ExperimentConfig

GPUS_KEY = "trainer.n_gpus_per_node"
RAY_GPUS_KEY = "+ray_kwargs.ray_init.num_gpus"

# The environment of the launch (inherited by Ray's local cluster and every worker): siri's CPU platform
# (siri_rl/engines/verl/plugin.py); veRL's FSDP engines are registered for device "cuda" only
# (verl/workers/engine/base.py:405-426: VERL_ENGINE_DEVICE is veRL's public override of the lookup), and they run
# on whatever device the platform names; vLLM's CPU build (VLLM_TARGET_DEVICE, vllm/platforms/__init__.py:179).
CPU_ENV = {"VERL_PLATFORM": "cpu", "VERL_ENGINE_DEVICE": "cuda", "VLLM_TARGET_DEVICE": "cpu"}
CPU_KV_CACHE_GIB = "1"  # VLLM_CPU_KVCACHE_SPACE unless set: vLLM's CPU KV cache, in GiB
CPU_RAY_LOGICAL_CPUS = 16


def cpu_overrides(gpus: int) -> dict[str, Any]:
    """What veRL 0.9.1 needs to train on the CPU, applied before the config's own ``verl:`` section. ``gpus``:
    training processes (FSDP ranks). They are declared to Ray as as many ``GPU`` resources on the CPU, because veRL's
    resource pools count GPUs only (verl/single_controller/ray/base.py:210-240); that count follows the final
    ``trainer.n_gpus_per_node`` (:data:`RAY_GPUS_KEY`, set by ``launch.build_overrides`` after the ``verl:``
    section)."""
    return {
        GPUS_KEY: gpus,
        # Logical CPUs for Ray's bookkeeping, not cores: each training process's placement bundle asks for 3
        # (verl/single_controller/ray/base.py), beside the trainer, agent-loop, reward and vLLM server actors.
        "ray_kwargs.ray_init.num_cpus": CPU_RAY_LOGICAL_CPUS,
        # The prompts are tokenised in the trainer: no data-loader worker processes (veRL's default is 8).
        "data.dataloader_num_workers": 0,
        # FSDP1 sets sync_module_states=True (verl/workers/engine/fsdp/transformer_impl.py:444), which torch refuses
        # for CPU parameters; FSDP2 has no such step.
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.ref.strategy": "fsdp2",
        # flash_attention_2 is veRL's default (verl/workers/config/model.py:185) and needs CUDA.
        "+actor_rollout_ref.model.override_config.attn_implementation": "sdpa",
        # fp32 throughout: a CPU without bf16 instructions runs bf16 updates many times slower.
        "actor_rollout_ref.actor.fsdp_config.dtype": "float32",
        "actor_rollout_ref.ref.fsdp_config.dtype": "float32",
        "actor_rollout_ref.rollout.dtype": "float32",
        "actor_rollout_ref.actor.use_torch_compile": False,
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile": False,
        "actor_rollout_ref.model.enable_gradient_checkpointing": False,
        # vLLM has no sleep mode on the CPU (the KV cache is VLLM_CPU_KVCACHE_SPACE, not a GPU memory share).
        "+actor_rollout_ref.rollout.enable_sleep_mode": False,
        "actor_rollout_ref.rollout.free_cache_engine": False,
        "actor_rollout_ref.rollout.enforce_eager": True,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.agent.num_workers": 1,
    }


def cpu_environment() -> dict[str, str]:
    """The launch's environment for a CPU run: this process's, with :data:`CPU_ENV` and a small KV cache."""
    import os

    env = dict(os.environ, **CPU_ENV)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
    return env


def on_cpu(cfg: ExperimentConfig) -> bool:
    """``training.device: cpu``: veRL on the CPU (siri's platform plugin, vLLM's CPU build)."""
    return cfg.training.device == "cpu"


_PLUGIN_CHECK = """
import importlib.metadata as md, sys
if not any(e.value == "siri_rl.engines.verl.plugin" for e in md.entry_points(group="verl.plugins")):
    sys.exit("its verl.plugins entry point is not installed: reinstall siri-rl (pip install -e '.[verl]')")
import siri_rl.engines.verl.plugin  # raises what veRL's plugin loader would swallow (verl/__init__.py:76)
import verl
from verl.plugin.platform.platform_manager import get_platform
if get_platform().device_name != "cpu":
    sys.exit(f"veRL selected the platform {get_platform().device_name!r}, not siri-rl's cpu")
"""


def check_cpu_plugin(env: Mapping[str, str]) -> None:
    """Load siri's veRL plugin as veRL does (entry point discovery, in a fresh process with the launch's
    environment) and stop with one line if the CPU platform is not what veRL selects."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _PLUGIN_CHECK], env=dict(env), capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ConfigError(f"training.device cpu: siri-rl's veRL CPU platform did not load: "
                          f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
