"""The text format: parse(print(g)) is g bit for bit, print(parse(t)) is t, bad text gives a
positioned ParseError (and nothing else, whatever the input), sidecar .npz params."""

from __future__ import annotations

import math
import os
import re
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gptir
from gptir.ir import GptirError, Graph, TensorType, verify
from gptir.ops import OPS
from gptir.text import (
    ParseError, format_float, load_graph, load_params, parse, print_graph, save_graph, save_params,
)
from gptir.tracing import Builder, Tracer

NEURON = '''graph neuron {
  in %x : f64[] loc("examples/neuron.py:10")
  param %w1 : f64[] = 0.5 loc("examples/neuron.py:10")
  param %w2 : f64[] = -0.3 loc("examples/neuron.py:10")
  %neuron.mul = mul %w1, %x : f64[] @neuron loc("examples/neuron.py:12")
  %neuron.add = add %neuron.mul, %w2 : f64[] @neuron loc("examples/neuron.py:12")
  %neuron.relu = relu %neuron.add : f64[] @neuron loc("examples/neuron.py:12")
  output out = %neuron.relu
}
'''


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


# -- round trip -------------------------------------------------------------------------------------

def test_neuron_round_trip_and_run() -> None:
    g = parse(NEURON, "neuron.ir")
    assert print_graph(g) == NEURON
    assert [n.op for n in g] == ["input", "param", "param", "mul", "add", "relu"]
    assert g["neuron.mul"].scope == "neuron" and g["neuron.mul"].loc == "examples/neuron.py:12"
    assert g.params["w1"].item() == 0.5
    assert gptir.run(g, {"x": 2.0})["out"] == 0.5 * 2.0 - 0.3


def test_comments_blank_lines_crlf_and_free_layout() -> None:
    text = "# a neuron\r\n\r\ngraph g {  # header comment\r\n  in %x : f64[2]   # the input\r\n\r\n" \
           "  %y = sum[keepdims=false, axes=(0,)] %x : f64[]\r\n  output out = %y }\r\n# trailing\r\n"
    g = parse(text)
    assert g["y"].attrs == {"axes": (0,), "keepdims": False}
    assert print_graph(g) == ("graph g {\n  in %x : f64[2]\n  %y = sum[axes=(0,), keepdims=false] %x : f64[]\n"
                              "  output out = %y\n}\n")
    one_line = "graph g { in %x : f64[] %y = neg %x : f64[] output out = %y }"
    assert parse(one_line).same_as(parse(print_graph(parse(one_line))))


EDGE_BITS = [bits(0.0), bits(-0.0), bits(math.inf), bits(-math.inf), 0x7FF8000000000000, 0x7FF8000000000001,
             0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000, 1, bits(5e-324), bits(1.7976931348623157e308),
             bits(0.1), bits(-2.5e-300)]


def test_float_literals_are_bit_exact() -> None:
    arr = np.array(EDGE_BITS, dtype=np.uint64).view(np.float64)
    b = Builder("floats")
    c = b.const(arr)
    w = b.param("w", TensorType.of(arr), arr)
    g = b.finish({"c": c, "w": w})
    text = print_graph(g)
    assert "nan(0x7ff8000000000001)" in text and "-0.0" in text and "-inf" in text and "nan(0x7ff0000000000001)" in text
    g2 = parse(text)
    assert g2.same_as(g)
    assert g2["const"].attrs["value"].view(np.uint64).tolist() == EDGE_BITS
    assert g2.params["w"].view(np.uint64).tolist() == EDGE_BITS
    assert print_graph(g2) == text


def test_special_float_spellings() -> None:
    text = "graph g { %c = const [inf, -inf, nan, -nan, +inf, 1e3, 2.5E-3, 3., .5, -0.0, 7] : f64[11] output out = %c }"
    v = parse(text)["c"].attrs["value"]
    assert v[:2].tolist() == [math.inf, -math.inf]
    assert bits(v[2]) == 0x7FF8000000000000 and bits(v[3]) == 0xFFF8000000000000
    assert v[4:].tolist() == [math.inf, 1000.0, 0.0025, 3.0, 0.5, -0.0, 7.0]
    assert math.copysign(1, v[9]) == -1


