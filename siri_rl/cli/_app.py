"""The ``siri`` application object and what every command shares: the console, the one-line error, and the checks
that an output path can be written before anything is loaded."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from siri_rl.results import ARGS_FILE, SAMPLES_FILE
from siri_rl.run_dir import CONFIG_FILE, METRICS_FILE

app = typer.Typer(
    help="SIRI: iterative RL with interleaved length compression for reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()  # results (tables, markdown, what was written): stdout
# Errors and warnings: stderr, so that `siri schedule --json > caps.json` holds JSON or nothing.
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """SIRI: iterative RL with interleaved length compression for reasoning models."""


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2 (bad input), without a traceback.

    The message is plain text, never rich markup (``pip install 'siri-rl[vllm]'`` would lose ``[vllm]``), and is
    not wrapped: rich wraps at 80 columns when the output is a file or a pipe, which splits the line in a job log.
    """
    line = Text("error:", style="bold red")
    line.append(" " + " ".join(str(message).splitlines()))
    err_console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


# OS errors of a path that cannot be written (read-only filesystem, no permission, a file or folder in the way, disk
# full): one line from main() wherever they happen.
_WRITE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
                 errno.EDQUOT}


# The files that mark a directory as the output of one command (the first files each writes). A command refuses to
# write into a directory another command owns: its files would mix with the other's, and a failed command would
# leave debris in results that were complete.
OWNER_FILES = {
    "siri train": (METRICS_FILE, CONFIG_FILE),
    "siri eval": (ARGS_FILE, SAMPLES_FILE),
    "siri compare": ("comparison.json",),
    "siri select": ("pareto.json", "selection.md"),
    "siri analyze patterns": ("patterns.json",),
    "siri analyze run": ("run.md",),
}


def owner_of(path: Path) -> tuple[str, str] | None:
    """``(command, marker file)`` of the command whose output ``path`` holds, or None."""
    for command, markers in OWNER_FILES.items():
        for marker in markers:
            if (Path(path) / marker).is_file():
                return command, marker
    return None


def check_output_dir(path: Path, option: str, *, shown: Path | None = None, command: str | None = None) -> None:
    """Fail now, before anything is loaded, if ``path`` cannot be (or become) a directory this command writes into:
    it or a parent is a regular file, the nearest existing parent does not take new entries (a read-only
    filesystem, no permission), or (given the writing ``command``) it holds another command's output
    (:data:`OWNER_FILES`). Creates nothing: a probe directory is made in that parent and removed at once.
    ``shown``: the path named in the message (default ``path``)."""
    shown = path if shown is None else shown
    target = Path(path).expanduser().absolute()
    owner = owner_of(target) if command is not None and target.is_dir() else None
    if owner is not None and owner[0] != command:
        fail(f"{option} {shown} holds the output of `{owner[0]}` ({owner[1]}); {command} writes into a new or its "
             "own directory: pick another path")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        fail(f"{option} {shown}: {existing} is a file, not a directory; pick another path")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".siri-write-check-").cleanup()
    except OSError as err:
        fail(f"{option} {shown}: cannot write in {existing} ({err.strerror}); pick a writable directory")


def check_output_file(path: Path, option: str) -> None:
    """:func:`check_output_dir` for the folder of a file to be written; the file itself must not be a folder."""
    if Path(path).is_dir():
        fail(f"{option} {path} is a directory; give a file name such as {Path(path) / 'schedule.png'}")
    check_output_dir(Path(path).expanduser().absolute().parent, option, shown=path)
