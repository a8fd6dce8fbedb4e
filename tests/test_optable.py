"""The op table drives every pass and backend: walk it and fail for an entry that lacks a trait one
of them reads (DEVELOPERS.md, "Adding an op", lists them), and show that a new op declared in one
entry gets everything an existing op of its kind gets (the tanh experiment of issue 12)."""

from __future__ import annotations

import dataclasses
import re
from unittest import mock

import numpy as np
import pytest

from gptir.autodiff import grad
from gptir.codegen import _namespace_base, compile_graph, plan
from gptir.interp import run
from gptir.ir import ATTR_KINDS, ShapeError, TensorType, check_attr
from gptir.ops import LAYOUTS, OPS, RESULTS, OpDef, _unary
from gptir.passes import optimize
from gptir.text import parse, print_graph
from gptir.tracing import Builder

KINDS = ("elementwise", "reduce", "movement", "source", "other")


def _operand_type(opdef: OpDef) -> TensorType | None:
    """A dtype the op accepts on [3] operands (None if none of f64, i64, bool works untouched)."""
    if opdef.arity is None or opdef.attrs:
        return None
    for dt in ("f64", "i64", "bool"):
        t = TensorType(dt, (3,))
        try:
            opdef.infer([t] * opdef.arity, {})
            return t
        except ShapeError:
            continue
    return None


def problems(opdef: OpDef) -> list[str]:
    """What ``opdef`` lacks or gets wrong for some pass or backend (empty: nothing)."""
    out: list[str] = []
    if opdef.kind not in KINDS:
        out.append(f"kind {opdef.kind!r} is not one of {KINDS}")
    bad = [k for k in opdef.attrs.values() if k not in ATTR_KINDS]
    if bad:
        out.append(f"attribute kinds {bad} are not in gptir.ir.ATTR_KINDS")
    if (opdef.grad is None) == (opdef.nondiff is None):
        out.append("needs exactly one of grad (autodiff) and nondiff (the reason it has no gradient)")
    if opdef.kind == "source":
        return out
    if opdef.evaluate is None:
        out.append("no evaluate (the interpreter and constant folding) and no ufunc to derive it from")
    if opdef.result not in RESULTS:
        out.append(f"result must be one of {RESULTS} (gptir.memory: aliasing, buffer reuse), not {opdef.result!r}")
    if opdef.layout not in LAYOUTS:
        out.append(f"layout must be one of {LAYOUTS} (gptir.memory.c_contiguous), not {opdef.layout!r}")
    if opdef.result == "reduce" and "axes" not in opdef.attrs:
        out.append("result 'reduce' reads an 'axes' attribute")
    if opdef.result == "index" and opdef.arity != 2:
        out.append("result 'index' reads the rank of a second (index) operand")
    if opdef.ufunc is None and opdef.infix is None and opdef.emit is None:
        out.append("no code for the compiled backend: declare ufunc, infix or emit")
    if opdef.ufunc is not None:
        fn = getattr(np, opdef.ufunc)
        if opdef.arity is None or fn.nin != opdef.arity + len(opdef.extra):
            out.append(f"np.{opdef.ufunc} takes {fn.nin} operands, not arity {opdef.arity} + {len(opdef.extra)} extra")
        if not isinstance(opdef.simd_by_distance, bool):
            out.append("a ufunc op must declare simd_by_distance (True if numpy's kernel depends on where the "
                       "output is: exp, log and the other transcendental functions)")
        if opdef.emit is not None:
            out.append("a ufunc op is emitted from its ufunc: drop emit")
        t = _operand_type(opdef)
        if t is not None and opdef.evaluate is not None and fn.nin == (opdef.arity or 0) + len(opdef.extra):
            args = [np.linspace(-2.0, 3.0, 3).astype(t.np_dtype) for _ in range(opdef.arity or 0)]
            with np.errstate(all="ignore"):
                want = fn(*args, *(args[0].dtype.type(e) for e in opdef.extra))
                if np.asarray(opdef.evaluate(args, {})).tobytes() != np.asarray(want).tobytes():
                    out.append(f"evaluate is not np.{opdef.ufunc}(*operands, *extra), which the compiled code calls")
    elif opdef.kind == "elementwise" and opdef.emit is not None and not opdef.attrs and opdef.arity:
        expr = opdef.emit([f"a{i}" for i in range(opdef.arity)], {})
        m = re.match(r"_?(?:np\.)?(\w+)\(", expr)
        if m and isinstance(getattr(np, m.group(1), None), np.ufunc):
            out.append(f"its code calls the ufunc np.{m.group(1)}: declare ufunc={m.group(1)!r} instead of "
                       "evaluate/emit (buffer reuse, scalar fast paths, implicit broadcasting and layout follow)")
    if opdef.infix is not None and (opdef.arity not in (1, 2) or not re.fullmatch(r"[-+*/@]", opdef.infix)):
        out.append(f"infix {opdef.infix!r} needs arity 1 or 2 and one of - + * / @")
    if opdef.lift is not None and opdef.emit is None:
        out.append("lift passes a closure constant to emit, but there is no emit")
    if any(not k.startswith("_") or not k.isidentifier() for k in opdef.emit_names):
        out.append("emit_names must be identifiers starting with '_' (never an IR value's v_ name)")
    if not isinstance(opdef.implicit_broadcast, bool):
        out.append("implicit_broadcast must be a bool")
    if opdef.commutative:
        t = _operand_type(opdef)
        if opdef.arity != 2 or t is None:
            out.append("commutative needs two operands of one type")
        else:
            rng = np.random.default_rng(0)
            a, b = (rng.normal(size=3) * 3).astype(t.np_dtype), (rng.normal(size=3) * 3).astype(t.np_dtype)
            a[0] = b[0]  # a tie
            assert opdef.evaluate is not None
            if np.asarray(opdef.evaluate([a, b], {})).tobytes() != np.asarray(opdef.evaluate([b, a], {})).tobytes():
                out.append("commutative, but swapping the operands changes the result on ordinary numbers")
    return out


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_declares_what_passes_and_backends_read(name):
    assert problems(OPS[name]) == []


