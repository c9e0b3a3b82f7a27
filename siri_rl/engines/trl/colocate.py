"""TRL's colocated vLLM on the CPU: keep the engine's weights where TRL's sync reaches them, and fail in one line
at start-up where they are not.

TRL 1.16 syncs the policy into a colocated engine by calling the vLLM model's ``load_weights`` one parameter at a
time (``trl/generation/vllm_generation.py:509-511``), which needs each vLLM parameter's ``weight_loader``. vLLM's
CPU backend repacks linear weights for oneDNN / AMX kernels after loading and replaces the parameter by an empty
one without a loader (``vllm/model_executor/layers/utils.py``, ``dispatch_cpu_unquantized_gemm(...,
remove_weight=True)``); the first sync then fails deep inside vLLM (``linear.py``: ``'Parameter' object has no
attribute 'weight_loader'``). Whether it repacks depends on the CPU (no repacking where oneDNN cannot build the
kernel), so the check looks at the engine itself.

:func:`keep_linear_weights` prevents the repacking in the training process before TRL builds its engine: vLLM's
own fallback for a layer it does not pack (``layers/utils.py``: ``cpu_linear = torch.nn.functional.linear`` on the
live ``layer.weight``, the path of its meta and MLA layers) for every 2-D linear and output layer, so each in-place
``load_weights`` is what the next generation computes with. It replaces ``dispatch_cpu_unquantized_gemm`` in its
module, which both callers import at call time (``linear.py:214-216``, ``vocab_parallel_embedding.py:68-70``);
tests/test_trl_vllm.py checks that source and fails if a vLLM upgrade moves it.
"""

from __future__ import annotations

from typing import Any

from siri_rl.config import ConfigError


def keep_linear_weights() -> bool:
    """On vLLM's CPU platform, make engines built from now on in this process keep their linear weights (the module
    docstring); True if it did. Costs the packed kernels' speed, which a toy-sized CPU run does not miss."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    import torch
    from vllm.model_executor.layers import utils

    packing = utils.dispatch_cpu_unquantized_gemm
    if getattr(packing, "siri_keeps_weights", False):
        return True

    def dispatch_keeping_weights(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.ndim != 2:  # not a linear layer (conv, MoE experts): vLLM's own handling
            return packing(layer, remove_weight)
        layer.cpu_linear = torch.nn.functional.linear

    dispatch_keeping_weights.siri_keeps_weights = True  # type: ignore[attr-defined]
    utils.dispatch_cpu_unquantized_gemm = dispatch_keeping_weights
    return True


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
