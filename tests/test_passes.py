"""Optimisation passes: what each one removes or rewrites, names and signatures kept, results bit for
bit unchanged, non-exact rules never applied, cycles in a rule table reported, the pass manager."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptir.codegen import compile_graph
from gptir.interp import run
from gptir.ir import Graph, TensorType, VerifyError, verify
from gptir.ops import OPS
from gptir.passes import (DEFAULT_PIPELINE, FOLD_MAX_ELEMENTS, PASSES, RULES, NewNode, P, PassError, Rule, X, cse,
                          dce, fold, optimize, rewrite, run_pipeline, simplify, verify_changed)
from gptir.tracing import Builder, broadcast_to, exp, reshape, stop_gradient, transpose

F = TensorType("f64", (2, 3))


def bits(a) -> bytes:
    a = np.asarray(a)
    return a.dtype.str.encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def layout(a: np.ndarray) -> tuple[int, ...]:
    """Strides of the axes that are actually stepped (an axis of length 1 never is)."""
    return tuple(s for s, d in zip(a.strides, a.shape) if d > 1)


def ops_of(g: Graph) -> list[str]:
    return [n.op for n in g.nodes.values()]


def fresh(b: Builder, shape=(2, 3)):
    """A value known to be a fresh C-contiguous array (a matmul result), from input x."""
    x = b.input("x", TensorType("f64", shape))
    return x, x @ b.const(np.eye(shape[-1]))


# -- dce ----------------------------------------------------------------------------------------------


def test_dce_drops_dead_nodes_but_keeps_every_input():
    b = Builder("g")
    x = b.input("x", F)
    unused = b.input("unused", F)
    dead = exp(x) * 3.0  # noqa: F841 - dead on purpose
    g = b.finish({"out": x + 1.0})
    d = dce(g)
    assert "unused" in d.nodes and "x" in d.nodes
    assert "exp" not in d.nodes and all(n.op != "exp" for n in d)
    assert d.outputs == g.outputs
    assert len(d) == len(g) - 4  # exp, its constant, its broadcast, the mul
    verify(d, OPS)


# -- cse ----------------------------------------------------------------------------------------------


def test_cse_merges_duplicates_and_keeps_the_first_name():
    b = Builder("g")
    x = b.input("x", F)
    e1, e2 = exp(x), exp(x)
    g = b.finish({"a": e1 + e2, "b": e2})
    c = cse(g)
    assert e1.name in c.nodes and e2.name not in c.nodes
    assert c.outputs["b"] == e1.name
    add = c.nodes[c.outputs["a"]]
    assert add.inputs == (e1.name, e1.name)
    xv = np.array([[0.0, -0.0, 1.0], [math.nan, math.inf, -2.0]])
    assert bits(run(c, {"x": xv})["a"]) == bits(run(g, {"x": xv})["a"])


def test_cse_constants_by_exact_value():
    b = Builder("g")
    x = b.input("x", TensorType("f64", ()))
    c1, c2 = b.const(0.0), b.const(0.0)
    c3 = b.const(-0.0)  # a different constant: -0.0 != 0.0 bit for bit
    g = b.finish({"a": x + c1, "b": x + c2, "c": x + c3})
    c = cse(g)
    consts = [n for n in c if n.op == "const"]
    assert len(consts) == 2
    assert c.outputs["a"] == c.outputs["b"] != c.outputs["c"]


def test_cse_does_not_merge_inputs_or_different_attrs():
    b = Builder("g")
    x = b.input("x", F)
    y = b.input("y", F)
    g = b.finish({"a": x.sum(0), "b": x.sum(1), "c": x + y, "d": y + x})
    c = cse(g)
    assert len(c) == len(g)  # commutative operands are not reordered (NaN payloads follow the order)


# -- fold ---------------------------------------------------------------------------------------------


def test_fold_evaluates_constant_subgraphs_bit_identically():
    b = Builder("g")
    x = b.input("x", TensorType("f64", ()))
    k = b.const(np.array([0.1, -0.0, 3.0]))
    folded = exp(k) / 7.0 - 0.3  # all constant
    g = b.finish({"out": reshape(folded, (3,)) * x})
    f = fold(g)
    n = f.nodes[folded.name]
    assert n.op == "const" and n.name == folded.name
    with np.errstate(all="ignore"):
        want = np.subtract(np.divide(np.exp(k_val := np.array([0.1, -0.0, 3.0])), 7.0), 0.3)
    assert bits(n.attrs["value"]) == bits(want)
    assert bits(run(f, {"x": np.float64(2.0)})["out"]) == bits(run(g, {"x": np.float64(2.0)})["out"])
    assert k_val.shape == (3,)


def test_fold_keeps_broadcasts_and_big_results_symbolic():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (40, 40)))
    g = b.finish({"out": x * 2.0})
    f = fold(g)
    # the broadcast of 2.0 to 40x40 is a stride-0 view; as a literal it would be 1600 numbers
    assert ops_of(f).count("broadcast") == 1
    assert 40 * 40 > FOLD_MAX_ELEMENTS


def test_fold_leaves_failing_ops_for_run_time():
    b = Builder("g")
    t = b.const(np.zeros((2, 2)))
    i = b.const(np.array([5], np.int64))
    g = b.finish({"out": b.emit("gather", [t, i])})
    f = fold(g)
    assert ops_of(f).count("gather") == 1


# -- simplify -------------------------------------------------------------------------------------------


def test_exact_identities_are_removed():
    b = Builder("g")
    x, m = fresh(b)
    y = ((m * 1.0) / 1.0 - 0.0) + (-0.0)
    y = -(-y)
    y = stop_gradient(stop_gradient(y))
    g = b.finish({"out": y})
    s = simplify(g)
    kept = [n.op for n in s if n.op not in ("input", "const")]
    assert kept == ["matmul", "stop_gradient"], kept
    xv = np.array([[-0.0, 0.0, math.nan], [math.inf, -math.inf, 1e-308]])
    assert bits(run(s, {"x": xv})["out"]) == bits(run(g, {"x": xv})["out"])


@pytest.mark.parametrize("build", [
    lambda m: m * 0.0,      # nan*0 = nan, -1*0 = -0.0
    lambda m: m + 0.0,      # -0.0 + 0.0 = 0.0
    lambda m: m - m,        # inf - inf = nan
    lambda m: m / m,        # 0/0 = nan
    lambda m: m - (-0.0),   # -0.0 - -0.0 = 0.0
])
def test_inexact_identities_are_kept(build):
    b = Builder("g")
    x, m = fresh(b)
    g = b.finish({"out": build(m)})
    s = simplify(g)
    assert len([n for n in s if n.op in ("add", "sub", "mul", "div")]) == 1
    xv = np.array([[-0.0, 0.0, math.nan], [math.inf, -math.inf, -1.0]])
    assert bits(run(s, {"x": xv})["out"]) == bits(run(g, {"x": xv})["out"])


def test_identities_fire_on_graph_inputs_because_inputs_are_bound_c_contiguous():
    """x*1 on a graph input: inputs are C-contiguous by contract (both backends copy a Fortran-ordered
    or strided array to C order first), so x*1 -> x keeps the layout a later sum sees."""
    b = Builder("g")
    x = b.input("x", TensorType("f64", (3, 5)))
    w = b.param("w", TensorType("f64", (3, 5)), np.ones((3, 5)))
    g = b.finish({"out": (x * 1.0).sum(), "p": -(-w) / 1.0})
    s = simplify(g)
    assert ops_of(s) == ["input", "param", "sum"] and s.outputs["p"] == "w"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 5)) * 10.0 ** rng.integers(-8, 8, (3, 5))
    assert bits(np.asfortranarray(base).sum()) != bits(base.sum())  # this data's sum depends on the layout
    for xv in (base, np.asfortranarray(base), base.T.copy().T, np.repeat(base, 2, 1)[:, ::2]):
        assert not xv.flags.c_contiguous or xv is base
        ref = run(g, {"x": xv, "w": xv})
        out = run(s, {"x": xv, "w": xv})
        comp = compile_graph(optimize(g))({"x": xv, "w": xv})
        # every layout gives the C-order result: the input is made C-contiguous before the program runs
        assert bits(out["out"]) == bits(ref["out"]) == bits(comp["out"]) == bits(base.sum())
        assert bits(out["p"]) == bits(ref["p"]) == bits(comp["p"]) == bits(base)


def test_identities_on_values_of_unknown_layout_are_kept():
    """A transposed input is a view with Fortran strides: x.T * 1 is a fresh array in that order (numpy
    keeps the operand's order), and a later sum adds in an order that depends on the layout. So the
    rule waits for a known layout."""
    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"out": (transpose(x) * 1.0).sum()})
    assert "mul" in ops_of(simplify(g))


def test_the_issue_example_simplifies_to_its_one_real_op():
    """f(x) = -(-(exp(x)*1.0)) - 0.0 used to keep all its 10 nodes through every pass."""
    b = Builder("f")
    x = b.input("x", TensorType("f64", (3,)))
    g = b.finish({"out": -(-(exp(x) * 1.0)) - 0.0})
    assert len(g) == 10
    seen = []
    o = run_pipeline(g, DEFAULT_PIPELINE, on_pass=lambda name, bef, aft: seen.append((name, len(aft))))
    assert seen == [("cse", 10), ("simplify", 2), ("fold", 2), ("dce", 2)]
    assert ops_of(o) == ["input", "exp"] and o.outputs["out"] == "exp"
    xv = np.array([-0.0, math.nan, 0.5])
    assert bits(run(o, {"x": xv})["out"]) == bits(run(g, {"x": xv})["out"]) == bits(np.exp(xv))


def test_broadcast_of_a_reshaped_scalar_broadcasts_the_scalar():
    b = Builder("g")
    s = b.input("s", TensorType("f64", ()))
    one = b.input("one", TensorType("f64", (1,)))
    a = broadcast_to(reshape(s, (1, 1)), (4, 3))          # a scalar through a shape of ones
    c = broadcast_to(reshape(reshape(s, (1,)), (1, 1, 1)), (2, 1, 3))  # through two reshapes
    d = broadcast_to(reshape(one, (1, 1)), (2, 3))       # any one-element value of lower rank
    e = broadcast_to(reshape(b.input("big", TensorType("f64", (1, 1, 1))), (1,)), (5,))  # rank 3 > 1: kept
    k = broadcast_to(reshape(b.const(2.5), (1, 1)), (3, 4))  # a constant
    g = b.finish({"a": a, "c": c, "d": d, "e": e, "k": k, "sum": (a * 3.0).sum() + c.sum()})
    o = optimize(g)
    for out, src in (("a", "s"), ("c", "s"), ("d", "one")):
        node = o.nodes[o.outputs[out]]
        assert node.op == "broadcast" and node.inputs == (src,), (out, node)
    assert o.nodes[o.outputs["e"]].op == "broadcast" and o.nodes[o.nodes[o.outputs["e"]].inputs[0]].op == "reshape"
    knode = o.nodes[o.outputs["k"]]
    assert knode.op == "broadcast" and o.nodes[knode.inputs[0]].type == TensorType("f64", ())
    assert "reshape" not in [o.nodes[i].op for n in o for i in n.inputs if n.name != o.outputs["e"]]
    inputs = {"s": np.float64(-1.5), "one": np.array([math.nan]), "big": np.full((1, 1, 1), 4.0)}
    ref, out, comp = run(g, inputs), run(o, inputs), compile_graph(o)(inputs)
    for key in ref:
        assert bits(out[key]) == bits(ref[key]) == bits(comp[key]), key
        assert layout(out[key]) == layout(ref[key]), key  # (compiled constant outputs are fresh copies)


def test_reductions_over_no_axes():
    """max over no axes copies its operand; sum over no axes is 0 + x: exact for integers, but a float
    -0.0 becomes 0.0, so a float sum over no axes stays."""
    b = Builder("g")
    x = b.input("x", F)
    i = b.input("i", TensorType("i64", (2, 3)))
    g = b.finish({"s": x.sum(()), "m": x.max(()), "k": i.sum(())})
    s = simplify(g)
    assert s.nodes[s.outputs["s"]].op == "sum" and s.outputs["m"] == "x" and s.outputs["k"] == "i"
    xv = np.array([[-0.0, 0.0, math.nan], [math.inf, -1.0, 2.0]])
    iv = np.array([[-3, 0, 5], [2**62, -(2**62), 1]])
    ref, out = run(g, {"x": xv, "i": iv}), run(s, {"x": xv, "i": iv})
    assert all(bits(out[k]) == bits(ref[k]) for k in ref)
    assert not np.signbit(ref["s"][0, 0]) and np.signbit(ref["m"][0, 0])  # why the float sum must stay


def test_fold_makes_a_reshaped_scalar_constant_a_literal():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (1, 1)))
    r = reshape(b.const(-0.0), (1, 1))
    g = b.finish({"out": x + r})
    f = fold(g)
    node = f.nodes[r.name]
    assert node.op == "const" and node.type == TensorType("f64", (1, 1)) and bits(node.attrs["value"]) == bits(
        np.full((1, 1), -0.0))
    assert bits(run(f, {"x": [[0.0]]})["out"]) == bits(run(g, {"x": [[0.0]]})["out"])


def test_movement_chains_collapse():
    b = Builder("g")
    x, m = fresh(b, (2, 3))
    t = b.emit("transpose", [b.emit("transpose", [m], {"perm": (1, 0)})], {"perm": (1, 0)})
    r = reshape(reshape(t, (6,)), (3, 2))
    c = broadcast_to(broadcast_to(r, (4, 3, 2)), (5, 4, 3, 2))
    same = b.emit("broadcast", [m], {"shape": (2, 3)})  # a broadcast to its own shape
    g = b.finish({"out": c, "same": same})
    s = simplify(g)
    ops = [n.op for n in s if n.op not in ("input", "const")]
    assert ops.count("transpose") == 0 and ops.count("reshape") == 1 and ops.count("broadcast") == 1
    assert s.outputs["same"] == m.name
    xv = np.arange(6.0).reshape(2, 3)
    for k in g.outputs:
        assert bits(run(s, {"x": xv})[k]) == bits(run(g, {"x": xv})[k])


def test_transpose_composition():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (2, 3, 4)))
    t = b.emit("transpose", [b.emit("transpose", [x], {"perm": (1, 2, 0)})], {"perm": (2, 0, 1)})
    u = b.emit("transpose", [b.emit("transpose", [x], {"perm": (1, 0, 2)})], {"perm": (0, 2, 1)})
    g = b.finish({"t": t, "u": u})
    s = simplify(g)
    assert s.outputs["t"] == "x"  # (1,2,0) then (2,0,1) is the identity
    node = s.nodes[s.outputs["u"]]
    assert node.op == "transpose" and node.inputs == ("x",) and node.name == u.name
    xv = np.arange(24.0).reshape(2, 3, 4)
    out, ref = run(s, {"x": xv}), run(g, {"x": xv})
    for k in ref:
        assert bits(out[k]) == bits(ref[k]) and layout(out[k]) == layout(ref[k])


def test_commutative_ops_match_either_operand_order_with_one_rule():
    """mul and add are commutative in the op table: ``mul_one`` fires on ``x * 1`` and ``1 * x``,
    ``add_neg_zero`` on both orders, and a non-commutative op (sub, div) only in written order."""
    b = Builder("g")
    x = b.input("x", TensorType("f64", (3,)))
    one, nz = b.const(np.ones(3)), b.const(np.full(3, -0.0))
    outs = {"a": x * one, "b": one * x, "c": x + nz, "d": nz + x, "e": one / x, "f": nz - x}
    g = simplify(b.finish(outs))
    assert [g.outputs[k] for k in "abcd"] == ["x"] * 4
    assert g.nodes[g.outputs["e"]].op == "div" and g.nodes[g.outputs["f"]].op == "sub"
    assert {r.name for r in RULES} >= {"mul_one", "add_neg_zero"}
    assert not {"mul_one_left", "mul_one_right", "add_neg_zero_left", "add_neg_zero_right"} & {r.name for r in RULES}
    xv = np.array([1.5, -0.0, np.nan])
    out, ref = run(g, {"x": xv}), run(b.finish(outs), {"x": xv})
    for k in outs:
        assert out[k].tobytes() == ref[k].tobytes()


def test_a_cycling_rule_table_is_reported():
    flip = Rule("flip", P("transpose", X("x"), name="root"),
                lambda ctx, root, x: NewNode("transpose", (x,), {"perm": tuple(reversed(ctx.node(root).attrs["perm"]))}))
    b = Builder("g")
    x = b.input("x", TensorType("f64", (2, 2)))
    g = b.finish({"out": b.emit("transpose", [x], {"perm": (1, 0)})})
    with pytest.raises(PassError, match="did not converge.*flip"):
        rewrite(g, [flip])


def test_rule_table_covers_the_required_rules():
    names = {r.name for r in RULES}
    for want in ("mul_one", "add_neg_zero", "div_one", "sub_zero", "neg_neg", "reshape_reshape",
                 "reshape_self", "transpose_transpose", "transpose_identity", "broadcast_self",
                 "broadcast_broadcast", "sum_no_axes", "stop_gradient_const"):
        assert want in names


# -- the pass manager -------------------------------------------------------------------------------------


def test_run_pipeline_calls_back_and_verifies():
    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"out": exp(x) + exp(x)})
    seen = []
    out = run_pipeline(g, ["cse", "dce"], on_pass=lambda n, bef, aft: seen.append((n, len(bef), len(aft))))
    assert seen == [("cse", len(g), len(g) - 1), ("dce", len(g) - 1, len(g) - 1)]
    assert len(out) == len(g) - 1
    with pytest.raises(PassError, match="unknown pass.*bogus.*passes: dce, cse, fold, simplify"):
        run_pipeline(g, ["bogus"])


def test_a_broken_pass_is_named(monkeypatch):
    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"out": exp(x)})

    def breaker(graph: Graph) -> Graph:
        node = graph.nodes[graph.outputs["out"]]
        nodes = dict(graph.nodes)
        nodes[node.name] = node.replace(type=TensorType("f64", (9,)))
        return graph.replace(nodes=nodes)

    monkeypatch.setitem(PASSES, "breaker", breaker)
    for check in ("full", "changed"):
        with pytest.raises(PassError, match="pass breaker produced invalid IR: .*exp"):
            run_pipeline(g, ["breaker"], check=check)


def test_verify_changed_catches_removed_inputs_and_bad_order():
    b = Builder("g")
    x = b.input("x", F)
    y = b.input("y", F)
    g = b.finish({"out": exp(x)})
    nodes = {k: v for k, v in g.nodes.items() if k != "y"}
    with pytest.raises(VerifyError, match="removed"):
        verify_changed(g, g.replace(nodes=nodes))
    rev = dict(reversed(list(g.nodes.items())))
    with pytest.raises(VerifyError):
        verify_changed(g, g.replace(nodes=rev))
    assert y.name == "y"


def test_optimize_microgpt_loss_is_smaller_and_bit_identical():
    from gptir import rng as R
    from gptir.model import GPTConfig, init_params, loss_graph

    cfg = GPTConfig(vocab_size=27)
    g = loss_graph(cfg, 6)
    o = optimize(g)
    assert len(o) < len(g)
    assert [n.name for n in o.inputs] == [n.name for n in g.inputs] and list(o.outputs) == list(g.outputs)
    params, _ = init_params(cfg, R.python_random(42))
    inputs = {**params, "tokens": np.array([0, 5, 3, 9, 1, 2]), "targets": np.array([5, 3, 9, 1, 2, 0])}
    assert bits(run(o, inputs)["loss"]) == bits(run(g, inputs)["loss"])
    assert set(DEFAULT_PIPELINE) == set(PASSES)


def test_optimize_training_step_bit_identical():
    from gptir import rng as R
    from gptir.model import GPTConfig, init_params
    from gptir.optim import AdamConfig
    from gptir.train import step_graph

    cfg = GPTConfig(vocab_size=27)
    g = step_graph(cfg, AdamConfig(), 1000, 4)
    o = optimize(g)
    assert len(o) < len(g)
    params, _ = init_params(cfg, R.python_random(1))
    inputs = dict(params)
    flat = np.concatenate([v.ravel() for v in params.values()])
    inputs["adam.m"], inputs["adam.v"] = flat * 0.5, flat * flat
    inputs.update(tokens=np.array([1, 2, 3, 4]), targets=np.array([2, 3, 4, 0]), step=np.float64(7))
    a, r = run(o, inputs), run(g, inputs)
    assert list(a) == list(r)
    assert all(bits(a[k]) == bits(r[k]) for k in r)


# -- property: every pass, any order, bit-identical ------------------------------------------------------

VALS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, math.inf, -math.inf, math.nan, 7.0])


@st.composite
def graphs(draw):
    b = Builder("p")
    x = b.input("x", F)
    pool = [x, x @ b.const(np.eye(3))]  # an input (C-contiguous once bound) and a fresh array
    for _ in range(draw(st.integers(1, 10))):
        a = draw(st.sampled_from(pool))
        c = draw(VALS)
        k = draw(st.integers(0, 9))
        r = [lambda: a * c, lambda: c * a, lambda: a / c, lambda: a + c, lambda: a - c, lambda: -(-a),
             lambda: exp(a), lambda: a.sum(1, True) * a, lambda: transpose(transpose(a)),
             lambda: reshape(reshape(a, (6,)), (2, 3))][k]()
        pool.append(r)
    g = b.finish({"out": pool[-1], "mid": pool[len(pool) // 2], "s": pool[-1].sum()})
    xv = np.array(draw(st.lists(VALS, min_size=6, max_size=6))).reshape(2, 3)
    if draw(st.booleans()):
        xv = np.asfortranarray(xv)
    order = draw(st.lists(st.sampled_from(sorted(PASSES)), min_size=1, max_size=6))
    return g, xv, order


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_passes_preserve_results_bit_for_bit(case):
    g, xv, order = case
    o = run_pipeline(g, order)
    ref, out, comp = run(g, {"x": xv}), run(o, {"x": xv}), compile_graph(o)({"x": xv})
    assert all(bits(out[k]) == bits(ref[k]) == bits(comp[k]) and layout(out[k]) == layout(ref[k]) for k in ref)
    assert [n.name for n in o.inputs] == ["x"] and list(o.outputs) == list(g.outputs)
    assert len(optimize(o)) <= len(o)


def _outcome(check, before: Graph, after: Graph) -> tuple[str, str | None] | None:
    try:
        check(before, after)
    except VerifyError as e:
        return str(e), e.node
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["drop", "swap", "retype", "new", "rewire", "move"]),
                          st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)), max_size=4))
def test_verify_changed_agrees_with_the_plain_check(edits):
    """The walk beside ``before`` (no lookup for unchanged nodes) accepts and rejects exactly what the
    plain check with a set of every defined name does, with the same message at the same node."""
    from gptir.model import GPTConfig, loss_graph
    from gptir.passes import verify_changed_plain

    g = loss_graph(GPTConfig(vocab_size=5, n_embd=4, n_head=2), 3)
    items = list(g.nodes.items())
    for kind, a, b in edits:
        i, j = a % len(items), b % len(items)
        name, node = items[i]
        if kind == "drop":
            del items[i]
        elif kind == "swap":
            items[i], items[j] = items[j], items[i]
        elif kind == "move":
            items.insert(j, items.pop(i))
        elif kind == "retype":
            items[i] = (name, node.replace(type=TensorType("f32" if node.type.dtype == "f64" else "f64", node.type.shape)))
        elif kind == "new":
            items.insert(j, ("zz" + str(a), node.replace(name="zz" + str(a))))
        elif kind == "rewire" and node.inputs:
            items[i] = (name, node.replace(inputs=(items[j][0],) + node.inputs[1:]))
        if len(items) < 2:
            break
    after = g.replace(nodes=dict(items))
    assert _outcome(verify_changed, g, after) == _outcome(verify_changed_plain, g, after)
    untouched = g.replace(nodes=dict(g.nodes))
    assert _outcome(verify_changed, g, untouched) is None
