"""The tracer speaks numpy: operators, ufuncs and array functions on tracers, numpy methods and
indexing, batched matmul broadcasting, and the composites (softmax, layer_norm, ...). Each traced
program runs in the interpreter and is compared with the same code run by numpy on arrays."""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gptir
from gptir import GptirError
from gptir.autodiff import grad

RNG = np.random.default_rng(12)
X = RNG.normal(size=(3, 4))
Y = RNG.normal(size=(3, 4))
V = RNG.normal(size=(4,))


def same_as_numpy(fn: Callable[..., Any], *args: np.ndarray, exact: bool = True) -> np.ndarray:
    """Trace ``fn`` on ``args`` (data inputs), run it, and compare with ``fn`` on the arrays."""
    g = gptir.trace(fn, *args)
    got = gptir.run(g, {n.name: a for n, a in zip(g.inputs, args)})["out"]
    want = np.asarray(fn(*args))
    assert got.shape == want.shape and got.dtype == want.dtype, (got, want)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    return got


NUMPY_PROGRAMS: dict[str, Callable[..., Any]] = {
    "ufuncs": lambda x, y: np.exp(x) + np.tanh(y) * np.sqrt(np.abs(x)) - np.log(np.abs(y) + 1.0),
    "trig": lambda x, y: np.sin(x) * np.cos(y) + np.square(x) - np.negative(y) + np.reciprocal(x + 10.0),
    "minmax": lambda x, y: np.maximum(x, 0.0) + np.minimum(x, y) + np.clip(y, -0.5, 0.5),
    "where": lambda x, y: np.where(x > y, x, y) + np.where(x <= 0, 1.0, -1.0),
    "compare": lambda x, y: ((x >= y).astype(np.float64) + (x < 0).astype(float) + (x != y).astype("float64")
                             - (x == x).astype(np.float64) + (0.1 <= y).astype(np.float64)),
    "reductions": lambda x, y: np.sum(x, axis=1) + np.max(y, axis=-1) + np.min(x, axis=1) + np.mean(y, axis=1),
    "keepdims": lambda x, y: (x - np.max(x, axis=1, keepdims=True)) / np.sum(np.exp(y), axis=-1, keepdims=True),
    "ufunc_reduce": lambda x, y: np.add.reduce(x, axis=0) + np.maximum.reduce(y) + np.minimum.reduce(x, axis=0),
    "var": lambda x, y: np.var(x, axis=1) + x.var(axis=0).sum() + np.var(y),
    "methods": lambda x, y: x.sum(axis=0) + y.max(axis=0) + x.min(0) + y.mean(axis=0) + x.T.sum(1) + abs(y).sum(0),
    "reshape": lambda x, y: np.reshape(x, (4, 3)) @ y + x.reshape(2, 6).reshape(-1).reshape((3, 4)).T @ y,
    "transpose": lambda x, y: np.transpose(x) @ y + x.transpose(1, 0) @ y + x.transpose((1, 0)) @ y,
    "flatten": lambda x, y: x.flatten() * y.ravel() + np.ravel(x),
    "concat": lambda x, y: np.concatenate([x, y], axis=1).sum(0) + np.concatenate((x, y)).sum(1).sum(),
    "stack": lambda x, y: np.stack([x, y]).sum(0) + np.stack([x, y], axis=-1).sum(-1) + np.stack((x, y), 1)[:, 0],
    "matmul": lambda x, y: np.matmul(x, y.T) + x @ y.T + np.dot(x, y.T),
    "expand": lambda x, y: np.expand_dims(x, 0) + np.squeeze(np.expand_dims(y, -1), -1) + x[None].squeeze(0),
    "swap": lambda x, y: np.swapaxes(x, 0, 1) @ y,
    "reflected": lambda x, y: np.float64(2.0) * x + np.ones((3, 4)) - y / np.float64(3.0) + 2.0 ** y,
    "pow": lambda x, y: np.power(np.abs(x) + 1.0, y) + (np.abs(x) + 1.0) ** 2,
    "sumall": lambda x, y: np.sum(x) + np.max(y) + np.min(x) + np.mean(y) + x.sum() + np.zeros_like(x) + np.ones_like(y),
}


@pytest.mark.parametrize("name", sorted(NUMPY_PROGRAMS))
def test_numpy_program_traces_and_matches_numpy(name: str) -> None:
    same_as_numpy(NUMPY_PROGRAMS[name], X, Y)


