"""``python -m siri_rl.cli``: the ``siri`` command."""

from siri_rl.cli import main

main()
