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

from gptir.gcpause import gc_paused
from gptir.ir import (NUMPY_DTYPES, Graph, Node, ShapeError, TensorType, in_topological_order, is_identifier,
                      make_graph)
from gptir.ops import OPS, broadcast_shapes, infer_type, slice_length

# The scope path is dynamic context (like a call stack), so it lives in a ContextVar: thread- and
# async-safe, and reset on exit from every ``scope`` block.
_SCOPE: ContextVar[tuple[str, ...]] = ContextVar("gptir_scope", default=())

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames in these files are gptir machinery, not model code: a node's location skips them.
_INTERNAL_FILES = {os.path.join(_PKG_DIR, f)
                   for f in ("tracing.py", "ops.py", "ir.py", "autodiff.py", "passes.py", "gcpause.py")}


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


def _located(msg: str, cls: type[ShapeError] = ShapeError) -> ShapeError:
    """A one-line error about model code, prefixed with the model file and line that caused it."""
    loc = _caller_location()
    return cls(f"{loc}: {msg}" if loc else msg)


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
        self._types: dict[tuple[Any, ...], TensorType] = {}  # emit's inferred types, see _type_key
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

    def origin(self, scope_path: str, loc: str, backward: bool = True) -> "_Origin":
        """Nodes built inside get this scope, location and backward flag (autodiff uses it, once per
        node it differentiates: a plain class, cheaper than a generator's context manager)."""
        return _Origin(self, (scope_path, loc, backward))

    def _add(self, op: str, inputs: tuple[str, ...], ty: TensorType, attrs: dict[str, Any],
             name: str | None) -> "Tracer":
        """Append one node; ``attrs`` becomes the node's own (callers pass a fresh dict)."""
        if self._origin is not None:
            scope_path, loc, backward = self._origin
        else:
            scope_path, loc, backward = current_scope(), _caller_location(), False
        base = name or op
        node_name = f"{scope_path}.{base}" if scope_path else base  # fresh_name's first choice, inline
        if node_name in self.nodes:
            node_name = self.fresh_name(base, scope_path)
        self.nodes[node_name] = Node(node_name, op, inputs, ty, attrs, scope_path, loc, backward)
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
        attrs = dict(attrs) if attrs else {}
        types = []
        for t in inputs:
            if t.builder is not self:
                raise ShapeError("a value from another trace was used here (mixing traces is not allowed)")
            types.append(t.type)
        key = _type_key(op, types, attrs)
        ty = self._types.get(key) if key is not None else None
        try:
            if ty is None:
                ty = infer_type(op, types, attrs)
                if key is not None:
                    self._types[key] = ty
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
        outs = {k: t.name for k, t in outputs.items()}
        if in_topological_order(self.nodes.values()):  # nodes are appended after their operands
            return Graph(self.name, dict(self.nodes), outs, params, self.params_file)
        return make_graph(self.name, self.nodes.values(), outs, params, self.params_file)


