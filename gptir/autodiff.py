"""Reverse-mode automatic differentiation as a graph rewrite.

``grad(graph, wrt, of)`` appends the backward pass to a copy of ``graph`` as ordinary IR nodes and adds
one output per ``wrt`` input (named ``grad.<input>``, or ``grad.grad.<input>`` ... if that name is
taken: existing outputs are never replaced, see :func:`gradient_output_names`). The per-op rules
live in the op table (``OpDef.grad``, see gptir.ops); this module only decides which nodes need
them, walks those in reverse topological order and sums fan-out contributions. Because the result is plain IR it prints,
parses, verifies, runs, compiles, and can itself be differentiated (second derivatives).

Only nodes on a path from a ``wrt`` input to the differentiated output get gradient work: operands
that do not lead to a ``wrt`` input (constants, data, other parameters) cost nothing, and
``stop_gradient``, comparisons and casts end every path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Collection, Mapping, Sequence, cast

import numpy as np

import gptir.tracing as T
from gptir.gcpause import gc_paused
from gptir.ir import FLOATS, INPUT_OPS, GptirError, Graph, Node, TensorType
from gptir.ops import OPS, GradOps, GradValue
from gptir.tracing import Builder, Tracer

__all__ = ["GradContext", "GradError", "grad", "grad_output_name", "gradient_output_names", "gradient_outputs_of"]


class GradError(GptirError):
    """The gradient asked for does not exist (unknown, non-float or non-scalar values)."""


def grad_output_name(name: str, taken: Collection[str] = ()) -> str:
    """The output holding the gradient with respect to input ``name``: ``grad.<name>``, prefixed
    with ``grad.`` again while the name is in ``taken`` (the outputs the graph already has). So
    differentiating ``grad.x`` with respect to ``x`` adds ``grad.grad.x`` and keeps ``grad.x``."""
    out = f"grad.{name}"
    while out in taken:
        out = f"grad.{out}"
    return out


def gradient_output_names(graph: Graph, wrt: Sequence[str] | str) -> dict[str, str]:
    """The output name :func:`grad` gives each ``wrt`` input of ``graph`` (in ``wrt`` order): its
    :func:`grad_output_name` avoiding ``graph``'s outputs and the names given to earlier wrt inputs."""
    taken = set(graph.outputs)
    return _names(taken, [wrt] if isinstance(wrt, str) else wrt)


