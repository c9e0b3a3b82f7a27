"""The ``siri`` command line: thin wrappers over the library (each command parses options and calls one module).

One module per group of commands: :mod:`~siri_rl.cli.schedule`, :mod:`~siri_rl.cli.results` (eval, compare,
analyze) and :mod:`~siri_rl.cli.train` (train, toy build, export); :mod:`~siri_rl.cli._app` holds the application
they register on. ``siri`` (pyproject's ``[project.scripts]``) and ``python -m siri_rl.cli`` run :func:`main`.
"""

from __future__ import annotations

import typer

from siri_rl.cli._app import _WRITE_ERRNOS, app, fail

# Each module registers its commands on ``app`` when imported, in the order ``siri --help`` lists them.
# isort: off
from siri_rl.cli import schedule, results, train, reproduce  # noqa: E402, F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The ``siri`` entry point. A path that cannot be written, found only while writing (the disk fills up, a
    folder where a file goes), is one error line too; other OS errors keep their traceback."""
    try:
        app()
    except OSError as err:
        if err.errno not in _WRITE_ERRNOS or not err.filename:
            raise
        try:
            fail(f"{err.filename}: {err.strerror}")
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None