def test_int_bool_and_empty_literals() -> None:
    text = ("graph g {\n  %i = const [[1, -2], [9223372036854775807, -9223372036854775808]] : i64[2,2]\n"
            "  %b = const [true, false] : bool[2]\n  %e = const [] : f64[0,3]\n  %f = const [[]] : i64[1,0]\n"
            "  %s = const 3 : i64[]\n  output i = %i\n  output b = %b\n  output e = %e\n  output f = %f\n"
            "  output s = %s\n}\n")
    g = parse(text)
    assert g["i"].attrs["value"].tolist() == [[1, -2], [2**63 - 1, -(2**63)]]
    assert g["b"].attrs["value"].dtype == np.bool_ and g["b"].attrs["value"].tolist() == [True, False]
    assert g["e"].attrs["value"].shape == (0, 3) and g["f"].attrs["value"].shape == (1, 0)
    assert print_graph(g) == text


def test_keyword_like_names() -> None:
    text = "graph in {\n  in %param : f64[]\n  %graph = neg %param : f64[] @output loc(\"const\")\n" \
           "  output param = %graph\n}\n"
    g = parse(text)
    assert g.name == "in" and g.outputs == {"param": "graph"} and g["graph"].scope == "output"
    assert print_graph(g) == text


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
locs = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
edge_floats = st.one_of(st.floats(width=64), st.sampled_from(EDGE_BITS).map(from_bits))


def _value(draw: Any, ty: TensorType) -> np.ndarray:
    n = ty.size
    if ty.dtype == "f64":
        return np.array(draw(st.lists(edge_floats, min_size=n, max_size=n)), dtype=np.float64).reshape(ty.shape)
    if ty.dtype == "i64":
        return np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
                        dtype=np.int64).reshape(ty.shape)
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool).reshape(ty.shape)


shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)


@st.composite
def graphs(draw: Any) -> Graph:
    """A random valid graph: inputs, params and consts, then random ops applied to earlier values."""
    b = Builder(draw(names))
    vals: list[Tracer] = []
    for i in range(draw(st.integers(1, 3))):
        ty = TensorType(draw(st.sampled_from(["f64", "f64", "i64", "bool"])), draw(shapes))
        kind = draw(st.sampled_from(["input", "param", "param_novalue", "const"]))
        if kind == "input":
            vals.append(b.input(f"in{i}", ty))
        elif kind == "param":
            vals.append(b.param(f"p{i}", ty, _value(draw, ty)))
        elif kind == "param_novalue":
            vals.append(b.param(f"q{i}", ty))
        else:
            vals.append(b.const(_value(draw, ty), ty.dtype))
    for _ in range(draw(st.integers(0, 8))):
        x = draw(st.sampled_from(vals))
        sc = draw(st.sampled_from(["", "layer0", "layer0.attn", "a.b1"]))
        with b.origin(sc, draw(locs), draw(st.booleans())):
            made = _random_op(draw, b, x, vals)
        if made is not None:
            vals.append(made)
    outs = draw(st.lists(st.sampled_from(vals), min_size=1, max_size=3))
    out_names = draw(st.lists(names, min_size=len(outs), max_size=len(outs), unique=True))
    return b.finish(dict(zip(out_names, outs)))