def test_argmax_method_and_function() -> None:
    x = np.array([[1.0, 5.0, 5.0, 0.0], [7.0, 2.0, 7.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    for fn in (lambda x: x.argmax(axis=1), lambda x: np.argmax(x, axis=0), lambda x: x.argmax(),
               lambda x: np.argmax(x, axis=-1)):
        got = same_as_numpy(fn, x)
        assert got.dtype == np.int64
    g = gptir.trace(lambda x: np.argmax(x, axis=1), "f64[2,3]")
    assert [n.op for n in g if n.op != "input"] == ["argmax"]


BASIC_INDICES = [
    (1,), (-1,), (slice(None), 2), (Ellipsis, -1), (Ellipsis, None), (None, Ellipsis, 1), (1, Ellipsis),
    (slice(None, None, -1),), (slice(None, None, 2), slice(None, None, -3)), (slice(-1, 0, -1), slice(1, None)),
    (slice(5, -10, -2), None, slice(None, None, -1)), (2, slice(None, None, -1)), (slice(0, 0),), (None,),
    (slice(None), None, slice(3, 0, -2)),
]


@pytest.mark.parametrize("index", BASIC_INDICES, ids=str)
def test_basic_indexing_matches_numpy(index: Any) -> None:
    same_as_numpy(lambda x: x[index] * 1.0, X)


ARRAY_INDICES = [
    ([2, 0, 0],), (np.array([[0, 1], [2, -1]]),), (slice(None), [3, 0, -1]), (1, np.array([0, 3])),
    (np.array([1, 2]), 0), (np.array([1, 2]), slice(None, None, -1)), (slice(None), np.array([[0], [3]])),
    (Ellipsis, np.array([1, 1, 3])), (None, slice(None), [0, 2]),
]


@pytest.mark.parametrize("index", ARRAY_INDICES, ids=str)
def test_integer_array_indexing_matches_numpy(index: Any) -> None:
    same_as_numpy(lambda x: x[index] * 1.0, X)


def test_non_adjacent_advanced_indices_move_to_the_front_as_in_numpy() -> None:
    x = RNG.normal(size=(2, 3, 4))
    for index in [(0, slice(None), [1, 3]), ([1, 0], slice(None), 2), (1, [0, 2], slice(None)),
                  (slice(None), 1, np.array([[0, 1, 3]]))]:
        same_as_numpy(lambda x: x[index] * 1.0, x)


def test_traced_index_arrays_gather_along_any_axis() -> None:
    idx = np.array([[3, 0], [1, 1]], dtype=np.int64)
    g = gptir.trace(lambda x, i: x[:, i] + x[i[0, 0] * 0 + 1][i], X, idx)  # a traced index, and an int of one
    got = gptir.run(g, {"x": X, "i": idx})["out"]
    np.testing.assert_array_equal(got, X[:, idx] + X[1][idx])


def test_indexing_gradients_match_finite_differences() -> None:
    from test_gradcheck import check

    for fn in (lambda x: x[::-1, 1::2] * x[..., None, -1:0:-2].sum(), lambda x: x[:, [2, 0, 2]] * 2.0,
               lambda x: x[[1, 1], ::-1]):
        check(fn, X)


MATMUL_SHAPES = [((4,), (2, 4, 3)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (1, 4, 2)),
                 ((4,), (3, 2, 4, 1)), ((5, 3, 4), (4,)), ((2, 3), (3,)), ((3,), (3,)), ((2, 2, 3, 4), (4, 5))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_broadcasts_batch_dimensions_like_numpy(shapes: tuple) -> None:
    from test_gradcheck import check

    a, b = RNG.normal(size=shapes[0]), RNG.normal(size=shapes[1])
    same_as_numpy(lambda a, b: a @ b, a, b, exact=False)
    same_as_numpy(lambda a, b: np.matmul(a, b), a, b, exact=False)
    check(lambda a, b: a @ b, a, b)


def test_matmul_batch_mismatch_is_a_clear_error() -> None:
    with pytest.raises(GptirError, match="do not broadcast"):
        gptir.trace(lambda a, b: a @ b, "f64[2,3,4]", "f64[3,4,5]")


COMPOSITES: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "mean": (lambda x: gptir.mean(x, axis=1), lambda x: np.mean(x, axis=1)),
    "var": (lambda x: gptir.var(x, axis=0, keepdims=True), lambda x: np.var(x, axis=0, keepdims=True)),
    "softmax": (lambda x: gptir.softmax(x), lambda x: np.exp(x - x.max(-1, keepdims=True)) /
                np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)),
    "log_softmax": (lambda x: gptir.log_softmax(x, axis=0),
                    lambda x: (x - x.max(0, keepdims=True)) - np.log(np.exp(x - x.max(0, keepdims=True)).sum(0, keepdims=True))),
    "logsumexp": (lambda x: gptir.logsumexp(x, axis=1),
                  lambda x: (x.max(1, keepdims=True) + np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)))[:, 0]),
    "logsumexp_all": (lambda x: gptir.logsumexp(x, axis=None, keepdims=True),
                      lambda x: x.max(keepdims=True) + np.log(np.exp(x - x.max(keepdims=True)).sum(keepdims=True))),
    "layer_norm": (lambda x: gptir.layer_norm(x), lambda x: (x - x.mean(-1, keepdims=True)) * (
        x.var(-1, keepdims=True) + 1e-5) ** -0.5),
    "gelu": (lambda x: gptir.gelu(x), lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (
        x + 0.044715 * (x * x * x))))),
    "sigmoid": (lambda x: gptir.sigmoid(x), lambda x: 1.0 / (1.0 + np.exp(-x))),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composites_match_numpy_bit_for_bit_and_differentiate(name: str) -> None:
    from test_gradcheck import check

    traced, ref = COMPOSITES[name]
    g = gptir.trace(traced, X)
    np.testing.assert_array_equal(gptir.run(g, {"x": X})["out"], ref(X))
    check(traced, X)


