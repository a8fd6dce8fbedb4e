"""The native backend (C through the system compiler): every op of the table lowers and matches the
interpreter within 1e-12 (bit for bit where the arithmetic order is the same), random graphs, the
training step and the reference runs, safety of the generated source, the build cache and the CLI.

Tests that build C skip, saying so, where no C compiler is found (``.ci/run`` installs one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from gptir import native
from gptir import train as T
from gptir.interp import ExecError, run
from gptir.ir import GptirError, Graph, Node, TensorType
from gptir.ops import C_KINDS, OPS, CLower, OpDef, _unary
from gptir.passes import optimize
from gptir.tracing import Builder

from test_codegen import random_graphs  # graphs over (almost) every op, with special values
from backend_checks import DOCS, SMALL, TOL, check_cli_exec_train_sample, check_training_step, close, gptir
from test_ops_eval import CASES  # every op's evaluation cases (that test checks they cover the table)

ROOT = Path(__file__).resolve().parents[1]
NAMES = ROOT.parent / "shared" / "data" / "names.txt"
NO_CC = native.available()
needs_cc = pytest.mark.skipif(NO_CC is not None, reason=NO_CC or "")
# ops whose C arithmetic is numpy's own, operation for operation (the module docstring says why the others differ)
BIT_IDENTICAL = {"add", "sub", "mul", "div", "neg", "maximum", "minimum", "relu", "abs", "sqrt", "gt", "ge", "lt",
                 "le", "eq", "ne", "where", "cast", "stop_gradient", "sum", "max", "min", "argmax", "reshape",
                 "transpose", "broadcast", "slice", "concat", "gather", "scatter_add"}


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """Every program of this module is built into one temporary cache (never the user's)."""
    old = os.environ.get(native.CACHE_ENV)
    os.environ[native.CACHE_ENV] = str(tmp_path_factory.mktemp("native-cache"))
    yield
    if old is None:
        os.environ.pop(native.CACHE_ENV, None)
    else:
        os.environ[native.CACHE_ENV] = old


def same_values(got: np.ndarray, want: np.ndarray) -> bool:
    """Bit for bit (NaNs equal to NaNs; the sign of a zero may differ, as between numpy's own kernels)."""
    got, want = np.asarray(got), np.asarray(want)
    return got.dtype == want.dtype and got.shape == want.shape and bool(np.array_equal(got, want, equal_nan=True)
                                                                       if want.dtype.kind == "f" else
                                                                       np.array_equal(got, want))


# -- the op table --------------------------------------------------------------------------------------


def test_every_op_in_the_table_lowers_to_c() -> None:
    assert native.uncovered_ops() == [], "ops without a C lowering (give them a c=CLower(...) entry in gptir/ops.py)"


def test_an_op_without_a_lowering_is_caught(monkeypatch) -> None:
    bare = OpDef("mystery", 1, _unary(("f64",)), lambda a, at: a[0], lambda a, at: a[0], kind="elementwise")
    odd = OpDef("odd", 1, _unary(("f64",)), lambda a, at: a[0], lambda a, at: a[0], c=CLower("telepathy"))
    monkeypatch.setitem(OPS, "mystery", bare)
    monkeypatch.setitem(OPS, "odd", odd)
    assert native.uncovered_ops() == ["mystery", "odd"]
    assert "telepathy" not in C_KINDS


def _one_op_graph(op: str, args: list, attrs: dict):
    b = Builder(op)
    ins = [b.input(f"a{i}", TensorType.of(np.asarray(a))) for i, a in enumerate(args)]
    return b.finish({"out": b.emit(op, ins, attrs)}), {f"a{i}": np.asarray(a) for i, a in enumerate(args)}


@pytest.fixture(scope="module")
def all_cases(_cache):
    """Every evaluation case of every op as one graph (one compiler call), f64 and f32 cases apart."""
    progs = {}
    for dtype in ("f64", "f32"):
        b = Builder(f"cases_{dtype}")
        outs, inputs = {}, {}
        for op, cases in CASES.items():
            for k, (args, attrs, _) in enumerate(cases):
                args = [np.asarray(a) for a in args]
                if dtype == "f32":
                    if not any(a.dtype == np.float64 for a in args):
                        continue
                    args = [a.astype(np.float32) if a.dtype == np.float64 else a for a in args]
                ins = []
                for i, a in enumerate(args):
                    name = f"{op}_{k}_a{i}"
                    ins.append(b.input(name, TensorType.of(a)))
                    inputs[name] = a
                outs[f"{op}_{k}"] = b.emit(op, ins, attrs)
        g = b.finish(outs)
        progs[dtype] = (native.compile_graph(g), run(g, inputs), inputs)
    return progs


@needs_cc
@pytest.mark.parametrize("op,case", [(op, i) for op, cases in CASES.items() for i in range(len(cases))])
def test_op_matches_the_interpreter(all_cases, op: str, case: int) -> None:
    prog, want, inputs = all_cases["f64"]
    got = prog(inputs)[f"{op}_{case}"]
    assert isinstance(got, np.ndarray)
    assert close(got, want[f"{op}_{case}"]), (op, got, want[f"{op}_{case}"])
    if op in BIT_IDENTICAL:
        assert same_values(got, want[f"{op}_{case}"]), (op, got, want[f"{op}_{case}"])


@needs_cc
def test_every_float_op_runs_on_f32(all_cases) -> None:
    prog, want, inputs = all_cases["f32"]
    got = prog(inputs)
    assert list(got) == list(want) and len(got) > 40
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert close(got[k], want[k], 1e-6), (k, got[k], want[k])


@needs_cc
def test_one_op_programs_and_edge_values() -> None:
    b = Builder("c")
    x = b.input("x", TensorType("f64", (4,)))
    c = b.const(np.array([1.5, -0.0, np.inf, np.nan]))
    g = b.finish({"sum": b.emit("add", [x, c], {}), "log": b.emit("log", [x], {}), "c": c, "x": x})
    xv = np.array([0.0, -1.0, 1.0, np.inf])
    got, want = native.compile_graph(g)({"x": xv}), run(g, {"x": xv})
    for k in want:
        assert same_values(got[k], want[k]), k
    assert got["log"][0] == -np.inf and np.isnan(got["log"][1])
    got["c"][0] = 99.0  # outputs are the caller's arrays: the program's constants stay as they were
    assert native.compile_graph(g)({"x": xv})["c"][0] == 1.5


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_cc
@SETTINGS
@given(random_graphs())
def test_random_graphs_match_the_interpreter(case) -> None:
    g, inputs = case
    got, want = native.compile_graph(g)(inputs), run(g, inputs)
    assert list(got) == list(want)
    for k in want:
        assert close(got[k], want[k]), (k, got[k], want[k])


@needs_cc
@SETTINGS
@given(random_graphs())
def test_optimised_random_graphs_match_the_interpreter(case) -> None:
    g, inputs = case
    got, want = native.compile_graph(optimize(g))(inputs), run(g, inputs)
    for k in want:
        assert close(got[k], want[k]), (k, got[k], want[k])


# -- errors and safety ---------------------------------------------------------------------------------


@needs_cc
def test_an_out_of_range_index_is_the_interpreters_one_line_error() -> None:
    b = Builder("g")
    table = b.input("table", TensorType("f64", (3, 2)))
    idx = b.input("idx", TensorType("i64", (2,)))
    upd = b.input("upd", TensorType("f64", (2, 2)))
    g = b.finish({"rows": b.emit("gather", [table, idx], {}), "acc": b.emit("scatter_add", [upd, idx], {"size": 3})})
    prog = native.compile_graph(g)
    ok = {"table": np.arange(6.0).reshape(3, 2), "idx": np.array([2, 0]), "upd": np.ones((2, 2))}
    assert prog(ok)["rows"].tolist() == [[4.0, 5.0], [0.0, 1.0]]
    assert prog(ok)["acc"].tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    for bad in (3, -1):
        with pytest.raises(ExecError, match="index out of range") as e:
            prog({**ok, "idx": np.array([0, bad])})
        assert "\n" not in str(e.value) and "%gather = gather" in str(e.value)


@needs_cc
def test_inputs_are_checked_like_the_interpreters() -> None:
    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    prog = native.compile_graph(b.finish({"y": x * x}))
    assert prog({"x": [1, 2]})["y"].tolist() == [1.0, 4.0]
    assert prog({"x": np.array([1.0, 5.0, 2.0])[::2]})["y"].tolist() == [1.0, 4.0]  # a strided view is copied
    with pytest.raises(ExecError, match="missing input"):
        prog({})
    with pytest.raises(ExecError, match="must be f64"):
        prog({"x": [1, 2, 3]})
    with pytest.raises(ExecError, match="unknown input"):
        prog({"x": [1, 2], "z": 1})


def test_nothing_from_the_ir_file_reaches_the_source_but_names_and_numbers() -> None:
    """Locations, scopes and the graph's name never appear; names must be identifiers; floats are exact."""
    from gptir.text import parse

    text = ('graph evil_name_xyz {\n  in %x : f64[2] loc("*/ system(\\"rm -rf\\"); /*")\n'
            '  %c = const [0.1, -inf] : f64[2]\n  %y = add %x, %c : f64[2] @scope_qq\n  output y = %y\n}\n')
    g = parse(text)
    src = native.generate_source(g)
    assert "rm -rf" not in src and "evil_name_xyz" not in src and "scope_qq" not in src
    assert float.fromhex("0x1.999999999999ap-4") == 0.1 and "0x1.999999999999ap-4" in src and "(-INFINITY)" in src
    bad = Node("x[0]; system(1)", "input", (), TensorType("f64", (2,)))
    with pytest.raises(native.NativeError, match="unsafe value name"):
        native.generate_source(Graph("g", {bad.name: bad}, {"out": bad.name}))
    assert native.c_number(np.nan, "f64") == "NAN" and native.c_number(-2 ** 63, "i64").startswith("(-INT64_C")
    assert native.c_number(1.5, "f32") == "((float)0x1.8000000000000p+0)"


@needs_cc
def test_gptir_compile_graph_backend_native() -> None:
    import gptir

    b = Builder("m")
    x = b.input("x", TensorType("f64", (3,)))
    g = b.finish({"y": b.emit("exp", [x], {}).sum()})
    x0 = np.array([0.5, -1.0, 2.0])
    assert close(gptir.compile_graph(g, backend="native")({"x": x0})["y"], gptir.compile_graph(g)({"x": x0})["y"])
    with pytest.raises(GptirError, match="choose from compiled, jax, native"):
        gptir.compile_graph(g, backend="tpu")


# -- the build cache -------------------------------------------------------------------------------------


@needs_cc
def test_cache_builds_once_and_rebuilds_a_corrupt_entry(tmp_path) -> None:
    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    g = b.finish({"y": x + x})
    cold = native.compile_graph(g, cache_dir=str(tmp_path))
    warm = native.compile_graph(g, cache_dir=str(tmp_path))
    assert (cold.build.cached, warm.build.cached) == (False, True) and cold.build.path == warm.build.path
    assert os.listdir(tmp_path) == [os.path.basename(cold.build.path)]  # no temporaries left behind
    # a corrupt entry in another folder (this process has the first one loaded: the loader would reuse it)
    other = tmp_path / "other"
    other.mkdir()
    (other / os.path.basename(cold.build.path)).write_bytes(b"not a shared object")
    again = native.compile_graph(g, cache_dir=str(other))
    assert not again.build.cached and again({"x": [1.0, 2.0]})["y"].tolist() == [2.0, 4.0]
    assert (other / os.path.basename(cold.build.path)).read_bytes() == Path(cold.build.path).read_bytes()


@needs_cc
def test_index_entry_loads_without_making_the_graph(tmp_path) -> None:
    """A program named by ``index`` is found again by that name: no graph made, no C generated; a
    malformed entry, or one whose shared object is gone, is made and built again."""
    made = []

    def make() -> Graph:
        made.append(1)
        b = Builder("m")
        x = b.input("x", TensorType("f64", (2,)))
        return b.finish({"y": x * 3.0})

    cold = native.compile_graph(make, cache_dir=str(tmp_path), index="times three")
    assert made == [1] and not cold.build.cached
    warm = native.compile_graph(make, cache_dir=str(tmp_path), index="times three")
    assert made == [1] and warm.build.cached and warm.build.key == cold.build.key
    assert warm({"x": [1.0, 2.0]})["y"].tolist() == [3.0, 6.0] and len(made) == 2  # the checked call made it
    other = native.compile_graph(make, cache_dir=str(tmp_path), index="times three, another recipe")
    assert len(made) == 3 and other.build.cached  # a new index entry; the same program text
    entry = tmp_path / f"gptir-index-{native.index_key('times three')[:40]}.json"
    body = json.loads(entry.read_text())
    assert body["inputs"] == [["x", [2], "float64"]] and body["outputs"] == [["y", [2], "float64"]]
    for bad in ({**body, "inputs": [["x", [-2], "float64"]]}, {**body, "key": "0" * 64}, "[]"):
        entry.write_text(json.dumps(bad) if not isinstance(bad, str) else bad)
        n = len(made)
        again = native.compile_graph(make, cache_dir=str(tmp_path), index="times three")
        assert len(made) == n + 1 and again.source.startswith("/* gptir native program")
    assert json.loads(entry.read_text()) == body  # rewritten whole


def test_without_a_compiler_the_backend_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert native.available() == native.NO_COMPILER
    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    with pytest.raises(native.NativeError, match="needs a C compiler"):
        native.compile_graph(b.finish({"y": x + x}))


@needs_cc
def test_a_compiler_failure_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'broken-cc: error: out of luck' >&2\nexit 3\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    with pytest.raises(native.NativeError, match=r"the C compiler failed \(exit 3\): broken-cc: error: out of luck"):
        native.compile_graph(b.finish({"y": x * x}), cache_dir=str(tmp_path / "c"))


# -- training --------------------------------------------------------------------------------------------


@needs_cc
@pytest.mark.parametrize("batch", [0, 3])
def test_training_step_matches_the_interpreter(batch) -> None:
    state, _ = T.start(DOCS, n_embd=8, n_head=2, block_size=8, num_steps=20)
    check_training_step(state, batch, "native")


@needs_cc
@pytest.mark.parametrize("batch", [1, 3])
def test_resident_steps_are_the_program_calls_and_states_stay_values(batch) -> None:
    """train() on native (ResidentSteps: state in flat buffers, one bound call per step) gives the very
    states of calling the step program per step; kept states (and views of them) never change."""
    state, docs = T.start(DOCS, n_embd=8, n_head=2, block_size=8, num_steps=12, batch=batch)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, "native")
    want, s = [], state
    for _ in range(12):
        s, loss = T.train_step(s, cache, docs)
        want.append((s, loss))
    kept = list(T.train(state, docs, cache))  # every state kept: each step must write a new buffer
    assert [k.step for k, _ in kept] == list(range(1, 13))
    for (got, gl), (ref, rl) in zip(kept, want):
        assert gl == rl
        assert all(np.array_equal(got.params[k], ref.params[k]) for k in ref.params)
        assert np.array_equal(got.m, ref.m) and np.array_equal(got.v, ref.v)
    del kept
    steps = T.ResidentSteps(state, docs, cache)
    run = steps.run(12)
    s1, l1 = next(run)
    view = s1.params["wte"][1]  # a view of a view: it holds the buffer, not the state's arrays
    first = view.copy()
    del s1
    losses = [l1] + [loss for _, loss in run]  # the other states dropped as they come
    assert losses == [loss for _, loss in want]
    assert np.array_equal(view, first)
    assert len(steps.pool) == 3  # two buffers in turn, and the one the view holds


