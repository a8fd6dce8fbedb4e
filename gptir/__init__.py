"""gptir: a graph-IR compiler and interpreter for tiny GPTs.

Model code written in Python is traced into a typed SSA graph (``trace``), printed and parsed in a
small text format (``print_graph``, ``parse``), differentiated by a graph-rewrite pass, optimised,
interpreted or compiled, and used to train and sample a character-level GPT.
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it from here)

from typing import Any, Callable, Mapping

from gptir.autodiff import grad, grad_output_name
from gptir.diff import GraphDiff, diff_graphs
from gptir.interp import ExecError, run
from gptir.ir import GptirError, Graph, Node, ShapeError, TensorType, VerifyError, make_graph, verify as _verify
from gptir.ops import OPS
from gptir.passes import PASSES, optimize, run_pipeline
from gptir.codegen import compile_graph as _compile_numpy, generate_source
from gptir.text import ParseError, load_graph, load_params, parse, print_graph, save_graph, save_params
from gptir.tracing import (
    Builder, Param, Tracer, absolute, argmax, broadcast_to, cast, concat, cos, equal, exp, expand_dims, gather,
    greater, greater_equal, less, less_equal, log, matmul, maximum, mean, minimum, not_equal, reduce_max,
    reduce_min, reduce_sum, relu, reshape, scatter_add, scope, sigmoid, sin, sqrt, squeeze, stack, stop_gradient,
    tanh, trace, transpose, var, where,
)
from gptir.dot import to_dot
from gptir.viewer import to_svg, view
from gptir.nn import gelu, layer_norm, log_softmax, logsumexp, softmax
from gptir import value  # noqa: E402 - the scalar Value API (``from gptir import value as V``)


def compile_graph(graph: Graph, backend: str = "compiled", **options: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Compile ``graph`` once; returns ``run(inputs) -> {output: array}``. ``backend``: ``compiled``
    (straight-line numpy, bit-identical to the interpreter; options as gptir.codegen.compile_graph)
    or ``jax`` (XLA through JAX, ``pip install "gptir[jax]"``; options as gptir.jaxback.compile_graph)."""
    if backend == "compiled":
        return _compile_numpy(graph, **options)
    if backend == "jax":
        from gptir.jaxback import compile_graph as compile_jax

        return compile_jax(graph, **options)
    raise GptirError(f"unknown backend {backend!r} (choose from compiled, jax)")


def verify(graph: Graph) -> None:
    """Check ``graph`` against every IR rule and the op table; raises VerifyError."""
    _verify(graph, OPS)


__all__ = [
    "__version__",
    "Builder", "ExecError", "GptirError", "Graph", "Node", "OPS", "Param", "ShapeError", "TensorType", "Tracer",
    "VerifyError", "broadcast_to", "cast", "concat", "equal", "exp", "gather", "greater", "log", "make_graph",
    "matmul", "maximum", "print_graph", "reduce_max", "reduce_sum", "relu", "reshape", "run", "scatter_add",
    "scope", "stop_gradient", "trace", "transpose", "verify", "where", "ParseError", "load_graph", "load_params",
    "parse", "save_graph", "save_params", "grad", "grad_output_name", "value", "GraphDiff", "diff_graphs",
    "PASSES", "optimize", "run_pipeline", "compile_graph", "generate_source", "to_dot", "to_svg", "view",
    "absolute", "argmax", "cos", "expand_dims", "greater_equal", "less", "less_equal", "mean", "minimum",
    "not_equal", "reduce_min", "sigmoid", "sin", "sqrt", "squeeze", "stack", "tanh", "var",
    "gelu", "layer_norm", "log_softmax", "logsumexp", "softmax",
]

abs = absolute  # noqa: A001 - ``gptir.abs`` as ``np.abs``; not in __all__, so ``import *`` keeps the builtin
