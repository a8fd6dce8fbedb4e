"""The ``gptir`` command line: one module per verb, each with ``register(subparsers)``.

Exit status: 0 on success, 1 on a user error (one line on stderr, no traceback), 2 on bad usage: the
command line itself is wrong, whatever the files hold (unknown or abbreviated option, missing or
malformed argument, a value outside its option's range such as ``--steps -5``, options that cannot go
together); 141 (128 + SIGPIPE, what the shell shows for any program stopped by a closed pipe) when the
reader of standard output went away (``gptir sample ... | head -1``), silently.
The parser conventions every verb inherits are in :mod:`gptir.cli.conventions`.
Nothing escapes as a traceback: running out of memory, too-deep recursion and any unexpected
exception (a bug in gptir) also end in one line and exit 1. ``GPTIR_TRACEBACK=1`` shows the
traceback of an internal error, for bug reports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Iterable, Sequence

from gptir import __version__
from gptir.cli.conventions import GptirParser

# The verbs: name, module (defining register(subparsers)) and the help line `gptir --help` lists.
# Only the chosen verb's module is imported, so `gptir --help` loads neither numpy nor lark (neither
# does this module: gptir.ir, which loads numpy, is imported where an error is reported).
VERB_TABLE: tuple[tuple[str, str, str], ...] = (
    ("trace", "gptir.cli.cmd_trace", "trace a Python function (FILE.py:FUNCTION) or microgpt into IR"),
    ("exec", "gptir.cli.cmd_exec", "run an IR file on inputs and print its outputs"),
    ("grad", "gptir.cli.cmd_grad", "differentiate an IR graph (reverse mode)"),
    ("opt", "gptir.cli.cmd_opt", "optimise an IR graph (dce, cse, fold, simplify)"),
    ("diff", "gptir.cli.cmd_diff", "structure-aware diff of IR graphs (exit 0 equal, 1 different, 2 error)"),
    ("train", "gptir.cli.cmd_train", "train microgpt and print sampled names"),
    ("sample", "gptir.cli.cmd_sample", "sample names from a checkpoint"),
    ("compile", "gptir.cli.cmd_compile", "print the C source the native backend builds for a graph"),
    ("export", "gptir.cli.cmd_export", "write a graph as StableHLO (MLIR text) for XLA/IREE tools"),
    ("dot", "gptir.cli.cmd_dot", "write a graph as Graphviz DOT"),
    ("view", "gptir.cli.cmd_view", "picture a graph, a diff, a dump folder or a training log as HTML"),
    ("completion", "gptir.cli.cmd_completion", "print a bash or zsh completion script"),
)
VERBS = tuple(name for name, _, _ in VERB_TABLE)
EXIT_BROKEN_PIPE = 141
MAX_ECHO = 80  # user text echoed in an error message is cut to about this many characters


class UsageError(Exception):
    """Bad command-line usage detected after argparse (exit 2)."""


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters with ``...``: error messages must not echo 20 kB of input."""
    return text if len(text) <= limit else text[:limit - 3] + "..."  # gptir.ir.short, without numpy