@needs_cc
@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("shapes", [((5, 7), (7, 37)), ((3, 5, 7), (7, 40)), ((9, 3), (3, 16)), ((2, 6, 4), (2, 4, 70))])
def test_small_matmuls_in_vector_tiles_and_scalars(dtype, shapes) -> None:
    """Below GEMM_MIN: register tiles of whole vectors, then the columns left over as scalars, rows in
    blocks and the rows left over; each element summed in k order, as the dot-product loop does."""
    sa, sb = shapes
    b = Builder("m")
    x = b.input("x", TensorType(dtype, sa))
    w = b.input("w", TensorType(dtype, sb))
    g = b.finish({"y": b.emit("matmul", [x, w], {})})
    np_dt = np.float64 if dtype == "f64" else np.float32
    rng = np.random.default_rng(7)
    ins = {"x": rng.standard_normal(sa).astype(np_dt), "w": rng.standard_normal(sb).astype(np_dt)}
    prog = native.compile_graph(g)
    body = prog.source.split("int gptir_main")[1]
    assert ("gx_vd_ld(" if dtype == "f64" else "gx_vf_ld(") in body and "gemm(" not in body
    got, want = prog(ins)["y"], run(g, ins)["y"]
    a64, b64 = ins["x"].astype(np.float64), ins["w"].astype(np.float64)
    exact = np.einsum("...ik,...kj->...ij", a64, b64)  # in float64: the arithmetic's own error only
    assert close(got, want, 1e-12 if dtype == "f64" else 1e-5) and np.allclose(got, exact, rtol=1e-5, atol=1e-5)


