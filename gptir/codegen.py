"""The compiled backend: a graph becomes one Python function of straight-line numpy, compiled once.

Exactness: the generated code makes the same numpy calls on the same values, with the same memory
layouts, in the same order as :func:`gptir.interp.run`, so results are bit-identical. The speed
comes from doing less around those calls: no per-node dispatch or environment dict, operators
(``a + b`` is the ``np.add`` ufunc) instead of Python-level wrappers, ``np.add.reduce`` instead of
``np.sum``'s argument handling, constant subgraphs (broadcasts of literals, masks) evaluated once at
compile time with the op table's own ``evaluate``, and broadcasts feeding a ufunc left to numpy's
implicit broadcasting (which builds the very same stride-0 view).

Memory: by default the program drops each value after its last use (``del``, as the interpreter
frees it) and writes elementwise results with ``out=`` into a buffer it allocated itself that is
provably dead, never aliased by a live view, and of exactly the result's shape, dtype and
(C-contiguous) layout (see :func:`_reuse_buffers`). Inputs, params and constants are never written,
and nothing is kept between calls. Both save allocations and page faults; neither changes a bit.

Security: the source contains only identifiers made from validated IR names (``v_`` + the name with
dots as underscores), integers and booleans from verified attributes, and fixed text. Constants and
anything else from the IR reach the function through its closure, never as source text; locations,
scopes and graph names never appear in the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gptir.interp import ExecError, bind_input
from gptir.interp import run as interp_run
from gptir.ir import DTYPES, NUMPY_DTYPES, GptirError, Graph, Node, TensorType
from gptir.ops import OPS
from gptir.passes import c_contiguous, evaluate_node

Compiled = Callable[[Mapping[str, Any]], dict[str, np.ndarray]]

_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")

# Results of at least this many elements reuse a buffer by default. Measured (numpy 2.4, one core):
# ``ufunc(a, b, out=d)`` costs no more than ``a + b`` even on 8-element arrays (284 vs 295 ns in a
# chain of 20 ops), and from ~4k elements fresh arrays cost 10x more (page faults). The default
# microgpt step ran 181 us with reuse from 1 element, 182-183 us from 64/256/1024/4096, 186 us
# without reuse (all with dead values dropped), so there is no size below which it hurts.
REUSE_MIN_ELEMENTS = 1
# Whether programs drop dead values as they go (see ``plan``).
FREE_DEAD = True


class CodegenError(GptirError):
    """The graph cannot be compiled (an op without code, an unsafe name or attribute)."""


# -- safe attribute text ------------------------------------------------------------------------------


def _safe_attrs(node: Node) -> dict[str, Any]:
    """Attributes rebuilt from plain ints/bools/dtype names, so their repr is exactly what we expect
    (an int subclass with a hostile ``__repr__`` cannot smuggle text into the source)."""
    opdef = OPS.get(node.op)
    if opdef is None:
        raise CodegenError(f"%{node.name}: unknown op '{node.op}' (verify the graph first)")
    kinds = opdef.attrs
    out: dict[str, Any] = {}
    if not kinds:
        return out
    for k, kind in kinds.items():
        if k not in node.attrs:
            raise CodegenError(f"%{node.name}: missing attribute {k} (verify the graph first)")
        v = node.attrs[k]
        if kind in ("int", "ints") and not all(isinstance(x, int) and not isinstance(x, bool)
                                             for x in (v if kind == "ints" and isinstance(v, tuple) else (v,))):
            raise CodegenError(f"%{node.name}: attribute {k} must be {'an int' if kind == 'int' else 'ints'}")
        if kind == "int":
            out[k] = int(v)
        elif kind == "ints":
            out[k] = tuple(int(x) for x in v)
        elif kind == "bool":
            out[k] = bool(v)
        elif kind == "dtype":
            if v not in DTYPES:
                raise CodegenError(f"%{node.name}: bad dtype attribute")
            out[k] = str(v)
        elif kind == "float":
            f = float(v)
            if not np.isfinite(f):
                raise CodegenError(f"%{node.name}: non-finite float attribute {k} cannot be compiled")
            out[k] = f
        else:
            out[k] = None  # tensors are never written into the source
    return out


# -- fast emitters --------------------------------------------------------------------------------
# Each returns an expression that performs exactly the numpy operation the op table's ``evaluate``
# does (same ufunc, same operands, same layout). Ops not listed use the op table's ``emit``.


def _binop(sym: str) -> Callable[[Sequence[str], Mapping[str, Any], Node], str]:
    return lambda a, at, n: f"({a[0]} {sym} {a[1]})"


def _reduce(ufunc: str) -> Callable[[Sequence[str], Mapping[str, Any], Node], str]:
    # np.sum(x, axis, keepdims=k) is np.add.reduce(x, axis, None, None, keepdims=k) for ndarrays
    # (and numpy scalars take the same path through their .sum method).
    return lambda a, at, n: f"{ufunc}.reduce({a[0]}, {at['axes']!r}, None, None, {at['keepdims']!r})"


_FAST: dict[str, Callable[[Sequence[str], Mapping[str, Any], Node], str]] = {
    "add": _binop("+"),
    "sub": _binop("-"),
    "mul": _binop("*"),
    "div": _binop("/"),
    "matmul": _binop("@"),
    "pow": lambda a, at, n: f"_power({a[0]}, {a[1]})",  # never ``**``: numpy turns x**0.5 into sqrt
    "maximum": lambda a, at, n: f"_maximum({a[0]}, {a[1]})",
    "neg": lambda a, at, n: f"(-{a[0]})",
    "exp": lambda a, at, n: f"_exp({a[0]})",
    "log": lambda a, at, n: f"_log({a[0]})",
    # the interpreter computes maximum(x, x.dtype.type(0)); a Python 0 converts to the same value
    "relu": lambda a, at, n: f"_maximum({a[0]}, {'0.0' if n.type.dtype == 'f64' else '0'})",
    "gt": lambda a, at, n: f"_greater({a[0]}, {a[1]})",
    "eq": lambda a, at, n: f"_equal({a[0]}, {a[1]})",
    "where": lambda a, at, n: f"_where({a[0]}, {a[1]}, {a[2]})",
    "cast": lambda a, at, n: f"{a[0]}.astype(_{at['dtype']})",
    "sum": _reduce("_add"),
    "max": _reduce("_maximum"),
    "transpose": lambda a, at, n: f"{a[0]}.T" if at["perm"] == (1, 0) else f"{a[0]}.transpose({at['perm']!r})",
    "concat": lambda a, at, n: f"_concatenate(({', '.join(a)},), {at['axis']!r})",
    "gather": lambda a, at, n: f"{a[0]}[{a[1]}]",
}

# Attributes passed as closure constants rather than written as numbers: (attrs -> value, emitter).
_LIFT: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "reshape": lambda at: at["shape"],
    "broadcast": lambda at: at["shape"],
    "slice": lambda at: tuple(slice(s, e) for s, e in zip(at["start"], at["stop"])),  # the interpreter's index
    "scatter_add": lambda at: at["size"],
}
_LIFT_EMIT: dict[str, Callable[[Sequence[str], str], str]] = {
    "reshape": lambda a, k: f"{a[0]}.reshape({k})",
    "broadcast": lambda a, k: f"_broadcast_to({a[0]}, {k})",
    "slice": lambda a, k: f"{a[0]}[{k}]",
    "scatter_add": lambda a, k: f"_scatter_add({a[0]}, {a[1]}, {k})",
}

# ops whose rank-0 constant operands may be numpy scalars instead of 0-d arrays
_SCALAR_OK = {"add", "sub", "mul", "div", "neg", "gt", "eq", "maximum", "pow"}

# ufuncs that broadcast their operands implicitly exactly as broadcast_to would
_IMPLICIT_BROADCAST = {"add", "sub", "mul", "div", "pow", "maximum", "gt", "eq", "where"}


def _scatter_add(upd: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    """The op table's own scatter_add evaluation (np.add.at into zeros)."""
    return OPS["scatter_add"].evaluate((upd, idx), {"size": size})  # type: ignore[misc]


