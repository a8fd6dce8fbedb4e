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
    ``optional`` names attributes a node may omit (their default is documented with the op; an
    omitted attribute is never printed, so old files parse and print as they did).
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
    optional: frozenset[str] = frozenset()


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


def _reduce(allowed: Sequence[str], nonempty: str | None) -> InferFn:
    def infer(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
        t = types[0]
        _need_dtype(t, allowed, "this reduction")
        axes = _axes(t, attrs["axes"])
        if nonempty and any(t.shape[a] == 0 for a in axes):
            raise ShapeError(f"cannot take the {nonempty} over an empty axis of {t}")
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


def _argmax(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    t, axis = types[0], attrs["axis"]
    _need_dtype(t, NUMERIC, "argmax")
    if not 0 <= axis < t.rank:
        raise ShapeError(f"argmax axis {axis} is out of range for {t}")
    if t.shape[axis] == 0:
        raise ShapeError(f"cannot take the argmax over an empty axis of {t}")
    return TensorType("i64", tuple(d for i, d in enumerate(t.shape) if i != axis))


def slice_steps(attrs: Attrs) -> tuple[int, ...]:
    """A slice node's steps: its ``step`` attribute, or all ones when the node omits it."""
    step = attrs.get("step")
    return tuple(step) if step is not None else (1,) * len(attrs["start"])


def slice_length(start: int, stop: int, step: int) -> int:
    """How many entries ``start:stop:step`` takes (the bounds already normalised, see ``_slice``)."""
    return (stop - start + step - 1) // step if step > 0 else (start - stop - step - 1) // -step


def _slice(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
    """Per axis ``start:stop:step`` in the normal form ``slice.indices`` gives: a positive step
    needs ``0 <= start <= stop <= dim``; a negative one counts down, ``-1 <= stop <= start < dim``
    (a stop of -1 means "past index 0", numpy's ``x[s::-1]``)."""
    t, start, stop, step = types[0], attrs["start"], attrs["stop"], slice_steps(attrs)
    if len(start) != t.rank or len(stop) != t.rank or len(step) != t.rank:
        raise ShapeError(f"slice of {t} needs {t.rank} starts, stops and steps")
    for s, e, k, d in zip(start, stop, step, t.shape):
        if k == 0:
            raise ShapeError("slice step cannot be zero")
        if k > 0 and not 0 <= s <= e <= d:
            raise ShapeError(f"slice [{s}:{e}] is out of range for a dimension of {d} in {t}")
        if k < 0 and not (-1 <= e <= s < d or s == e == -1):
            raise ShapeError(f"slice [{s}:{e}:{k}] is out of range for a dimension of {d} in {t}")
    return t.with_shape(slice_length(s, e, k) for s, e, k in zip(start, stop, step))


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


def slice_index(attrs: Attrs) -> tuple[slice, ...]:
    """The numpy index of a slice node (the interpreter's, and the compiled code's closure constant)."""
    out = []
    for s, e, k in zip(attrs["start"], attrs["stop"], slice_steps(attrs)):
        if k < 0 and e < 0:  # count down past index 0: numpy spells that stop as None
            out.append(slice(s, None, k) if s >= 0 else slice(0, 0, 1))
        else:
            out.append(slice(s, e, k))
    return tuple(out)


def _slice_src(attrs: Attrs) -> str:
    def one(sl: slice) -> str:
        stop = "" if sl.stop is None else str(int(sl.stop))
        return f"{int(sl.start)}:{stop}" + (f":{int(sl.step)}" if sl.step != 1 else "")
    parts = [one(sl) for sl in slice_index(attrs)]
    return "[" + ", ".join(parts) + ("," if len(parts) == 1 else "") + "]"


def _sigmoid_eval(args: Sequence[np.ndarray], attrs: Attrs) -> np.ndarray:
    return np.divide(1.0, np.add(1.0, np.exp(np.negative(args[0]))))


def _call(fn: str) -> EmitFn:
    return lambda a, attrs: f"{fn}({', '.join(a)})"


# -- gradient rules --------------------------------------------------------------------------------
# One reverse-mode rule per differentiable op, used by gptir.autodiff. A rule takes a GradContext
# ``c`` (see gptir.autodiff): ``c.inputs`` (tracers of the operands), ``c.out`` (the node's value),
# ``c.g`` (its cotangent), ``c.attrs``, ``c.needs`` (which operands lead to a wrt input: the others
# get no gradient work), ``c.T`` (the gptir.trace module: rules build IR with the tracer's own
# functions, reached through the context because the tracer sits above this module), ``c.zeros``
# and ``c.constant``. It returns one cotangent (or None) per operand, of the operand's type.


def _g_add(c: Any) -> tuple:
    return (c.g if c.needs[0] else None, c.g if c.needs[1] else None)


def _g_sub(c: Any) -> tuple:
    return (c.g if c.needs[0] else None, -c.g if c.needs[1] else None)


def _g_mul(c: Any) -> tuple:
    a, b = c.inputs
    if a.name == b.name:  # x * x: one product, not two to add up
        return (c.g * (a + a), None)
    return (c.g * b if c.needs[0] else None, c.g * a if c.needs[1] else None)


def _g_div(c: Any) -> tuple:  # d(a/b)/db = -(a/b)/b: reuse the output
    a, b = c.inputs
    return (c.g / b if c.needs[0] else None, -(c.g * c.out) / b if c.needs[1] else None)


def _g_pow(c: Any) -> tuple:
    """At a zero base the conventions of JAX and torch: d/da is 0 where the exponent is 0 (not
    0 * 0**-1 = nan), and d/db uses log(1) = 0 where the base is 0 (so 0**y gets no db)."""
    a, b = c.inputs
    T = c.T
    da = db = None
    if c.needs[0]:
        k = c.constant(1)  # a constant exponent k: k * a**(k-1) with k-1 folded now
        if k is not None and k.ndim == 0 and float(k) == 0.0:
            da = None  # x ** 0 is constant
        elif k is not None and k.ndim == 0 and float(k) == 1.0:
            da = c.g
        elif k is not None and k.ndim == 0 and float(k) == 2.0:
            da = c.g * (a + a)
        elif k is not None and k.ndim == 0:
            da = c.g * (b * a ** (float(k) - 1.0))
        else:
            da = c.g * T.where(T.equal(b, 0.0), 0.0, b * a ** (b - 1.0))
    if c.needs[1]:  # only when the exponent itself depends on a wrt input
        db = c.g * (c.out * T.log(T.where(T.equal(a, 0.0), 1.0, a)))
    return (da, db)


def _g_neg(c: Any) -> tuple:
    return (-c.g,)


def _g_exp(c: Any) -> tuple:
    return (c.g * c.out,)


def _g_log(c: Any) -> tuple:
    return (c.g / c.inputs[0],)


def _g_relu(c: Any) -> tuple:  # the kink at 0 gets gradient 0
    z = c.zeros(c.g.shape)
    return (c.T.where(c.T.greater(c.inputs[0], z), c.g, z),)


def _g_extremum(c: Any, first_wins: str) -> tuple:
    """maximum / minimum: the winning operand gets the cotangent; ties split it evenly (as JAX and
    torch do), so the gradient does not depend on the operand order."""
    a, b = c.inputs
    T = c.T
    z = c.zeros(c.g.shape)
    half = c.g * 0.5
    tie = T.equal(a, b)
    wins = T.greater if first_wins == "gt" else T.less
    da = T.where(wins(a, b), c.g, T.where(tie, half, z)) if c.needs[0] else None
    db = T.where(wins(b, a), c.g, T.where(tie, half, z)) if c.needs[1] else None
    return (da, db)


def _g_maximum(c: Any) -> tuple:
    return _g_extremum(c, "gt")


def _g_minimum(c: Any) -> tuple:
    return _g_extremum(c, "lt")


def _g_tanh(c: Any) -> tuple:  # 1 - tanh^2, from the output
    return (c.g * (1.0 - c.out * c.out),)


def _g_sigmoid(c: Any) -> tuple:  # s * (1 - s), from the output
    return (c.g * (c.out * (1.0 - c.out)),)


def _g_sqrt(c: Any) -> tuple:  # 1 / (2 sqrt x), from the output (inf at 0, as in JAX and torch)
    return (c.g / (c.out + c.out),)


def _g_abs(c: Any) -> tuple:  # sign(x): 0 at 0, as JAX and torch define it
    x, T = c.inputs[0], c.T
    z = c.zeros(c.g.shape)
    return (T.where(T.greater(x, z), c.g, T.where(T.less(x, z), -c.g, z)),)


def _g_sin(c: Any) -> tuple:
    return (c.g * c.T.cos(c.inputs[0]),)


def _g_cos(c: Any) -> tuple:
    return (-(c.g * c.T.sin(c.inputs[0])),)


def _g_where(c: Any) -> tuple:
    cond = c.inputs[0]
    z = c.zeros(c.g.shape) if c.needs[1] or c.needs[2] else None
    return (None, c.T.where(cond, c.g, z) if c.needs[1] else None, c.T.where(cond, z, c.g) if c.needs[2] else None)


def _kept_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _g_sum(c: Any) -> tuple:  # leading reduced axes need no reshape: broadcasting prepends them
    x, axes = c.inputs[0], c.attrs["axes"]
    leading = axes == tuple(range(len(axes)))
    g = c.g if c.attrs["keepdims"] or leading else c.T.reshape(c.g, _kept_shape(x.shape, axes))
    return (c.T.broadcast_to(g, x.shape),)


def _g_max(c: Any) -> tuple:
    """Every maximal (for min: minimal) entry gets an equal share of the cotangent (ties split it
    evenly, like tinygrad and torch.amax), so the gradient is the same whatever order the entries are in."""
    T, x, axes = c.T, c.inputs[0], c.attrs["axes"]
    kept = _kept_shape(x.shape, axes)
    hit = T.equal(x, T.broadcast_to(T.reshape(c.out, kept), x.shape))
    count = T.reduce_sum(T.cast(hit, "f64"), axes, keepdims=True)
    share = T.broadcast_to(T.reshape(c.g, kept) / count, x.shape)
    return (T.where(hit, share, c.zeros(x.shape)),)


def _g_matmul(c: Any) -> tuple:
    """Every rank case the type rule allows: dot, vector @ matrix, (batched) matrix @ vector,
    (batched) matrix @ matrix, batched @ batched. Leading axes of ``a`` fold into rows for db."""
    T, (a, b), g = c.T, c.inputs, c.g
    da = db = None
    if a.ndim == 1 and b.ndim == 1:  # [k] @ [k] -> []
        gk = T.broadcast_to(g, a.shape)
        da, db = (gk * b if c.needs[0] else None), (gk * a if c.needs[1] else None)
    elif a.ndim == 1:  # [k] @ [k,n] -> [n]
        k, n = b.shape
        da = T.matmul(b, g) if c.needs[0] else None
        db = T.matmul(T.reshape(a, (k, 1)), T.reshape(g, (1, n))) if c.needs[1] else None
    elif b.ndim == 1:  # [..., m, k] @ [k] -> [..., m]
        k, rows = b.shape[0], a.type.size // max(b.shape[0], 1)
        da = T.matmul(T.reshape(g, g.shape + (1,)), T.reshape(b, (1, k))) if c.needs[0] else None
        db = T.matmul(T.reshape(g, (rows,)), T.reshape(a, (rows, k))) if c.needs[1] else None
    elif b.ndim == 2:  # [..., m, k] @ [k, n] -> [..., m, n]
        k, n = b.shape
        rows = a.type.size // max(k, 1)
        da = T.matmul(g, c.swap_last(b)) if c.needs[0] else None
        db = T.matmul(c.swap_last(T.reshape(a, (rows, k))), T.reshape(g, (rows, n))) if c.needs[1] else None
    else:  # batched [..., m, k] @ [..., k, n]
        da = T.matmul(g, c.swap_last(b)) if c.needs[0] else None
        db = T.matmul(c.swap_last(a), g) if c.needs[1] else None
    return (da, db)


def _g_reshape(c: Any) -> tuple:
    return (c.T.reshape(c.g, c.inputs[0].shape),)


def _g_transpose(c: Any) -> tuple:
    perm = c.attrs["perm"]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return (c.T.transpose(c.g, inverse),)


def _g_broadcast(c: Any) -> tuple:  # sum over the new leading axes and the stretched size-1 axes
    x, shape = c.inputs[0], c.attrs["shape"]
    lead = len(shape) - x.ndim
    stretched = tuple(lead + i for i, d in enumerate(x.shape) if d == 1 and shape[lead + i] != 1)
    if not lead:
        return (c.T.reduce_sum(c.g, stretched, keepdims=True) if stretched else c.g,)
    return (c.T.reshape(c.T.reduce_sum(c.g, tuple(range(lead)) + stretched), x.shape),)


def _g_slice(c: Any) -> tuple:
    """Scatter g back to the operand's positions, one axis at a time: a negative step is undone by
    reversing, a step k > 1 by interleaving k-1 zeros after each entry, then zero blocks pad the
    low and high ends (one concat per axis)."""
    T, x, g = c.T, c.inputs[0], c.g
    if 0 in g.shape:
        return (c.zeros(x.shape),)
    for axis, (s, e, k, d) in enumerate(zip(c.attrs["start"], c.attrs["stop"], slice_steps(c.attrs), x.shape)):
        n = g.shape[axis]
        if k == 1 and s == 0 and e == d:
            continue
        if k < 0:
            if n > 1:
                g = T.slice_(g, [n - 1 if i == axis else 0 for i in range(g.ndim)],
                             [-1 if i == axis else size for i, size in enumerate(g.shape)],
                             [-1 if i == axis else 1 for i in range(g.ndim)])
            s, k = s + (n - 1) * k, -k  # the lowest index taken, and the stride up from it
        if k > 1 and n > 1:
            shp = g.shape
            spread = shp[:axis + 1] + (1,) + shp[axis + 1:]
            g = T.concat([T.reshape(g, spread), c.zeros(shp[:axis + 1] + (k - 1,) + shp[axis + 1:])], axis + 1)
            g = T.reshape(g, shp[:axis] + (n * k,) + shp[axis + 1:])
            g = T.slice_(g, [0] * g.ndim, [(n - 1) * k + 1 if i == axis else size for i, size in enumerate(g.shape)])
        hi = s + g.shape[axis]
        parts = []
        if s > 0:
            parts.append(c.zeros(g.shape[:axis] + (s,) + g.shape[axis + 1:]))
        parts.append(g)
        if hi < d:
            parts.append(c.zeros(g.shape[:axis] + (d - hi,) + g.shape[axis + 1:]))
        g = T.concat(parts, axis) if len(parts) > 1 else g
    return (g,)


def _g_concat(c: Any) -> tuple:
    axis, offset, out = c.attrs["axis"], 0, []
    for x, need in zip(c.inputs, c.needs):
        start = tuple(offset if i == axis else 0 for i in range(x.ndim))
        stop = tuple(offset + d if i == axis else c.g.shape[i] for i, d in enumerate(x.shape))
        out.append(c.T.slice_(c.g, start, stop) if need else None)
        offset += x.shape[axis]
    return tuple(out)


def _g_gather(c: Any) -> tuple:  # rows of g summed back into the table's rows
    table, idx = c.inputs
    return (c.T.scatter_add(c.g, idx, table.shape[0]), None)


def _g_scatter_add(c: Any) -> tuple:
    return (c.T.gather(c.g, c.inputs[1]), None)


# -- the table -------------------------------------------------------------------------------------

_table: list[OpDef] = [
    # sources: values come from the caller (input, param) or from the node itself (const)
    OpDef("input", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf"),
    OpDef("param", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf"),
    OpDef("const", 0, _source, lambda a, at: at["value"], None, {"value": "tensor"}, kind="source",
          nondiff="a constant has no inputs"),
    # elementwise arithmetic
    OpDef("add", 2, _binary(NUMERIC), lambda a, at: np.add(*a), _call("np.add"), kind="elementwise", commutative=True,
          grad=_g_add),
    OpDef("sub", 2, _binary(NUMERIC), lambda a, at: np.subtract(*a), _call("np.subtract"), kind="elementwise",
          grad=_g_sub),
    OpDef("mul", 2, _binary(NUMERIC), lambda a, at: np.multiply(*a), _call("np.multiply"), kind="elementwise",
          commutative=True, grad=_g_mul),
    OpDef("div", 2, _binary(("f64",)), lambda a, at: np.divide(*a), _call("np.divide"), kind="elementwise",
          grad=_g_div),
    OpDef("pow", 2, _binary(("f64",)), lambda a, at: np.power(*a), _call("np.power"), kind="elementwise",
          grad=_g_pow),
    OpDef("maximum", 2, _binary(NUMERIC), lambda a, at: np.maximum(*a), _call("np.maximum"), kind="elementwise",
          commutative=True, grad=_g_maximum),
    OpDef("neg", 1, _unary(NUMERIC), lambda a, at: np.negative(a[0]), _call("np.negative"), kind="elementwise",
          grad=_g_neg),
    OpDef("exp", 1, _unary(("f64",)), lambda a, at: np.exp(a[0]), _call("np.exp"), kind="elementwise", grad=_g_exp),
    OpDef("log", 1, _unary(("f64",)), lambda a, at: np.log(a[0]), _call("np.log"), kind="elementwise", grad=_g_log),
    OpDef("relu", 1, _unary(NUMERIC), lambda a, at: np.maximum(a[0], a[0].dtype.type(0)),
          lambda a, at: f"np.maximum({a[0]}, 0)", kind="elementwise", grad=_g_relu),  # weak 0: f64 or i64
    OpDef("minimum", 2, _binary(NUMERIC), lambda a, at: np.minimum(*a), _call("np.minimum"), kind="elementwise",
          commutative=True, grad=_g_minimum),
    OpDef("tanh", 1, _unary(("f64",)), lambda a, at: np.tanh(a[0]), _call("np.tanh"), kind="elementwise",
          grad=_g_tanh),
    OpDef("sigmoid", 1, _unary(("f64",)), _sigmoid_eval,  # 1 / (1 + exp(-x)), as jax.nn.sigmoid
          lambda a, at: f"np.divide(1.0, np.add(1.0, np.exp(np.negative({a[0]}))))", kind="elementwise",
          grad=_g_sigmoid),
    OpDef("sqrt", 1, _unary(("f64",)), lambda a, at: np.sqrt(a[0]), _call("np.sqrt"), kind="elementwise",
          grad=_g_sqrt),
    OpDef("abs", 1, _unary(NUMERIC), lambda a, at: np.absolute(a[0]), _call("np.absolute"), kind="elementwise",
          grad=_g_abs),
    OpDef("sin", 1, _unary(("f64",)), lambda a, at: np.sin(a[0]), _call("np.sin"), kind="elementwise", grad=_g_sin),
    OpDef("cos", 1, _unary(("f64",)), lambda a, at: np.cos(a[0]), _call("np.cos"), kind="elementwise", grad=_g_cos),
    # comparisons and selection
    OpDef("gt", 2, _binary(NUMERIC, "bool"), lambda a, at: np.greater(*a), _call("np.greater"), kind="elementwise",
          nondiff="a comparison has a boolean result"),
    OpDef("eq", 2, _binary(("f64", "i64", "bool"), "bool"), lambda a, at: np.equal(*a), _call("np.equal"),
          kind="elementwise", commutative=True, nondiff="a comparison has a boolean result"),
    OpDef("ge", 2, _binary(NUMERIC, "bool"), lambda a, at: np.greater_equal(*a), _call("np.greater_equal"),
          kind="elementwise", nondiff="a comparison has a boolean result"),
    OpDef("lt", 2, _binary(NUMERIC, "bool"), lambda a, at: np.less(*a), _call("np.less"), kind="elementwise",
          nondiff="a comparison has a boolean result"),
    OpDef("le", 2, _binary(NUMERIC, "bool"), lambda a, at: np.less_equal(*a), _call("np.less_equal"),
          kind="elementwise", nondiff="a comparison has a boolean result"),
    OpDef("ne", 2, _binary(("f64", "i64", "bool"), "bool"), lambda a, at: np.not_equal(*a), _call("np.not_equal"),
          kind="elementwise", commutative=True, nondiff="a comparison has a boolean result"),
    OpDef("where", 3, _where, lambda a, at: np.where(*a), _call("np.where"), kind="elementwise", grad=_g_where),
    OpDef("cast", 1, _cast, lambda a, at: a[0].astype(NUMPY_DTYPES[at["dtype"]]),
          lambda a, at: f"{a[0]}.astype(np.{NUMPY_DTYPES[at['dtype']].name})", {"dtype": "dtype"},
          kind="elementwise", nondiff="a dtype conversion is not differentiable"),
    OpDef("stop_gradient", 1, _identity, lambda a, at: a[0], lambda a, at: a[0], kind="elementwise",
          nondiff="stop_gradient blocks gradients by definition"),
    # reductions
    OpDef("sum", 1, _reduce(NUMERIC, None),
          lambda a, at: np.asarray(np.sum(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"np.sum({a[0]}, axis={at['axes']!r}, keepdims={at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_sum),
    OpDef("max", 1, _reduce(NUMERIC, "max"),
          lambda a, at: np.asarray(np.max(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"np.max({a[0]}, axis={at['axes']!r}, keepdims={at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_max),
    OpDef("min", 1, _reduce(NUMERIC, "min"),
          lambda a, at: np.asarray(np.min(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"np.asarray(np.min({a[0]}, axis={at['axes']!r}, keepdims={at['keepdims']!r}))",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_max),  # the same rule: ties split
    OpDef("argmax", 1, _argmax, lambda a, at: np.asarray(np.argmax(a[0], axis=at["axis"])).astype(np.int64),
          lambda a, at: f"np.asarray(np.argmax({a[0]}, axis={at['axis']!r})).astype(np.int64)", {"axis": "int"},
          kind="reduce", nondiff="argmax's result is an integer index"),
    # linear algebra
    OpDef("matmul", 2, _matmul, lambda a, at: np.asarray(np.matmul(*a)), _call("np.matmul"), grad=_g_matmul),
    # movement
    OpDef("reshape", 1, _reshape, lambda a, at: np.reshape(a[0], at["shape"]),
          lambda a, at: f"np.reshape({a[0]}, {at['shape']!r})", {"shape": "ints"}, kind="movement", grad=_g_reshape),
    OpDef("transpose", 1, _transpose, lambda a, at: np.transpose(a[0], at["perm"]),
          lambda a, at: f"np.transpose({a[0]}, {at['perm']!r})", {"perm": "ints"}, kind="movement", grad=_g_transpose),
    OpDef("broadcast", 1, _broadcast, lambda a, at: np.broadcast_to(a[0], at["shape"]),
          lambda a, at: f"np.broadcast_to({a[0]}, {at['shape']!r})", {"shape": "ints"}, kind="movement",
          grad=_g_broadcast),
    OpDef("slice", 1, _slice, lambda a, at: a[0][slice_index(at)],
          lambda a, at: f"{a[0]}{_slice_src(at)}" if at["start"] else f"{a[0]}[()]",
          {"start": "ints", "stop": "ints", "step": "ints"}, kind="movement", grad=_g_slice,
          optional=frozenset({"step"})),  # step omitted: all ones (files from before steps existed)
    OpDef("concat", None, _concat, lambda a, at: np.concatenate(a, axis=at["axis"]),
          lambda a, at: f"np.concatenate(({', '.join(a)},), axis={at['axis']!r})", {"axis": "int"}, kind="movement",
          grad=_g_concat),
    # embedding lookup and its adjoint
    OpDef("gather", 2, _gather, lambda a, at: a[0][a[1]], lambda a, at: f"{a[0]}[{a[1]}]", grad=_g_gather),
    OpDef("scatter_add", 2, _scatter_add, _scatter_add_eval,
          lambda a, at: f"_scatter_add({a[0]}, {a[1]}, {at['size']!r})",  # helper supplied by gptir.codegen
          {"size": "int"}, grad=_g_scatter_add),
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