def test_vector_width_follows_the_cpu(monkeypatch) -> None:
    """64-byte tiles only where the CPU has AVX-512: wider than the registers, gcc splits the vectors
    through the stack (4x slower on an AVX2 machine); 32 with AVX/AVX2, 16 elsewhere."""
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    for flags, want in (("fpu sse2 avx avx2 fma avx512f avx512dq", 64), ("fpu sse2 avx avx2 fma", 32),
                        ("fpu sse2 avx", 32), ("fpu sse2", 16)):
        monkeypatch.setattr(native, "cpu_identity", lambda f=flags: f"x86_64\nmodel name\t: X\nflags\t\t: {f}")
        assert native.vector_bytes() == want
    assert [native.matmul_tile(w, 8) for w in (64, 32, 16)] == [32, 8, 4]  # f64: 4, 2, 2 vectors
    assert [native.matmul_tile(w, 4) for w in (64, 32, 16)] == [32, 16, 8]  # f32: 2, 2, 2 vectors
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")
    assert native.vector_bytes() == 16


@needs_cc
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_every_vector_width_gives_the_same_matmul(dtype, monkeypatch) -> None:
    """The tiles' vector width changes the code, not the arithmetic: each element is still summed in k
    order, so 16-, 32- and 64-byte tiles (whichever this CPU has) give bit-identical results."""
    np_dt = np.float64 if dtype == "f64" else np.float32
    rng = np.random.default_rng(3)
    results = {}
    for width in (16, 32, 64):
        monkeypatch.setattr(native, "vector_bytes", lambda w=width: w)
        b = Builder("m")
        x = b.input("x", TensorType(dtype, (3, 5, 7)))
        w = b.input("w", TensorType(dtype, (7, 70)))
        g = b.finish({"y": b.emit("matmul", [x, w], {})})
        prog = native.compile_graph(g)
        assert f"#define GX_VECTOR_BYTES {width}\n" in prog.source
        if width == 16:
            ins = {"x": rng.standard_normal((3, 5, 7)).astype(np_dt), "w": rng.standard_normal((7, 70)).astype(np_dt)}
        results[width] = prog(ins)["y"]
    assert close(results[16], run(g, ins)["y"], 1e-12 if dtype == "f64" else 1e-5)
    assert results[16].tobytes() == results[32].tobytes() == results[64].tobytes()


