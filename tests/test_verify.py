"""The verifier rejects each kind of bad graph with a message naming the node and the reason; the
networkx view carries every node's fields, the graph's order is a topological order of it (checked
edge by edge, not with a sort keyed by that same order) and its generations are the IR's depth levels."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gptir
from gptir.ir import Graph, Node, TensorType, VerifyError, verify
from gptir.ops import OPS

F3 = TensorType("f64", (3,))
F = TensorType("f64", ())


def graph(nodes: list[Node], outputs: dict[str, str] | None = None, params=None) -> Graph:
    """A Graph exactly as given (no sorting), so bad orders and cycles can be expressed."""
    return Graph("g", {n.name: n for n in nodes}, outputs if outputs is not None else {"out": nodes[-1].name},
                 dict(params or {}))


def x(name: str = "x", ty: TensorType = F3) -> Node:
    return Node(name, "input", (), ty)


def check(g: Graph, message: str, node: str | None = None) -> None:
    with pytest.raises(VerifyError) as e:
        verify(g, OPS)
    assert message in str(e.value)
    if node is not None:
        assert e.value.node == node


def test_a_good_graph_passes() -> None:
    verify(graph([x(), Node("y", "neg", ("x",), F3)]), OPS)


def test_undefined_value() -> None:
    check(graph([x(), Node("y", "add", ("x", "nope"), F3)]), "%y uses %nope, which is never defined", "y")


def test_cycle() -> None:
    g = graph([x(), Node("a", "add", ("x", "b"), F3), Node("b", "neg", ("a",), F3)])
    check(g, "cycle: %b -> %a -> %b")  # data-flow order: b feeds a, a feeds b


def test_self_loop() -> None:
    check(graph([x(), Node("a", "add", ("x", "a"), F3)]), "cycle: %a -> %a", "a")


def test_duplicate_definition() -> None:
    g = Graph("g", {"x": x(), "y": Node("x", "neg", ("x",), F3)}, {"out": "x"})
    check(g, "duplicate definition of %x", "x")


def test_not_in_topological_order() -> None:
    check(graph([Node("y", "neg", ("x",), F3), x()], {"out": "y"}), "not in topological order")


def test_wrong_arity() -> None:
    check(graph([x(), Node("y", "add", ("x",), F3)]), "%y = add: expects 2 operand(s), got 1", "y")
    check(graph([x(), Node("y", "neg", ("x", "x"), F3)]), "expects 1 operand(s), got 2", "y")


def test_unknown_op() -> None:
    check(graph([x(), Node("y", "frobnicate", ("x",), F3)]), "%y: unknown op 'frobnicate'", "y")


def test_bad_attributes() -> None:
    check(graph([x(), Node("y", "sum", ("x",), F, {"axes": (0,)})]), "missing attribute(s) keepdims", "y")
    check(graph([x(), Node("y", "neg", ("x",), F3, {"alpha": 1})]), "unknown attribute(s) alpha", "y")
    check(graph([x(), Node("y", "sum", ("x",), F, {"axes": 0, "keepdims": False})]),
          "attribute axes must be a tuple of integers", "y")
    check(graph([x(), Node("y", "sum", ("x",), F, {"axes": (0,), "keepdims": 1})]),
          "attribute keepdims must be true or false", "y")
    check(graph([x(), Node("y", "cast", ("x",), F3, {"dtype": "f16"})]), "attribute dtype must be a dtype", "y")
    check(graph([x(), Node("y", "sum", ("x",), F, {"axes": (3,), "keepdims": False})]),
          "axes (3,) must be distinct, increasing and within rank 1", "y")


def test_type_mismatch() -> None:
    check(graph([x(), Node("y", "neg", ("x",), F)]), "type rule gives f64[3], but the declared type is f64[]", "y")
    check(graph([x(), x("z", F), Node("y", "add", ("x", "z"), F3)]), "operands must have the same type", "y")
    check(graph([x(), Node("y", "exp", ("x",), TensorType("i64", (3,)))]), "declared type is i64[3]", "y")


def test_const_literal_must_match_its_type() -> None:
    c = Node("c", "const", (), F3, {"value": np.zeros(2)})
    check(graph([c]), "literal is f64[2] but the declared type is f64[3]", "c")


def test_bad_outputs() -> None:
    check(graph([x()], {}), "the graph has no outputs")
    check(graph([x()], {"out": "missing"}), "output out refers to %missing, which is never defined")
    check(graph([x()], {"not-a-name": "x"}), "bad output name 'not-a-name'")


def test_bad_names() -> None:
    check(graph([x("bad name")]), "bad value name %bad name")


def test_param_values_must_fit() -> None:
    w = Node("w", "param", (), F3)
    check(graph([w], params={"w": np.zeros(2)}), "%w is f64[3], but its value is f64[2]", "w")
    check(graph([x()], params={"x": np.zeros(3)}), "not a param of the graph", "x")


def test_networkx_view_carries_every_field() -> None:
    def f(x, w):
        with gptir.scope("layer0"):
            h = gptir.relu(x * w)
            return (h * h).sum(), h

    g = gptir.trace(f, "f64[3]", gptir.Param(np.ones(3)))
    G = g.to_networkx()
    assert list(G.nodes) == list(g.nodes)
    for node in g:
        data = G.nodes[node.name]
        assert data["op"] == node.op
        assert data["type"] == str(node.type)
        assert data["shape"] == node.type.shape and data["dtype"] == node.type.dtype
        assert gptir.ir.attrs_equal(data["attrs"], node.attrs)
        assert data["scope"] == node.scope and data["loc"] == node.loc and data["backward"] == node.backward
    assert G.nodes["layer0.sum"]["attrs"] == {"axes": (0,), "keepdims": False}
    assert G.nodes["layer0.mul"]["scope"] == "layer0"
    assert G.nodes["layer0.mul"]["loc"].startswith("tests/test_verify.py:")
    # a value read twice by one node: one edge, both operand positions
    assert G.edges["layer0.relu", "layer0.mul.1"]["indices"] == [0, 1]
    assert G.graph["outputs"] == {"out0": "layer0.sum", "out1": "layer0.relu"}
    position = {name: i for i, name in enumerate(g.nodes)}
    assert list(nx.lexicographical_topological_sort(G, key=position.__getitem__)) == list(g.nodes)


def _check_networkx_order(g: Graph) -> None:
    """Non-circular: the graph's order must be a topological order of the networkx DiGraph, checked
    edge by edge, and networkx's generations must be the depth levels computed from the IR itself."""
    G = g.to_networkx()
    assert nx.is_directed_acyclic_graph(G)
    assert G.number_of_nodes() == len(g.nodes)
    assert G.number_of_edges() == sum(len(set(n.inputs)) for n in g)  # a repeated operand is one edge
    pos = {name: i for i, name in enumerate(g.nodes)}
    for u, v in G.edges:
        assert pos[u] < pos[v], (u, v)
        assert u in g.nodes[v].inputs  # the edge u -> v means v reads u
    depth: dict[str, int] = {}
    for node in g:  # longest path from a source, straight from the IR's operand lists
        depth[node.name] = 1 + max((depth[i] for i in node.inputs), default=-1)
    levels: dict[int, set[str]] = {}
    for name, d in depth.items():
        levels.setdefault(d, set()).add(name)
    assert [set(gen) for gen in nx.topological_generations(G)] == [levels[d] for d in sorted(levels)]


