"""Ctrl-C during TRL training: raised as always, and remembered, so that an interrupt something swallowed still stops
the run at the next optimizer step (Python only prints "Exception ignored" for a KeyboardInterrupt raised inside a
finalizer). The callback (callback.py ``LengthScheduleCallback.interrupted``) raises it again."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def flag_interrupts(cb: Any) -> Iterator[None]:
    """Within the block a SIGINT sets ``cb.interrupted`` and raises KeyboardInterrupt. Only where Python's own handler
    is in place (the main thread, no launcher's handler); the previous handler comes back on leaving."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def on_sigint(signum, frame):
        cb.interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