@needs_cc
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_large_matmuls_call_numpy_blas_or_loops(dtype) -> None:
    """From GEMM_MIN multiply-adds a matmul calls numpy's BLAS gemm (transposed operands passed as
    such); without it (gptir_set_blas(NULL, NULL)) the same program sums in loops. Both agree with the
    interpreter (numpy's own BLAS call) to rounding."""
    b = Builder("m")
    x = b.input("x", TensorType(dtype, (2, 48, 40)))
    w = b.input("w", TensorType(dtype, (56, 40)))
    v = b.input("v", TensorType(dtype, (48, 24)))
    y = b.emit("matmul", [x, b.emit("transpose", [w], {"perm": (1, 0)})], {})  # B transposed
    z = b.emit("matmul", [b.emit("transpose", [v], {"perm": (1, 0)}), b.emit("reshape", [x], {"shape": (96, 40)})[:48]], {})
    g = b.finish({"y": y, "z": z})
    assert min(48 * 40 * 56, 24 * 48 * 40) >= native.GEMM_MIN
    rng = np.random.default_rng(3)
    np_dt = np.float64 if dtype == "f64" else np.float32
    ins = {"x": rng.standard_normal((2, 48, 40)).astype(np_dt), "w": rng.standard_normal((56, 40)).astype(np_dt),
           "v": rng.standard_normal((48, 24)).astype(np_dt)}
    want = run(g, ins)
    prog = native.compile_graph(g)
    fn = "gx_dgemm" if dtype == "f64" else "gx_sgemm"
    assert f"{fn}(101, 111, 112, 48, 56, 40, 1, A, 40, B, 40" in prog.source  # B: w's rows, transposed
    assert f"{fn}(101, 112, 111, 24, 40, 48, 1, A, 24, B, 40" in prog.source  # A: v's rows, transposed
    tol = 1e-12 if dtype == "f64" else 1e-5
    for gemm in ([native.blas()] if native.blas() else []) + [(None, None)]:
        prog.lib.gptir_set_blas(*gemm)
        got = prog(ins)
        for k in want:
            assert close(got[k], want[k], tol), (k, gemm)


