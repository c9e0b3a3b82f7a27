"""veRL's process, run from siri: its output shown and logged, a failure reported as one line.

A child's traceback (veRL's trainer runs in Ray actors, whose lines Ray prefixes with ``(TaskRunner pid=N)``) is
reduced to its last exception line, so ``siri train`` and ``siri export`` fail with one line naming the cause and
the log.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from siri_rl.engines.protocol import EngineError

LOG_FILE = "train.log"  # RUN/verl/train.log: veRL's output, every attempt appended

# An exception line of a Python traceback ("ValueError: ...", "torch.OutOfMemoryError: ..."), after Ray's
# "(TaskRunner pid=N)" prefix and colour codes are removed.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)(?:\([\w.]*\))?(?::\s|$)")
_RAY_PREFIX = re.compile(r"^\([^)]*pid=\d+[^)]*\)\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_exception_line(text: str) -> str | None:
    """The last exception line of the tracebacks in ``text`` (a log), or None."""
    for line in reversed(text.splitlines()):
        line = _RAY_PREFIX.sub("", _ANSI.sub("", line)).strip()
        if _EXCEPTION_LINE.match(line):
            return line
    return None


def run_logged(command: list[str], log_path: str | Path, *, what: str = "veRL", env: dict[str, str] | None = None) -> None:
    """Run ``command`` with its output (stdout and stderr, merged) shown here as it comes and appended to
    ``log_path``, in ``env`` (default: this process's environment). A non-zero exit raises :class:`~siri_rl.engines.EngineError`: one line with the status, the
    child's last exception line and the log's path."""
    import os
    import subprocess

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = getattr(sys.stdout, "buffer", None)
    # Unbuffered: through a pipe the child's Python would otherwise hold its lines back until a buffer fills.
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                log.write(chunk)
                log.flush()
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stdout.write(chunk.decode(errors="replace"))
        finally:
            status = proc.wait()  # also on Ctrl-C: the child got the SIGINT too and shuts Ray down
    if status != 0:
        with open(log_path, "rb") as log:
            log.seek(max(start, log_path.stat().st_size - (1 << 20)))  # this attempt's last MiB
            error = last_exception_line(log.read().decode(errors="replace"))
        raise EngineError(f"{what} exited with status {status}" + (f" ({error})" if error else "")
                          + f"; full log: {log_path}")
