"""Pictures of graphs, diffs, pass and training dumps and loss curves: SVG and self-contained HTML.

:func:`to_svg` draws one graph (laid out by :mod:`gptir.layout`, no Graphviz); :func:`view` writes the
interactive page of ``gptir view``: a graph, the diff of two graphs (through :func:`gptir.diff.diff_graphs`'s
matching: added, removed and changed nodes coloured, renamed nodes not, parameters whose values moved
shaded by how much), a stepper over numbered dumps, or a ``gptir train --log`` loss curve. The page
carries its script, style and data inline: no network at view time.

An IR file is data: every name, scope, ``loc`` and title is escaped for XML (and cleaned of what XML
cannot hold), the per-node data goes into a ``<script type="application/json">`` block with ``<``, ``>``
and ``&`` escaped, and the script sets text only with ``textContent``, so nothing in a graph becomes markup
or code. (The one markup the script inserts is a collapsed scope's members, made by :func:`render_svg`
with every text escaped, exactly as the rest of the SVG.)
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gptir import diff as gdiff
from gptir import text as gtext
from gptir.dot import clean_text, cluster_path
from gptir.fileio import atomic_write_text
from gptir.ir import GptirError, Graph, Node, VerifyError, toposort
from gptir.layout import NODE_HEIGHT, Layout, layered_layout

SVG_NS = "http://www.w3.org/2000/svg"
COLLAPSE_ABOVE = 600  # a graph with more nodes than this opens with its top scopes collapsed
MAX_NAME = 40  # characters of a name drawn in a node (the info panel has it whole)
MAX_IR = 400  # characters of a node's IR line in the info panel
CHAR_W = 6.4  # width of a character at the node font size, for sizing boxes
MAX_NODES = 100_000  # a page draws at most this many nodes (about a minute of layout; refused up front beyond)

FILL = {"param": "#fff2b3", "input": "#d9ecff", "const": "#eeeeee", "output": "#e8f5e9", "op": "#ffffff",
        "backward": "#fde7e7"}
STATE_STROKE = {"added": "#1a9e3a", "removed": "#d62728", "changed": "#ff8c00", "value": "#1f5fbf"}
HIGHLIGHT_STATES = ("added", "removed", "changed", "value")


@dataclass
class VNode:
    """One drawn node: a graph node (or an output marker), its state in a diff and a note."""

    key: str
    name: str
    op: str
    type: str
    node: Node | None = None
    state: str = "same"  # same | added | removed | changed | value
    note: str = ""
    shade: float = 0.0  # 0..1: how much a value changed (log scale), for value changes
    value: np.ndarray | None = None


@dataclass
class Page:
    """One picture of a page: a title, nodes in topological order and edges ``(src key, dst key, type)``."""

    title: str
    nodes: list[VNode] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    summary: str = ""

    def highlighted(self) -> list[str]:
        """Names of the nodes a diff reports (added, removed, changed, value changes)."""
        return [v.name for v in self.nodes if v.state in HIGHLIGHT_STATES]


# -- pages ------------------------------------------------------------------------------------------


def graph_page(graph: Graph, title: str | None = None) -> Page:
    """The page of one graph."""
    page = Page(title if title is not None else f"graph {graph.name}")
    keys: dict[str, str] = {}
    for i, node in enumerate(graph.nodes.values()):
        keys[node.name] = f"n{i}"
        page.nodes.append(_vnode(f"n{i}", node, graph.params.get(node.name)))
    for node in graph.nodes.values():
        for src in dict.fromkeys(node.inputs):
            if src in keys:
                page.edges.append((keys[src], keys[node.name], str(graph.nodes[src].type)))
    _add_outputs(page, graph, keys)
    page.summary = f"{len(graph.nodes)} nodes"
    return page


def diff_page(a: Graph, b: Graph, d: gdiff.GraphDiff | None = None, title: str | None = None) -> Page:
    """The diff of ``a`` (old) and ``b`` (new) as one picture: ``b``'s nodes, plus ``a``'s removed nodes
    wired to their operands; states from :func:`gptir.diff.diff_graphs` (renames are not changes)."""
    d = d if d is not None else gdiff.diff_graphs(a, b)
    added = {n.name for n in d.added}
    changed = {c.b.name: c for c in d.changed}
    values = {v.b: v for v in d.value_changes}
    renamed_from = {y: x for x, y in d.renamed}
    page = Page(title if title is not None else f"{a.name} -> {b.name}")
    keys_b: dict[str, str] = {}
    for i, node in enumerate(b.nodes.values()):
        key = f"n{i}"
        keys_b[node.name] = key
        v = _vnode(key, node, b.params.get(node.name))
        notes = []
        if node.name in added:
            v.state = "added"
        elif node.name in changed:
            v.state = "changed"
            notes.append("changed: " + ", ".join(changed[node.name].what) + "; was: "
                         + gtext.format_node(changed[node.name].a)[:MAX_IR])
        if node.name in values:
            vc = values[node.name]
            if v.state == "same":
                v.state = "value"
            v.shade = _shade(vc.rel_change)
            notes.append(gdiff.describe_value_change(vc))
        if node.name in renamed_from:
            notes.append(f"renamed from %{renamed_from[node.name]}")
        v.note = "; ".join(notes)
        page.nodes.append(v)
    keys_a: dict[str, str] = {}
    removed = [n for n in d.removed]
    for j, node in enumerate(removed):
        keys_a[node.name] = f"r{j}"
        v = _vnode(f"r{j}", node, a.params.get(node.name))
        v.state, v.note = "removed", "removed"
        page.nodes.append(v)
    for node in b.nodes.values():
        for src in dict.fromkeys(node.inputs):
            if src in keys_b:
                page.edges.append((keys_b[src], keys_b[node.name], str(b.nodes[src].type)))
    for node in removed:
        for src in dict.fromkeys(node.inputs):
            rkey = keys_a.get(src) or keys_b.get(d.pairs.get(src, "\0"))
            if rkey is not None and src in a.nodes:
                page.edges.append((rkey, keys_a[node.name], str(a.nodes[src].type)))
    # a removed node also points (dashed) at the nodes that used it, paired into b, so it is drawn
    # where it was; those edges are dropped if they would make a cycle with b's own edges
    users_a = a.users()
    ghosts = [(keys_a[node.name], keys_b[d.pairs[u]], str(node.type)) for node in removed
              for u in dict.fromkeys(users_a.get(node.name, ())) if u in d.pairs and d.pairs[u] in keys_b]
    order = _union_order(page, ghosts)
    if order:
        page.edges.extend(ghosts)
    else:
        order = _union_order(page, [])
    page.nodes.sort(key=lambda v: order[v.key])
    _add_outputs(page, b, keys_b)
    page.summary = gdiff.history_line(d, "a", "b").split(": ", 1)[1]
    return page


def _union_order(page: Page, extra: list[tuple[str, str, str]]) -> dict[str, int]:
    """Positions of the page's nodes in a topological order of its edges plus ``extra``; {} on a cycle."""
    deps: dict[str, list[str]] = {v.key: [] for v in page.nodes}
    for s, t, _ in [*page.edges, *extra]:
        deps[t].append(s)
    stand_in = [Node(v.key, "x", tuple(deps[v.key]), v.node.type) for v in page.nodes if v.node is not None]
    try:
        return {n.name: i for i, n in enumerate(toposort(stand_in))}
    except VerifyError:
        return {}


