"""Tracing: run ordinary Python model code on Tracer objects and record the IR it builds.

A :class:`Builder` appends typed nodes to a graph under construction; the tracer, the autodiff pass
and the passes all build IR through it, so naming, type checking and provenance work the same way
everywhere. Names come from the active scope path plus a base name (the op, or a hint), with ``.1``,
``.2`` suffixes only for repeats inside one graph: tracing the same model twice gives the same names.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from gptir.ir import NUMPY_DTYPES, Graph, Node, ShapeError, TensorType, is_identifier, make_graph
from gptir.ops import OPS, broadcast_shapes, infer_type

# The scope path is dynamic context (like a call stack), so it lives in a ContextVar: thread- and
# async-safe, and reset on exit from every ``scope`` block.
_SCOPE: ContextVar[tuple[str, ...]] = ContextVar("gptir_scope", default=())

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames in these files are gptir machinery, not model code: a node's location skips them.
_INTERNAL_FILES = {os.path.join(_PKG_DIR, f) for f in ("tracing.py", "ops.py", "ir.py", "autodiff.py", "passes.py")}


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Name the nodes built inside: ``with scope("layer0"), scope("attn"): ...`` -> ``layer0.attn.*``."""
    if not is_identifier(name):
        raise ShapeError(f"bad scope name {name!r}: use identifiers separated by dots")
    token = _SCOPE.set(_SCOPE.get() + (name,))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_scope() -> str:
    return ".".join(_SCOPE.get())


def _caller_location() -> str:
    frame: FrameType | None = sys._getframe(2)
    cwd = os.getcwd()
    while frame is not None:
        internal, shown = _file_info(frame.f_code.co_filename, cwd)
        if not internal:
            return f"{shown}:{frame.f_lineno}"
        frame = frame.f_back
    return ""  # pragma: no cover - only when called from gptir internals alone


@functools.lru_cache(maxsize=1024)
def _file_info(path: str, cwd: str) -> tuple[bool, str]:
    """(is gptir machinery, display name) of a code file; cached because every traced op asks."""
    return os.path.abspath(path) in _INTERNAL_FILES, _display_path(path)


def _display_path(path: str) -> str:
    """Stable, short file names: ``gptir/nn.py`` for the package, cwd-relative for user code."""
    full = os.path.abspath(path)
    if full.startswith(_PKG_DIR + os.sep):
        return "gptir/" + os.path.relpath(full, _PKG_DIR).replace(os.sep, "/")
    rel = os.path.relpath(full)
    return (rel if not rel.startswith("..") else os.path.basename(full)).replace(os.sep, "/")


@dataclass(frozen=True)
class Param:
    """An example argument that becomes a ``param`` input (trainable), with its value."""

    value: Any