def _namespace_base() -> dict[str, Any]:
    ns: dict[str, Any] = {
        "np": np, "_power": np.power, "_maximum": np.maximum, "_exp": np.exp, "_log": np.log,
        "_subtract": np.subtract, "_multiply": np.multiply, "_divide": np.divide, "_negative": np.negative,
        "_greater": np.greater, "_equal": np.equal, "_where": np.where, "_add": np.add,
        "_broadcast_to": np.broadcast_to, "_concatenate": np.concatenate, "_scatter_add": _scatter_add,
    }
    for name, dt in NUMPY_DTYPES.items():
        ns[f"_{name}"] = dt
    return ns


# -- planning ----------------------------------------------------------------------------------------


@dataclass
class Program:
    """What the generator produced: the source, the constants its closure needs, the signature."""

    source: str
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    args: list[tuple[str, str]] = field(default_factory=list)   # (IR input name, variable)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (output name, variable)
    hoisted_outputs: set[str] = field(default_factory=set)
    n_statements: int = 0
    n_reused: int = 0  # statements that write into a dead buffer (``out=``)


@dataclass
class _Stmt:
    """One statement of the program body: ``var = expr``; ``args`` are the names ``expr`` reads."""

    var: str
    expr: str
    args: list[str]
    node: Node
    fast: bool  # emitted by this module's fast emitters (only those are rewritten to ``out=``)


