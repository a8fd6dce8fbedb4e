"""The parser's fast path gives exactly what the exact path gives: the same graph, or the same error.

:func:`gptir.parser.parse` tries :func:`gptir.fastparse.parse_fast` and, on anything it does not take,
parses again with :func:`gptir.parser.parse_exact` (lark's tree). These tests run texts through both:
valid texts must come out identical (and take the fast path), every positioned error case of
test_text and fuzzed or mutated text must give the same result (graph or error message), and bulk
literals must be bit-exact. Also: the printer and diff never load lark, and ``gptir --help`` loads
neither numpy nor a verb's module.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_text import EDGE_BITS, ERRORS, NEURON, SAMPLE, TOKENS, graphs, mutated

import gptir
from gptir.diagnostics import ParseError
from gptir.fastparse import parse_fast
from gptir.ir import Graph
from gptir.parser import BulkLiteral, Fallback, parse, parse_exact
from gptir.text import print_graph


def outcome(fn: Any, text: str) -> Any:
    """A graph's text and params, or the error message (what a user of either path can see)."""
    try:
        g = fn(text)
    except ParseError as e:
        return ("error", str(e))
    return ("graph", g)


def same(a: Any, b: Any) -> bool:
    if a[0] != b[0]:
        return False
    return a[1] == b[1] if a[0] == "error" else a[1].same_as(b[1])


def check_both(text: str, must_be_fast: bool = False) -> None:
    """parse() equals parse_exact(); what the fast path returns (if anything) equals it too."""
    exact = outcome(lambda t: parse_exact(t, "f.ir"), text)
    assert same(outcome(lambda t: parse(t, "f.ir"), text), exact)
    try:
        fast = parse_fast(text, None)
    except Fallback:
        assert not must_be_fast, "the fast path fell back on valid canonical text"
        return
    except Exception as e:  # parse() falls back on these too, but the fast path should not raise them
        raise AssertionError(f"fast path raised {type(e).__name__}: {e}") from e
    assert exact[0] == "graph", f"the fast path accepted text the exact path rejects: {exact[1]}"
    assert fast.same_as(exact[1])


def test_canonical_texts_take_the_fast_path() -> None:
    model = gptir.trace(lambda x, w: gptir.relu(x @ w).sum(axis=0, keepdims=True), "f64[2,3]",
                        gptir.Param(np.arange(12.0).reshape(3, 4) - 5.5), name="m")
    for text in (NEURON, SAMPLE, print_graph(model), print_graph(model, inline_params=False)):
        check_both(text, must_be_fast=True)


def test_the_microgpt_loss_graph_round_trips_on_the_fast_path() -> None:
    from gptir.cli.trace_microgpt import trace_microgpt

    g = trace_microgpt(argparse.Namespace(n_layer=1, seed=42))
    text = print_graph(g)
    fast = parse_fast(text, None)
    assert fast.same_as(parse_exact(text)) and fast.same_as(g)
    assert all(np.array_equal(fast.params[k], g.params[k]) for k in g.params)


@settings(max_examples=60, deadline=None)
@given(graphs())
def test_random_graphs_take_the_fast_path(g: Graph) -> None:
    text = print_graph(g)
    fast = parse_fast(text, None)
    assert fast.same_as(g) and fast.same_as(parse_exact(text)), text