class Builder:
    """Appends nodes to a graph under construction, inferring types and recording provenance."""

    def __init__(self, name: str = "main", base: Graph | None = None) -> None:
        self.name = name
        self.nodes: dict[str, Node] = dict(base.nodes) if base else {}
        self.params: dict[str, np.ndarray] = dict(base.params) if base else {}
        self.params_file = base.params_file if base else None
        self._counts: dict[str, int] = {}
        # provenance override (used by autodiff so backward nodes carry the forward node's origin)
        self._origin: tuple[str, str, bool] | None = None

    # -- names and provenance --------------------------------------------------------------------
    def fresh_name(self, base: str, scope_path: str | None = None) -> str:
        path = current_scope() if scope_path is None else scope_path
        stem = f"{path}.{base}" if path else base
        if stem not in self.nodes:
            return stem
        k = self._counts.get(stem, 0)
        while True:
            k += 1
            candidate = f"{stem}.{k}"
            if candidate not in self.nodes:
                self._counts[stem] = k
                return candidate

    @contextlib.contextmanager
    def origin(self, scope_path: str, loc: str, backward: bool = True) -> Iterator[None]:
        """Nodes built inside get this scope, location and backward flag (autodiff uses it)."""
        saved = self._origin
        self._origin = (scope_path, loc, backward)
        try:
            yield
        finally:
            self._origin = saved

    def _add(self, op: str, inputs: tuple[str, ...], ty: TensorType, attrs: Mapping[str, Any],
             name: str | None) -> "Tracer":
        if self._origin is not None:
            scope_path, loc, backward = self._origin
        else:
            scope_path, loc, backward = current_scope(), _caller_location(), False
        node_name = self.fresh_name(name or op, scope_path)
        self.nodes[node_name] = Node(node_name, op, inputs, ty, dict(attrs), scope_path, loc, backward)
        return Tracer(self, node_name, ty)

    # -- building --------------------------------------------------------------------------------
    def input(self, name: str, ty: TensorType, value: np.ndarray | None = None) -> "Tracer":
        """A graph input: data, or (with a value, or ``value=...`` later) a trainable ``param``."""
        if not is_identifier(name):
            raise ShapeError(f"bad input name {name!r}: use an identifier such as x or layer0.w")
        if name in self.nodes:
            raise ShapeError(f"duplicate input name {name!r}")
        op = "input" if value is None else "param"
        if value is not None:
            value = np.asarray(value, dtype=ty.np_dtype)
            if value.shape != ty.shape:
                raise ShapeError(f"param {name} is {ty} but its value has shape {list(value.shape)}")
            self.params[name] = value
        loc = self._origin[1] if self._origin else _caller_location()
        self.nodes[name] = Node(name, op, (), ty, {}, "", loc, False)
        return Tracer(self, name, ty)

    def param(self, name: str, ty: TensorType, value: np.ndarray | None = None) -> "Tracer":
        t = self.input(name, ty, value)
        if value is None:  # a param without a value: supplied at run time
            self.nodes[name] = self.nodes[name].replace(op="param")
        return t

    def const(self, value: Any, dtype: str | None = None, name: str | None = None) -> "Tracer":
        arr = np.asarray(value, dtype=NUMPY_DTYPES[dtype] if dtype else None)
        if dtype is None and arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif dtype is None and arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        ty = TensorType.of(arr)
        return self._add("const", (), ty, {"value": arr}, name or "const")

    def emit(self, op: str, inputs: Sequence["Tracer"], attrs: Mapping[str, Any] | None = None,
             name: str | None = None) -> "Tracer":
        """Append ``op(inputs)``; the output type comes from the op table's type rule."""
        attrs = dict(attrs or {})
        for t in inputs:
            if t.builder is not self:
                raise ShapeError("a value from another trace was used here (mixing traces is not allowed)")
        try:
            ty = infer_type(op, [t.type for t in inputs], attrs)
        except ShapeError as e:
            where = self._origin[1] if self._origin else _caller_location()
            raise ShapeError(f"{where}: {op}: {e}") from None
        return self._add(op, tuple(t.name for t in inputs), ty, attrs, name)

    def value(self, name: str) -> "Tracer":
        """A tracer for an existing node (used when extending a graph, e.g. by autodiff)."""
        return Tracer(self, name, self.nodes[name].type)

    def finish(self, outputs: Mapping[str, "Tracer"]) -> Graph:
        for out, t in outputs.items():
            if not is_identifier(out):
                raise ShapeError(f"bad output name {out!r}")
            if not isinstance(t, Tracer) or t.builder is not self:
                raise ShapeError(f"output {out} is not a value of this trace (got {type(t).__name__})")
        used = {n.name for n in self.nodes.values() if n.op == "param"}
        params = {k: v for k, v in self.params.items() if k in used}
        return make_graph(self.name, self.nodes.values(), {k: t.name for k, t in outputs.items()}, params,
                          self.params_file)


ArrayLike = Any