def _random_op(draw: Any, b: Builder, x: Tracer, vals: list[Tracer]) -> Tracer | None:
    ty, numeric = x.type, x.dtype in ("f64", "i64")
    same = [v for v in vals if v.type == ty]
    choice = draw(st.sampled_from(["unary", "binary", "reduce", "reshape", "transpose", "broadcast", "slice",
                                   "concat", "cast", "where", "matmul", "gather", "scatter"]))
    if choice == "unary":
        ops = ["stop_gradient"] + (["neg", "relu", "abs"] if numeric else []) + \
              (["exp", "log", "tanh", "sigmoid", "sqrt", "sin", "cos"] if x.dtype == "f64" else [])
        return b.emit(draw(st.sampled_from(ops)), [x])
    if choice == "binary":
        ops = ["eq", "ne"] + (["add", "sub", "mul", "maximum", "minimum", "gt", "ge", "lt", "le"] if numeric else []) + \
              (["div", "pow"] if x.dtype == "f64" else [])
        return b.emit(draw(st.sampled_from(ops)), [x, draw(st.sampled_from(same))])
    if choice == "reduce" and numeric:
        axes = tuple(sorted(draw(st.sets(st.integers(0, max(ty.rank - 1, 0)), max_size=ty.rank)))) if ty.rank else ()
        op = draw(st.sampled_from(["max", "min", "argmax"])) if draw(st.booleans()) and all(
            ty.shape[a] for a in axes) else "sum"
        if op == "argmax":
            return b.emit(op, [x], {"axis": axes[0]}) if axes else None
        return b.emit(op, [x], {"axes": axes, "keepdims": draw(st.booleans())})
    if choice == "reshape":
        return b.emit("reshape", [x], {"shape": (ty.size,) if draw(st.booleans()) else ty.shape + (1,)})
    if choice == "transpose":
        return b.emit("transpose", [x], {"perm": tuple(draw(st.permutations(range(ty.rank))))})
    if choice == "broadcast":
        return b.emit("broadcast", [x], {"shape": (draw(st.integers(0, 2)),) + ty.shape})
    if choice == "slice":
        start = tuple(draw(st.integers(0, d)) for d in ty.shape)
        stop = tuple(draw(st.integers(s, d)) for s, d in zip(start, ty.shape))
        if draw(st.booleans()):  # steps of either sign (the attribute is optional: all ones if absent)
            sls = [slice(*slice(draw(st.none() | st.integers(-3, 3)), draw(st.none() | st.integers(-3, 3)),
                                draw(st.sampled_from([1, 2, -1, -3]))).indices(d)) for d in ty.shape]
            start = tuple(sl.start for sl in sls)
            stop = tuple(max(sl.start, sl.stop) if sl.step > 0 else min(sl.start, sl.stop) for sl in sls)
            return b.emit("slice", [x], {"start": start, "stop": stop, "step": tuple(sl.step for sl in sls)})
        return b.emit("slice", [x], {"start": start, "stop": stop})
    if choice == "concat" and ty.rank:
        return b.emit("concat", [x, draw(st.sampled_from(same))], {"axis": draw(st.integers(0, ty.rank - 1))})
    if choice == "cast":
        return b.emit("cast", [x], {"dtype": draw(st.sampled_from(["f64", "i64", "bool"]))})
    if choice == "where" and same:
        cond = b.emit("gt", [x, x]) if numeric else x
        return b.emit("where", [cond, x, draw(st.sampled_from(same))])
    if choice == "matmul" and numeric and ty.rank >= 1:
        w = b.const(_value(draw, TensorType(x.dtype, (ty.shape[-1], 2))), x.dtype)
        return b.emit("matmul", [x, w]) if ty.rank <= 2 else None
    if choice == "gather" and ty.rank >= 1 and ty.shape[0]:
        idx = b.const(np.array(draw(st.lists(st.integers(0, ty.shape[0] - 1), max_size=3)), dtype=np.int64), "i64")
        return b.emit("gather", [x, idx])
    if choice == "scatter" and numeric and ty.rank >= 1:
        size = draw(st.integers(1, 3))
        idx = b.const(np.array(draw(st.lists(st.integers(0, size - 1), min_size=ty.shape[0], max_size=ty.shape[0])),
                               dtype=np.int64).reshape(ty.shape[:1]), "i64")
        return b.emit("scatter_add", [x, idx], {"size": size})
    return None


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_round_trip(g: Graph) -> None:
    verify(g, OPS)
    text = print_graph(g)
    g2 = parse(text, "rt.ir")
    assert g2.same_as(g), text
    assert print_graph(g2) == text


# -- errors -----------------------------------------------------------------------------------------

HEAD = "graph g {\n  in %x : f64[3]\n"

