"""The ``gptir`` command line: one module per verb, each with ``register(subparsers)``.

Exit status: 0 on success, 1 on a user error (one line on stderr, no traceback), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from gptir.ir import GptirError

# verb -> module under gptir.cli; each module defines register(subparsers)
VERBS = ("trace", "exec", "grad", "opt", "diff", "train", "sample")


class UsageError(Exception):
    """Bad command-line usage detected after argparse (exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptir", description="A graph-IR compiler and interpreter for tiny GPTs.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            module = importlib.import_module(f"gptir.cli.cmd_{verb}")
        except ModuleNotFoundError as e:
            if e.name == f"gptir.cli.cmd_{verb}":
                continue  # verb not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        return int(code or 0)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"gptir {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except GptirError as e:
        print(f"gptir {args.verb}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"gptir {args.verb}: error: {name}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gptir: interrupted", file=sys.stderr)
        return 130


def _one_line(msg: str) -> str:
    """Errors are one line on stderr; multi-line messages (a parse error's caret) keep their shape
    but are still a single message."""
    return msg.rstrip()


def entry() -> None:  # pragma: no cover
    sys.exit(main())
