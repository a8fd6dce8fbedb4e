"""gptir.diff: structural matching, reports, values, and the text/stat/JSON forms."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gptir
from gptir import Builder, Param, TensorType, make_graph, scope, trace
from gptir.diff import (
    GraphDiff, compare_values, diff_graphs, format_stat, format_unified, history_line, pass_label, to_json,
)
from gptir.ir import Graph, Node
from gptir.text import format_node

F3 = TensorType("f64", (3,))


def block(x, w, wo, b):
    """A little attention-free block with scopes, consts, a reduction and two outputs."""
    with scope("layer0"):
        with scope("mlp"):
            h = gptir.relu(x @ w + b)
            e = gptir.exp(h * 0.5)
        with scope("norm"):
            s = e.sum()
            n = e / s
    with scope("head"):
        y = n @ wo
        loss = (y * y).mean()
    return {"loss": loss, "y": y}


def model() -> Graph:
    rng = np.random.default_rng(0)
    return trace(block, "f64[4]", Param(rng.normal(size=(4, 3))), Param(rng.normal(size=(3, 2))),
                 Param(rng.normal(size=3)))


def rebuild(g: Graph, nodes, outputs=None, params=None) -> Graph:
    return make_graph(g.name, nodes, g.outputs if outputs is None else outputs,
                      g.params if params is None else params)


def renumber(g: Graph, seed: int, rename: bool = True) -> Graph:
    """Every value renamed (v0, v1, ... in a random order) and the nodes shuffled into another valid order."""
    rng = random.Random(seed)
    names = list(g.nodes)
    rng.shuffle(names)
    new = {n: (f"v{i}" if rename else n) for i, n in enumerate(names)}
    nodes = [n.replace(name=new[n.name], inputs=tuple(new[i] for i in n.inputs)) for n in g]
    rng.shuffle(nodes)
    return make_graph(g.name, nodes, {k: new[v] for k, v in g.outputs.items()},
                      {new[k]: v for k, v in g.params.items()})


def names(nodes) -> list[str]:
    return [n.name for n in nodes]


def only(d: GraphDiff, **expect) -> None:
    """Assert the diff holds exactly ``expect`` (added/removed/changed name lists, outputs, values) and nothing else."""
    got = {
        "added": names(d.added), "removed": names(d.removed), "changed": [(c.b.name, c.what) for c in d.changed],
        "outputs_added": d.outputs_added, "outputs_removed": d.outputs_removed,
        "outputs_changed": [(o.name, o.a, o.b) for o in d.outputs_changed],
        "values": [(v.b, v.changed) for v in d.value_changes],
    }
    want = {"added": [], "removed": [], "changed": [], "outputs_added": {}, "outputs_removed": {},
            "outputs_changed": [], "values": []}
    want.update(expect)
    assert got == want


# -- equal graphs ------------------------------------------------------------------------------------------


def test_same_graph_is_equal():
    g = model()
    d = diff_graphs(g, model())
    only(d)
    assert d.equal and d.renamed == [] and len(d.pairs) == len(g)
    assert format_unified(d) == ""


def test_renumbered_and_reordered_copy_is_equal():
    g = model()
    for seed in range(5):
        h = renumber(g, seed)
        assert set(h.nodes).isdisjoint(g.nodes)
        d = diff_graphs(g, h)
        only(d)
        assert d.equal
        assert len(d.renamed) == len(g)  # listed, not counted


def test_reordered_copy_is_equal():
    g = model()
    h = renumber(g, 7, rename=False)
    assert list(h.nodes) != list(g.nodes)
    d = diff_graphs(g, h)
    only(d)
    assert d.renamed == []


def test_reprinted_graph_is_equal():
    g = model()
    h = gptir.text.parse(gptir.print_graph(g), "reprinted.ir")
    d = diff_graphs(g, h)
    only(d)
    assert d.renamed == [] and d.equal


def test_renamed_inputs_pair_by_use_not_by_position():
    def f(a, b):
        return gptir.exp(a) * b + a

    g = trace(f, "f64[3]", "f64[3]")
    bld = Builder("f")
    r = bld.input("r", F3)  # declared first, but plays the part of b
    q = bld.input("q", F3)
    h = bld.finish({"out": gptir.exp(q) * r + q})
    d = diff_graphs(g, h)
    only(d)
    assert ("a", "q") in d.renamed and ("b", "r") in d.renamed


def test_loc_is_metadata_unless_asked():
    g = model()
    h = rebuild(g, [n.replace(loc="elsewhere.py:1") if n.name == "layer0.mlp.exp" else n for n in g])
    only(diff_graphs(g, h))
    only(diff_graphs(g, h, locs=True), changed=[("layer0.mlp.exp", ("loc",))])


# -- one edit, reported once -------------------------------------------------------------------------------


def test_one_inserted_dead_node():
    g = model()
    new = Node("layer0.extra", "neg", ("layer0.mlp.exp",), F3, {}, "layer0")
    h = rebuild(g, list(g) + [new])
    only(diff_graphs(g, h), added=["layer0.extra"])
    only(diff_graphs(h, g), removed=["layer0.extra"])


def test_one_changed_op():
    g = model()
    h = rebuild(g, [n.replace(op="log") if n.name == "layer0.mlp.exp" else n for n in g])
    only(diff_graphs(g, h), changed=[("layer0.mlp.exp", ("op",))])


def test_changed_op_found_even_when_everything_is_renamed():
    g = model()
    h = renumber(rebuild(g, [n.replace(op="log") if n.name == "layer0.mlp.exp" else n for n in g]), 3)
    d = diff_graphs(g, h)
    assert [(c.a.name, c.what) for c in d.changed] == [("layer0.mlp.exp", ("op",))]
    assert not (d.added or d.removed or d.outputs_changed)


def test_changed_scope_is_a_change():
    g = model()
    h = rebuild(g, [n.replace(scope="moved") if n.name == "head.mul" else n for n in g])
    only(diff_graphs(g, h), changed=[("head.mul", ("scope",))])


def test_changed_attrs_and_type():
    g = model()
    sum_node = g["layer0.norm.sum"]
    assert sum_node.attrs == {"axes": (0,), "keepdims": False}
    # keepdims flips the type from f64[] to f64[1]; the users (a broadcast) then see a new operand type
    h = rebuild(g, [n.replace(attrs={"axes": (0,), "keepdims": True}, type=TensorType("f64", (1,)))
                    if n.name == "layer0.norm.sum" else n for n in g])
    d = diff_graphs(g, h)
    assert [(c.b.name, c.what) for c in d.changed] == [("layer0.norm.sum", ("attrs", "type"))]
    assert not (d.added or d.removed)


def test_spliced_insertion_reports_the_new_node_and_its_rewired_user():
    g = model()
    new = Node("layer0.mlp.neg", "neg", ("layer0.mlp.relu",), F3, {}, "layer0.mlp")
    nodes = []
    for n in g:
        if n.name == "layer0.mlp.mul":  # mul(relu, const) -> mul(neg(relu), const)
            n = n.replace(inputs=("layer0.mlp.neg",) + n.inputs[1:])
        nodes.append(n)
    h = rebuild(g, nodes + [new])
    only(diff_graphs(g, h), added=["layer0.mlp.neg"], changed=[("layer0.mlp.mul", ("inputs",))])


def test_bypassed_node_is_removed_and_its_user_rewired():
    g = model()
    nodes = [n.replace(inputs=("layer0.mlp.relu",) + n.inputs[1:]) if n.name == "layer0.mlp.exp" else n
             for n in g]
    nodes = [n for n in nodes if n.name != "layer0.mlp.mul"]
    h = rebuild(g, nodes)
    only(diff_graphs(g, h), removed=["layer0.mlp.mul"], changed=[("layer0.mlp.exp", ("inputs",))])


def test_cse_shows_only_the_removed_duplicates():
    def f(x, w):
        a = gptir.exp(x * w)
        b = gptir.exp(x * w)  # a duplicate CSE would merge
        return (a + b).sum()

    g = trace(f, "f64[3]", Param(np.ones(3)))
    assert {"mul.1", "exp.1"} <= set(g.nodes)
    h = rebuild(g, [n.replace(inputs=tuple("exp" if i == "exp.1" else i for i in n.inputs))
                    for n in g if n.name not in ("mul.1", "exp.1")])
    only(diff_graphs(g, h), removed=["mul.1", "exp.1"])


def test_constant_folding_pairs_the_folded_value():
    b = Builder("f")
    x = b.input("x", F3)
    c = b.const(np.full(3, 2.0), name="two") * b.const(np.full(3, 3.0), name="three")
    g = b.finish({"out": x + c})
    b2 = Builder("f")
    x2 = b2.input("x", F3)
    h = b2.finish({"out": x2 + b2.const(np.full(3, 6.0), name="six")})
    d = diff_graphs(g, h)
    only(d, removed=["two", "three"], changed=[("six", ("op", "attrs", "inputs"))])


def test_outputs_added_removed_changed():
    g = model()
    h = rebuild(g, list(g), outputs={"loss": "layer0.norm.sum", "extra": "head.matmul"})
    only(diff_graphs(g, h), outputs_added={"extra": "head.matmul"}, outputs_removed={"y": "head.matmul"},
         outputs_changed=[("loss", g.outputs["loss"], "layer0.norm.sum")])


# -- values ------------------------------------------------------------------------------------------------


def test_param_value_change_is_reported_with_numbers():
    g = model()
    params = dict(g.params)
    params["w"] = params["w"].copy()
    params["w"][1, 2] += 0.25
    params["w"][0, 0] += -0.5
    h = rebuild(g, list(g), params=params)
    d = diff_graphs(g, h)
    only(d, values=[("w", 2)])
    v = d.value_changes[0]
    assert v.kind == "param" and v.size == 12 and v.max_abs_delta == pytest.approx(0.5)
    assert v.rel_change == pytest.approx(0.5 / np.abs(g.params["w"]).max())
    assert not d.equal and d.structurally_equal
    assert diff_graphs(g, h, atol=0.5).equal
    assert [v.changed for v in diff_graphs(g, h, atol=0.3).value_changes] == [1]
    assert diff_graphs(g, h, values=False).equal


def test_values_compare_bitwise():
    nan2 = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), np.float64)[0]
    a = np.array([np.nan, 0.0, 1.0, np.inf])
    assert compare_values(a, a.copy()) == (0, 0.0, 0.0)
    assert compare_values(np.array([0.0]), np.array([-0.0]))[0] == 1  # a bit changed
    n, delta, _ = compare_values(np.array([np.nan]), np.array([nan2]))
    assert n == 1 and delta == np.inf
    assert compare_values(np.array([np.nan]), np.array([nan2]), atol=1e-9)[0] == 0
    assert compare_values(np.array([1, 2, 3]), np.array([1, 5, 3])) == (1, 3.0, 1.0)
    assert compare_values(np.array([True, False]), np.array([True, True]))[0] == 1
    n, delta, rel = compare_values(np.zeros(2), np.array([0.0, 1.0]))
    assert (n, delta, rel) == (1, 1.0, np.inf)


def test_const_value_change_is_a_value_change_not_structural():
    g = model()
    const = next(n for n in g if n.op == "const")
    h = rebuild(g, [n.replace(attrs={"value": np.asarray(n.attrs["value"] + 1.0)}) if n is const else n for n in g])
    d = diff_graphs(g, h)
    only(d, values=[(const.name, 1)])
    assert d.value_changes[0].kind == "const"
    assert diff_graphs(g, h, values=False).equal


def test_params_only_on_one_side_are_not_compared():
    g = model()
    h = rebuild(g, list(g), params={})
    assert diff_graphs(g, h).equal


# -- autodiff ----------------------------------------------------------------------------------------------


def test_grad_adds_exactly_the_backward_nodes_and_outputs():
    import gptir.autodiff as autodiff
    g = model()
    gg = autodiff.grad(g, wrt=["w", "wo", "b"], of="loss")
    d = diff_graphs(g, gg)
    backward = [n.name for n in gg if n.backward]
    assert backward and sorted(names(d.added)) == sorted(backward)
    assert d.removed == [] and d.changed == [] and d.outputs_removed == {} and d.outputs_changed == []
    assert set(d.outputs_added) == {"grad.w", "grad.wo", "grad.b"}


# -- same names first (issue 6) ----------------------------------------------------------------------------

F = lambda *shape: TensorType("f64", shape)  # noqa: E731


def no_identical_changes(d: GraphDiff) -> None:
    """A node reported changed must print differently on its two sides."""
    same = [c.b.name for c in d.changed if format_node(c.a) == format_node(c.b)]
    assert same == []


def test_fused_transposes_keep_their_names():
    """t6(t4(x)) fused into one t6(x): t6 is the changed node and t4 removed, not t4 'renamed' to t6."""
    x, y = Node("x", "input", (), F(2, 3, 4)), Node("y", "input", (), F(3, 2, 4))
    m = Node("m", "matmul", ("y", "t6"), F(3, 2, 2))
    a = make_graph("g", [x, y, Node("t4", "transpose", ("x",), F(3, 2, 4), {"perm": (1, 0, 2)}),
                         Node("t6", "transpose", ("t4",), F(3, 4, 2), {"perm": (0, 2, 1)}), m], {"out": "m"})
    b = make_graph("g", [x, y, Node("t6", "transpose", ("x",), F(3, 4, 2), {"perm": (1, 2, 0)}), m], {"out": "m"})
    d = diff_graphs(a, b)
    only(d, removed=["t4"], changed=[("t6", ("attrs", "inputs"))])
    assert d.renamed == [] and d.pairs == {"x": "x", "y": "y", "t6": "t6", "m": "m"}
    no_identical_changes(d)


def test_swapped_names_show_the_change_at_the_operands():
    """sub(e, n) on both sides, but e and n swapped ops: a real difference, shown at e and n, never as
    a 'changed' sub whose two lines read the same, and never as equal."""
    x = Node("x", "input", (), F3)
    a = make_graph("g", [x, Node("e", "exp", ("x",), F3), Node("n", "neg", ("x",), F3),
                         Node("s", "sub", ("e", "n"), F3)], {"out": "s"})
    b = make_graph("g", [x, Node("e", "neg", ("x",), F3), Node("n", "exp", ("x",), F3),
                         Node("s", "sub", ("e", "n"), F3)], {"out": "s"})
    d = diff_graphs(a, b)
    assert not d.equal
    only(d, changed=[("e", ("op",)), ("n", ("op",))])
    assert d.renamed == []
    no_identical_changes(d)


def test_optimised_microgpt_pairs_by_name():
    """The reported case: `gptir trace microgpt --doc emma` then `gptir opt` (in-process here)."""
    import gptir.passes as passes
    from gptir.model import GPTConfig, loss_graph

    g = loss_graph(GPTConfig(vocab_size=27), 5)
    data = {"tokens": np.array([26, 4, 12, 12, 0]), "targets": np.array([4, 12, 12, 0, 26])}
    g = g.replace(nodes={k: n.replace(op="const", attrs={"value": data[k]}) if k in data else n
                         for k, n in g.nodes.items()})
    o = passes.optimize(g)
    d = diff_graphs(g, o)
    no_identical_changes(d)
    assert d.renamed == []  # every survivor keeps its name, so none is renamed
    assert all(x == y for x, y in d.pairs.items())
    changed = {c.b.name: c.what for c in d.changed}
    assert "layer0.attn.matmul.3" not in changed
    if "layer0.attn.transpose.4" in g.nodes and "layer0.attn.transpose.4" not in o.nodes:
        # the optimiser fused transpose.6(transpose.4(r)) into transpose.6(r)
        assert changed["layer0.attn.transpose.6"] == ("attrs", "inputs")
        assert "layer0.attn.transpose.4" in names(d.removed)
        assert d.pairs["layer0.attn.transpose.6"] == "layer0.attn.transpose.6"


# -- output forms ------------------------------------------------------------------------------------------


def _edited() -> tuple[Graph, Graph]:
    g = model()
    nodes = [n.replace(op="log") if n.name == "layer0.mlp.exp" else n for n in g]
    nodes.append(Node("head.extra", "neg", ("head.matmul",), TensorType("f64", (2,)), {}, "head"))
    params = dict(g.params, b=g.params["b"] + 1.0)
    return g, rebuild(g, nodes, outputs=dict(g.outputs, extra="head.extra"), params=params)


def test_unified_text():
    g, h = _edited()
    text = format_unified(diff_graphs(g, h), labels=("old.ir", "new.ir"))
    lines = text.splitlines()
    assert lines[0].startswith("--- old.ir") and lines[1].startswith("+++ new.ir")
    assert "@@ layer0.mlp @@" in lines and "@@ head @@" in lines and "@@ outputs @@" in lines
    i = lines.index("@@ layer0.mlp @@")
    block_ = lines[i + 1:lines.index("@@ head @@")]
    assert "- %layer0.mlp.exp = exp %layer0.mlp.mul : f64[3] @layer0.mlp" in block_[1] and "# op" in block_[1]
    assert block_[2].startswith("+ %layer0.mlp.exp = log %layer0.mlp.mul : f64[3] @layer0.mlp")
    assert block_[0].startswith("  %layer0.mlp.mul = mul")  # context: the matched operand
    assert any(l.startswith("+ %head.extra = neg %head.matmul : f64[2] @head") for l in lines)
    assert "+ output extra = %head.extra" in lines
    assert any(l.startswith("~ param %b : f64[3]  3/3 changed, max|Δ| 1,") for l in lines)
    assert "\x1b[" not in text
    colored = format_unified(diff_graphs(g, h), color=True)
    assert "\x1b[31m- %layer0.mlp.exp" in colored and "\x1b[32m+ %head.extra" in colored


def test_stat_and_json():
    g, h = _edited()
    d = diff_graphs(g, h)
    stat = format_stat(d)
    assert stat.splitlines()[0].startswith("0 removed, 1 added, 1 changed nodes")
    assert "values: 1 tensors, 3 elements changed, max|Δ| 1" in stat
    assert any(l.split() == ["log", "0", "0", "1"] for l in stat.splitlines())
    assert any(l.split() == ["head", "0", "1", "0"] for l in stat.splitlines())
    obj = json.loads(to_json(d, ("a.ir", "b.ir")))
    assert obj["schema"] == "gptir-diff/1" and obj["equal"] is False
    assert [n["name"] for n in obj["added"]] == ["head.extra"]
    assert obj["changed"][0]["what"] == ["op"] and obj["changed"][0]["b"]["op"] == "log"
    assert obj["outputs"]["added"] == {"extra": "head.extra"}
    assert obj["values"][0]["b"] == "b" and obj["values"][0]["changed"] == 3
    assert obj["summary"]["added"] == 1 and obj["a"]["file"] == "a.ir"


def test_history_line_and_pass_label():
    g = model()
    assert pass_label("01-cse.ir") == "cse" and pass_label("step-0010.ir") is None
    h = rebuild(g, list(g) + [Node("dead", "neg", ("x",), TensorType("f64", (4,)))])
    assert history_line(diff_graphs(h, g), "00-input.ir", "01-dce.ir") == "00-input.ir -> 01-dce.ir: -1 nodes (dce)"
    p = rebuild(g, list(g), params=dict(g.params, b=g.params["b"] + 0.0123))
    assert (history_line(diff_graphs(g, p), "step-0000.ir", "step-0010.ir")
            == "step-0000.ir -> step-0010.ir: 0 structural, 3 values changed, max|Δ| 0.0123")
    assert history_line(diff_graphs(g, g), "a.ir", "b.ir") == "a.ir -> b.ir: no differences"


# -- random graphs, random edits ---------------------------------------------------------------------------

UNARY = ("neg", "exp", "relu")
BINARY = ("add", "sub", "mul", "maximum")


@st.composite
def random_graph(draw) -> Graph:
    b = Builder("rand")
    vals = [b.input("x", F3), b.param("p", F3, np.arange(3.0)), b.const(np.array([1.0, 2.0, 3.0]))]
    for _ in range(draw(st.integers(1, 25))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            args = [draw(st.sampled_from(vals))]
        else:
            op = draw(st.sampled_from(BINARY))
            args = [draw(st.sampled_from(vals)), draw(st.sampled_from(vals))]
        with scope(draw(st.sampled_from(("s0", "s1")))):
            vals.append(b.emit(op, args))
    outs = draw(st.lists(st.sampled_from(vals[3:]), min_size=1, max_size=3))
    return b.finish({f"o{i}": t for i, t in enumerate(outs)})


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(random_graph(), st.integers(0, 10**6), st.booleans())
def test_random_renumber_reorder_is_equal(g, seed, rename):
    d = diff_graphs(g, renumber(g, seed, rename))
    only(d)


@FAST
@given(random_graph(), st.data())
def test_random_dead_insertion_and_removal(g, data):
    src = data.draw(st.sampled_from(list(g.nodes)))
    op = data.draw(st.sampled_from(UNARY))
    new = Node("inserted", op, (src,), F3, {}, "s9")
    h = rebuild(g, list(g) + [new])
    only(diff_graphs(g, h), added=["inserted"])
    only(diff_graphs(h, g), removed=["inserted"])


@FAST
@given(random_graph(), st.data())
def test_random_op_change(g, data):
    target = data.draw(st.sampled_from([n for n in g if n.op not in ("input", "param", "const")]))
    family = UNARY if target.op in UNARY else BINARY
    op = data.draw(st.sampled_from([o for o in family if o != target.op]))
    h = rebuild(g, [n.replace(op=op) if n is target else n for n in g])
    only(diff_graphs(g, h), changed=[(target.name, ("op",))])


@FAST
@given(random_graph(), st.data(), st.integers(0, 10**6))
def test_random_op_change_in_a_reordered_copy(g, data, seed):
    target = data.draw(st.sampled_from([n for n in g if n.op not in ("input", "param", "const")]))
    family = UNARY if target.op in UNARY else BINARY
    op = data.draw(st.sampled_from([o for o in family if o != target.op]))
    h = renumber(rebuild(g, [n.replace(op=op) if n is target else n for n in g]), seed, rename=False)
    only(diff_graphs(g, h), changed=[(target.name, ("op",))])


@FAST
@given(random_graph(), random_graph())
def test_random_pairs_are_consistent(g, h):
    """Any two graphs: pairing is one-to-one and covers every node once; every output form renders."""
    d = diff_graphs(g, h)
    assert len(set(d.pairs.values())) == len(d.pairs)
    assert len(d.pairs) + len(d.removed) == len(g) and len(d.pairs) + len(d.added) == len(h)
    assert {c.a.name for c in d.changed} <= set(d.pairs) and not set(names(d.removed)) & set(d.pairs)
    text = format_unified(d)
    assert (text == "") == d.equal
    assert text.count("\n- %") == len(d.removed) + len(d.changed)
    assert text.count("\n+ %") + text.count("\n+ in %") + text.count("\n+ param %") == len(d.added) + len(d.changed)
    obj = json.loads(to_json(d))
    assert obj["summary"]["added"] == len(d.added) and obj["equal"] == d.equal
    assert format_stat(d)
    no_identical_changes(d)


@FAST
@given(random_graph(), st.floats(-10, 10, allow_nan=False).filter(lambda v: abs(v) > 1e-3))
def test_random_param_change(g, delta):
    h = rebuild(g, list(g), params={"p": g.params["p"] + np.array([0.0, delta, 0.0])})
    d = diff_graphs(g, h)
    only(d, values=[("p", 1)])
    assert d.value_changes[0].max_abs_delta == pytest.approx(abs(delta), rel=1e-9, abs=1e-12)


# -- scale -------------------------------------------------------------------------------------------------


def chain(n_nodes: int, edit: bool = False) -> Graph:
    b = Builder("big")
    x = b.input("x", F3)
    vals = [x, b.param("p", F3, np.zeros(3))]
    rng = random.Random(1)
    while len(b.nodes) < n_nodes:
        with scope(f"layer{len(b.nodes) // 500}"):
            a1, a2 = vals[-1], vals[rng.randrange(len(vals))]
            op = BINARY[rng.randrange(4)]
            if edit and len(b.nodes) == n_nodes // 2:
                op = "div"
            vals.append(b.emit(op, [a1, a2]))
    return b.finish({"out": vals[-1]})


def test_ten_thousand_nodes_diff_in_seconds(capsys):
    g, h = chain(10_000), chain(10_000, edit=True)
    r = renumber(g, 0)
    t0 = time.perf_counter()
    d = diff_graphs(g, h)
    t1 = time.perf_counter()
    e = diff_graphs(g, r)
    t2 = time.perf_counter()
    assert len(d.changed) == 1 and d.changed[0].what == ("op",) and not d.added and not d.removed
    assert e.equal
    assert t1 - t0 < 10 and t2 - t1 < 10
    with capsys.disabled():
        print(f"\n[diff] 10k nodes: one edit {t1 - t0:.2f}s, renumbered+reordered {t2 - t1:.2f}s")
