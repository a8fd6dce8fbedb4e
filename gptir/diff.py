"""A structure-aware diff of two IR graphs (``gptir diff``).

Nodes are matched by what they compute, not by their names or print order, so renumbering values,
re-printing a graph or reordering independent nodes gives no differences. Matching runs in stages:

1. **Interface.** Inputs and params pair by name; leftovers (renamed inputs) pair by how they are
   used (the downward classes of stage 3), then by (op, type) in graph order, so a graph whose every
   value was renamed and reordered still lines up. Outputs pair by name.
2. **Upward.** Every node gets a structural class, hash-consed from the inputs up:
   ``(op, attributes, type, classes of its inputs in order)``; constants are classed by value. Nodes of
   equal class pair up (ties: same name first, then graph order). Classes are interned exactly (no
   hash collisions), and two duplicates a CSE would merge have one class, so a CSE shows as removals
   only.
3. **Downward.** A change in the middle of a graph changes the class of everything above it, so
   the still-unmatched nodes get a second class from the outputs down: ``(op, attributes, type,
   (class of each user, operand position), output names)``, with matched users standing for their pair.
4. **Leftovers.** Unmatched nodes with equal name and op pair first (all of them, before any
   positional pairing: gptir names are stable, so a node a pass rewrote keeps its partner), then the
   rest by position under already paired users (and above paired inputs), then by equal name and
   compatible op or type, so an edited node is reported as *changed* rather than as removed + added.
   What is still left over is added or removed.
5. **Repair.** A pair whose operand lists are the same names gets those operands paired by name too,
   so a node is never reported changed with identical ``-`` and ``+`` lines: the difference is shown
   at the operand that really differs.

A pair is *changed* when its op, attributes, type, scope or backward flag differ, or when an operand
is a different value (neither the paired node nor a structurally equal one). Design decisions:
renaming alone is never a difference (renames are listed, not counted); ``scope`` and ``backward`` are
compared (a node that only moved scope is changed, ``what=("scope",)``); ``loc`` (the model file and
line) is ignored unless ``locs=True``, because editing a model file shifts every line number. A
constant whose value changed but whose type did not is a *value change*, like a param value.

Values (params in both graphs, constants) are compared bitwise when ``atol == 0`` (NaN equals NaN with
the same bits, -0.0 differs from 0.0), else elementwise with ``|a - b| <= atol`` (NaN equals NaN).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping

import numpy as np

from gptir.ir import INPUT_OPS, GptirError, Graph, Node, TensorType, attrs_key, toposort
from gptir.text import format_node

JSON_SCHEMA = "gptir-diff/1"


@dataclass(frozen=True)
class NodeChange:
    """A node present in both graphs (``a`` and ``b`` are its two versions) that differs in ``what``:
    a subset of op, attrs, type, inputs, scope, backward, loc (in that order)."""

    a: Node
    b: Node
    what: tuple[str, ...]


@dataclass(frozen=True)
class ValueChange:
    """A param or constant whose values differ: ``changed`` of ``size`` elements, the largest absolute
    difference, and that relative to the largest magnitude in ``a`` (inf when ``a`` is all zero)."""

    a: str
    b: str
    kind: str  # "param" or "const"
    type: TensorType
    size: int
    changed: int
    max_abs_delta: float
    rel_change: float


@dataclass(frozen=True)
class OutputChange:
    """An output present in both graphs that now names a different value."""

    name: str
    a: str
    b: str


@dataclass
class GraphDiff:
    """The result of :func:`diff_graphs`. Node lists are in graph order (``b``'s for added/changed)."""

    a: Graph
    b: Graph
    added: list[Node] = field(default_factory=list)
    removed: list[Node] = field(default_factory=list)
    changed: list[NodeChange] = field(default_factory=list)
    outputs_added: dict[str, str] = field(default_factory=dict)
    outputs_removed: dict[str, str] = field(default_factory=dict)
    outputs_changed: list[OutputChange] = field(default_factory=list)
    value_changes: list[ValueChange] = field(default_factory=list)
    pairs: dict[str, str] = field(default_factory=dict)  # a name -> b name, for every paired node
    renamed: list[tuple[str, str]] = field(default_factory=list)
    values_compared: bool = True
    values_missing: int = 0  # paired params not compared: one or both graphs carry no value for them

    @property
    def structural_changes(self) -> int:
        return (len(self.added) + len(self.removed) + len(self.changed) + len(self.outputs_added)
                + len(self.outputs_removed) + len(self.outputs_changed))

    @property
    def structurally_equal(self) -> bool:
        return self.structural_changes == 0

    @property
    def equal(self) -> bool:
        """No structural difference and no value difference (renames do not count)."""
        return self.structurally_equal and not self.value_changes

    @property
    def values_changed(self) -> int:
        """Changed elements over all tensors."""
        return sum(v.changed for v in self.value_changes)

    @property
    def max_abs_delta(self) -> float:
        return max((v.max_abs_delta for v in self.value_changes), default=0.0)


# -- matching -----------------------------------------------------------------------------------------


class _Interner:
    """Exact hash-consing: equal keys get equal small ints (no collisions, unlike raw hashes)."""

    def __init__(self) -> None:
        self.ids: dict[Hashable, int] = {}

    def __call__(self, key: Hashable) -> int:
        return self.ids.setdefault(key, len(self.ids))


def _node_key(node: Node, values: bool) -> tuple:
    """op, attributes and type; a constant's value only when values are compared."""
    if node.op == "const" and not values:
        return (node.op, node.type)
    return (node.op, attrs_key(node.attrs), node.type)


def _node_key_no_value(node: Node) -> tuple:
    if node.op == "const":
        return (node.op, node.type)
    return (node.op, attrs_key(node.attrs), node.type)


class _Matcher:
    def __init__(self, a: Graph, b: Graph, values: bool) -> None:
        self.a, self.b, self.values = a, b, values
        self.order_a = toposort(a.nodes.values())
        self.order_b = toposort(b.nodes.values())
        self.ab: dict[str, str] = {}
        self.ba: dict[str, str] = {}
        self.uses_a = _uses(self.order_a)
        self.uses_b = _uses(self.order_b)
        self.cls_a: dict[str, int] = {}
        self.cls_b: dict[str, int] = {}

    def pair(self, x: str, y: str) -> None:
        self.ab[x] = y
        self.ba[y] = x

    def run(self) -> None:
        self._interface()
        self._upward()
        self._downward()
        self._leftovers()
        self._repair()

    # stage 1
    def _interface(self) -> None:
        ins_a = [n for n in self.order_a if n.op in INPUT_OPS]
        ins_b = [n for n in self.order_b if n.op in INPUT_OPS]
        names_b = {n.name for n in ins_b}
        for n in ins_a:
            if n.name in names_b:
                self.pair(n.name, n.name)
        # renamed inputs: first by how they are used (downward classes), then by (op, type) in order
        if any(n.name not in self.ab for n in ins_a) and any(n.name not in self.ba for n in ins_b):
            dc_a, dc_b = self._down_classes()
            self._match_buckets({n.name: dc_a[n.name] for n in ins_a if n.name in dc_a},
                                {n.name: dc_b[n.name] for n in ins_b if n.name in dc_b})
        left_b: dict[tuple, deque[str]] = defaultdict(deque)
        for n in ins_b:
            if n.name not in self.ba:
                left_b[(n.op, n.type)].append(n.name)
        for n in ins_a:
            if n.name not in self.ab and left_b[(n.op, n.type)]:
                self.pair(n.name, left_b[(n.op, n.type)].popleft())

    # stage 2
    def _upward(self) -> None:
        intern = _Interner()
        for n in self.order_a:
            if n.op in INPUT_OPS:
                self.cls_a[n.name] = intern(("in", n.name) if n.name in self.ab else ("in-a", n.name))
            else:
                self.cls_a[n.name] = intern(_node_key(n, self.values) + (tuple(self.cls_a[i] for i in n.inputs),))
        for n in self.order_b:
            if n.op in INPUT_OPS:
                self.cls_b[n.name] = intern(("in", self.ba[n.name]) if n.name in self.ba else ("in-b", n.name))
            else:
                self.cls_b[n.name] = intern(_node_key(n, self.values) + (tuple(self.cls_b[i] for i in n.inputs),))
        self._match_buckets(self.cls_a, self.cls_b)

    def _match_buckets(self, key_a: Mapping[str, Hashable], key_b: Mapping[str, Hashable]) -> None:
        """Pair unmatched nodes with equal keys: same name first, then same scope, then in graph order."""
        bucket_b: dict[Hashable, list[str]] = defaultdict(list)
        for n in self.order_b:
            if n.name in key_b and n.name not in self.ba:
                bucket_b[key_b[n.name]].append(n.name)
        bucket_a: dict[Hashable, list[str]] = defaultdict(list)
        for n in self.order_a:
            if n.name in key_a and n.name not in self.ab and key_a[n.name] in bucket_b:
                bucket_a[key_a[n.name]].append(n.name)
        # same names first, in every bucket, before any pairing by scope or order
        for k, names_a in bucket_a.items():
            set_b = set(bucket_b[k])
            for x in names_a:
                if x in set_b and x not in self.ba:
                    self.pair(x, x)
        for k, names_a in bucket_a.items():
            names_b = bucket_b[k]
            rest_a = [x for x in names_a if x not in self.ab]
            # then duplicates that agree on scope and backward flag, then whatever is left, in order
            meta_b: dict[tuple, deque[str]] = defaultdict(deque)
            for y in names_b:
                if y not in self.ba:
                    nb = self.b.nodes[y]
                    meta_b[(nb.scope, nb.backward)].append(y)
            rest2_a = []
            for x in rest_a:
                na = self.a.nodes[x]
                q = meta_b.get((na.scope, na.backward))
                if q:
                    self.pair(x, q.popleft())
                else:
                    rest2_a.append(x)
            rest_b = [y for y in names_b if y not in self.ba]
            for x, y in zip(rest2_a, rest_b):
                self.pair(x, y)

    # stage 3
    def _down_classes(self) -> tuple[dict[str, int], dict[str, int]]:
        """Classes of the unmatched nodes from the outputs down; a paired user stands for its pair."""
        intern = _Interner()

        def classes(order: list[Node], uses: Mapping[str, list[tuple[str, int]]], matched: Mapping[str, str],
                    outs: Mapping[str, tuple[str, ...]], side: str) -> dict[str, int]:
            dc: dict[str, int] = {}
            for n in reversed(order):
                if n.name in matched:
                    dc[n.name] = intern(("pair", n.name if side == "a" else matched[n.name]))
                    continue
                users = tuple(sorted((dc[u], pos) for u, pos in uses.get(n.name, ())))
                dc[n.name] = intern(_node_key_no_value(n) + (users, outs.get(n.name, ())))
            return {k: v for k, v in dc.items() if k not in matched}

        return (classes(self.order_a, self.uses_a, self.ab, _outputs_by_value(self.a), "a"),
                classes(self.order_b, self.uses_b, self.ba, _outputs_by_value(self.b), "b"))

    def _downward(self) -> None:
        self._match_buckets(*self._down_classes())

    # stage 4
    def _compatible(self, x: str, y: str) -> bool:
        if x in self.ab or y in self.ba:
            return False
        na, nb = self.a.nodes[x], self.b.nodes[y]
        return na.op == nb.op or na.type == nb.type

    def _leftovers(self) -> None:
        work: deque[tuple[str, str]] = deque()
        # same name and same op first, for every leftover at once: gptir names are stable, and pairing by
        # position first can take a node whose namesake is still waiting (after a pass fuses two transposes,
        # the survivor keeps its name; a user-side walk would pair it with the removed one instead)
        for n in self.order_a:
            if n.name in self.b.nodes and n.name not in self.ab and n.name not in self.ba \
                    and self.b.nodes[n.name].op == n.op:
                self.pair(n.name, n.name)
        for out in self.a.outputs.keys() & self.b.outputs.keys():
            x, y = self.a.outputs[out], self.b.outputs[out]
            if self._compatible(x, y):
                self.pair(x, y)
        work.extend(self.ab.items())
        while True:
            while work:
                x, y = work.popleft()
                na, nb = self.a.nodes[x], self.b.nodes[y]
                for xi, yi in zip(na.inputs, nb.inputs):  # down: operands at the same position
                    if self._compatible(xi, yi):
                        self.pair(xi, yi)
                        work.append((xi, yi))
                users_b: dict[tuple, deque[str]] = defaultdict(deque)  # up: users reading at one position
                for u, pos in self.uses_b.get(y, ()):
                    if u not in self.ba:
                        users_b[(self.b.nodes[u].op, pos)].append(u)
                for u, pos in self.uses_a.get(x, ()):
                    cands = users_b.get((self.a.nodes[u].op, pos))
                    while cands and u not in self.ab:
                        v = cands.popleft()
                        if self._compatible(u, v):
                            self.pair(u, v)
                            work.append((u, v))
            # by name (with the same op or type): gptir names are stable, so this pairs a node that was
            # edited where no paired neighbour points at it (a dead node, or an edit that changed types)
            for n in self.order_a:
                if n.name in self.b.nodes and self._compatible(n.name, n.name):
                    self.pair(n.name, n.name)
                    work.append((n.name, n.name))
            if not work:
                return


    # stage 5
    def _repair(self) -> None:
        """Make a pair whose operands are the same names also pair those operands by name.

        Otherwise such a pair would be reported as changed ``inputs`` with two identical printed lines:
        its operand ``%t`` in ``a`` went to some other node of ``b`` (or to none) while ``b``'s ``%t``
        took another partner. Re-pairing ``%t`` with ``%t`` moves the difference to where it is (``%t``
        itself) and lets the two displaced partners pair up when they are alike. Every step adds a
        same-name pair that is never undone, so this ends.
        """
        again = True
        while again:
            again = False
            for y, x in list(self.ba.items()):
                if self.ba.get(y) != x:
                    continue  # re-paired during this sweep
                na, nb = self.a.nodes[x], self.b.nodes[y]
                if na.inputs != nb.inputs:
                    continue
                for i in dict.fromkeys(na.inputs):
                    if self.ab.get(i) == i or self.cls_a[i] == self.cls_b[i]:
                        continue
                    old_b, old_a = self.ab.pop(i, None), self.ba.pop(i, None)
                    if old_b is not None:
                        del self.ba[old_b]
                    if old_a is not None:
                        del self.ab[old_a]
                    self.pair(i, i)
                    if old_a is not None and old_b is not None and self._compatible(old_a, old_b):
                        self.pair(old_a, old_b)
                    again = True


def _uses(order: Iterable[Node]) -> dict[str, list[tuple[str, int]]]:
    uses: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for n in order:
        for pos, i in enumerate(n.inputs):
            uses[i].append((n.name, pos))
    return uses


def _outputs_by_value(g: Graph) -> dict[str, tuple[str, ...]]:
    by: dict[str, list[str]] = defaultdict(list)
    for out, v in g.outputs.items():
        by[v].append(out)
    return {v: tuple(sorted(o)) for v, o in by.items()}


# -- values -------------------------------------------------------------------------------------------


def compare_values(x: np.ndarray, y: np.ndarray, atol: float = 0.0) -> tuple[int, float, float]:
    """(changed elements, max |Δ|, max |Δ| / max |x|) of two arrays of one shape and dtype.

    ``atol == 0`` compares bits (NaN == NaN, -0.0 != 0.0); otherwise ``|x - y| <= atol`` or both NaN
    counts as equal. A difference involving NaN or infinity counts as an infinite Δ.
    """
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    if x.dtype == np.float64 and atol == 0:
        changed = x.view(np.int64) != y.view(np.int64)
    elif x.dtype == np.float64:
        with np.errstate(invalid="ignore", over="ignore"):
            close = (np.abs(x - y) <= atol) | (x == y) | (np.isnan(x) & np.isnan(y))
        changed = ~close
    else:
        changed = x != y
    n = int(np.count_nonzero(changed))
    if n == 0:
        return 0, 0.0, 0.0
    xf, yf = x.astype(np.float64)[changed], y.astype(np.float64)[changed]
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(xf - yf)
    delta = np.where(np.isnan(delta), np.inf, delta)
    max_delta = float(delta.max())
    xa = np.abs(x.astype(np.float64))
    finite = xa[np.isfinite(xa)]
    scale = float(finite.max()) if finite.size else 0.0
    rel = max_delta / scale if scale > 0 else (math.inf if max_delta > 0 else 0.0)
    return n, max_delta, rel


# -- the diff -------------------------------------------------------------------------------------------


def diff_graphs(a: Graph, b: Graph, *, values: bool = True, atol: float = 0.0, locs: bool = False) -> GraphDiff:
    """Compare ``a`` (old) with ``b`` (new); see the module docstring for how nodes are matched.

    ``values``: compare param values (when both graphs carry them) and constant values. ``atol``:
    tolerance for a value to count as unchanged (0 = bit-exact). ``locs``: also report nodes whose
    only difference is the model location.
    """
    if not (atol >= 0 and math.isfinite(atol)):
        raise GptirError(f"atol must be a finite number >= 0, got {atol}")
    m = _Matcher(a, b, values)
    m.run()
    d = GraphDiff(a, b, values_compared=values, pairs=dict(m.ab))
    d.removed = [n for n in m.order_a if n.name not in m.ab]
    d.added = [n for n in m.order_b if n.name not in m.ba]
    d.renamed = [(x, y) for x, y in m.ab.items() if x != y]

    def same_value(x: str, y: str) -> bool:
        return m.ab.get(x) == y or m.cls_a[x] == m.cls_b[y]

    for nb in m.order_b:
        x = m.ba.get(nb.name)
        if x is None:
            continue
        na = a.nodes[x]
        what = []
        if na.op != nb.op:
            what.append("op")
        if na.op == nb.op == "const":
            pass  # a constant's value is a value change (below), its type a type change
        elif attrs_key(na.attrs) != attrs_key(nb.attrs):
            what.append("attrs")
        if na.type != nb.type:
            what.append("type")
        if len(na.inputs) != len(nb.inputs) or not all(same_value(i, j) for i, j in zip(na.inputs, nb.inputs)):
            what.append("inputs")
        if na.scope != nb.scope:
            what.append("scope")
        if na.backward != nb.backward:
            what.append("backward")
        if locs and na.loc != nb.loc:
            what.append("loc")
        if what:
            d.changed.append(NodeChange(na, nb, tuple(what)))
        if values and na.type == nb.type:
            _value_change(d, na, nb, atol)

    for out, x in a.outputs.items():
        if out not in b.outputs:
            d.outputs_removed[out] = x
        elif not (x in a.nodes and b.outputs[out] in b.nodes and same_value(x, b.outputs[out])):
            d.outputs_changed.append(OutputChange(out, x, b.outputs[out]))
    d.outputs_added = {out: y for out, y in b.outputs.items() if out not in a.outputs}
    return d


def _value_change(d: GraphDiff, na: Node, nb: Node, atol: float) -> None:
    if na.op == nb.op == "const":
        x, y, kind = na.attrs.get("value"), nb.attrs.get("value"), "const"
    elif na.op == nb.op == "param":
        x, y, kind = d.a.params.get(na.name), d.b.params.get(nb.name), "param"
    else:
        return
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray) or x.shape != y.shape or x.dtype != y.dtype:
        d.values_missing += kind == "param"
        return
    n, delta, rel = compare_values(x, y, atol)
    if n:
        d.value_changes.append(ValueChange(na.name, nb.name, kind, nb.type, int(x.size), n, delta, rel))