class _Names:
    """IR value name -> Python variable: ``v_`` + name with dots as underscores, made unique."""

    def __init__(self) -> None:
        self.var: dict[str, str] = {}
        self.taken: set[str] = set()

    def make(self, name: str, prefix: str = "v_") -> str:
        if not _SAFE_NAME.match(name):
            raise CodegenError(f"unsafe value name {name!r}")
        base = prefix + name.replace(".", "_")
        cand, k = base, 0
        while cand in self.taken:
            k += 1
            cand = f"{base}_{k}"
        if not cand.isidentifier():  # pragma: no cover - guaranteed by the regex above
            raise CodegenError(f"unsafe value name {name!r}")
        self.taken.add(cand)
        self.var[name] = cand
        return cand


def plan(graph: Graph, reuse_min: int | None = REUSE_MIN_ELEMENTS, free_dead: bool = FREE_DEAD) -> Program:
    """Generate the program for ``graph`` (the graph is assumed verified).

    ``reuse_min``: elementwise results of at least this many elements write into a dead buffer of
    the same shape and dtype where that is provably safe (see :func:`_reuse_buffers`); None: never.
    ``free_dead``: drop each value's variable after its last use (``del``), as the interpreter
    does, so the allocator can hand its memory to later values.
    """
    names = _Names()
    prog = Program(source="")
    consts: dict[str, np.ndarray] = {}  # IR name -> compile-time value
    body: list[_Stmt] = []
    attr_consts: dict[str, Any] = {}  # closure constants made from attributes (_k<i>) and scalars (_s_<var>)
    n_lifted = 0
    nodes = graph.nodes
    for node in nodes.values():
        if node.op not in OPS:
            raise CodegenError(f"%{node.name}: unknown op '{node.op}' (verify the graph first)")
        if node.op in ("input", "param"):
            prog.args.append((node.name, names.make(node.name)))
            continue
        if node.op == "const":
            if not isinstance(node.attrs.get("value"), np.ndarray):
                raise CodegenError(f"%{node.name}: a const needs a tensor value")
            consts[node.name] = node.attrs["value"]
            names.make(node.name)
            continue
        if node.inputs and all(i in consts for i in node.inputs):
            value = evaluate_node(node, [consts[i] for i in node.inputs])
            if value is not None:
                consts[node.name] = value
                names.make(node.name)
                continue
        if node.op == "stop_gradient":  # the identity: share the operand's variable
            names.var[node.name] = names.var[node.inputs[0]]
            continue
        operands = list(node.inputs)
        if node.op in _IMPLICIT_BROADCAST:
            operands = _elide_broadcasts(graph, node, operands, consts)
        attrs = _safe_attrs(node)
        fast = _FAST.get(node.op)
        args = [names.var[i] for i in operands]
        if node.type.rank == 0 and node.op in _SCALAR_OK and all(nodes[i].type.rank == 0 for i in operands):
            # scalar arithmetic: a numpy scalar constant takes numpy's scalar fast path (the
            # operands at run time are numpy scalars too); IEEE + - * / give the same bits either way
            for k, i in enumerate(operands):
                if i in consts:
                    sname = "_s_" + args[k]  # '_' prefix: never the name of an IR value (those are v_...)
                    attr_consts[sname] = consts[i][()]
                    args[k] = sname
        lifted = _LIFT.get(node.op)
        if lifted is not None:
            # shape-like attributes (the ones that change with the sequence length) become closure
            # constants, so programs for different lengths share one source text and one compile
            kname = f"_k{n_lifted}"
            n_lifted += 1
            attr_consts[kname] = lifted(attrs)
            expr = _LIFT_EMIT[node.op](args, kname)
            args = args + [kname]
        elif fast is not None:
            expr = fast(args, attrs, node)
        else:
            emit = OPS[node.op].emit
            if emit is None:
                raise CodegenError(f"op '{node.op}' has no code to emit (%{node.name})")
            expr = emit(args, attrs)
        body.append(_Stmt(names.make(node.name), expr, args, node, fast is not None or lifted is not None))
    # drop statements nothing reads (e.g. a broadcast whose users all broadcast implicitly)
    live = {names.var[v] for v in graph.outputs.values()}
    stmts: list[_Stmt] = []
    for st in reversed(body):
        if st.var in live:
            live.update(st.args)
            stmts.append(st)
    stmts.reverse()
    used = live
    out_vars = {names.var[v] for v in graph.outputs.values()}
    if reuse_min is not None:
        prog.n_reused = _reuse_buffers(graph, stmts, out_vars, reuse_min)
    kept = [f"        {st.var} = {st.expr}" for st in stmts]
    if free_dead:
        kept = _with_dels(stmts, kept, out_vars)
    prog.consts = {names.var[k]: v for k, v in consts.items() if names.var[k] in used}
    prog.consts.update({k: v for k, v in attr_consts.items() if k in used})
    for out, value in graph.outputs.items():
        prog.outputs.append((out, names.var[value]))
        if value in consts:
            prog.hoisted_outputs.add(out)
    const_vars = sorted(prog.consts)
    lines = ["def _make(_consts):"]
    if const_vars:
        lines.append(f"    ({', '.join(const_vars)},) = _consts")
    lines.append(f"    def _program({', '.join(v for _, v in prog.args)}):")
    lines.extend(kept)
    rets = []
    for out, var in prog.outputs:
        rank0 = nodes[graph.outputs[out]].type.rank == 0
        rets.append(f"_asarray({var})" if rank0 else var)
    lines.append(f"        return ({', '.join(rets)},)")
    lines.append("    return _program")
    prog.source = "\n".join(lines) + "\n"
    prog.n_statements = len(stmts)
    return prog


