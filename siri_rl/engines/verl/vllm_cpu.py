"""siri-rl's vLLM plugin for veRL on the CPU: keep the rollout engine's linear weights where veRL's weight sync
can reach them.

vLLM's CPU backend repacks each linear layer's weight for its oneDNN kernel after loading and replaces the
parameter by an empty one without a ``weight_loader`` (``vllm/model_executor/layers/utils.py``,
``dispatch_cpu_unquantized_gemm(..., remove_weight=True)``, called from ``linear.py:206-216``). veRL syncs the
policy into the engine every round through the model's ``load_weights`` (``verl/workers/rollout/vllm_rollout/
utils.py:405``), which then fails (``'Parameter' object has no attribute 'weight_loader'``) on every CPU whose
oneDNN build packs the weights (e.g. with AVX-512). Without oneDNN (``vllm._custom_ops._supports_onednn``, read at
each dispatch) an fp32 layer takes vLLM's own fallback, ``torch.nn.functional.linear`` on the live weight, which
``load_weights`` updates in place; veRL re-runs ``process_weights_after_loading`` after each sync
(``utils.py:346-351``), which re-dispatches the output layer on its new weight.

Registered as a ``vllm.general_plugins`` entry point, which vLLM calls in every engine and worker process
(``vllm/v1/worker/worker_base.py:269``); it does something only in a CPU run of ``siri train --engine verl``
(``VERL_PLATFORM=cpu``), and ``tests/test_verl_plugin.py`` checks the vLLM source it relies on.
"""

from __future__ import annotations

import os


def keep_linear_weights() -> None:
    """In a veRL CPU run, turn off vLLM's oneDNN weight repacking in this process (fp32 layers then run
    ``torch.nn.functional.linear`` on the weights veRL updates)."""
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != "cpu":
        return
    import vllm._custom_ops as ops

    ops._supports_onednn = False
