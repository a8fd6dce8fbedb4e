"""``python -m gptir``: the ``gptir`` command line (the same as the console script)."""

from gptir.cli import entry

entry()
