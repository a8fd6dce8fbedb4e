"""Gradient checks: the autodiff pass against central finite differences.

Every differentiable op is checked on hypothesis-generated shapes and values (each case reduces the op's
result with a random weight tensor, so the cotangent is not uniform and a transposed or mis-summed rule
shows), then random composite graphs, second derivatives and a Hessian-vector product.
Kinks (relu at 0, ties in maximum/max) are filtered out: the derivative is not defined there.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gptir
from gptir import trace
from gptir.autodiff import grad, grad_output_name
from gptir.ir import Graph
from gptir.tracing import Builder

H = 1e-6
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def weighted(fn: Callable) -> Callable:
    """fn's result reduced to a scalar by a fixed random weighting (seeded by the result's shape)."""

    def wrapped(*args):
        y = fn(*args)
        w = np.random.default_rng(len(y.shape) * 7 + int(np.prod(y.shape))).normal(size=y.shape)
        return (y * w).sum() if y.shape else y * float(w)

    wrapped.__signature__ = inspect.signature(fn)  # trace names inputs after fn's parameters
    wrapped.__name__ = fn.__name__
    return wrapped


def fd_grad(g: Graph, inputs: dict[str, np.ndarray], name: str, h: float = H) -> np.ndarray:
    """Central differences of g's output with respect to input ``name``, entry by entry."""
    out = next(iter(g.outputs))
    x = inputs[name]
    result = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        fp = gptir.run(g, {**inputs, name: plus})[out]
        fm = gptir.run(g, {**inputs, name: minus})[out]
        result[idx] = (fp - fm) / (2 * h)
    return result


def check(fn: Callable, *args: np.ndarray, rtol: float = 1e-6) -> Graph:
    """Trace weighted(fn) on ``args`` (data inputs), differentiate with respect to every f64 input and
    compare with central differences. Returns the forward graph (for op coverage)."""
    g = trace(weighted(fn), *args)
    names = [n.name for n in g.inputs]
    inputs = dict(zip(names, (np.asarray(a, dtype=np.float64) for a in args)))
    dg = grad(g, names)
    gptir.verify(dg)
    values = gptir.run(dg, inputs)
    assert values["out"] == pytest.approx(float(gptir.run(g, inputs)["out"]), rel=1e-12, abs=1e-12)
    for name in names:
        ad = values[grad_output_name(name)]
        fd = fd_grad(g, inputs, name)
        assert ad.shape == inputs[name].shape
        scale = 1.0 + float(np.max(np.abs(fd), initial=0.0))
        np.testing.assert_allclose(ad, fd, rtol=rtol, atol=rtol * scale, err_msg=f"d/d{name} of {fn.__name__}")
    return g


# -- strategies -------------------------------------------------------------------------------------


def shapes(min_rank: int = 0, max_rank: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(1, 3), min_size=min_rank, max_size=max_rank).map(tuple)


def arrays(shape: tuple[int, ...], lo: float = -2.0, hi: float = 2.0) -> st.SearchStrategy[np.ndarray]:
    n = int(np.prod(shape))
    return st.lists(st.floats(lo, hi, allow_nan=False, allow_infinity=False), min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.float64).reshape(shape))