def test_code_generation_names_do_not_clash():
    ns = _namespace_base()  # raises if two ops give one name two meanings
    for opdef in OPS.values():
        for k, v in opdef.emit_names.items():
            assert ns[k] is v
        if opdef.ufunc is not None:
            assert ns[f"_{opdef.ufunc}"] is getattr(np, opdef.ufunc)


def test_an_op_in_the_old_format_is_caught():
    """tanh written as evaluate + emit (how the seed's ops looked) lacks what memory and codegen
    read; so does one that declares the ufunc but not its kernel behaviour."""
    old = OpDef("tanh", 1, _unary(("f64",)), lambda a, at: np.tanh(a[0]), lambda a, at: f"np.tanh({a[0]})",
                kind="elementwise", grad=_g_tanh)
    found = " | ".join(problems(old))
    assert "result must be one of" in found and "layout must be one of" in found
    assert "declare ufunc='tanh'" in found
    half = OpDef("tanh", 1, _unary(("f64",)), None, None, kind="elementwise", grad=_g_tanh, ufunc="tanh",
                 result="fresh", layout="elementwise")
    assert problems(half) == ["a ufunc op must declare simd_by_distance (True if numpy's kernel depends on where "
                              "the output is: exp, log and the other transcendental functions)"]
    assert problems(OpDef("neg2", 2, _unary(("f64",)), None, None, kind="elementwise", nondiff="test",
                          ufunc="negative", result="fresh", layout="elementwise", simd_by_distance=False)) == [
        "np.negative takes 1 operands, not arity 2 + 0 extra"]
    assert problems(OpDef("exp2", 1, _unary(("f64",)), lambda a, at: np.exp2(a[0]), None, kind="elementwise",
                          nondiff="test", ufunc="exp", result="fresh", layout="elementwise",
                          simd_by_distance=True)) == [
        "evaluate is not np.exp(*operands, *extra), which the compiled code calls"]


# -- the tanh experiment ----------------------------------------------------------------------------

TANH = OPS["tanh"]  # the real entry (gptir/ops.py), one OpDef like every other op
_g_tanh = TANH.grad


def _experiment(op: str, times_one: bool = True):
    b = Builder("g")
    x = b.input("x", TensorType("f64", (16,)))
    y = b.emit(op, [x])
    y = (y * 1.0 if times_one else y) ** 2
    g = grad(b.finish({"out": y.sum()}), ["x"])
    opt = optimize(g)
    compute = [n for n in opt.nodes.values() if n.op not in ("input", "param", "const")]
    return g, opt, len(compute), plan(opt).n_reused