def _elide_broadcasts(graph: Graph, node: Node, operands: list[str], consts: Mapping[str, np.ndarray]) -> list[str]:
    """Read a broadcast's operand directly when numpy's implicit broadcasting gives the same shape:
    it builds the same stride-0 view, so the ufunc's inner loop sees identical operands. This saves
    the broadcast_to call for run-time broadcasts and, for hoisted broadcasts of constants, lets
    numpy take its fast path for a 0-d operand (a stride-0 view forces the general iterator)."""
    new = list(operands)
    for k, name in enumerate(operands):
        src = graph.nodes[name]
        if src.op != "broadcast" or (name in consts and src.inputs[0] not in consts):
            continue
        trial = new[:k] + [src.inputs[0]] + new[k + 1:]
        if _broadcast_shape([graph.nodes[t].type.shape for t in trial]) == node.type.shape:
            new = trial
    return new


def _broadcast_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...] | None:
    """numpy's broadcasting of ``shapes`` (None if they do not broadcast); np.broadcast_shapes is
    much slower and this runs for every operand of every elementwise node."""
    rank = max(len(s) for s in shapes)
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


# -- buffer reuse --------------------------------------------------------------------------------
# An elementwise result may be written with ``out=`` into an array the program itself made and
# nobody can read again: it saves an allocation and, for large arrays, the page faults of fresh
# memory (the dominant cost of the big training steps). The values are the same: the ``out=`` call
# is the very ufunc the operator form calls, on the same operands in the same order, and the result
# has the layout the interpreter's fresh result has (both are proved C-contiguous).

