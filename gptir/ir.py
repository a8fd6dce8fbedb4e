"""The IR: types, nodes, graphs and the verifier.

A graph is a set of typed values in SSA form. Every value is a :class:`Node`; graph inputs are nodes
whose op is ``input`` (data) or ``param`` (trainable parameters), constants are ``const`` nodes.
Node names are stable strings derived from scopes (``layer0.attn.q``), never from a global counter,
so re-tracing a model or running a pass keeps the names, which is what makes diffs readable.

This module knows nothing about individual ops: the verifier asks the op table (passed in by the
caller, normally :data:`gptir.ops.OPS`) for arity, attributes and type rules.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol

import numpy as np

from gptir.gcpause import gc_paused

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx


class GptirError(Exception):
    """Base of every error caused by user input (bad IR, bad shapes, bad files).

    The CLI prints these as one line and exits 1; anything else is a bug in gptir.
    """


MAX_WORD = 120  # a name, path or value in an error message is cut to about this many characters
_LONG_WORD = re.compile(r"\S{%d,}" % (MAX_WORD + 1))


def short(text: str, limit: int = MAX_WORD) -> str:
    """``text`` cut to ``limit`` characters with ``...`` (a 1 MB value name is not echoed whole)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def short_words(message: str) -> str:
    """``message`` with every word longer than :data:`MAX_WORD` characters shortened: every error
    gptir prints goes through this, so no message grows with a hostile name or value."""
    return _LONG_WORD.sub(lambda m: short(m.group(0)), message)