def test_a_new_op_in_one_entry_optimizes_and_compiles_like_exp():
    """Issue 12: tanh added as one OpDef kept more compute nodes after optimize than exp and got
    different buffer reuse, because side tables outside the op table did not know it. The real tanh
    entry, given a gradient rule of exp's shape (``g * out``), must now give exactly exp's graph:
    before the op table drove the passes it kept 10 compute nodes and 4 reuses where exp keeps 6 and
    2 (the ``* 1.0`` and its backward twin stayed, since nothing knew tanh's result is a fresh
    C-contiguous array)."""
    like_exp = dataclasses.replace(TANH, grad=lambda c: (c.g * c.out,))
    assert problems(like_exp) == []
    _, _, n_exp, reused_exp = _experiment("exp")
    assert (n_exp, reused_exp) == (6, 2)
    with mock.patch.dict(OPS, {"tanh": like_exp}):
        _, _, n_tanh, reused_tanh = _experiment("tanh")
    assert (n_tanh, reused_tanh) == (n_exp, reused_exp)


def test_a_new_op_in_one_entry_differentiates_runs_compiles_and_prints():
    """The real tanh (rule ``g * (1 - out * out)``), one entry: the ``* 1.0`` vanishes after
    optimize as it does for exp, the gradient matches finite differences, the compiled program is
    bit-identical to the interpreter, and the graph prints and parses."""
    assert problems(TANH) == []
    g, opt, n, reused = _experiment("tanh")
    assert (n, reused) == _experiment("tanh", times_one=False)[2:]
    xv = np.linspace(-2.0, 2.0, 16)
    ref = run(g, {"x": xv})
    t = np.tanh(xv)
    assert np.allclose(ref["grad.x"], 2.0 * t * (1.0 - t * t), rtol=1e-14, atol=0)  # d/dx sum(tanh(x)**2)
    h = 1e-6
    fd = [(np.sum(np.tanh(xv + h * e) ** 2) - np.sum(np.tanh(xv - h * e) ** 2)) / (2 * h) for e in np.eye(16)]
    assert np.allclose(ref["grad.x"], fd, rtol=1e-6, atol=1e-9)
    for prog in (opt, g):
        out = compile_graph(prog)({"x": xv})
        for k in ref:
            assert out[k].tobytes() == ref[k].tobytes()
    assert parse(print_graph(opt)).same_as(opt)


def test_attribute_kinds_check_format_and_emit_in_one_place():
    class Hostile(int):
        def __repr__(self) -> str:
            return "__import__('os')"

    ints = ATTR_KINDS["ints"]
    assert ints.check((0, 1)) and not ints.check((0, True)) and not ints.check([0, 1])
    assert ints.format((3,), str) == "(3,)" and ints.format((0, 1), str) == "(0, 1)"
    rebuilt = ints.emit((Hostile(2),))
    assert rebuilt == (2,) and type(rebuilt[0]) is int and repr(rebuilt) == "(2,)"
    with pytest.raises(ValueError, match="must be ints"):
        ints.emit((1.5,))
    assert repr(ATTR_KINDS["int"].emit(Hostile(4))) == "4"
    with pytest.raises(ValueError, match="non-finite"):
        ATTR_KINDS["float"].emit(float("inf"))
    assert ATTR_KINDS["tensor"].emit(np.ones(2)) is None  # tensors never reach generated source
    assert ATTR_KINDS["bool"].format(False, str) == "false" and ATTR_KINDS["dtype"].format("i64", str) == "i64"
    with pytest.raises(ShapeError, match="attribute keepdims must be true or false, got 1"):
        check_attr("keepdims", "bool", 1)
    used = {k for op in OPS.values() for k in op.attrs.values()}
    assert used <= set(ATTR_KINDS)


def test_count_flops_from_the_table() -> None:
    from gptir.ops import OPS

    assert OPS["matmul"].count_flops([(4, 6, 3), (4, 3, 5)], (4, 6, 5)) == 2 * 4 * 6 * 5 * 3
    assert OPS["add"].count_flops([(7, 2), (2,)], (7, 2)) == 14
    assert OPS["sum"].count_flops([(7, 2)], (7,)) == 14
    assert OPS["reshape"].count_flops([(7, 2)], (14,)) == 0 and OPS["gather"].count_flops([(5, 2), (3,)], (3, 2)) == 0
