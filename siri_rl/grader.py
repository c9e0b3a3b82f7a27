"""math-verify in bounded helper processes: the worker pool, the memo of finished comparisons and the outcome
counts behind :func:`siri_rl.reward.verify_equivalence` (the worker itself is :mod:`siri_rl._verify_worker`).

A comparison is sent as one JSON line to an idle worker and waited for with a wall-clock deadline; a worker that
misses it is killed and replaced, so a pathological answer costs at most ``timeout`` seconds and never hangs the
caller. Safe from any thread and after a fork (a forked child starts its own workers).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
from collections import Counter, OrderedDict
from typing import Any

_stats: Counter[str] = Counter()
_stats_lock = threading.Lock()


def count(status: str) -> None:
    with _stats_lock:
        _stats[status] += 1


def grader_stats() -> dict[str, int]:
    """Counts of grader outcomes in this process: ``ok``, ``timeout`` (math-verify's own alarm fired, or the worker
    was killed), ``error``, ``fast`` (decided without math-verify), ``cached`` (a repeated comparison),
    ``restarts`` (worker processes killed after a timeout)."""
    with _stats_lock:
        return dict(_stats)


class VerifyProcess:
    """One math-verify subprocess, used by one thread at a time, killed and restarted after a timeout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.pid = os.getpid()
        self.buffer = b""
        self.warm = False  # has answered once, so its imports are done

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return subprocess.Popen(
            [sys.executable, "-m", "siri_rl._verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def close(self) -> None:
        if self.proc is not None and self.pid == os.getpid():
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.proc, self.buffer, self.warm = None, b"", False

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.pid != os.getpid():  # forked: the pipes belong to the parent
            self.proc, self.buffer, self.pid = None, b"", os.getpid()
        if self.proc is None or self.proc.poll() is not None:
            self.proc, self.buffer, self.warm = self._start(), b"", False
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(payload) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            return {"correct": False, "status": "error", "error": "grader process died"}
        # The first call of a fresh worker also pays its import time (~1-2 s), which must not count as a timeout.
        deadline = timeout + (0.0 if self.warm else 10.0)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], deadline)
            if not ready:
                self.close()
                count("restarts")
                return {"correct": False, "status": "timeout"}
            chunk = os.read(fd, 65536)
            if not chunk:
                self.close()
                return {"correct": False, "status": "error", "error": "grader process died"}
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.warm = True
        return json.loads(line)


class WorkerPool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[VerifyProcess] = []

    def acquire(self) -> VerifyProcess:
        with self.lock:
            return self.idle.pop() if self.idle else VerifyProcess()

    def release(self, worker: VerifyProcess) -> None:
        with self.lock:
            self.idle.append(worker)

    def close(self) -> None:
        with self.lock:
            for worker in self.idle:
                worker.close()
            self.idle.clear()


_pool = WorkerPool()
atexit.register(_pool.close)


def shutdown_grader() -> None:
    """Stop this process's math-verify worker processes and forget cached comparisons (workers start again on
    demand)."""
    _pool.close()
    with _memo.lock:
        _memo.data.clear()


class Memo:
    """A small thread-safe LRU of finished comparisons: sampled answers repeat a lot (64 samples of one problem
    often give the same few answers), and a comparison's outcome never changes."""

    def __init__(self, size: int = 65536) -> None:
        self.size, self.lock, self.data = size, threading.Lock(), OrderedDict()

    def get(self, key: str) -> tuple[bool, str] | None:
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key: str, value: tuple[bool, str]) -> None:
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)


_memo = Memo()


def compare(payload: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """``(correct, status)`` of one comparison request (see :mod:`siri_rl._verify_worker` for the payload), from
    the memo or a worker. Only definite answers are remembered: timeouts, errors and empty parses may be
    load-dependent, so they are tried again next time."""
    key = json.dumps(payload, sort_keys=True)
    cached = _memo.get(key)
    if cached is not None:
        count("cached")
        return cached
    worker = _pool.acquire()
    try:
        reply = worker.request(payload, timeout)
    finally:
        _pool.release(worker)
    status = reply.get("status", "error")
    count(status)
    result = (bool(reply.get("correct")), status)
    if status == "ok" and reply.get("cacheable") is True:
        _memo.put(key, result)
    return result
