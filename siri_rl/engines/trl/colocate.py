"""A start-up check for TRL's colocated vLLM: fail in one line where vLLM cannot take TRL's weight sync.

TRL 1.16 syncs the policy into a colocated engine by calling the vLLM model's ``load_weights`` one parameter at a
time (``trl/generation/vllm_generation.py:509-511``), which needs each vLLM parameter's ``weight_loader``. vLLM's
CPU backend repacks linear weights for oneDNN / AMX kernels after loading and replaces the parameter by an empty
one without a loader (``vllm/model_executor/layers/utils.py``, ``dispatch_cpu_unquantized_gemm(...,
remove_weight=True)``); the first sync then fails deep inside vLLM (``linear.py``: ``'Parameter' object has no
attribute 'weight_loader'``). Whether it repacks depends on the CPU (no repacking where oneDNN cannot build the
kernel, as on the AMD EPYC machines CI runs on), so the check looks at the engine itself.
"""

from __future__ import annotations

from typing import Any

from siri_rl.config import ConfigError


def check_colocated_vllm(trainer: Any) -> None:
    """Raise :class:`ConfigError` if the trainer's colocated vLLM engine holds weights TRL cannot sync into."""
    gen = getattr(trainer, "vllm_generation", None)
    if gen is None or getattr(gen, "mode", None) != "colocate":
        return
    # The object TRL's sync_weights loads into (trl/generation/vllm_generation.py:511).
    model = gen.llm.llm_engine.model_executor.driver_worker.model_runner.model
    packed = [name for name, p in model.named_parameters() if p.numel() == 0 and not hasattr(p, "weight_loader")]
    if packed:
        raise ConfigError(
            f"vLLM repacked {len(packed)} weight(s) for its CPU kernels (e.g. {packed[0]}), so TRL's colocated "
            "weight sync cannot update them; on this CPU train with transformers rollouts (trl.use_vllm=false)")