ERRORS = [
    # (text, line, column, message)
    (HEAD + "  %mul = mul %w1, %x : @neuron\n}\n", 3, 24, "expected a type such as f64[3] after ':', found '@neuron'"),
    (HEAD + "  %y = neg %z : f64[3]\n  output out = %y\n}\n", 3, 12, "undefined value %z"),
    (HEAD + "  %y = neg %x : f64[3]\n  %y = neg %x : f64[3]\n  output out = %y\n}\n", 4, 3,
     "duplicate definition of %y (first defined on line 3)"),
    (HEAD + "  %y = add %x : f64[3]\n  output out = %y\n}\n", 3, 3, "%y = add: expects 2 operand(s), got 1"),
    (HEAD + "  %y = negate %x : f64[3]\n  output out = %y\n}\n", 3, 8, "unknown op 'negate' (did you mean 'neg'?)"),
    (HEAD + "  %y = neg[alpha=1] %x : f64[3]\n  output out = %y\n}\n", 3, 12, "neg has no attribute alpha (it takes: none)"),
    (HEAD + "  %y = neg %x : f64[4]\n  output out = %y\n}\n", 3, 3,
     "%y = neg: type rule gives f64[3], but the declared type is f64[4]"),
    (HEAD + "  %c = const [1.0, 2.0] : f64[3]\n  output out = %c\n}\n", 3, 14,
     "the literal does not match its type f64[3]: expected 3 item(s) at depth 1, got 2"),
    (HEAD + "  output out = %nope\n}\n", 3, 16, "output out refers to undefined value %nope"),
    (HEAD + "}\n", 3, 1, "graph g has no outputs"),
    (HEAD + "  %y = sum[axes=0, keepdims=false] %x : f64[]\n  output out = %y\n}\n", 3, 17,
     "attribute axes must be a tuple of integers like (0, 1) or (0,), got '0'"),
    (HEAD + "  %y = cast[dtype=f16] %x : f64[3]\n  output out = %y\n}\n", 3, 19, "attribute dtype must be a dtype"),
    ("graph g {\n  in %x : f16[3]\n}\n", 2, 11, "unknown dtype 'f16' (expected f64, f32, i64 or bool)"),
    ("graph g {\n  in %x : f64[3] $\n}\n", 2, 18, "unexpected character '$'"),
    ("graph g {\n  in %x f64[3]\n}\n", 2, 9, "expected ':', found 'f64'"),
    ("graph g {\n  in %x : f64[3]\n  %y = neg %x, : f64[3]\n", 3, 16, "expected a value name like %x after ','"),
    (HEAD + "  %y = neg %x : f64[3] loc(\"abc\n}\n", 3, 28, "unterminated string"),
    (HEAD + "  %y = neg %x : f64[3]\n  output out = %y\n", 4, 18, "unexpected end of file: expected"),
    (HEAD + "  %y = neg %x : f64[3]\n  output out = %y\n} extra\n", 5, 3, "expected the end of the file, found 'extra'"),
    (HEAD + "  %c = const 1e999 : f64[]\n  output out = %c\n}\n", 3, 14, "is too large for f64"),
    (HEAD + "  %c = const 9223372036854775808 : i64[]\n  output out = %c\n}\n", 3, 14, "does not fit in a 64-bit integer"),
    (HEAD + "  %c = const nan(0x0) : f64[]\n  output out = %c\n}\n", 3, 14, "those bits are not a NaN"),
    (HEAD + "  %c = const 1.5 : i64[]\n  output out = %c\n}\n", 3, 14, "must be an integer"),
    (HEAD + "  %y = input %x : f64[3]\n  output out = %y\n}\n", 3, 8, "'input' is not an op here"),
    (HEAD + "  %y = sum[axes=(0,), axes=(0,), keepdims=true] %x : f64[1]\n  output out = %y\n}\n", 3, 23,
     "attribute axes is given twice"),
    (HEAD + "  output out = %x\n  output out = %x\n}\n", 4, 10, "duplicate output out"),
    # a value defined later in the file: out of order, or a cycle (at the line of its first node)
    (HEAD + "  %y = neg %z : f64[3]\n  %z = neg %x : f64[3]\n  output out = %y\n}\n", 3, 12,
     "%z is used before its definition (line 4); values must be defined before they are used"),
    (HEAD + "  %a = add %x, %b : f64[3]\n  %b = neg %a : f64[3]\n  output out = %b\n}\n", 3, 3,
     "cycle: %a -> %b -> %a"),
    (HEAD + "  %a = neg %a : f64[3]\n  output out = %a\n}\n", 3, 3, "cycle: %a -> %a"),
]


@pytest.mark.parametrize("text,line,column,message", ERRORS)
def test_positioned_errors(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text, "model.ir")
    err = e.value
    assert (err.line, err.column) == (line, column), str(err)
    assert message in err.reason
    assert err.filename == "model.ir"
    assert err.source_line == text.split("\n")[line - 1]
    first, *rest = str(err).split("\n")
    assert first == f"model.ir:{line}:{column}: {err.reason}"
    if err.source_line.strip():
        assert rest[0] == "    " + err.source_line.rstrip()
        assert rest[1] == "    " + " " * (column - 1) + "^"
    for internal in ("__ANON", "PERCENT", "RSQB", "LSQB", "VALUE", "NUMBER", "$END", "Token("):
        assert internal not in str(err)