# op -> the ufunc its fast emitter's operator calls (``a - b`` is np.subtract, ``-a`` np.negative)
_OUT_UFUNC: dict[str, str] = {
    "add": "_add", "sub": "_subtract", "mul": "_multiply", "div": "_divide", "pow": "_power",
    "maximum": "_maximum", "neg": "_negative", "exp": "_exp", "log": "_log", "relu": "_maximum",
    "gt": "_greater", "eq": "_equal",
}
# numpy's AVX-512 exp/log kernels run when input and output are identical or >= 64 bytes apart,
# else a scalar kernel (other bits): a fresh output of a tiny array may sit closer than that, so
# tiny exp/log results are never computed in place (that could switch the kernel).
_KERNEL_BY_DISTANCE = {"exp", "log"}
# ops whose result of rank >= 1 is always a newly allocated array (never a view of an operand)
_FRESH = set(_OUT_UFUNC) | {"where", "cast", "matmul", "concat", "scatter_add"}


def _fresh(node: Node, nodes: Mapping[str, Node]) -> bool:
    """Whether ``node``'s value is an array the program allocated (rank 0 values are numpy scalars)."""
    return node.type.rank > 0 and _new_value(node, nodes)


def _new_value(node: Node, nodes: Mapping[str, Node]) -> bool:
    """Whether ``node``'s value is never a view of an operand."""
    if node.op in _FRESH:
        return True
    if node.op in ("sum", "max"):
        return bool(node.attrs["axes"])  # reducing no axes: treated as a possible view
    if node.op == "gather":
        return nodes[node.inputs[1]].type.rank >= 1  # advanced indexing copies; a 0-d index may not
    return False


def _layouts(graph: Graph) -> dict[str, bool]:
    """Which values are provably C-contiguous: the passes' analysis, plus fresh arrays with at most
    one dimension longer than 1 (contiguous whatever their operands' layout)."""
    known: dict[str, bool] = {}
    nodes = graph.nodes
    for node in nodes.values():
        c = c_contiguous(node, known, nodes)
        if not c and _fresh(node, nodes) and sum(d != 1 for d in node.type.shape) <= 1:
            c = True
        known[node.name] = c
    return known