def _shade(rel: float) -> float:
    """A relative change on a log scale, 1e-6 -> 0.1 ... >= 1 -> 1."""
    if not rel > 0:
        return 0.0
    if math.isinf(rel):
        return 1.0
    return max(0.1, min(1.0, (math.log10(rel) + 6.0) / 6.0))


def _vnode(key: str, node: Node, value: np.ndarray | None) -> VNode:
    return VNode(key, node.name, node.op, str(node.type), node, value=value)


def _add_outputs(page: Page, graph: Graph, keys: Mapping[str, str]) -> None:
    for i, (out, value) in enumerate(graph.outputs.items()):
        if value in keys:
            key = f"o{i}"
            page.nodes.append(VNode(key, out, "output", str(graph.nodes[value].type)))
            page.edges.append((keys[value], key, str(graph.nodes[value].type)))


# -- SVG --------------------------------------------------------------------------------------------


def _esc(text: str, limit: int | None = None) -> str:
    return html.escape(clean_text(text, limit), quote=True)


def _label_lines(v: VNode) -> tuple[str, str]:
    return clean_text(v.name, MAX_NAME), clean_text(f"{v.op} : {v.type}", MAX_NAME + 10)


def layout_page(page: Page) -> Layout:
    """Lay out a page's nodes (cluster boxes by scope, backward nodes under ``backward``)."""
    if len(page.nodes) > MAX_NODES:
        raise GptirError(f"{page.title}: {len(page.nodes)} nodes is too many to draw (at most {MAX_NODES:,})")
    widths = {}
    for v in page.nodes:
        a, b = _label_lines(v)
        widths[v.key] = max(60.0, CHAR_W * max(len(a), len(b)) + 16.0)
    clusters = {v.key: cluster_path(v.node) for v in page.nodes if v.node is not None}
    return layered_layout([v.key for v in page.nodes], [(s, t) for s, t, _ in page.edges], widths, clusters)