def test_caret_example_from_the_docs() -> None:
    with pytest.raises(ParseError) as e:
        parse("graph neuron {\n  in %x : f64[]\n  %mul = mul %w1, %x : @neuron\n}\n", "model.ir")
    assert str(e.value) == ("model.ir:3:24: expected a type such as f64[3] after ':', found '@neuron'\n"
                            "      %mul = mul %w1, %x : @neuron\n"
                            "                           ^")


def test_cycles_are_named() -> None:
    # %p is fine; %a reads %c (later); %c reads %b reads %a: the cycle %a -> %b -> %c -> %a, reported
    # at %a (line 4), in data-flow order (each value is read by the next), not as "undefined value"
    text = (HEAD + "  %p = neg %x : f64[3]\n  %a = add %p, %c : f64[3]\n  %b = neg %a : f64[3]\n"
            "  %c = mul %b, %x : f64[3]\n  output out = %c\n}\n")
    with pytest.raises(ParseError) as e:
        parse(text, "m.ir")
    assert str(e.value).split("\n")[0] == "m.ir:4:3: cycle: %a -> %b -> %c -> %a (a value cannot depend on itself)"
    # a forward reference that is not part of the cycle is only out of order ...
    text = (HEAD + "  %a = neg %q : f64[3]\n  %q = neg %x : f64[3]\n  %b = neg %c : f64[3]\n"
            "  %c = neg %b : f64[3]\n  output out = %a\n}\n")
    with pytest.raises(ParseError, match=r"^m.ir:3:12: %q is used before its definition \(line 4\)"):
        parse(text, "m.ir")
    # ... and the shortest cycle through the node is named when there are several
    text = (HEAD + "  %a = add %b, %c : f64[3]\n  %c = neg %b : f64[3]\n  %b = neg %a : f64[3]\n"
            "  output out = %a\n}\n")
    with pytest.raises(ParseError, match=r"^m.ir:3:3: cycle: %a -> %b -> %a "):
        parse(text, "m.ir")
    # a name never defined anywhere stays "undefined"
    with pytest.raises(ParseError, match=r"^m.ir:3:16: undefined value %nope \(values must be defined"):
        parse(HEAD + "  %a = add %x, %nope : f64[3]\n  output out = %a\n}\n", "m.ir")


def test_inline_value_with_sidecar_is_rejected() -> None:
    with pytest.raises(ParseError, match="takes its param values from"):
        parse('graph g {\n  params "w.npz"\n  param %w : f64[] = 1.0\n  output out = %w\n}\n')


def test_hostile_inputs_raise_parse_error_only() -> None:
    deep = "[" * 20000 + "]" * 20000
    cases = [
        "", "}", "graph", "graph g {", "\x00", "graph g { in %x : f64[" + "9" * 5000 + "] }",
        "graph g { in %x : f64[" + ",".join(["1"] * 100) + "] output o = %x }",
        HEAD + "  %c = const " + deep + " : f64[1]\n output o = %c }",
        HEAD + "  %c = const " + deep + " : f64[]\n output o = %c }",
        HEAD + "  %y = reshape[shape=(" + "9" * 30 + ",)] %x : f64[3]\n output o = %y }",
        HEAD + "  %y = reshape[shape=(9223372036854775807, 2)] %x : f64[3]\n output o = %y }",
        HEAD + "  %c = const [] : f64[0," + "999999999999999999," * 3 + "1]\n output o = %c }",
        HEAD + "  %y = neg %x : f64[3] loc(\"\\ud800\")\n output o = %y }",
        HEAD + "  %y = sum[axes=(" + "0," * 1000 + "), keepdims=true] %x : f64[1]\n output o = %y }",
        HEAD + "  %y = slice[start=(-1,), stop=(1,)] %x : f64[2]\n output o = %y }",
        HEAD + "  %y = broadcast[shape=(-3,)] %x : f64[3]\n output o = %y }",
        HEAD + "  %y = scatter_add[size=-1] %x, %x : f64[3]\n output o = %y }",
        HEAD + "  %y = concat[axis=5] %x, %x : f64[6]\n output o = %y }",
    ]
    for text in cases:
        try:
            parse(text)
        except ParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_parse_errors(text: str) -> None:
    try:
        parse(text)
    except ParseError:
        pass


