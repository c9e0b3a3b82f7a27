"""Data-parallel evaluation: ``siri eval --data-parallel-size N`` runs N independent engines, each in its own
process on its own ``--tp`` GPUs, and splits every generate call's problems between them.

Why separate engine processes and not vLLM's data parallelism: ``vllm.LLM(data_parallel_size=N)`` refuses to run
in one process ("not supported for single-process usage and may hang", vllm/entrypoints/llm.py:284-295), and
vLLM's multi-process recipe (examples/features/data_parallel/data_parallel_offline.py) couples the ranks through
``VLLM_DP_*`` so that they step together, which exists for expert-parallel MoE layers; a dense model gains nothing
from it and every rank would wait for the slowest one at every step. Independent engines need no coordination:
each is a plain ``VLLMBackend`` whose process sees only its GPUs (``CUDA_VISIBLE_DEVICES``).

Samples do not depend on the split: vLLM seeds every sample on its own (:func:`siri_rl.evaluate.plan.sample_seed`), so
which engine draws a sample does not change its random stream, and resuming works as with one engine. (Numerics
may still differ in the last bits between batch compositions, as they do between batch sizes with one engine.)
A problem's samples stay on one engine so that its prompt is prefilled once (vLLM's prefix cache).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import weakref
from collections.abc import Sequence
from typing import Any

from siri_rl.evaluate.backends import Completion
from siri_rl.evaluate.config import EvalConfig
from siri_rl.evaluate.plan import Unit
from siri_rl.results import EvalError

# How long an engine may take to start (load weights, profile memory, compile) before the run gives up.
START_TIMEOUT_S = 1800.0


def split_units(units: Sequence[Unit], engines: int) -> list[list[int]]:
    """Indices of ``units`` for each of ``engines``: whole units (one problem's samples, one prompt), balanced by
    sample count — the unit with most samples first, onto the least-loaded engine (ties: the lower rank; equal
    units keep their order). Deterministic; an engine may get nothing when there are fewer units than engines."""
    if engines < 1:
        raise ValueError(f"split_units needs at least one engine, got {engines}")
    shards: list[list[int]] = [[] for _ in range(engines)]
    load = [0] * engines
    for i in sorted(range(len(units)), key=lambda i: -len(units[i].sample_indices)):
        rank = min(range(engines), key=lambda r: (load[r], r))
        shards[rank].append(i)
        load[rank] += len(units[i].sample_indices)
    return [sorted(s) for s in shards]


def merge_completions(
    units: Sequence[Unit], shards: Sequence[Sequence[int]], results: Sequence[Sequence[Sequence[Completion]]]
) -> list[list[Completion]]:
    """The engines' completions back in the order of ``units``: ``results[r][j]`` belongs to unit
    ``shards[r][j]``. Every unit must come back exactly once, with one completion per requested sample."""
    merged: list[list[Completion] | None] = [None] * len(units)
    for rank, (shard, result) in enumerate(zip(shards, results, strict=True)):
        if len(shard) != len(result):
            raise EvalError(f"engine {rank} returned {len(result)} problems for the {len(shard)} it was given")
        for i, comps in zip(shard, result, strict=True):
            if merged[i] is not None:
                raise EvalError(f"{units[i].benchmark}/{units[i].problem_id} came back from two engines")
            if len(comps) != len(units[i].sample_indices):
                raise EvalError(f"engine {rank} returned {len(comps)} samples of {units[i].benchmark}/"
                                f"{units[i].problem_id}, {len(units[i].sample_indices)} were asked for")
            merged[i] = list(comps)
    missing = [f"{units[i].benchmark}/{units[i].problem_id}" for i, m in enumerate(merged) if m is None]
    if missing:
        raise EvalError(f"no engine returned {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return merged  # type: ignore[return-value]


def engine_devices(engines: int, per_engine: int, visible: str | None, device_count: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each engine: consecutive blocks of ``per_engine`` (``--tp``) of the GPUs this
    process may use (``visible``, its own CUDA_VISIBLE_DEVICES, else ``0..device_count-1``). None for every engine
    where there is no GPU (the CPU build of vLLM: the engines share the CPU)."""
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else \
        [str(i) for i in range(device_count)]
    if not ids:
        return [None] * engines
    need = engines * per_engine
    if len(ids) < need:
        raise EvalError(f"--data-parallel-size {engines} x --tp {per_engine} needs {need} GPUs, {len(ids)} visible "
                        f"({','.join(ids)}); lower one of them")
    return [",".join(ids[r * per_engine : (r + 1) * per_engine]) for r in range(engines)]


def _engine_main(conn: Any, backend: str, model: str, cfg: EvalConfig, env: dict[str, str],
                 max_prompt_tokens: int) -> None:
    """One engine process: build the backend with its own devices, then answer (units, seed) requests."""
    os.environ.update(env)  # before anything imports torch or vLLM, so the engine sees only its GPUs
    try:
        from siri_rl.evaluate.backends import TransformersBackend, VLLMBackend
        from siri_rl.prompts import load_tokenizer

        factory = {"vllm": VLLMBackend, "transformers": TransformersBackend}[backend]
        engine = factory(model, load_tokenizer(model), cfg, max_prompt_tokens=max_prompt_tokens)
    except BaseException as e:  # noqa: BLE001 - reported to the driver as one line
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if request is None:
            return
        units, seed = request
        try:
            conn.send(("ok", engine.generate(units, seed)))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _shutdown(procs: list[Any], conns: list[Any]) -> None:
    for conn in conns:
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)


