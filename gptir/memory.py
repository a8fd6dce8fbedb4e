"""The memory contract every backend and pass keeps, so that all of them stay bit-identical.

numpy's results depend on memory layout (``sum`` adds in an order that follows strides, ``matmul``
takes BLAS or a plain loop by strides, ``exp``/``log`` pick SIMD or scalar kernels by stride and by
the distance between input and output), so the passes and the code generator may only swap, reuse or
write into arrays whose layout they can prove. This module holds those proofs, read from the op
table's ``result`` and ``layout`` traits (see :data:`gptir.ops.RESULTS` and :data:`gptir.ops.LAYOUTS`):

- the *input contract*: every backend binds inputs and params C-contiguous (:func:`c_order`);
- :func:`c_contiguous`: whether a value is provably a C-contiguous array in every backend;
- :func:`new_value` / :func:`fresh`: whether a value is never a view of an operand (aliasing);
- :func:`kernel_safe_in_place`: whether an elementwise result may be written into a reused buffer;
- liveness (:func:`last_reads`, :func:`dead_after`): when each value is read for the last time,
  shared by the interpreter (which frees values then) and the code generator (``del`` and buffer reuse).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from gptir.ir import Node, TensorType
from gptir.ops import LAYOUTS, OPS, RESULTS

# numpy's AVX-512 exp/log kernels run when input and output are identical or >= 64 bytes apart, else
# a scalar kernel (other bits): a result this small is never computed into a reused buffer.
SIMD_DISTANCE_BYTES = 64


def c_order(arr: np.ndarray) -> np.ndarray:
    """The input contract: ``arr`` as a program sees it, C-contiguous (a contiguous array is not
    copied). Every backend binds inputs and params through this, so the passes may treat them as
    C-contiguous."""
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


# -- layout ----------------------------------------------------------------------------------------

Known = Mapping[str, bool]
Nodes = Mapping[str, Node]


def _elementwise(node: Node, known: Known, nodes: Nodes) -> bool:
    full = [i for i in node.inputs if nodes[i].op != "broadcast"]
    return bool(full) and all(known.get(i, False) for i in full)


def _operands(node: Node, known: Known, nodes: Nodes) -> bool:
    return all(known.get(i, False) for i in node.inputs)


def _view(node: Node, known: Known, nodes: Nodes) -> bool:
    """A view of its operand's shape: contiguous when the operand is, unless a ``perm`` moves axes
    or a ``step`` (strided slice) other than 1 walks an axis longer than 1 (a reversal keeps the shape)."""
    perm, step = node.attrs.get("perm"), node.attrs.get("step")
    return nodes[node.inputs[0]].type.shape == node.type.shape and known.get(node.inputs[0], False) and (
        perm is None or tuple(perm) == tuple(range(node.type.rank))) and (
        step is None or all(k == 1 or d <= 1 for k, d in zip(step, node.type.shape)))


_LAYOUT_RULES: dict[str, Callable[[Node, Known, Nodes], bool]] = {
    "elementwise": _elementwise,
    "contiguous": lambda node, known, nodes: True,
    "gufunc": lambda node, known, nodes: node.type.rank <= 2 or _operands(node, known, nodes),
    "operands": _operands,
    "first": lambda node, known, nodes: known.get(node.inputs[0], False),
    "view": _view,
}
assert set(_LAYOUT_RULES) == set(LAYOUTS)


def c_contiguous(node: Node, known: Known, nodes: Nodes) -> bool:
    """Whether ``node``'s value is provably a C-contiguous array (in both the interpreter and the
    compiled code), given the answers ``known`` for its operands. Inputs and params are: both
    backends make them C-contiguous before the program runs (the input contract, :func:`c_order`)."""
    if not node.type.shape or node.op in ("input", "param"):  # rank 0 (a numpy scalar), or the input contract
        return True
    if node.op == "const":
        return bool(node.attrs["value"].flags.c_contiguous)
    rule = OPS[node.op].layout
    if rule == "elementwise":  # the common case, inline (this runs for every node of every pass)
        full = [i for i in node.inputs if nodes[i].op != "broadcast"]
        return bool(full) and all(known.get(i, False) for i in full)
    return rule is not None and _LAYOUT_RULES[rule](node, known, nodes)


def layout(node: Node, known: Known, nodes: Nodes) -> bool:
    """What :func:`layouts` records for ``node``, given ``known`` for its operands: its
    :func:`c_contiguous`, or true for a fresh array with at most one dimension longer than 1
    (contiguous whatever its operands' layout)."""
    c = c_contiguous(node, known, nodes)
    if not c and fresh(node, nodes) and sum(d != 1 for d in node.type.shape) <= 1:
        c = True
    return c


def layouts(nodes: Iterable[Node], all_nodes: Nodes) -> dict[str, bool]:
    """:func:`layout` of every node (in order): whether its value is provably C-contiguous."""
    known: dict[str, bool] = {}
    for node in nodes:
        known[node.name] = layout(node, known, all_nodes)
    return known


# -- aliasing --------------------------------------------------------------------------------------

_RESULT_RULES: dict[str, Callable[[Node, Nodes], bool]] = {
    "fresh": lambda node, nodes: True,
    "view": lambda node, nodes: False,
    "maybe_view": lambda node, nodes: False,
    "reduce": lambda node, nodes: bool(node.attrs["axes"]),  # reducing no axes: treated as a possible view
    "index": lambda node, nodes: nodes[node.inputs[1]].type.rank >= 1,  # a 0-d index may give a view
}
assert set(_RESULT_RULES) == set(RESULTS)


def new_value(node: Node, nodes: Nodes) -> bool:
    """Whether ``node``'s value is never a view of an operand."""
    result = OPS[node.op].result
    return result == "fresh" or (result is not None and _RESULT_RULES[result](node, nodes))


def fresh(node: Node, nodes: Nodes) -> bool:
    """Whether ``node``'s value is an array the program allocated (rank 0 values are numpy scalars)."""
    return node.type.rank > 0 and new_value(node, nodes)


def kernel_safe_in_place(op: str, t: TensorType) -> bool:
    """Whether a result of type ``t`` may be written into a reused buffer without changing which
    numpy kernel computes it (see :data:`SIMD_DISTANCE_BYTES`)."""
    return not OPS[op].simd_by_distance or t.size * t.np_dtype.itemsize >= SIMD_DISTANCE_BYTES


# -- liveness --------------------------------------------------------------------------------------


def last_reads(reads: Iterable[Iterable[str]]) -> dict[str, int]:
    """For a sequence of steps, each reading some values: value -> the last step that reads it."""
    last: dict[str, int] = {}
    for pos, names in enumerate(reads):
        for name in names:
            last[name] = pos
    return last


def dead_after(last: Mapping[str, int], keep: Iterable[str] = ()) -> dict[int, list[str]]:
    """Step -> the values that die there (read for the last time; those in ``keep`` never die)."""
    kept = set(keep)
    dead: dict[int, list[str]] = {}
    for name, pos in last.items():
        if name not in kept:
            dead.setdefault(pos, []).append(name)
    return dead


def last_uses(nodes: Sequence[Node], outputs: Iterable[str]) -> dict[int, list[str]]:
    """For each node position, the values that are dead after it (``outputs`` are never freed)."""
    return dead_after(last_reads([n.inputs for n in nodes]), outputs)
