"""Optimisation passes (each ``Graph -> Graph``) and the pass manager.

Every pass preserves meaning *bit for bit*: the training run must reproduce the unoptimised
interpreter exactly, so no pass reassociates float arithmetic, and no pass changes the memory layout
a layout-sensitive consumer sees. Layout matters in numpy: ``sum`` adds in an order that depends on
strides (pairwise over contiguous runs), ``matmul`` takes BLAS or a plain loop depending on strides,
and ``exp``/``log`` pick SIMD or scalar kernels by stride. So a rewrite that swaps a value for another
one with the same numbers (``x*1 -> x``) is applied only when both are known to be C-contiguous
arrays of the same shape (see :func:`gptir.memory.c_contiguous`, the layout contract).

Input layout is a contract, not an unknown: every backend binds inputs and params C-contiguous
(:func:`gptir.memory.c_order`), so the analysis
starts from "inputs are C-contiguous" and ordinary graphs (``exp(x)*1.0`` with ``x`` an input)
simplify.

Names are stable: a surviving node keeps its name, a rewritten node keeps the name of the node it
replaces, and graph inputs, params and output names never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from gptir.gcpause import gc_paused
from gptir.ir import (FLOATS, GptirError, Graph, Node, TensorType, VerifyError, attrs_key, verify, verify_node,
                      verify_outputs)
from gptir.memory import c_contiguous
from gptir.ops import OPS

Pass = Callable[[Graph], Graph]

# A folded constant is written into the IR as a literal: never make literals bigger than this, so
# folding cannot blow up a file (a broadcast of a scalar stays a broadcast).
FOLD_MAX_ELEMENTS = 256
# Rewrites of one node before simplify gives up and names the rules that cycle.
MAX_REWRITES = 64
# Constant subgraphs are evaluated at compile time only up to this size (views of any size).
FOLD_EVAL_LIMIT = 1 << 16


class PassError(GptirError):
    """A pass failed or produced invalid IR; the message names the pass."""


# -- helpers ---------------------------------------------------------------------------------------


def _rebuild(graph: Graph, nodes: dict[str, Node], alias: Mapping[str, str]) -> Graph:
    """A graph of ``nodes`` (already in topological order) with outputs redirected through ``alias``.

    The passes build ``nodes`` as they sweep the graph once: at 100,000 nodes the graph no longer
    fits in the processor's caches, and each extra sweep over it (a copy of its table, a list of its
    nodes) costs a memory access per object."""
    outputs = {k: _resolve(alias, v) for k, v in graph.outputs.items()}
    return graph.replace(nodes=nodes, outputs=outputs)


def _resolve(alias: Mapping[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


def _rewire(node: Node, alias: dict[str, str]) -> Node:
    """``node`` reading through ``alias``; the caller has seen that it reads an aliased value (the
    test is inline in the passes' loops, where a call per node would cost more than the test)."""
    # the constructor directly: dataclasses.replace is ten times slower, and this runs per node
    return Node(node.name, node.op, tuple(_resolve(alias, i) for i in node.inputs), node.type, node.attrs,
                node.scope, node.loc, node.backward)


# -- dce -------------------------------------------------------------------------------------------


def dce(graph: Graph) -> Graph:
    """Drop every node no output needs. Inputs and params always stay: they are the signature."""
    live = set(graph.outputs.values())
    dead: list[Node] = []  # (one set lookup per node: at 100,000 nodes each one is a cache miss)
    for node in reversed(graph.nodes.values()):
        if node.name in live:
            live.update(node.inputs)
        elif node.op != "input" and node.op != "param":
            dead.append(node)
    if not dead:  # nothing to drop: the graph itself (graphs are never mutated in place)
        return graph
    nodes = dict(graph.nodes)
    for node in dead:
        del nodes[node.name]
    return graph.replace(nodes=nodes)


# -- cse -------------------------------------------------------------------------------------------


def _const_key(value: np.ndarray) -> tuple:
    # Layout is part of a constant's identity (see the module docstring).
    return (value.dtype.str, value.shape, value.strides, value.tobytes())


def cse(graph: Graph) -> Graph:
    """Merge structurally identical nodes (same op, operands, bit-exact attributes, type); constants
    merge by value. The first node keeps its name. Operands of commutative ops are not reordered: NaN
    payloads follow operand order, and bit-exact is the rule."""
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    for node in graph.nodes.values():
        if node.op == "input" or node.op == "param":
            nodes[node.name] = node
            continue
        if alias and not alias.keys().isdisjoint(node.inputs):
            node = _rewire(node, alias)
        if node.op == "const":
            key: tuple = ("const", node.type, _const_key(node.attrs["value"]))
        else:
            # no type in the key: a valid node's type is its op's type rule over its operands' types
            # and its attrs, so it follows from the rest (and hashing a TensorType is a Python call)
            key = (node.op, node.inputs, attrs_key(node.attrs) if node.attrs else ())
        first = seen.get(key)
        if first is None:
            seen[key] = node.name
            nodes[node.name] = node
        else:
            alias[node.name] = first
    return _rebuild(graph, nodes, alias)


# -- fold ------------------------------------------------------------------------------------------


def evaluate_node(node: Node, args: Sequence[np.ndarray]) -> np.ndarray | None:
    """The op table's evaluation (the interpreter's own numpy code), or None if it fails."""
    opdef = OPS[node.op]
    if opdef.evaluate is None:
        return None
    try:
        with np.errstate(all="ignore"):
            return np.asarray(opdef.evaluate(args, node.attrs))
    except Exception:  # noqa: BLE001 - a failing op stays in the graph and fails at run time
        return None


def _cheap_to_fold(node: Node, args: Sequence[np.ndarray]) -> bool:
    """Whether evaluating ``node`` at compile time stays within ``FOLD_EVAL_LIMIT`` elements of work and
    memory: its result and operands are small, or it is a view of its operand (an op whose ``result``
    trait is ``view`` — broadcast, transpose, slice — or ``maybe_view`` on a C-contiguous operand, such
    as a reshape), which costs nothing whatever its size. A 3 GB concat or a
    sum over a broadcast of 10**12 elements is left for run time (where the memory check refuses it)."""
    if node.type.size <= FOLD_EVAL_LIMIT and all(a.size <= FOLD_EVAL_LIMIT for a in args):
        return True
    result = OPS[node.op].result
    if result == "view":
        return True
    return result == "maybe_view" and bool(args[0].flags.c_contiguous)


def fold(graph: Graph) -> Graph:
    """Constant folding with the op table's ``evaluate`` (so results are bit-identical).

    Every node whose operands are all constant is evaluated (broadcast views included), but only a
    small (``FOLD_MAX_ELEMENTS``), C-contiguous result becomes a literal: a literal is always
    C-contiguous, so writing out a transposed or broadcast view would change the layout later ops see
    (and a broadcast would grow into a big literal). Broadcasts of constants therefore stay; their
    constant users fold through them, and the code generator hoists the rest.
    """
    values: dict[str, np.ndarray] = {}
    nodes: dict[str, Node] = {}
    folded = False
    for node in graph.nodes.values():
        nodes[node.name] = node
        if node.op == "const":
            values[node.name] = node.attrs["value"]
            continue
        if not node.inputs or node.op == "input" or node.op == "param" or any(i not in values for i in node.inputs):
            continue
        if not _cheap_to_fold(node, [values[i] for i in node.inputs]):
            continue
        result = evaluate_node(node, [values[i] for i in node.inputs])
        if result is None or TensorType.of(result) != node.type:
            continue
        values[node.name] = result
        if node.type.size > FOLD_MAX_ELEMENTS or not result.flags.c_contiguous:
            continue
        literal = np.array(result, copy=True)  # own the data: the literal must not alias anything
        values[node.name] = literal
        nodes[node.name] = Node(node.name, "const", (), node.type, {"value": literal}, node.scope, node.loc,
                                node.backward)
        folded = True
    return dce(graph.replace(nodes=nodes) if folded else graph)


# -- simplify: a table of pattern -> replacement rules ------------------------------------------------


@dataclass(frozen=True)
class Pat:
    """A pattern over values: ``op`` (a name, a tuple of names, or None for any value), operand
    patterns ``src`` (None: any operands), a binding ``name`` and an extra predicate ``pred``."""

    op: str | tuple[str, ...] | None = None
    src: tuple["Pat", ...] | None = None
    name: str | None = None
    pred: Callable[["Ctx", Node], bool] | None = None


def P(op: str | tuple[str, ...] | None = None, *src: Pat, name: str | None = None,
      pred: Callable[["Ctx", Node], bool] | None = None) -> Pat:
    return Pat(op, tuple(src) if src else None, name, pred)


def X(name: str = "x", pred: Callable[["Ctx", Node], bool] | None = None) -> Pat:
    """Any value, bound to ``name``."""
    return Pat(None, None, name, pred)


@dataclass(frozen=True)
class NewNode:
    """A replacement node (it takes the matched node's name, scope and location)."""

    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """``name``: when ``pat`` matches, ``fn(ctx, **bindings)`` gives a replacement: the name of an
    existing value (the node is replaced by it), a :class:`NewNode`, or None (no rewrite)."""

    name: str
    pat: Pat
    fn: Callable[..., Any]


class Ctx:
    """What rules may ask about the graph being rewritten."""

    def __init__(self, nodes: Mapping[str, Node], layout: dict[str, bool]) -> None:
        self.nodes = nodes
        self.layout = layout

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def contiguous(self, name: str) -> bool:
        """Whether the value is provably C-contiguous (computed on demand, operands first)."""
        lay = self.layout
        if name in lay:
            return lay[name]
        stack = [name]
        while stack:
            n = stack[-1]
            if n in lay:
                stack.pop()
                continue
            node = self.nodes[n]
            pending = [i for i in node.inputs if i not in lay]
            if pending:
                stack.extend(pending)
                continue
            lay[n] = c_contiguous(node, lay, self.nodes)
            stack.pop()
        return lay[name]

    def const_value(self, name: str) -> np.ndarray | None:
        """The value of a constant, looking through broadcasts of constants."""
        n = self.nodes[name]
        if n.op == "broadcast":
            inner = self.const_value(n.inputs[0])
            return None if inner is None else np.broadcast_to(inner, n.attrs["shape"])
        if n.op == "const":
            return n.attrs["value"]
        return None

    def const_source(self, name: str) -> np.ndarray | None:
        """The constant a value is, or is a broadcast of (every element of the value is in it)."""
        n = self.nodes[name]
        while n.op == "broadcast":
            n = self.nodes[n.inputs[0]]
        return n.attrs["value"] if n.op == "const" else None


def _match(ctx: Ctx, pat: Pat, name: str, binds: dict[str, str]) -> bool:
    """Whether ``pat`` matches the value ``name``, adding its bindings to ``binds``. The operands of
    a commutative op (``OpDef.commutative``) match in either order, written order first, so one
    rule covers ``x * 1`` and ``1 * x``."""
    node = ctx.nodes[name]
    if pat.op is not None and (node.op != pat.op if isinstance(pat.op, str) else node.op not in pat.op):
        return False
    if pat.src is not None:
        inputs = node.inputs
        if len(pat.src) != len(inputs):
            return False
        if OPS[node.op].commutative and inputs[0] != inputs[1]:  # commutative ops are binary (test_optable)
            a, b = pat.src
            for x, y in ((inputs[0], inputs[1]), (inputs[1], inputs[0])):
                trial = dict(binds)
                if _match(ctx, a, x, trial) and _match(ctx, b, y, trial):
                    break
            else:
                return False
            binds.clear()
            binds.update(trial)
        else:
            for sp, i in zip(pat.src, inputs):
                if not _match(ctx, sp, i, binds):
                    return False
    if pat.name is not None:
        if pat.name in binds and binds[pat.name] != name:
            return False
        binds[pat.name] = name
    return pat.pred is None or pat.pred(ctx, node)


def _all_equal(value: float) -> Callable[[Ctx, Node], bool]:
    """A predicate: the value is a constant (or a broadcast constant) whose every element is
    ``value``, bit for bit for floats (so -0.0 and 0.0 differ)."""
    want, want32 = np.float64(value).view(np.int64), np.float32(value).view(np.int32)

    def pred(ctx: Ctx, node: Node) -> bool:
        v = ctx.const_source(node.name)
        if v is None or v.size == 0:
            return False
        if v.dtype == np.float64:
            return bool(np.all(v.view(np.int64) == want))
        if v.dtype == np.float32:
            return bool(np.all(v.view(np.int32) == want32))
        if v.dtype == np.int64:
            return float(value) == int(value) and bool(np.all(v == int(value)))
        return False
    return pred


ONE, NEG_ZERO, ZERO = _all_equal(1.0), _all_equal(-0.0), _all_equal(0.0)


def _same_value(ctx: Ctx, root: Node, x: str) -> str | None:
    """Replace ``root`` by ``x`` only when layouts provably agree (both C-contiguous, same type)."""
    xn = ctx.nodes[x]
    if xn.type != root.type or not ctx.contiguous(x) or not ctx.contiguous(root.name):
        return None
    return x


def _compose_perm(outer: Sequence[int], inner: Sequence[int]) -> tuple[int, ...]:
    # transpose(transpose(x, inner), outer)[axis i] = x[axis inner[outer[i]]]
    return tuple(inner[p] for p in outer)


def _r_same(ctx: Ctx, root: str, x: str, **_: str) -> str | None:
    return _same_value(ctx, ctx.nodes[root], x)


def _r_view_same(ctx: Ctx, root: str, x: str, **_: str) -> str | None:
    """A movement op that returns a view with the operand's own strides (exact, any layout)."""
    return x if ctx.nodes[x].type == ctx.nodes[root].type else None


def _r_transpose2(ctx: Ctx, root: str, inner: str, x: str) -> str | NewNode | None:
    perm = _compose_perm(ctx.nodes[root].attrs["perm"], ctx.nodes[inner].attrs["perm"])
    if perm == tuple(range(len(perm))):
        return x  # np.transpose only permutes strides: x's own view is the same layout
    return NewNode("transpose", (x,), {"perm": perm})


def _r_transpose_id(ctx: Ctx, root: str, x: str) -> str | None:
    perm = ctx.nodes[root].attrs["perm"]
    return x if tuple(perm) == tuple(range(len(perm))) else None


def _r_broadcast2(ctx: Ctx, root: str, inner: str, x: str) -> NewNode:
    # broadcast_to gives stride 0 on new or stretched axes and keeps the others: composing is exact
    return NewNode("broadcast", (x,), {"shape": ctx.nodes[root].attrs["shape"]})


def _r_broadcast_one(ctx: Ctx, root: str, inner: str, x: str) -> NewNode | None:
    """broadcast(reshape(s)) -> broadcast(s) for a one-element ``s`` (a scalar, typically the
    gradient of a full reduction): either way the result is its one number at stride 0 on every
    axis longer than 1 (axes of length 1 are never stepped), so values and layout agree."""
    xt, shape = ctx.nodes[x].type, ctx.nodes[root].attrs["shape"]
    if xt.size != 1 or xt.rank > len(shape):
        return None
    return NewNode("broadcast", (x,), {"shape": shape})


def _r_reshape2(ctx: Ctx, root: str, inner: str, x: str) -> str | NewNode | None:
    # Reshaping a C-contiguous array is a view with C strides however it is done; for other layouts
    # numpy may copy at one step and not the other, so the rule needs contiguity.
    if not ctx.contiguous(x):
        return None
    shape = ctx.nodes[root].attrs["shape"]
    if tuple(shape) == ctx.nodes[x].type.shape:
        return x
    return NewNode("reshape", (x,), {"shape": shape})


def _r_sum_none(ctx: Ctx, root: str, x: str) -> str | None:
    # A reduction over no axes starts from the ufunc's identity: for max (none) it copies x, for
    # sum it is 0 + x, exact for integers but not for floats (0.0 + -0.0 = 0.0).
    node = ctx.nodes[root]
    if node.attrs["axes"] or (node.op == "sum" and node.type.dtype in FLOATS):
        return None
    return _same_value(ctx, node, x)


def _r_cast_same(ctx: Ctx, root: str, x: str) -> str | None:
    if ctx.nodes[root].attrs["dtype"] != ctx.nodes[x].type.dtype:
        return None
    return _same_value(ctx, ctx.nodes[root], x)


def _r_stop_const(ctx: Ctx, root: str, x: str) -> str:
    return x


def _r_stop_twice(ctx: Ctx, root: str, x: str, y: str) -> str:
    return x  # the inner stop_gradient (same value object: stop_gradient is the identity)


def _r_where_same(ctx: Ctx, root: str, c: str, x: str) -> str | None:
    return _same_value(ctx, ctx.nodes[root], x)


# The rules. Kept (all exact in IEEE arithmetic, NaN in -> NaN out). A rule that replaces a value by
# another one with the same numbers needs both C-contiguous (:func:`_same_value`); graph inputs and
# params are (the input layout contract, see the module docstring), so the rules fire on values
# computed from inputs too, not only on fresh intermediate arrays:
#   x*1, 1*x, x/1           -> x   (multiplying or dividing by one changes no bit, -0.0 included)
#   x-0.0, x+(-0.0), (-0.0)+x -> x (-0.0 is the additive identity; +0.0 is NOT: -0.0+0.0 = 0.0)
# (mul and add are commutative in the op table, so one pattern covers both operand orders.)
#   neg(neg x)              -> x
#   movement chains         -> one movement (views: same strides whichever way they are made)
#   broadcast(reshape s)    -> broadcast(s) for a one-element s (a broadcast scalar is its number at
#                              stride 0 whatever shape of ones it passed through; a reshape of a
#                              constant scalar to a shape of ones is left to fold, which makes it a literal)
#   max over no axes, sum of integers over no axes, cast to own dtype, where(c, x, x) -> x
#   stop_gradient(const), stop_gradient(stop_gradient x) -> the inner value
# Not kept: x*0 -> 0 (nan*0 = nan, inf*0 = nan, -1*0 = -0.0), x+0.0 -> x (x = -0.0), x-x -> 0 (nan, inf),
# a float sum over no axes -> x (it is 0.0 + x: -0.0 becomes 0.0),
# x/x -> 1, any reassociation. stop_gradient(x) -> x is not a rule: autodiff still needs it.
RULES: list[Rule] = [
    Rule("mul_one", P("mul", X("x"), X("one", ONE), name="root"), _r_same),
    Rule("div_one", P("div", X("x"), X("one", ONE), name="root"), _r_same),
    Rule("sub_zero", P("sub", X("x"), X("zero", ZERO), name="root"), _r_same),
    Rule("add_neg_zero", P("add", X("x"), X("zero", NEG_ZERO), name="root"), _r_same),
    Rule("neg_neg", P("neg", P("neg", X("x")), name="root"), _r_same),
    Rule("reshape_reshape", P("reshape", P("reshape", X("x"), name="inner"), name="root"), _r_reshape2),
    Rule("reshape_self", P("reshape", X("x"), name="root"), _r_view_same),
    Rule("transpose_transpose", P("transpose", P("transpose", X("x"), name="inner"), name="root"), _r_transpose2),
    Rule("transpose_identity", P("transpose", X("x"), name="root"), _r_transpose_id),
    Rule("broadcast_self", P("broadcast", X("x"), name="root"), _r_view_same),
    Rule("broadcast_broadcast", P("broadcast", P("broadcast", X("x"), name="inner"), name="root"), _r_broadcast2),
    Rule("broadcast_reshaped_scalar", P("broadcast", P("reshape", X("x"), name="inner"), name="root"),
         _r_broadcast_one),
    Rule("sum_no_axes", P("sum", X("x"), name="root"), _r_sum_none),
    Rule("max_no_axes", P("max", X("x"), name="root"), _r_sum_none),
    Rule("cast_same_dtype", P("cast", X("x"), name="root"), _r_cast_same),
    Rule("where_same_branches", P("where", X("c"), X("x"), X("x"), name="root"), _r_where_same),
    Rule("stop_gradient_const", P("stop_gradient", X("x", lambda c, n: n.op == "const"), name="root"), _r_stop_const),
    Rule("stop_gradient_twice", P("stop_gradient", P("stop_gradient", X("y"), name="x"), name="root"),
         _r_stop_twice),
]


def _index_rules(rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    """Rules by the op of their root pattern (a root that matches any op goes under every op)."""
    table: dict[str, list[Rule]] = {}
    for rule in rules:
        ops = OPS if rule.pat.op is None else (rule.pat.op,) if isinstance(rule.pat.op, str) else rule.pat.op
        for op in ops:
            table.setdefault(op, []).append(rule)
    return table


def rewrite(graph: Graph, rules: Sequence[Rule], max_rewrites: int = MAX_REWRITES) -> Graph:
    """Apply ``rules`` to a fixed point in one topological sweep: operands are already final when a
    node is visited (rules only look at a node and its operands, and replace it by an existing value
    or by a node over existing values), and a rewritten node is tried again until no rule fires. Raises PassError naming the rules if a
    node keeps being rewritten (a cycle in the rule table)."""
    nodes: dict[str, Node] = {}  # the result so far (rules look only at operands, which are in it)
    layout: dict[str, bool] = {}
    alias: dict[str, str] = {}
    ctx = Ctx(nodes, layout)
    by_op = _index_rules(rules)
    for node in graph.nodes.values():
        if alias and not alias.keys().isdisjoint(node.inputs):
            node = _rewire(node, alias)
        fired: list[str] = []
        while True:
            nodes[node.name] = node
            if layout:
                layout.pop(node.name, None)  # (re)computed on demand by Ctx.contiguous
            result, rule_name = None, ""
            if node.op not in ("input", "param", "const"):
                for rule in by_op.get(node.op, ()):
                    binds: dict[str, str] = {}
                    if _match(ctx, rule.pat, node.name, binds):
                        binds.setdefault("root", node.name)
                        result = rule.fn(ctx, **binds)
                        if result is not None:
                            rule_name = rule.name
                            break
            if result is None:
                break
            fired.append(rule_name)
            if len(fired) > max_rewrites:
                cyc = sorted(set(fired[-max_rewrites:]))
                raise PassError(f"simplify did not converge on %{node.name} after {max_rewrites} rewrites; "
                                f"rules that cycle: {', '.join(cyc)}")
            if isinstance(result, str):
                if result == node.name:
                    raise PassError(f"rule {rule_name} replaced %{node.name} by itself")
                del nodes[node.name]
                layout.pop(node.name, None)
                alias[node.name] = result
                break
            if not isinstance(result, NewNode):
                raise PassError(f"rule {rule_name} returned {type(result).__name__}, not a value name or NewNode")
            opdef = OPS[result.op]
            ty = opdef.infer([nodes[i].type for i in result.inputs], result.attrs)
            if ty != node.type:
                raise PassError(f"rule {rule_name} changed the type of %{node.name} from {node.type} to {ty}")
            node = Node(node.name, result.op, tuple(result.inputs), ty, dict(result.attrs), node.scope, node.loc,
                        node.backward)
    return _rebuild(graph, nodes, alias)


def simplify(graph: Graph) -> Graph:
    """Algebraic simplification with the rule table :data:`RULES` (then dead values are dropped)."""
    return dce(rewrite(graph, RULES))


# -- pass manager --------------------------------------------------------------------------------

PASSES: dict[str, Pass] = {"dce": dce, "cse": cse, "fold": fold, "simplify": simplify}
DEFAULT_PIPELINE: tuple[str, ...] = ("cse", "simplify", "fold", "dce")

OnPass = Callable[[str, Graph, Graph], None]


def verify_changed(before: Graph, after: Graph) -> None:
    """Verify ``after`` assuming ``before`` was valid: every rule of :func:`gptir.ir.verify` is checked
    for each node that is new or reads a node that is new (by object identity), plus order, outputs
    and params for the whole graph. Raises VerifyError like ``verify``, at the same node.

    A pass keeps most nodes as the very objects of ``before``, in the same order, so ``after`` is
    walked beside ``before``: a node that *is* the next node of ``before`` needs no lookup at all (at
    100,000 nodes every lookup in a table of all names is a cache miss). The nodes of ``before`` the
    walk steps over (removed, replaced or moved) are ``changed``; only the readers of those, and the
    nodes that are not ``before``'s next one, are checked in full (:func:`verify_changed_plain` is
    the same check with a set of every name, which a test compares it against).
    """
    old = before.nodes
    if after.nodes is old:  # the pass changed no node (dce with nothing to drop)
        verify_outputs(after)
        _verify_signature(before, after)
        return
    end = len(old)
    walk = iter(old.values())  # (an iterator, not a list: a list would be one more sweep over the nodes)
    nxt = next(walk, None)  # before's node at place p
    p = 0  # the walk's place in ``before``: its nodes before p are matched or changed
    changed: set[str] = set()  # names of before's nodes the walk stepped over (gone, replaced or moved)
    defined: set[str] = set()  # names defined so far by nodes of ``after`` that are not matched ones
    retyped: set[str] = set()  # values that are new or whose type differs from before
    position: dict[str, int] | None = None  # before's order, made on first need
    for node in after.nodes.values():
        if nxt is node:  # before's next node, unchanged
            nxt = next(walk, None)
            p += 1
        else:
            name = node.name
            prev = old.get(name)
            here = p  # the operands of a node at before's place ``here`` come before it there
            if prev is not None and name not in changed:  # before has it ahead: step over what lies between
                while nxt is not None and nxt.name != name:  # (name is ahead: nxt never runs out)
                    changed.add(nxt.name)
                    nxt = next(walk, None)
                    p += 1
                nxt = next(walk, None)
                here, p = p, p + 1
            if prev is not node or name in changed:  # new, replaced or moved: checked in full
                changed.add(name)
                for i in node.inputs:
                    if i in defined:
                        continue
                    if i not in changed:
                        if position is None:
                            position = dict(zip(old, range(end)))
                        if position.get(i, end) < here:
                            continue
                    _undefined(after, node, i)
                defined.add(name)
                if prev is None or prev.type != node.type:
                    retyped.add(name)
                verify_node(after, node, OPS)
                continue
        ins = node.inputs  # an unchanged node: only its operands that changed are looked at
        if changed and not changed.isdisjoint(ins):
            for i in ins:
                if i in changed and i not in defined:
                    _undefined(after, node, i)
        if retyped and not retyped.isdisjoint(ins):
            verify_node(after, node, OPS)
    verify_outputs(after)
    _verify_signature(before, after)


def _undefined(graph: Graph, node: Node, operand: str) -> None:
    """Raise the VerifyError for ``node`` reading ``operand`` before (or without) its definition."""
    if operand in graph.nodes:
        raise VerifyError("nodes are not in topological order (or a cycle)", node.name)
    raise VerifyError(f"%{node.name} uses %{operand}, which is never defined", node.name)


def verify_changed_plain(before: Graph, after: Graph) -> None:
    """:func:`verify_changed` with a set of every name defined so far (the plain form of the check)."""
    old = before.nodes
    retyped: set[str] = set()
    seen: set[str] = set()
    for node in after.nodes.values():
        if not seen.issuperset(node.inputs):
            for i in node.inputs:
                if i not in seen:
                    _undefined(after, node, i)
        seen.add(node.name)
        prev = old.get(node.name)
        if prev is node:
            if retyped.isdisjoint(node.inputs):
                continue
        elif prev is None or prev.type != node.type:
            retyped.add(node.name)
        verify_node(after, node, OPS)
    verify_outputs(after)
    _verify_signature(before, after)


def _verify_signature(before: Graph, after: Graph) -> None:
    """``after``'s param values name params, and it kept every input of ``before``."""
    for pname in after.params:
        pnode = after.nodes.get(pname)
        if pnode is None or pnode.op != "param":
            raise VerifyError(f"a value is given for %{pname}, which is not a param of the graph", pname)
    missing = [n.name for n in before.inputs if n.name not in after.nodes]
    if missing:
        raise VerifyError(f"input %{missing[0]} was removed (inputs and params are the signature)", missing[0])


@gc_paused
def run_pipeline(graph: Graph, names: Sequence[str], on_pass: OnPass | None = None, check: str = "full") -> Graph:
    """Run the named passes in order, verifying after each; ``on_pass(name, before, after)`` is called
    after every pass (for ``--print-after-all`` and dumps).

    ``check``: "full" runs :func:`gptir.ir.verify` on the input and after every pass; "changed"
    trusts the input (e.g. a graph just built by the tracer, which type-checks every node) and after
    each pass verifies only what the pass changed (:func:`verify_changed`: the same rules, much
    cheaper); "none" skips verification.
    """
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise PassError(f"unknown pass(es) {', '.join(unknown)} (passes: {', '.join(PASSES)})")
    if check not in ("full", "changed", "none"):
        raise ValueError(f"check must be full, changed or none, not {check!r}")
    if check == "full":
        try:
            verify(graph, OPS)
        except VerifyError as e:
            raise PassError(f"the input graph is invalid: {e}") from None
    for name in names:
        before = graph
        try:
            after = PASSES[name](before)
        except PassError:
            raise
        except GptirError as e:
            raise PassError(f"pass {name} failed: {e}") from None
        try:
            if check == "full":
                verify(after, OPS)
            elif check == "changed":
                verify_changed(before, after)
        except VerifyError as e:
            raise PassError(f"pass {name} produced invalid IR: {e}") from None
        if on_pass is not None:
            on_pass(name, before, after)
        graph = after
    return graph


def optimize(graph: Graph, on_pass: OnPass | None = None, check: str = "changed") -> Graph:
    """The default pipeline (cse, simplify, fold, dce), verified after each pass (see run_pipeline).

    cse runs first: the tracer makes one constant (and broadcast) per Python scalar it meets, so
    merging them first leaves a quarter fewer nodes for the other passes."""
    return run_pipeline(graph, DEFAULT_PIPELINE, on_pass, check)
