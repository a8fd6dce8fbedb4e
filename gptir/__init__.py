"""gptir: a graph-IR compiler and interpreter for tiny GPTs.

Model code written in Python is traced into a typed SSA graph (``trace``), printed and parsed in a
small text format (``print_graph``, ``parse``), differentiated by a graph-rewrite pass, optimised,
interpreted or compiled, and used to train and sample a character-level GPT.
"""

from gptir.interp import ExecError, run
from gptir.ir import GptirError, Graph, Node, ShapeError, TensorType, VerifyError, make_graph, verify as _verify
from gptir.ops import OPS
from gptir.text import print_graph
from gptir.trace import (
    Builder, Param, Tracer, broadcast_to, cast, concat, equal, exp, gather, greater, log, matmul, maximum,
    reduce_max, reduce_sum, relu, reshape, scatter_add, scope, stop_gradient, trace, transpose, where,
)


def verify(graph: Graph) -> None:
    """Check ``graph`` against every IR rule and the op table; raises VerifyError."""
    _verify(graph, OPS)


__all__ = [
    "Builder", "ExecError", "GptirError", "Graph", "Node", "OPS", "Param", "ShapeError", "TensorType", "Tracer",
    "VerifyError", "broadcast_to", "cast", "concat", "equal", "exp", "gather", "greater", "log", "make_graph",
    "matmul", "maximum", "print_graph", "reduce_max", "reduce_sum", "relu", "reshape", "run", "scatter_add",
    "scope", "stop_gradient", "trace", "transpose", "verify", "where",
]
