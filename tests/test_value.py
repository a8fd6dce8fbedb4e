"""The scalar Value API: eager data and local gradients, IR building, gradients by the AD pass."""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gptir
from gptir import value as V


def test_mul_data_and_local_grads():
    v = V.mul(V.leaf(3.0, "a"), V.leaf(4.0, "b"))
    assert v.data == 12.0
    assert v.local_grads == (4.0, 3.0)
    assert [c.label for c in v.children] == ["a", "b"]


def test_neuron():
    x, w1, w2 = V.leaf(2.0, "x"), V.leaf(0.5, "w1"), V.leaf(-0.3, "w2")
    y = V.relu(V.add(V.mul(w1, x), w2))
    assert y.data == 0.5 * 2.0 - 0.3
    assert y.data == pytest.approx(0.7)
    grads = V.backward(y)
    assert isinstance(grads, types.MappingProxyType)
    assert dict(grads) == {"x": 0.5, "w1": 2.0, "w2": 1.0}
    with pytest.raises(TypeError):
        grads["x"] = 1.0  # type: ignore[index]


def test_fan_out():
    a = V.leaf(3.0, "a")
    assert V.backward(V.mul(a, a))["a"] == 6.0
    g = V.graph(V.mul(a, a))
    assert [n.op for n in g] == ["param", "mul"]  # a shared value stays one node
    assert g["mul"].inputs == ("a", "a")


def _bump(a: float, b: float) -> float:
    av, bv = V.leaf(a, "a"), V.leaf(b, "b")
    return V.add(V.mul(av, bv), V.pow(av, 2)).data


def test_bump():
    a, b = V.leaf(2.0, "a"), V.leaf(3.0, "b")
    y = V.add(V.mul(a, b), V.pow(a, 2))
    assert y.data == 10.0
    grads = V.backward(y)
    assert grads["a"] == 7.0 and grads["b"] == 2.0
    h = 1e-6
    fd = (_bump(2.0 + h, 3.0) - _bump(2.0 - h, 3.0)) / (2 * h)
    assert abs(grads["a"] - fd) < 1e-6


def test_values_are_immutable_and_hash_by_identity():
    a, b = V.leaf(1.0, "a"), V.leaf(1.0, "a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.data = 2.0  # type: ignore[misc]
    assert a != b and len({a, b}) == 2


def test_duplicate_labels_are_an_error():
    y = V.add(V.leaf(1.0, "w"), V.leaf(2.0, "w"))
    with pytest.raises(gptir.GptirError, match="two different leaves are labelled 'w'"):
        V.backward(y)


def test_bad_labels_and_operands():
    with pytest.raises(gptir.GptirError, match="bad leaf label"):
        V.leaf(1.0, "not a name")
    with pytest.raises(gptir.GptirError, match="holds a number"):
        V.add(V.leaf(1.0, "a"), "2")  # type: ignore[arg-type]
    with pytest.raises(gptir.GptirError, match="empty"):
        V.sum([])


def test_every_op_local_grads_and_ir_gradients():
    a, b = V.leaf(1.5, "a"), V.leaf(-0.5, "b")
    cases = {
        V.sub(a, b): (1.0, -1.0),
        V.div(a, b): (1 / -0.5, -(1.5 / -0.5) / -0.5),
        V.neg(a): (-1.0,),
        V.pow(a, 3): (3 * 1.5 ** 2,),
        V.log(a): (1 / 1.5,),
        V.exp(b): (math.exp(-0.5),),
        V.relu(b): (0.0,),
        V.sum([a, b, a]): (1.0, 1.0, 1.0),
        V.mean([a, b]): (0.5, 0.5),
    }
    for v, local in cases.items():
        assert v.local_grads == pytest.approx(local, rel=1e-15)
    y = V.mean([V.log(a), V.exp(b), V.div(a, b), V.neg(V.sub(a, 1.0)), V.pow(a, -0.5)])
    grads = V.backward(y)
    ref = manual_backward(y)
    assert grads["a"] == pytest.approx(ref["a"], rel=1e-12)
    assert grads["b"] == pytest.approx(ref["b"], rel=1e-12)


def manual_backward(root: V.Value) -> dict[str, float]:
    """micrograd's backward: chain rule over local_grads in reverse topological order."""
    order = V._topo(root)
    g = {id(root): 1.0}
    for v in reversed(order):
        for c, lg in zip(v.children, v.local_grads):
            g[id(c)] = g.get(id(c), 0.0) + lg * g.get(id(v), 0.0)
    return {v.label: g.get(id(v), 0.0) for v in order if v.op == "leaf"}


@st.composite
def expressions(draw):
    leaves = [V.leaf(draw(st.floats(0.3, 2.0)), f"p{i}") for i in range(3)]
    pool = list(leaves)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["add", "sub", "mul", "div", "pow", "log", "exp", "sum"]))
        a, b = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        if op == "pow":
            v = V.pow(a, draw(st.sampled_from([2, 3, 0.5])))
        elif op == "log":
            v = V.log(V.add(V.mul(a, a), 1.0))
        elif op == "exp":
            v = V.exp(V.neg(V.mul(a, a)))
        elif op == "div":
            v = V.div(a, V.add(V.mul(b, b), 1.0))
        elif op == "sum":
            v = V.sum([a, b, a])
        else:
            v = getattr(V, op)(a, b)
        pool.append(v)
    return V.mean(pool[3:]), leaves