def _type_key(op: str, types: list[TensorType], attrs: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What :func:`infer_type` depends on, as a key for the builder's memo of it (a model repeats
    the same few ops on the same few types: every layer is alike), or None when an attribute is not
    an exact ``int``, ``bool``, ``str`` or tuple of ``int``: equal values of other types (``1.0``
    and ``1``, ``np.int64(1)``) may check differently, so those are inferred every time."""
    items = []
    for k, v in attrs.items():
        t = type(v)
        if t is tuple:
            for d in v:
                if type(d) is not int:
                    return None
        elif t is not int and t is not bool and t is not str:
            return None
        items.append((k, t, v))
    return (op, tuple(types), tuple(items))


class _Origin:
    """The context manager of :meth:`Builder.origin`."""

    __slots__ = ("builder", "value", "saved")

    def __init__(self, builder: Builder, value: tuple[str, str, bool]) -> None:
        self.builder, self.value = builder, value
        self.saved: tuple[str, str, bool] | None = None

    def __enter__(self) -> None:
        self.saved, self.builder._origin = self.builder._origin, self.value

    def __exit__(self, *exc: object) -> None:
        self.builder._origin = self.saved


ArrayLike = Any


class Tracer:
    """A symbolic value in a trace: Python operators, numpy functions and gptir functions on it
    append IR nodes.

    Comparisons (``<  <=  >  >=  ==  !=``) are elementwise and return a bool tracer, as in numpy,
    so ``t == u`` is not a truth value: an ``if`` on it stops with an error. Tracers still hash by
    identity (as torch tensors do), so they can be dict keys and set members; ``t in some_list``
    works for the tracer itself but compares it elementwise with every other item before it.
    """

    __slots__ = ("builder", "name", "type")
    __hash__ = object.__hash__  # identity, although __eq__ is elementwise (see the class docstring)

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
        return len(self.type.shape)

    @property
    def size(self) -> int:
        return self.type.size

    # -- what a trace cannot do: concrete values ------------------------------------------------
    def __bool__(self) -> bool:
        raise _located(f"a traced value ({self.type}) has no concrete truth value (Python `if`/`while`/`and`/`or` "
                       "on it, or on a comparison): use gptir.where instead of if/else")

    def __float__(self) -> float:
        raise _located("float() of a traced value: it has no concrete value while tracing (keep it a tensor)")

    def __int__(self) -> int:
        raise _located("int() of a traced value: it has no concrete value while tracing (keep it a tensor)")

    def __index__(self) -> int:
        raise _located("a traced value cannot be used as a Python index or size (it has no concrete value)")

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise _located("a traced value cannot become a concrete numpy array (np.asarray/np.array): "
                       "use numpy functions on it directly, or gptir's")

    def __len__(self) -> int:
        if not self.shape:
            raise _located(f"len() of a scalar ({self.type}): a traced scalar has no length")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tracer"]:
        if not self.shape:
            raise _located(f"iteration over a scalar ({self.type})")
        return (self[i] for i in range(self.shape[0]))

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
    def __pos__(self) -> "Tracer": return self
    def __abs__(self) -> "Tracer": return self.builder.emit("abs", [self])
    def __gt__(self, o: ArrayLike) -> "Tracer": return _binary("gt", self, o)
    def __lt__(self, o: ArrayLike) -> "Tracer": return _binary("lt", self, o)
    def __ge__(self, o: ArrayLike) -> "Tracer": return _binary("ge", self, o)
    def __le__(self, o: ArrayLike) -> "Tracer": return _binary("le", self, o)

    def __eq__(self, o: object) -> Any:  # type: ignore[override]
        return _binary("eq", self, o) if _array_like(o) else NotImplemented

    def __ne__(self, o: object) -> Any:  # type: ignore[override]
        return _binary("ne", self, o) if _array_like(o) else NotImplemented

    def __matmul__(self, o: ArrayLike) -> "Tracer": return matmul(self, o)
    def __rmatmul__(self, o: ArrayLike) -> "Tracer": return matmul(o, self)

    def __getitem__(self, index: Any) -> "Tracer":
        return _index(self, index)

    # numpy's dispatch protocols: np.exp(t), np.maximum(t, 0), np.sum(t, axis=1), ndarray * t, ...
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        impl = _NUMPY_FUNCTIONS.get(func)
        if impl is None:
            raise _located(f"np.{getattr(func, '__name__', func)} is not supported on traced values (gptir has no "
                           "op for it; see 'numpy on tracers' in the README)")
        return impl(*args, **kwargs)

    # methods mirroring numpy
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return reduce_sum(self, axis, keepdims)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return reduce_max(self, axis, keepdims)

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return reduce_min(self, axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return mean(self, axis, keepdims)

    def var(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> "Tracer":
        return var(self, axis, keepdims)

    def argmax(self, axis: int | None = None) -> "Tracer":
        return argmax(self, axis)

    def reshape(self, *shape: int | Sequence[int]) -> "Tracer":
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])  # type: ignore[assignment]
        return reshape(self, shape)  # type: ignore[arg-type]

    def transpose(self, *perm: int | Sequence[int]) -> "Tracer":
        if len(perm) == 1 and not isinstance(perm[0], int):
            perm = tuple(perm[0])  # type: ignore[assignment]
        return transpose(self, perm or None)  # type: ignore[arg-type]

    @property
    def T(self) -> "Tracer":
        return transpose(self)

    def astype(self, dtype: Any) -> "Tracer":
        return cast(self, _dtype_name(dtype))

    def flatten(self) -> "Tracer":
        return reshape(self, (self.size,))

    ravel = flatten

    def squeeze(self, axis: int | Sequence[int] | None = None) -> "Tracer":
        return squeeze(self, axis)

    def exp(self) -> "Tracer": return exp(self)
    def log(self) -> "Tracer": return log(self)
    def tanh(self) -> "Tracer": return tanh(self)
    def sigmoid(self) -> "Tracer": return sigmoid(self)
    def sqrt(self) -> "Tracer": return sqrt(self)
    def relu(self) -> "Tracer": return relu(self)
    def abs(self) -> "Tracer": return absolute(self)
    def sin(self) -> "Tracer": return sin(self)
    def cos(self) -> "Tracer": return cos(self)


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
    if x.type.shape == shape:  # (the usual case: the tracer's own broadcasting asks with a tuple)
        return x
    shape = tuple(int(d) for d in shape)
    if x.type.shape == shape:
        return x
    return x.builder.emit("broadcast", [x], {"shape": shape})


def _binary(op: str, a: ArrayLike, b: ArrayLike) -> Tracer:
    if type(a) is Tracer and type(b) is Tracer and a.type == b.type:
        return a.builder.emit(op, [a, b])  # the common case (what the general path does for it, directly)
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
def minimum(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("minimum", a, b)
def greater(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("gt", a, b)
def greater_equal(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("ge", a, b)
def less(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("lt", a, b)
def less_equal(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("le", a, b)
def equal(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("eq", a, b)
def not_equal(a: ArrayLike, b: ArrayLike) -> Tracer: return _binary("ne", a, b)


def _array_like(x: object) -> bool:
    """What ``==`` and ``!=`` compare elementwise (anything else compares by identity)."""
    return isinstance(x, (Tracer, bool, int, float, np.generic, np.ndarray, list, tuple))


def _unary(op: str, x: Tracer) -> Tracer:
    if not isinstance(x, Tracer):
        raise ShapeError(f"{op} expects a traced value, got {type(x).__name__}")
    return x.builder.emit(op, [x])


def neg(x: Tracer) -> Tracer: return _unary("neg", x)
def exp(x: Tracer) -> Tracer: return _unary("exp", x)
def log(x: Tracer) -> Tracer: return _unary("log", x)
def relu(x: Tracer) -> Tracer: return _unary("relu", x)
def tanh(x: Tracer) -> Tracer: return _unary("tanh", x)
def sigmoid(x: Tracer) -> Tracer: return _unary("sigmoid", x)
def sqrt(x: Tracer) -> Tracer: return _unary("sqrt", x)
def absolute(x: Tracer) -> Tracer: return _unary("abs", x)
def sin(x: Tracer) -> Tracer: return _unary("sin", x)
def cos(x: Tracer) -> Tracer: return _unary("cos", x)
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


def reduce_min(x: Tracer, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tracer:
    return x.builder.emit("min", [x], {"axes": _norm_axes(x, axis), "keepdims": bool(keepdims)})


def argmax(x: Tracer, axis: int | None = None) -> Tracer:
    """The index (i64) of the first maximal entry along ``axis``; None: of the flattened tensor."""
    if axis is None:
        return argmax(reshape(x, (x.type.size,)), 0)
    (a,) = _norm_axes(x, int(axis))
    return x.builder.emit("argmax", [x], {"axis": a})


def mean(x: Tracer, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tracer:
    """The sum divided by the count (numpy's arithmetic: ``np.mean`` is ``np.sum(x) / n``)."""
    axes = _norm_axes(x, axis)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return reduce_sum(x, axes, keepdims) / float(count)


def var(x: Tracer, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tracer:
    """The population variance, computed as ``np.var`` does: mean((x - mean(x))**2) with x*x."""
    d = x - mean(x, axis, keepdims=True)
    return mean(d * d, axis, keepdims)


def matmul(a: ArrayLike, b: ArrayLike) -> Tracer:
    """``a @ b`` with numpy's rules, batch dimensions broadcast (explicitly, by broadcast nodes)."""
    bld = _builder_of(a, b)
    ta, tb = lift(bld, a), lift(bld, b)
    if ta.ndim == 1 and tb.ndim >= 3:  # vector @ batched: a row vector, then drop its axis
        k = ta.shape[0]
        out = matmul(reshape(ta, (1, k)), tb)
        return reshape(out, out.shape[:-2] + out.shape[-1:])
    if ta.ndim >= 2 and tb.ndim >= 3 and ta.shape[:-2] != tb.shape[:-2]:
        batch = broadcast_shapes(ta.shape[:-2], tb.shape[:-2])
        if batch is None:
            raise ShapeError(f"matmul: batch dimensions of {ta.type} and {tb.type} do not broadcast")
        ta = broadcast_to(ta, batch + ta.shape[-2:])
        tb = broadcast_to(tb, batch + tb.shape[-2:])
    return bld.emit("matmul", [ta, tb])


def reshape(x: Tracer, shape: Sequence[int]) -> Tracer:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) == 1:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        shape = tuple(x.type.size // known if d == -1 and known else d for d in shape)
    return x if shape == x.shape else x.builder.emit("reshape", [x], {"shape": shape})


def transpose(x: Tracer, perm: Sequence[int] | None = None) -> Tracer:
    rank = len(x.type.shape)
    perm = tuple(reversed(range(rank))) if perm is None else tuple(map(int, perm))
    return x if perm == tuple(range(rank)) else x.builder.emit("transpose", [x], {"perm": perm})


def concat(xs: Sequence[Tracer], axis: int = 0) -> Tracer:
    if not xs:
        raise ShapeError("concat of nothing")
    bld = _builder_of(*xs)
    xs = [lift(bld, x) for x in xs]
    rank = xs[0].ndim
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"concat axis {axis} is out of range for rank {rank}")
    return bld.emit("concat", list(xs), {"axis": axis % rank if rank else 0})


def expand_dims(x: Tracer, axis: int) -> Tracer:
    """``x`` with a new axis of length 1 at ``axis`` (numpy's ``np.expand_dims``)."""
    rank = x.ndim + 1
    if not -rank <= axis < rank:
        raise ShapeError(f"expand_dims axis {axis} is out of range for rank {rank}")
    a = axis % rank
    return reshape(x, x.shape[:a] + (1,) + x.shape[a:])


def squeeze(x: Tracer, axis: int | Sequence[int] | None = None) -> Tracer:
    """``x`` without its length-1 axes (or just the ones named, which must have length 1)."""
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else _norm_axes(x, axis)
    if any(x.shape[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze an axis whose length is not 1 in {x.type}")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def stack(xs: Sequence[Tracer], axis: int = 0) -> Tracer:
    """Tensors of one shape joined along a new axis (numpy's ``np.stack``)."""
    if not xs:
        raise ShapeError("stack of nothing")
    bld = _builder_of(*xs)
    ts = [lift(bld, x) for x in xs]
    if any(t.shape != ts[0].shape for t in ts):
        raise ShapeError(f"stack needs tensors of one shape, got {', '.join(str(list(t.shape)) for t in ts)}")
    rank = ts[0].ndim + 1
    if not -rank <= axis < rank:
        raise ShapeError(f"stack axis {axis} is out of range for rank {rank}")
    return concat([expand_dims(t, axis % rank) for t in ts], axis % rank)


def gather(table: Tracer, indices: ArrayLike) -> Tracer:
    """``table[indices]`` along axis 0 (embedding lookup)."""
    return table.builder.emit("gather", [table, lift(table.builder, indices) if not isinstance(indices, Tracer)
                                         else indices])


def scatter_add(updates: Tracer, indices: Tracer, size: int) -> Tracer:
    """The adjoint of gather: rows of ``updates`` summed into a zero tensor of ``size`` rows."""
    return updates.builder.emit("scatter_add", [updates, indices], {"size": int(size)})


def slice_(x: Tracer, start: Sequence[int], stop: Sequence[int], step: Sequence[int] | None = None) -> Tracer:
    """``x[start:stop:step]`` per axis, bounds in the normal form ``slice.indices`` gives (see the
    slice op); the step attribute is omitted when every step is 1."""
    start, stop = tuple(int(s) for s in start), tuple(int(s) for s in stop)
    steps = (1,) * x.ndim if step is None else tuple(int(k) for k in step)
    if start == (0,) * x.ndim and stop == x.shape and steps == (1,) * x.ndim:
        return x
    attrs: dict[str, Any] = {"start": start, "stop": stop}
    if steps != (1,) * x.ndim:
        attrs["step"] = steps
    return x.builder.emit("slice", [x], attrs)


def _is_int(item: Any) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def _index_array(x: Tracer, item: Any, axis: int) -> Tracer | np.ndarray | None:
    """An integer-array index (a traced i64 value, an int array or a list of ints) checked and with
    negative constants wrapped; None if ``item`` is not an array index."""
    if isinstance(item, Tracer):
        if item.dtype != "i64":
            raise _located(f"an index tensor must be i64, got {item.type}"
                           + (" (boolean masks have a data-dependent shape: use gptir.where)"
                              if item.dtype == "bool" else ""))
        return item
    if isinstance(item, (list, np.ndarray)):
        arr = np.asarray(item)
        if arr.dtype.kind == "b":
            raise _located("boolean mask indexing has a data-dependent shape: use gptir.where instead")
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise _located(f"index arrays must hold integers, got {arr.dtype}")
        dim = x.shape[axis]
        arr = np.where(arr < 0, arr + dim, arr).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= dim):
            raise _located(f"index {item!r} is out of range for axis {axis} of {x.type}")
        return arr
    return None


class TraceIndexError(ShapeError, IndexError):
    """An integer index out of range (an IndexError too, so ``for row in x`` stops at the end)."""


def _index(x: Tracer, index: Any) -> Tracer:
    """numpy indexing: ints (negative too), slices with any step, ``...``, ``None``, and one integer
    array (traced or constant, which gathers). Basic indexing is one slice and a reshape."""
    items = list(index) if isinstance(index, tuple) else [index]
    items = [int(i) if isinstance(i, np.ndarray) and i.ndim == 0 and i.dtype.kind in "iu" else i for i in items]
    if sum(i is Ellipsis for i in items) > 1:
        raise _located("an index can only have a single ellipsis ('...')")
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if used > x.ndim:
        raise _located(f"too many indices for {x.type}: {used} given")
    fill = [slice(None)] * (x.ndim - used)
    if Ellipsis in [i for i in items if not isinstance(i, (Tracer, np.ndarray))]:
        at = next(k for k, i in enumerate(items) if i is Ellipsis)
        items[at:at + 1] = fill
    else:
        items += fill
    start, stop, step, shape = [], [], [], []
    advanced: tuple[Tracer | np.ndarray, int] | None = None
    adv_items: list[int] = []
    axis = 0
    for pos, item in enumerate(items):
        if item is None:
            shape.append(1)
            continue
        dim = x.shape[axis]
        arr = None if _is_int(item) or isinstance(item, slice) else _index_array(x, item, axis)
        if _is_int(item):
            i = int(item) + (dim if item < 0 else 0)
            if not 0 <= i < dim:
                raise _located(f"index {item} is out of range for axis {axis} of {x.type} "
                               f"(valid: {-dim} to {dim - 1})", TraceIndexError)
            start.append(i); stop.append(i + 1); step.append(1)
            adv_items.append(pos)
        elif isinstance(item, slice):
            s, e, k = item.indices(dim)
            e = max(s, e) if k > 0 else min(s, e)
            start.append(s); stop.append(e); step.append(k)
            shape.append(slice_length(s, e, k))
        elif arr is not None:
            if advanced is not None:
                raise _located("only one integer-array index is supported per indexing (index twice instead)")
            advanced = (arr, len(shape))
            start.append(0); stop.append(dim); step.append(1)
            shape.append(dim)
            adv_items.append(pos)
        else:
            raise _located(f"unsupported index {item!r}: use ints, slices, ..., None or one integer array")
        axis += 1
    out = reshape(slice_(x, start, stop, step), shape)
    if advanced is None:
        return out
    idx, p = advanced
    rest = [a for a in range(out.ndim) if a != p]
    picked = gather(transpose(out, (p, *rest)), idx)  # [*idx.shape, *rest]
    # numpy: the index's axes replace the indexed axis when the advanced indices (the array and
    # any ints) are adjacent; otherwise they come first
    adjacent = max(adv_items) - min(adv_items) + 1 == len(adv_items)
    q, m = (p if adjacent else 0), len(idx.shape)
    perm = (*range(m, m + q), *range(m), *range(m + q, picked.ndim))
    return transpose(picked, perm)


# -- numpy's dispatch protocols ----------------------------------------------------------------------


def _dtype_name(dtype: Any) -> str:
    """A gptir dtype name from anything numpy users pass (``"f64"``, ``np.float64``, ``float``, ...)."""
    if isinstance(dtype, str) and dtype in NUMPY_DTYPES:
        return dtype
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    for name, ndt in NUMPY_DTYPES.items():
        if dt == ndt:
            return name
    raise _located(f"unsupported dtype {dtype!r}: gptir has {', '.join(NUMPY_DTYPES)}")


def _no_extras(what: str, **given: Any) -> None:
    bad = [k for k, v in given.items() if v is not None]
    if bad:
        raise _located(f"{what}: the argument(s) {', '.join(bad)} are not supported on traced values")


def _table_ufuncs() -> dict[Any, Callable[..., Tracer]]:
    """``np.<ufunc>`` on tracers for every op the table declares as that ufunc (without fixed extra
    operands): a ufunc op added to gptir/ops.py is reachable as ``np.<ufunc>(t)`` with no entry here."""
    out: dict[Any, Callable[..., Tracer]] = {}
    for opdef in OPS.values():
        if opdef.ufunc is not None and not opdef.extra:
            fn = getattr(np, opdef.ufunc)
            assert fn not in out, f"two ops are np.{opdef.ufunc}"
            out[fn] = functools.partial(_unary if opdef.arity == 1 else _binary, opdef.name)
    return out


# numpy's ufuncs on tracers: the table's, and a few that are compositions (np.true_divide is np.divide)
_UFUNCS: dict[Any, Callable[..., Tracer]] = {
    **_table_ufuncs(), np.positive: lambda x: x, np.matmul: matmul,
    np.square: lambda x: x * x, np.reciprocal: lambda x: 1.0 / x,
}
_UFUNC_REDUCTIONS: dict[Any, Callable[..., Tracer]] = {np.add: reduce_sum, np.maximum: reduce_max,
                                                       np.minimum: reduce_min}


def _array_ufunc(ufunc: Any, method: str, inputs: tuple, kwargs: Mapping[str, Any]) -> Tracer:
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if method == "__call__":
        fn = _UFUNCS.get(ufunc)
        if fn is None:
            raise _located(f"{name} is not supported on traced values (gptir has no op for it; see 'numpy on "
                           "tracers' in the README)")
        _no_extras(name, **{k: v for k, v in kwargs.items() if not (k == "out" and v == ())})
        return fn(*inputs)
    if method == "reduce" and ufunc in _UFUNC_REDUCTIONS:
        kw = dict(kwargs)
        axis, keepdims = kw.pop("axis", 0), kw.pop("keepdims", False)
        _no_extras(name, **{k: v for k, v in kw.items() if not (k == "out" and v == ())})
        return _UFUNC_REDUCTIONS[ufunc](inputs[0], axis, keepdims)
    raise _located(f"{name} is not supported on traced values")


def _np_reduce(fn: Callable[..., Tracer], what: str) -> Callable[..., Tracer]:
    def impl(a: Tracer, axis: int | Sequence[int] | None = None, dtype: Any = None, out: Any = None,
             keepdims: bool = False, **rest: Any) -> Tracer:
        _no_extras(f"np.{what}", dtype=dtype, out=out, **rest)
        return fn(a, axis, keepdims)
    return impl


def _np_minmax(fn: Callable[..., Tracer], what: str) -> Callable[..., Tracer]:
    def impl(a: Tracer, axis: int | Sequence[int] | None = None, out: Any = None, keepdims: bool = False,
             **rest: Any) -> Tracer:
        _no_extras(f"np.{what}", out=out, **rest)
        return fn(a, axis, keepdims)
    return impl


def _np_var(a: Tracer, axis: int | Sequence[int] | None = None, dtype: Any = None, out: Any = None,
            ddof: int = 0, keepdims: bool = False, **rest: Any) -> Tracer:
    _no_extras("np.var", dtype=dtype, out=out, **rest)
    if ddof:
        raise _located("np.var: only ddof=0 is supported on traced values")
    return var(a, axis, keepdims)


def _np_argmax(a: Tracer, axis: int | None = None, out: Any = None, **rest: Any) -> Tracer:
    _no_extras("np.argmax", out=out, **rest)
    return argmax(a, axis)


def _np_reshape(a: Tracer, shape: Any = None, order: str = "C", **rest: Any) -> Tracer:
    shape = rest.pop("newshape", shape)
    _no_extras("np.reshape", **rest)
    if order != "C":
        raise _located("np.reshape: only order='C' is supported on traced values")
    return reshape(a, (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape))


def _np_transpose(a: Tracer, axes: Sequence[int] | None = None) -> Tracer:
    return transpose(a, axes)


def _np_concatenate(arrays: Sequence[Any], axis: int | None = 0, out: Any = None, **rest: Any) -> Tracer:
    _no_extras("np.concatenate", out=out, **{k: v for k, v in rest.items() if k != "casting"})
    bld = _builder_of(*arrays)
    ts = [lift(bld, x) for x in arrays]
    if axis is None:
        return concat([reshape(t, (t.size,)) for t in ts], 0)
    return concat(ts, axis)


def _np_stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, **rest: Any) -> Tracer:
    _no_extras("np.stack", out=out, **{k: v for k, v in rest.items() if k != "casting"})
    return stack(list(arrays), axis)


def _np_where(condition: Any, *xy: Any) -> Tracer:
    if len(xy) != 2:
        raise _located("np.where(cond) without x and y has a data-dependent shape: pass both branches")
    return where(condition, xy[0], xy[1])


def _np_dot(a: Any, b: Any, out: Any = None) -> Tracer:
    _no_extras("np.dot", out=out)
    bld = _builder_of(a, b)
    ta, tb = lift(bld, a), lift(bld, b)
    if ta.ndim == 0 or tb.ndim == 0:
        return ta * tb
    if ta.ndim > 2 or tb.ndim > 2:
        raise _located("np.dot of tensors of rank > 2 is not supported on traced values: use np.matmul or @")
    return matmul(ta, tb)


def _np_clip(a: Tracer, a_min: Any = None, a_max: Any = None, out: Any = None, **rest: Any) -> Tracer:
    _no_extras("np.clip", out=out, **rest)
    y = a if a_min is None else maximum(a, a_min)
    return y if a_max is None else minimum(y, a_max)


def _np_squeeze(a: Tracer, axis: int | Sequence[int] | None = None) -> Tracer:
    return squeeze(a, axis)


def _np_swapaxes(a: Tracer, axis1: int, axis2: int) -> Tracer:
    perm = list(range(a.ndim))
    (i,), (j,) = _norm_axes(a, axis1), _norm_axes(a, axis2)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def _np_ravel(a: Tracer, order: str = "C") -> Tracer:
    return reshape(a, (a.size,))


def _np_like(fill: float) -> Callable[..., Tracer]:
    def impl(a: Tracer, dtype: Any = None, **rest: Any) -> Tracer:
        _no_extras("np.zeros_like/ones_like", **{k: v for k, v in rest.items() if k != "order"})
        dt = a.dtype if dtype is None else _dtype_name(dtype)
        return a.builder.const(np.full(a.shape, fill, dtype=NUMPY_DTYPES[dt]))
    return impl


_NUMPY_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    np.sum: _np_reduce(reduce_sum, "sum"), np.mean: _np_reduce(mean, "mean"),
    np.max: _np_minmax(reduce_max, "max"), np.min: _np_minmax(reduce_min, "min"),
    np.var: _np_var, np.argmax: _np_argmax, np.reshape: _np_reshape, np.transpose: _np_transpose,
    np.concatenate: _np_concatenate, np.stack: _np_stack, np.where: _np_where, np.dot: _np_dot,
    np.clip: _np_clip, np.squeeze: _np_squeeze, np.expand_dims: lambda a, axis: expand_dims(a, axis),
    np.swapaxes: _np_swapaxes, np.ravel: _np_ravel, np.broadcast_to: lambda array, shape: broadcast_to(array, shape),
    np.zeros_like: _np_like(0.0), np.ones_like: _np_like(1.0),
    np.shape: lambda a: a.shape, np.ndim: lambda a: a.ndim, np.size: lambda a, axis=None: (
        a.size if axis is None else a.shape[axis]),
}


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


@gc_paused  # a trace allocates nodes that all stay alive: collecting while it runs finds nothing
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
