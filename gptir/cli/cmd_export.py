"""``gptir export FILE.ir --format stablehlo [-o OUT.mlir]``: a graph as StableHLO, for XLA and IREE tools.

The text is what JAX's lowering writes (``jax.jit(f).lower(...).as_text()``): one MLIR module whose
``main`` function takes the graph's inputs and params (in graph order) and returns its outputs (in
output order). Param values are not part of it: a caller passes them like the inputs. Needs the jax
extra (``pip install "gptir[jax]"``). Paths are checked like every verb's (:func:`check_paths`): the
output is never the input or its params sidecar, and is written atomically.
"""

from __future__ import annotations

import argparse

from gptir.cli.common import check_paths, sidecar_of
from gptir.fileio import atomic_write_text

FORMATS = ("stablehlo",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a graph as StableHLO (MLIR text) for XLA/IREE tools",
                       description="Lower FILE.ir ('-' for stdin) through JAX and write its StableHLO text.")
    p.add_argument("file", metavar="FILE.ir", help="IR file ('-' reads standard input)")
    p.add_argument("--format", choices=FORMATS, required=True, help="stablehlo: MLIR text of the StableHLO dialect")
    p.add_argument("-o", "--output", default="-", metavar="OUT.mlir", help="where to write it (default: stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptir.jaxback import require_jax, stablehlo
    from gptir.text import load_graph

    require_jax()  # a missing extra fails before any work
    check_paths([("FILE.ir", args.file)], [("-o", args.output)])
    graph = load_graph(args.file)
    check_paths([("FILE.ir", args.file), ("its params sidecar", sidecar_of(graph, args.file))], [("-o", args.output)])
    atomic_write_text(args.output, stablehlo(graph))
    return 0