@pytest.mark.parametrize("text,line,column,message", ERRORS)
def test_positioned_errors_are_the_exact_paths(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(Fallback):
        parse_fast(text, None)
    with pytest.raises(ParseError) as fast_path_error:
        parse(text, "model.ir")
    with pytest.raises(ParseError) as exact_error:
        parse_exact(text, "model.ir")
    assert str(fast_path_error.value) == str(exact_error.value)
    assert (fast_path_error.value.line, fast_path_error.value.column) == (line, column)
    assert message in fast_path_error.value.reason


def test_bulk_literals_are_bit_exact() -> None:
    bits = np.array(EDGE_BITS * 3, dtype=np.uint64)
    values = bits.view(np.float64).reshape(3, len(EDGE_BITS))
    ints = np.array([[0, -1, 2**63 - 1], [-(2**63), 7, -0]], dtype=np.int64)
    bools = np.array([[True, False], [False, True]])
    text = ("graph lits {\n"
            f"  %f = const {gptir.text.format_literal(values)} : f64[3,{len(EDGE_BITS)}]\n"
            f"  %i = const {gptir.text.format_literal(ints)} : i64[2,3]\n"
            f"  %b = const {gptir.text.format_literal(bools)} : bool[2,2]\n"
            "  output f = %f\n  output i = %i\n  output b = %b\n}\n")
    fast = parse_fast(text, None)
    assert fast["f"].attrs["value"].view(np.uint64).tolist() == bits.reshape(3, -1).tolist()
    assert fast["i"].attrs["value"].tolist() == ints.tolist()
    assert fast["b"].attrs["value"].tolist() == bools.tolist()
    check_both(text, must_be_fast=True)


@pytest.mark.parametrize("literal,ty", [
    ("[1.0, 2.0, 3.0]", "f64[2]"), ("[[1.0, 2.0], [3.0]]", "f64[2,2]"), ("[1.0 2.0]", "f64[2]"),
    ("[1.0,, 2.0]", "f64[2]"), ("[1.0, 2.0,]", "f64[2]"), ("[[1.0, 2.0] 3.0, [4.0, ]]", "f64[2,2]"),
    ("[1e999, 1.0]", "f64[2]"), ("[1.5, 2]", "i64[2]"), ("[99999999999999999999, 1]", "i64[2]"),
    ("[true, 1]", "bool[2]"), ("[infinity, 1.0]", "f64[2]"), ("[1.0e, 1.0]", "f64[2]"), ("[1_0, 1.0]", "f64[2]"),
    ("[nan(0x7ff8000000000001), -nan, +inf]", "f64[3]"), ("[]", "f64[0,3]"), ("[[], []]", "f64[2,0]"),
    ("[-0.0, .5, 5., +1e-3]", "f64[4]"), ("[+5, -0, 007]", "i64[3]"), ("[1.0]", "f64[]"),
    ("[[1.0]]", "f64[1]"), ("[1.0\v, 2.0]", "f64[2]"), ("[1.0\u00a0, 2.0]", "f64[2]"),
])
def test_odd_literals_give_what_the_exact_path_gives(literal: str, ty: str) -> None:
    check_both(f"graph g {{\n  %c = const {literal} : {ty}\n  output out = %c\n}}\n")
    check_both(f"graph g {{\n  param %w : {ty} = {literal} @s loc(\"a.py:1\")\n  output out = %w\n}}\n")


def test_a_bulk_literal_is_read_whole() -> None:
    text = "graph g {\n  %c = const [[1.0, 2.0], [3.0, 4.0]] : f64[2,2]\n  output out = %c\n}\n"
    from gptir import fastparse

    name, stmts = fastparse._drive(fastparse._machine(), text)
    assert name == "g" and isinstance(stmts[0][2], BulkLiteral)


@settings(max_examples=150, deadline=None)
@given(st.lists(TOKENS, max_size=40))
def test_token_soup_gives_the_same_result_on_both_paths(tokens: list[str]) -> None:
    check_both(" ".join(tokens))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_text_gives_the_same_result_on_both_paths(data: st.DataObject) -> None:
    text = mutated(data, data.draw(st.sampled_from([SAMPLE, NEURON])),
                   ("const", "backward", "# c\n", "\t", "true"))
    check_both(text)


def test_a_comment_runs_to_the_end_of_its_line_on_the_fast_path() -> None:
    """A '#' right after a statement comments out the rest of the line, statements included (the
    fast path's statement pattern once let a comment give back its tail and read a statement there)."""
    head = "graph g {\n  in %x : f64[2]\n  %y = neg %x : f64[2]\n  output a = %x#  output b = %y\n"
    for tail, outputs in (("  output c = %y\n}\n", {"a": "x", "c": "y"}), ("}\n", {"a": "x"})):
        check_both(head + tail, must_be_fast=True)
        assert parse(head + tail).outputs == outputs
        assert parse_fast(head + tail, None).outputs == outputs


def test_comments_and_free_layout_inside_statements() -> None:
    text = ("graph g {\n  in %x : f64[2] # c\n  %y = sum[ axes = ( 0 , ) ,keepdims=false ]%x:f64[]@a.b\n"
            "  %z = neg # mid-statement comment\n %y : f64[] loc( \"f.py:1\" ) backward\n"
            "  %c = const\n [1.0,\n 2.0] : f64[2]\n  output out = %z output c = %c}")
    check_both(text, must_be_fast=True)


@pytest.mark.parametrize("text,line,column,fast", [
    ('graph g {\n  in %x : f64[] loc("m.py:\\ud800")\n  output y = %x\n}\n', 2, 21, True),  # a whole statement
    ('graph g {\n  in %x # c\n : f64[] loc("\\udfff")\n  output y = %x\n}\n', 3, 14, True),  # token by token
    ('graph g {\n  params "p\\ud800.npz"\n  param %w : f64[]\n  output y = %w\n}\n', 2, 10, True),  # the header
])
def test_a_lone_surrogate_is_refused_by_both_paths_alike(text: str, line: int, column: int, fast: bool) -> None:
    with pytest.raises(Fallback):
        parse_fast(text, None)
    with pytest.raises(ParseError) as via_parse:
        parse(text, "s.ir")
    with pytest.raises(ParseError) as exact:
        parse_exact(text, "s.ir")
    assert str(via_parse.value) == str(exact.value)
    assert (exact.value.line, exact.value.column) == (line, column) and "lone surrogate" in exact.value.reason
    pair = text.replace("\\ud800", "\\ud83d\\ude00").replace("\\udfff", "\\ud83d\\ude00")
    check_both(pair, must_be_fast=fast)  # a proper pair is a character: the fast path takes it


def _many(body: list[str], outputs: str = "  output out = %y0\n") -> str:
    return "graph g {\n  in %x : f64[3]\n  in %s : f64[]\n" + "".join(body) + outputs + "}\n"


def test_a_long_run_of_statements_takes_the_shortcut_and_keeps_every_record() -> None:
    from gptir import fastparse

    kinds = [
        "  %y{i} = add %x, %x : f64[3] @a loc(\"m.py:{i}\")\n",
        "  %c{i} = const [1.0, 2.0, {i}.5] : f64[3]\n",
        "  param %p{i} : f64[] = {i}.25 backward\n",
        "  %z{i} = mul[] %s, %s : f64[]\n",
        "  in %q{i} : f64[2]\n",
        "  output o{i} = %x\n",
    ]
    order = [k for a in range(6) for b in range(6) for k in (a, b)] * 2  # every kind after every kind
    assert {(a, b) for a, b in zip(order, order[1:])} == {(a, b) for a in range(6) for b in range(6)}
    body = [kinds[k].format(i=i) for i, k in enumerate(order, 1)]
    text = _many(["  %y0 = neg %x : f64[3]\n"] + body)
    name, stmts = fastparse._drive(fastparse._machine(), text)
    assert name == "g" and len(stmts) == 2 + 1 + len(order) + 1
    assert [r[0] for r in stmts[3:-1]] == [("op", "const", "param", "op", "input", "output")[k] for k in order]
    check_both(text, must_be_fast=True)
    # an error deep in a run of shortcut statements: the exact path's message and position
    for bad, line, column in (("  %bad = add %x %x : f64[3]\n", 65, 17), ("  %bad = add %x, %s : f64[2]\n", 65, 3),
                              ("  %bad = add %nope, %x : f64[3]\n", 65, 14)):
        broken = _many(["  %y0 = neg %x : f64[3]\n"] + body[:60] + [bad] + body[60:])
        with pytest.raises(ParseError) as e:
            parse(broken, "f.ir")
        assert (e.value.line, e.value.column) == (line, column), str(e.value)
        check_both(broken)


def test_a_checked_node_does_not_vouch_for_one_with_other_operand_types() -> None:
    # same op, same attribute text, same declared type: only the operand types differ
    same = [f"  %y{i} = sum[axes=(0,), keepdims=false] %x : f64[]\n" for i in range(1, 5)]
    text = _many(["  %y0 = neg %x : f64[3]\n", "  in %m : f64[2,3]\n"] + same +
                 ["  %w = sum[axes=(0,), keepdims=false] %m : f64[]\n"])
    with pytest.raises(ParseError) as e:
        parse(text, "f.ir")
    assert e.value.line == 10 and "type rule gives f64[3], but the declared type is f64[]" in e.value.reason
    check_both(text)
    check_both(text.replace("sum[axes=(0,), keepdims=false] %m : f64[]", "sum[axes=(0,), keepdims=false] %m : f64[3]"),
               must_be_fast=True)


# -- what each module loads ----------------------------------------------------------------------------

def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_printer_and_diff_do_not_load_lark() -> None:
    mods = _loaded_after("import gptir.printer, gptir.diff, gptir.graphio, gptir.text\n"
                         "from gptir.text import print_graph, format_node, ParseError, save_graph")
    assert "lark" not in mods


def test_gptir_help_loads_no_numpy_and_lists_every_verb() -> None:
    code = ("import contextlib, io\nfrom gptir.cli import main, VERB_TABLE\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    try:\n        main(['--help'])\n"
            "    except SystemExit:\n        pass\n"
            "import sys\nassert all(h.split()[0] in buf.getvalue() for _, _, h in VERB_TABLE), buf.getvalue()")
    mods = _loaded_after(code)
    assert "numpy" not in mods and "lark" not in mods and not any(m.startswith("gptir.cli.cmd_") for m in mods)


def test_a_verb_loads_only_its_own_module() -> None:
    code = ("import contextlib, io\nfrom gptir.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['grad', '--help'])\n"
            "    except SystemExit:\n        pass\n")
    assert {m for m in _loaded_after(code) if m.startswith("gptir.cli.cmd_")} == {"gptir.cli.cmd_grad"}


def test_the_verb_table_matches_each_verbs_own_help() -> None:
    from gptir.cli import VERB_TABLE

    for verb, module, help_text in VERB_TABLE:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        (action,) = sub._choices_actions
        assert (action.dest, action.help) == (verb, help_text)


def test_lazy_package_names() -> None:
    assert gptir.parse is gptir.text.parse and gptir.OPS is importlib.import_module("gptir.ops").OPS
    from gptir import value as V

    assert V.leaf(2.0, "a").data == 2.0
    with pytest.raises(AttributeError):
        getattr(gptir, "no_such_name")
    assert all(getattr(gptir, name) is not None for name in gptir.__all__)
