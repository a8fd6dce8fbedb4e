"""The compiled backend: bit-identical to the interpreter (random graphs, microgpt loss and training
step), safe against hostile IR, and checked at its inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptir.codegen import REUSE_MIN_ELEMENTS, CodegenError, compile_graph, generate_source, plan
from gptir.interp import ExecError, run
from gptir.ir import Graph, Node, TensorType, make_graph, verify
from gptir.ops import OPS
from gptir.passes import optimize
from gptir.tracing import (Builder, broadcast_to, cast, concat, cos, exp, gather, log, relu, reshape, scatter_add,
                           sigmoid, sin, sqrt, stop_gradient, tanh, transpose, where)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F = TensorType("f64", (2, 3))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape, bits and layout (later sums and matmuls depend on it). The stride of an
    axis of length 1 is never used, and numpy itself sets it differently from case to case."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and layout(a) == layout(b) and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def layout(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s for s, d in zip(a.strides, a.shape) if d > 1)


def assert_same(x: dict, y: dict) -> None:
    assert list(x) == list(y)
    for k in x:
        assert same_bits(x[k], y[k]), (k, x[k], y[k])


# -- a strategy for random graphs over (almost) every op ------------------------------------------

SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, math.inf, -math.inf, math.nan, 1e-300, 3.0])
VALUES = st.one_of(SPECIAL, st.floats(-10, 10, allow_nan=False))


@st.composite
def random_graphs(draw, t: TensorType = F) -> tuple[Graph, dict[str, np.ndarray]]:
    b = Builder("rand")
    x = b.input("x", t)
    y = b.param("y", t, np.zeros(t.shape))
    pool = [x, y]
    for _ in range(draw(st.integers(1, 14))):
        a = draw(st.sampled_from(pool))
        same = [p for p in pool if p.shape == a.shape and p.dtype == "f64"]
        other = draw(st.sampled_from(same)) if draw(st.booleans()) else draw(SPECIAL)
        kind = draw(st.sampled_from(
            ["add", "sub", "mul", "div", "pow", "max2", "neg", "exp", "log", "relu", "stop", "sum", "max",
             "transpose", "reshape", "matmul", "where", "cast", "slice", "concat", "gather", "scatter",
             "broadcast", "mul1", "negneg", "tanh", "sigmoid", "sqrt", "abs", "sin", "cos", "min2", "cmp", "min",
             "argmax", "sslice"]))
        r = None
        if kind in ("add", "sub", "mul", "div", "pow"):
            r = {"add": a + other, "sub": a - other, "mul": a * other, "div": a / other,
                 "pow": a ** other}[kind]
        elif kind == "max2":
            r = b.emit("maximum", [a, a if isinstance(other, float) else other])
        elif kind == "mul1":
            r = a * 1.0 if draw(st.booleans()) else 1.0 * a
        elif kind == "negneg":
            r = -(-a)
        elif kind in ("neg", "exp", "log", "relu", "stop"):
            r = {"neg": lambda t: -t, "exp": exp, "log": log, "relu": relu, "stop": stop_gradient}[kind](a)
        elif kind in ("sum", "max") and a.ndim:
            axes = tuple(sorted(draw(st.sets(st.integers(0, a.ndim - 1)))))
            keep = draw(st.booleans())
            r = a.sum(axes, keep) if kind == "sum" else (a.max(axes, keep) if all(a.shape) else None)
        elif kind == "transpose" and a.ndim >= 2:
            r = transpose(transpose(a)) if draw(st.booleans()) else transpose(a)
        elif kind == "reshape" and a.ndim:
            r = reshape(reshape(a, (a.type.size,)), a.shape) if draw(st.booleans()) else reshape(a, (a.type.size,))
        elif kind == "matmul" and a.ndim == 2:
            r = a @ transpose(draw(st.sampled_from(same)))
        elif kind == "where":
            r = where(a > other, a, other)
        elif kind == "cast":
            r = cast(a > other, "f64")
        elif kind == "slice" and a.ndim and a.shape[0] >= 1:
            r = a[:1]
        elif kind == "concat" and a.ndim:
            r = concat([a, a], 0)
        elif kind == "gather" and a.ndim and a.shape[0] >= 1:
            idx = draw(st.lists(st.integers(0, a.shape[0] - 1), min_size=1, max_size=4))
            r = gather(a, np.array(idx, np.int64))
        elif kind == "scatter" and a.ndim and a.shape[0] >= 1:
            idx = b.const(np.array(draw(st.lists(st.integers(0, 3), min_size=a.shape[0], max_size=a.shape[0])),
                                   np.int64))
            r = scatter_add(a, idx, 4)
        elif kind == "broadcast":
            r = broadcast_to(a, (2,) + a.shape) * 1.0
        elif kind in ("tanh", "sigmoid", "sqrt", "abs", "sin", "cos"):
            r = {"tanh": tanh, "sigmoid": sigmoid, "sqrt": sqrt, "abs": abs, "sin": sin, "cos": cos}[kind](a)
        elif kind == "min2":
            r = b.emit("minimum", [a, a if isinstance(other, float) else other])
        elif kind == "cmp":
            op = draw(st.sampled_from(["ge", "le", "lt", "ne", "eq"]))
            o = b.const(np.full(a.shape, other)) if isinstance(other, float) else other
            r = where(b.emit(op, [a, o]), a, o)
        elif kind == "min" and a.ndim and all(a.shape):
            r = a.min(tuple(sorted(draw(st.sets(st.integers(0, a.ndim - 1))))), draw(st.booleans()))
        elif kind == "argmax" and a.ndim and all(a.shape):
            r = cast(a.argmax(draw(st.integers(0, a.ndim - 1))), "f64")
        elif kind == "sslice" and a.ndim:
            r = a[tuple(slice(draw(st.none() | st.integers(-3, 3)), draw(st.none() | st.integers(-3, 3)),
                              draw(st.sampled_from([-2, -1, 2, 3]))) for _ in a.shape)]
        if r is not None and r.dtype == "f64":
            pool.append(r)
    outs = {f"o{i}": t for i, t in enumerate(pool[-3:])}
    g = b.finish(outs)
    vals = draw(st.lists(VALUES, min_size=2 * t.size, max_size=2 * t.size))
    inputs = {"x": np.array(vals[:t.size]).reshape(t.shape), "y": np.array(vals[t.size:]).reshape(t.shape)}
    if draw(st.booleans()):  # a non-C layout: both backends must see (and keep) the same strides
        inputs["x"] = np.asfortranarray(inputs["x"])
    return g, inputs


@SETTINGS
@given(random_graphs())
def test_compiled_matches_interpreter_bit_for_bit(case):
    g, inputs = case
    verify(g, OPS)
    assert_same(compile_graph(g)(inputs), run(g, inputs))


@SETTINGS
@given(random_graphs())
def test_optimised_compiled_matches_unoptimised_interpreter(case):
    g, inputs = case
    assert_same(compile_graph(optimize(g))(inputs), run(g, inputs))


@SETTINGS
@given(random_graphs(), st.sampled_from([1, 2, 3, 7]), st.booleans())
def test_programs_split_into_parts_match_the_interpreter_bit_for_bit(case, chunk, reuse):
    """A long program runs as part functions passing values between them; tiny parts here."""
    g, inputs = case
    f = compile_graph(g, reuse_min=0 if reuse else None, chunk=chunk)
    assert_same(f(inputs), run(g, inputs))
    n = plan(g, chunk=chunk).n_statements
    parts = f.source.count("def _part")
    assert parts == (math.ceil(n / chunk) if n > chunk else 0)
    assert f.source == generate_source(g, 0 if reuse else None, True, chunk)


def test_a_split_training_step_is_bit_identical_and_its_caller_only_calls_and_frees():
    from gptir.model import GPTConfig
    from gptir.optim import AdamConfig
    from gptir.train import step_graph

    g = optimize(step_graph(GPTConfig(vocab_size=27), AdamConfig(), 1000, 5))
    base = _microgpt_inputs(5)
    size = sum(v.size for k, v in base.items() if k not in ("tokens", "targets"))
    inputs = {**base, "adam.m": np.zeros(size), "adam.v": np.full(size, 0.5), "step": np.float64(3)}
    whole = compile_graph(g)
    split = compile_graph(g, chunk=40)
    assert "def _part" not in whole.source  # the training programs are shorter than CHUNK_STATEMENTS
    assert whole.source.count("def _part") == 0 and split.source.count("def _part") > 5
    ref = run(g, inputs)
    assert_same(split(inputs), ref)
    assert_same(whole(inputs), ref)
    caller = split.source[split.source.index("def _program"):].splitlines()[1:]
    assert all(line.startswith(("    (", "    del ", "    return ")) and ("_part" in line or "del" in line
               or "return" in line) for line in caller)
    assert any(line.startswith("    del ") for line in caller)  # values die between parts too


# -- microgpt ----------------------------------------------------------------------------------------


def _microgpt_inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    from gptir import rng as R
    from gptir.model import GPTConfig, init_params

    cfg = GPTConfig(vocab_size=27)
    params, _ = init_params(cfg, R.python_random(42))
    rs = np.random.RandomState(seed)
    inputs = dict(params)
    inputs["tokens"] = rs.randint(0, 27, n).astype(np.int64)
    inputs["targets"] = rs.randint(0, 27, n).astype(np.int64)
    return inputs


@pytest.mark.parametrize("n", [1, 5, 16])
def test_microgpt_loss_bit_identical(n):
    from gptir.model import GPTConfig, loss_graph

    g = loss_graph(GPTConfig(vocab_size=27), n)
    inputs = _microgpt_inputs(n)
    ref = run(g, inputs)
    assert_same(compile_graph(g)(inputs), ref)
    assert_same(compile_graph(optimize(g))(inputs), ref)
    assert 2.0 < float(ref["loss"]) < 5.0


def test_microgpt_training_steps_bit_identical():
    """Several chained training steps (outputs fed back as inputs, so layouts carry over)."""
    from gptir.model import GPTConfig
    from gptir.optim import AdamConfig
    from gptir.train import step_graph

    cfg = GPTConfig(vocab_size=27)
    state_i = state_c = None
    for step, n in enumerate([3, 16, 3, 7]):
        g = step_graph(cfg, AdamConfig(), 1000, n)
        prog = compile_graph(optimize(g))
        base = _microgpt_inputs(n, seed=step)
        if state_i is None:
            state_i = {k: base[k] for k in base if k not in ("tokens", "targets")}
            size = sum(v.size for v in state_i.values())
            state_i["adam.m"], state_i["adam.v"] = np.zeros(size), np.zeros(size)
            state_c = dict(state_i)
        data = {"tokens": base["tokens"], "targets": base["targets"], "step": np.float64(step)}
        out_i = run(g, {**state_i, **data})
        out_c = prog({**state_c, **data})
        assert_same(out_c, out_i)
        state_i = {k: v for k, v in out_i.items() if k != "loss"}
        state_c = {k: v for k, v in out_c.items() if k != "loss"}
    assert np.isfinite(float(out_i["loss"]))


# -- security ------------------------------------------------------------------------------------------

EVIL = "x\"); __import__('os').system('echo pwned') #\n'''"


def test_locations_scopes_and_graph_names_never_reach_the_source():
    b = Builder("evil'\"name")
    x = b.input("x", F)
    y = exp(x) * 2.0
    g = b.finish({"out": y})
    nodes = [n.replace(loc=EVIL, scope="a.b") for n in g.nodes.values()]
    g = make_graph(EVIL, nodes, g.outputs)
    src = generate_source(g)
    assert "__import__" not in src and "pwned" not in src and "'''" not in src and '"' not in src
    assert "evil" not in src
    xv = np.arange(6.0).reshape(2, 3)
    assert_same(compile_graph(g)({"x": xv}), {"out": np.exp(xv) * 2.0})


def test_unsafe_value_names_are_rejected():
    bad = Node("x); __import__('os')", "input", (), F)
    g = Graph("g", {bad.name: bad}, {"out": bad.name})
    with pytest.raises(CodegenError, match="unsafe value name"):
        generate_source(g)


def test_hostile_attribute_reprs_cannot_inject():
    class EvilInt(int):
        def __repr__(self) -> str:  # pragma: no cover - must never be called
            return "__import__('os')"

    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"out": x.sum(axis=1), "r": reshape(x, (6,))})
    node = g.nodes[g.outputs["out"]]
    g.nodes[node.name] = node.replace(attrs={"axes": (EvilInt(1),), "keepdims": False})
    node = g.nodes[g.outputs["r"]]
    g.nodes[node.name] = node.replace(attrs={"shape": (EvilInt(6),)})
    src = generate_source(g)
    assert "__import__" not in src and "_add.reduce(v_x, (1,), None, None, False)" in src
    out = compile_graph(g)({"x": np.arange(6.0).reshape(2, 3)})
    assert out["out"].tolist() == [3.0, 12.0] and out["r"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_constants_are_not_printed_into_the_source():
    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"out": x + np.full((2, 3), 123.456)})
    src = generate_source(g)
    assert "123.456" not in src
    assert_same(compile_graph(g)({"x": np.ones((2, 3))}), {"out": np.full((2, 3), 124.456)})


def test_malicious_ir_text_cannot_inject():
    import gptir.text as text_mod
    src_text = (
        'graph g {\n'
        '  in %x : f64[2]\n'
        '  %e = exp %x : f64[2] @a.b loc("\\"); __import__(\'os\').system(\'echo pwned\') #\\n")\n'
        '  output out = %e\n'
        '}\n'
    )
    g = text_mod.parse(src_text, "evil.ir")
    src = generate_source(g)
    assert "__import__" not in src and "pwned" not in src
    assert_same(compile_graph(g)({"x": np.array([0.0, 1.0])}), {"out": np.exp(np.array([0.0, 1.0]))})


# -- naming and the calling convention ------------------------------------------------------------------


def test_variable_names_are_sanitised_and_collision_free():
    b = Builder("g")
    a1 = b.input("a.b", F)
    a2 = b.input("a_b", F)
    g = b.finish({"out": a1 - a2})
    p = plan(g)
    names = [v for _, v in p.args]
    assert len(set(names)) == 2 and all(v.isidentifier() and v.startswith("v_a_b") for v in names)
    out = compile_graph(g)({"a.b": np.full((2, 3), 5.0), "a_b": np.full((2, 3), 2.0)})
    assert_same(out, {"out": np.full((2, 3), 3.0)})


def test_checked_inputs_params_defaults_and_errors():
    b = Builder("g")
    x = b.input("x", F)
    w = b.param("w", F, np.full((2, 3), 2.0))
    g = b.finish({"out": x * w, "s": (x * w).sum()})
    f = compile_graph(g)
    out = f({"x": [[1, 2, 3], [4, 5, 6]]})  # lists are converted like the interpreter does
    assert_same(out, run(g, {"x": np.array([[1, 2, 3], [4, 5, 6]], float)}))
    assert out["s"].shape == () and isinstance(out["s"], np.ndarray) and float(out["s"]) == 42.0
    out = f({"x": np.ones((2, 3)), "w": np.full((2, 3), 3.0)})  # params override the graph's values
    assert float(out["s"]) == 18.0
    with pytest.raises(ExecError, match="missing input"):
        f({})
    with pytest.raises(ExecError, match="unknown input"):
        f({"x": np.ones((2, 3)), "zz": np.ones(1)})
    with pytest.raises(ExecError, match="must be f64\\[2,3\\]"):
        f({"x": np.ones((3, 2))})


def test_runtime_errors_name_the_node():
    b = Builder("g")
    t = b.input("t", TensorType("f64", (3, 2)))
    i = b.input("i", TensorType("i64", (2,)))
    g = b.finish({"out": gather(t, i)})
    f = compile_graph(g)
    with pytest.raises(ExecError, match="gather"):
        f({"t": np.zeros((3, 2)), "i": np.array([0, 7])})


def test_constant_outputs_are_copies():
    b = Builder("g")
    x = b.input("x", F)
    g = b.finish({"x": x, "c": b.const(np.arange(3.0))})
    f = compile_graph(g)
    first = f({"x": np.ones((2, 3))})
    first["c"][0] = 99.0
    assert f({"x": np.ones((2, 3))})["c"][0] == 0.0


def test_hoisting_and_broadcast_elision_shorten_the_program():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (4, 5)))
    s = x.sum(axis=1, keepdims=True)
    y = (x - s) * 0.5 + 1.0  # s broadcasts at run time; 0.5 and 1.0 are hoisted constant broadcasts
    g = b.finish({"out": y})
    p = plan(g)
    assert p.n_statements == 4  # sum, sub, mul, add: no broadcast_to at run time
    assert "_broadcast_to" not in p.source
    xv = np.arange(20.0).reshape(4, 5)
    assert_same(compile_graph(g)({"x": xv}), run(g, {"x": xv}))


def test_every_op_case_compiles_bit_identically():
    """Every op of the table (its evaluation cases from test_ops_eval), compiled, against the
    interpreter, with and without buffer reuse."""
    from test_ops_eval import CASES

    for op, cases in CASES.items():
        for args, attrs, _ in cases:
            b = Builder(op)
            ins = [b.input(f"a{i}", TensorType.of(np.asarray(a))) for i, a in enumerate(args)]
            g = b.finish({"out": b.emit(op, ins, attrs)})
            inputs = {f"a{i}": a for i, a in enumerate(args)}
            want = run(g, inputs)
            for reuse in (REUSE_MIN_ELEMENTS, None):
                assert_same(compile_graph(g, reuse_min=reuse)(inputs), want)


def test_unverified_garbage_gives_codegen_errors_not_crashes():
    x = Node("x", "input", (), F)
    bad_op = Node("y", "frobnicate", ("x",), F)
    with pytest.raises(CodegenError, match="unknown op"):
        generate_source(Graph("g", {"x": x, "y": bad_op}, {"out": "y"}))
    bad_attr = Node("y", "reshape", ("x",), TensorType("f64", (6,)), {"shape": ("6",)})
    with pytest.raises(CodegenError, match="must be ints"):
        generate_source(Graph("g", {"x": x, "y": bad_attr}, {"out": "y"}))
    no_attr = Node("y", "reshape", ("x",), TensorType("f64", (6,)), {})
    with pytest.raises(CodegenError, match="missing attribute"):
        generate_source(Graph("g", {"x": x, "y": no_attr}, {"out": "y"}))


def test_programs_for_different_lengths_share_their_source():
    """Shapes are closure constants, so the per-length programs compile once (and stay exact)."""
    from gptir.model import GPTConfig, loss_graph

    cfg = GPTConfig(vocab_size=27)
    g5, g7 = optimize(loss_graph(cfg, 5)), optimize(loss_graph(cfg, 7))
    assert generate_source(g5) == generate_source(g7)
    for n, g in ((5, g5), (7, g7)):
        inputs = _microgpt_inputs(n)
        assert_same(compile_graph(g)(inputs), run(loss_graph(cfg, n), inputs))


def test_scalar_constants_and_lifted_shapes_do_not_collide():
    b = Builder("g")
    s = b.input("s", TensorType("f64", ()))
    x = b.input("x", TensorType("f64", (2, 3)))
    k = b.const(2.0)
    y = s * k  # k becomes a numpy-scalar closure constant
    r1 = reshape(x, (3, 2))
    z = (y + k) * k  # k again (same closure name, inserted twice)
    r2 = reshape(x, (6,))
    g = b.finish({"y": y, "z": z, "r1": r1, "r2": r2})
    inputs = {"s": np.float64(1.5), "x": np.arange(6.0).reshape(2, 3)}
    out = compile_graph(g)(inputs)
    assert_same(out, run(g, inputs))
    assert out["r1"].shape == (3, 2) and out["r2"].shape == (6,) and float(out["z"]) == 10.0


# -- buffer reuse and freeing dead values ------------------------------------------------------------------

F8 = TensorType("f64", (8,))


def _reuse_graph_cases():
    """Graphs over arrays big enough for every reusable op (exp/log need >= 64 bytes), 1-D
    (fresh 1-D results are C-contiguous whatever the inputs) and 2-D (only matmuls prove it)."""
    return st.one_of(random_graphs(TensorType("f64", (16,))), random_graphs(TensorType("f64", (4, 8))),
                     random_graphs())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_reuse_graph_cases(), st.booleans())
def test_reuse_forced_on_is_bit_identical_and_leaves_inputs_alone(case, optimised):
    g, inputs = case
    if optimised:
        g = optimize(g)
    saved = {k: v.copy(order="K") for k, v in inputs.items()}
    ref = run(g, inputs)
    f = compile_graph(g, reuse_min=0, free_dead=True)
    first = f(inputs)
    kept = {k: v.copy(order="K") for k, v in first.items()}
    assert_same(first, ref)
    second = f(inputs)  # no state carried between calls ...
    assert_same(second, ref)
    for k in first:  # ... and the first call's results are not overwritten by the second
        assert same_values(first[k], kept[k]), k
    for k in inputs:  # inputs are never written
        assert same_values(inputs[k], saved[k]) and inputs[k].flags.f_contiguous == saved[k].flags.f_contiguous


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bits, whatever the layout (a copy may normalise a view's strides)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _outs(src: str) -> list[str]:
    return [line.strip() for line in src.splitlines() if "out=" in line]


def test_elementwise_chain_reuses_its_own_buffers():
    b = Builder("g")
    x = b.input("x", F8)
    y = exp(x * 2.0) + 1.0
    g = b.finish({"y": y})
    src = generate_source(g, reuse_min=0)
    assert _outs(src) == ["v_exp = _exp(v_mul, out=v_mul)", "v_add = _add(v_exp, v_const_1, out=v_exp)"]
    assert plan(g, reuse_min=0).n_reused == 2
    assert "out=" not in generate_source(g, reuse_min=None) and "del " not in generate_source(g, None, False)
    assert "out=" not in generate_source(g, reuse_min=9)  # below the threshold: fresh arrays
    xv = np.linspace(-1.0, 1.0, 8)
    out = compile_graph(g, reuse_min=0)({"x": xv})
    assert_same(out, run(g, {"x": xv}))
    assert out["y"].tolist() == (np.exp(xv * 2.0) + 1.0).tolist()


def test_a_dead_value_that_is_not_an_operand_is_reused():
    b = Builder("g")
    x = b.input("x", F8)
    m = x * 2.0
    s = m.sum()  # m's last use: its buffer is free from here on
    y = exp(x) * s  # exp(x) cannot be in place (x is an input): it takes m's buffer
    g = b.finish({"y": y})
    src = generate_source(g, reuse_min=0)
    assert "v_exp = _exp(v_x, out=v_mul)" in src
    xv = np.arange(8.0) / 8
    assert_same(compile_graph(g, reuse_min=0)({"x": xv}), run(g, {"x": xv}))


def test_inputs_params_and_constants_are_never_donors():
    b = Builder("g")
    x = b.input("x", F8)
    w = b.param("w", F8, np.full(8, 3.0))
    c = b.const(np.arange(8.0))
    g = b.finish({"y": (x + w) * c, "z": -x})
    src = generate_source(g, reuse_min=0)
    assert _outs(src) == ["v_mul = _multiply(v_add, v_const, out=v_add)"]  # only the program's own sum
    xv, wv = np.ones(8), np.full(8, 2.0)
    out = compile_graph(g, reuse_min=0)({"x": xv, "w": wv})
    assert xv.tolist() == [1.0] * 8 and wv.tolist() == [2.0] * 8
    assert out["y"].tolist() == [3.0 * i for i in range(8)] and out["z"].tolist() == [-1.0] * 8
    assert_same(compile_graph(g, reuse_min=0)({"x": xv}), run(g, {"x": xv}))  # the param's default too
    assert g.params["w"].tolist() == [3.0] * 8


def test_outputs_are_never_donors_but_may_be_reused_buffers():
    b = Builder("g")
    x = b.input("x", F8)
    m = x * 2.0
    y = exp(m)
    g = b.finish({"m": m, "y": y})
    assert "out=" not in generate_source(g, reuse_min=0)  # m is returned: it must keep its values
    xv = np.arange(8.0)
    out = compile_graph(g, reuse_min=0)({"x": xv})
    assert out["m"].tolist() == (xv * 2.0).tolist() and not np.shares_memory(out["m"], out["y"])
    g2 = b.finish({"y": y})  # the same without m returned: y is written over m and returned
    assert _outs(generate_source(g2, reuse_min=0)) == ["v_exp = _exp(v_mul, out=v_mul)"]
    assert_same(compile_graph(g2, reuse_min=0)({"x": xv}), run(g2, {"x": xv}))


def test_a_live_view_keeps_its_base_from_being_overwritten():
    b = Builder("g")
    x = b.input("x", F8)
    m = x * 2.0
    r = reshape(m, (2, 4))  # a view of m's buffer
    y = exp(m)  # m's last direct use, but r still reads the buffer below
    z = r * 3.0
    g = b.finish({"y": y, "z": z})
    src = generate_source(g, reuse_min=0)
    assert "out=v_mul" not in src and _outs(src) == []
    xv = np.arange(8.0) / 4
    out = compile_graph(g, reuse_min=0)({"x": xv})
    assert_same(out, run(g, {"x": xv}))
    assert out["z"].ravel().tolist() == (xv * 6.0).tolist()
    # the same graph with the view read before exp: m is dead then, and exp overwrites it
    b = Builder("g")
    x = b.input("x", F8)
    m = x * 2.0
    z = reshape(m, (2, 4)) * 3.0
    y = exp(m)
    g = b.finish({"y": y, "z": z})
    assert "v_exp = _exp(v_mul, out=v_mul)" in generate_source(g, reuse_min=0)
    assert_same(compile_graph(g, reuse_min=0)({"x": xv}), run(g, {"x": xv}))


def test_no_in_place_when_another_operand_views_the_donor():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (4, 4)))
    a = x @ x  # a fresh C-contiguous matrix
    y = a + transpose(a)  # a.T reads a's buffer in another order
    g = b.finish({"y": y})
    assert _outs(generate_source(g, reuse_min=0)) == []
    xv = np.arange(16.0).reshape(4, 4)
    assert_same(compile_graph(g, reuse_min=0)({"x": xv}), run(g, {"x": xv}))


def test_no_reuse_without_a_proved_layout_or_across_shapes_and_dtypes():
    b = Builder("g")
    x = b.input("x", F)  # any layout: x * 2 may be Fortran-ordered, like the interpreter's
    y = exp(x * 2.0)
    s = b.input("s", F8)
    k = cast((s * 2.0) > 1.0, "f64")  # a bool result never takes an f64 buffer and vice versa
    g = b.finish({"y": y, "k": k})
    assert _outs(generate_source(g, reuse_min=0)) == []
    xv = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    inputs = {"x": xv, "s": np.arange(8.0)}
    assert_same(compile_graph(g, reuse_min=0)(inputs), run(g, inputs))


def test_tiny_exp_and_log_stay_out_of_place():
    b = Builder("g")
    x = b.input("x", TensorType("f64", (7,)))  # 56 bytes: numpy may pick another kernel in place
    g = b.finish({"y": log(exp(x * 2.0) * 2.0)})
    assert _outs(generate_source(g, reuse_min=0)) == ["v_mul_1 = _multiply(v_exp, v_const_1, out=v_exp)"]


def test_dead_values_are_dropped_but_outputs_are_not():
    b = Builder("g")
    x = b.input("x", F8)
    m = x * 2.0
    y = m + 1.0
    z = m * 3.0
    g = b.finish({"y": y, "z": z})
    src = generate_source(g, reuse_min=None, free_dead=True)
    dels = [line.strip() for line in src.splitlines() if line.strip().startswith("del ")]
    assert dels == ["del v_mul"] and src.index("del v_mul") > src.index("v_mul_1 =")
    xv = np.arange(8.0)
    assert_same(compile_graph(g)({"x": xv}), run(g, {"x": xv}))


def test_training_step_reuses_buffers_by_default():
    from gptir.model import GPTConfig
    from gptir.optim import AdamConfig
    from gptir.train import step_graph

    assert REUSE_MIN_ELEMENTS is not None
    p = plan(optimize(step_graph(GPTConfig(vocab_size=27), AdamConfig(), 1000, 5)))
    assert p.n_reused >= 10 and p.source.count("out=") == p.n_reused and "del " in p.source


def test_batched_training_steps_with_reuse_stay_bit_identical():
    """Chained batched steps (mask, padding): reused buffers and dropped values change no bit, and
    the state fed back in (views of the program's buffers) is never overwritten by the next call."""
    from gptir import rng as R
    from gptir.model import GPTConfig, init_params
    from gptir.optim import AdamConfig
    from gptir.train import step_graph

    cfg = GPTConfig(vocab_size=27, n_embd=32, n_layer=2)
    params, _ = init_params(cfg, R.python_random(1))
    size = sum(v.size for v in params.values())
    state_i = {**params, "adam.m": np.zeros(size), "adam.v": np.zeros(size)}
    state_c = dict(state_i)
    rs = np.random.RandomState(0)
    for step, n in enumerate([5, 9, 5]):
        g = step_graph(cfg, AdamConfig(), 100, n, 4)
        prog = compile_graph(optimize(g))
        data = {"tokens": rs.randint(0, 27, (4, n)), "targets": rs.randint(0, 27, (4, n)),
                "mask": rs.rand(4, n) > 0.2, "step": np.float64(step)}
        before = {k: v.copy() for k, v in state_c.items()}
        out_i = run(g, {**state_i, **data})
        out_c = prog({**state_c, **data})
        assert_same(out_c, out_i)
        assert all(same_values(state_c[k], before[k]) for k in before)
        state_i = {k: v for k, v in out_i.items() if k != "loss"}
        state_c = {k: v for k, v in out_c.items() if k != "loss"}


# -- the input layout contract -----------------------------------------------------------------------------


def _layout_sensitive(shape: tuple[int, ...]) -> np.ndarray:
    """Data whose full sum differs bit-wise between C and Fortran order (the summation order differs)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        base = rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 8, shape)
        if np.asfortranarray(base).sum().tobytes() != base.sum().tobytes():
            return base
    raise AssertionError("no layout-sensitive data found")  # pragma: no cover


@pytest.mark.parametrize("checked", [True, False])
def test_inputs_are_bound_c_contiguous_by_both_backends(checked):
    """Passes assume inputs and params are C-contiguous (so x*1 -> x is exact), and the compiled code
    writes ``out=`` into C buffers: both backends copy any other layout to C order before running,
    and pass C-contiguous arrays through without a copy."""
    t = TensorType("f64", (4, 6))
    b = Builder("g")
    x = b.input("x", t)
    w = b.param("w", t, np.ones(t.shape))
    m = x * 2.0
    s1 = m.sum()  # m is dead from here: x * w may be written into its buffer
    g = b.finish({"same": x, "s1": s1, "s2": (x * w).sum(), "s3": (-(-(x * 1.0))).sum(), "w": w})
    o = optimize(g)
    assert g.nodes[g.outputs["s3"]].inputs != ("x",) and o.nodes[o.outputs["s3"]].inputs == ("x",)
    base = _layout_sensitive(t.shape)
    ones = np.ones(t.shape)
    want = run(g, {"x": base, "w": ones})
    assert float(want["s3"]) == float(base.sum()) and bits_equal(want["s3"], base.sum())
    compiled = compile_graph(o, checked=checked)
    assert "_multiply(v_x, v_w, out=v_mul)" in compiled.source  # x * w goes into 2x's C buffer
    variants = [np.asfortranarray(base), base.T.copy().T, np.repeat(base, 2, 1)[:, ::2],
                np.flipud(np.flipud(base).copy())]  # negative strides
    for xv in variants:
        assert not xv.flags.c_contiguous and same_values(xv, base)
        saved = xv.copy(order="K")
        for out in (run(g, {"x": xv, "w": np.asfortranarray(ones)}), run(o, {"x": xv}),
                    compiled({"x": xv, "w": np.asfortranarray(ones)})):
            assert_same(out, want)
            assert out["same"].flags.c_contiguous and out["same"] is not xv
        assert same_values(xv, saved) and not xv.flags.c_contiguous  # the caller's array is copied, not changed
    for out in (run(o, {"x": base, "w": ones}), compiled({"x": base, "w": ones})):
        assert out["same"] is base and out["w"] is ones  # C-contiguous arrays are not copied


def bits_equal(a, b) -> bool:
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_bind_inputs_copies_only_non_c_layouts():
    from gptir.interp import bind_input, bind_inputs

    b = Builder("g")
    x = b.input("x", F)
    i = b.input("i", TensorType("i64", (3, 2)))
    g = b.finish({"out": x.sum(), "j": i})
    xv, iv = np.arange(6.0).reshape(2, 3), np.arange(6).reshape(2, 3).T  # i: a transposed view
    env = bind_inputs(g, {"x": xv, "i": iv})
    assert env["x"] is xv
    assert env["i"].flags.c_contiguous and env["i"].tolist() == iv.tolist() and env["i"].dtype == np.int64
    a = bind_input(g.nodes["x"], [[1, 2, 3], [4, 5, 6]])
    assert a.flags.c_contiguous and a.dtype == np.float64 and a.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    with pytest.raises(ExecError, match="must be f64\\[2,3\\]"):
        bind_input(g.nodes["x"], np.ones((3, 2)).T.T)