@st.composite
def broadcast_pair(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together (some axes 1 or missing on either side)."""
    full = draw(shapes(0, 3))
    def part(s):
        drop = draw(st.integers(0, len(s)))
        return tuple(1 if draw(st.booleans()) else d for d in s[drop:])
    return part(full), part(full)


# -- per-op checks ----------------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, -2.0, 2.0),
    "exp": (gptir.exp, -2.0, 2.0),
    "log": (gptir.log, 0.2, 3.0),
    "relu": (gptir.relu, -2.0, 2.0),
    "tanh": (gptir.tanh, -2.0, 2.0),
    "sigmoid": (gptir.sigmoid, -3.0, 3.0),
    "sqrt": (gptir.sqrt, 0.2, 3.0),
    "abs": (abs, -2.0, 2.0),
    "sin": (gptir.sin, -3.0, 3.0),
    "cos": (gptir.cos, -3.0, 3.0),
}


@SETTINGS
@given(st.sampled_from(sorted(UNARY)), st.data())
def test_unary(op, data):
    fn, lo, hi = UNARY[op]
    x = data.draw(arrays(data.draw(shapes()), lo, hi))
    assume(op not in ("relu", "abs") or np.all(np.abs(x) > 1e-3))
    check(fn, x)


BINARY = {
    "add": (lambda a, b: a + b, (-2, 2), (-2, 2)),
    "sub": (lambda a, b: a - b, (-2, 2), (-2, 2)),
    "mul": (lambda a, b: a * b, (-2, 2), (-2, 2)),
    "div": (lambda a, b: a / b, (-2, 2), (0.3, 2)),
    "pow": (lambda a, b: a ** b, (0.3, 2), (-2, 2)),
    "maximum": (gptir.maximum, (-2, 2), (-2, 2)),
    "minimum": (gptir.minimum, (-2, 2), (-2, 2)),
}


@SETTINGS
@given(st.sampled_from(sorted(BINARY)), broadcast_pair(), st.data())
def test_binary_with_broadcasting(op, pair, data):
    fn, ra, rb = BINARY[op]
    a = data.draw(arrays(pair[0], *ra))
    b = data.draw(arrays(pair[1], *rb))
    if op == "div" and data.draw(st.booleans()):
        b = -b
    if op in ("maximum", "minimum"):
        assume(np.all(np.abs(np.subtract(*np.broadcast_arrays(a, b))) > 1e-3))
    check(fn, a, b)


@SETTINGS
@given(st.sampled_from([1.0, 2.0, 3.0, -0.5, 0.5, -1.0]), st.data())
def test_pow_constant_exponent(k, data):
    x = data.draw(arrays(data.draw(shapes()), 0.3, 2.0))
    g = check(lambda x: x ** k, x)
    backward = [n for n in grad(g, ["x"]) if n.backward]
    assert "log" not in {n.op for n in backward}  # a constant exponent gets no gradient work


@SETTINGS
@given(st.data())
def test_where(data):
    shape = data.draw(shapes())
    a, b = data.draw(arrays(shape)), data.draw(arrays(shape))
    cond = np.array(data.draw(st.lists(st.booleans(), min_size=a.size, max_size=a.size)), bool).reshape(shape)
    check(lambda a, b: gptir.where(cond, a, b * b), a, b)


@SETTINGS
@given(st.data())
def test_sum(data):
    x = data.draw(arrays(data.draw(shapes(1))))
    axes = data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True).map(sorted))
    keep = data.draw(st.booleans())
    check(lambda x: x.sum(axis=axes or None, keepdims=keep), x)


@SETTINGS
@given(st.data())
def test_max_reduction(data):
    shape = data.draw(shapes(1))
    perm = np.array(data.draw(st.permutations(range(int(np.prod(shape))))), dtype=np.float64)
    x = (perm * 0.37 - 1.0).reshape(shape)  # distinct entries: no ties, no kinks
    axes = data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True).map(sorted))
    keep = data.draw(st.booleans())
    check(lambda x: x.max(axis=axes or None, keepdims=keep), x)


@SETTINGS
@given(st.data())
def test_min_reduction(data):
    shape = data.draw(shapes(1))
    perm = np.array(data.draw(st.permutations(range(int(np.prod(shape))))), dtype=np.float64)
    x = (perm * 0.37 - 1.0).reshape(shape)  # distinct entries: no ties, no kinks
    axes = data.draw(st.lists(st.integers(0, x.ndim - 1), unique=True).map(sorted))
    keep = data.draw(st.booleans())
    check(lambda x: x.min(axis=axes or None, keepdims=keep), x)


def test_min_ties_split_the_gradient():
    g = trace(lambda x: x.min(), "f64[4]")
    values = gptir.run(grad(g, ["x"]), {"x": np.array([1.0, 3.0, 1.0, 2.0])})
    np.testing.assert_array_equal(values["grad.x"], [0.5, 0.0, 0.5, 0.0])


@pytest.mark.parametrize("fn", [gptir.maximum, gptir.minimum])
def test_elementwise_ties_split_evenly(fn):
    """JAX and torch: at a == b each operand gets half the cotangent; elsewhere the winner all of it."""
    g = trace(lambda a, b: (fn(a, b) * np.array([1.0, 2.0, 4.0])).sum(), "f64[3]", "f64[3]")
    v = gptir.run(grad(g, ["a", "b"]), {"a": np.array([1.0, 5.0, -2.0]), "b": np.array([1.0, 0.0, 3.0])})
    a_wins = [0.5, 2.0, 0.0] if fn is gptir.maximum else [0.5, 0.0, 4.0]
    np.testing.assert_array_equal(v["grad.a"], a_wins)
    np.testing.assert_array_equal(v["grad.b"], np.array([1.0, 2.0, 4.0]) - a_wins)


def test_pow_at_a_zero_base_follows_jax_and_torch():
    """d(x**y)/dx is 0 where y == 0 (even at x == 0); d(x**y)/dy is 0 where x == 0 (log taken as log 1)."""
    g = trace(lambda x, y: (x ** y).sum(), "f64[3]", "f64[3]")
    x, y = np.array([0.0, 0.0, 2.0]), np.array([0.0, 2.0, 3.0])
    v = gptir.run(grad(g, ["x", "y"]), {"x": x, "y": y})
    np.testing.assert_array_equal(v["grad.x"], [0.0, 0.0, 12.0])
    np.testing.assert_array_equal(v["grad.y"], [0.0, 0.0, 8.0 * np.log(2.0)])
    g0 = trace(lambda x: (x ** 0.0).sum(), "f64[2]")
    np.testing.assert_array_equal(gptir.run(grad(g0, ["x"]), {"x": np.zeros(2)})["grad.x"], [0.0, 0.0])


def test_relu_and_abs_have_gradient_zero_at_zero():
    for fn in (gptir.relu, abs):
        g = trace(lambda x: fn(x).sum(), "f64[3]")
        v = gptir.run(grad(g, ["x"]), {"x": np.array([-1.0, 0.0, 2.0])})
        np.testing.assert_array_equal(v["grad.x"], [0.0 if fn is gptir.relu else -1.0, 0.0, 1.0])


def test_max_ties_split_the_gradient():
    g = trace(lambda x: x.max(), "f64[4]")
    values = gptir.run(grad(g, ["x"]), {"x": np.array([1.0, 3.0, 3.0, 3.0])})
    np.testing.assert_array_equal(values["grad.x"], [0.0, 1 / 3, 1 / 3, 1 / 3])


MATMUL_SHAPES = [
    ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,)), ((2, 3), (3, 4)),
    ((4, 2, 3), (3, 2)), ((2, 2, 3), (2, 3, 4)), ((2, 1, 2, 3), (2, 1, 3, 2)), ((1, 3), (3, 1)),
]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(MATMUL_SHAPES), st.data())
def test_matmul_all_rank_cases(shapes_, data):
    a, b = data.draw(arrays(shapes_[0])), data.draw(arrays(shapes_[1]))
    check(lambda a, b: gptir.matmul(a, b), a, b)


def test_matmul_through_transpose_of_param_shares_the_transpose():
    """x @ w.T: da is g @ w (the existing transpose is undone, not stacked)."""
    g = trace(lambda x, w: (x @ w.T).sum(), "f64[2,3]", "f64[4,3]")
    ops = [n.op for n in grad(g, ["x"]) if n.backward]
    assert ops.count("transpose") == 0 and ops.count("matmul") == 1


@SETTINGS
@given(st.data())
def test_movement(data):
    x = data.draw(arrays(data.draw(shapes(1, 3))))
    perm = data.draw(st.permutations(range(x.ndim)))
    check(lambda x: gptir.transpose(x * x, perm), x)
    check(lambda x: gptir.reshape(x, (x.type.size,)) * 2.0, x)
    check(lambda x: gptir.reshape(x, (1,) + x.shape + (1,)), x)
    target = data.draw(st.lists(st.integers(1, 3), max_size=2).map(tuple)) + tuple(
        data.draw(st.integers(1, 3)) if d == 1 else d for d in x.shape)
    check(lambda x: gptir.broadcast_to(x, target), x)


@SETTINGS
@given(st.data())
def test_slice(data):
    x = data.draw(arrays(data.draw(shapes(1, 3))))
    start, stop = [], []
    for d in x.shape:
        s = data.draw(st.integers(0, d - 1))
        start.append(s)
        stop.append(data.draw(st.integers(s + 1, d)))
    check(lambda x: _slice(x, start, stop), x)


def _slice(x, start, stop, step=None):
    from gptir.tracing import slice_

    return slice_(x, start, stop, step) * 1.5


@SETTINGS
@given(st.data())
def test_strided_slice(data):
    """Steps of any sign and size, through the tracer's numpy indexing (x[s:e:k, ...])."""
    x = data.draw(arrays(data.draw(shapes(1, 3).filter(lambda s: max(s) > 1))))
    index = tuple(slice(data.draw(st.none() | st.integers(-3, 3)), data.draw(st.none() | st.integers(-3, 3)),
                        data.draw(st.sampled_from([None, 1, 2, -1, -2, 3]))) for _ in x.shape)
    assume(x[index].size > 0)
    check(lambda x: x[index] * 1.5, x)
    np.testing.assert_array_equal(gptir.run(trace(lambda x: x[index], x), {"x": x})["out"], x[index])


@SETTINGS
@given(st.data())
def test_concat(data):
    rank = data.draw(st.integers(1, 3))
    axis = data.draw(st.integers(0, rank - 1))
    base = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    parts = []
    for _ in range(data.draw(st.integers(1, 3))):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 3))
        parts.append(data.draw(arrays(tuple(shape))))
    fn = {1: lambda a: gptir.concat([a, a], axis), 2: lambda a, b: gptir.concat([a, b], axis),
          3: lambda a, b, c: gptir.concat([a, b, c], axis)}[len(parts)]
    check(fn, *parts)