@needs_cc
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_pow_by_a_scalar_two_or_half_is_bit_identical(dtype) -> None:
    """pow by a scalar 2 or 0.5 is x*x or sqrt in C, numpy's own fast paths: the same bits, special
    values too (another exponent calls the C library's pow)."""
    np_dt = np.float64 if dtype == "f64" else np.float32
    xs = np.concatenate([np.random.default_rng(5).standard_normal(997) * 1e3,
                         np.exp(np.random.default_rng(6).uniform(-80, 80, 997)),
                         [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 5e-324]]).astype(np_dt)
    b = Builder("m")
    x = b.input("x", TensorType(dtype, xs.shape))
    g = b.finish({"sq": x ** 2.0, "rt": x ** 0.5, "other": x ** 1.5})
    prog = native.compile_graph(g)
    assert "sqrt" in prog.source and "pow" in prog.source
    with np.errstate(all="ignore"):
        want = run(g, {"x": xs})
        got = prog({"x": xs})
    for k in ("sq", "rt"):
        assert np.array_equal(got[k], want[k], equal_nan=True) and \
            np.array_equal(np.signbit(got[k]), np.signbit(want[k])), k
    assert close(got["other"], want["other"], 1e-12 if dtype == "f64" else 1e-6)


@needs_cc
def test_prebuild_compiles_every_length_at_once(tmp_path) -> None:
    """ProgramCache.prebuild: the programs of every step's length built together (a compiler per CPU),
    each then found in the cache's index; the run is the run of programs made one by one."""
    state, docs = T.start(DOCS, n_embd=8, n_head=2, block_size=8, num_steps=6)
    keys = T.step_keys(state, docs, 6)
    assert keys == list(dict.fromkeys((min(8, len(d) + 1), 0) for d in docs[:6]))
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, "native", cache_dir=str(tmp_path))
    cache.prebuild(keys)
    assert sorted(cache.programs) == sorted(keys)  # each built by build_all, then loaded from the cache
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".so")]) == len(keys)
    assert len([f for f in os.listdir(tmp_path) if f.startswith("gptir-index-")]) == len(keys)
    again = T.ProgramCache(state.model, state.adam, state.num_steps, "native", cache_dir=str(tmp_path))
    again.prebuild(keys)
    assert all(p.build.cached and p._graph is None for p in again.programs.values())  # from the index
    one_by_one = T.ProgramCache(state.model, state.adam, state.num_steps, "native", cache_dir=str(tmp_path / "o"))
    want = [loss for _, loss in T.train(state, docs, one_by_one)]
    assert [loss for _, loss in T.train(state, docs, again)] == want
    infos = native.build_all([again.programs[keys[0]].source] * 2, str(tmp_path))
    assert [i.cached for i in infos] == [True, True]


