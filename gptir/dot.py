"""Graphviz DOT for a graph (``gptir dot``, :func:`to_dot`), and how gptir groups nodes into boxes.

Every node is ``nN`` (its name is only ever in a label), every label is a quoted, escaped string, so
any name, scope or ``loc`` an IR file can hold — quotes, backslashes, newlines, ``<``/``>``, lone
surrogates, control characters — gives DOT that ``dot -Tsvg`` accepts and shows literally. Nodes
show name, op and type; edges the type (shape) they carry; scopes become nested ``cluster_`` subgraphs.
Backward nodes are grouped under a ``backward`` box by the scope of the forward node they
differentiate (:func:`cluster_path`), so a scope's forward and backward halves do not make one box
spanning the whole picture. Attributes are written from a fixed list of Graphviz's own: nothing of
the node (such as ``to_networkx()``'s ``shape`` tuple) is passed through as an attribute.
"""

from __future__ import annotations

import re

from gptir.ir import Graph, Node

MAX_LABEL = 60  # a name or scope longer than this is cut (with ...) in labels
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` with what no XML or DOT file can hold (lone surrogates, control characters other than
    tab and newline) replaced by U+FFFD, cut to ``limit`` characters."""
    text = _UNSAFE.sub("\ufffd", text)
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "\u2026"
    return text


def cluster_path(node: Node) -> tuple[str, ...]:
    """The nested boxes ``node`` sits in, outermost first: its scope split at dots, under
    ``backward`` for a node of the backward pass."""
    parts = tuple(node.scope.split(".")) if node.scope else ()
    return (("backward",) + parts) if node.backward else parts


def dot_string(text: str) -> str:
    """``text`` as a DOT quoted string shown literally: backslashes and quotes escaped, newlines as
    ``\\n`` (Graphviz's own line break), nothing else special."""
    text = clean_text(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


def node_style(node: Node) -> str:
    """Graphviz attributes by kind: params, inputs, constants and backward nodes look different."""
    if node.op == "param":
        return 'shape=box, style="filled,rounded", fillcolor="#fff2b3"'
    if node.op == "input":
        return 'shape=box, style="filled,rounded", fillcolor="#d9ecff"'
    if node.op == "const":
        return 'shape=box, style="filled", fillcolor="#eeeeee", fontcolor="#555555"'
    if node.backward:
        return 'shape=box, style="filled,dashed", fillcolor="#fde7e7"'
    return 'shape=box, style="filled", fillcolor="#ffffff"'


def to_dot(graph: Graph) -> str:
    """The graph as Graphviz DOT text (see the module docstring)."""
    ids = {name: f"n{i}" for i, name in enumerate(graph.nodes)}
    lines = [f"digraph {dot_string(graph.name)} {{",
             '  graph [rankdir=TB, fontname="Helvetica", fontsize=11];',
             '  node [fontname="Helvetica", fontsize=10, margin="0.08,0.03"];',
             '  edge [fontname="Helvetica", fontsize=8, color="#777777", fontcolor="#555555"];']
    # clusters as a tree of nested subgraphs
    tree: dict = {}
    for node in graph.nodes.values():
        level = tree
        for part in cluster_path(node):
            level = level.setdefault(part, {})
        level.setdefault(None, []).append(node)  # None: the nodes directly in this box
    counter = [0]

    def emit(level: dict, indent: str) -> None:
        for node in level.get(None, []):
            label = f"{clean_text(node.name, MAX_LABEL)}\n{node.op} : {node.type}"
            lines.append(f"{indent}{ids[node.name]} [label={dot_string(label)}, {node_style(node)}];")
        for part, sub in level.items():
            if part is None:
                continue
            counter[0] += 1
            lines.append(f"{indent}subgraph cluster_{counter[0]} {{")
            lines.append(f'{indent}  label={dot_string(clean_text(part, MAX_LABEL))}; style="rounded"; '
                         f'color="#999999";')
            emit(sub, indent + "  ")
            lines.append(f"{indent}}}")

    emit(tree, "  ")
    for node in graph.nodes.values():
        seen: set[str] = set()
        for src in node.inputs:
            if src in seen or src not in graph.nodes:
                continue
            seen.add(src)
            lines.append(f"  {ids[src]} -> {ids[node.name]} [label={dot_string(str(graph.nodes[src].type))}];")
    for i, (out, value) in enumerate(graph.outputs.items()):
        if value in ids:
            lines.append(f"  out{i} [label={dot_string(clean_text(out, MAX_LABEL))}, shape=plaintext];")
            lines.append(f"  {ids[value]} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"