@SETTINGS
@given(st.data())
def test_gather_and_scatter_add(data):
    rows, width = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    idx_shape = data.draw(shapes(1, 2))
    idx = np.array(data.draw(st.lists(st.integers(0, rows - 1), min_size=int(np.prod(idx_shape)),
                                      max_size=int(np.prod(idx_shape)))), np.int64).reshape(idx_shape)
    table = data.draw(arrays((rows, width)))
    check(lambda t: gptir.gather(t, idx), table)
    updates = data.draw(arrays(idx_shape + (width,)))
    check(lambda u: gptir.scatter_add(u, _const(u, idx), rows), updates)


def _const(like, value):
    return like.builder.const(value)


# -- coverage: every differentiable op has a rule and appears in a gradient check above ---------------

FIXED_CASES = [
    (UNARY["neg"][0], np.array([1.0, -2.0])), (UNARY["exp"][0], np.array([0.5])), (UNARY["log"][0], np.array([1.5])),
    (UNARY["relu"][0], np.array([1.0, -2.0])),
    *[(fn, np.array([[0.5, 1.2]]), np.array([1.1])) for fn, _, _ in BINARY.values()],
    (lambda a, b: gptir.where(np.array([True, False]), a, b), np.array([1.0, 2.0]), np.array([3.0, 4.0])),
    (lambda x: x.max(axis=1), np.array([[1.0, 2.0], [4.0, 3.0]])),
    (lambda a, b: a @ b, np.ones((2, 3)), np.ones((3, 2)) * 0.5),
    (lambda x: _slice(x, (0, 1), (2, 2)), np.arange(4.0).reshape(2, 2)),
    (lambda x: _slice(x, (2, 0), (-1, 3), (-2, 2)), np.arange(12.0).reshape(3, 4)),
    (UNARY["tanh"][0], np.array([0.3, -1.0])), (UNARY["sigmoid"][0], np.array([0.3, -1.0])),
    (UNARY["sqrt"][0], np.array([0.3, 2.0])), (UNARY["abs"][0], np.array([0.3, -1.0])),
    (UNARY["sin"][0], np.array([0.3, -1.0])), (UNARY["cos"][0], np.array([0.3, -1.0])),
    (lambda x: x.min(axis=0), np.array([[1.0, 2.0], [4.0, 0.5]])),
    (lambda a, b: gptir.concat([a, b], 1), np.ones((2, 1)), np.zeros((2, 2))),
    (lambda t: gptir.gather(t, np.array([1, 1, 0], np.int64)), np.arange(6.0).reshape(3, 2)),
    (lambda u: gptir.scatter_add(u, _const(u, np.array([2, 0], np.int64)), 3), np.arange(4.0).reshape(2, 2)),
    (lambda x: gptir.transpose(gptir.reshape(x, (2, 2)), (1, 0)), np.arange(4.0)),
]


