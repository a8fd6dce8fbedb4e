"""A micrograd-style scalar ``Value`` API whose gradients come from the IR.

Each operation computes its result and its local derivatives eagerly, as micrograd and microgpt do,
so a Value is self-describing (``data``, ``children``, ``local_grads``). ``graph(v)`` turns the
expression into IR (leaves become ``param`` inputs named by their labels; a Value used twice stays one
node, so fan-out is real fan-out), and ``backward(v)`` differentiates that IR with the autodiff pass and
runs it with the interpreter::

    from gptir import value as V
    a, b = V.leaf(2.0, "a"), V.leaf(3.0, "b")
    y = V.add(V.mul(a, b), V.pow(a, 2))
    V.backward(y)["a"]   # 7.0

Values are immutable and compared by identity (two leaves with equal data are different values).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np

from gptir.autodiff import grad, grad_output_name
from gptir.interp import run
from gptir.ir import GptirError, Graph, TensorType, is_identifier
from gptir.tracing import Builder, Tracer

__all__ = ["Value", "ValueExprError", "leaf", "const", "add", "sub", "mul", "div", "neg", "pow", "log", "exp",
           "relu", "sum", "mean", "graph", "backward"]


class ValueExprError(GptirError):
    """A bad Value expression (bad or duplicate labels, empty sums, non-numbers)."""


@dataclass(frozen=True, eq=False)
class Value:
    """One scalar: its value, the Values it was computed from, and d(self)/d(child) for each."""

    data: float
    children: tuple["Value", ...] = ()
    local_grads: tuple[float, ...] = ()
    op: str = "leaf"  # leaf, const, or the IR op that makes it (add, mul, pow, ...)
    label: str = ""
    exponent: float | None = None  # for pow: the constant exponent

    def __repr__(self) -> str:
        name = f" {self.label}" if self.label else ""
        return f"Value({self.op}{name}: {self.data!r})"


Operand = Union[Value, float, int]


def leaf(data: float, label: str) -> Value:
    """An input of the expression; ``backward`` reports its gradient under ``label``."""
    if not isinstance(label, str) or not is_identifier(label):
        raise ValueExprError(f"bad leaf label {label!r}: use an identifier such as w1 or layer0.w")
    return Value(_number(data), op="leaf", label=label)


def const(data: float) -> Value:
    """A constant (no gradient is reported for it)."""
    return Value(_number(data), op="const")


def _number(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueExprError(f"a Value holds a number, got {type(x).__name__}")
    return float(x)


def _v(x: Operand) -> Value:
    return x if isinstance(x, Value) else const(_number(x))


def add(a: Operand, b: Operand) -> Value:
    a, b = _v(a), _v(b)
    return Value(a.data + b.data, (a, b), (1.0, 1.0), "add")


def sub(a: Operand, b: Operand) -> Value:
    a, b = _v(a), _v(b)
    return Value(a.data - b.data, (a, b), (1.0, -1.0), "sub")


def mul(a: Operand, b: Operand) -> Value:
    a, b = _v(a), _v(b)
    return Value(a.data * b.data, (a, b), (b.data, a.data), "mul")


def div(a: Operand, b: Operand) -> Value:
    a, b = _v(a), _v(b)
    with np.errstate(all="ignore"):
        q = float(np.float64(a.data) / np.float64(b.data))  # IEEE: x/0 is inf, as in the IR
        return Value(q, (a, b), (float(1.0 / np.float64(b.data)), float(-q / np.float64(b.data))), "div")


def neg(a: Operand) -> Value:
    a = _v(a)
    return Value(-a.data, (a,), (-1.0,), "neg")


def pow(a: Operand, exponent: float) -> Value:  # noqa: A001 - the API mirrors micrograd's names
    """``a ** exponent`` for a constant number ``exponent``."""
    a, k = _v(a), _number(exponent)
    with np.errstate(all="ignore"):
        data = float(np.power(np.float64(a.data), k))
        local = float(k * np.power(np.float64(a.data), k - 1.0))
    return Value(data, (a,), (local,), "pow", exponent=k)


def log(a: Operand) -> Value:
    a = _v(a)
    with np.errstate(all="ignore"):
        return Value(float(np.log(np.float64(a.data))), (a,), (float(1.0 / np.float64(a.data)),), "log")


def exp(a: Operand) -> Value:
    a = _v(a)
    with np.errstate(all="ignore"):
        e = float(np.exp(np.float64(a.data)))
    return Value(e, (a,), (e,), "exp")


def relu(a: Operand) -> Value:
    a = _v(a)
    return Value(max(a.data, 0.0), (a,), (float(a.data > 0),), "relu")


def sum(values: Sequence[Operand]) -> Value:  # noqa: A001
    """The sum of a non-empty list, added left to right (one node, a local gradient of 1 each)."""
    vs = [_v(x) for x in values]
    if not vs:
        raise ValueExprError("sum of an empty list")
    total = vs[0].data
    for x in vs[1:]:
        total += x.data
    return Value(total, tuple(vs), (1.0,) * len(vs), "sum")


def mean(values: Sequence[Operand]) -> Value:
    """The sum divided by the count (local gradients 1/n)."""
    vs = [_v(x) for x in values]
    if not vs:
        raise ValueExprError("mean of an empty list")
    s = sum(vs)
    return Value(s.data / len(vs), tuple(vs), (1.0 / len(vs),) * len(vs), "mean")


def _topo(root: Value) -> list[Value]:
    """Every Value of the expression once, children before parents (iterative: deep chains are fine)."""
    order: list[Value] = []
    seen: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        stack.extend((c, False) for c in reversed(v.children) if id(c) not in seen)
    return order


def _leaves(order: Sequence[Value]) -> list[Value]:
    leaves: list[Value] = []
    labels: dict[str, Value] = {}
    for v in order:
        if v.op != "leaf":
            continue
        other = labels.get(v.label)
        if other is not None and other is not v:
            raise ValueExprError(f"two different leaves are labelled {v.label!r} ({other.data!r} and {v.data!r}): "
                              "labels name gradients, so they must be unique")
        labels[v.label] = v
        leaves.append(v)
    return leaves


def graph(v: Value, name: str = "value") -> Graph:
    """The IR of ``v``'s expression: leaves are ``param`` inputs (with their data), output ``out``."""
    if not isinstance(v, Value):
        raise ValueExprError(f"graph() takes a Value, got {type(v).__name__}")
    order = _topo(v)
    b = Builder(name)
    f64 = TensorType("f64", ())
    traced: dict[int, Tracer] = {}
    with b.origin("", "", backward=False):  # no model source line to point at
        for lf in _leaves(order):  # inputs first, so no op node can take a label's name
            traced[id(lf)] = b.param(lf.label, f64, np.asarray(lf.data, dtype=np.float64))
        _build(b, order, traced)
    return b.finish({"out": traced[id(v)]})


def _build(b: Builder, order: Sequence[Value], traced: dict[int, Tracer]) -> None:
    for x in order:
        if x.op == "leaf":
            continue
        if x.op == "const":
            traced[id(x)] = b.const(np.float64(x.data))
            continue
        ins = [traced[id(c)] for c in x.children]
        if x.op in ("sum", "mean"):
            t = ins[0]
            for u in ins[1:]:
                t = b.emit("add", [t, u])
            traced[id(x)] = b.emit("div", [t, b.const(np.float64(len(ins)))]) if x.op == "mean" else t
        elif x.op == "pow":
            traced[id(x)] = b.emit("pow", [ins[0], b.const(np.float64(x.exponent))])
        else:
            traced[id(x)] = b.emit(x.op, ins)


def backward(v: Value) -> Mapping[str, float]:
    """d v / d leaf for every labelled leaf of ``v`` (read-only mapping label -> float),
    computed by the IR autodiff pass and the interpreter."""
    g = graph(v)
    labels = [n.name for n in g.param_inputs]
    if not labels:
        return types.MappingProxyType({})
    values = run(grad(g, labels, of="out"))
    return types.MappingProxyType({k: float(values[grad_output_name(k)]) for k in labels})