class EnginePool:
    """``engines`` (default ``cfg.data_parallel_size``) engine processes behind the backend interface
    (``generate(units, seed)``); ``tokenizer`` is unused (each engine loads its own from ``model``).

    Each process is started with ``spawn`` (a fresh interpreter: CUDA cannot be forked), gets its block of GPUs
    from :func:`engine_devices`, and builds ``backend`` (``"vllm"`` for ``siri eval``; the transformers backend
    also runs here, which is what the CPU tests use). A call sends each engine its share of the units
    (:func:`split_units`) at once, then collects and merges them (:func:`merge_completions`); an engine that fails
    is one :class:`EvalError` naming it. The engines stop with :meth:`close`, or when the pool is collected.
    """

    def __init__(self, model: str, tokenizer: Any, cfg: EvalConfig, *, max_prompt_tokens: int = 2048,
                 backend: str | None = None, engines: int | None = None, devices: list[str | None] | None = None):
        engines = engines or cfg.data_parallel_size
        if devices is None:
            devices = engine_devices(engines, cfg.tensor_parallel_size, os.environ.get("CUDA_VISIBLE_DEVICES"),
                                     _device_count())
        ctx = mp.get_context("spawn")
        self.procs, self.conns = [], []
        for rank in range(engines):
            parent, child = ctx.Pipe()
            env = {"CUDA_VISIBLE_DEVICES": devices[rank]} if devices[rank] is not None else {}
            # not daemonic: a vLLM engine starts processes of its own, which daemonic processes may not
            proc = ctx.Process(target=_engine_main, name=f"siri-eval-engine-{rank}",
                               args=(child, backend or cfg.backend, model, cfg, env, max_prompt_tokens))
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        self._finalizer = weakref.finalize(self, _shutdown, self.procs, self.conns)
        for rank in range(engines):
            self._receive(rank, START_TIMEOUT_S, "start")

    def _receive(self, rank: int, timeout: float | None, doing: str) -> Any:
        conn, proc = self.conns[rank], self.procs[rank]
        waited = 0.0
        while not conn.poll(5.0):
            waited += 5.0
            if not proc.is_alive():
                self.close()
                raise EvalError(f"engine {rank} exited (status {proc.exitcode}) while it was to {doing}; see its "
                                "log above")
            if timeout is not None and waited >= timeout:
                self.close()
                raise EvalError(f"engine {rank} did not {doing} within {timeout:.0f} s")
        status, payload = conn.recv()
        if status == "error":
            self.close()
            raise EvalError(f"engine {rank} failed to {doing}: {payload}")
        return payload

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        shards = split_units(units, len(self.procs))
        busy = [r for r, s in enumerate(shards) if s]
        for r in busy:
            self.conns[r].send(([units[i] for i in shards[r]], seed))
        results = {r: self._receive(r, None, "generate") for r in busy}
        return merge_completions(units, [shards[r] for r in busy], [results[r] for r in busy])

    def close(self) -> None:
        self._finalizer()


def _device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
