"""``gptir export FILE.ir --format stablehlo [-o OUT.mlir]``: a graph as StableHLO, for XLA and IREE tools.

The text is what JAX's lowering writes (``jax.jit(f).lower(...).as_text()``): one MLIR module whose
``main`` function takes the graph's inputs and params (in graph order) and returns its outputs (in
output order). Param values are not part of it: a caller passes them like the inputs. Needs the jax
extra (``pip install "gptir[jax]"``).
"""

from __future__ import annotations

import argparse
import os
import stat

from gptir.cli.common import read_graph
from gptir.fileio import atomic_write_text, check_writable
from gptir.ir import GptirError

FORMATS = ("stablehlo",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a graph as StableHLO (MLIR text) for XLA/IREE tools",
                       description="Lower FILE.ir ('-' for stdin) through JAX and write its StableHLO text.")
    p.add_argument("file", metavar="FILE.ir")
    p.add_argument("--format", choices=FORMATS, required=True, help="stablehlo: MLIR text of the StableHLO dialect")
    p.add_argument("-o", "--output", default="-", metavar="OUT.mlir", help="where to write it (default: stdout)")
    p.set_defaults(func=run)


def _check_output(source: str, out: str) -> None:
    if out == "-":
        return
    check_writable(out)
    if os.path.lexists(out):
        st = os.stat(out)
        if not stat.S_ISREG(st.st_mode):
            raise GptirError(f"{out}: not a regular file (export writes regular files only)")
        if source != "-" and os.path.exists(source) and os.path.samefile(source, out):
            raise GptirError(f"{out}: is the input file; choose another output")


def run(args: argparse.Namespace) -> int:
    from gptir.jaxback import require_jax, stablehlo

    require_jax()
    _check_output(args.file, args.output)
    graph = read_graph(args.file)
    atomic_write_text(args.output, stablehlo(graph))
    return 0
