"""The op table: the single source of truth for every op.

Each :class:`OpDef` holds, for one op: its arity and attribute kinds, its type/shape rule, its numpy
evaluation (shared by the interpreter and constant folding), the Python expression the code generator
emits for it, and its gradient rule (or the reason it has none). Adding an op is adding one entry.

Broadcasting is explicit in the IR: elementwise ops require operands of identical type, and the
tracer inserts ``broadcast`` nodes following numpy's rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gptir.ir import NUMPY_DTYPES, ShapeError, TensorType, check_signature

Attrs = Mapping[str, Any]
InferFn = Callable[[Sequence[TensorType], Attrs], TensorType]
EvalFn = Callable[[Sequence[np.ndarray], Attrs], np.ndarray]
EmitFn = Callable[[Sequence[str], Attrs], str]


@dataclass(frozen=True)
class OpDef:
    """Everything gptir knows about one op.

    ``emit`` returns a Python expression over operand variable names; attribute values reach it
    already validated (ints, floats, bools, dtypes), so generated source never contains text taken
    from an IR file. ``grad`` is the reverse-mode rule (see gptir.autodiff); ``nondiff`` says why an
    op has no rule. ``kind`` groups ops for passes: elementwise, reduce, movement, source, other.
    """

    name: str
    arity: int | None
    infer: InferFn
    evaluate: EvalFn | None
    emit: EmitFn | None
    attrs: Mapping[str, str] = field(default_factory=dict)
    kind: str = "other"
    commutative: bool = False
    grad: Callable[..., Any] | None = None
    nondiff: str | None = None


# -- type rules ------------------------------------------------------------------------------------

NUMERIC = ("f64", "i64")


def _same(types: Sequence[TensorType], what: str) -> TensorType:
    first = types[0]
    for t in types[1:]:
        if t != first:
            raise ShapeError(f"{what} operands must have the same type, got {' and '.join(str(x) for x in types)}"
                             " (broadcasting is explicit in the IR: insert a broadcast)")
    return first


def _need_dtype(t: TensorType, allowed: Sequence[str], what: str) -> None:
    if t.dtype not in allowed:
        raise ShapeError(f"{what} needs {' or '.join(allowed)} operands, got {t}")


def _binary(allowed: Sequence[str], result: str | None = None) -> InferFn:
    def infer(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
        t = _same(types, "elementwise")
        _need_dtype(t, allowed, "this op")
        return t.with_dtype(result) if result else t
    return infer


def _unary(allowed: Sequence[str]) -> InferFn:
    def infer(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
        _need_dtype(types[0], allowed, "this op")
        return types[0]
    return infer


def _identity(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    return types[0]


def _source(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    raise ShapeError("a source node's type is declared, not inferred")  # pragma: no cover


def _where(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    cond, a, b = types
    if cond.dtype != "bool":
        raise ShapeError(f"where's condition must be bool, got {cond}")
    t = _same([a, b], "where")
    if cond.shape != t.shape:
        raise ShapeError(f"where's condition {cond} and branches {t} differ in shape")
    return t


def _axes(t: TensorType, axes: tuple[int, ...]) -> tuple[int, ...]:
    if list(axes) != sorted(set(axes)) or any(a < 0 or a >= t.rank for a in axes):
        raise ShapeError(f"axes {axes} must be distinct, increasing and within rank {t.rank}")
    return axes


def _reduce(allowed: Sequence[str], nonempty: bool) -> InferFn:
    def infer(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
        t = types[0]
        _need_dtype(t, allowed, "this reduction")
        axes = _axes(t, attrs["axes"])
        if nonempty and any(t.shape[a] == 0 for a in axes):
            raise ShapeError(f"cannot take the max over an empty axis of {t}")
        if attrs["keepdims"]:
            return t.with_shape(1 if i in axes else d for i, d in enumerate(t.shape))
        return t.with_shape(d for i, d in enumerate(t.shape) if i not in axes)
    return infer


def _matmul(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    a, b = types
    _same([a.with_shape(()), b.with_shape(())], "matmul")
    _need_dtype(a, NUMERIC, "matmul")
    if a.rank == 0 or b.rank == 0:
        raise ShapeError(f"matmul needs operands of rank >= 1, got {a} and {b}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeError(f"matmul contraction mismatch: {a} @ {b} ({k_a} != {k_b})")
    if a.rank == 1 and b.rank == 1:
        return a.with_shape(())
    if a.rank == 1:
        if b.rank != 2:
            raise ShapeError(f"a vector multiplies a matrix, not {b}")
        return a.with_shape((b.shape[1],))
    if b.rank == 1:
        return a.with_shape(a.shape[:-1])
    if b.rank == 2:
        return a.with_shape(a.shape[:-1] + (b.shape[1],))
    if a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"batched matmul needs equal batch dimensions, got {a} @ {b}")
    return a.with_shape(a.shape[:-1] + (b.shape[-1],))


def _reshape(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    t, shape = types[0], attrs["shape"]
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) != t.size:
        raise ShapeError(f"cannot reshape {t} ({t.size} elements) to {list(shape)}")
    return t.with_shape(shape)


def _transpose(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    t, perm = types[0], attrs["perm"]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of the {t.rank} axes of {t}")
    return t.with_shape(t.shape[p] for p in perm)


def _broadcast(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    t, shape = types[0], attrs["shape"]
    if len(shape) < t.rank or any(d < 0 for d in shape):
        raise ShapeError(f"cannot broadcast {t} to {list(shape)}")
    for src, dst in zip(reversed(t.shape), reversed(shape)):
        if src != dst and src != 1:
            raise ShapeError(f"cannot broadcast {t} to {list(shape)} (numpy rules)")
    return t.with_shape(shape)


def _slice(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    t, start, stop = types[0], attrs["start"], attrs["stop"]
    if len(start) != t.rank or len(stop) != t.rank:
        raise ShapeError(f"slice of {t} needs {t.rank} starts and stops")
    for s, e, d in zip(start, stop, t.shape):
        if not 0 <= s <= e <= d:
            raise ShapeError(f"slice [{s}:{e}] is out of range for a dimension of {d} in {t}")
    return t.with_shape(e - s for s, e in zip(start, stop))


def _concat(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    axis, first = attrs["axis"], types[0]
    if not 0 <= axis < first.rank:
        raise ShapeError(f"concat axis {axis} is out of range for {first}")
    for t in types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis
        ):
            raise ShapeError(f"cannot concatenate {first} and {t} along axis {axis}")
    return first.with_shape(
        sum(t.shape[axis] for t in types) if i == axis else d for i, d in enumerate(first.shape)
    )


def _gather(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    table, idx = types
    if table.rank < 1:
        raise ShapeError(f"gather needs a table of rank >= 1, got {table}")
    if idx.dtype != "i64":
        raise ShapeError(f"gather indices must be i64, got {idx}")
    return table.with_shape(idx.shape + table.shape[1:])


def _scatter_add(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    upd, idx = types
    if idx.dtype != "i64":
        raise ShapeError(f"scatter_add indices must be i64, got {idx}")
    _need_dtype(upd, NUMERIC, "scatter_add")
    if upd.shape[: idx.rank] != idx.shape:
        raise ShapeError(f"scatter_add updates {upd} must start with the indices' shape {list(idx.shape)}")
    if attrs["size"] < 0:
        raise ShapeError("scatter_add size must be >= 0")
    return upd.with_shape((attrs["size"],) + upd.shape[idx.rank:])


def _cast(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    return types[0].with_dtype(attrs["dtype"])


# -- evaluation helpers ----------------------------------------------------------------------------


def _scatter_add_eval(args: Sequence[np.ndarray], attrs: Attrs) -> np.ndarray:
    upd, idx = args
    out = np.zeros((attrs["size"],) + upd.shape[idx.ndim:], dtype=upd.dtype)
    np.add.at(out, idx, upd)
    return out


def _slices(attrs: Attrs) -> tuple[slice, ...]:
    return tuple(slice(s, e) for s, e in zip(attrs["start"], attrs["stop"]))


def _slice_src(attrs: Attrs) -> str:
    return "[" + ", ".join(f"{s}:{e}" for s, e in zip(attrs["start"], attrs["stop"])) + ("," if len(attrs["start"]) == 1 else "") + "]"


def _call(fn: str) -> EmitFn:
    return lambda a, attrs: f"{fn}({', '.join(a)})"


# -- the table -------------------------------------------------------------------------------------

_table: list[OpDef] = [
    # sources: values come from the caller (input, param) or from the node itself (const)
    OpDef("input", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf"),
    OpDef("param", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf"),
    OpDef("const", 0, _source, lambda a, at: at["value"], None, {"value": "tensor"}, kind="source",
          nondiff="a constant has no inputs"),
    # elementwise arithmetic
    OpDef("add", 2, _binary(NUMERIC), lambda a, at: np.add(*a), _call("np.add"), kind="elementwise", commutative=True),
    OpDef("sub", 2, _binary(NUMERIC), lambda a, at: np.subtract(*a), _call("np.subtract"), kind="elementwise"),
    OpDef("mul", 2, _binary(NUMERIC), lambda a, at: np.multiply(*a), _call("np.multiply"), kind="elementwise",
          commutative=True),
    OpDef("div", 2, _binary(("f64",)), lambda a, at: np.divide(*a), _call("np.divide"), kind="elementwise"),
    OpDef("pow", 2, _binary(("f64",)), lambda a, at: np.power(*a), _call("np.power"), kind="elementwise"),
    OpDef("maximum", 2, _binary(NUMERIC), lambda a, at: np.maximum(*a), _call("np.maximum"), kind="elementwise",
          commutative=True),
    OpDef("neg", 1, _unary(NUMERIC), lambda a, at: np.negative(a[0]), _call("np.negative"), kind="elementwise"),
    OpDef("exp", 1, _unary(("f64",)), lambda a, at: np.exp(a[0]), _call("np.exp"), kind="elementwise"),
    OpDef("log", 1, _unary(("f64",)), lambda a, at: np.log(a[0]), _call("np.log"), kind="elementwise"),
    OpDef("relu", 1, _unary(NUMERIC), lambda a, at: np.maximum(a[0], a[0].dtype.type(0)),
          lambda a, at: f"np.maximum({a[0]}, 0.0)", kind="elementwise"),
    # comparisons and selection
    OpDef("gt", 2, _binary(NUMERIC, "bool"), lambda a, at: np.greater(*a), _call("np.greater"), kind="elementwise",
          nondiff="a comparison has a boolean result"),
    OpDef("eq", 2, _binary(("f64", "i64", "bool"), "bool"), lambda a, at: np.equal(*a), _call("np.equal"),
          kind="elementwise", commutative=True, nondiff="a comparison has a boolean result"),
    OpDef("where", 3, _where, lambda a, at: np.where(*a), _call("np.where"), kind="elementwise"),
    OpDef("cast", 1, _cast, lambda a, at: a[0].astype(NUMPY_DTYPES[at["dtype"]]),
          lambda a, at: f"{a[0]}.astype(np.{NUMPY_DTYPES[at['dtype']].name})", {"dtype": "dtype"},
          kind="elementwise", nondiff="a dtype conversion is not differentiable"),
    OpDef("stop_gradient", 1, _identity, lambda a, at: a[0], lambda a, at: a[0], kind="elementwise",
          nondiff="stop_gradient blocks gradients by definition"),
    # reductions
    OpDef("sum", 1, _reduce(NUMERIC, False),
          lambda a, at: np.asarray(np.sum(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"np.sum({a[0]}, axis={at['axes']!r}, keepdims={at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce"),
    OpDef("max", 1, _reduce(NUMERIC, True),
          lambda a, at: np.asarray(np.max(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"np.max({a[0]}, axis={at['axes']!r}, keepdims={at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce"),
    # linear algebra
    OpDef("matmul", 2, _matmul, lambda a, at: np.asarray(np.matmul(*a)), _call("np.matmul")),
    # movement
    OpDef("reshape", 1, _reshape, lambda a, at: np.reshape(a[0], at["shape"]),
          lambda a, at: f"np.reshape({a[0]}, {at['shape']!r})", {"shape": "ints"}, kind="movement"),
    OpDef("transpose", 1, _transpose, lambda a, at: np.transpose(a[0], at["perm"]),
          lambda a, at: f"np.transpose({a[0]}, {at['perm']!r})", {"perm": "ints"}, kind="movement"),
    OpDef("broadcast", 1, _broadcast, lambda a, at: np.broadcast_to(a[0], at["shape"]),
          lambda a, at: f"np.broadcast_to({a[0]}, {at['shape']!r})", {"shape": "ints"}, kind="movement"),
    OpDef("slice", 1, _slice, lambda a, at: a[0][_slices(at)], lambda a, at: f"{a[0]}{_slice_src(at)}",
          {"start": "ints", "stop": "ints"}, kind="movement"),
    OpDef("concat", None, _concat, lambda a, at: np.concatenate(a, axis=at["axis"]),
          lambda a, at: f"np.concatenate(({', '.join(a)},), axis={at['axis']!r})", {"axis": "int"}, kind="movement"),
    # embedding lookup and its adjoint
    OpDef("gather", 2, _gather, lambda a, at: a[0][a[1]], lambda a, at: f"{a[0]}[{a[1]}]"),
    OpDef("scatter_add", 2, _scatter_add, _scatter_add_eval, None, {"size": "int"}),
]

OPS: dict[str, OpDef] = {op.name: op for op in _table}


def infer_type(op: str, in_types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    """The output type of ``op`` applied to operands of ``in_types`` (raises ShapeError)."""
    opdef = OPS.get(op)
    if opdef is None:
        raise ShapeError(f"unknown op '{op}'")
    check_signature(opdef, len(in_types), attrs)
    if opdef.kind == "source":
        raise ShapeError(f"{op} nodes declare their type")
    return opdef.infer(in_types, attrs)