TOKENS = st.sampled_from(["graph", "g", "{", "}", "in", "param", "%x", "%y", ":", "f64[3]", "i64[]", "=", "neg",
                          "add", "sum", "[", "]", "(", ")", ",", "axes", "1", "-0.0", "nan(0x7ff8000000000001)",
                          "true", "const", "output", "out", "@s", 'loc("a")', "backward", "\n", "#c\n", "params",
                          '"w.npz"', "inf", "-inf", "1e999", "99999999999999999999"])


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40))
def test_random_token_soup_only_parse_errors(tokens: list[str]) -> None:
    try:
        parse(" ".join(tokens))
    except ParseError as e:
        no_internal_names(e)


SAMPLE = print_graph(gptir.trace(
    lambda x, w: (gptir.relu(x @ w).sum(axis=0, keepdims=True), gptir.cast(x > 0.5, "i64")),
    "f64[2,3]", gptir.Param(np.arange(12.0).reshape(3, 4) - 5.5), name="sample"))


INTERNAL = re.compile(r"__ANON|\$END|<END-OF-FILE>|\b[A-Z][A-Z_]{2,}\b")


def no_internal_names(err: ParseError) -> None:
    """Messages never show lark's terminal names (quoted input text is allowed to be anything)."""
    assert not INTERNAL.search(re.sub(r"'[^']*'|\"[^\"]*\"", "", err.reason)), err.reason


MUTATIONS = list("%@[](){},:=#\"\\.-+0123456789e xfinaf64") + ["\n", "nan", "inf"]