class VerifyError(GptirError):
    """A graph breaks an IR rule. ``node`` names the offending value when there is one."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.reason = message


class ShapeError(GptirError):
    """A type or shape rule failed while building a node."""


DTYPES: tuple[str, ...] = ("f64", "f32", "i64", "bool")
FLOATS: tuple[str, ...] = ("f64", "f32")  # the floating-point dtypes (f64 is the default everywhere)
NUMPY_DTYPES: dict[str, np.dtype] = {
    "f64": np.dtype(np.float64),
    "f32": np.dtype(np.float32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*\Z")


def is_identifier(name: str) -> bool:
    """Value and scope names: dotted identifiers (``layer0.attn.q.1``)."""
    return bool(_IDENT.match(name))


@dataclass(frozen=True, slots=True)
class TensorType:
    """A dtype and a static shape; rank 0 is a scalar."""

    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r} (expected one of {', '.join(DTYPES)})")
        for d in self.shape:  # (a loop, not any(genexpr): every node of every pass makes types)
            if not isinstance(d, int) or d < 0:
                raise ShapeError(f"bad shape {self.shape!r}: dimensions are non-negative integers")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.dtype]

    def with_shape(self, shape: Iterable[int]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"

    @staticmethod
    def parse(text: str) -> "TensorType":
        """Parse ``f64[3,4]`` (used by the CLI's ``--arg``); the IR parser has its own grammar."""
        m = re.fullmatch(r"\s*(f64|f32|i64|bool)\s*\[\s*([0-9,\s]*)\]\s*", text)
        if not m:
            raise ShapeError(f"bad type {text!r}: expected e.g. f64[3,4] or i64[] (dtypes: {', '.join(DTYPES)})")
        dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
        return TensorType(m.group(1), tuple(int(d) for d in dims))

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        for name, dt in NUMPY_DTYPES.items():
            if array.dtype == dt:
                return TensorType(name, tuple(int(d) for d in array.shape))
        raise ShapeError(f"unsupported array dtype {array.dtype} (gptir has {', '.join(DTYPES)})")


def scalar(dtype: str = "f64") -> TensorType:
    return TensorType(dtype, ())


def attrs_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Attribute equality that compares arrays bit for bit (so nan == nan and -0.0 != 0.0)."""
    if a.keys() != b.keys():
        return False
    return all(_attr_key(a[k]) == _attr_key(b[k]) for k in a)


def _attr_key(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, float):
        return ("float", np.float64(v).tobytes())
    return (type(v).__name__, v)


def attrs_key(attrs: Mapping[str, Any]) -> tuple:
    """A hashable, bit-exact key of an attribute mapping (for CSE and structural hashing)."""
    return tuple((k, _attr_key(attrs[k])) for k in sorted(attrs))


@dataclass(frozen=True, eq=False, slots=True)
class Node:
    """One SSA value: ``name = op[attrs](inputs) : type``, plus where it came from.

    ``scope`` is the scope path that was active when the node was made, ``loc`` the ``file:line`` of
    the model code that made it, ``backward`` marks nodes added by the autodiff pass.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    type: TensorType
    attrs: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""
    loc: str = ""
    backward: bool = False

    def same_as(self, other: "Node") -> bool:
        """Structural identity, bit-exact on attribute values."""
        return (
            self.name == other.name
            and self.op == other.op
            and self.inputs == other.inputs
            and self.type == other.type
            and attrs_equal(self.attrs, other.attrs)
            and self.scope == other.scope
            and self.loc == other.loc
            and self.backward == other.backward
        )

    def replace(self, **changes: Any) -> "Node":
        return replace(self, **changes)


INPUT_OPS = ("input", "param")


@dataclass(eq=False)
class Graph:
    """Nodes in a deterministic topological order, named outputs, and optional parameter values.

    ``params`` holds values for ``param`` nodes (it may be partial: values can also come from a
    sidecar ``.npz`` named by ``params_file`` or be supplied when the graph is run).
    """

    name: str
    nodes: dict[str, Node]
    outputs: dict[str, str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    params_file: str | None = None

    # -- views ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def inputs(self) -> list[Node]:
        """Data inputs and parameters, in graph order."""
        return [n for n in self.nodes.values() if n.op in INPUT_OPS]

    @property
    def data_inputs(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.op == "input"]

    @property
    def param_inputs(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.op == "param"]

    def users(self) -> dict[str, list[str]]:
        """For every value, the names of the nodes that read it (in graph order, with repeats)."""
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for i in node.inputs:
                users.setdefault(i, []).append(node.name)
        return users

    def same_as(self, other: "Graph") -> bool:
        """Structural identity: same nodes in the same order, same outputs, bit-identical values."""
        if self.name != other.name or list(self.nodes) != list(other.nodes):
            return False
        if list(self.outputs.items()) != list(other.outputs.items()):
            return False
        if self.params_file != other.params_file or self.params.keys() != other.params.keys():
            return False
        if not attrs_equal(self.params, other.params):
            return False
        return all(a.same_as(b) for a, b in zip(self.nodes.values(), other.nodes.values()))

    def replace(self, **changes: Any) -> "Graph":
        return replace(self, **changes)

    # -- pictures (Jupyter calls these) ---------------------------------------------------------------
    # The drawing code sits layers above the IR (gptir.viewer: layout, diff, text); it is imported when
    # a notebook asks for the picture, never when this module loads, so ir stays the bottom layer.
    def _repr_svg_(self) -> str:
        """The graph as an SVG picture (every node shown), for Jupyter."""
        from gptir.viewer import to_svg

        return to_svg(self)

    def _repr_html_(self) -> str:
        """The SVG in a scrolling box, so a big graph does not flood a notebook."""
        return '<div style="max-height:640px;overflow:auto">' + self._repr_svg_() + "</div>"

    def to_networkx(self) -> "nx.DiGraph":
        """A ``networkx.DiGraph``: one node per value (carrying op, type, attrs, scope, loc), one edge per use.

        An edge carries ``index`` (the operand position); a value read twice by one node keeps its
        first position in the edge and all positions in ``indices``.
        """
        import networkx as nx

        g = nx.DiGraph(name=self.name, outputs=dict(self.outputs))
        for n in self.nodes.values():
            g.add_node(
                n.name, op=n.op, type=str(n.type), dtype=n.type.dtype, shape=n.type.shape,
                attrs=dict(n.attrs), scope=n.scope, loc=n.loc, backward=n.backward,
            )
        for n in self.nodes.values():
            for pos, i in enumerate(n.inputs):
                if g.has_edge(i, n.name):
                    g.edges[i, n.name]["indices"].append(pos)
                else:
                    g.add_edge(i, n.name, index=pos, indices=[pos])
        return g


def in_topological_order(nodes: Iterable[Node]) -> bool:
    """Whether every node's operands come before it and no name repeats: then :func:`toposort` gives
    the nodes back unchanged (Kahn's algorithm taking the earliest ready node takes them in order),
    which one linear scan checks without the heap and the user lists."""
    seen: set[str] = set()
    add, known = seen.add, seen.issuperset
    for n in nodes:
        if n.name in seen or not known(n.inputs):
            return False
        add(n.name)
    return True


def toposort(nodes: Iterable[Node]) -> list[Node]:
    """Deterministic topological order: Kahn's algorithm that always takes the earliest ready node.

    This is networkx's ``lexicographical_topological_sort`` keyed by position, so a list that is
    already topologically ordered comes back unchanged. Raises VerifyError naming a cycle or an
    undefined value.
    """
    nodes = list(nodes)
    if in_topological_order(nodes):  # the usual case (builders append, passes keep the order)
        return nodes
    index = {n.name: i for i, n in enumerate(nodes)}
    if len(index) != len(nodes):
        seen: set[str] = set()
        for n in nodes:
            if n.name in seen:
                raise VerifyError(f"duplicate definition of %{n.name}", n.name)
            seen.add(n.name)
    pending = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for src in set(n.inputs):
            j = index.get(src)
            if j is None:
                raise VerifyError(f"%{n.name} uses %{src}, which is never defined", n.name)
            pending[i] += 1
            users[j].append(i)
    ready = [i for i, p in enumerate(pending) if p == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = {nodes[i].name for i, p in enumerate(pending) if p > 0}
        cycle = _find_cycle(nodes, stuck)
        raise VerifyError("cycle: " + " -> ".join(f"%{c}" for c in cycle), cycle[0])
    return order


def _find_cycle(nodes: list[Node], stuck: set[str]) -> list[str]:
    by_name = {n.name: n for n in nodes}
    start = min(stuck, key=[n.name for n in nodes].index)
    path: list[str] = []
    seen: dict[str, int] = {}
    cur = start
    while cur not in seen:
        seen[cur] = len(path)
        path.append(cur)
        cur = next(i for i in by_name[cur].inputs if i in stuck)
    cyc = path[seen[cur]:]
    cyc.reverse()  # print in data-flow order: a -> b means b uses a
    return cyc + [cyc[0]]


@gc_paused
def verify(graph: Graph, ops: Mapping[str, Any]) -> None:
    """Check every IR rule; raise VerifyError naming the node and the reason.

    Rules: names are identifiers and unique, every use is defined, the graph is acyclic and stored in
    topological order, each op exists with the right arity and attributes, each declared type is the
    one the op's type rule gives, outputs name defined values, parameter values fit their params.
    """
    order = toposort(graph.nodes.values())
    if [n.name for n in order] != list(graph.nodes):
        raise VerifyError("nodes are not in topological order (build graphs with make_graph)")
    for node in graph.nodes.values():
        verify_node(graph, node, ops)
    verify_outputs(graph)
    for pname, arr in graph.params.items():
        pnode = graph.nodes.get(pname)
        if pnode is None or pnode.op != "param":
            raise VerifyError(f"a value is given for %{pname}, which is not a param of the graph", pname)
        check_value(pnode, arr)


def verify_node(graph: Graph, node: Node, ops: Mapping[str, Any]) -> None:
    """One node's rules: its name, its op, arity, attributes and declared type (raises VerifyError)."""
    if not is_identifier(node.name):
        raise VerifyError(f"bad value name %{node.name}", node.name)
    opdef = ops.get(node.op)
    if opdef is None:
        raise VerifyError(f"%{node.name}: unknown op '{node.op}'", node.name)
    try:
        check_node(opdef, node, [graph.nodes[i].type for i in node.inputs])
    except ShapeError as e:
        raise VerifyError(f"%{node.name} = {node.op}: {e}", node.name) from None


def verify_outputs(graph: Graph) -> None:
    """The graph has outputs, each a valid name referring to a defined value (raises VerifyError)."""
    if not graph.outputs:
        raise VerifyError("the graph has no outputs")
    for out, value in graph.outputs.items():
        if not is_identifier(out):
            raise VerifyError(f"bad output name {out!r}")
        if value not in graph.nodes:
            raise VerifyError(f"output {out} refers to %{value}, which is never defined")


def check_signature(opdef: Any, n_inputs: int, attrs: Mapping[str, Any]) -> None:
    """Arity and attributes of a use of ``opdef`` (raises ShapeError)."""
    if opdef.arity is not None and n_inputs != opdef.arity:
        raise ShapeError(f"expects {opdef.arity} operand(s), got {n_inputs}")
    if opdef.arity is None and not n_inputs:
        raise ShapeError("expects at least one operand")
    declared = opdef.attrs
    if attrs.keys() != declared.keys():  # (the usual case, every attribute given, skips the lists)
        optional = getattr(opdef, "optional", ())
        missing = [a for a in declared if a not in attrs and a not in optional]
        extra = [a for a in attrs if a not in declared]
        if missing:
            raise ShapeError(f"missing attribute(s) {', '.join(missing)}")
        if extra:
            raise ShapeError(f"unknown attribute(s) {', '.join(extra)} (it takes: {', '.join(declared) or 'none'})")
    for a, kind in declared.items():
        if a in attrs and not ATTR_KINDS[kind].check(attrs[a]):
            check_attr(a, kind, attrs[a])  # raises, saying what was expected


def check_node(opdef: Any, node: Node, in_types: list[TensorType]) -> None:
    """Arity, attributes and type of one node against its op definition (raises ShapeError)."""
    check_signature(opdef, len(in_types), node.attrs)
    if node.op in INPUT_OPS:
        return
    if node.op == "const":
        value = node.attrs["value"]
        if TensorType.of(value) != node.type:
            raise ShapeError(f"literal is {TensorType.of(value)} but the declared type is {node.type}")
        return
    inferred = opdef.infer(in_types, node.attrs)
    if inferred != node.type:
        raise ShapeError(f"type rule gives {inferred}, but the declared type is {node.type}")


def check_value(node: Node, value: np.ndarray) -> None:
    if not isinstance(value, np.ndarray) or TensorType.of(value) != node.type:
        got = TensorType.of(value) if isinstance(value, np.ndarray) else type(value).__name__
        raise VerifyError(f"%{node.name} is {node.type}, but its value is {got}", node.name)


class AttrSyntax(Protocol):
    """What the text parser offers :meth:`AttrKind.parse` about one written attribute value ``v``
    (a token or a bracketed group, opaque here); the parser reports errors at ``v``'s position."""

    def scalar(self, v: Any) -> bool: ...  # one token (not a tuple or bracketed literal)
    def items(self, v: Any) -> list[Any] | None: ...  # the items of a tuple, None if ``v`` is not one
    def word(self, v: Any) -> str | None: ...  # the bare name ``v`` is, if it is one
    def integer(self, v: Any, what: str) -> int: ...  # one token as an i64
    def number(self, v: Any, what: str) -> float: ...  # one token as a float (bit-exact)
    def boolean(self, v: Any, what: str) -> bool: ...
    def literal(self, v: Any, ty: TensorType, what: str) -> np.ndarray: ...  # a tensor literal of type ty
    def describe(self, v: Any) -> str: ...  # ``v`` in words, for messages
    def error(self, v: Any, message: str) -> Exception: ...  # an error pointing at ``v``


@dataclass(frozen=True)
class AttrKind:
    """One kind of attribute value (an op's ``attrs`` maps attribute names to kind names): how it is
    checked (the verifier), parsed and formatted (the text format) and emitted (the code generator).

    ``check(v)``: whether ``v`` is a value of this kind (``want`` says what is expected).
    ``parse(syntax, v, what, ty)``: the value written as ``v`` (``ty`` is the node's type, which a
    tensor literal must have). ``format(v, literal)``: its text (``literal`` writes floats and
    tensors). ``emit(v)``: the value rebuilt from plain Python ints/floats/bools/strings, whose
    ``repr`` is exactly what generated code may contain (None: never written into source); raises
    ValueError saying what is wrong (an int subclass with a hostile ``__repr__`` is rebuilt, a
    non-finite float refused).
    """

    name: str
    want: str
    check: Callable[[Any], bool]
    parse: Callable[[AttrSyntax, Any, str, TensorType], Any]
    format: Callable[[Any, Callable[[Any], str]], str]
    emit: Callable[[Any], Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_int_attr(s: AttrSyntax, v: Any, what: str, ty: TensorType) -> int:
    if not s.scalar(v):
        raise s.error(v, f"{what} must be an integer, got {s.describe(v)}")
    return s.integer(v, what)


def _parse_ints_attr(s: AttrSyntax, v: Any, what: str, ty: TensorType) -> tuple[int, ...]:
    items = s.items(v)
    if items is None:
        raise s.error(v, f"{what} must be a tuple of integers like (0, 1) or (0,), got {s.describe(v)}")
    out = []
    for item in items:
        if not s.scalar(item):
            raise s.error(item, f"{what} must be a tuple of integers, got {s.describe(item)} inside")
        out.append(s.integer(item, what))
    return tuple(out)


def _parse_float_attr(s: AttrSyntax, v: Any, what: str, ty: TensorType) -> float:
    if not s.scalar(v):
        raise s.error(v, f"{what} must be a number, got {s.describe(v)}")
    return s.number(v, what)


def _parse_dtype_attr(s: AttrSyntax, v: Any, what: str, ty: TensorType) -> str:
    word = s.word(v)
    if word in DTYPES:
        return str(word)
    raise s.error(v, f"{what} must be a dtype ({', '.join(DTYPES[:-1])} or {DTYPES[-1]}), got {s.describe(v)}")


def _emit_int(v: Any) -> int:
    if not _is_int(v):
        raise ValueError("must be an int")
    return int(v)


def _emit_ints(v: Any) -> tuple[int, ...]:
    if not (isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
        raise ValueError("must be ints")
    return tuple(int(x) for x in v)


def _emit_dtype(v: Any) -> str:
    if v not in DTYPES:
        raise ValueError("must be a dtype")
    return str(v)


def _emit_float(v: Any) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError("is a non-finite float, which cannot be compiled")
    return f


def _format_ints(v: Any, literal: Callable[[Any], str]) -> str:
    inner = ", ".join(str(int(x)) for x in v)
    return f"({inner},)" if len(v) == 1 else f"({inner})"


ATTR_KINDS: dict[str, AttrKind] = {k.name: k for k in (
    AttrKind("int", "an integer", _is_int, _parse_int_attr, lambda v, lit: str(int(v)), _emit_int),
    AttrKind("ints", "a tuple of integers like (0, 1)",
             lambda v: isinstance(v, tuple) and all(_is_int(x) for x in v), _parse_ints_attr, _format_ints,
             _emit_ints),
    AttrKind("float", "a float", lambda v: isinstance(v, float), _parse_float_attr, lambda v, lit: lit(v),
             _emit_float),
    AttrKind("bool", "true or false", lambda v: isinstance(v, bool), lambda s, v, what, ty: s.boolean(v, what),
             lambda v, lit: "true" if v else "false", bool),
    AttrKind("dtype", "a dtype", lambda v: v in DTYPES, _parse_dtype_attr, lambda v, lit: str(v), _emit_dtype),
    AttrKind("tensor", "a tensor literal", lambda v: isinstance(v, np.ndarray),
             lambda s, v, what, ty: s.literal(v, ty, what), lambda v, lit: lit(v), lambda v: None),
)}


def attr_kind_of(value: Any) -> AttrKind:
    """The kind of an attribute value, from its Python type (for printing without the op table)."""
    if isinstance(value, tuple):
        return ATTR_KINDS["ints"]
    if isinstance(value, np.ndarray):
        return ATTR_KINDS["tensor"]
    if isinstance(value, str):
        return ATTR_KINDS["dtype"]
    if isinstance(value, (bool, np.bool_)):
        return ATTR_KINDS["bool"]
    if isinstance(value, (int, np.integer)):
        return ATTR_KINDS["int"]
    return ATTR_KINDS["float"]


def check_attr(name: str, kind: str, value: Any) -> None:
    k = ATTR_KINDS[kind]
    if not k.check(value):
        raise ShapeError(f"attribute {name} must be {k.want}, got {value!r}")


def make_graph(
    name: str,
    nodes: Iterable[Node],
    outputs: Mapping[str, str],
    params: Mapping[str, np.ndarray] | None = None,
    params_file: str | None = None,
) -> Graph:
    """Build a graph from nodes in any order: they are sorted topologically (deterministically)."""
    ordered = toposort(nodes)
    return Graph(name, {n.name: n for n in ordered}, dict(outputs), dict(params or {}), params_file)