# -- output -------------------------------------------------------------------------------------------

_COLORS = {"-": "\x1b[31m", "+": "\x1b[32m", "~": "\x1b[33m", "@": "\x1b[36m", "h": "\x1b[1m", " ": ""}
_RESET = "\x1b[0m"


def _fmt_num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else ("inf" if x > 0 else "nan")


def describe_value_change(v: ValueChange) -> str:
    name = f"%{v.a}" if v.a == v.b else f"%{v.a} -> %{v.b}"
    return (f"{v.kind} {name} : {v.type}  {v.changed}/{v.size} changed, max|Δ| {_fmt_num(v.max_abs_delta)},"
            f" rel {_fmt_num(v.rel_change)}")


def format_unified(d: GraphDiff, color: bool = False, labels: tuple[str, str] = ("a", "b"), context: int = 2) -> str:
    """A unified-diff-like text: ``@@ scope @@`` groups of ``-``/``+`` IR lines with the matched
    neighbours (up to ``context`` operands and users, unprefixed) around them, then outputs and values.
    Empty when the graphs are equal."""
    if d.equal:
        return ""
    lines: list[str] = []

    def emit(kind: str, text: str) -> None:
        line = text if kind in "@h" else f"{kind} {text}"
        lines.append(f"{_COLORS[kind]}{line}{_RESET}" if color and _COLORS[kind] else line)

    emit("h", f"--- {labels[0]}\tgraph {d.a.name}, {len(d.a)} nodes")
    emit("h", f"+++ {labels[1]}\tgraph {d.b.name}, {len(d.b)} nodes")

    idx_b = {name: i for i, name in enumerate(d.b.nodes)}
    ba = {y: x for x, y in d.pairs.items()}
    changed_b = {c.b.name for c in d.changed}
    # entries sorted by position in b; a removed node goes after the b partner of its nearest paired predecessor
    entries: list[tuple[tuple[int, int, int], str, Any]] = []
    last_b = -1
    removed = {n.name for n in d.removed}
    for i, n in enumerate(d.a.nodes.values()):
        if n.name in d.pairs:
            last_b = idx_b.get(d.pairs[n.name], last_b)
        elif n.name in removed:
            entries.append(((last_b, 1, i), n.scope, ("-", n)))
    for n in d.added:
        entries.append(((idx_b[n.name], 0, 0), n.scope, ("+", n)))
    for c in d.changed:
        entries.append(((idx_b[c.b.name], 0, 0), c.b.scope, ("~", c)))
    entries.sort(key=lambda e: e[0])
    groups: dict[str, list[Any]] = {}
    for _, sc, item in entries:
        groups.setdefault(sc, []).append(item)

    def to_b(name: str, side: str) -> str | None:
        """The unchanged node of b that ``name`` (of side a or b) is paired with, if any."""
        y = d.pairs.get(name) if side == "a" else (name if name in ba else None)
        return y if y is not None and y not in changed_b and y in d.b.nodes else None

    def context_b(node: Node, side: str) -> tuple[list[str], list[str]]:
        """Paired, unchanged operands and users of ``node``, as names in b."""
        ins = [y for y in dict.fromkeys(to_b(i, side) for i in node.inputs) if y is not None]
        users = [y for y in dict.fromkeys(to_b(u, side) for u in users_of[side].get(node.name, ())) if y is not None]
        return ins[:context], users[:context]

    users_of = {"a": _users_once(d.a), "b": _users_once(d.b)}
    for sc, items in groups.items():
        emit("@", f"@@ {sc or '(top level)'} @@")
        shown: set[str] = set()
        for kind, item in items:
            node, side = (item, "a") if kind == "-" else ((item, "b") if kind == "+" else (item.b, "b"))
            before, after = context_b(node, side) if context > 0 else ([], [])
            for near in before:
                if near not in shown:
                    shown.add(near)
                    emit(" ", format_node(d.b.nodes[near]))
            if kind == "~":
                emit("-", format_node(item.a) + f"    # {', '.join(item.what)}")
                emit("+", format_node(item.b))
                shown.add(item.b.name)
            else:
                emit(kind, format_node(item))
                if kind == "+":
                    shown.add(item.name)
            for near in after:
                if near not in shown:
                    shown.add(near)
                    emit(" ", format_node(d.b.nodes[near]))
    if d.outputs_added or d.outputs_removed or d.outputs_changed:
        emit("@", "@@ outputs @@")
        for out, x in d.outputs_removed.items():
            emit("-", f"output {out} = %{x}")
        for oc in d.outputs_changed:
            emit("-", f"output {oc.name} = %{oc.a}")
            emit("+", f"output {oc.name} = %{oc.b}")
        for out, y in d.outputs_added.items():
            emit("+", f"output {out} = %{y}")
    if d.value_changes:
        emit("@", "@@ values @@")
        for v in d.value_changes:
            emit("~", describe_value_change(v))
    return "\n".join(lines) + "\n"