def test_networkx_order_is_a_topological_order() -> None:
    def f(x, w):
        with gptir.scope("layer0"):
            h = gptir.relu(x * w)
            a = gptir.exp(h) + h * h  # a diamond: h feeds two branches that meet again
            return (a * x).sum(), h

    g = gptir.trace(f, "f64[3]", gptir.Param(np.ones(3)))
    _check_networkx_order(g)
    gens = [sorted(gen) for gen in nx.topological_generations(g.to_networkx())]
    assert gens[0] == ["w", "x"] and gens[-1] == ["layer0.sum"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "mul", "neg", "exp"]), st.integers(0, 10**6),
                          st.integers(0, 10**6)), min_size=1, max_size=25))
def test_networkx_order_random_graphs(steps: list[tuple[str, int, int]]) -> None:
    from gptir.tracing import Builder

    b = Builder("rand")
    vals = [b.input("x", F3), b.param("w", F3, np.ones(3))]
    for op, i, j in steps:
        a, c = vals[i % len(vals)], vals[j % len(vals)]
        vals.append(b.emit(op, [a] if op in ("neg", "exp") else [a, c]))
    g = b.finish({"out": vals[-1], "first": vals[2]})
    _check_networkx_order(g)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "neg"]), st.integers(0, 10**6), st.integers(0, 10**6)),
                min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_toposort_fast_path_is_kahns_order(steps: list[tuple[str, int, int]], rnd) -> None:
    """toposort returns an already ordered list as it is without running Kahn's algorithm
    (in_topological_order): that is the order the algorithm gives, here networkx's
    lexicographical_topological_sort keyed by position, for ordered and shuffled lists alike."""
    from gptir.ir import in_topological_order, toposort

    nodes = [x(), x("w")]
    for k, (op, i, j) in enumerate(steps):
        a, c = nodes[i % len(nodes)].name, nodes[j % len(nodes)].name
        nodes.append(Node(f"v{k}", op, (a,) if op == "neg" else (a, c), F3))
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    for order in (nodes, shuffled):
        G = nx.DiGraph()
        G.add_nodes_from(n.name for n in order)
        G.add_edges_from((i, n.name) for n in order for i in n.inputs)
        pos = {n.name: p for p, n in enumerate(order)}
        want = list(nx.lexicographical_topological_sort(G, key=pos.__getitem__))
        assert [n.name for n in toposort(order)] == want
        assert in_topological_order(order) == ([n.name for n in order] == want)
    assert in_topological_order(nodes) and toposort(nodes) == nodes
    # what the fast path must leave to the full algorithm (and its messages)
    assert not in_topological_order(nodes + [nodes[0]])  # a repeated name
    assert not in_topological_order([Node("s", "neg", ("s",), F3)])  # a self loop
    with pytest.raises(VerifyError, match="duplicate definition of %x"):
        toposort(nodes + [nodes[0]])