def build_parser(load: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``gptir`` parser. Every verb is listed (with its VERB_TABLE help); the verbs in ``load``
    (default: all of them) are registered by their modules with all their options, the others are
    bare entries whose modules stay unimported (:func:`main` loads only the verb it runs)."""
    wanted = set(VERBS if load is None else load)
    parser = GptirParser(prog="gptir", description="A graph-IR compiler and interpreter for tiny GPTs.",
                         epilog="'gptir VERB --help' describes a verb. Exit status: 0 success, 1 user error, "
                                "2 bad usage (diff: 0 equal, 1 different, 2 error).")
    parser.add_argument("--version", action="version", version=f"gptir {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")  # subparsers are GptirParsers too
    for verb, module, help_text in VERB_TABLE:
        if verb in wanted:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(verb, help=help_text)
    return parser


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` names: its first word not starting with ``-`` (the root parser's own
    options, ``--help`` and ``--version``, take no value), if it is a verb."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    return verb if verb in VERBS else None


def subparser(parser: argparse.ArgumentParser, verb: str | None) -> argparse.ArgumentParser:
    """The parser of ``verb`` (so a usage error inside a verb prints that verb's usage), else ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(verb, parser) if verb else parser
    return parser  # pragma: no cover - build_parser always adds subparsers


def main(argv: Sequence[str] | None = None) -> int:
    parser: argparse.ArgumentParser | None = None
    verb: str | None = None
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        chosen = chosen_verb(argv)
        parser = build_parser([] if chosen is None else [chosen])
        args, extra = parser.parse_known_args(argv)  # bad usage: argparse prints the verb's usage, exits 2
        if extra:  # unknown options are reported by the verb's parser, with the verb's usage
            subparser(parser, args.verb).error(f"unrecognized arguments: {' '.join(extra)}")
        if args.verb is None:  # bare `gptir`: the verbs, as a usage error
            parser.print_help(sys.stderr)
            return 2
        verb = args.verb
        args.argv = ["gptir", *argv]  # for run records (train --log)
        code = args.func(args)
        return int(code or 0)
    except BrokenPipeError:  # the reader of stdout left (`| head`): quiet, as Unix tools are
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except UsageError as e:
        if parser is not None:
            subparser(parser, verb).print_usage(sys.stderr)
        print(f"{_prog(verb)}: error: {_short_words(str(e))}", file=sys.stderr)
        return 2
    except SystemExit:  # --help, and argparse's usage errors: before the next clause loads numpy
        raise
    except _gptir_error() as e:  # evaluated only when something was raised
        print(f"{_prog(verb)}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{_prog(verb)}: error: {_short_words(_os_error(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gptir: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:
        detail = f" ({shorten(str(e), 200)})" if str(e) else ""
        print(f"{_prog(verb)}: error: out of memory: the computation needs more memory than is available{detail}",
              file=sys.stderr)
        return 1
    except RecursionError:
        print(f"{_prog(verb)}: error: recursion too deep: the input is nested too deeply for gptir to handle",
              file=sys.stderr)
        return 1
    except Exception as e:  # a bug in gptir: still one line, the traceback only on request
        if os.environ.get("GPTIR_TRACEBACK"):
            traceback.print_exc(file=sys.stderr)
        msg = shorten(" ".join(str(e).split()), 200)
        print(f"{_prog(verb)}: internal error: {type(e).__name__}: {msg} "
              f"(set GPTIR_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests capture it)
        pass


def _gptir_error() -> type[Exception]:
    """gptir's user-error class (its module loads numpy: not needed for ``gptir --help``)."""
    from gptir.ir import GptirError

    return GptirError


def _short_words(message: str) -> str:
    from gptir.ir import short_words

    return short_words(message)


def _prog(verb: str | None) -> str:
    """``gptir exec`` in messages (just ``gptir`` when the failure came before a verb was chosen)."""
    return f"gptir {verb}" if verb else "gptir"


def _os_error(e: OSError) -> str:
    """``PATH: reason`` naming the user's file. ``os.replace(tmp, path)`` fails with both names
    (filename = our temporary, filename2 = the user's path): name the user's."""
    name = getattr(e, "filename2", None) or getattr(e, "filename", None)
    where = f"{name}: " if name else ""
    return f"{where}{e.strerror or e}"


def _one_line(msg: str) -> str:
    """Errors are one line on stderr; multi-line messages (a parse error's caret) keep their shape
    but are still a single message. Long words (a 1 MB value name) are shortened."""
    return _short_words(msg.rstrip())


# Variables that choose numpy's BLAS thread count; if none is set, the command runs BLAS on one thread.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads_default(environ: dict[str, str] | os._Environ[str]) -> None:
    """One BLAS thread unless the user chose a count: numpy's OpenBLAS starts a thread per core at
    import, which spin-wait after every call; gptir's programs are many small matmuls, where the
    threads burn CPU and give nothing (``gptir train``: 0.25 -> 0.15 s of CPU before its first step,
    the same wall time). Only the command does this (before numpy is imported): ``import gptir``
    leaves a program's threads alone."""
    if not any(v in environ for v in BLAS_THREAD_VARIABLES):
        environ["OPENBLAS_NUM_THREADS"] = "1"


def entry() -> None:  # pragma: no cover
    blas_threads_default(os.environ)
    sys.exit(main())