def test_composite_values_against_known_numbers() -> None:
    x = np.array([0.0, math.log(3.0)])
    g = gptir.trace(lambda x: gptir.stack([gptir.softmax(x), gptir.log_softmax(x)]), x)
    np.testing.assert_allclose(gptir.run(g, {"x": x})["out"], [[0.25, 0.75], [math.log(0.25), math.log(0.75)]],
                               rtol=1e-15)
    g = gptir.trace(lambda x: gptir.logsumexp(x), x)
    assert float(gptir.run(g, {"x": x})["out"]) == pytest.approx(math.log(4.0), rel=1e-15)
    g = gptir.trace(lambda x: gptir.gelu(x), np.array([0.0, 1.0]))
    np.testing.assert_allclose(gptir.run(g, {"x": np.array([0.0, 1.0])})["out"], [0.0, 0.8411919906082768],
                               rtol=1e-15)  # GPT-2's gelu(1)
    g = gptir.trace(lambda x: gptir.layer_norm(x, np.array([2.0, 2.0]), np.array([1.0, 1.0]), eps=0.0),
                    np.array([1.0, 3.0]))
    np.testing.assert_allclose(gptir.run(g, {"x": np.array([1.0, 3.0])})["out"], [-1.0, 3.0], rtol=1e-15)


def test_nn_softmax_is_the_public_one_and_keeps_its_numerics() -> None:
    from gptir import nn

    assert gptir.softmax is nn.softmax
    g = gptir.trace(lambda x: gptir.softmax(x), "f64[2,3]")
    assert [n.op for n in g if n.op != "input"] == ["max", "stop_gradient", "broadcast", "sub", "exp", "sum",
                                                    "broadcast", "div"]


def test_tanh_mlp_written_numpy_style_gradients() -> None:
    """The README's example: a tanh MLP written with numpy calls only, differentiated."""
    from test_gradcheck import check

    def mlp(x, w1, w2):
        h = np.tanh(x @ w1)
        return np.mean(np.square(h @ w2 - 1.0))

    check(mlp, RNG.normal(size=(5, 3)), RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)))


# -- what the tracer cannot follow: one-line errors naming the model line ----------------------------


def _line_of(marker: str) -> int:
    import inspect

    src, start = inspect.getsourcelines(test_untraceable_code_names_the_model_line)
    return start + next(i for i, line in enumerate(src) if marker in line)


def test_untraceable_code_names_the_model_line() -> None:
    cases = [
        (lambda x: 1.0 if x > 0 else 0.0, "no concrete truth value", "x > 0 else"),  # marker: x > 0 else
        (lambda x: float(x), "float() of a traced value", "float(x)"),  # marker: float(x)
        (lambda x: int(x), "int() of a traced value", "int(x)"),  # marker: int(x)
        (lambda x: len(x), "len() of a scalar", "len(x)"),  # marker: len(x)
        (lambda x: np.arctan(x), "np.arctan is not supported", "np.arctan"),  # marker: np.arctan
        (lambda x: np.cumsum(x), "np.cumsum is not supported", "np.cumsum"),  # marker: np.cumsum
        (lambda x: np.asarray(x), "cannot become a concrete numpy array", "np.asarray"),  # marker: np.asarray
        (lambda x: np.exp(x, out=np.zeros(())), "not supported on traced values", "out=np"),  # marker: out=np
        (lambda x: x == x and x, "no concrete truth value", "x == x and"),  # marker: x == x and
    ]
    for fn, message, marker in cases:
        with pytest.raises(GptirError, match=re.escape(message)) as info:
            gptir.trace(fn, "f64[]")
        text = str(info.value)
        assert "\n" not in text
        assert text.startswith(f"tests/test_numpy_surface.py:{_line_of('marker: ' + marker)}:"), text


