"""``gptir compile FILE.ir --emit c [-o OUT]``: the source the native backend generates for a graph.

The C is what ``--backend native`` compiles (gptir.native): one function, a comment per fused loop
nest naming the IR nodes it computes, names from the IR. Nothing is compiled or run; ``-o`` writes the
source atomically, the default is standard output.
"""

from __future__ import annotations

import argparse
import sys

from gptir.cli.common import check_paths, read_graph
from gptir.fileio import atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="print the C source the native backend builds for a graph",
                       description="Print (or write with -o) the C source that --backend native compiles "
                                   "for FILE.ir: fused loop nests, one comment per group naming its IR nodes.")
    p.add_argument("file", metavar="FILE.ir", help="IR file ('-' reads standard input)")
    p.add_argument("--emit", choices=("c",), default="c", help="what to emit: c (the native backend's C source)")
    p.add_argument("-o", "--output", default="-", metavar="OUT", help="where to write (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_paths([("FILE.ir", args.file)], [("-o", args.output)])
    from gptir.native import generate_source

    source = generate_source(read_graph(args.file))
    if args.output == "-":
        sys.stdout.write(source)
    else:
        atomic_write_text(args.output, source)
    return 0