def test_every_differentiable_op_has_a_rule_and_a_check():
    checked: set[str] = set()
    for fn, *args in FIXED_CASES:
        checked |= {n.op for n in check(fn, *args)}
    for name, op in gptir.OPS.items():
        if op.nondiff is not None:
            assert op.grad is None, f"{name} is marked nondiff but has a rule"
            continue
        assert op.grad is not None, f"differentiable op {name} has no gradient rule"
        assert name in checked, f"differentiable op {name} has no gradient check"


# -- composite graphs -------------------------------------------------------------------------------


@st.composite
def programs(draw):
    """A random straight-line program over x:[3,4], y:[4], w:[4,2]: smooth ops, broadcasting, fan-out
    (operands are drawn from everything computed so far), reductions, matmul and gather."""
    steps = draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 99), st.integers(0, 99)),
                          min_size=2, max_size=8))
    idx = np.array(draw(st.lists(st.integers(0, 2), min_size=2, max_size=4)), np.int64)
    return steps, idx


def run_program(steps, idx, x, y, w):
    pool = [x, y, w]
    for kind, i, j in steps:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        if kind == 0 and _broadcastable(a, b):
            v = a * b
        elif kind == 1 and _broadcastable(a, b):
            v = a - b / (1.0 + b * b)
        elif kind == 2:
            v = gptir.exp(-(a * a))
        elif kind == 3:
            v = gptir.log(1.0 + a * a)
        elif kind == 4 and a.ndim >= 1:
            v = a.sum(axis=-1, keepdims=bool(j % 2))
        elif kind == 5 and a.ndim >= 1 and a.shape[-1] == 4:
            v = a @ w
        elif kind == 6 and a.ndim >= 1 and a.shape[0] == 3:
            v = gptir.gather(a, idx)
        elif kind == 7 and a.ndim == 2:
            v = a.T * 0.5
        else:
            v = a * 0.9 + 0.1
        pool.append(v)
    # fan-out: every value computed contributes to the loss
    return sum_all(pool[3:] or pool)


