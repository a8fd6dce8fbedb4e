"""The IR text printer: graphs, nodes, literals and attributes as canonical text (no lark here).

One node per line, SSA, every value typed, scope and location visible::

    graph neuron {
      in %x : f64[] loc("examples/neuron.py:12")
      param %w1 : f64[] = 0.5
      %mul = mul %w1, %x : f64[] @neuron loc("examples/neuron.py:8")
      %sum = sum[axes=(0,), keepdims=false] %v : f64[]
      output out = %relu
    }

Floats print with ``repr`` (which round-trips), spelled ``inf``/``-inf``/``nan``; a NaN whose bits are
not the canonical quiet NaN prints as ``nan(0x...)`` with its bits, so parse(print(g)) is bit-exact.
The parser is :mod:`gptir.parser`.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Mapping

import numpy as np

from gptir.ir import Graph, Node, attr_kind_of

CANONICAL_NAN = 0x7FF8000000000000


def format_float(x: float) -> str:
    if math.isnan(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        return "nan" if bits == CANONICAL_NAN else f"nan(0x{bits:016x})"
    return repr(float(x))


def format_scalar(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return format_float(float(x))


def format_literal(arr: np.ndarray) -> str:
    """A tensor literal: a scalar, or nested brackets (``[[1.0, 2.0], [3.0, 4.0]]``)."""
    if arr.ndim == 0:
        return format_scalar(arr.item())
    return "[" + ", ".join(format_literal(a) for a in arr) + "]" if arr.shape[0] else "[]"


def format_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _format_value(v: Any) -> str:
    return format_literal(v) if isinstance(v, np.ndarray) else format_scalar(v)


def format_attr(v: Any) -> str:
    """An attribute value as its kind (:data:`gptir.ir.ATTR_KINDS`) writes it."""
    return attr_kind_of(v).format(v, _format_value)


def format_attrs(attrs: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    items = [f"{k}={format_attr(attrs[k])}" for k in sorted(attrs) if k not in skip]
    return f"[{', '.join(items)}]" if items else ""


def _meta(node: Node) -> str:
    parts = []
    if node.scope:
        parts.append(f"@{node.scope}")
    if node.loc:
        parts.append(f"loc({format_string(node.loc)})")
    if node.backward:
        parts.append("backward")
    return (" " + " ".join(parts)) if parts else ""


def format_node(node: Node, value: np.ndarray | None = None) -> str:
    """One line of IR for ``node`` (``value`` is an inline param value, if any)."""
    if node.op in ("input", "param"):
        kw = "in" if node.op == "input" else "param"
        init = f" = {format_literal(value)}" if value is not None else ""
        return f"{kw} %{node.name} : {node.type}{init}{_meta(node)}"
    if node.op == "const":
        return f"%{node.name} = const {format_literal(node.attrs['value'])} : {node.type}{_meta(node)}"
    operands = ", ".join(f"%{i}" for i in node.inputs)
    return f"%{node.name} = {node.op}{format_attrs(node.attrs)} {operands} : {node.type}{_meta(node)}"


def print_graph(graph: Graph, inline_params: bool = True) -> str:
    """The canonical text of ``graph``. With ``inline_params=False`` values stay out of the text
    (they live in the sidecar named by ``graph.params_file``, or are supplied at run time)."""
    lines = [f"graph {graph.name} {{"]
    if graph.params_file is not None:
        lines.append(f"  params {format_string(graph.params_file)}")
    for node in graph.nodes.values():
        value = graph.params.get(node.name) if inline_params and graph.params_file is None else None
        lines.append("  " + format_node(node, value))
    for out, ref in graph.outputs.items():
        lines.append(f"  output {out} = %{ref}")
    lines.append("}")
    return "\n".join(lines) + "\n"