def _fill(v: VNode) -> str:
    if v.op == "output":
        return FILL["output"]
    if v.op in FILL and v.op != "op":
        return FILL[v.op]
    if v.node is not None and v.node.backward:
        return FILL["backward"]
    return FILL["op"]


def _node_svg(v: VNode, lay: Layout, prefix: str) -> str:
    x, y = lay.x[v.key], lay.y[v.key]
    a, b = _label_lines(v)
    w = max(60.0, CHAR_W * max(len(a), len(b)) + 16.0)
    kind = v.op if v.op in ("param", "input", "const", "output") else "op"
    classes = ["node", f"k-{kind}", f"st-{v.state}"]
    if v.node is not None and v.node.backward:
        classes.append("bwd")
    if v.state in HIGHLIGHT_STATES:
        classes.append("hl")
    stroke = STATE_STROKE.get(v.state, "#555555")
    sw = "3" if v.state in HIGHLIGHT_STATES else "1"
    fill = _fill(v)
    extra = ""
    if v.state == "value" or (v.shade and v.state == "changed"):
        fill = f"rgba(31,95,191,{0.12 + 0.6 * v.shade:.2f})"
    if v.state == "removed":
        extra = ' stroke-dasharray="5,3"'
    rx = "14" if kind in ("param", "input", "output") else "3"
    return (f'<g class="{" ".join(classes)}" id="{prefix}{v.key}" data-key="{v.key}" data-name="{_esc(v.name)}">'
            f'<rect class="shape" x="{x - w / 2:.1f}" y="{y - NODE_HEIGHT / 2:.1f}" width="{w:.1f}" '
            f'height="{NODE_HEIGHT:.1f}" rx="{rx}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{extra}/>'
            f'<text x="{x:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="11" font-family="sans-serif" '
            f'font-weight="bold">{_esc(a)}</text>'
            f'<text x="{x:.1f}" y="{y + 11:.1f}" text-anchor="middle" font-size="10" font-family="sans-serif" '
            f'fill="#444">{_esc(b)}</text></g>')


def _path_d(pts: Sequence[tuple[float, float]]) -> str:
    """Smooth vertical curves between consecutive route points (straight through a dummy's rank),
    in whole pixels (a big graph has tens of thousands of these)."""
    out = [f"M{pts[0][0]:.0f},{pts[0][1]:.0f}"]
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if i % 2 == 0 and 0 < i < len(pts) - 1:  # inside a dummy's rank: a straight piece
            out.append(f"L{x1:.0f},{y1:.0f}")
        else:
            m = (y0 + y1) / 2
            out.append(f"C{x0:.0f},{m:.0f} {x1:.0f},{m:.0f} {x1:.0f},{y1:.0f}")
    return "".join(out)