@needs_cc
def test_bind_checks_arrays_once() -> None:
    b = Builder("m")
    x = b.input("x", TensorType("f64", (3,)))
    prog = native.compile_graph(b.finish({"y": x * 2.0}))
    xs, ys = np.arange(3.0), np.zeros(3)
    bound = prog.bind({"x": xs}, {"y": ys})
    bound()
    assert ys.tolist() == [0.0, 2.0, 4.0]
    other = np.array([5.0, 6.0, 7.0])
    bound.point("x", other)
    bound()
    assert ys.tolist() == [10.0, 12.0, 14.0]
    with pytest.raises(ExecError, match=r"bind: input x must be a C-contiguous float64 array of shape \(3,\)"):
        prog.bind({"x": np.arange(3)}, {"y": ys})
    with pytest.raises(ExecError, match="bind: output y must be .* \\(writeable\\)"):
        prog.bind({"x": xs}, {"y": np.zeros(6)[::2]})
    with pytest.raises(ExecError, match="bind: y overlaps another array of the call"):
        prog.bind({"x": xs}, {"y": xs})
    with pytest.raises(ExecError, match=r"point: input x must be a C-contiguous float64 array"):
        bound.point("x", np.zeros(4))


@needs_cc
@pytest.mark.skipif(not NAMES.exists(), reason=f"the reference dataset {NAMES} is not present")
@pytest.mark.parametrize("recipe", ["microgpt", "microgptex"])
def test_reference_run_1000_steps_and_samples(recipe) -> None:
    from gptir.data import load_docs
    from gptir.sample import LogitsCache, sample

    ref = json.loads((ROOT / "tests" / "data" / f"reference_{recipe}.json").read_text())
    state, shuffled = T.start(load_docs(str(NAMES)), recipe=recipe, seed=42, num_steps=1000)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, "native")
    losses = []
    for state, loss in T.train(state, shuffled, cache):
        losses.append(loss)
    assert len(losses) == 1000 and len(cache.programs) > 1  # one program per document length
    worst = max(abs(a - b) for a, b in zip(losses, ref["losses"]))
    assert worst <= 1e-9, f"largest per-step difference {worst:.3e}"
    names, _ = sample(state.model, state.params, state.tokenizer, state.rng, num=20, recipe=recipe,
                      cache=LogitsCache(state.model, "native"))
    assert names == ref["samples"]


