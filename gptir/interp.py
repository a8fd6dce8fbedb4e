"""The reference interpreter: evaluate a graph on numpy arrays, in topological order.

Each op's arithmetic comes from the op table (the same code constant folding uses), values are freed
after their last use, and a failure names the node, its op and the model line that made it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from gptir.ir import GptirError, Graph, Node, TensorType
from gptir.memory import c_order, last_uses
from gptir.ops import OPS


class ExecError(GptirError):
    """Running a graph failed: missing or ill-shaped inputs, or an op failed on its values."""


def _describe(node: Node) -> str:
    ins = ", ".join(f"%{i}" for i in node.inputs)
    where = f" (from {node.loc})" if node.loc else ""
    return f"%{node.name} = {node.op} {ins} : {node.type}{where}"


def coerce_input(node: Node, value: Any) -> np.ndarray:
    """Convert a user-supplied value to the input's declared type, or raise ExecError saying why."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - anything numpy cannot take is a user error
        raise ExecError(f"input {node.name}: cannot convert value ({e})") from None
    want = node.type
    if arr.shape != want.shape:
        raise ExecError(f"input {node.name} must be {want}, got shape {list(arr.shape)}")
    kind = arr.dtype.kind
    # ints are fine for f64 (2 means 2.0), but true/false are not numbers and numbers are not
    # booleans: silently reading [true, false] as [1.0, 0.0] hides a mistake in the inputs
    if want.dtype != "bool" and kind == "b":
        raise ExecError(f"input {node.name} must be {want}: give numbers, not true/false")
    if want.dtype == "bool" and kind != "b":
        raise ExecError(f"input {node.name} must be {want}: give true/false, not {arr.dtype} values")
    ok = {"f64": "fiu", "f32": "fiu", "i64": "iu", "bool": "b"}[want.dtype]
    if kind not in ok:
        raise ExecError(f"input {node.name} must be {want}, got {arr.dtype} values")
    if want.dtype == "i64" and kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ExecError(f"input {node.name}: values beyond the i64 range")
    if want.dtype == "f64" and kind in "iu" and arr.size and int(np.abs(arr).max()) > 2 ** 53:
        raise ExecError(f"input {node.name} is f64: integers beyond 2**53 would lose precision; give floats")
    if want.dtype == "f32" and kind in "iu" and arr.size and int(np.abs(arr).max()) > 2 ** 24:
        raise ExecError(f"input {node.name} is f32: integers beyond 2**24 would lose precision; give floats")
    return arr.astype(want.np_dtype, copy=False)


def bind_input(node: Node, value: Any) -> np.ndarray:
    """``value`` as the program sees it: converted to the input's type (:func:`coerce_input`) and
    C-contiguous. The layout is part of the input contract: numpy's results depend on strides
    (summation order, SIMD or scalar kernels), so passes may treat inputs as C-contiguous only if
    every backend binds them C-contiguous. A contiguous array is not copied."""
    return c_order(coerce_input(node, value))


def bind_inputs(graph: Graph, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The environment for a run: every input and param, checked against its type and made
    C-contiguous (see :func:`bind_input`)."""
    supplied = dict(graph.params)
    supplied.update(params or {})
    supplied.update(inputs)
    env: dict[str, np.ndarray] = {}
    missing = []
    for node in graph.inputs:
        if node.name not in supplied:
            missing.append(node.name)
            continue
        env[node.name] = bind_input(node, supplied[node.name])
    if missing:
        types = ", ".join(f"{m}: {graph.nodes[m].type}" for m in missing)
        raise ExecError(f"missing input(s): {types}")
    unknown = sorted(set(inputs) - {n.name for n in graph.inputs})
    if unknown:
        given = ", ".join(unknown)
        given = given if len(given) <= 80 else given[:77] + "..."  # never echo 20 kB of user text
        raise ExecError(f"unknown input(s): {given} (the graph takes: "
                        f"{', '.join(n.name for n in graph.inputs) or 'nothing'})")
    return env


def run(graph: Graph, inputs: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Evaluate ``graph``; returns {output name: array}."""
    env = bind_inputs(graph, inputs or {}, params)
    nodes = list(graph.nodes.values())
    dead = last_uses(nodes, graph.outputs.values())
    with np.errstate(all="ignore"):  # IEEE semantics: log(0) is -inf, not a warning
        for pos, node in enumerate(nodes):
            opdef = OPS[node.op]
            if opdef.evaluate is not None:
                try:
                    out = opdef.evaluate([env[i] for i in node.inputs], node.attrs)
                except IndexError as e:
                    raise ExecError(f"{_describe(node)}: index out of range ({e})") from None
                except (ValueError, TypeError, FloatingPointError) as e:
                    raise ExecError(f"{_describe(node)}: {e}") from None
                env[node.name] = np.asarray(out)
            for name in dead.get(pos, ()):
                env.pop(name, None)
    return {out: env[value] for out, value in graph.outputs.items()}


def output_type(graph: Graph, output: str) -> TensorType:
    return graph.nodes[graph.outputs[output]].type