def render_svg(page: Page, *, prefix: str = "", collapse: bool | None = False, lay: Layout | None = None,
               deferred: dict[str, str] | None = None) -> str:
    """The page as one ``<svg>`` element. ``collapse``: mark the top scopes collapsed (``None``: only when
    the page has more than :data:`COLLAPSE_ABOVE` nodes); scopes holding a highlighted node stay open.
    Collapsing takes effect in the HTML viewer (its style sheet); a bare SVG shows every node.

    With ``deferred`` (a dict to fill), a collapsed scope's members are left out of the SVG and put in
    ``deferred[id]`` as markup (made here, every text escaped), which the viewer inserts when the scope
    is first expanded: a big graph's page then starts with only its visible nodes in the document."""
    lay = lay if lay is not None else layout_page(page)
    if collapse is None:
        collapse = len(page.nodes) > COLLAPSE_ABOVE
    by_key = {v.key: v for v in page.nodes}
    # the tree of scope boxes: path -> (child paths, member vnodes)
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {(): []}
    members: dict[tuple[str, ...], list[VNode]] = {(): []}
    count: dict[tuple[str, ...], int] = {}
    hot: set[tuple[str, ...]] = set()
    for v in page.nodes:
        path = cluster_path(v.node) if v.node is not None else ()
        for depth in range(1, len(path) + 1):
            p = path[:depth]
            if p not in members:
                members[p], children[p] = [], []
                children[p[:-1]].append(p)
            count[p] = count.get(p, 0) + 1
            if v.state in HIGHLIGHT_STATES:
                hot.add(p)
        members[path].append(v)
    parts = [f'<svg xmlns="{SVG_NS}" class="gptir-graph" width="{lay.width:.0f}" height="{lay.height:.0f}" '
             f'viewBox="0 0 {lay.width:.1f} {lay.height:.1f}" data-nodes="{len(page.nodes)}">',
             f'<rect class="bg" x="0" y="0" width="{lay.width:.1f}" height="{lay.height:.1f}" fill="#ffffff"/>',
             f'<text class="title" x="16" y="22" font-size="14" font-family="sans-serif" font-weight="bold">'
             f'{_esc(page.title, 200)}</text>', '<g class="edges">']
    for s, t, ty in page.edges:
        pts = lay.routes.get((s, t))
        if not pts:
            continue
        cls = "edge long" if (s, t) in lay.long_edges else "edge"
        st = by_key[t].state if by_key[t].state == "removed" else by_key[s].state
        color = "#d62728" if st == "removed" else "#888888"
        dash = ' stroke-dasharray="5,3"' if st == "removed" else ""
        opacity = ' stroke-opacity="0.35"' if cls.endswith("long") else ""
        tip = (f"<title>{_esc(by_key[s].name)} \u2192 {_esc(by_key[t].name)} : {_esc(ty)}</title>"
               if len(page.nodes) <= COLLAPSE_ABOVE else "")  # a big page stays small
        parts.append(f'<path class="{cls}" d="{_path_d(pts)}" fill="none" '
                     f'stroke="{color}" stroke-width="1.2"{dash}{opacity}>{tip}</path>')
    parts.append("</g>")

    def emit(path: tuple[str, ...]) -> None:
        for child in children[path]:
            x0, y0, x1, y1 = lay.boxes[child]
            cls = "scope"
            if collapse and len(child) == 1 and child not in hot:
                cls += " collapsed"
            if child in hot:
                cls += " has-hl"
            name = ".".join(child)
            big = max(12.0, min((x1 - x0) / max(len(child[-1]) + 8, 1) * 1.4, (y1 - y0) / 4, 160.0))
            parts.append(f'<g class="{cls}" data-scope="{_esc(name)}" data-count="{count[child]}">'
                         f'<rect class="box" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                         f'rx="6" fill="#eef2f8" fill-opacity="0.25" stroke="{"#ff8c00" if child in hot else "#9aa5b8"}"/>'
                         f'<text class="scope-label" x="{x0 + 6:.1f}" y="{y0 + 13:.1f}" font-size="11" '
                         f'font-family="sans-serif" fill="#4a5568">{_esc(child[-1], MAX_NAME)} ({count[child]})'
                         f'<title>{_esc(name)}</title></text>'
                         f'<text class="big-label" x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" '
                         f'text-anchor="middle" font-size="{big:.0f}" font-family="sans-serif" fill="#4a5568">'
                         f'{_esc(child[-1], MAX_NAME)} \u25b8 {count[child]} nodes</text>')
            if deferred is not None and "collapsed" in cls:
                block = f"{prefix}d{len(deferred)}"
                start = len(parts)
                emit(child)
                deferred[block] = "".join(parts[start:])
                del parts[start:]
                parts.append(f'<g class="members" data-deferred="{block}"></g></g>')
            else:
                parts.append('<g class="members">')
                emit(child)
                parts.append("</g></g>")
        for v in members[path]:
            parts.append(_node_svg(v, lay, prefix))

    emit(())
    parts.append("</svg>")
    return "".join(parts)


