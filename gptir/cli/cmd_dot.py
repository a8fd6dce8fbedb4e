"""``gptir dot FILE.ir [-o OUT.dot]``: the graph as Graphviz DOT (``dot -Tsvg`` draws it).

Nodes show op and type, edges the type they carry, scopes become clusters, backward nodes and params
are styled apart (:mod:`gptir.dot`). ``-`` reads standard input; the default output is standard output.
"""

from __future__ import annotations

import argparse

from gptir.cli.cmd_view import check_output
from gptir.dot import to_dot
from gptir.fileio import atomic_write_text
from gptir.text import load_graph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dot", help="write a graph as Graphviz DOT",
                       description="Write the graph of FILE.ir as Graphviz DOT: nodes show op and type, edges "
                                   "the shape they carry, scopes become clusters. Render with: dot -Tsvg OUT.dot")
    p.add_argument("input", metavar="FILE.ir", help="IR file ('-' for standard input)")
    p.add_argument("-o", "--output", default="-", metavar="OUT.dot", help="where to write (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.output, [args.input])
    graph = load_graph(args.input)
    atomic_write_text(args.output, to_dot(graph))
    return 0