def _users_once(g: Graph) -> dict[str, list[str]]:
    users: dict[str, list[str]] = defaultdict(list)
    for n in g.nodes.values():
        for i in dict.fromkeys(n.inputs):
            users[i].append(n.name)
    return users


def _counts(d: GraphDiff, key: Any) -> dict[str, list[int]]:
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for n in d.removed:
        table[key(n)][0] += 1
    for n in d.added:
        table[key(n)][1] += 1
    for c in d.changed:
        table[key(c.b)][2] += 1
    return dict(table)


def summary(d: GraphDiff) -> dict[str, Any]:
    """Counts, as in ``--stat`` and the ``summary`` of the JSON form."""
    return {
        "added": len(d.added), "removed": len(d.removed), "changed": len(d.changed), "renamed": len(d.renamed),
        "outputs_added": len(d.outputs_added), "outputs_removed": len(d.outputs_removed),
        "outputs_changed": len(d.outputs_changed),
        "tensors_changed": len(d.value_changes), "values_changed": d.values_changed,
        "max_abs_delta": d.max_abs_delta, "params_not_compared": d.values_missing,
    }


def format_stat(d: GraphDiff) -> str:
    """A summary: totals, then removed/added/changed counts per op and per scope."""
    s = summary(d)
    lines = [
        f"{s['removed']} removed, {s['added']} added, {s['changed']} changed nodes"
        f" ({s['renamed']} renamed, not a difference);"
        f" outputs: {s['outputs_removed']} removed, {s['outputs_added']} added, {s['outputs_changed']} changed",
    ]
    if d.values_compared:
        missing = (f" ({d.values_missing} params not compared: no value in one or both graphs)"
                   if d.values_missing else "")
        lines.append(f"values: {s['tensors_changed']} tensors, {s['values_changed']} elements changed,"
                     f" max|Δ| {_fmt_num(s['max_abs_delta'])}{missing}")
    for title, key in (("op", lambda n: n.op), ("scope", lambda n: n.scope or "(top level)")):
        table = _counts(d, key)
        if not table:
            continue
        width = max(len(title), *(len(k) for k in table))
        lines.append(f"{title:<{width}}  {'-':>6} {'+':>6} {'~':>6}")
        for k in sorted(table):
            r, a_, c = table[k]
            lines.append(f"{k:<{width}}  {r:>6} {a_:>6} {c:>6}")
    return "\n".join(lines) + "\n"