def to_svg(graph: Graph, title: str | None = None) -> str:
    """One graph as a standalone SVG picture (every node shown): what a notebook displays."""
    return render_svg(graph_page(graph, title), collapse=False)


# -- node details ---------------------------------------------------------------------------------


def _stats(value: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(value)
    out: dict[str, Any] = {"shape": list(arr.shape), "size": int(arr.size)}
    if arr.size and arr.dtype.kind in "fiub":
        f = arr.astype(np.float64, copy=False)
        finite = f[np.isfinite(f)]
        out["nonfinite"] = int(f.size - finite.size)
        if finite.size:
            out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                       std=float(finite.std()))
    return out


def _details(v: VNode) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": clean_text(v.name), "op": v.op, "type": v.type, "state": v.state}
    if v.note:
        rec["note"] = clean_text(v.note)
    if v.node is not None:
        rec["scope"] = clean_text(v.node.scope)
        rec["loc"] = clean_text(v.node.loc)
        rec["ir"] = clean_text(gtext.format_node(v.node), MAX_IR)
        rec["backward"] = v.node.backward
    if v.value is not None:
        rec["stats"] = _stats(v.value)
    return rec


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: ASCII only (lone surrogates and
    U+2028 escaped), ``<``, ``>``, ``&`` as unicode escapes so no ``</script>`` can appear."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=_json_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(x: Any) -> Any:
    if isinstance(x, float):  # pragma: no cover - floats are made finite before
        return None
    raise TypeError(type(x).__name__)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# -- HTML -----------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("gptir").joinpath("assets", name).read_text(encoding="utf-8")


def html_document(title: str, pages_svg: Sequence[str], pages_data: Sequence[dict[str, Any]],
                  kind: str) -> str:
    """The self-contained page: header (title, stepper, search), the pages, the info panel, data, script."""
    script = _asset("viewer.js")
    if "</script" in script.lower():  # pragma: no cover - our own file
        raise ValueError("viewer.js must not contain </script")
    body = []
    for i, svg in enumerate(pages_svg):
        hidden = "" if i == 0 else " hidden"
        body.append(f'<div class="page" data-index="{i}"{hidden}>{svg}</div>')
    stepper = len(pages_svg) > 1
    legend = ('<span class="lg added">added</span><span class="lg removed">removed</span>'
              '<span class="lg changed">changed</span><span class="lg value">value changed</span>'
              if kind in ("diff", "steps") else "")
    data = {"kind": kind, "title": clean_text(title), "pages": list(pages_data)}
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title, 200)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_asset('viewer.css')}</style></head>\n<body data-kind=\"{kind}\">"
            f"<header><h1 id=\"title\">{_esc(pages_data[0].get('title', title), 200)}</h1>"
            + ('<nav id="stepper"><button id="prev" type="button">\u2190 prev</button>'
               f'<span id="counter">1 / {len(pages_svg)}</span>'
               '<button id="next" type="button">next \u2192</button></nav>' if stepper else "")
            + ('<input id="search" type="search" placeholder="find a node by name or op" autocomplete="off">'
               '<span id="found"></span>' if kind != "loss" else "")
            + f'<span id="legend">{legend}</span><span id="summary"></span></header>\n'
            f'<main><div id="stage">{"".join(body)}</div>'
            '<aside id="info"><p class="hint">Click a node for its IR line, type, scope and source; '
            'click a scope label to collapse or expand it. Drag to pan, wheel to zoom'
            + (", \u2190 \u2192 to step" if stepper else "") + '.</p></aside></main>\n'
            f'<script type="application/json" id="gptir-data">{_json_for_script(_finite(data))}</script>\n'
            f"<script>{script}</script>\n</body></html>\n")