def sum_all(values):
    total = values[0].sum()
    for v in values[1:]:
        total = total + v.sum()
    return total


def _broadcastable(a, b) -> bool:
    try:
        np.broadcast_shapes(a.shape, b.shape)
        return True
    except ValueError:
        return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.data())
def test_random_composite_graphs(program, data):
    steps, idx = program
    x, y, w = data.draw(arrays((3, 4), -1, 1)), data.draw(arrays((4,), -1, 1)), data.draw(arrays((4, 2), -1, 1))

    def prog(x, y, w):
        return run_program(steps, idx, x, y, w)

    check(prog, x, y, w)


# -- second derivatives and a Hessian-vector product ------------------------------------------------

SECOND = {
    "x**3": (lambda x: x ** 3.0, lambda x: 6 * x),
    "exp(x)*x": (lambda x: gptir.exp(x) * x, lambda x: np.exp(x) * (x + 2)),
    "log(x)*x": (lambda x: gptir.log(x) * x, lambda x: 1 / x),
    "x/(1+x*x)": (lambda x: x / (1.0 + x * x), lambda x: 2 * x * (x * x - 3) / (1 + x * x) ** 3),
    "sum(exp(x*v))": (lambda x: gptir.exp(x * np.array([0.5, -1.0, 2.0])).sum(),
                      lambda x: float(np.sum(np.array([0.25, 1.0, 4.0]) * np.exp(x * np.array([0.5, -1.0, 2.0]))))),
}


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(sorted(SECOND)), st.floats(0.3, 2.0))
def test_second_derivatives(name, x0):
    fn, exact = SECOND[name]
    g = trace(fn, "f64[]")
    g1 = grad(g, ["x"])
    g2 = grad(g1, ["x"], of="grad.x")  # adds grad.grad.x = d2/dx2; grad.x stays the first derivative
    gptir.verify(g2)
    out = gptir.run(g2, {"x": x0})
    d2 = float(out["grad.grad.x"])
    assert float(out["grad.x"]) == float(gptir.run(g1, {"x": x0})["grad.x"])
    first = lambda v: float(gptir.run(g1, {"x": v})["grad.x"])
    h = 1e-5
    fd = (first(x0 + h) - first(x0 - h)) / (2 * h)
    assert d2 == pytest.approx(fd, rel=1e-6, abs=1e-6)
    if exact is not None:
        assert d2 == pytest.approx(exact(x0), rel=1e-9, abs=1e-12)
    assert sum(n.backward for n in g2) > sum(n.backward for n in g1)