@settings(max_examples=30, deadline=None)
@given(expressions())
def test_ir_gradients_match_local_grad_chain_rule(expr):
    y, leaves = expr
    ref = manual_backward(y)
    assume(math.isfinite(y.data) and all(math.isfinite(v) and abs(v) < 1e100 for v in ref.values()))
    grads = V.backward(y)
    g = V.graph(y)
    assert float(gptir.run(g)["out"]) == pytest.approx(y.data, rel=1e-12)
    for lf in leaves:
        assert grads.get(lf.label, 0.0) == pytest.approx(ref.get(lf.label, 0.0), rel=1e-9, abs=1e-12)


def test_graph_params_carry_the_data():
    g = V.graph(V.mul(V.leaf(3.0, "a"), 2.0))
    gptir.verify(g)
    assert g.params["a"] == np.float64(3.0)
    assert [n.op for n in g] == ["param", "const", "mul"]
    assert float(gptir.run(g)["out"]) == 6.0


# -- micrograd's own engine tests (karpathy/micrograd test/test_engine.py), operators as it writes them.
# micrograd compares with torch; here the reference is derived independently: the same expression in
# exact rational arithmetic with forward-mode dual numbers (value and derivative), no gptir involved.

from fractions import Fraction  # noqa: E402

from gptir.value import Value  # noqa: E402


class Dual:
    """a + b*eps with eps**2 = 0, over Fractions: exact values and exact derivatives."""

    def __init__(self, a, b=0):
        self.a, self.b = Fraction(a), Fraction(b)

    @staticmethod
    def of(x):
        return x if isinstance(x, Dual) else Dual(x)

    def __add__(self, o):
        o = Dual.of(o)
        return Dual(self.a + o.a, self.b + o.b)

    __radd__ = __add__

    def __neg__(self):
        return Dual(-self.a, -self.b)

    def __sub__(self, o):
        return self + (-Dual.of(o))

    def __rsub__(self, o):
        return Dual.of(o) - self

    def __mul__(self, o):
        o = Dual.of(o)
        return Dual(self.a * o.a, self.a * o.b + self.b * o.a)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = Dual.of(o)
        return Dual(self.a / o.a, (self.b * o.a - self.a * o.b) / (o.a * o.a))

    def __rtruediv__(self, o):
        return Dual.of(o) / self

    def __pow__(self, k):  # integer exponents only
        return Dual(self.a ** k, k * self.a ** (k - 1) * self.b)

    def relu(self):
        return self if self.a > 0 else Dual(0, 0)