def test_indexing_errors_are_one_line() -> None:
    for index, message in [((0, 0, 0), "too many indices"), (5, "out of range"), ([0, 9], "out of range"),
                           ((Ellipsis, Ellipsis), "single ellipsis"), (np.array([True, False, True]), "boolean"),
                           (([0], [1]), "only one integer-array index"), ("a", "unsupported index")]:
        with pytest.raises(GptirError, match=message):
            gptir.trace(lambda x: x[index], "f64[3,4]")


def test_equality_is_elementwise_and_tracers_still_hash() -> None:
    seen = {}

    def f(x, y):
        eq = x == y
        assert eq.dtype == "bool" and (x != y).dtype == "bool"
        seen[x] = 1  # identity hash: usable as keys
        assert x in [x] and (x == None) is False and (x != "a") is True  # noqa: E711
        return gptir.where(eq, x, y)

    g = gptir.trace(f, "f64[2]", "f64[2]")
    assert [n.op for n in g if n.op not in ("input",)] == ["eq", "ne", "where"]
    out = gptir.run(g, {"x": np.array([1.0, 2.0]), "y": np.array([1.0, 3.0])})["out"]
    np.testing.assert_array_equal(out, [1.0, 3.0])


def test_less_than_is_its_own_op() -> None:
    g = gptir.trace(lambda x: ((x < 1.0).astype("f64") + (x <= 1.0).astype("f64") + (1.0 < x).astype("f64")), "f64[3]")
    assert {n.op for n in g} >= {"lt", "le", "gt"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.data())
def test_random_numpy_indexing(shape: list[int], data: st.DataObject) -> None:
    x = np.arange(float(np.prod(shape))).reshape(shape)
    items: list[Any] = []
    for d in shape:
        kind = data.draw(st.sampled_from(["int", "slice", "none", "all"]))
        if kind == "int":
            items.append(data.draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            items.append(slice(data.draw(st.none() | st.integers(-4, 4)), data.draw(st.none() | st.integers(-4, 4)),
                               data.draw(st.sampled_from([None, 1, 2, -1, -2]))))
        elif kind == "none":
            items.append(None)
            items.append(slice(None))
        else:
            items.append(Ellipsis if Ellipsis not in items else slice(None))
    index = tuple(items)
    same_as_numpy(lambda x: x[index] * 1.0, x)


def test_gradient_of_numpy_style_graph_reaches_every_input() -> None:
    g = gptir.trace(lambda x, y: np.sum(np.tanh(x) * np.maximum(y, 0.0)), X, Y)
    dg = grad(g, ["x", "y"])
    v = gptir.run(dg, {"x": X, "y": Y})
    np.testing.assert_allclose(v["grad.x"], (1 - np.tanh(X) ** 2) * np.maximum(Y, 0.0), rtol=1e-14)
    np.testing.assert_allclose(v["grad.y"], np.tanh(X) * (Y > 0), rtol=1e-14)


def test_readme_numpy_example_through_the_cli(tmp_path: Any) -> None:
    """The README's tour: examples/tanh_mlp.py traced, differentiated and run by the CLI, with the
    printed values checked against the same gradient written out by hand in numpy."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def cli(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "gptir.cli", *args], input=stdin, capture_output=True,
                              text=True, cwd=root, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ir = cli("trace", "examples/tanh_mlp.py:tanh_mlp", "--arg", "x=f64[2,3]",
             "--param", "w1=[[0.5,-0.2],[0.3,0.8],[-0.7,0.1]]", "--param", "w2=[1.0,-1.0]")
    assert "%tanh = tanh %matmul : f64[2,2]" in ir
    out = cli("exec", "-", "--input", "x=[[1,2,3],[0,-1,1]]", "--format", "json",
              stdin=cli("grad", "-", "--wrt", "w1,w2", stdin=ir))
    import json

    got = {k: v["value"] for k, v in json.loads(out)["outputs"].items()}
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    w1, w2 = np.array([[0.5, -0.2], [0.3, 0.8], [-0.7, 0.1]]), np.array([1.0, -1.0])
    h = np.tanh(x @ w1)
    dy = (h @ w2 - 1.0)  # d mean((y-1)^2) / dy with 2 rows: 2 (y-1) / 2
    assert got["out"] == pytest.approx(float(np.mean((h @ w2 - 1.0) ** 2)), rel=1e-15)
    np.testing.assert_allclose(got["grad.w2"], h.T @ dy, rtol=1e-14)
    np.testing.assert_allclose(got["grad.w1"], x.T @ (np.outer(dy, w2) * (1 - h * h)), rtol=1e-14)
    assert got["out"] == 4.3064996479744115  # as printed in the README