def _names(taken: set[str], wrt: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for w in wrt:
        names[w] = grad_output_name(w, taken)
        taken.add(names[w])
    return names


def gradient_outputs_of(result: Graph, wrt: Sequence[str] | str) -> dict[str, str]:
    """For ``result = grad(graph, wrt, ...)``: each wrt input -> the output holding its gradient.

    :func:`grad` appends the gradients after ``graph``'s outputs in ``wrt`` order, so the mapping is
    recomputed from ``result`` alone; raises GradError if ``result`` was not made that way."""
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    outs = list(result.outputs)
    k = len(wrt)
    if k == 0 or len(outs) <= k:
        raise GradError(f"graph {result.name} does not end with {k} gradient output(s) after its own outputs")
    names = _names(set(outs[:-k]), wrt)
    if list(names.values()) != outs[-k:]:
        raise GradError(f"graph {result.name} is not grad(..., wrt=[{', '.join(wrt)}]): its last outputs are "
                        f"{', '.join(outs[-k:])}, not {', '.join(names.values())}")
    return names


class _BackwardBuilder(Builder):
    """A Builder whose backward nodes are named ``<scope>.grad_<op>`` (stable and readable)."""

    def _add(self, op: str, inputs: tuple[str, ...], ty: TensorType, attrs: dict[str, Any],
             name: str | None) -> Tracer:
        if self._origin is not None and self._origin[2] and not (name or "").startswith("grad_"):
            name = f"grad_{name or op}"  # also renames the tracer's lifted constants (name "const")
        return super()._add(op, inputs, ty, attrs, name)


@dataclass
class GradContext:
    """What a gradient rule sees: this implements :class:`gptir.ops.GradContext`, the interface the
    rules in the op table are typed against (``rule(ctx) -> tuple[value | None, ...]``).

    ``needs[i]`` is false when operand ``i`` does not lead to a wrt input: the rule should return
    None there and build nothing for it.
    """

    node: Node
    inputs: tuple[Tracer, ...]
    out: Tracer
    g: Tracer
    needs: tuple[bool, ...]
    _zeros: dict[tuple[str, tuple[int, ...]], Tracer] = field(repr=False)
    T: ClassVar[GradOps] = T  # the gptir.tracing module: rules build IR with the tracer's functions

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.node.attrs

    @property
    def builder(self) -> Builder:
        return self.g.builder

    def zeros(self, shape: Sequence[int]) -> Tracer:
        """A zero tensor of the cotangent's dtype: one scalar constant broadcast (shared by every rule
        of the pass)."""
        return _zeros(self.builder, self._zeros, tuple(shape), self.g.type.dtype)

    def constant(self, i: int) -> np.ndarray | None:
        """The value of operand ``i`` if it is a constant (looking through broadcast and reshape,
        so ``x ** 2.0`` reports the scalar 2.0), else None."""
        node = self.builder.nodes[self.inputs[i].name]
        while node.op in ("broadcast", "reshape"):
            node = self.builder.nodes[node.inputs[0]]
        return node.attrs["value"] if node.op == "const" else None

    def swap_last(self, value: GradValue) -> Tracer:
        """``value`` with its last two axes swapped; undoes an existing swap instead of stacking one."""
        t = cast(Tracer, value)  # the rules' values are this pass's tracers
        node = self.builder.nodes[t.name]
        swap = tuple(range(t.ndim - 2)) + (t.ndim - 1, t.ndim - 2)
        if node.op == "transpose" and node.attrs["perm"] == swap:
            return self.builder.value(node.inputs[0])
        return T.transpose(t, swap)


def _zeros(b: Builder, cache: dict[tuple[str, tuple[int, ...]], Tracer], shape: tuple[int, ...],
           dtype: str) -> Tracer:
    z = cache.get((dtype, shape))
    if z is None:
        if (dtype, ()) not in cache:
            cache[(dtype, ())] = b.const(0.0, dtype, name="grad_zero")
        scalar = cache[(dtype, ())]
        z = scalar if not shape else b.emit("broadcast", [scalar], {"shape": shape}, name="grad_zeros")
        cache[(dtype, shape)] = z
    return z


def _check_request(graph: Graph, wrt: Sequence[str], of: str | None) -> tuple[list[str], str]:
    """Validate the request; returns (wrt names, the output's value name)."""
    if isinstance(wrt, str):
        wrt = [wrt]
    if of is None:
        if len(graph.outputs) != 1:
            raise GradError(f"graph {graph.name} has outputs {', '.join(graph.outputs)}: say which one to "
                            "differentiate (of=...)")
        of = next(iter(graph.outputs))
    if of not in graph.outputs:
        raise GradError(f"no output named {of!r} (outputs: {', '.join(graph.outputs)})")
    value = graph.outputs[of]
    ty = graph.nodes[value].type
    if ty.dtype not in FLOATS or ty.rank:
        raise GradError(f"can only differentiate a scalar f64 output (or f32), but {of} is {ty} "
                        "(reduce it to a scalar first)")
    floats = [n.name for n in graph.inputs if n.type.dtype == ty.dtype]
    names: list[str] = []
    listed: set[str] = set()  # the same names as a set: a model has thousands of params
    if not wrt:
        raise GradError("nothing to differentiate with respect to (wrt is empty)")
    for name in wrt:
        node = graph.nodes.get(name)
        if node is None or node.op not in INPUT_OPS:
            raise GradError(f"{name!r} is not an input or param of graph {graph.name} "
                            f"({ty.dtype} inputs: {', '.join(floats) or 'none'})")
        if node.type.dtype != ty.dtype:
            raise GradError(f"cannot differentiate with respect to {name}: it is {node.type}, not {ty.dtype} "
                            f"(the dtype of {of})")
        if name in listed:
            raise GradError(f"{name} is listed twice in wrt")
        names.append(name)
        listed.add(name)
    return names, value


_Slot = list[Any]  # [a node's tracer, its cotangent so far or None]: one per node on a path from a wrt input
_Reached = tuple[Node, _Slot, list[_Slot | None]]


def _reach(graph: Graph, b: Builder, wrt: Sequence[str], dtype: str) -> tuple[dict[str, _Slot], list[_Reached]]:
    """The nodes on a differentiable path from a wrt input (of the output's float ``dtype``: casts
    are not differentiable). Each gets a slot ``[its tracer, its cotangent so far or None]``,
    by name; the reverse walk gets them in graph order as ``(node, slot, operand slots)``, None
    for an operand on no such path, so it adds up contributions without looking names up again.
    A reached node whose slot never gets a cotangent does not lead to the output: the walk skips it."""
    nodes = graph.nodes
    slots: dict[str, _Slot] = {w: [Tracer(b, w, nodes[w].type), None] for w in wrt}
    get, disjoint = slots.get, slots.keys().isdisjoint
    reached: list[_Reached] = []
    for node in nodes.values():
        if disjoint(node.inputs) or node.type.dtype != dtype or OPS[node.op].nondiff is not None:
            continue  # (an input has no operands: the wrt inputs are in from the start)
        slot: _Slot = [Tracer(b, node.name, node.type), None]
        slots[node.name] = slot
        reached.append((node, slot, [get(i) for i in node.inputs]))
    return slots, reached


@gc_paused
def grad(graph: Graph, wrt: Sequence[str], of: str | None = None) -> Graph:
    """A new graph: ``graph``'s outputs (unchanged, first) plus one output per wrt input, in wrt
    order, holding d(of)/d(name).

    ``of`` names a scalar f64 output (default: the only output). The gradient output is called
    ``grad.<name>``; an existing output is never replaced: if ``graph`` already has an output of
    that name, ``grad.`` is prefixed again until the name is free (:func:`gradient_output_names`
    says which names a call will add; :func:`gradient_outputs_of` recovers them from the result).
    So ``grad(grad(g, ["x"]), ["x"], of="grad.x")`` has outputs ``out``, ``grad.x`` (the first
    derivative) and ``grad.grad.x`` (the second).
    """
    names, value = _check_request(graph, wrt, of)
    b = _BackwardBuilder(graph.name, base=graph)
    nodes = graph.nodes
    out = nodes[value]
    slots, reached = _reach(graph, b, names, out.type.dtype)
    zeros: dict[tuple[str, tuple[int, ...]], Tracer] = {}
    if value in slots:
        with b.origin(out.scope, out.loc):
            slots[value][1] = b.const(1.0, out.type.dtype, name="grad_seed")
    for node, slot, operands in reversed(reached):
        g = slot[1]
        if g is None:
            continue
        rule = OPS[node.op].grad
        if rule is None:  # pragma: no cover - test_autodiff checks every differentiable op has a rule
            raise GradError(f"op {node.op} (%{node.name}) has no gradient rule")
        inputs = tuple([Tracer(b, i, nodes[i].type) if s is None else s[0] for i, s in zip(node.inputs, operands)])
        ctx = GradContext(node, inputs, slot[0], g, tuple([s is not None for s in operands]), zeros)
        with b.origin(node.scope, node.loc):
            parts = rule(ctx)
            if len(parts) != len(node.inputs):  # pragma: no cover - a broken rule is a gptir bug
                raise GradError(f"the {node.op} gradient rule gave {len(parts)} results "
                                f"for {len(node.inputs)} operands")
            for s, part in zip(operands, parts):
                if part is None or s is None:
                    continue
                want = s[0].type
                if part.type != want:  # pragma: no cover - a broken rule is a gptir bug
                    raise GradError(f"the {node.op} gradient rule gave {part.type} for %{s[0].name} : {want}")
                part_t = cast(Tracer, part)  # what the tracer's functions return
                s[1] = part_t if s[1] is None else T.add(s[1], part_t)
    outputs = {k: b.value(v) for k, v in graph.outputs.items()}
    out_names = gradient_output_names(graph, names)
    for name in names:
        g = slots[name][1]
        if g is None:  # no path: an explicit zero of the input's type
            node = graph.nodes[name]
            with b.origin(node.scope, node.loc):
                g = _zeros(b, zeros, node.type.shape, node.type.dtype)
        outputs[out_names[name]] = g
    return b.finish(outputs)