def sanity_expr(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    return y


def more_ops_expr(a, b):
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return g


def test_sanity_check():
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    grads = y.backward()
    xmg, ymg = x, y

    ref = sanity_expr(Dual(-4, 1))  # by hand: y = -20, dy/dx = -60 + 0 - 22 + 128 = 46
    assert (ref.a, ref.b) == (-20, 46)
    # forward pass went well
    assert ymg.data == float(ref.a)
    # backward pass went well
    assert grads[xmg] == float(ref.b)


def test_more_ops():
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    grads = g.backward()
    amg, bmg, gmg = a, b, g

    ga = more_ops_expr(Dual(-4, 1), Dual(2, 0))
    gb = more_ops_expr(Dual(-4, 0), Dual(2, 1))
    assert ga.a == gb.a == Fraction(12105, 490)  # 24.70408163265306..., micrograd's README value
    tol = 1e-6
    # forward pass went well
    assert abs(gmg.data - float(ga.a)) < tol
    # backward pass went well
    assert abs(grads[amg] - float(ga.b)) < tol
    assert abs(grads[bmg] - float(gb.b)) < tol
    assert float(ga.b) == pytest.approx(138.83381924198252, rel=1e-15)
    assert float(gb.b) == pytest.approx(645.5772594752186, rel=1e-15)


def test_unary_methods_against_central_differences():
    h = 1e-6
    for method, fn in (("tanh", math.tanh), ("exp", math.exp), ("log", math.log), ("relu", lambda v: max(v, 0.0))):
        for x0 in (-1.0, 0.123, 2.0):
            if method == "log" and x0 <= 0:
                continue
            xv = Value(x0)
            yv = getattr(xv, method)()
            assert abs(yv.data - fn(x0)) < 1e-15
            fd = (fn(x0 + h) - fn(x0 - h)) / (2 * h)
            assert abs(yv.backward()[xv] - fd) < 1e-6
            assert abs(yv.local_grads[0] - fd) < 1e-6


def test_operators_reflected_and_value_exponents():
    a, b = Value(1.5, label="a"), Value(-0.5)
    y = 2 - a / b + 3 / a - (-b) ** 2 + 2 ** b + a ** b
    want = 2 - 1.5 / -0.5 + 3 / 1.5 - 0.25 + 2 ** -0.5 + 1.5 ** -0.5
    assert y.data == pytest.approx(want, rel=1e-15)
    grads = y.backward()
    assert list(grads) == ["a", "v0"]  # the unlabelled leaf gets an automatic label
    da = -1 / -0.5 - 3 / 1.5 ** 2 + -0.5 * 1.5 ** -1.5
    db = 1.5 / 0.25 - 2 * -0.5 + 2 ** -0.5 * math.log(2) + 1.5 ** -0.5 * math.log(1.5)
    assert grads["a"] == pytest.approx(da, rel=1e-12) and grads[a] == grads["a"]
    assert grads[b] == pytest.approx(db, rel=1e-12) and grads["v0"] == grads[b]
    assert manual_backward(y)["a"] == pytest.approx(da, rel=1e-12)
    assert Value(3).data == 3.0 and isinstance(Value(3).data, float)


def test_automatic_labels_are_structural_and_stable():
    def build():
        x, w = Value(0.5), Value(-2.0)
        return (x * w + Value(1.0, label="v0")).tanh(), x, w
    y1, x1, w1 = build()
    y2, x2, w2 = build()
    g1, g2 = y1.backward(), y2.backward()
    assert list(g1) == list(g2) == ["v1", "v2", "v0"]  # v0 is taken by the explicit label
    assert g1[x1] == g2[x2] == pytest.approx(-2.0 * (1 - math.tanh(0.0) ** 2))
    assert [n.name for n in V.graph(y1).param_inputs] == [n.name for n in V.graph(y2).param_inputs]
    assert x1 in g1 and g1.get(w1) == g1["v2"] and Value(1.0) not in g1
    with pytest.raises(KeyError):
        g1[Value(1.0)]


def test_zero_base_edge_semantics():
    assert V.pow(V.leaf(0.0, "a"), 0).local_grads == (0.0,)  # torch and JAX: 0, not 0 * 0**-1 = nan
    a = V.leaf(0.0, "a")
    assert V.backward(V.pow(a, 0))["a"] == 0.0
    x, y = V.leaf(0.0, "x"), V.leaf(2.0, "y")
    z = x ** y
    assert z.local_grads == (0.0, 0.0)  # d/dy at x = 0 is 0 (log taken as log 1), as JAX and torch
    assert dict(z.backward()) == {"x": 0.0, "y": 0.0}
    y0 = V.leaf(0.0, "y")
    assert (x ** y0).local_grads == (0.0, 0.0) and dict((x ** y0).backward()) == {"x": 0.0, "y": 0.0}
    assert V.relu(V.leaf(0.0, "r")).local_grads == (0.0,)
