"""The compiled backend: a graph becomes one Python function of straight-line numpy, compiled once.

Everything op-specific comes from the op table: a ufunc op is written as its ufunc (or operator),
any other op by its ``emit``; which results are fresh, views or C-contiguous comes from the op
table's memory traits through :mod:`gptir.memory`, which also holds the liveness analysis.

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
(C-contiguous) layout (see :func:`_reuse_buffers` and :mod:`gptir.memory`). Inputs, params and
constants are never written, and nothing is kept between calls. Both save allocations and page faults; neither changes a bit.

Security: the source contains only identifiers made from validated IR names (``v_`` + the name with
dots as underscores), integers and booleans from verified attributes, and fixed text. Constants and
anything else from the IR reach the function as its globals (one namespace per compiled program),
never as source text; locations, scopes and graph names never appear in the source.

Size: a program of more than :data:`CHUNK_STATEMENTS` statements is split into part functions
(see :func:`_chunked`), and constants are globals rather than closure cells: CPython compiles one
huge function, or one with tens of thousands of free variables, in time that grows faster than
its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gptir.gcpause import gc_paused
from gptir.interp import ExecError, bind_input
from gptir.interp import run as interp_run
from gptir.ir import ATTR_KINDS, GptirError, Graph, Node, TensorType
from gptir.memory import c_order, dead_after, fresh, kernel_safe_in_place, last_reads, layout, new_value
from gptir.ops import OPS, OpDef, broadcast_shapes
from gptir.passes import evaluate_node

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
    """Attributes rebuilt by their kind's ``emit`` from plain ints/bools/dtype names, so their repr
    is exactly what we expect (an int subclass with a hostile ``__repr__`` cannot smuggle text into
    the source; tensors are never written into it)."""
    opdef = OPS.get(node.op)
    if opdef is None:
        raise CodegenError(f"%{node.name}: unknown op '{node.op}' (verify the graph first)")
    out: dict[str, Any] = {}
    for k, kind in opdef.attrs.items():
        if k not in node.attrs and k in opdef.optional:
            continue  # an omitted optional attribute: the op's emitter supplies the default
        if k not in node.attrs:
            raise CodegenError(f"%{node.name}: missing attribute {k} (verify the graph first)")
        try:
            out[k] = ATTR_KINDS[kind].emit(node.attrs[k])
        except (ValueError, TypeError) as e:
            raise CodegenError(f"%{node.name}: attribute {k} {e}") from None
    return out


# -- emitting --------------------------------------------------------------------------------------
# Every expression performs exactly the numpy operation the op table's ``evaluate`` does (same
# ufunc, same operands, same layout). A ufunc op is its ufunc, written as its Python operator where
# it has one (``a + b`` is np.add; never ``**``, which numpy turns into sqrt for 0.5); any other op
# is written by the op table's ``emit``.


def _emit(opdef: OpDef, args: Sequence[str], attrs: Mapping[str, Any], dtype: str) -> str:
    if opdef.infix is not None:
        return f"({opdef.infix}{args[0]})" if len(args) == 1 else f"({args[0]} {opdef.infix} {args[1]})"
    if opdef.ufunc is not None:
        return opdef.ufunc_call(args, dtype)
    if opdef.emit is None:
        raise CodegenError(f"op '{opdef.name}' has no code to emit")
    return opdef.emit(args, attrs)


def _namespace_base() -> dict[str, Any]:
    """The names generated code uses: each ufunc op's ``_<ufunc>`` and every op's ``emit_names``."""
    ns: dict[str, Any] = {"np": np, "_asarray": np.asarray}
    for opdef in OPS.values():
        names = dict(opdef.emit_names)
        if opdef.ufunc is not None:
            names[f"_{opdef.ufunc}"] = getattr(np, opdef.ufunc)
        for k, v in names.items():
            if ns.setdefault(k, v) is not v:  # pragma: no cover - test_optable checks the table
                raise CodegenError(f"op {opdef.name}: the name {k} means two things in generated code")
    return ns


# -- planning ----------------------------------------------------------------------------------------


@dataclass
class Program:
    """What the generator produced: the source, the constants it reads (its globals), the signature."""

    source: str
    functions: list[str] = field(default_factory=list)  # the source as its top-level functions, compiled one by one
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    args: list[tuple[str, str]] = field(default_factory=list)   # (IR input name, variable)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (output name, variable)
    hoisted_outputs: set[str] = field(default_factory=set)
    n_statements: int = 0
    n_reused: int = 0  # statements that write into a dead buffer (``out=``)


@dataclass(slots=True)
class _Stmt:
    """One statement of the program body: ``var = expr``; ``args`` are the names ``expr`` reads."""

    var: str
    expr: str
    args: list[str]
    node: Node
    ufunc: bool  # a ufunc call (only those are rewritten to ``out=``)


class _Names:
    """IR value name -> Python variable: ``v_`` + name with dots as underscores, made unique."""

    def __init__(self) -> None:
        self.var: dict[str, str] = {}
        self.taken: set[str] = set()

    def make(self, name: str, prefix: str = "v_") -> str:
        if not _SAFE_NAME.match(name):
            raise CodegenError(f"unsafe value name {name!r}")
        base = prefix + name.replace(".", "_")
        cand, k, taken = base, 0, self.taken
        while cand in taken:
            k += 1
            cand = f"{base}_{k}"
        if not cand.isidentifier():  # pragma: no cover - guaranteed by the regex above
            raise CodegenError(f"unsafe value name {name!r}")
        taken.add(cand)
        self.var[name] = cand
        return cand


@gc_paused
def plan(graph: Graph, reuse_min: int | None = REUSE_MIN_ELEMENTS, free_dead: bool = FREE_DEAD,
         chunk: int | None = None) -> Program:
    """Generate the program for ``graph`` (the graph is assumed verified).

    ``reuse_min``: elementwise results of at least this many elements write into a dead buffer of
    the same shape and dtype where that is provably safe (see :func:`_reuse_buffers`); None: never.
    ``free_dead``: drop each value's variable after its last use (``del``), as the interpreter
    does, so the allocator can hand its memory to later values.
    ``chunk``: a body of more statements than this (default :data:`CHUNK_STATEMENTS`) is split into
    functions of at most this many (see :func:`_chunked`).
    """
    chunk = CHUNK_STATEMENTS if chunk is None else max(int(chunk), 1)
    names = _Names()
    prog = Program(source="")
    consts: dict[str, np.ndarray] = {}  # IR name -> compile-time value
    body: list[_Stmt] = []
    attr_consts: dict[str, Any] = {}  # constants made from attributes (_k<i>) and scalars (_s_<var>)
    n_lifted = 0
    nodes = graph.nodes
    is_const = consts.__contains__
    known: dict[str, bool] = {}  # gptir.memory.layouts of the graph, for buffer reuse (made here, node by node)
    for node in nodes.values():
        op = node.op
        opdef = OPS.get(op)
        if opdef is None:
            raise CodegenError(f"%{node.name}: unknown op '{op}' (verify the graph first)")
        if op == "const" and not isinstance(node.attrs.get("value"), np.ndarray):
            raise CodegenError(f"%{node.name}: a const needs a tensor value")
        if reuse_min is not None:
            known[node.name] = layout(node, known, nodes)
        if op == "input" or op == "param":
            prog.args.append((node.name, names.make(node.name)))
            continue
        if op == "const":
            consts[node.name] = node.attrs["value"]
            names.make(node.name)
            continue
        if node.inputs and all(map(is_const, node.inputs)):
            value = evaluate_node(node, [consts[i] for i in node.inputs])
            if value is not None:
                consts[node.name] = value
                names.make(node.name)
                continue
        operands = list(node.inputs)
        if opdef.implicit_broadcast:
            operands = _elide_broadcasts(graph, node, operands, consts)
        attrs = _safe_attrs(node) if opdef.attrs else {}
        args = [names.var[i] for i in operands]
        if not node.type.shape and opdef.ufunc is not None and all(not nodes[i].type.shape for i in operands):
            # scalar arithmetic: a numpy scalar constant takes numpy's scalar fast path (the
            # operands at run time are numpy scalars too); a ufunc gives the same bits either way
            for k, i in enumerate(operands):
                if i in consts:
                    sname = "_s_" + args[k]  # '_' prefix: never the name of an IR value (those are v_...)
                    attr_consts[sname] = consts[i][()]
                    args[k] = sname
        if opdef.lift is not None:
            # shape-like attributes (the ones that change with the sequence length) become
            # constants, so programs for different lengths share one source text and one compile
            kname = f"_k{n_lifted}"
            n_lifted += 1
            attr_consts[kname] = opdef.lift(attrs)
            args = args + [kname]
        try:
            expr = _emit(opdef, args, attrs, nodes[operands[0]].type.dtype)
        except CodegenError as e:
            raise CodegenError(f"{e} (%{node.name})") from None
        if expr == args[0]:  # the identity (stop_gradient): share the operand's variable
            names.var[node.name] = args[0]
            continue
        body.append(_Stmt(names.make(node.name), expr, args, node, opdef.ufunc is not None))
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
    last = last_reads([st.args for st in stmts])  # (buffer reuse adds the donors it reads)
    if reuse_min is not None:
        prog.n_reused = _reuse_buffers(graph, stmts, known, last, out_vars, reuse_min)
    prog.consts = {names.var[k]: v for k, v in consts.items() if names.var[k] in used}
    prog.consts.update({k: v for k, v in attr_consts.items() if k in used})
    for out, vname in graph.outputs.items():
        prog.outputs.append((out, names.var[vname]))
        if vname in consts:
            prog.hoisted_outputs.add(out)
    lines = [f"def _program({', '.join(v for _, v in prog.args)}):"]
    unassigned = {v for _, v in prog.args} | prog.consts.keys()  # what the statements read but do not assign
    if len(stmts) <= chunk:
        lines.extend(_body(stmts, 0, len(stmts), _deaths(last, out_vars, unassigned, free_dead)))
    else:
        parts, calls = _chunked(stmts, last, out_vars, unassigned, set(prog.consts), free_dead, chunk)
        prog.functions.extend(parts)
        lines.extend(calls)
    rets = []
    for out, var in prog.outputs:
        rank0 = nodes[graph.outputs[out]].type.rank == 0
        rets.append(f"_asarray({var})" if rank0 else var)
    lines.append(f"    return ({', '.join(rets)},)")
    prog.functions.append("\n".join(lines) + "\n")
    prog.source = "".join(prog.functions)
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
        if broadcast_shapes(*(graph.nodes[t].type.shape for t in trial)) == node.type.shape:
            new = trial
    return new


# -- buffer reuse --------------------------------------------------------------------------------
# An elementwise result may be written with ``out=`` into an array the program itself made and
# nobody can read again: it saves an allocation and, for large arrays, the page faults of fresh
# memory (the dominant cost of the big training steps). The values are the same: the ``out=`` call
# is the very ufunc the operator form calls, on the same operands in the same order, and the result
# has the layout the interpreter's fresh result has (both are proved C-contiguous).

_NO_OWNER = ("", None)  # owner.get's default in _reuse_buffers (no variable is called "")


def _reuse_buffers(graph: Graph, stmts: list[_Stmt], known: Mapping[str, bool], last: dict[str, int],
                   out_vars: set[str], reuse_min: int) -> int:
    """Rewrite eligible elementwise statements to ``ufunc(..., out=donor)``; returns how many.
    ``known`` is :func:`gptir.memory.layouts` of the graph's nodes, ``last`` each variable's last
    reading statement (:func:`gptir.memory.last_reads` of the statements' operands); a donor a
    statement now reads is recorded there.

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
    n = len(stmts)  # the outputs are read after the last statement
    owner: dict[str, tuple[str, TensorType]] = {}  # variable -> the buffer it is (whole and C-contiguous), its type
    refs: dict[str, tuple[str, ...]] = {}  # variable -> buffers it may be or view
    # buffer -> the last statement reading any variable that may reference it (the latest last use
    # over its holders, kept as holders are added: a growing holder list rescanned per reuse was
    # quadratic)
    held_until: dict[str, int] = {}
    current: dict[str, tuple[str, TensorType]] = {}  # buffer -> its latest owning variable and its type
    pool: dict[TensorType, list[str]] = {}  # dead buffers' owning variables, most recently freed last
    retired: set[str] = set()
    reused = 0

    # (dead_after(b, i) is ``held_until[b] <= i``; hold(b, v) raises held_until[b] to v's last read:
    # both written out inline below, as this loop runs once per statement)
    min_size = max(reuse_min, 1)
    get_last, get_owner, get_refs = last.get, owner.get, refs.get
    for i, st in enumerate(stmts):
        node, t = st.node, st.node.type
        args, var = st.args, st.var
        until = n if var in out_vars else get_last(var, -1)
        donor = None
        if st.ufunc and t.shape and t.size >= min_size and known[node.name] and kernel_safe_in_place(node.op, t):
            for a in args:  # in place: the operand is already in cache
                o = get_owner(a)
                if o is not None and o[1] == t and held_until[o[0]] <= i and all(
                        get_owner(x, _NO_OWNER)[0] == o[0] for x in args if o[0] in get_refs(x, ())):
                    donor = a
                    break
            if donor is None and pool.get(t):
                donor = pool[t].pop()
        if donor is not None:
            b = owner[donor][0]
            st.expr = OPS[node.op].ufunc_call(args, nodes[node.inputs[0]].type.dtype, out=donor)
            if donor not in args:
                args.append(donor)  # read here: it must outlive this statement
                last[donor] = i
            owner[var], refs[var], current[b] = (b, t), (b,), (var, t)
            held_until[b] = max(held_until.get(b, -1), until)
            retired.discard(b)
            reused += 1
        elif fresh(node, nodes):
            refs[var] = (var,)
            held_until[var] = max(held_until.get(var, -1), until)
            if known[node.name]:
                owner[var] = current[var] = (var, t)
        elif new_value(node, nodes):  # a new scalar: it holds no buffer
            refs[var] = ()
        else:  # a view (or possibly one): it holds whatever its operands hold
            bufs = tuple(dict.fromkeys(b for a in args for b in get_refs(a, ())))
            refs[var] = bufs
            for b in bufs:
                held_until[b] = max(held_until.get(b, -1), until)
        # buffers whose last reader was this statement become donors (an operand read twice finds
        # its buffers retired the second time)
        for a in args:
            if get_last(a) != i or a in out_vars:
                continue
            for b in get_refs(a, ()):
                if b in current and b not in retired and held_until[b] <= i:
                    retired.add(b)
                    cvar, ctype = current[b]
                    pool.setdefault(ctype, []).append(cvar)
    return reused


def _deaths(last: Mapping[str, int], out_vars: set[str], unassigned: set[str],
            free_dead: bool) -> dict[int, list[str]]:
    """Statement index -> the statement variables read there for the last time (``last``: each
    variable's last reading statement; outputs stay; none without ``free_dead``). Only variables the
    body assigns are dropped (``unassigned``: the others it reads): inputs stay referenced by the
    caller anyway, and constants are not the function's to delete."""
    if not free_dead:
        return {}
    return dead_after(last, out_vars | unassigned)


def _body(stmts: list[_Stmt], start: int, end: int, dead: Mapping[int, list[str]]) -> list[str]:
    """The lines of statements ``start:end``, each followed by a ``del`` of what dies there."""
    out = []
    for i in range(start, end):
        st = stmts[i]
        out.append(f"    {st.var} = {st.expr}")
        if i in dead:
            out.append(f"    del {', '.join(sorted(dead[i]))}")
    return out


# Programs of more statements than this are split into functions of at most this many, compiled one
# by one: CPython compiles one huge function in time that grows faster than its length (the 100k-node
# loss graph's 100k statements: 1.45 s as one function, about 1.0 s as 25 parts; with its 17k
# constants as closure cells, 1.9-2.2 s), and the calls between parts cost well under a microsecond
# each. Every microgpt training program is shorter, so it stays one function.
CHUNK_STATEMENTS = 4000


def _chunked(stmts: list[_Stmt], last: Mapping[str, int], out_vars: set[str], unassigned: set[str],
             consts: set[str], free_dead: bool, chunk: int) -> tuple[list[str], list[str]]:
    """The part functions' sources and ``_program``'s body, which calls them in turn. Each part
    ``_part<k>`` runs ``chunk`` statements: it takes the values it reads that earlier parts (or the
    caller) made and returns the values it makes that later parts or the outputs read. The statements, their order and their
    operands are exactly the unsplit program's, so the results are the same bits. ``_program`` drops
    each value it holds after the last part that reads it (with ``free_dead``), as the parts do."""
    dead = _deaths(last, out_vars, unassigned, free_dead)
    n = len(stmts)
    parts: list[str] = []
    calls: list[str] = []
    held: list[str] = []  # values _program holds, made by earlier parts
    for k, start in enumerate(range(0, n, chunk)):
        end = min(start + chunk, n)
        made = {stmts[i].var for i in range(start, end)}
        takes = list(dict.fromkeys(a for i in range(start, end) for a in stmts[i].args
                                   if a not in made and a not in consts))
        gives = [v for v in (stmts[i].var for i in range(start, end)) if v in out_vars or last.get(v, -1) >= end]
        ret = f"    return ({', '.join(gives)},)" if gives else "    return ()"
        parts.append("\n".join([f"def _part{k}({', '.join(takes)}):", *_body(stmts, start, end, dead), ret]) + "\n")
        call = f"_part{k}({', '.join(takes)})"
        calls.append(f"    ({', '.join(gives)},) = {call}" if gives else f"    {call}")
        held.extend(gives)
        if free_dead:
            gone = [v for v in held if v not in out_vars and last[v] < end]
            if gone:
                calls.append(f"    del {', '.join(gone)}")
                held = [v for v in held if v in out_vars or last[v] >= end]
    return parts, calls


def generate_source(graph: Graph, reuse_min: int | None = REUSE_MIN_ELEMENTS, free_dead: bool = FREE_DEAD,
                    chunk: int | None = None) -> str:
    """The Python source of ``graph``'s compiled function (constants are supplied separately)."""
    return plan(graph, reuse_min, free_dead, chunk).source


# Compiled code objects by source text: the training programs for different sequence lengths
# usually have the same text (their shapes are constants), so they compile once.
_CODE_CACHE: dict[str, Any] = {}
_CODE_CACHE_SIZE = 64


@gc_paused
def compile_graph(graph: Graph, checked: bool = True, reuse_min: int | None = REUSE_MIN_ELEMENTS,
                  free_dead: bool = FREE_DEAD, chunk: int | None = None) -> Compiled:
    """Compile ``graph`` once; returns ``run(inputs) -> {output: array}``.

    ``inputs`` maps every data input (and any param, overriding ``graph.params``) to its value.
    With ``checked`` (the default) each call checks names, shapes and dtypes (cheaply: arrays of the
    right type pass straight through, anything else is converted like the interpreter does).
    Checked or not, a non-C-contiguous array is copied to C order first, as the interpreter does:
    the passes (and the buffer reuse) assume inputs are C-contiguous (the input contract,
    :func:`gptir.memory.c_order`).
    On a numpy error the graph is re-run by the interpreter to report which node failed.
    ``reuse_min`` and ``free_dead`` are :func:`plan`'s memory options and ``chunk`` its split size
    (results are the same bits).
    """
    prog = plan(graph, reuse_min, free_dead, chunk)
    ns = _namespace_base()
    codes = _CODE_CACHE.get(prog.source)
    if codes is None:
        codes = [compile(f, "<gptir program>", "exec") for f in prog.functions]
        if len(_CODE_CACHE) >= _CODE_CACHE_SIZE:
            _CODE_CACHE.pop(next(iter(_CODE_CACHE)))
        _CODE_CACHE[prog.source] = codes
    clash = ns.keys() & prog.consts.keys()
    if clash:  # pragma: no cover - constants are v_..., _k<i> and _s_v_...; test_optable checks emit_names
        raise CodegenError(f"the constant name {min(clash)} is a name generated code uses")
    ns.update(prog.consts)  # the program's constants are its globals (see the module docstring)
    for code in codes:
        exec(code, ns)  # noqa: S102 - the source is generated from validated identifiers and numbers only
    fn = ns["_program"]
    out_names = [o for o, _ in prog.outputs]
    copy_outs = [o for o in out_names if o in prog.hoisted_outputs]
    sig = []
    for name, _ in prog.args:
        node = graph.nodes[name]
        sig.append((name, node, node.type.shape, node.type.np_dtype, graph.params.get(name)))
    known = {name for name, _ in prog.args}

    ndarray, asarray = np.ndarray, np.asarray

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
                v = c_order(v)  # the input contract the passes rely on (gptir.memory)
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