class Tracer:
    """A symbolic value in a trace: Python operators and gptir functions on it append IR nodes."""

    __slots__ = ("builder", "name", "type")
    __array_ufunc__ = None  # make numpy defer to our reflected operators (np.float64(2) * t)

    def __init__(self, builder: Builder, name: str, ty: TensorType) -> None:
        self.builder = builder
        self.name = name
        self.type = ty

    def __repr__(self) -> str:
        return f"Tracer(%{self.name} : {self.type})"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.rank

    def __bool__(self) -> bool:
        raise ShapeError("a traced value has no concrete truth value: use gptir.where instead of if/else")

    def __len__(self) -> int:
        if not self.shape:
            raise ShapeError("len() of a scalar")
        return self.shape[0]

    # arithmetic (numpy broadcasting, made explicit)
    def __add__(self, o: ArrayLike) -> "Tracer": return _binary("add", self, o)
    def __radd__(self, o: ArrayLike) -> "Tracer": return _binary("add", o, self)
    def __sub__(self, o: ArrayLike) -> "Tracer": return _binary("sub", self, o)
    def __rsub__(self, o: ArrayLike) -> "Tracer": return _binary("sub", o, self)
    def __mul__(self, o: ArrayLike) -> "Tracer": return _binary("mul", self, o)
    def __rmul__(self, o: ArrayLike) -> "Tracer": return _binary("mul", o, self)
    def __truediv__(self, o: ArrayLike) -> "Tracer": return _binary("div", self, o)
    def __rtruediv__(self, o: ArrayLike) -> "Tracer": return _binary("div", o, self)
    def __pow__(self, o: ArrayLike) -> "Tracer": return _binary("pow", self, o)
    def __rpow__(self, o: ArrayLike) -> "Tracer": return _binary("pow", o, self)
    def __neg__(self) -> "Tracer": return self.builder.emit("neg", [self])
    def __gt__(self, o: ArrayLike) -> "Tracer": return _binary("gt", self, o)
    def __lt__(self, o: ArrayLike) -> "Tracer": return _binary("gt", o, self)
    def __matmul__(self, o: ArrayLike) -> "Tracer": return matmul(self, o)
    def __rmatmul__(self, o: ArrayLike) -> "Tracer": return matmul(o, self)

    def __getitem__(self, index: Any) -> "Tracer":
        return _index(self, index)

    # methods mirroring numpy
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return reduce_sum(self, axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return reduce_max(self, axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        axes = _norm_axes(self, axis)
        count = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        return reduce_sum(self, axes, keepdims) / float(count)

    def reshape(self, *shape: int | Sequence[int]) -> "Tracer":
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])  # type: ignore[assignment]
        return reshape(self, shape)  # type: ignore[arg-type]

    def transpose(self, *perm: int) -> "Tracer":
        return transpose(self, perm or None)

    @property
    def T(self) -> "Tracer":
        return transpose(self)


# -- functions on tracers ---------------------------------------------------------------------------


def _builder_of(*xs: Any) -> Builder:
    for x in xs:
        if isinstance(x, Tracer):
            return x.builder
    raise ShapeError("gptir functions need at least one traced value (call them inside gptir.trace)")


def lift(b: Builder, x: ArrayLike, like: Tracer | None = None) -> Tracer:
    """A tracer for ``x``: itself if already traced, else a constant (in the dtype of ``like``)."""
    if isinstance(x, Tracer):
        return x
    if isinstance(x, (bool, np.bool_)) and like is not None and like.dtype != "bool":
        raise ShapeError("a bool cannot be combined with a number here")
    dtype = like.dtype if like is not None and isinstance(x, (int, float, np.number)) else None
    return b.const(x, dtype)


def broadcast_to(x: Tracer, shape: Sequence[int]) -> Tracer:
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    return x.builder.emit("broadcast", [x], {"shape": shape})


