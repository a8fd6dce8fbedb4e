"""The op table: the single source of truth for every op.

Each :class:`OpDef` holds, for one op: its arity and attribute kinds, its type/shape rule, its numpy
evaluation (shared by the interpreter and constant folding), how the code generator writes it, the
memory facts the passes and backends rely on (fresh result or view, layout), and its gradient rule
(or the reason it has none). Adding an op is adding one entry; ``tests/test_optable.py`` walks the
table and fails for an entry that lacks a trait some pass or backend reads.

Broadcasting is explicit in the IR: elementwise ops require operands of identical type, and the
tracer inserts ``broadcast`` nodes following numpy's rules (:func:`broadcast_shapes`, the one
definition of those rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from gptir.ir import FLOATS, NUMPY_DTYPES, ShapeError, TensorType, check_signature

Attrs = Mapping[str, Any]
InferFn = Callable[[Sequence[TensorType], Attrs], TensorType]
EvalFn = Callable[[Sequence[np.ndarray], Attrs], np.ndarray]
EmitFn = Callable[[Sequence[str], Attrs], str]
# (the jax.numpy module, operand arrays, attributes) -> the result array (see OpDef.jax)
JaxLowering = Callable[[Any, Sequence[Any], Attrs], Any]

# What an op's result is, memory-wise (read by gptir.memory for buffer reuse and aliasing):
#   fresh       always a newly allocated array (or a new scalar), never a view of an operand
#   view        always a view of its (first) operand
#   maybe_view  a view or a copy, depending on the operand's layout (treated as a view)
#   reduce      fresh when it reduces at least one axis, else possibly a view
#   index       fresh when the index operand has rank >= 1 (advanced indexing copies), else maybe a view
RESULTS = ("fresh", "view", "maybe_view", "reduce", "index")
# When an op's result is provably C-contiguous (read by gptir.memory.c_contiguous), given its operands':
#   elementwise  when every operand that is not a stride-0 broadcast is (numpy allocates ufunc
#                outputs in the operands' memory order), and there is at least one such operand
#   contiguous   always (np.zeros and friends)
#   gufunc       rank <= 2: always (core output dims are allocated C-ordered); else as ``operands``
#   operands     when every operand is (concatenate follows its operands' memory order)
#   first        when its first operand is (reshape of a C array, indexing rows of a C table)
#   view         when it has its operand's shape, the operand is, any ``perm`` is the identity and
#                any ``step`` is 1 on every axis longer than 1 (so not for a view that can reorder
#                elements otherwise, such as a negative-step slice)
LAYOUTS = ("elementwise", "contiguous", "gufunc", "operands", "first", "view")


@dataclass(frozen=True)
class OpDef:
    """Everything gptir knows about one op (DEVELOPERS.md, "Adding an op", says which traits each
    pass and backend reads).

    ``ufunc`` names the numpy ufunc the op *is*: ``np.<ufunc>(*operands, *extra)``, where ``extra``
    are fixed operands written once here (relu is ``maximum(x, 0)``) and converted to the operand's
    dtype. A ufunc op needs no ``evaluate`` or ``emit``: both are derived from it, and the code
    generator may write it as ``infix`` (``a + b``) or with ``out=`` into a dead buffer.
    ``emit`` (ops without a ufunc) returns a Python expression over operand variable names and the
    verified attribute values (:meth:`gptir.ir.AttrKind.emit`), so generated source never contains
    text taken from an IR file; the names it uses besides operands come from ``emit_names``. With
    ``lift``, shape-like attributes become one closure constant, ``lift(attrs)``, whose variable name
    ``emit`` receives after the operands (programs for different sequence lengths share one text).
    ``result`` and ``layout`` are the memory facts above (:data:`RESULTS`, :data:`LAYOUTS`);
    ``simd_by_distance``: numpy picks a different (differently rounding) kernel when output and
    input are close in memory, so tiny results are never computed in place. ``implicit_broadcast``:
    the emitted call broadcasts its operands like ``broadcast_to`` would (default: ufunc ops).
    ``commutative``: the value does not depend on operand order (NaN payloads and zero signs may),
    and the simplifier tries both operand orders of a pattern. ``kind`` groups ops:
    elementwise, reduce, movement, source, other. ``grad`` is the reverse-mode rule (a
    :data:`GradRule`, see gptir.autodiff); ``nondiff`` says why an op has none. ``optional`` names
    attributes a node may omit (their default is documented with the op; an omitted attribute is
    never printed, so old files parse and print as they did). ``jax`` lowers an op
    that is not a ufunc to JAX (gptir.jaxback): ``jax(jnp, operands, attrs)`` with the ``jax.numpy``
    module passed in, so this module never imports JAX; a ufunc op lowers to ``jnp.<ufunc>`` without one.
    ``c`` is the op's lowering to C (gptir.native), a :class:`CLower`: every op has one.
    """

    name: str
    arity: int | None
    infer: InferFn
    evaluate: EvalFn | None
    emit: EmitFn | None
    attrs: Mapping[str, str] = field(default_factory=dict)
    kind: str = "other"
    commutative: bool = False
    grad: "GradRule | None" = None
    nondiff: str | None = None
    ufunc: str | None = None
    extra: tuple[float, ...] = ()
    infix: str | None = None
    result: str | None = None
    layout: str | None = None
    simd_by_distance: bool | None = None
    implicit_broadcast: bool | None = None
    lift: Callable[[Attrs], Any] | None = None
    emit_names: Mapping[str, Any] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    jax: "JaxLowering | None" = None
    c: "CLower | None" = None
    flops: "Callable[[Sequence[Sequence[int]], Sequence[int]], int] | None" = None

    def __post_init__(self) -> None:
        if self.ufunc is not None:
            fn = getattr(np, self.ufunc)
            if not isinstance(fn, np.ufunc):
                raise TypeError(f"op {self.name}: np.{self.ufunc} is not a ufunc")
            if self.evaluate is None:
                object.__setattr__(self, "evaluate", _ufunc_eval(fn, self.extra))
        if self.implicit_broadcast is None:
            object.__setattr__(self, "implicit_broadcast", self.ufunc is not None)

    def count_flops(self, operands: Sequence[Sequence[int]], result: Sequence[int]) -> int:
        """Floating-point operations of one node (operand and result shapes): ``flops`` when given, else one
        per result element of an elementwise op, one per operand element of a reduction, none otherwise
        (movement, gather, scatter_add, sources)."""
        if self.flops is not None:
            return self.flops(operands, result)
        if self.kind == "elementwise":
            return _size(result)
        if self.kind == "reduce" and operands:
            return _size(operands[0])
        return 0

    def ufunc_call(self, operands: Sequence[str], dtype: str, out: str | None = None) -> str:
        """``_<ufunc>(operands..., extra..., out=out)``: the call of the op's ufunc, its fixed extra
        operands written as literals of ``dtype`` (a Python 0.0 or 0 converts to the same value the
        interpreter's ``dtype.type(0)`` has)."""
        assert self.ufunc is not None
        extra = [repr(float(e)) if dtype in FLOATS else repr(int(e)) for e in self.extra]
        tail = [f"out={out}"] if out is not None else []
        return f"_{self.ufunc}({', '.join([*operands, *extra, *tail])})"


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _ufunc_eval(fn: np.ufunc, extra: tuple[float, ...]) -> EvalFn:
    if not extra:
        return lambda a, at: fn(*a)
    return lambda a, at: fn(*a, *(a[0].dtype.type(e) for e in extra))


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's broadcasting of ``shapes`` (None if they do not broadcast): the one definition the
    type rule, the tracer and the code generator share (np.broadcast_shapes is much slower, and
    the code generator asks for every operand of every elementwise node)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        off = rank - len(s)
        for i, d in enumerate(s):
            o = out[off + i]
            if d != o:
                if o == 1:
                    out[off + i] = d
                elif d != 1:
                    return None
    return tuple(out)


# -- the lowering to C (gptir.native) ---------------------------------------------------------------
# Every op carries a ``c`` trait saying how it becomes C. Elementwise ops give the C expression of one
# element (over the operands' element expressions, which are always plain variables, literals or array
# reads); views give their stride rule, so they cost no code; the other ops name the loop nest
# gptir.native writes for their kind. Nothing here is text from an IR file: operands are generated
# names and the only attribute read (cast's dtype) is checked against C_TYPES.

C_TYPES: dict[str, str] = {"f64": "double", "f32": "float", "i64": "int64_t", "bool": "uint8_t"}
# the kinds of C lowering: expr (one element of an elementwise op), view (a strided view, no code),
# reduce (a combine expression and an identity), and the loop nests gptir.native writes for the rest
C_KINDS = ("expr", "view", "reduce", "argmax", "matmul", "concat", "gather", "scatter_add", "source")
Strided = tuple[tuple[int, ...], tuple[int, ...], int]  # (shape, element strides, element offset)
CExprFn = Callable[[Sequence[str], str, Attrs], str]  # (operand expressions, operand dtype, attrs) -> C
CViewFn = Callable[[Strided, Attrs], "Strided | None"]


@dataclass(frozen=True)
class CLower:
    """How an op lowers to C (see gptir.native): ``kind`` is one of :data:`C_KINDS`. ``expr`` (kind
    expr) is the element's C expression, ``expr(operands, dtype, attrs)``, dtype being the operands'
    (the first operand's for where's branches: its second); for kind reduce it combines the accumulator
    and an element, starting from ``init`` (a C literal; None: from the first element), summed
    pairwise as numpy does when ``pairwise``. ``view`` (kind view) maps the operand's (shape, strides,
    offset) to the result's, or None when the operand's layout needs a contiguous copy first."""

    kind: str
    expr: CExprFn | None = None
    view: CViewFn | None = None
    init: str | None = None
    pairwise: bool = False


def c_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The element strides of a C-ordered array of ``shape``."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(out))


def is_c_contiguous(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether ``strides`` lay ``shape`` out in C order (axes of length 1 may have any stride)."""
    if any(d == 0 for d in shape):
        return True
    return all(d == 1 or s == w for d, s, w in zip(shape, strides, c_strides(shape)))


def _cv_reshape(v: Strided, at: Attrs) -> Strided | None:
    shape, strides, off = v
    return (tuple(at["shape"]), c_strides(at["shape"]), off) if is_c_contiguous(shape, strides) else None


def _cv_transpose(v: Strided, at: Attrs) -> Strided:
    shape, strides, off = v
    return tuple(shape[p] for p in at["perm"]), tuple(strides[p] for p in at["perm"]), off


def _cv_broadcast(v: Strided, at: Attrs) -> Strided:
    shape, strides, off = v
    lead = len(at["shape"]) - len(shape)
    new = [0] * lead + [0 if d == 1 and t != 1 else s for d, s, t in zip(shape, strides, at["shape"][lead:])]
    return tuple(at["shape"]), tuple(new), off


def _cv_slice(v: Strided, at: Attrs) -> Strided:
    shape, strides, off = v
    steps = slice_steps(at)
    lengths = tuple(slice_length(s, e, k) for s, e, k in zip(at["start"], at["stop"], steps))
    if 0 in lengths:
        return lengths, c_strides(lengths), off
    off += sum(s * st for s, st in zip(at["start"], strides))
    return lengths, tuple(st * k for st, k in zip(strides, steps)), off


def _cf(fn: str) -> CExprFn:
    """A libm function: ``fn`` for f64, ``fn + 'f'`` for f32."""
    return lambda a, d, at: f"{fn}{'f' if d == 'f32' else ''}({', '.join(a)})"


def _cpow(a: Sequence[str], d: str, at: Attrs) -> str:
    """pow; a scalar exponent of 2 or 0.5 (a C literal: numpy's stride-0 operand) is ``x*x`` or ``sqrt(x)``,
    numpy's own fast paths for those exponents, so the result is numpy's bit for bit."""
    for value, form in ((2.0, "({0} * {0})"), (0.5, _cf("sqrt")(["{0}"], d, at))):
        lit = value.hex() if d == "f64" else f"((float){value.hex()})"
        if a[1] == lit:
            return form.format(a[0])
    return _cf("pow")(a, d, at)


def _cbin(op: str) -> CExprFn:
    return lambda a, d, at: f"({a[0]} {op} {a[1]})"


def _cmax(cmp: str) -> CExprFn:
    """numpy's maximum/minimum: the first operand where it compares ``cmp`` or is NaN (NaN propagates)."""
    return lambda a, d, at: f"(({a[0]} {cmp} {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"


def _ccast(a: Sequence[str], d: str, at: Attrs) -> str:
    to = at["dtype"]
    if to == "bool":
        return f"({a[0]} != 0)"
    if to == "i64" and d in FLOATS:
        return f"gx_ftoi({a[0]})"  # numpy's (x86's) value for NaN and out-of-range floats, no C undefined behaviour
    return f"(({C_TYPES[to]}){a[0]})"


def _cabs(a: Sequence[str], d: str, at: Attrs) -> str:
    return _cf("fabs")(a, d, at) if d in FLOATS else f"({a[0]} < 0 ? -{a[0]} : {a[0]})"


def _csigmoid(a: Sequence[str], d: str, at: Attrs) -> str:
    one = "1.0f" if d == "f32" else "1.0"
    return f"({one} / ({one} + {_cf('exp')([f'(-{a[0]})'], d, at)}))"


C_VIEW_IDENTITY = CLower("view", view=lambda v, at: v)
_CSOURCE = CLower("source")


# -- the gradient-rule interface -------------------------------------------------------------------
# A rule builds IR with the tracer's functions, which live above this module: it reaches them only
# through the context it is handed (``c.T``), whose interface is declared here.


class GradValue(Protocol):
    """A traced value as a gradient rule uses it (gptir.tracing.Tracer is one)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> TensorType: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def ndim(self) -> int: ...
    def __add__(self, o: Any) -> "GradValue": ...
    def __radd__(self, o: Any) -> "GradValue": ...
    def __sub__(self, o: Any) -> "GradValue": ...
    def __rsub__(self, o: Any) -> "GradValue": ...
    def __mul__(self, o: Any) -> "GradValue": ...
    def __rmul__(self, o: Any) -> "GradValue": ...
    def __truediv__(self, o: Any) -> "GradValue": ...
    def __rtruediv__(self, o: Any) -> "GradValue": ...
    def __pow__(self, o: Any) -> "GradValue": ...
    def __neg__(self) -> "GradValue": ...


class GradOps(Protocol):
    """The IR-building functions gradient rules call (the gptir.tracing module provides them)."""

    def where(self, cond: Any, a: Any, b: Any) -> Any: ...
    def greater(self, a: Any, b: Any) -> Any: ...
    def less(self, a: Any, b: Any) -> Any: ...
    def equal(self, a: Any, b: Any) -> Any: ...
    def log(self, x: Any) -> Any: ...
    def sin(self, x: Any) -> Any: ...
    def cos(self, x: Any) -> Any: ...
    def cast(self, x: Any, dtype: str) -> Any: ...
    def reshape(self, x: Any, shape: Sequence[int]) -> Any: ...
    def transpose(self, x: Any, perm: Sequence[int] | None = None) -> Any: ...
    def broadcast_to(self, x: Any, shape: Sequence[int]) -> Any: ...
    def reduce_sum(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any: ...
    def matmul(self, a: Any, b: Any) -> Any: ...
    def concat(self, xs: Sequence[Any], axis: int = 0) -> Any: ...
    def slice_(self, x: Any, start: Sequence[int], stop: Sequence[int], step: Sequence[int] | None = None) -> Any: ...
    def gather(self, table: Any, indices: Any) -> Any: ...
    def scatter_add(self, updates: Any, indices: Any, size: int) -> Any: ...


class GradContext(Protocol):
    """What a gradient rule sees (gptir.autodiff.GradContext implements it): ``inputs`` (the
    operands), ``out`` (the node's value), ``g`` (its cotangent), ``attrs``, ``needs`` (which
    operands lead to a wrt input: the others get None and no gradient work), ``T`` (the IR-building
    functions), ``zeros(shape)``, ``constant(i)`` and ``swap_last(t)``."""

    @property
    def inputs(self) -> tuple[GradValue, ...]: ...
    @property
    def out(self) -> GradValue: ...
    @property
    def g(self) -> GradValue: ...
    @property
    def needs(self) -> tuple[bool, ...]: ...
    @property
    def attrs(self) -> Attrs: ...
    @property
    def T(self) -> GradOps: ...
    def zeros(self, shape: Sequence[int]) -> GradValue: ...
    def constant(self, i: int) -> np.ndarray | None: ...
    def swap_last(self, t: GradValue) -> GradValue: ...


Cotangents = tuple[GradValue | None, ...]
GradRule = Callable[[GradContext], Cotangents]


# -- type rules ------------------------------------------------------------------------------------

FLOAT = FLOATS
NUMERIC = (*FLOATS, "i64")


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
    if broadcast_shapes(t.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast {t} to {list(shape)} (numpy rules)")
    return t.with_shape(shape)


def _argmax_type(types: Sequence[TensorType], attrs: Attrs) -> TensorType:
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


def check_indices(op: str, idx: np.ndarray, n: int) -> None:
    """The IR's index contract for ``gather`` and ``scatter_add``: every index is in ``[0, n)``.

    Anything else (``-1`` included: numpy would wrap it) is an IndexError, which the interpreter reports
    naming the node; the compiled backend calls this same check. One min/max pass over the indices."""
    if idx.size == 0:
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{op} index {bad} is outside [0, {n}) (indices must be in [0, {n}))")


def _gather_eval(args: Sequence[np.ndarray], attrs: Attrs) -> np.ndarray:
    table, idx = args
    check_indices("gather", idx, table.shape[0])
    return table[idx]


BINCOUNT_MAX_ELEMENTS = 1 << 22  # scatter_add: the largest f64 update (32 MB) summed by np.bincount


def _scatter_add_eval(args: Sequence[np.ndarray], attrs: Attrs) -> np.ndarray:
    """Rows of ``upd`` added into ``size`` zero rows at ``idx``, each row's sum in index order.

    f64 goes through ``np.bincount`` with weights, which adds ``out[j] += w[i]`` for i in order in double
    precision: the same additions in the same order as ``np.add.at`` (so bit-identical), about 6x faster
    for a [1024, 128] scatter. Its flat index array is as large as the updates, so from
    BINCOUNT_MAX_ELEMENTS updates on, and for other dtypes (bincount would add in double), ``np.add.at``."""
    upd, idx = args
    size = attrs["size"]
    check_indices("scatter_add", idx, size)
    row = upd.shape[idx.ndim:]
    if upd.dtype == np.float64 and upd.size <= BINCOUNT_MAX_ELEMENTS:
        width = math.prod(row)
        flat = (idx.reshape(-1, 1) * width + np.arange(width)).ravel()
        return np.bincount(flat, weights=upd.ravel(), minlength=size * width).reshape((size,) + row)
    out = np.zeros((size,) + row, dtype=upd.dtype)
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), as jax.nn.sigmoid (the interpreter's and the compiled code's one definition)."""
    return np.divide(1.0, np.add(1.0, np.exp(np.negative(x))))


def _argmax(x: np.ndarray, axis: int) -> np.ndarray:
    """The index of the first maximal entry along ``axis``, an i64 array (ties: the first wins)."""
    return np.asarray(np.argmax(x, axis=axis)).astype(np.int64)


def _call(fn: str) -> EmitFn:
    """An emitter calling ``fn`` (a name from ``emit_names``) on the operands."""
    return lambda a, attrs: f"{fn}({', '.join(a)})"


# the traits most ufunc ops share: a fresh result, C-contiguous like its operands, one numpy kernel
# wherever the output is (exp and log spell theirs out: their kernel depends on it)
_UFUNC: dict[str, Any] = {"result": "fresh", "layout": "elementwise", "simd_by_distance": False}


# -- gradient rules --------------------------------------------------------------------------------
# One reverse-mode rule per differentiable op, used by gptir.autodiff: a :data:`GradRule`, called with
# a :class:`GradContext`. It returns one cotangent (or None) per operand, of the operand's type.


def _g_add(c: GradContext) -> Cotangents:
    return (c.g if c.needs[0] else None, c.g if c.needs[1] else None)


def _g_sub(c: GradContext) -> Cotangents:
    return (c.g if c.needs[0] else None, -c.g if c.needs[1] else None)


def _g_mul(c: GradContext) -> Cotangents:
    a, b = c.inputs
    if a.name == b.name:  # x * x: one product, not two to add up
        return (c.g * (a + a), None)
    return (c.g * b if c.needs[0] else None, c.g * a if c.needs[1] else None)


def _g_div(c: GradContext) -> Cotangents:  # d(a/b)/db = -(a/b)/b: reuse the output
    a, b = c.inputs
    return (c.g / b if c.needs[0] else None, -(c.g * c.out) / b if c.needs[1] else None)


def _g_pow(c: GradContext) -> Cotangents:
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


def _g_neg(c: GradContext) -> Cotangents:
    return (-c.g,)


def _g_exp(c: GradContext) -> Cotangents:
    return (c.g * c.out,)


def _g_log(c: GradContext) -> Cotangents:
    return (c.g / c.inputs[0],)


def _g_relu(c: GradContext) -> Cotangents:  # the kink at 0 gets gradient 0
    z = c.zeros(c.g.shape)
    return (c.T.where(c.T.greater(c.inputs[0], z), c.g, z),)


def _g_extremum(c: GradContext, first_wins: str) -> Cotangents:
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


def _g_maximum(c: GradContext) -> Cotangents:
    return _g_extremum(c, "gt")


def _g_minimum(c: GradContext) -> Cotangents:
    return _g_extremum(c, "lt")


def _g_tanh(c: GradContext) -> Cotangents:  # 1 - tanh^2, from the output
    return (c.g * (1.0 - c.out * c.out),)


def _g_sigmoid(c: GradContext) -> Cotangents:  # s * (1 - s), from the output
    return (c.g * (c.out * (1.0 - c.out)),)


def _g_sqrt(c: GradContext) -> Cotangents:  # 1 / (2 sqrt x), from the output (inf at 0, as in JAX and torch)
    return (c.g / (c.out + c.out),)


def _g_abs(c: GradContext) -> Cotangents:  # sign(x): 0 at 0, as JAX and torch define it
    x, T = c.inputs[0], c.T
    z = c.zeros(c.g.shape)
    return (T.where(T.greater(x, z), c.g, T.where(T.less(x, z), -c.g, z)),)


def _g_sin(c: GradContext) -> Cotangents:
    return (c.g * c.T.cos(c.inputs[0]),)


def _g_cos(c: GradContext) -> Cotangents:
    return (-(c.g * c.T.sin(c.inputs[0])),)


def _g_where(c: GradContext) -> Cotangents:
    cond = c.inputs[0]
    z = c.zeros(c.g.shape) if c.needs[1] or c.needs[2] else None
    return (None, c.T.where(cond, c.g, z) if c.needs[1] else None, c.T.where(cond, z, c.g) if c.needs[2] else None)


def _kept_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def _g_sum(c: GradContext) -> Cotangents:  # leading reduced axes need no reshape: broadcasting prepends them
    x, axes = c.inputs[0], c.attrs["axes"]
    leading = axes == tuple(range(len(axes)))
    g = c.g if c.attrs["keepdims"] or leading else c.T.reshape(c.g, _kept_shape(x.shape, axes))
    return (c.T.broadcast_to(g, x.shape),)


def _g_max(c: GradContext) -> Cotangents:
    """Every maximal (for min: minimal) entry gets an equal share of the cotangent (ties split it
    evenly, like tinygrad and torch.amax), so the gradient is the same whatever order the entries are in."""
    T, x, axes = c.T, c.inputs[0], c.attrs["axes"]
    kept = _kept_shape(x.shape, axes)
    hit = T.equal(x, T.broadcast_to(T.reshape(c.out, kept), x.shape))
    count = T.reduce_sum(T.cast(hit, x.type.dtype), axes, keepdims=True)
    share = T.broadcast_to(T.reshape(c.g, kept) / count, x.shape)
    return (T.where(hit, share, c.zeros(x.shape)),)


def _g_matmul(c: GradContext) -> Cotangents:
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


def _g_reshape(c: GradContext) -> Cotangents:
    return (c.T.reshape(c.g, c.inputs[0].shape),)


def _g_transpose(c: GradContext) -> Cotangents:
    perm = c.attrs["perm"]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return (c.T.transpose(c.g, inverse),)


def _g_broadcast(c: GradContext) -> Cotangents:  # sum over the new leading axes and the stretched size-1 axes
    x, shape = c.inputs[0], c.attrs["shape"]
    lead = len(shape) - x.ndim
    stretched = tuple(lead + i for i, d in enumerate(x.shape) if d == 1 and shape[lead + i] != 1)
    if not lead:
        return (c.T.reduce_sum(c.g, stretched, keepdims=True) if stretched else c.g,)
    return (c.T.reshape(c.T.reduce_sum(c.g, tuple(range(lead)) + stretched), x.shape),)


def _g_slice(c: GradContext) -> Cotangents:
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


def _g_concat(c: GradContext) -> Cotangents:
    axis, offset, out = c.attrs["axis"], 0, []
    for x, need in zip(c.inputs, c.needs):
        start = tuple(offset if i == axis else 0 for i in range(x.ndim))
        stop = tuple(offset + d if i == axis else c.g.shape[i] for i, d in enumerate(x.shape))
        out.append(c.T.slice_(c.g, start, stop) if need else None)
        offset += x.shape[axis]
    return tuple(out)


def _g_gather(c: GradContext) -> Cotangents:  # rows of g summed back into the table's rows
    table, idx = c.inputs
    return (c.T.scatter_add(c.g, idx, table.shape[0]), None)


def _g_scatter_add(c: GradContext) -> Cotangents:
    return (c.T.gather(c.g, c.inputs[1]), None)


# -- the table -------------------------------------------------------------------------------------

_table: list[OpDef] = [
    # sources: values come from the caller (input, param) or from the node itself (const)
    OpDef("input", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf", c=_CSOURCE),
    OpDef("param", 0, _source, None, None, kind="source", nondiff="a graph input is a leaf", c=_CSOURCE),
    OpDef("const", 0, _source, lambda a, at: at["value"], None, {"value": "tensor"}, kind="source",
          nondiff="a constant has no inputs", jax=lambda jnp, a, at: jnp.asarray(at["value"]), c=_CSOURCE),
    # elementwise arithmetic: numpy ufuncs (evaluation and code both come from ``ufunc``)
    OpDef("add", 2, _binary(NUMERIC), None, None, kind="elementwise", commutative=True, grad=_g_add,
          **_UFUNC, ufunc="add", infix="+", c=CLower("expr", _cbin("+"))),
    OpDef("sub", 2, _binary(NUMERIC), None, None, kind="elementwise", grad=_g_sub,
          **_UFUNC, ufunc="subtract", infix="-", c=CLower("expr", _cbin("-"))),
    OpDef("mul", 2, _binary(NUMERIC), None, None, kind="elementwise", commutative=True, grad=_g_mul,
          **_UFUNC, ufunc="multiply", infix="*", c=CLower("expr", _cbin("*"))),
    OpDef("div", 2, _binary(FLOAT), None, None, kind="elementwise", grad=_g_div,
          **_UFUNC, ufunc="divide", infix="/", c=CLower("expr", _cbin("/"))),
    # never ``**`` in generated code: numpy turns x ** 0.5 into sqrt
    OpDef("pow", 2, _binary(FLOAT), None, None, kind="elementwise", grad=_g_pow, **_UFUNC, ufunc="power",
          c=CLower("expr", _cpow)),
    OpDef("maximum", 2, _binary(NUMERIC), None, None, kind="elementwise", commutative=True, grad=_g_maximum,
          **_UFUNC, ufunc="maximum", c=CLower("expr", _cmax(">="))),
    OpDef("neg", 1, _unary(NUMERIC), None, None, kind="elementwise", grad=_g_neg,
          **_UFUNC, ufunc="negative", infix="-", c=CLower("expr", lambda a, d, at: f"(-{a[0]})")),
    OpDef("exp", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_exp,
          ufunc="exp", result="fresh", layout="elementwise", simd_by_distance=True, c=CLower("expr", _cf("exp"))),
    OpDef("log", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_log,
          ufunc="log", result="fresh", layout="elementwise", simd_by_distance=True, c=CLower("expr", _cf("log"))),
    OpDef("relu", 1, _unary(NUMERIC), None, None, kind="elementwise", grad=_g_relu,
          **_UFUNC, ufunc="maximum", extra=(0,), c=CLower("expr", lambda a, d, at: _cmax(">=")([a[0], "0"], d, at))),
    OpDef("minimum", 2, _binary(NUMERIC), None, None, kind="elementwise", commutative=True, grad=_g_minimum,
          **_UFUNC, ufunc="minimum", c=CLower("expr", _cmax("<="))),
    # transcendental ufuncs: SIMD (SVML-derived) kernels, treated like exp and log
    OpDef("tanh", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_tanh,
          **{**_UFUNC, "simd_by_distance": True}, ufunc="tanh", c=CLower("expr", _cf("tanh"))),
    OpDef("sin", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_sin,
          **{**_UFUNC, "simd_by_distance": True}, ufunc="sin", c=CLower("expr", _cf("sin"))),
    OpDef("cos", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_cos,
          **{**_UFUNC, "simd_by_distance": True}, ufunc="cos", c=CLower("expr", _cf("cos"))),
    # correctly rounded (IEEE sqrt) and exact (abs): every kernel gives the same bits
    OpDef("sqrt", 1, _unary(FLOAT), None, None, kind="elementwise", grad=_g_sqrt, **_UFUNC, ufunc="sqrt",
          c=CLower("expr", _cf("sqrt"))),
    OpDef("abs", 1, _unary(NUMERIC), None, None, kind="elementwise", grad=_g_abs, **_UFUNC, ufunc="absolute",
          c=CLower("expr", _cabs)),
    # a composition of ufuncs, not one: one helper computes it for both backends (never with ``out=``)
    OpDef("sigmoid", 1, _unary(FLOAT), lambda a, at: _sigmoid(a[0]), _call("_sigmoid"), kind="elementwise",
          grad=_g_sigmoid, result="fresh", layout="elementwise", emit_names={"_sigmoid": _sigmoid},
          jax=lambda jnp, a, at: jnp.divide(1.0, jnp.add(1.0, jnp.exp(jnp.negative(a[0])))),
          c=CLower("expr", _csigmoid)),
    # comparisons and selection
    OpDef("gt", 2, _binary(NUMERIC, "bool"), None, None, kind="elementwise",
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="greater", c=CLower("expr", _cbin(">"))),
    OpDef("eq", 2, _binary((*NUMERIC, "bool"), "bool"), None, None, kind="elementwise", commutative=True,
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="equal", c=CLower("expr", _cbin("=="))),
    OpDef("ge", 2, _binary(NUMERIC, "bool"), None, None, kind="elementwise",
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="greater_equal", c=CLower("expr", _cbin(">="))),
    OpDef("lt", 2, _binary(NUMERIC, "bool"), None, None, kind="elementwise",
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="less", c=CLower("expr", _cbin("<"))),
    OpDef("le", 2, _binary(NUMERIC, "bool"), None, None, kind="elementwise",
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="less_equal", c=CLower("expr", _cbin("<="))),
    OpDef("ne", 2, _binary((*NUMERIC, "bool"), "bool"), None, None, kind="elementwise", commutative=True,
          nondiff="a comparison has a boolean result", **_UFUNC, ufunc="not_equal", c=CLower("expr", _cbin("!="))),
    OpDef("where", 3, _where, lambda a, at: np.where(*a), _call("_where"),
          kind="elementwise", grad=_g_where, result="fresh", layout="elementwise", implicit_broadcast=True,
          emit_names={"_where": np.where}, jax=lambda jnp, a, at: jnp.where(*a),
          c=CLower("expr", lambda a, d, at: f"({a[0]} ? {a[1]} : {a[2]})")),
    OpDef("cast", 1, _cast, lambda a, at: a[0].astype(NUMPY_DTYPES[at["dtype"]]),
          lambda a, at: f"{a[0]}.astype(_{at['dtype']})", {"dtype": "dtype"}, kind="elementwise",
          nondiff="a dtype conversion is not differentiable", result="fresh", layout="elementwise",
          emit_names={f"_{name}": dt for name, dt in NUMPY_DTYPES.items()},
          jax=lambda jnp, a, at: a[0].astype(NUMPY_DTYPES[at["dtype"]]), c=CLower("expr", _ccast)),
    # the identity: the code generator shares the operand's variable
    OpDef("stop_gradient", 1, _identity, lambda a, at: a[0], lambda a, at: a[0], kind="elementwise",
          nondiff="stop_gradient blocks gradients by definition", result="view", layout="first",
          jax=lambda jnp, a, at: a[0], c=C_VIEW_IDENTITY),
    # reductions: np.sum(x, axis, keepdims=k) is np.add.reduce(x, axis, None, None, keepdims=k) for
    # ndarrays (and numpy scalars take the same path through their .sum method)
    OpDef("sum", 1, _reduce(NUMERIC, None),
          lambda a, at: np.asarray(np.sum(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"_add.reduce({a[0]}, {at['axes']!r}, None, None, {at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_sum, result="reduce", layout="elementwise",
          emit_names={"_add": np.add}, jax=lambda jnp, a, at: jnp.sum(a[0], axis=at["axes"], keepdims=at["keepdims"]),
          c=CLower("reduce", _cbin("+"), init="0", pairwise=True)),
    OpDef("max", 1, _reduce(NUMERIC, "max"),
          lambda a, at: np.asarray(np.max(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"_maximum.reduce({a[0]}, {at['axes']!r}, None, None, {at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_max, result="reduce", layout="elementwise",
          emit_names={"_maximum": np.maximum}, jax=lambda jnp, a, at: jnp.max(a[0], axis=at["axes"], keepdims=at["keepdims"]),
          c=CLower("reduce", _cmax(">="))),
    OpDef("min", 1, _reduce(NUMERIC, "min"),
          lambda a, at: np.asarray(np.min(a[0], axis=at["axes"], keepdims=at["keepdims"])),
          lambda a, at: f"_minimum.reduce({a[0]}, {at['axes']!r}, None, None, {at['keepdims']!r})",
          {"axes": "ints", "keepdims": "bool"}, kind="reduce", grad=_g_max,  # the same rule: ties split
          result="reduce", layout="elementwise", emit_names={"_minimum": np.minimum},
          jax=lambda jnp, a, at: jnp.min(a[0], axis=at["axes"], keepdims=at["keepdims"]),
          c=CLower("reduce", _cmax("<="))),
    # argmax allocates its result (C-ordered); claimed contiguous only as an elementwise result would be
    OpDef("argmax", 1, _argmax_type, lambda a, at: _argmax(a[0], at["axis"]),
          lambda a, at: f"_argmax({a[0]}, {at['axis']!r})", {"axis": "int"}, kind="reduce",
          nondiff="argmax's result is an integer index", result="fresh", layout="elementwise",
          emit_names={"_argmax": _argmax},
          jax=lambda jnp, a, at: jnp.argmax(a[0], axis=at["axis"]).astype(jnp.int64), c=CLower("argmax")),
    # linear algebra
    OpDef("matmul", 2, _matmul, lambda a, at: np.asarray(np.matmul(*a)), None, grad=_g_matmul, infix="@",
          result="fresh", layout="gufunc", jax=lambda jnp, a, at: jnp.matmul(*a, precision="highest"),
          c=CLower("matmul"), flops=lambda ins, out: 2 * _size(out) * ins[0][-1]),  # a multiply and an add
    # movement (views; shape-like attributes are closure constants in generated code)
    OpDef("reshape", 1, _reshape, lambda a, at: np.reshape(a[0], at["shape"]),
          lambda a, at: f"{a[0]}.reshape({a[1]})", {"shape": "ints"}, kind="movement", grad=_g_reshape,
          result="maybe_view", layout="first", lift=lambda at: at["shape"],
          jax=lambda jnp, a, at: jnp.reshape(a[0], at["shape"]), c=CLower("view", view=_cv_reshape)),
    OpDef("transpose", 1, _transpose, lambda a, at: np.transpose(a[0], at["perm"]),
          lambda a, at: f"{a[0]}.T" if at["perm"] == (1, 0) else f"{a[0]}.transpose({at['perm']!r})",
          {"perm": "ints"}, kind="movement", grad=_g_transpose, result="view", layout="view",
          jax=lambda jnp, a, at: jnp.transpose(a[0], at["perm"]), c=CLower("view", view=_cv_transpose)),
    OpDef("broadcast", 1, _broadcast, lambda a, at: np.broadcast_to(a[0], at["shape"]),
          lambda a, at: f"_broadcast_to({a[0]}, {a[1]})", {"shape": "ints"}, kind="movement", grad=_g_broadcast,
          result="view", layout="view", lift=lambda at: at["shape"], emit_names={"_broadcast_to": np.broadcast_to},
          jax=lambda jnp, a, at: jnp.broadcast_to(a[0], at["shape"]), c=CLower("view", view=_cv_broadcast)),
    OpDef("slice", 1, _slice, lambda a, at: a[0][slice_index(at)], lambda a, at: f"{a[0]}[{a[1]}]",
          {"start": "ints", "stop": "ints", "step": "ints"}, kind="movement", grad=_g_slice, result="view",
          layout="view", lift=slice_index,
          optional=frozenset({"step"}),  # step omitted: all ones (files from before steps existed)
          jax=lambda jnp, a, at: a[0][slice_index(at)], c=CLower("view", view=_cv_slice)),
    OpDef("concat", None, _concat, lambda a, at: np.concatenate(a, axis=at["axis"]),
          lambda a, at: f"_concatenate(({', '.join(a)},), {at['axis']!r})", {"axis": "int"}, kind="movement",
          grad=_g_concat, result="fresh", layout="operands", emit_names={"_concatenate": np.concatenate},
          jax=lambda jnp, a, at: jnp.concatenate(a, axis=at["axis"]), c=CLower("concat")),
    # embedding lookup and its adjoint
    OpDef("gather", 2, _gather, _gather_eval, lambda a, at: f"_gather({a[0]}, {a[1]})", grad=_g_gather,
          result="index", layout="first", emit_names={"_gather": lambda table, idx: _gather_eval((table, idx), {})},
          jax=lambda jnp, a, at: a[0][a[1]], c=CLower("gather")),
    OpDef("scatter_add", 2, _scatter_add, _scatter_add_eval, lambda a, at: f"_scatter_add({a[0]}, {a[1]}, {a[2]})",
          {"size": "int"}, grad=_g_scatter_add, result="fresh", layout="contiguous", lift=lambda at: at["size"],
          emit_names={"_scatter_add": lambda upd, idx, size: _scatter_add_eval((upd, idx), {"size": size})},
          jax=lambda jnp, a, at: jnp.zeros((at["size"],) + a[0].shape[a[1].ndim:], a[0].dtype).at[a[1]].add(a[0]),
          c=CLower("scatter_add")),
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
