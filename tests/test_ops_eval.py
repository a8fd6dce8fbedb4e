"""Every op of the op table, evaluated by the interpreter, against the same computation in numpy.

Each case builds a one-op graph with gptir.tracing.Builder (so the op's type rule is exercised too),
runs it with gptir.interp.run and compares with numpy bit for bit (allclose for the transcendental
ones is not needed: both sides call the same numpy function on the same doubles).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gptir.interp import run
from gptir.ir import TensorType
from gptir.ops import OPS
from gptir.text import parse, print_graph
from gptir.tracing import Builder

RNG = np.random.default_rng(7)
A = RNG.normal(size=(2, 3))
B = RNG.normal(size=(2, 3))
POS = np.abs(A) + 0.1
I = RNG.integers(-5, 5, size=(2, 3))
J = RNG.integers(-5, 5, size=(2, 3))
M = RNG.normal(size=(3, 4))
IDX = np.array([[0, 2], [1, 1]])


def one_op(op: str, args: list[np.ndarray], attrs: dict[str, Any] | None = None) -> np.ndarray:
    """Run ``op`` on ``args`` through a traced graph and the interpreter (and the text format)."""
    b = Builder(op)
    ins = [b.input(f"a{i}", TensorType.of(np.asarray(a))) for i, a in enumerate(args)]
    out = b.emit(op, ins, attrs or {})
    g = b.finish({"out": out})
    g2 = parse(print_graph(g))  # every op also survives the text format, bit for bit
    assert g2.same_as(g)
    g = g2
    return run(g, {f"a{i}": a for i, a in enumerate(args)})["out"]


CASES: dict[str, list[tuple[list[np.ndarray], dict[str, Any], Callable[..., np.ndarray]]]] = {
    "add": [([A, B], {}, np.add), ([I, J], {}, np.add)],
    "sub": [([A, B], {}, np.subtract), ([I, J], {}, np.subtract)],
    "mul": [([A, B], {}, np.multiply), ([I, J], {}, np.multiply)],
    "div": [([A, B], {}, np.divide)],
    "pow": [([POS, B], {}, np.power)],
    "maximum": [([A, B], {}, np.maximum), ([I, J], {}, np.maximum)],
    "neg": [([A], {}, np.negative), ([I], {}, np.negative)],
    "exp": [([A], {}, np.exp)],
    "log": [([POS], {}, np.log)],
    "relu": [([A], {}, lambda a: np.maximum(a, 0.0)), ([I], {}, lambda a: np.maximum(a, 0))],
    "minimum": [([A, B], {}, np.minimum), ([I, J], {}, np.minimum)],
    "tanh": [([A], {}, np.tanh)],
    "sigmoid": [([A], {}, lambda a: 1.0 / (1.0 + np.exp(-a)))],
    "sqrt": [([POS], {}, np.sqrt)],
    "abs": [([A], {}, np.abs), ([I], {}, np.abs)],
    "sin": [([A], {}, np.sin)],
    "cos": [([A], {}, np.cos)],
    "gt": [([A, B], {}, np.greater), ([I, J], {}, np.greater)],
    "ge": [([A, B], {}, np.greater_equal), ([I, J], {}, np.greater_equal), ([A, A], {}, np.greater_equal)],
    "lt": [([A, B], {}, np.less), ([I, J], {}, np.less)],
    "le": [([A, B], {}, np.less_equal), ([I, J], {}, np.less_equal), ([A, A], {}, np.less_equal)],
    "ne": [([I, J], {}, np.not_equal), ([A, A], {}, np.not_equal), ([I > 0, J > 0], {}, np.not_equal)],
    "eq": [([I, J], {}, np.equal), ([A, A], {}, np.equal), ([I > 0, J > 0], {}, np.equal)],
    "where": [([A > B, A, B], {}, np.where), ([I > 0, I, J], {}, np.where)],
    "cast": [([A], {"dtype": "i64"}, lambda a: a.astype(np.int64)),
             ([I], {"dtype": "f64"}, lambda a: a.astype(np.float64)),
             ([I], {"dtype": "bool"}, lambda a: a.astype(bool))],
    "stop_gradient": [([A], {}, lambda a: a)],
    "sum": [([A], {"axes": (1,), "keepdims": False}, lambda a: a.sum(axis=1)),
            ([A], {"axes": (0, 1), "keepdims": True}, lambda a: a.sum(axis=(0, 1), keepdims=True)),
            ([I], {"axes": (), "keepdims": False}, lambda a: a)],
    "max": [([A], {"axes": (0,), "keepdims": True}, lambda a: a.max(axis=0, keepdims=True)),
            ([I], {"axes": (0, 1), "keepdims": False}, lambda a: np.asarray(a.max()))],
    "min": [([A], {"axes": (1,), "keepdims": False}, lambda a: a.min(axis=1)),
            ([I], {"axes": (0, 1), "keepdims": True}, lambda a: a.min(axis=(0, 1), keepdims=True))],
    "argmax": [([A], {"axis": 1}, lambda a: a.argmax(axis=1)), ([I], {"axis": 0}, lambda a: a.argmax(axis=0)),
               ([A[0]], {"axis": 0}, lambda a: np.asarray(a.argmax())),
               ([np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])], {"axis": 1}, lambda a: np.array([1, 0]))],
    "matmul": [([A, M], {}, np.matmul), ([A[0], M], {}, np.matmul), ([M, M[0]], {}, np.matmul),
               ([M[:, 0], M[:, 1]], {}, lambda a, b: np.asarray(a @ b)),
               ([np.stack([A, B]), np.stack([M, M])], {}, np.matmul)],
    "reshape": [([A], {"shape": (3, 2)}, lambda a: a.reshape(3, 2)), ([A], {"shape": (6,)}, lambda a: a.reshape(6))],
    "transpose": [([A], {"perm": (1, 0)}, lambda a: a.T)],
    "broadcast": [([A[0]], {"shape": (4, 3)}, lambda a: np.broadcast_to(a, (4, 3))),
                  ([A[:1]], {"shape": (5, 3)}, lambda a: np.broadcast_to(a, (5, 3)))],
    "slice": [([A], {"start": (0, 1), "stop": (2, 3)}, lambda a: a[0:2, 1:3]),
              ([M[0]], {"start": (1,), "stop": (3,)}, lambda a: a[1:3]),
              ([M], {"start": (0, 3), "stop": (3, -1), "step": (2, -1)}, lambda a: a[::2, ::-1]),
              ([M], {"start": (2, 3), "stop": (0, 0), "step": (-1, -2)}, lambda a: a[2:0:-1, 3:0:-2]),
              ([M], {"start": (1, 0), "stop": (1, 4), "step": (1, 3)}, lambda a: a[1:1, ::3]),
              ([M[0]], {"start": (1,), "stop": (4,), "step": (1,)}, lambda a: a[1:])],
    "concat": [([A, B], {"axis": 0}, lambda a, b: np.concatenate([a, b], 0)),
               ([A, B, A], {"axis": 1}, lambda a, b, c: np.concatenate([a, b, c], 1))],
    "gather": [([M, IDX], {}, lambda t, i: t[i]), ([M[0], IDX[0]], {}, lambda t, i: t[i])],
    "scatter_add": [([RNG.normal(size=(2, 2, 5)), IDX], {"size": 4}, None)],
}


def _scatter_ref(upd: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size,) + upd.shape[idx.ndim:])
    for pos in np.ndindex(*idx.shape):
        out[idx[pos]] += upd[pos]
    return out


def test_every_op_has_a_case() -> None:
    ops = {name for name, d in OPS.items() if d.kind != "source"}
    assert ops == set(CASES), f"ops without an evaluation test: {sorted(ops - set(CASES))}"


@pytest.mark.parametrize("op,case", [(op, i) for op, cases in CASES.items() for i in range(len(cases))])
def test_op_matches_numpy(op: str, case: int) -> None:
    args, attrs, ref = CASES[op][case]
    got = one_op(op, args, attrs)
    want = _scatter_ref(*args, attrs["size"]) if op == "scatter_add" else np.asarray(ref(*args))
    assert got.dtype == want.dtype and got.shape == want.shape
    if op == "scatter_add":  # summation order may differ from the reference loop
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    else:
        np.testing.assert_array_equal(got, want)


def test_const_evaluates_to_its_value() -> None:
    b = Builder("c")
    c = b.const(np.array([1.5, -0.0, np.inf]))
    got = run(b.finish({"out": c}))["out"]
    assert got.tobytes() == np.array([1.5, -0.0, np.inf]).tobytes()


def test_ieee_semantics_not_errors() -> None:
    """log(0) is -inf, 0/0 is nan: the interpreter follows IEEE, it does not raise."""
    assert one_op("log", [np.array([0.0, -1.0])]).tolist()[0] == -np.inf
    assert np.isnan(one_op("div", [np.array([0.0]), np.array([0.0])])[0])


floats = hnp.arrays(np.float64, st.integers(1, 4), elements=st.floats(allow_nan=True, allow_infinity=True, width=64))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum", "gt", "ge", "lt", "le", "eq", "ne"]),
       st.data())
def test_binary_ops_on_edge_values(op: str, data: st.DataObject) -> None:
    a = data.draw(floats)
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=st.floats(width=64)))
    ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "maximum": np.maximum,
           "minimum": np.minimum, "gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal,
           "eq": np.equal, "ne": np.not_equal}[op]
    with np.errstate(all="ignore"):
        want = ref(a, b)
    got = one_op(op, [a, b])
    assert got.tobytes() == want.tobytes() or (np.isnan(got) == np.isnan(want)).all() and \
        np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["tanh", "sigmoid", "sqrt", "abs", "sin", "cos"]), st.data())
def test_unary_ops_on_edge_values(op: str, data: st.DataObject) -> None:
    a = data.draw(floats)
    ref = {"tanh": np.tanh, "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "sqrt": np.sqrt, "abs": np.abs,
           "sin": np.sin, "cos": np.cos}[op]
    with np.errstate(all="ignore"):
        want = ref(a)
    got = one_op(op, [a])
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(-7, 7) | st.none(), st.integers(-7, 7) | st.none(),
       st.sampled_from([None, 1, 2, 3, -1, -2, -3]))
def test_strided_slices_match_numpy(n: int, s: int | None, e: int | None, k: int | None) -> None:
    """Every slice numpy can write, normalised by slice.indices as the tracer does."""
    x = np.arange(float(n))
    start, stop, step = slice(s, e, k).indices(n)
    stop = max(start, stop) if step > 0 else min(start, stop)
    got = one_op("slice", [x], {"start": (start,), "stop": (stop,), "step": (step,)})
    np.testing.assert_array_equal(got, x[s:e:k])


def test_slice_files_without_steps_still_parse() -> None:
    g = parse("graph g {\n  in %x : f64[5]\n  %s = slice[start=(1,), stop=(4,)] %x : f64[3]\n  output out = %s\n}\n")
    assert "step" not in g["s"].attrs
    assert "step" not in print_graph(g)
    np.testing.assert_array_equal(run(g, {"x": np.arange(5.0)})["out"], [1.0, 2.0, 3.0])
    g2 = parse(print_graph(g).replace("stop=(4,)", "stop=(-1,), step=(-2,)").replace("start=(1,)", "start=(4,)"))
    np.testing.assert_array_equal(run(g2, {"x": np.arange(5.0)})["out"], [4.0, 2.0, 0.0])
    assert parse(print_graph(g2)).same_as(g2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, "f64-large"])
def test_scatter_add_sums_each_row_in_index_order(dtype: Any, monkeypatch: Any) -> None:
    """scatter_add is np.add.at's arithmetic exactly (each output row's sum in index order), whichever way it
    is computed (f64 goes through np.bincount): with heavy duplicates, signed zeros, infinities and NaN."""
    via_bincount = dtype == np.float64
    if dtype == "f64-large":  # past BINCOUNT_MAX_ELEMENTS: np.add.at itself (no index array as big as the updates)
        import gptir.ops

        monkeypatch.setattr(gptir.ops, "BINCOUNT_MAX_ELEMENTS", 100)
        dtype = np.float64
    calls = []
    bincount = np.bincount
    monkeypatch.setattr(np, "bincount", lambda *a, **k: calls.append(1) or bincount(*a, **k))
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 6, (40, 3))
    idx[:, 0] = 2  # one row gets a third of everything
    upd = (rng.standard_normal((40, 3, 4)) * 1e3).astype(dtype)
    if dtype != np.int64:
        upd[0, 1] = [-0.0, np.inf, -np.inf, np.nan]
        upd[5, 2, 0] = -np.inf
    want = np.zeros((6, 4), dtype)
    np.add.at(want, idx, upd)
    got = OPS["scatter_add"].evaluate([upd, idx], {"size": 6})
    assert got.dtype == want.dtype and got.shape == (6, 4)
    assert got.tobytes() == want.tobytes()
    assert np.isnan(got).any() if dtype != np.int64 else got.any()
    assert len(calls) == (1 if via_bincount else 0)