def _page_data(page: Page, deferred: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"title": clean_text(page.title), "summary": clean_text(page.summary),
            "nodes": {v.key: _details(v) for v in page.nodes},
            "highlighted": [clean_text(n) for n in page.highlighted()],
            "deferred": dict(deferred or {})}


def pages_html(pages: Sequence[Page], title: str, kind: str) -> str:
    """The HTML page of one or more graph pages (a stepper when there are several)."""
    svgs, data = [], []
    for i, p in enumerate(pages):
        deferred: dict[str, str] = {}
        svgs.append(render_svg(p, prefix=f"p{i}-", collapse=None, deferred=deferred))
        data.append(_page_data(p, deferred))
    return html_document(title, svgs, data, kind)


def steps_pages(graphs: Sequence[tuple[str, Graph]]) -> list[Page]:
    """A stepper's pages over numbered dumps ``(file name, graph)``: the first graph, then each dump
    as the diff from the one before, titled by its pass (``01-cse.ir``) or training step."""
    pages = [graph_page(graphs[0][1], f"{graphs[0][0]}: {_step_label(graphs[0][0])}")]
    for (name_a, a), (name_b, b) in zip(graphs, graphs[1:]):
        d = gdiff.diff_graphs(a, b)
        page = diff_page(a, b, d, f"{name_b}: {_step_label(name_b)}")
        page.summary = gdiff.history_line(d, name_a, name_b)
        pages.append(page)
    return pages


def _step_label(filename: str) -> str:
    label = gdiff.pass_label(filename)
    if label:
        return "input" if label == "input" else f"after {label}"
    stem = filename.rsplit("/", 1)[-1].removesuffix(".ir")
    if stem.startswith("step-") and stem[5:].isdigit():
        return f"training step {int(stem[5:])}"
    return stem


# -- loss curve -----------------------------------------------------------------------------------


def loss_svg(losses: Sequence[tuple[int, float]], title: str, width: int = 900, height: int = 420) -> str:
    """A loss curve as an SVG line plot with axes and ticks."""
    left, right, top, bottom = 64, 16, 36, 44
    pts = [(s, l) for s, l in losses if math.isfinite(l)]
    parts = [f'<svg xmlns="{SVG_NS}" class="gptir-plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">', f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
             f'<text x="{left}" y="22" font-size="14" font-family="sans-serif" font-weight="bold">{_esc(title, 200)}'
             "</text>"]
    if pts:
        s0, s1 = min(p[0] for p in pts), max(p[0] for p in pts)
        l0, l1 = min(p[1] for p in pts), max(p[1] for p in pts)
        if s1 == s0:
            s1 = s0 + 1
        if l1 == l0:
            l1 = l0 + 1.0
        pw, ph = width - left - right, height - top - bottom

        def sx(s: float) -> float:
            return left + (s - s0) / (s1 - s0) * pw

        def sy(v: float) -> float:
            return top + (l1 - v) / (l1 - l0) * ph

        parts.append(f'<g class="axes" stroke="#333" fill="none"><path d="M{left},{top} V{top + ph} H{left + pw}"/></g>')
        for t in _ticks(l0, l1):
            parts.append(f'<line x1="{left - 4}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                         f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10" '
                         f'font-family="sans-serif">{t:g}</text>')
        for t in _ticks(s0, s1):
            parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#333"/>'
                         f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="10" '
                         f'font-family="sans-serif">{t:g}</text>')
        parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle" font-size="11" '
                     'font-family="sans-serif">step</text>'
                     f'<text x="14" y="{top + ph / 2}" font-size="11" font-family="sans-serif" '
                     f'transform="rotate(-90 14 {top + ph / 2})" text-anchor="middle">loss</text>')
        stride = max(1, len(pts) // 4000)  # at most a few thousand points drawn
        line = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in pts[::stride])
        parts.append(f'<polyline class="loss" points="{line}" fill="none" stroke="#1f5fbf" stroke-width="1.2" '
                     'stroke-opacity="0.55"/>')
        if len(pts) >= 20:  # a running mean over a twentieth of the run, to read the trend
            k = max(2, len(pts) // 20)
            vals = np.convolve([v for _, v in pts], np.ones(k) / k, mode="valid")
            steps = [s for s, _ in pts][k - 1:]
            trend = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in list(zip(steps, vals))[::stride])
            parts.append(f'<polyline class="trend" points="{trend}" fill="none" stroke="#d62728" stroke-width="2"/>')
    else:
        parts.append(f'<text x="{left}" y="80" font-size="12" font-family="sans-serif">no finite losses</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    span = hi - lo
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=mag * 10)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step) + 1)]


