"""gptir: a graph-IR compiler and interpreter for tiny GPTs.

Model code written in Python is traced into a typed SSA graph (``trace``), printed and parsed in a
small text format (``print_graph``, ``parse``), differentiated by a graph-rewrite pass, optimised,
interpreted or compiled, and used to train and sample a character-level GPT.
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it from here)

from typing import TYPE_CHECKING, Any, Callable, Mapping

# Public name -> the module that defines it. Loaded on first use (PEP 562), so ``import gptir.cli``
# for ``gptir --help`` costs no numpy, and a verb imports only what it uses.
_EXPORTS: dict[str, str] = {
    "grad": "autodiff", "grad_output_name": "autodiff", "GraphDiff": "diff", "diff_graphs": "diff",
    "ExecError": "interp", "run": "interp", "OPS": "ops", "PASSES": "passes", "optimize": "passes",
    "run_pipeline": "passes", "generate_source": "codegen",
    **{n: "ir" for n in ("GptirError", "Graph", "Node", "ShapeError", "TensorType", "VerifyError", "make_graph")},
    **{n: "text" for n in ("ParseError", "load_graph", "load_params", "parse", "print_graph", "save_graph",
                          "save_params")},
    **{n: "tracing" for n in (
        "Builder", "Param", "Tracer", "broadcast_to", "cast", "concat", "equal", "exp", "gather", "greater", "log",
        "matmul", "maximum", "reduce_max", "reduce_sum", "relu", "reshape", "scatter_add", "scope",
        "stop_gradient", "trace", "transpose", "where",
        "absolute", "argmax", "cos", "expand_dims", "greater_equal", "less", "less_equal", "mean", "minimum",
        "not_equal", "reduce_min", "sigmoid", "sin", "sqrt", "squeeze", "stack", "tanh", "var")},
    **{n: "nn" for n in ("gelu", "layer_norm", "log_softmax", "logsumexp", "softmax")},
    "to_dot": "dot", "to_svg": "viewer", "view": "viewer",
}
# ``gptir.abs`` is ``gptir.absolute``, as ``np.abs`` is ``np.absolute`` (not in __all__, so ``import *``
# keeps the builtin)
_ALIASES: dict[str, str] = {"abs": "absolute"}

if TYPE_CHECKING:  # what the names are, for type checkers (at run time they load on first use)
    from gptir import value  # noqa: F401
    from gptir.autodiff import grad, grad_output_name  # noqa: F401
    from gptir.codegen import generate_source  # noqa: F401
    from gptir.diff import GraphDiff, diff_graphs  # noqa: F401
    from gptir.dot import to_dot  # noqa: F401
    from gptir.interp import ExecError, run  # noqa: F401
    from gptir.ir import GptirError, Graph, Node, ShapeError, TensorType, VerifyError, make_graph  # noqa: F401
    from gptir.ops import OPS  # noqa: F401
    from gptir.passes import PASSES, optimize, run_pipeline  # noqa: F401
    from gptir.text import (  # noqa: F401
        ParseError, load_graph, load_params, parse, print_graph, save_graph, save_params,
    )
    from gptir.nn import gelu, layer_norm, log_softmax, logsumexp, softmax  # noqa: F401
    from gptir.tracing import (  # noqa: F401
        Builder, Param, Tracer, absolute, argmax, broadcast_to, cast, concat, cos, equal, exp, expand_dims, gather,
        greater, greater_equal, less, less_equal, log, matmul, maximum, mean, minimum, not_equal, reduce_max,
        reduce_min, reduce_sum, relu, reshape, scatter_add, scope, sigmoid, sin, sqrt, squeeze, stack,
        stop_gradient, tanh, trace, transpose, var, where,
    )
    from gptir.viewer import to_svg, view  # noqa: F401


def __getattr__(name: str) -> Any:
    import importlib

    if name in _ALIASES:
        value = __getattr__(_ALIASES[name])
        globals()[name] = value
        return value
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if not name.startswith("_"):  # a submodule (``gptir.value``, the scalar Value API, ``gptir.ir``, ...)
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'gptir' has no attribute {name!r}")


def compile_graph(graph: "Graph", backend: str = "compiled",
                  **options: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Compile ``graph`` once; returns ``run(inputs) -> {output: array}``. ``backend``: ``compiled``
    (straight-line numpy, bit-identical to the interpreter; options as gptir.codegen.compile_graph)
    ``jax`` (XLA through JAX, ``pip install "gptir[jax]"``; options as gptir.jaxback.compile_graph) or
    ``native`` (C through the system compiler; options as gptir.native.compile_graph)."""
    if backend == "compiled":
        from gptir.codegen import compile_graph as compile_numpy

        return compile_numpy(graph, **options)
    if backend == "jax":
        from gptir.jaxback import compile_graph as compile_jax

        return compile_jax(graph, **options)
    if backend == "native":
        from gptir.native import compile_graph as compile_native

        return compile_native(graph, **options)
    from gptir.ir import GptirError

    raise GptirError(f"unknown backend {backend!r} (choose from compiled, jax, native)")


def verify(graph: "Graph") -> None:
    """Check ``graph`` against every IR rule and the op table; raises VerifyError."""
    from gptir.ir import verify as _verify
    from gptir.ops import OPS

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