def _reuse_buffers(graph: Graph, stmts: list[_Stmt], out_vars: set[str], reuse_min: int) -> int:
    """Rewrite eligible elementwise statements to ``ufunc(..., out=donor)``; returns how many.

    A *buffer* is an array a fresh statement allocated; every variable that is that array or may be
    a view of it (reshape, transpose, slice, ... of it, conservatively) holds it. A buffer is dead
    after statement ``i`` when no variable holding it is read after ``i`` or is an output. The donor
    for statement ``i`` is a dead buffer whose array is C-contiguous with exactly the result's shape
    and dtype, and the result itself must be provably C-contiguous (so its layout is the
    interpreter's). Graph inputs, params and constants are never buffers, so never written.
    An operand donor (in place) is preferred; it is allowed only if no other operand of the
    statement is a view of it. Otherwise the most recently freed buffer of that type is used.
    """
    nodes = graph.nodes
    known = _layouts(graph)
    n = len(stmts)
    last: dict[str, int] = {}
    for i, st in enumerate(stmts):
        for a in st.args:
            last[a] = i
    for v in out_vars:
        last[v] = n  # read after the last statement
    vtype = {st.var: st.node.type for st in stmts}
    owner: dict[str, str] = {}  # variable -> the buffer it is (whole and C-contiguous)
    refs: dict[str, tuple[str, ...]] = {}  # variable -> buffers it may be or view
    # buffer -> the last statement reading any variable that may reference it (the latest last use
    # over its holders, kept as holders are added: a growing holder list rescanned per reuse was
    # quadratic)
    held_until: dict[str, int] = {}
    current: dict[str, str] = {}  # buffer -> its latest owning variable
    pool: dict[TensorType, list[str]] = {}  # dead buffers' owning variables, most recently freed last
    retired: set[str] = set()
    reused = 0

    def dead_after(buf: str, i: int) -> bool:
        return held_until[buf] <= i

    def hold(buf: str, var: str) -> None:
        held_until[buf] = max(held_until.get(buf, -1), last.get(var, -1))

    for i, st in enumerate(stmts):
        node, t = st.node, st.node.type
        donor = None
        if st.fast and node.op in _OUT_UFUNC and t.rank and t.size >= max(reuse_min, 1) and known[node.name] and (
                node.op not in _KERNEL_BY_DISTANCE or t.size * t.np_dtype.itemsize >= 64):
            for a in st.args:  # in place: the operand is already in cache
                b = owner.get(a)
                if b is not None and vtype[a] == t and dead_after(b, i) and all(
                        owner.get(x) == b for x in st.args if b in refs.get(x, ())):
                    donor = a
                    break
            if donor is None and pool.get(t):
                donor = pool[t].pop()
        if donor is not None:
            b = owner[donor]
            operands = list(st.args)
            if node.op == "relu":
                operands.append("0.0" if t.dtype == "f64" else "0")
            st.expr = f"{_OUT_UFUNC[node.op]}({', '.join(operands)}, out={donor})"
            if donor not in st.args:
                st.args.append(donor)  # read here: it must outlive this statement
            owner[st.var], refs[st.var], current[b] = b, (b,), st.var
            hold(b, st.var)
            retired.discard(b)
            reused += 1
        elif _fresh(node, nodes):
            refs[st.var] = (st.var,)
            hold(st.var, st.var)
            if known[node.name]:
                owner[st.var] = current[st.var] = st.var
        elif _new_value(node, nodes):  # a new scalar: it holds no buffer
            refs[st.var] = ()
        else:  # a view (or possibly one): it holds whatever its operands hold
            bufs = tuple(dict.fromkeys(b for a in st.args for b in refs.get(a, ())))
            refs[st.var] = bufs
            for b in bufs:
                hold(b, st.var)
        # buffers whose last reader was this statement become donors
        for a in dict.fromkeys(st.args):
            if last.get(a) != i:
                continue
            for b in refs.get(a, ()):
                if b in current and b not in retired and dead_after(b, i):
                    retired.add(b)
                    pool.setdefault(vtype[current[b]], []).append(current[b])
    return reused


def _with_dels(stmts: list[_Stmt], lines: list[str], out_vars: set[str]) -> list[str]:
    """``lines`` with ``del`` of every statement variable after its last read (outputs stay).
    Only variables the body assigns are dropped: inputs stay referenced by the caller anyway, and
    closure constants cannot be deleted."""
    assigned = {st.var for st in stmts}
    last: dict[str, int] = {}
    for i, st in enumerate(stmts):
        for a in st.args:
            if a in assigned:
                last[a] = i
    dead: dict[int, list[str]] = {}
    for v, i in last.items():
        if v not in out_vars:
            dead.setdefault(i, []).append(v)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i in dead:
            out.append(f"        del {', '.join(sorted(dead[i]))}")
    return out


def generate_source(graph: Graph, reuse_min: int | None = REUSE_MIN_ELEMENTS, free_dead: bool = FREE_DEAD) -> str:
    """The Python source of ``graph``'s compiled function (constants are supplied separately)."""
    return plan(graph, reuse_min, free_dead).source


