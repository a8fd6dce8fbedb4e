"""The autodiff pass: requests and errors, graph shape (lean, named, located), stop_gradient, zero
gradients, printing/parsing, and the microgpt loss (gradients against finite differences, build time)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

import gptir
from gptir import Param, trace
from gptir.autodiff import GradError, grad, grad_output_name, gradient_output_names, gradient_outputs_of
from gptir.ir import GptirError
from gptir.model import GPTConfig, init_params, loss_graph, param_shapes
from gptir import rng as R


def f_xy(x, y):
    with gptir.scope("layer0"):
        return (x * y).sum() + (x * x).sum()


def test_grad_output_name():
    assert grad_output_name("layer0.attn_wq") == "grad.layer0.attn_wq"


def test_outputs_values_and_input_graph_untouched():
    g = trace(f_xy, "f64[3]", "f64[3]")
    before = copy.deepcopy(g)
    dg = grad(g, ["x", "y"])
    assert g.same_as(before)
    assert list(dg.outputs) == ["out", "grad.x", "grad.y"]
    x, y = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.25, -1.0])
    v = gptir.run(dg, {"x": x, "y": y})
    np.testing.assert_array_equal(v["grad.x"], y + 2 * x)
    np.testing.assert_array_equal(v["grad.y"], x)
    assert v["out"] == np.dot(x, y) + np.dot(x, x)


@pytest.mark.parametrize("wrt, of, message", [
    (["z"], None, "'z' is not an input or param of graph f (f64 inputs: x, w)"),
    (["mul"], None, "'mul' is not an input or param"),
    (["i"], None, "it is i64[2], not f64"),
    (["x", "x"], None, "listed twice"),
    ([], None, "wrt is empty"),
    (["x"], "nope", "no output named 'nope'"),
    (["x"], "vec", "scalar f64 output (or f32), but vec is f64[2]"),
])
def test_bad_requests(wrt, of, message):
    def f(x, w, i):
        return {"s": (x * w).sum(), "vec": x * w}

    g = trace(f, "f64[2]", Param(np.ones(2)), "i64[2]")
    with pytest.raises(GradError, match=re.escape(message)):
        grad(g, wrt, of="s" if of is None else of)
    assert issubclass(GradError, GptirError)


def test_several_outputs_need_of():
    g = trace(lambda x: (x.sum(), (x * x).sum()), "f64[2]")
    with pytest.raises(GradError, match="say which one"):
        grad(g, ["x"])
    assert gptir.run(grad(g, ["x"], of="out1"), {"x": [1.0, 2.0]})["grad.x"].tolist() == [2.0, 4.0]


def test_stop_gradient_blocks():
    g = trace(lambda x: (x * gptir.stop_gradient(x)).sum() + gptir.stop_gradient(x * 5.0).sum(), "f64[2]")
    v = gptir.run(grad(g, ["x"]), {"x": np.array([2.0, -3.0])})
    np.testing.assert_array_equal(v["grad.x"], [2.0, -3.0])  # not 2x: the stopped factor is a constant


def test_zero_gradient_where_no_path():
    g = trace(lambda x, y, w: (x * 2.0).sum() + gptir.stop_gradient(y).sum(), "f64[2,3]", "f64[4]", "f64[]")
    dg = grad(g, ["x", "y", "w"])
    gptir.verify(dg)
    v = gptir.run(dg, {"x": np.ones((2, 3)), "y": np.ones(4), "w": 1.0})
    assert v["grad.y"].shape == (4,) and not v["grad.y"].any()
    assert v["grad.w"].shape == () and v["grad.w"] == 0.0
    np.testing.assert_array_equal(v["grad.x"], np.full((2, 3), 2.0))
    assert dg[dg.outputs["grad.y"]].op == "broadcast"  # a broadcast scalar zero, not a big literal


def test_lean_constant_sides_and_unrelated_inputs_get_no_work():
    g = trace(lambda x, y: (x * 3.0).sum() + (x * y).sum() + (y ** 2.0).sum(), "f64[4]", "f64[4]")
    backward = [n for n in grad(g, ["x"]) if n.backward]
    # seed, broadcast of the seed (shared by both sums' rules), mul by the constant, mul by y, add
    assert sorted(n.op for n in backward) == ["add", "broadcast", "broadcast", "const", "mul", "mul"]
    assert not any("pow" in n.inputs or n.op == "pow" for n in backward)  # y**2 does not lead to x


def test_backward_nodes_are_named_located_and_printed():
    g = trace(f_xy, "f64[3]", "f64[3]")
    dg = grad(g, ["x"])
    backward = [n for n in dg if n.backward]
    assert backward and all(n.name.startswith("layer0.grad_") for n in backward)
    forward_locs = {n.loc for n in g if n.scope == "layer0"}
    assert all(n.scope == "layer0" and n.loc in forward_locs for n in backward)
    text = gptir.print_graph(dg)
    lines = text.splitlines()
    assert all(line.rstrip().endswith("backward") for line in lines if "grad_" in line.split("=")[0])
    assert not any(line.rstrip().endswith("backward") for line in lines if line.strip().startswith("%layer0.mul "))
    assert grad(g, ["x"]).same_as(dg)  # stable across runs


def test_result_parses_back_and_runs():
    from gptir.text import parse

    g = trace(lambda x, w: gptir.relu(x @ w.T).max(), "f64[2,3]", Param(np.arange(12.0).reshape(4, 3) / 10))
    dg = grad(g, ["x", "w"])
    back = parse(gptir.print_graph(dg))
    assert back.same_as(dg)
    x = np.array([[1.0, -1.0, 0.5], [0.2, 0.3, -0.4]])
    a, b = gptir.run(dg, {"x": x}), gptir.run(back, {"x": x})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_differentiating_a_gradient_output_keeps_it():
    """Outputs are the original ones plus one gradient per wrt input: the first derivative stays."""
    g = trace(lambda x: x ** 3.0, "f64[]")
    g1 = grad(g, ["x"])
    g2 = grad(g1, ["x"], of="grad.x")
    assert list(g2.outputs) == ["out", "grad.x", "grad.grad.x"]
    assert gradient_outputs_of(g2, ["x"]) == {"x": "grad.grad.x"}
    v = gptir.run(g2, {"x": 3.0})  # at x = 3: x**3 = 27, 3x**2 = 27, 6x = 18
    assert (float(v["out"]), float(v["grad.x"]), float(v["grad.grad.x"])) == (27.0, 27.0, 18.0)
    g3 = grad(g2, ["x"], of="grad.grad.x")
    assert list(g3.outputs) == ["out", "grad.x", "grad.grad.x", "grad.grad.grad.x"]
    v = gptir.run(g3, {"x": 3.0})
    assert float(v["grad.grad.x"]) == 18.0 and float(v["grad.grad.grad.x"]) == 6.0


def test_gradient_names_avoid_existing_outputs_and_each_other():
    def f(x, y):
        return {"out": (x * y).sum(), "grad.x": x.sum()}  # a user output that happens to be called grad.x

    g = trace(f, "f64[2]", "f64[2]")
    assert grad_output_name("x", {"grad.x", "grad.grad.x"}) == "grad.grad.grad.x"
    assert gradient_output_names(g, ["x", "y"]) == {"x": "grad.grad.x", "y": "grad.y"}
    assert gradient_output_names(g, "y") == {"y": "grad.y"}
    dg = grad(g, ["y", "x"], of="out")
    assert list(dg.outputs) == ["out", "grad.x", "grad.y", "grad.grad.x"]
    assert gradient_outputs_of(dg, ["y", "x"]) == {"y": "grad.y", "x": "grad.grad.x"}
    x, y = np.array([1.0, 2.0]), np.array([5.0, -7.0])
    v = gptir.run(dg, {"x": x, "y": y})
    assert v["grad.x"] == 3.0  # the user's output, untouched
    np.testing.assert_array_equal(v["grad.grad.x"], y)
    np.testing.assert_array_equal(v["grad.y"], x)


def test_gradient_outputs_of_rejects_other_graphs():
    g = trace(lambda x, y: (x * y).sum(), "f64[2]", "f64[2]")
    dg = grad(g, ["x", "y"])
    with pytest.raises(GradError, match="not grad"):
        gradient_outputs_of(dg, ["y", "x"])  # the gradients are in wrt order
    with pytest.raises(GradError, match="does not end with"):
        gradient_outputs_of(g, ["x"])


def test_output_that_is_the_input():
    g = trace(lambda x, y: x, "f64[]", "f64[]")
    v = gptir.run(grad(g, ["x", "y"]), {"x": 3.0, "y": 1.0})
    assert v["grad.x"] == 1.0 and v["grad.y"] == 0.0


def test_fan_out_accumulates():
    def f(x):
        a = gptir.exp(x)
        return (a * a + a).sum()  # x reaches the output through three uses of a

    g = trace(f, "f64[2]")
    x = np.array([0.1, -0.7])
    np.testing.assert_allclose(gptir.run(grad(g, ["x"]), {"x": x})["grad.x"], 2 * np.exp(2 * x) + np.exp(x),
                               rtol=1e-15)


# -- the microgpt loss ------------------------------------------------------------------------------

CFG = GPTConfig(vocab_size=11, n_embd=8, n_head=2, n_layer=1, block_size=8)


def test_microgpt_loss_gradients_match_finite_differences():
    names = list(param_shapes(CFG))
    params, _ = init_params(CFG, R.python_random(7))
    rs = np.random.default_rng(1)
    n = 5
    lg = loss_graph(CFG, n)
    dg = grad(lg, wrt=names, of="loss")
    gptir.verify(dg)
    data = {"tokens": rs.integers(0, 11, n), "targets": rs.integers(0, 11, n)}
    v = gptir.run(dg, {**params, **data})

    def loss(p):
        return float(gptir.run(lg, {**p, **data})["loss"])

    h = 1e-6
    for name in names:
        for _ in range(2):
            idx = tuple(int(rs.integers(0, d)) for d in params[name].shape)
            plus = {k: a.copy() for k, a in params.items()}
            minus = {k: a.copy() for k, a in params.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (loss(plus) - loss(minus)) / (2 * h)
            assert v[f"grad.{name}"][idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, idx)
    # the embedding of a token that is not in the sequence gets exactly zero gradient
    unused = sorted(set(range(11)) - set(data["tokens"].tolist()))
    assert unused and not v["grad.wte"][unused].any()


def test_microgpt_grad_builds_for_every_length():
    """The trainer differentiates one loss graph per document length (speed: ~0.05 s for all 16,
    measured outside the tests, which are never judged by timing)."""
    cfg = GPTConfig(vocab_size=27)
    names = list(param_shapes(cfg))
    for n in range(1, 17):
        dg = grad(loss_graph(cfg, n), wrt=names, of="loss")
        assert list(dg.outputs) == ["loss", *(f"grad.{k}" for k in names)]
        assert all(dg[dg.outputs[f"grad.{k}"]].type == dg[k].type for k in names)


def test_constant_zero_exponent_gives_an_exact_zero_gradient():
    g = trace(lambda x: (x ** 0.0).sum() + x.sum(), "f64[2]")
    v = gptir.run(grad(g, ["x"]), {"x": np.array([0.0, 2.0])})
    np.testing.assert_array_equal(v["grad.x"], [1.0, 1.0])  # not nan at 0


def test_builder_type_memo_gives_what_inference_gives(monkeypatch):
    """Builder.emit remembers inferred types (a model repeats its layers): the graph is the one that
    inferring every type afresh gives, node for node."""
    cfg = GPTConfig(vocab_size=11, n_layer=2)
    names = list(param_shapes(cfg))
    memo = grad(loss_graph(cfg, 4), wrt=names, of="loss")
    monkeypatch.setattr(gptir.tracing, "_type_key", lambda op, types, attrs: None)
    plain = grad(loss_graph(cfg, 4), wrt=names, of="loss")
    assert memo.same_as(plain)


def test_builder_type_memo_checks_equal_attrs_of_other_types():
    """``1`` equals ``True`` (and ``(1.0,)`` equals ``(1,)``) but is no bool (no ints): a remembered
    type does not let it through."""
    from gptir.ir import ShapeError, TensorType
    from gptir.tracing import Builder

    b = Builder()
    x = b.input("x", TensorType("f64", (2, 3)))
    assert b.emit("sum", [x], {"axes": (1,), "keepdims": True}).type == TensorType("f64", (2, 1))
    with pytest.raises(ShapeError, match="attribute keepdims must be true or false, got 1"):
        b.emit("sum", [x], {"axes": (1,), "keepdims": 1})
    with pytest.raises(ShapeError, match="attribute axes must be"):
        b.emit("sum", [x], {"axes": (1.0,), "keepdims": True})