def _binary(op: str, a: ArrayLike, b: ArrayLike) -> Tracer:
    bld = _builder_of(a, b)
    ta = lift(bld, a, b if isinstance(b, Tracer) else None)
    tb = lift(bld, b, ta)
    if ta.dtype != tb.dtype:
        raise ShapeError(f"{op}: operands have dtypes {ta.dtype} and {tb.dtype}; convert one with gptir.cast")
    shape = broadcast_shapes(ta.shape, tb.shape)
    if shape is None:
        raise ShapeError(f"{op}: shapes {list(ta.shape)} and {list(tb.shape)} do not broadcast")
    return bld.emit(op, [broadcast_to(ta, shape), broadcast_to(tb, shape)])


def add(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("add", a, b)
def sub(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("sub", a, b)
def mul(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("mul", a, b)
def div(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("div", a, b)
def power(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("pow", a, b)
def maximum(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("maximum", a, b)
def greater(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("gt", a, b)
def equal(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("eq", a, b)


def _unary(op: str, x: Tracer) -> Tracer:
    if not isinstance(x, Tracer):
        raise ShapeError(f"{op} expects a traced value, got {type(x).__name__}")
    return x.builder.emit(op, [x])


def neg(x: Tracer) -> Tracer: return _unary("neg", x)
def exp(x: Tracer) -> Tracer: return _unary("exp", x)
def log(x: Tracer) -> Tracer: return _unary("log", x)
def relu(x: Tracer) -> Tracer: return _unary("relu", x)
def stop_gradient(x: Tracer) -> Tracer: return _unary("stop_gradient", x)


def cast(x: Tracer, dtype: str) -> Tracer:
    return x if x.dtype == dtype else x.builder.emit("cast", [x], {"dtype": dtype})


def where(cond: ArrayLike, a: ArrayLike, b: ArrayLike) -> Tracer:
    bld = _builder_of(cond, a, b)
    ta = lift(bld, a, b if isinstance(b, Tracer) else None)
    tb = lift(bld, b, ta)
    tc = lift(bld, cond)
    shape = broadcast_shapes(tc.shape, ta.shape, tb.shape)
    if shape is None:
        raise ShapeError(f"where: shapes {list(tc.shape)}, {list(ta.shape)}, {list(tb.shape)} do not broadcast")
    return bld.emit("where", [broadcast_to(tc, shape), broadcast_to(ta, shape), broadcast_to(tb, shape)])


def _norm_axes(x: Tracer, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -x.ndim <= a < x.ndim:
            raise ShapeError(f"axis {a} is out of range for {x.type}")
        out.append(a % x.ndim)
    return tuple(sorted(set(out)))


def reduce_sum(x: Tracer, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tracer:
    return x.builder.emit("sum", [x], {"axes": _norm_axes(x, axis), "keepdims": bool(keepdims)})


def reduce_max(x: Tracer, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tracer:
    return x.builder.emit("max", [x], {"axes": _norm_axes(x, axis), "keepdims": bool(keepdims)})


def matmul(a: ArrayLike, b: ArrayLike) -> Tracer:
    bld = _builder_of(a, b)
    return bld.emit("matmul", [lift(bld, a), lift(bld, b)])


def reshape(x: Tracer, shape: Sequence[int]) -> Tracer:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        shape = tuple(x.type.size // known if d == -1 and known else d for d in shape)
    return x if shape == x.shape else x.builder.emit("reshape", [x], {"shape": shape})


def transpose(x: Tracer, perm: Sequence[int] | None = None) -> Tracer:
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(int(p) for p in perm)
    return x if perm == tuple(range(x.ndim)) else x.builder.emit("transpose", [x], {"perm": perm})


def concat(xs: Sequence[Tracer], axis: int = 0) -> Tracer:
    if not xs:
        raise ShapeError("concat of nothing")
    bld = _builder_of(*xs)
    rank = xs[0].ndim
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"concat axis {axis} is out of range for rank {rank}")
    return bld.emit("concat", list(xs), {"axis": axis % rank if rank else 0})


def gather(table: Tracer, indices: ArrayLike) -> Tracer:
    """``table[indices]`` along axis 0 (embedding lookup)."""
    return table.builder.emit("gather", [table, lift(table.builder, indices) if not isinstance(indices, Tracer)
                                         else indices])


def scatter_add(updates: Tracer, indices: Tracer, size: int) -> Tracer:
    """The adjoint of gather: rows of ``updates`` summed into a zero tensor of ``size`` rows."""
    return updates.builder.emit("scatter_add", [updates, indices], {"size": int(size)})


def slice_(x: Tracer, start: Sequence[int], stop: Sequence[int]) -> Tracer:
    start, stop = tuple(int(s) for s in start), tuple(int(s) for s in stop)
    if start == (0,) * x.ndim and stop == x.shape:
        return x
    return x.builder.emit("slice", [x], {"start": start, "stop": stop})


def _index(x: Tracer, index: Any) -> Tracer:
    if isinstance(index, Tracer):
        return gather(x, index)
    items = index if isinstance(index, tuple) else (index,)
    if len(items) > x.ndim:
        raise ShapeError(f"too many indices for {x.type}")
    start, stop, keep = [], [], []
    for axis, dim in enumerate(x.shape):
        item = items[axis] if axis < len(items) else slice(None)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item) + (dim if item < 0 else 0)
            if not 0 <= i < dim:
                raise ShapeError(f"index {item} is out of range for axis {axis} of {x.type}")
            start.append(i); stop.append(i + 1)
        elif isinstance(item, slice):
            s, e, step = item.indices(dim)
            if step != 1:
                raise ShapeError("only step-1 slices are supported")
            start.append(s); stop.append(max(s, e)); keep.append(axis)
        else:
            raise ShapeError(f"unsupported index {item!r}: use ints, slices or an i64 traced value")
    out = slice_(x, start, stop)
    shape = tuple(out.shape[a] for a in keep)
    return reshape(out, shape)


# -- tracing a function -----------------------------------------------------------------------------


def _spec_type(spec: Any) -> tuple[TensorType, np.ndarray | None]:
    if isinstance(spec, TensorType):
        return spec, None
    if isinstance(spec, str):
        return TensorType.parse(spec), None
    arr = np.asarray(spec)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    return TensorType.of(arr), arr


def _make_input(b: Builder, name: str, spec: Any) -> Any:
    if isinstance(spec, Mapping):
        return {k: _make_input(b, k, v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)) and not isinstance(spec, np.ndarray) and spec and not all(
        isinstance(v, (int, float)) for v in spec
    ):
        return [_make_input(b, f"{name}.{i}", v) for i, v in enumerate(spec)]
    if isinstance(spec, Param):
        ty, arr = _spec_type(spec.value)
        return b.input(name, ty, arr if arr is not None else np.zeros(ty.shape, ty.np_dtype))
    ty, _ = _spec_type(spec)
    return b.input(name, ty)


def trace(fn: Callable[..., Any], *example_args: Any, name: str | None = None) -> Graph:
    """Trace ``fn`` into a Graph.

    Each example argument becomes graph inputs named after ``fn``'s parameters: a type (``TensorType``
    or ``"f64[3,4]"``) or an array is a data input, ``Param(array)`` a trainable parameter with that
    value, a dict makes one input per key (named by the key), a list one per item (``name.0`` ...).
    ``fn`` returns a traced value (output ``out``), a tuple (``out0``, ``out1`` ...) or a dict.
    """
    params = list(inspect.signature(fn).parameters)
    if len(example_args) > len(params) and not any(
        p.kind == p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values()
    ):
        raise ShapeError(f"{fn.__name__} takes {len(params)} argument(s), {len(example_args)} given")
    b = Builder(name or getattr(fn, "__name__", "main").strip("<>") or "main")
    args = [_make_input(b, params[i] if i < len(params) else f"arg{i}", spec) for i, spec in enumerate(example_args)]
    result = fn(*args)
    if isinstance(result, Mapping):
        outputs = dict(result)
    elif isinstance(result, (tuple, list)):
        outputs = {f"out{i}": r for i, r in enumerate(result)}
    else:
        outputs = {"out": result}
    return b.finish(outputs)