# Compiled code objects by source text: the training programs for different sequence lengths
# usually have the same text (their shapes are closure constants), so they compile once.
_CODE_CACHE: dict[str, Any] = {}
_CODE_CACHE_SIZE = 64


def compile_graph(graph: Graph, checked: bool = True, reuse_min: int | None = REUSE_MIN_ELEMENTS,
                  free_dead: bool = FREE_DEAD) -> Compiled:
    """Compile ``graph`` once; returns ``run(inputs) -> {output: array}``.

    ``inputs`` maps every data input (and any param, overriding ``graph.params``) to its value.
    With ``checked`` (the default) each call checks names, shapes and dtypes (cheaply: arrays of the
    right type pass straight through, anything else is converted like the interpreter does).
    Checked or not, a non-C-contiguous array is copied to C order first, as the interpreter does:
    the passes (and the buffer reuse) assume inputs are C-contiguous (see :func:`gptir.interp.bind_input`).
    On a numpy error the graph is re-run by the interpreter to report which node failed.
    ``reuse_min`` and ``free_dead`` are :func:`plan`'s memory options (results are the same bits).
    """
    prog = plan(graph, reuse_min, free_dead)
    ns = _namespace_base()
    ns["_asarray"] = np.asarray
    code = _CODE_CACHE.get(prog.source)
    if code is None:
        code = compile(prog.source, "<gptir program>", "exec")
        if len(_CODE_CACHE) >= _CODE_CACHE_SIZE:
            _CODE_CACHE.pop(next(iter(_CODE_CACHE)))
        _CODE_CACHE[prog.source] = code
    exec(code, ns)  # noqa: S102 - the source is generated from validated identifiers and numbers only
    const_vars = sorted(prog.consts)
    fn = ns["_make"](tuple(prog.consts[v] for v in const_vars))
    out_names = [o for o, _ in prog.outputs]
    copy_outs = [o for o in out_names if o in prog.hoisted_outputs]
    sig = []
    for name, _ in prog.args:
        node = graph.nodes[name]
        sig.append((name, node, node.type.shape, node.type.np_dtype, graph.params.get(name)))
    known = {name for name, _ in prog.args}

    ndarray, asarray, ascontiguousarray = np.ndarray, np.asarray, np.ascontiguousarray

    def run(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        get = inputs.get
        args = []
        for name, node, shape, dt, default in sig:
            v = get(name, default)
            if v is None:
                missing = [f"{n}: {nd.type}" for n, nd, _, _, d in sig if n not in inputs and d is None]
                raise ExecError(f"missing input(s): {', '.join(missing)}")
            if checked and (type(v) is not ndarray or v.dtype is not dt or v.shape != shape):
                a = asarray(v) if type(v) is not ndarray else v  # numpy scalars: the step counter
                v = a if a.dtype is dt and a.shape == shape and a.flags.c_contiguous else bind_input(node, v)
            elif type(v) is ndarray and not v.flags.c_contiguous:
                v = ascontiguousarray(v)  # the layout contract the passes rely on (interp.bind_input)
            args.append(v)
        if checked and not known.issuperset(inputs):
            unknown = sorted(set(inputs) - known)
            raise ExecError(f"unknown input(s): {', '.join(unknown)} (the graph takes: "
                            f"{', '.join(sorted(known)) or 'nothing'})")
        try:
            with np.errstate(all="ignore"):
                res = fn(*args)
        except Exception as e:  # noqa: BLE001 - numpy errors become ExecErrors naming the node
            interp_run(graph, inputs)  # raises an ExecError naming the node that failed
            raise ExecError(f"the compiled program failed: {type(e).__name__}: {e}") from None
        out = dict(zip(out_names, res))
        for o in copy_outs:  # never hand out the program's own constants
            out[o] = out[o].copy()
        return out

    run.source = prog.source  # type: ignore[attr-defined]
    return run
