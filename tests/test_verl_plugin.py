"""siri-rl's veRL and vLLM plugins (siri_rl/engines/verl/plugin.py, vllm_cpu.py) against the installed veRL, TRL and
vLLM: each bridge does its job through veRL's own entry-point loading, in a fresh process, and each test fails when
the code a bridge relies on moves (so an upgrade that makes a bridge wrong or unneeded is seen, not bypassed)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("verl", reason="veRL is not installed: pip install 'siri-rl[verl]'")


def python(code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_PLUGINS")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                          timeout=300)


BUILD_ACTOR_PATCH = """
    import torch, verl
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from verl.models.transformers.monkey_patch import apply_monkey_patch
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    # what veRL's FSDP engine runs on every actor it builds (verl/workers/engine/fsdp/transformer_impl.py:324)
    apply_monkey_patch(model=model, use_remove_padding=True, ulysses_sp_size=1)
    print("patched")
"""


def test_verl_actor_patch_runs_beside_current_trl_only_with_the_plugin():
    """veRL's apply_monkey_patch imports TRL's value-head model whenever TRL is installed; TRL >= 1.13 removed it,
    so without siri's plugin (veRL's VERL_USE_EXTERNAL_PLUGINS=none) every actor build fails with ImportError —
    on GPUs as on the CPU. With the plugin (loaded by `import verl` through the verl.plugins entry point) it runs."""
    with_plugin = python(BUILD_ACTOR_PATCH)
    assert with_plugin.returncode == 0 and "patched" in with_plugin.stdout, with_plugin.stderr[-2000:]
    without = python(BUILD_ACTOR_PATCH, VERL_USE_EXTERNAL_PLUGINS="none")
    # If this starts passing, veRL or TRL fixed the import and the fallback in plugin.py can go.
    assert without.returncode != 0 and "AutoModelForCausalLMWithValueHead" in without.stderr, without.stderr[-2000:]


def test_value_head_fallback_leaves_a_real_module_alone_and_refuses_to_build():
    from siri_rl.engines.verl import plugin

    fallback = plugin._ValueHeadFallback()
    assert fallback.find_spec("trl.experimental.gkd") is None  # only the one missing module
    assert fallback.find_spec(plugin.VALUE_HEAD_MODULE) is not None
    with pytest.raises(ImportError, match="removed in TRL 1.13"):
        plugin.AutoModelForCausalLMWithValueHead()


def test_cpu_platform_is_registered_only_when_selected():
    """Registered always, the CPU platform would be auto-detected on a GPU cluster's CPU-only head node."""
    code = """
        import verl
        from verl.plugin.platform.platform_manager import PlatformRegistry
        print(PlatformRegistry.get("cpu") is not None)
    """
    assert python(code).stdout.strip().splitlines()[-1] == "False"
    selected = python("""
        import verl, torch
        from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_torch_device
        from verl.utils.flops_counter import get_device_flops
        x = torch.ones(2).to(get_device_id())   # veRL's way of moving tensors (verl/utils/fsdp_utils.py:507)
        print(get_device_name(), get_nccl_backend(), x.device, get_torch_device().get_device_name(),
              get_torch_device().max_memory_allocated(), get_device_flops())
    """, VERL_PLATFORM="cpu")
    assert selected.returncode == 0, selected.stderr[-2000:]
    *named, flops = selected.stdout.split()[-6:]
    assert named == ["cpu", "gloo", "cpu", "CPU", "0"]
    assert float(flops) > 0  # veRL's MFU table has a "CPU" entry, found through the device module's name


def test_gloo_backend_bridge_targets_verls_process_group_init():
    """veRL builds the backend "cpu:gloo,<device>:<backend>" (verl/utils/distributed.py:89), which torch rejects for
    device cpu; the plugin's default "gloo" reaches the worker that calls it (verl/workers/engine_workers.py:89)
    and initialises a real gloo group."""
    import verl.utils.distributed as distributed

    source = inspect.getsource(distributed.initialize_global_process_group_ray)
    assert 'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in source
    code = """
        import os, torch.distributed as dist, verl
        from verl.workers import engine_workers
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
        assert engine_workers.initialize_global_process_group_ray.__siri_cpu__
        engine_workers.initialize_global_process_group_ray(timeout_second=60)
        print(dist.get_backend())
    """
    got = python(code, VERL_PLATFORM="cpu")
    assert got.returncode == 0 and got.stdout.split()[-1] == "gloo", got.stderr[-2000:]
    # the same call without the plugin's default: what veRL does on a cpu device
    with pytest.raises(ValueError, match="Duplicate device type"):
        from torch.distributed.distributed_c10d import BackendConfig

        BackendConfig("cpu:gloo,cpu:gloo")


def test_vllm_cpu_build_is_found_under_the_name_verl_reads():
    """verl/third_party/vllm reads the distribution "vllm"; vLLM's CPU build is "vllm-cpu" (where a real "vllm" is
    installed the alias answers nothing)."""
    import importlib.metadata as md

    try:
        md.version("vllm")
        pytest.skip("a distribution named vllm is installed: the alias is not needed here")
    except md.PackageNotFoundError:
        pass
    cpu_version = md.version("vllm-cpu")
    got = python("""
        import importlib.metadata as md, verl
        import verl.third_party.vllm as v
        print(md.version("vllm"), v.vllm_version)
    """, VERL_PLATFORM="cpu")
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.split()[-2:] == [f"{cpu_version}+cpu"] * 2
    unselected = python("import verl.third_party.vllm")
    assert unselected.returncode != 0 and "vllm version None not supported" in unselected.stderr


def test_vllm_plugin_targets_the_cpu_weight_repacking():
    """The vLLM plugin turns off the oneDNN repack that removes linear weights (only in a veRL CPU run); the flag it
    sets is what vLLM's CPU GEMM dispatch reads, and fp32 layers then fall back to F.linear on the live weight."""
    import vllm._custom_ops as ops
    from vllm.model_executor.layers import utils as layer_utils

    from siri_rl.engines.verl.vllm_cpu import keep_linear_weights

    dispatch = inspect.getsource(layer_utils.dispatch_cpu_unquantized_gemm)
    assert "ops._supports_onednn" in dispatch and "torch.nn.functional.linear(" in dispatch
    assert "def check_cpu_sgl_kernel" in inspect.getsource(layer_utils)
    assert torch_dtype_excluded_from_sgl(layer_utils)
    before = ops._supports_onednn
    try:
        os.environ.pop("VERL_PLATFORM", None)
        keep_linear_weights()
        assert ops._supports_onednn == before
        os.environ["VERL_PLATFORM"] = "cpu"
        keep_linear_weights()
        assert ops._supports_onednn is False
    finally:
        os.environ.pop("VERL_PLATFORM", None)
        ops._supports_onednn = before
    from importlib.metadata import entry_points

    assert any(e.value == "siri_rl.engines.verl.vllm_cpu:keep_linear_weights"
               for e in entry_points(group="vllm.general_plugins"))


def torch_dtype_excluded_from_sgl(layer_utils) -> bool:
    """fp32 never takes the sgl-kernel packing path (only bf16 / fp16 / int8 do)."""
    import torch

    return not layer_utils.check_cpu_sgl_kernel(256, 256, torch.float32)


def test_cpu_launch_check_finds_the_plugin_as_verl_does():
    from siri_rl.engines.verl.cpu import check_cpu_plugin, cpu_environment

    check_cpu_plugin(cpu_environment())  # raises ConfigError with one line if veRL would not select it
