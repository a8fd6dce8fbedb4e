"""``gptir grad IN.ir --wrt NAME[,NAME...] [--of OUTPUT] [-o OUT.ir]``: append the backward pass.

The result is the input graph plus one output ``grad.<name>`` per ``--wrt`` input, as IR text that
``gptir exec`` runs (and ``gptir grad`` can differentiate again).
"""

from __future__ import annotations

import argparse

from gptir.autodiff import grad
from gptir.cli import UsageError
from gptir.fileio import atomic_write_text
from gptir.cli.common import check_paths, graph_text_for, sidecar_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grad", help="differentiate an IR graph (reverse mode)",
                       description="Append the reverse-mode gradient of a scalar f64 output with respect to "
                                   "the given inputs; each gradient becomes an output named grad.<input> "
                                   "(grad.grad.<input>, ... when that name is already an output).")
    p.add_argument("input", metavar="IN.ir", help="IR file ('-' reads standard input)")
    p.add_argument("--wrt", required=True, metavar="NAME[,NAME...]",
                   help="inputs or params to differentiate with respect to (comma-separated)")
    p.add_argument("--of", default=None, metavar="OUTPUT",
                   help="the scalar f64 output to differentiate (default: the only output)")
    p.add_argument("-o", "--output", default="-", metavar="OUT.ir", help="where to write the IR (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptir.text import load_graph  # the parser lives beside the printer

    wrt = [w.strip() for w in args.wrt.split(",") if w.strip()]
    if not wrt:
        raise UsageError("--wrt needs at least one input name")
    graph = load_graph(args.input)
    check_paths([("IN.ir", args.input), ("its params sidecar", sidecar_of(graph, args.input))], [("-o", args.output)])
    result = grad(graph, wrt, of=args.of)
    # a sidecar the input named stays a sidecar, re-pathed for the output; inline values stay inline
    atomic_write_text(args.output, graph_text_for(result, args.input, args.output))
    return 0