def loss_html(records: Iterable[Mapping[str, Any]], title: str) -> str:
    """The page of a ``gptir train --log`` run: the loss curve, the run record and the samples."""
    run: Any = None
    losses: list[tuple[int, float]] = []
    samples: list[str] = []
    for rec in records:
        if "run" in rec:
            run = rec["run"]
        elif "step" in rec and "loss" in rec:
            losses.append((int(rec["step"]), float(rec["loss"])))
        elif "sample" in rec and "text" in rec:
            samples.append(str(rec["text"]))
    svg = loss_svg(losses, title)
    table = ""
    if isinstance(run, Mapping):
        rows = "".join(f"<tr><th>{_esc(str(k), 80)}</th><td>{_esc(json.dumps(v, ensure_ascii=False), 400)}</td></tr>"
                       for k, v in run.items())
        table = f'<table class="run">{rows}</table>'
    last = f"{len(losses)} steps, final loss {losses[-1][1]:.6g}" if losses else "no losses"
    samp = (f'<p class="samples"><b>samples:</b> {_esc(", ".join(samples), 4000)}</p>' if samples else "")
    page = f'{svg}<div class="record"><p>{_esc(last)}</p>{table}{samp}</div>'
    return html_document(title, [page], [{"title": clean_text(title), "summary": last, "nodes": {},
                                          "highlighted": []}], "loss")


# -- the Python API ---------------------------------------------------------------------------------


def view(*items: Any, out: str | None = None, title: str | None = None) -> str:
    """The ``gptir view`` page, as HTML text (written atomically to ``out`` when given):

    - ``view(graph)``: the graph;
    - ``view(a, b)``: the diff of two graphs;
    - ``view([(name, graph), ...])``: a stepper over dumps in order (names like ``01-cse.ir``).
    """
    if len(items) == 1 and isinstance(items[0], Graph):
        g = items[0]
        text = pages_html([graph_page(g, title)], title or f"graph {g.name}", "graph")
    elif len(items) == 2 and all(isinstance(x, Graph) for x in items):
        a, b = items
        t = title or f"diff {a.name} -> {b.name}"
        text = pages_html([diff_page(a, b, title=t)], t, "diff")
    elif len(items) == 1 and isinstance(items[0], (list, tuple)) and items[0]:
        steps = [(str(n), g) for n, g in items[0]]
        if not all(isinstance(g, Graph) for _, g in steps):
            raise TypeError("view([...]) takes (name, Graph) pairs")
        text = pages_html(steps_pages(steps), title or "steps", "steps")
    else:
        raise TypeError("view() takes a Graph, two Graphs, or a list of (name, Graph) pairs")
    if out is not None:
        atomic_write_text(out, text)
    return text