def mlp_loss(x, w1, w2):
    h = gptir.exp(-((x @ w1) * (x @ w1)))  # smooth activation: no kinks for finite differences
    out = h @ w2
    return (out * out).sum() * 0.5 + (w1 * w1).sum() * 0.01


def test_hessian_vector_product_of_mlp_loss():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 3))
    w1, w2 = rng.normal(size=(3, 4)) * 0.5, rng.normal(size=(4, 2)) * 0.5
    v1, v2 = rng.normal(size=w1.shape), rng.normal(size=w2.shape)
    g = trace(lambda w1, w2: mlp_loss(x, w1, w2), w1, w2)
    g1 = grad(g, ["w1", "w2"], of="out")
    b = Builder(g1.name, base=g1)
    dot = (b.value(g1.outputs["grad.w1"]) * v1).sum() + (b.value(g1.outputs["grad.w2"]) * v2).sum()
    hv_graph = grad(b.finish({"gv": dot}), ["w1", "w2"], of="gv")
    gptir.verify(hv_graph)
    hv = gptir.run(hv_graph, {"w1": w1, "w2": w2})
    h = 1e-5
    plus = gptir.run(g1, {"w1": w1 + h * v1, "w2": w2 + h * v2})
    minus = gptir.run(g1, {"w1": w1 - h * v1, "w2": w2 - h * v2})
    for name in ("w1", "w2"):
        fd = (plus[f"grad.{name}"] - minus[f"grad.{name}"]) / (2 * h)
        np.testing.assert_allclose(hv[f"grad.{name}"], fd, rtol=1e-6, atol=1e-7)
        assert np.max(np.abs(fd)) > 1e-2  # a real, non-trivial curvature