def _num(x: float) -> Any:
    """JSON has no inf/nan: those become the strings "inf", "-inf", "nan"."""
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def _node_json(n: Node) -> dict[str, Any]:
    return {"name": n.name, "op": n.op, "type": str(n.type), "scope": n.scope, "backward": n.backward,
            "line": format_node(n)}


def to_json_obj(d: GraphDiff, labels: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    """The JSON form (schema ``gptir-diff/1``; see :data:`JSON_SCHEMA_DOC`)."""
    return {
        "schema": JSON_SCHEMA,
        "a": {"file": labels[0], "graph": d.a.name, "nodes": len(d.a)},
        "b": {"file": labels[1], "graph": d.b.name, "nodes": len(d.b)},
        "equal": d.equal,
        "structurally_equal": d.structurally_equal,
        "summary": {k: _num(v) if isinstance(v, float) else v for k, v in summary(d).items()},
        "added": [_node_json(n) for n in d.added],
        "removed": [_node_json(n) for n in d.removed],
        "changed": [{"what": list(c.what), "a": _node_json(c.a), "b": _node_json(c.b)} for c in d.changed],
        "renamed": [{"a": x, "b": y} for x, y in d.renamed],
        "outputs": {
            "added": dict(d.outputs_added), "removed": dict(d.outputs_removed),
            "changed": [{"name": o.name, "a": o.a, "b": o.b} for o in d.outputs_changed],
        },
        "values_compared": d.values_compared,
        "values": [
            {"a": v.a, "b": v.b, "kind": v.kind, "type": str(v.type), "size": v.size, "changed": v.changed,
             "max_abs_delta": _num(v.max_abs_delta), "rel_change": _num(v.rel_change)}
            for v in d.value_changes
        ],
    }


def to_json(d: GraphDiff, labels: tuple[str, str] = ("a", "b")) -> str:
    return json.dumps(to_json_obj(d, labels), indent=2, ensure_ascii=False) + "\n"


JSON_SCHEMA_DOC = """\
gptir-diff/1 (one object; `gptir diff DIR --format json` gives {"schema": "gptir-diff-history/1",
"pairs": [{"a": file, "b": file, "pass": str|null, "equal": bool, "summary": {...}}, ...]}):
  schema              "gptir-diff/1"
  a, b                {"file": str, "graph": graph name, "nodes": int}
  equal               bool: no structural and no value difference (renames never count)
  structurally_equal  bool
  summary             {added, removed, changed, renamed, outputs_added, outputs_removed, outputs_changed,
                       tensors_changed, values_changed (elements), max_abs_delta,
                       params_not_compared (paired params without a value in one or both graphs)}
  added, removed      [{"name", "op", "type", "scope", "backward", "line" (printed IR)}]
  changed             [{"what": [op|attrs|type|inputs|scope|backward|loc], "a": node, "b": node}]
  renamed             [{"a": name in a, "b": name in b}]
  outputs             {"added": {output: value}, "removed": {output: value},
                       "changed": [{"name", "a": value in a, "b": value in b}]}
  values_compared     bool
  values              [{"a", "b", "kind": "param"|"const", "type", "size", "changed",
                        "max_abs_delta", "rel_change"}]
Non-finite numbers are the strings "inf", "-inf", "nan".
"""


# -- history ------------------------------------------------------------------------------------------


def pass_label(filename: str) -> str | None:
    """``01-cse.ir`` -> ``cse`` (the pass a ``gptir opt --dump-dir`` file comes from); else None."""
    stem = filename.rsplit("/", 1)[-1]
    stem = stem[:-3] if stem.endswith(".ir") else stem
    head, sep, rest = stem.partition("-")
    return rest if sep and head.isdigit() and rest else None


def history_line(d: GraphDiff, name_a: str, name_b: str) -> str:
    """One compact line for a consecutive pair of dumps, e.g.
    ``00-input.ir -> 01-cse.ir: -12 nodes (cse)`` or
    ``step-0000.ir -> step-0010.ir: 0 structural, 4192 values changed, max|Δ| 0.0123``."""
    parts: list[str] = []
    counts = [f"-{len(d.removed)}" if d.removed else "", f"+{len(d.added)}" if d.added else "",
              f"~{len(d.changed)}" if d.changed else ""]
    counts = [c for c in counts if c]
    if counts:
        parts.append(" ".join(counts) + " nodes")
    outs = len(d.outputs_added) + len(d.outputs_removed) + len(d.outputs_changed)
    if outs:
        parts.append(f"{outs} outputs changed")
    if d.value_changes:
        if not parts:
            parts.append("0 structural")
        parts.append(f"{d.values_changed} values changed, max|Δ| {_fmt_num(d.max_abs_delta)}")
    text = ", ".join(parts) if parts else "no differences"
    label = pass_label(name_b)
    return f"{name_a} -> {name_b}: {text}" + (f" ({label})" if label else "")
