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
