"""gptir's pictures, structurally: the layout, DOT, SVG and HTML of ``gptir dot`` / ``gptir view``.

The SVG must be well-formed XML with one shape per visible node; a known diff must highlight exactly
the nodes ``gptir diff`` reports; pages carry no external URL; hostile names and locs never become
markup or script. The real-browser checks are in test_view_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gptir
from gptir import Param, scope, trace
from gptir.cli import main
from gptir.dot import cluster_path, to_dot
from gptir.ir import Graph, Node, TensorType, make_graph
from gptir.layout import NODE_HEIGHT, layered_layout
from gptir.viewer import COLLAPSE_ABOVE, diff_page, graph_page, render_svg, steps_pages, to_svg, view

SVG = "{http://www.w3.org/2000/svg}"


def block(x, w, b):
    with scope("layer0"):
        h = gptir.exp(x @ w + b)
    with scope("head"):
        return (h * h).sum()


def model(shift: float = 0.0) -> Graph:
    rng = np.random.default_rng(0)
    return trace(block, "f64[4]", Param(rng.normal(size=(4, 3)) + shift), Param(rng.normal(size=3)))


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    """The microgpt loss graph and its pass dumps (00-input.ir ... 04-dce.ir)."""
    d = tmp_path_factory.mktemp("dumps")
    assert main(["trace", "microgpt", "-o", str(d / "loss.ir")]) == 0
    assert main(["opt", str(d / "loss.ir"), "--dump-dir", str(d / "passes"), "-o", str(d / "loss.opt.ir")]) == 0
    return d


def svgs_of(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, flags=re.S)]


def visible_shapes(svg: ET.Element) -> list[ET.Element]:
    """The node groups that are shown: not inside the members of a collapsed scope."""
    out = []

    def walk(el: ET.Element, hidden: bool) -> None:
        cls = el.get("class", "").split()
        if "node" in cls and not hidden:
            out.append(el)
        folded = "scope" in cls and "collapsed" in cls
        for child in el:
            walk(child, hidden or (folded and "members" in child.get("class", "").split()))

    walk(svg, False)
    return out


# -- layout -----------------------------------------------------------------------------------------


def test_layout_ranks_orders_and_counts_crossings():
    # a, b -> c, d is a K2,2 between two ranks: exactly one crossing in any order; a -> e spans two ranks
    nodes = ["a", "b", "c", "d", "e"]
    edges = [("a", "c"), ("b", "d"), ("a", "d"), ("b", "c"), ("c", "e"), ("a", "e")]
    lay = layered_layout(nodes, edges, {v: 50 for v in nodes})
    assert lay.rank["c"] == lay.rank["d"] == lay.rank["a"] + 1 and lay.rank["e"] == lay.rank["c"] + 1
    assert lay.crossings == 1  # K2,2 between two ranks always crosses once
    for u, v in edges:  # every edge points down
        assert lay.y[v] > lay.y[u]
    for layer in lay.order:  # no overlap inside a rank
        xs = sorted(lay.x[v] for v in layer)
        assert all(b - a >= 50 for a, b in zip(xs, xs[1:]))
    # the long edge a -> e is routed through a dummy: its route has the bend points
    assert len(lay.routes[("a", "e")]) == 4


def test_layout_keeps_clusters_contiguous_and_boxes_around_members():
    g = model()
    page = graph_page(g)
    from gptir.viewer import layout_page

    lay = layout_page(page)
    paths = {v.key: cluster_path(v.node) for v in page.nodes if v.node is not None}
    for layer in lay.order:
        seen_done: set = set()
        last = None
        for v in layer:
            top = paths.get(v, ())[:1]
            if top != last:
                assert top not in seen_done or top == (), f"cluster {top} split in a rank"
                if last is not None:
                    seen_done.add(last)
                last = top
    for key, path in paths.items():
        for depth in range(1, len(path) + 1):
            x0, y0, x1, y1 = lay.boxes[path[:depth]]
            assert x0 <= lay.x[key] <= x1 and y0 <= lay.y[key] - NODE_HEIGHT / 2 and lay.y[key] <= y1


def test_layout_bounds_dummies_on_long_edges():
    # a chain of 300 nodes, each also reading the first: quadratic bends unless bounded
    nodes = [f"v{i}" for i in range(300)]
    edges = [(f"v{i}", f"v{i + 1}") for i in range(299)] + [("v0", f"v{i}") for i in range(2, 300)]
    lay = layered_layout(nodes, edges, {v: 40 for v in nodes}, dummy_budget=500)
    bends = sum((len(p) - 2) // 2 for p in lay.routes.values())
    assert bends <= 500 + 300 and lay.long_edges
    assert all(len(lay.routes[e]) == 2 for e in lay.long_edges)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
    st.lists(st.lists(st.sampled_from("abc"), max_size=3).map(tuple), min_size=n, max_size=n))))
def test_layout_invariants_on_random_dags(case):
    n, pairs, paths = case
    nodes = [f"v{i}" for i in range(n)]
    edges = [(nodes[min(a, b)], nodes[max(a, b)]) for a, b in pairs if a != b]
    clusters = {v: p for v, p in zip(nodes, paths)}
    lay = layered_layout(nodes, edges, {v: 30 + 7 * (i % 5) for i, v in enumerate(nodes)}, clusters,
                         dummy_budget=20)
    for u, v in edges:
        assert lay.rank[v] > lay.rank[u]
        route = lay.routes[(u, v)]
        assert all(b[1] >= a[1] for a, b in zip(route, route[1:]))  # every route runs downwards
    for layer in lay.order:
        xs = [lay.x[v] for v in layer]
        assert xs == sorted(xs)
        for a, b in zip(layer, layer[1:]):
            assert lay.x[b] - lay.x[a] >= (30 + 30) / 2  # no two nodes of a rank overlap
    for v, p in clusters.items():
        for d in range(1, len(p) + 1):
            x0, y0, x1, y1 = lay.boxes[p[:d]]
            assert x0 < lay.x[v] < x1 and y0 < lay.y[v] < y1
    assert sorted(lay.x) == sorted(nodes) and lay.width > 0 and lay.height > 0


# -- DOT --------------------------------------------------------------------------------------------


def hostile_graph() -> Graph:
    evil = 'x"</script><script>alert(1)</script>\\n\\"\n<b>&amp;\ud800\x00'
    ty = TensorType("f64", (2,))
    nodes = [Node(f"in{evil}", "input", (), ty, scope=f"s{evil}", loc=f"{evil}.py:1"),
             Node(f"p{evil}", "param", (), ty, loc=evil),
             Node(f"add{evil}", "add", (f"in{evil}", f"p{evil}"), ty, scope=f"s{evil}.inner", loc=evil,
                  backward=True)]
    return make_graph(f"g{evil}", nodes, {f"out{evil}": f"add{evil}"}, {f"p{evil}": np.zeros(2)})


def test_dot_quotes_everything_and_uses_no_node_attributes():
    text = to_dot(hostile_graph())
    assert "<script>" in text  # shown literally inside a quoted label ...
    for line in text.splitlines():  # ... and never outside one: strip quoted strings, nothing odd is left
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        assert "<" not in bare and "\\" not in bare and "alert" not in bare, line
    assert "\ud800" not in text and "\x00" not in text
    assert re.search(r"shape=\(", text) is None  # no networkx attribute (the shape tuple) leaks into DOT
    assert set(re.findall(r"shape=(\w+)", text)) <= {"box", "plaintext"}


def test_dot_has_clusters_edge_types_and_styles(dumps):
    text = to_dot(gptir.load_graph(str(dumps / "loss.ir")))
    assert "subgraph cluster_" in text and 'label="layer0"' in text
    assert '[label="f64[7,16]"]' in text  # an edge shows the shape it carries
    assert 'fillcolor="#fff2b3"' in text  # params styled apart


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (dot) is not installed")
def test_graphviz_accepts_dot_of_hostile_and_real_graphs(dumps):
    for g in (hostile_graph(), gptir.load_graph(str(dumps / "loss.ir"))):
        r = subprocess.run(["dot", "-Tsvg"], input=to_dot(g).encode(), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode()[:500]
        ET.fromstring(r.stdout)


# -- SVG and HTML -----------------------------------------------------------------------------------


def test_svg_is_xml_with_one_shape_per_node(dumps):
    g = gptir.load_graph(str(dumps / "loss.ir"))
    root = ET.fromstring(to_svg(g))
    nodes = root.findall(f".//{SVG}g[@class]")
    node_groups = [e for e in nodes if "node" in e.get("class").split()]
    assert len(node_groups) == len(g.nodes) + len(g.outputs)
    for e in node_groups:
        assert len(e.findall(f"{SVG}rect")) == 1
    assert {e.get("data-name") for e in node_groups} == set(g.nodes) | set(g.outputs)
    assert gptir.Graph._repr_svg_(g) == to_svg(g) and "<svg" in g._repr_html_()


def test_big_graph_opens_collapsed_with_one_shape_per_visible_node(tmp_path):
    big = tmp_path / "big.ir"
    assert main(["trace", "microgpt", "--train-step", "--n-layer", "3", "-o", str(big)]) == 0
    g = gptir.load_graph(str(big))
    assert len(g.nodes) > COLLAPSE_ABOVE
    root = svgs_of(view(g))[0]
    collapsed = [e for e in root.iter() if "collapsed" in e.get("class", "").split()]
    assert collapsed and all(len(e.get("data-scope").split(".")) == 1 for e in collapsed)
    shown = visible_shapes(root)
    hidden_scopes = {e.get("data-scope") for e in collapsed}
    expect = [n for n in g.nodes.values() if cluster_path(n)[:1] and cluster_path(n)[0] in hidden_scopes]
    assert len(shown) == len(g.nodes) + len(g.outputs) - len(expect)
    assert all(len(e.findall(f"{SVG}rect")) == 1 for e in shown)
    # the folded scopes' members wait in the data as escaped markup, whole and well-formed
    html = view(g)
    data = json.loads(re.search(r'<script type="application/json" id="gptir-data">(.*?)</script>', html, re.S)[1])
    deferred = data["pages"][0]["deferred"]
    assert len(deferred) == len(collapsed)
    inner = ET.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg">{"".join(deferred.values())}</svg>')
    names = {e.get("data-name") for e in inner.iter() if "node" in e.get("class", "").split()}
    assert names == {n.name for n in expect}


def test_known_diff_highlights_what_gptir_diff_reports():
    a = model()
    b_nodes = [n.replace(name="layer0.renamed", inputs=n.inputs) if n.name == "layer0.exp" else n for n in a]
    b_nodes = [n.replace(inputs=tuple("layer0.renamed" if i == "layer0.exp" else i for i in n.inputs))
               for n in b_nodes]
    extra = Node("head.extra", "exp", ("head.sum",), TensorType("f64", ()), scope="head")
    outs = dict(a.outputs)
    outs["extra"] = "head.extra"
    params = {k: v + 1.0 if k == "b" else v for k, v in a.params.items()}
    b = make_graph(a.name, [*b_nodes, extra], outs, params)
    d = gptir.diff_graphs(a, b)
    assert [x.name for x in d.added] == ["head.extra"] and d.renamed == [("layer0.exp", "layer0.renamed")]
    page = diff_page(a, b, d)
    states = {v.name: v.state for v in page.nodes}
    assert states["head.extra"] == "added" and states["b"] == "value" and states["layer0.renamed"] == "same"
    root = ET.fromstring(render_svg(page))
    hl = {e.get("data-name") for e in root.iter() if "hl" in e.get("class", "").split()}
    assert hl == {"head.extra", "b"} == set(page.highlighted())
    shade = next(e for e in root.iter() if e.get("data-name") == "b").find(f"{SVG}rect").get("fill")
    assert shade.startswith("rgba(31,95,191,")


def test_pass_step_pages_match_the_diff_json(dumps, capsys):
    folder = dumps / "passes"
    files = sorted(p.name for p in folder.iterdir())
    pages = steps_pages([(f, gptir.load_graph(str(folder / f))) for f in files])
    assert len(pages) == len(files) and pages[1].title == "01-cse.ir: after cse"
    for i in range(1, len(files)):
        capsys.readouterr()
        main(["diff", "--format", "json", str(folder / files[i - 1]), str(folder / files[i])])
        rep = json.loads(capsys.readouterr().out)
        want = ({n["name"] for n in rep["added"]} | {n["name"] for n in rep["removed"]}
                | {c["b"]["name"] for c in rep["changed"]} | {v["b"] for v in rep["values"]})
        assert set(pages[i].highlighted()) == want
    assert pages[1].highlighted()  # cse removes nodes


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def check_self_contained(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    urls = set(re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)]*", html, flags=re.I))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, never fetched
    for tag, attrs in p.tags:
        assert "src" not in attrs, tag
        if "href" in attrs:
            assert attrs["href"] == "data:,", attrs
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)  # no inline handlers
    assert "@import" not in html and "url(" not in html
    return p


def test_pages_are_self_contained(dumps, tmp_path):
    log = tmp_path / "run.jsonl"
    assert main(["train", "--steps", "5", "--log", str(log), "--quiet", "--samples", "2"]) == 0
    for args in ([str(dumps / "loss.ir")], [str(dumps / "passes")], [str(log)],
                 [str(dumps / "passes" / "00-input.ir"), str(dumps / "passes" / "01-cse.ir")]):
        out = tmp_path / "page.html"
        assert main(["view", *args, "-o", str(out)]) == 0
        html = out.read_text(encoding="utf-8")
        p = check_self_contained(html)
        assert [t for t, _ in p.tags].count("script") == 2
        for svg in svgs_of(html):
            assert svg.tag == f"{SVG}svg"
    plot = svgs_of((tmp_path / "page.html").read_text())  # the last one: the diff
    assert plot
    assert main(["view", str(log), "-o", str(out)]) == 0
    line = svgs_of(out.read_text())[0].find(f".//{SVG}polyline")
    assert len(line.get("points").split()) == 5  # one point per step


def test_hostile_names_and_locs_stay_data(tmp_path):
    g = hostile_graph()
    html = view(g)
    p = check_self_contained(html)
    assert [t for t, _ in p.tags].count("script") == 2 and "alert(1)</script>" not in html
    assert "<b>" not in html and "\ud800" not in html
    for svg in svgs_of(html):  # the escaped text is still well-formed XML
        assert "alert(1)" in "".join(svg.itertext())
    data = json.loads(re.search(r'<script type="application/json" id="gptir-data">(.*?)</script>', html, re.S)[1])
    rec = next(iter(data["pages"][0]["nodes"].values()))
    assert "<script>" in rec["name"]  # the data is kept, as text for textContent
    diff = view(g, g.replace(params={k: v + 1 for k, v in g.params.items()}))
    check_self_contained(diff)
    # a loc from an IR file, through the parser
    ir = tmp_path / "evil.ir"
    ir.write_text('graph g {\n  in %x : f64[] loc("</script><script>alert(2)</script>\\"")\n'
                  "  output y = %x\n}\n")
    out = tmp_path / "evil.html"
    assert main(["view", str(ir), "-o", str(out)]) == 0
    text = out.read_text()
    assert "alert(2)</script>" not in text and text.count("<script") == 2


def test_view_api_writes_atomically_and_rejects_other_things(tmp_path):
    g = model()
    out = tmp_path / "g.html"
    text = gptir.view(g, out=str(out))
    assert out.read_text() == text and "gptir-data" in text
    assert gptir.view([("00-input.ir", g), ("01-cse.ir", model(1.0))]).count('class="page"') == 2
    with pytest.raises(TypeError):
        gptir.view("not a graph")
    assert gptir.to_dot(g).startswith('digraph "')


def test_cli_errors_are_one_line_with_exit_codes(tmp_path, capsys, dumps):
    loss = str(dumps / "loss.ir")
    cases = [
        (["view", str(tmp_path / "missing.ir"), "-o", str(tmp_path / "x.html")], 1, "cannot read"),
        (["view", loss, "-o", loss], 1, "refusing to overwrite an input"),
        (["dot", loss, "-o", loss], 1, "refusing to overwrite an input"),
        (["view", str(dumps / "passes"), "-o", str(dumps / "passes" / "00-input.ir")], 1, "one of the dumps"),
        (["view", str(dumps / "passes"), "-o", str(dumps / "passes" / "05-new.ir")], 1, "one of the dumps"),
        (["view", str(tmp_path), "-o", str(tmp_path / "x.html")], 1, "holds no *.ir dumps"),
        (["view", loss, "-o", str(tmp_path / "no" / "x.html")], 1, "folder does not exist"),
        (["view", "a", "b", "c"], 2, "expected"),
        (["dot"], 2, "required"),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"run": {}}\nnot json\n')
    cases.append((["view", str(bad), "-o", str(tmp_path / "x.html")], 1, "bad.jsonl:2: not a JSON line"))
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "link.ir"  # a symlink to an input is refused like the input itself
    link.symlink_to(loss)
    cases.append((["view", loss, "-o", str(link)], 1, "refusing to overwrite an input"))
    for args, code, msg in cases:
        capsys.readouterr()
        try:
            got = main(args)
        except SystemExit as e:  # argparse's usage errors
            got = e.code
        err = capsys.readouterr().err
        assert got == code, (args, err)
        assert msg in err and "Traceback" not in err, (args, err)


def test_view_writes_through_a_symlink_and_onto_a_device_like_every_verb(dumps, tmp_path):
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "target.html")  # dangling: writing creates the target
    assert main(["view", str(dumps / "loss.ir"), "-o", str(link)]) == 0
    assert link.is_symlink() and "gptir-data" in (tmp_path / "target.html").read_text()
    assert main(["dot", str(dumps / "loss.ir"), "-o", str(link)]) == 0
    assert link.is_symlink() and (tmp_path / "target.html").read_text().startswith("digraph")
    assert main(["view", str(dumps / "loss.ir"), "-o", os.devnull]) == 0
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


def test_dot_cli_writes_the_file(dumps, tmp_path):
    out = tmp_path / "g.dot"
    assert main(["dot", str(dumps / "loss.ir"), "-o", str(out)]) == 0
    assert out.read_text() == to_dot(gptir.load_graph(str(dumps / "loss.ir")))


def test_a_graph_too_big_to_draw_is_refused_up_front(monkeypatch, tmp_path, capsys):
    import gptir.viewer as gv

    monkeypatch.setattr(gv, "MAX_NODES", 5)
    with pytest.raises(gptir.GptirError, match="too many to draw"):
        view(model())
    ir = tmp_path / "m.ir"
    ir.write_text(gptir.print_graph(model()))
    assert main(["view", str(ir), "-o", str(tmp_path / "m.html")]) == 1
    assert "too many to draw" in capsys.readouterr().err and not (tmp_path / "m.html").exists()