# -- the command line ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(DOCS) + "\n")
    return path


@needs_cc
def test_cli_compile_exec_train_sample_on_native(data, tmp_path) -> None:
    ir = tmp_path / "mlp.ir"
    r = gptir("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]", "-o", str(ir), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = gptir("compile", str(ir), "--emit", "c")
    assert r.returncode == 0 and f"int {native.ENTRY}(void *const *io, char *arena)" in r.stdout, r.stderr
    assert "/* fused" in r.stdout and "matmul" in r.stdout
    out = tmp_path / "mlp.c"
    assert gptir("compile", str(ir), "-o", str(out)).returncode == 0 and out.read_text() == r.stdout
    r = gptir("compile", str(ir), "-o", str(ir))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    cache = tmp_path / "cache"
    check_cli_exec_train_sample("native", data, tmp_path, "--cache-dir", str(cache))
    assert any(f.endswith(".so") for f in os.listdir(cache))


def test_cli_without_a_compiler_is_a_one_line_error(data, tmp_path) -> None:
    ir = tmp_path / "n.ir"
    ir.write_text("graph n {\n  in %x : f64[]\n  output y = %x\n}\n")
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"))
    for args in (["exec", str(ir), "--input", "x=1", "--backend", "native"],
                 ["train", "--data", str(data), "--backend", "native", *SMALL]):
        r = gptir(*args, env=env)
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and "needs a C compiler" in r.stderr, r.stderr


def test_cli_compile_bad_input_and_outputs_follow_every_verbs_rules(tmp_path) -> None:
    """``gptir compile`` generates source only (no compiler needed): its paths and inputs are checked
    like every verb's — one line, exit 1, nothing written over an input."""
    ir = tmp_path / "n.ir"
    ir.write_text("graph n {\n  in %x : f64[3]\n  %y = exp %x : f64[3]\n  output y = %y\n}\n")
    link = tmp_path / "link.c"
    link.symlink_to(tmp_path / "target.c")  # a dangling link: written through, the link stays a link
    r = gptir("compile", str(ir), "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and "exp(" in (tmp_path / "target.c").read_text()
    assert gptir("compile", str(ir), "-o", os.devnull).returncode == 0  # a device is written in place
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
    to_input = tmp_path / "to-input.ir"
    to_input.symlink_to(ir)
    before = ir.read_text()
    bad = tmp_path / "bad.ir"
    bad.write_text("graph n {\n  in %x : f64[3]\n  %y = nosuchop %x : f64[3]\n  output y = %y\n}\n")
    huge = dict(os.environ, GPTIR_MAX_TEXT_BYTES="10")
    for args, env, words in ((["compile", str(ir), "-o", str(to_input)], None, "refusing to overwrite an input"),
                             (["compile", str(bad)], None, "nosuchop"),
                             (["compile", str(ir)], huge, "GPTIR_MAX_TEXT_BYTES"),
                             (["compile", str(tmp_path / "absent.ir")], None, "absent.ir")):
        r = gptir(*args, env=env)
        assert r.returncode == 1, (args, r.stderr)  # a syntax error adds its source line and a caret
        assert words in r.stderr.splitlines()[0] and "Traceback" not in r.stderr, (args, r.stderr)
    assert ir.read_text() == before