def mutated(data: st.DataObject, text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` after one to three random deletions, insertions or replacements."""
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        ch = data.draw(st.sampled_from(MUTATIONS + list(extra)))
        if kind == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 5)):]
        elif kind == "insert":
            text = text[:pos] + ch + text[pos:]
        else:
            text = text[:pos] + ch + text[pos + 1:]
    return text


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutations_of_valid_text_only_parse_errors(data: st.DataObject) -> None:
    text = mutated(data, SAMPLE)
    try:
        g = parse(text)
    except ParseError as e:
        no_internal_names(e)
        return
    verify(g, OPS)  # whatever parses is a valid graph
    assert parse(print_graph(g)).same_as(g)


# -- files and sidecars -----------------------------------------------------------------------------

def _param_graph() -> Graph:
    return gptir.trace(lambda x, w, file: gptir.relu(x * w + file), "f64[2]",
                       gptir.Param(np.array([0.5, -0.0])), gptir.Param(np.array([np.nan, 1.0])), name="pg")


def test_save_and_load_with_sidecar(tmp_path: Any) -> None:
    g = _param_graph()
    ir, npz = tmp_path / "m.ir", tmp_path / "weights" / "m.npz"
    npz.parent.mkdir()
    save_graph(g, str(ir), sidecar=str(npz))
    text = ir.read_text()
    assert 'params "weights/m.npz"' in text and "= [" not in text
    g2 = load_graph(str(ir))
    assert g2.params_file == "weights/m.npz"
    assert g2.same_as(g.replace(params_file="weights/m.npz"))
    assert np.load(str(npz))["file"].tobytes() == g.params["file"].tobytes()  # a param named like np.savez's arg
    # without base_dir the sidecar is only named, not loaded
    assert parse(text).params == {}
    # save without a sidecar: values go inline
    save_graph(g2, str(tmp_path / "inline.ir"))
    assert load_graph(str(tmp_path / "inline.ir")).same_as(g)


def test_sidecar_errors(tmp_path: Any) -> None:
    g = _param_graph()
    ir = tmp_path / "m.ir"
    save_graph(g, str(ir), sidecar=str(tmp_path / "m.npz"))
    os.remove(tmp_path / "m.npz")
    with pytest.raises(ParseError, match=r"m.ir:2:10: params file .*m.npz does not exist"):
        load_graph(str(ir))
    (tmp_path / "m.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ParseError, match="is not a valid .npz archive"):
        load_graph(str(ir))
    save_params(str(tmp_path / "m.npz"), {"w": np.zeros(3)})
    with pytest.raises(ParseError, match=r"%w is f64\[2\], but m.npz holds a f64\[3\] value for it"):
        load_graph(str(ir))
    save_params(str(tmp_path / "m.npz"), {"zzz": np.zeros(3)})
    with pytest.raises(ParseError, match="holds a value for zzz, which is not a param of graph pg"):
        load_graph(str(ir))
    np.save(str(tmp_path / "obj.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    os.replace(tmp_path / "obj.npy", tmp_path / "m.npz")
    with pytest.raises(GptirError):
        load_graph(str(ir))


def test_params_round_trip_and_errors(tmp_path: Any) -> None:
    p = str(tmp_path / "p.npz")
    values = {"layer0.w": np.arange(6.0).reshape(2, 3), "file": np.array([1, 2]), "b": np.array(True)}
    save_params(p, values)
    back = load_params(p)
    assert back.keys() == values.keys()
    for k in values:
        assert back[k].dtype == values[k].dtype and np.array_equal(back[k], values[k])
    np.savez(str(tmp_path / "f16.npz"), w=np.zeros(2, dtype=np.float16))
    with pytest.raises(GptirError, match="has dtype float16"):
        load_params(str(tmp_path / "f16.npz"))
    with pytest.raises(GptirError, match="does not exist"):
        load_params(str(tmp_path / "missing.npz"))


def test_npz_reader_fast_path_gives_what_numpys_reader_gives() -> None:
    import io
    import zipfile

    from gptir.fileio import NpzError, _plain_header, npz_header, npz_read, open_npz

    arrays = {"a": np.arange(6.0).reshape(2, 3), "s": np.array(2.5), "e": np.zeros((0, 4)), "b": np.array([True, False]),
              "i": np.arange(5, dtype=np.int64), "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "be": np.arange(3, dtype=">f8"), "f4": np.ones(3, np.float32), "u1": np.arange(3, dtype=np.uint8),
              "long": np.arange(4.0).reshape(1, 1, 1, 1, 1, 4)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zw:
        for k, v in arrays.items():
            with zw.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v, version=(2, 0) if k == "i" else None)
        with zw.open("short.npy", "w") as f:  # a header declaring 100 values, and 10 of them
            full = io.BytesIO()
            np.lib.format.write_array(full, np.zeros(100))
            f.write(full.getvalue()[:-720])
    data = buf.getvalue()
    zf, ref = open_npz(data, "t"), np.load(io.BytesIO(data))
    for k, v in arrays.items():
        got = npz_read(zf, k, "t")
        assert got.dtype == ref[k].dtype == v.dtype and got.shape == ref[k].shape == v.shape, k
        assert np.array_equal(got, v) and got.flags.f_contiguous == ref[k].flags.f_contiguous, k
        assert got.flags.writeable
        assert npz_header(zf, k, "t") == (v.dtype, v.shape)
        with zf.open(k + ".npy") as f:  # the fast path takes all but the Fortran-order array
            assert (_plain_header(f) is None) == (k == "f"), k
    with pytest.raises(NpzError, match="short declares 800 bytes but holds less"):
        npz_read(zf, "short", "t")


def test_load_graph_errors(tmp_path: Any) -> None:
    with pytest.raises(GptirError, match="cannot read"):
        load_graph(str(tmp_path / "missing.ir"))
    (tmp_path / "bin.ir").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GptirError, match="not a UTF-8 text file"):
        load_graph(str(tmp_path / "bin.ir"))
    (tmp_path / "bad.ir").write_text("graph g {\n  in %x : f64[]\n")
    with pytest.raises(ParseError) as e:
        load_graph(str(tmp_path / "bad.ir"))
    assert e.value.filename == str(tmp_path / "bad.ir") and e.value.line == 2


def test_grammar_is_strict_lalr() -> None:
    import interegular  # noqa: F401 - lark's strict mode needs it (a runtime dependency): fail, not skip

    from gptir.text import _parser

    _parser.cache_clear()
    parser = _parser()
    assert parser.options.parser == "lalr" and parser.options.strict


def test_format_float_is_repr() -> None:
    for x in [0.1, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 123456789.123]:
        assert float(format_float(x)) == x and format_float(x) == repr(x)


def test_a_byte_order_mark_is_ignored() -> None:
    from gptir.text import parse
    g = parse("\ufeffgraph g {\n  in %x : f64[]\n  output o = %x\n}\n")
    assert list(g.outputs) == ["o"]
