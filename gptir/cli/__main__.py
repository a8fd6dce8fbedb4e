"""``python -m gptir.cli`` runs the command line (used by tests that cannot rely on the console script)."""

from gptir.cli import entry

entry()
