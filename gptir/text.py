"""The text format: a hand-written printer and a lark (LALR) parser.

One node per line, SSA, every value typed, scope and location visible::

    graph neuron {
      in %x : f64[] loc("examples/neuron.py:12")
      param %w1 : f64[] = 0.5
      %mul = mul %w1, %x : f64[] @neuron loc("examples/neuron.py:8")
      %sum = sum[axes=(0,), keepdims=false] %v : f64[]
      output out = %relu
    }

Floats print with ``repr`` (which round-trips), spelled ``inf``/``-inf``/``nan``; a NaN whose bits are
not the canonical quiet NaN prints as ``nan(0x...)`` with its bits, so parse(print(g)) is bit-exact.

The parser (:func:`parse`) reads what the printer writes, plus ``#`` comments to the end of a line
and free whitespace; the grammar is ``grammars/gptir.lark``. Values must be defined before use; a
value used too early is reported as out of order, or as a cycle (``cycle: %a -> %b -> %a``) if it is one.
Every problem, syntactic or semantic, is a :class:`ParseError` with file, line, column and a caret.
Param values can live in an ``.npz`` sidecar named by a ``params "file.npz"`` header
(:func:`load_graph`, :func:`save_graph`, :func:`load_params`, :func:`save_params`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import io
import json
import math
import os
import re
import struct
import zipfile
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from gptir.fileio import (
    atomic_write_bytes, atomic_write_text, npz_header, npz_names, npz_read, open_npz, read_bytes, read_text,
)
from gptir.ir import (
    ATTR_KINDS, DTYPES, FLOATS, NUMPY_DTYPES, GptirError, Graph, Node, ShapeError, TensorType, VerifyError,
    attr_kind_of, check_node, short, verify,
)
from gptir.ops import OPS

CANONICAL_NAN = 0x7FF8000000000000


def format_float(x: float) -> str:
    if math.isnan(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        return "nan" if bits == CANONICAL_NAN else f"nan(0x{bits:016x})"
    return repr(float(x))


def format_scalar(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return format_float(float(x))


def format_literal(arr: np.ndarray) -> str:
    """A tensor literal: a scalar, or nested brackets (``[[1.0, 2.0], [3.0, 4.0]]``)."""
    if arr.ndim == 0:
        return format_scalar(arr.item())
    return "[" + ", ".join(format_literal(a) for a in arr) + "]" if arr.shape[0] else "[]"


def format_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _format_value(v: Any) -> str:
    return format_literal(v) if isinstance(v, np.ndarray) else format_scalar(v)


def format_attr(v: Any) -> str:
    return attr_kind_of(v).format(v, _format_value)


def format_attrs(attrs: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    items = [f"{k}={format_attr(attrs[k])}" for k in sorted(attrs) if k not in skip]
    return f"[{', '.join(items)}]" if items else ""


def _meta(node: Node) -> str:
    parts = []
    if node.scope:
        parts.append(f"@{node.scope}")
    if node.loc:
        parts.append(f"loc({format_string(node.loc)})")
    if node.backward:
        parts.append("backward")
    return (" " + " ".join(parts)) if parts else ""


def format_node(node: Node, value: np.ndarray | None = None) -> str:
    """One line of IR for ``node`` (``value`` is an inline param value, if any)."""
    if node.op in ("input", "param"):
        kw = "in" if node.op == "input" else "param"
        init = f" = {format_literal(value)}" if value is not None else ""
        return f"{kw} %{node.name} : {node.type}{init}{_meta(node)}"
    if node.op == "const":
        return f"%{node.name} = const {format_literal(node.attrs['value'])} : {node.type}{_meta(node)}"
    operands = ", ".join(f"%{i}" for i in node.inputs)
    return f"%{node.name} = {node.op}{format_attrs(node.attrs)} {operands} : {node.type}{_meta(node)}"


def print_graph(graph: Graph, inline_params: bool = True) -> str:
    """The canonical text of ``graph``. With ``inline_params=False`` values stay out of the text
    (they live in the sidecar named by ``graph.params_file``, or are supplied at run time)."""
    lines = [f"graph {graph.name} {{"]
    if graph.params_file is not None:
        lines.append(f"  params {format_string(graph.params_file)}")
    for node in graph.nodes.values():
        value = graph.params.get(node.name) if inline_params and graph.params_file is None else None
        lines.append("  " + format_node(node, value))
    for out, ref in graph.outputs.items():
        lines.append(f"  output {out} = %{ref}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ==================================================================================================
# Parsing
# ==================================================================================================
#
# The grammar (grammars/gptir.lark) only finds the statements; everything that depends on the op
# table or on a declared type (which literal a given attribute wants, which dtype a tensor literal
# has) is decided here, so error messages can name the op, the attribute and the expected form.
# The tree is walked with explicit loops and recursion bounded by the declared rank, never with a
# recursive lark Transformer: deeply nested brackets in a hostile file must not hit RecursionError.

MAX_RANK = 64  # numpy's limit on dimensions
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ParseError(GptirError):
    """Bad IR text: a syntax error or a semantic one (undefined value, bad type ...), with a position.

    ``str(e)`` is ``file:line:col: reason`` followed by the source line and a caret under the column.
    """

    def __init__(self, reason: str, filename: str, line: int, column: int, source_line: str) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.filename}:{self.line}:{self.column}: {self.reason}"
        if not self.source_line.strip():
            return head
        src, col = self.source_line.rstrip(), max(self.column - 1, 0)
        if len(src) > 100:  # show a window around the column of a very long line
            start = max(0, min(col - 50, len(src) - 100))
            src = ("..." if start else "") + src[start:start + 100] + ("..." if start + 100 < len(src) else "")
            col = col - start + (3 if start else 0)
        # keep tabs in the padding so the caret lines up under tabbed source
        pad = "".join(c if c == "\t" else " " for c in src[:col])
        return f"{head}\n    {src}\n    {pad}^"


def _grammar_text() -> str:
    """The grammar, read as package data (``gptir.grammars``; the one source file is ``grammars/gptir.lark``,
    which pyproject maps into the package for every kind of install)."""
    try:
        return importlib.resources.files("gptir.grammars").joinpath("gptir.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):  # pragma: no cover - a broken install
        raise GptirError("the gptir grammar (gptir/grammars/gptir.lark) is not installed; reinstall gptir") from None


@functools.lru_cache(maxsize=None)
def _parser() -> Lark:
    """The LALR parser, built once per process.

    ``strict=True`` makes lark refuse the grammar outright if it has a shift/reduce conflict or two
    terminals that can match the same text (checked with its ``interegular`` extra), so an ambiguity
    can never be resolved silently by lark's defaults.
    """
    return Lark(_grammar_text(), parser="lalr", strict=True, propagate_positions=True)


# How each terminal reads in an error message (never lark's internal names).
_WORDS: dict[str, str] = {
    "GRAPH": "'graph'", "PARAMS": "'params'", "IN": "'in'", "PARAM": "'param'", "CONST": "'const'",
    "OUTPUT": "'output'", "LOC": "loc(\"file:line\")", "BACKWARD": "'backward'",
    "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'",
    "COLON": "':'", "COMMA": "','", "EQUAL": "'='",
    "NAME": "a name", "VALUE": "a value name like %x", "SCOPE": "a scope like @layer0",
    "TYPE": "a type such as f64[3]", "NUMBER": "a number", "SPECIAL": "a number",
    "STRING": "a string in double quotes", "$END": "the end of the file", "<END-OF-FILE>": "the end of the file",
}
_ORDER = list(_WORDS)
_STATEMENT = {"IN", "PARAM", "VALUE", "OUTPUT"}
_LITERAL = {"NUMBER", "SPECIAL", "LSQB", "LPAR"}
_META = {"SCOPE", "LOC", "BACKWARD"}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _expected(names: Iterable[str], context: str = "") -> str:
    """Turn a set of terminal names into words, grouping the usual sets (``context``: previous keyword)."""
    names = set(names)
    words: list[str] = []
    if names >= _META:
        words.append("@scope, loc(...) or 'backward'")
        names -= _META
    if names >= _STATEMENT:
        words.append("a statement (in, param, %name = ..., output)")
        names -= _STATEMENT
    if names >= _LITERAL:
        words.append("a value such as 1.0, true, (0, 1) or [1.0, 2.0]")
        names -= _LITERAL | {"NAME"}
    if names == {"CONST", "NAME"}:
        return "an op name (such as add) or 'const'"
    if names == {"NAME"} and context in ("output", "graph"):
        return f"{'an output' if context == 'output' else 'a graph'} name like {'out' if context == 'output' else 'main'}"
    if names == {"RSQB", "NAME"}:
        return "an attribute like axes=(0,) or ']'"
    seen: set[str] = set()
    for n in sorted(names, key=lambda n: _ORDER.index(n) if n in _WORDS else len(_ORDER)):
        w = _WORDS.get(n)
        if w is not None and w not in seen:
            seen.add(w)
            words.append(w)
    return _join(words) if words else "something else"


def _describe_token(tok: Token) -> str:
    if tok.type in ("$END", "<END-OF-FILE>"):
        return "the end of the file"
    text = str(tok)
    return repr(text if len(text) <= 30 else text[:27] + "...")


def _after(text: str, pos: int | None) -> str:
    """`` after ':'`` when the token just before ``pos`` is punctuation, for friendlier messages."""
    if pos is None:
        return ""
    i = pos - 1
    while i >= 0 and text[i] in " \t\r\n":
        i -= 1
    if i >= 0 and text[i] in ":,=([{":
        return f" after '{text[i]}'"
    return ""


def _previous_word(text: str, pos: int | None) -> str:
    """The word just before ``pos`` (e.g. ``output``), to word an error for its context."""
    m = re.search(r"([A-Za-z_]+)\s*$", text[max(0, (pos or 0) - 40):pos or 0])
    return m.group(1) if m else ""


class _Source:
    """The text being parsed, for positions and source lines in errors."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.lines = text.split("\n")

    def error(self, reason: str, line: int, column: int) -> ParseError:
        line = max(1, min(line, len(self.lines)))
        src = self.lines[line - 1].rstrip("\r")
        return ParseError(reason, self.filename, line, max(1, column), src)

    def at_end(self, reason: str) -> ParseError:
        """An error at the end of the text: just after its last non-blank character."""
        line = len(self.lines)
        while line > 1 and not self.lines[line - 1].strip():
            line -= 1
        return self.error(reason, line, len(self.lines[line - 1].rstrip()) + 1)

    def at(self, tok: Token | None, reason: str) -> ParseError:
        if tok is None or getattr(tok, "line", None) is None or tok.line is None or tok.column is None:
            return self.error(reason, len(self.lines), 1)
        return self.error(reason, tok.line, tok.column)

    def syntax(self, e: UnexpectedInput) -> ParseError:
        line = getattr(e, "line", None)
        column = getattr(e, "column", None)
        if isinstance(e, UnexpectedCharacters):
            pos = e.pos_in_stream
            ch = self.text[pos] if pos is not None and pos < len(self.text) else ""
            if ch == '"':
                reason = "unterminated string (strings are on one line, in double quotes)"
            elif ch and ch in "%@":
                reason = f"'{ch}' must be followed by a name, like {ch}x"
            else:
                reason = f"unexpected character {ch!r}"
                if e.allowed:
                    reason += f": expected {_expected(e.allowed)}{_after(self.text, pos)}"
            return self.error(reason, line or 1, column or 1)
        if isinstance(e, UnexpectedToken):
            tok = e.token
            if tok.type in ("$END", "<END-OF-FILE>"):
                return self.at_end(f"unexpected end of file: expected {_expected(e.expected)}")
            reason = (f"expected {_expected(e.expected, _previous_word(self.text, tok.start_pos))}"
                      f"{_after(self.text, tok.start_pos)}, found {_describe_token(tok)}")
            return self.error(reason, line or 1, column or 1)
        if isinstance(e, UnexpectedEOF):
            return self.at_end(f"unexpected end of file: expected {_expected(e.expected)}")
        return self.error(f"syntax error ({type(e).__name__})", line or 1, column or 1)  # pragma: no cover


def _first_token(x: Any) -> Token | None:
    """The first token of a value (for error positions), found without recursion."""
    while isinstance(x, Tree):
        if not x.children:
            return None
        x = x.children[0]
    return x if isinstance(x, Token) else None


def _items(tree: Tree) -> list[Any]:
    """The values inside a tuple or list (punctuation dropped)."""
    return [c for c in tree.children if isinstance(c, Tree) or c.type not in ("LPAR", "RPAR", "LSQB", "RSQB", "COMMA")]


def _parse_type(src: _Source, tok: Token) -> TensorType:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\[([^\]]*)\]", str(tok))
    if m is None:  # pragma: no cover - the TYPE terminal guarantees the form
        raise src.at(tok, f"bad type {str(tok)!r}")
    dtype, body = m.group(1), m.group(2)
    if dtype not in DTYPES:
        raise src.at(tok, f"unknown dtype '{dtype}' (expected {_join(list(DTYPES))}), as in f64[3]")
    dims: list[int] = []
    if body.strip():
        for d in body.split(","):
            d = d.strip()
            if not re.fullmatch(r"[0-9]{1,18}", d):
                raise src.at(tok, f"bad dimension {d!r} in {str(tok)!r}: dimensions are non-negative integers "
                                  "separated by commas, as in f64[3,4]")
            dims.append(int(d))
    if len(dims) > MAX_RANK:
        raise src.at(tok, f"rank {len(dims)} is too large (at most {MAX_RANK} dimensions)")
    return TensorType(dtype, tuple(dims))


def _parse_int(src: _Source, tok: Token, what: str) -> int:
    text = str(tok)
    if tok.type != "NUMBER" or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise src.at(tok, f"{what} must be an integer, got {_describe_token(tok)}")
    if len(text.lstrip("+-")) > 19 or not INT64_MIN <= int(text) <= INT64_MAX:
        raise src.at(tok, f"{what}: {_describe_token(tok)} does not fit in a 64-bit integer")
    value = int(text)
    return value


def _float_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _parse_float_bits(src: _Source, tok: Token, what: str) -> int:
    """The IEEE bits of a float literal: repr form, inf, -inf, nan, -nan or nan(0x<bits>)."""
    text = str(tok)
    if tok.type == "NUMBER":
        value = float(text)  # the NUMBER terminal only matches what float() reads
        if math.isinf(value):
            raise src.at(tok, f"{what}: {_describe_token(tok)} is too large for f64 (write inf if you mean it)")
        return _float_bits(value)
    if tok.type == "NAME" and text in ("inf", "nan"):
        return _float_bits(math.inf) if text == "inf" else CANONICAL_NAN
    if tok.type == "SPECIAL":
        m = re.fullmatch(r"([+-]?)(inf|nan)(?:\(0x([0-9A-Fa-f]+)\))?", text)
        assert m is not None
        sign, word, hexbits = m.groups()
        if word == "inf":
            if hexbits:
                raise src.at(tok, f"bad number {text!r}: only nan takes bits, as in nan(0x7ff8000000000001)")
            return _float_bits(-math.inf if sign == "-" else math.inf)
        if hexbits is None:
            return CANONICAL_NAN | (1 << 63 if sign == "-" else 0)
        if sign:
            raise src.at(tok, f"bad NaN {text!r}: the sign is part of the bits, write nan(0x...)")
        if len(hexbits) > 16:
            raise src.at(tok, f"bad NaN {text!r}: the bits are 64 bits (16 hex digits)")
        bits = int(hexbits, 16)
        if (bits >> 52) & 0x7FF != 0x7FF or bits & ((1 << 52) - 1) == 0:
            raise src.at(tok, f"bad NaN {text!r}: those bits are not a NaN")
        return bits
    raise src.at(tok, f"{what} must be a number, got {_describe_token(tok)}")


def _parse_bool(src: _Source, tok: Any, what: str) -> bool:
    if isinstance(tok, Token) and tok.type == "NAME" and str(tok) in ("true", "false"):
        return str(tok) == "true"
    raise src.at(_first_token(tok), f"{what} must be true or false, got {_describe_value(tok)}")


def _describe_value(v: Any) -> str:
    if isinstance(v, Tree):
        return "a tuple" if v.data == "tuple" else "a bracketed literal"
    return _describe_token(v)


def _parse_scalar(src: _Source, v: Any, dtype: str, what: str) -> Any:
    if isinstance(v, Tree):
        raise src.at(_first_token(v), f"{what}: expected a single {dtype} value here, got {_describe_value(v)}")
    if dtype in FLOATS:  # f32 literals are written as the (exact) double of the f32 value
        return _parse_float_bits(src, v, what)
    if dtype == "i64":
        return _parse_int(src, v, what)
    return _parse_bool(src, v, what)


def _parse_literal(src: _Source, value: Any, ty: TensorType, what: str) -> np.ndarray:
    """A tensor literal checked against its declared type, converted bit-exactly.

    Recursion is bounded by the declared rank (at most MAX_RANK): nesting deeper than the type
    is reported at the first extra bracket.
    """
    flat: list[Any] = []

    def walk(v: Any, depth: int) -> None:
        if depth == ty.rank:
            flat.append(_parse_scalar(src, v, ty.dtype, what))
            return
        want = ty.shape[depth]
        if not (isinstance(v, Tree) and v.data == "list"):
            raise src.at(_first_token(v), f"{what} does not match its type {ty}: expected a list of {want} "
                                          f"item(s) at depth {depth + 1}, got {_describe_value(v)}")
        items = _items(v)
        if len(items) != want:
            raise src.at(_first_token(v), f"{what} does not match its type {ty}: expected {want} item(s) at "
                                          f"depth {depth + 1}, got {len(items)}")
        if want == 0:
            return  # an empty list stands for all the (empty) dimensions below it
        for item in items:
            walk(item, depth + 1)

    if ty.size == 0 and isinstance(value, Tree) and value.data == "list" and not _items(value) and ty.rank:
        flat = []  # `[]` for any empty shape (the printer writes [] when the first dimension is 0)
        if ty.shape[0] != 0:
            walk(value, 0)
    else:
        walk(value, 0)
    try:
        if ty.dtype in FLOATS:
            wide = np.array(flat, dtype=np.uint64).view(np.float64)
            with np.errstate(over="ignore"):
                arr = wide.astype(ty.np_dtype)
            if (np.isinf(arr) & np.isfinite(wide)).any():
                raise src.at(_first_token(value), f"{what}: a value is too large for {ty.dtype} (write inf if you mean it)")
        else:
            arr = np.array(flat, dtype=ty.np_dtype)
        return arr.reshape(ty.shape)
    except (ValueError, OverflowError, MemoryError) as e:
        raise src.at(_first_token(value), f"{what}: cannot build a {ty} value ({e})") from None


class _AttrSyntax:
    """The parser's view of a written attribute value, for :meth:`gptir.ir.AttrKind.parse`."""

    def __init__(self, src: _Source) -> None:
        self.src = src

    def scalar(self, v: Any) -> bool:
        return not isinstance(v, Tree)

    def items(self, v: Any) -> list[Any] | None:
        return _items(v) if isinstance(v, Tree) and v.data == "tuple" else None

    def word(self, v: Any) -> str | None:
        return str(v) if isinstance(v, Token) and v.type == "NAME" else None

    def integer(self, v: Any, what: str) -> int:
        return _parse_int(self.src, v, what)

    def number(self, v: Any, what: str) -> float:
        return float(struct.unpack("<d", struct.pack("<Q", _parse_float_bits(self.src, v, what)))[0])

    def boolean(self, v: Any, what: str) -> bool:
        return _parse_bool(self.src, v, what)

    def literal(self, v: Any, ty: TensorType, what: str) -> np.ndarray:
        return _parse_literal(self.src, v, ty, what)

    def describe(self, v: Any) -> str:
        return _describe_value(v)

    def error(self, v: Any, message: str) -> Exception:
        return self.src.at(_first_token(v), message)


def _parse_attr(src: _Source, kind: str, name: str, v: Any, ty: TensorType) -> Any:
    return ATTR_KINDS[kind].parse(_AttrSyntax(src), v, f"attribute {name}", ty)


def _meta_fields(src: _Source, meta: Tree) -> tuple[str, str, bool]:
    scope_tok, loc_tree, backward_tok = meta.children  # type: Any, Any, Any
    scope_path = str(scope_tok)[1:] if scope_tok is not None else ""
    loc = _parse_string(src, loc_tree.children[2]) if loc_tree is not None else ""
    return scope_path, loc, backward_tok is not None


def _parse_string(src: _Source, tok: Token) -> str:
    try:
        value = json.loads(str(tok))
    except ValueError as e:
        raise src.at(tok, f"bad string {str(tok)!r} ({e.args[0] if e.args else e})") from None
    assert isinstance(value, str)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate is not text: it could never be printed or saved
        raise src.at(tok, f"bad string {short(str(tok))}: it holds a lone surrogate (an unpaired \\ud800-\\udfff "
                          "escape), which is not a character") from None
    return value


def parse(text: str, filename: str = "<string>", base_dir: str | None = None) -> Graph:
    """Parse IR text into a verified Graph; raises ParseError (with file:line:col) on any bad input.

    Values must be defined before they are used (which also makes cycles impossible to write); a
    forward reference is reported as a cycle when it closes one, else as out of order.
    With ``base_dir``, a ``params "file.npz"`` header is loaded from that folder; without it the
    graph only records the sidecar's name (``graph.params_file``) and has no values from it.
    """
    if text.startswith("\ufeff"):  # a byte-order mark some editors write: not part of the text
        text = " " + text[1:]  # keep every column where the editor shows it
    src = _Source(text, filename)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise src.syntax(e) from None
    except LarkError as e:  # pragma: no cover - any other lark failure is still a parse error
        raise src.error(f"syntax error ({e})", 1, 1) from None
    return _build(src, tree.children[0], base_dir)


def _build(src: _Source, gtree: Any, base_dir: str | None) -> Graph:
    children: list[Any] = gtree.children
    graph_name = str(children[1])
    params_file: str | None = None
    params_tok: Token | None = None
    nodes: dict[str, Node] = {}
    where: dict[str, Token] = {}
    params: dict[str, np.ndarray] = {}
    outputs: dict[str, str] = {}
    output_toks: dict[str, tuple[Token, Token]] = {}

    def define(tok: Token, node: Node) -> None:
        if node.name in nodes:
            first = where[node.name]
            raise src.at(tok, f"duplicate definition of %{node.name} (first defined on line {first.line})")
        nodes[node.name] = node
        where[node.name] = tok

    for stmt in children[3:-1]:
        kind = stmt.data
        c: list[Any] = stmt.children
        if kind == "header":
            params_tok = c[1]
            params_file = _parse_string(src, params_tok)
            if not params_file:
                raise src.at(params_tok, "the params file name is empty")
        elif kind == "input_stmt":
            ty = _parse_type(src, c[3])
            define(c[1], Node(str(c[1])[1:], "input", (), ty, {}, *_meta_fields(src, c[4])))
        elif kind == "param_stmt":
            name, ty = str(c[1])[1:], _parse_type(src, c[3])
            if c[5] is not None:
                if params_file is not None:
                    raise src.at(c[4], f"param %{name} has an inline value, but this graph takes its "
                                       f"param values from {format_string(params_file)}")
                params[name] = _parse_literal(src, c[5], ty, f"the value of %{name}")
            define(c[1], Node(name, "param", (), ty, {}, *_meta_fields(src, c[6])))
        elif kind == "const_stmt":
            name, ty = str(c[0])[1:], _parse_type(src, c[5])
            value = _parse_literal(src, c[3], ty, "the literal")
            define(c[0], Node(name, "const", (), ty, {"value": value}, *_meta_fields(src, c[6])))
        elif kind == "op_stmt":
            define(c[0], _op_node(src, c, nodes, where, lambda: _statement_refs(children[3:-1])))
        elif kind == "output_stmt":
            out, vtok = str(c[1]), c[3]
            if out in outputs:
                raise src.at(c[1], f"duplicate output {out}")
            outputs[out] = str(vtok)[1:]
            output_toks[out] = (c[1], vtok)
        else:  # pragma: no cover - the grammar has no other statements
            raise src.at(_first_token(stmt), f"unexpected statement {kind}")

    end_tok = children[-1]
    for out, ref in outputs.items():
        if ref not in nodes:
            raise src.at(output_toks[out][1], f"output {out} refers to undefined value %{ref}")
    if not outputs:
        raise src.at(end_tok, f"graph {graph_name} has no outputs (add a line like: output out = %x)")
    if params_file is not None and base_dir is not None:
        try:
            loaded = load_params(os.path.join(base_dir, params_file),
                                 {n.name: n.type for n in nodes.values() if n.op == "param"})
        except ParamTypeError as e:
            raise src.at(where[e.name], f"%{e.name} is {nodes[e.name].type}, but {params_file} holds a "
                                        f"{e.declared} value for it") from None
        except GptirError as e:
            raise src.at(params_tok, str(e)) from None
        for pname, arr in loaded.items():
            node = nodes.get(pname)
            if node is None or node.op != "param":
                raise src.at(params_tok, f"{params_file} holds a value for {pname}, which is not a param of "
                                         f"graph {graph_name}")
            if TensorType.of(arr) != node.type:
                raise src.at(where[pname], f"%{pname} is {node.type}, but {params_file} holds a "
                                           f"{TensorType.of(arr)} value for it")
        params = loaded
    graph = Graph(graph_name, nodes, outputs, params, params_file)
    try:
        verify(graph, OPS)
    except VerifyError as e:  # a backstop: the checks above should have caught it with a better position
        tok = where.get(e.node) if e.node else None
        raise src.at(tok or end_tok, e.reason) from None
    return graph


def _statement_refs(stmts: list[Tree]) -> dict[str, tuple[Token, list[str]]]:
    """Every value the file defines (first definition): its name token and the values it reads.
    Only built when a value is used before its definition, to tell a cycle from a misordering."""
    refs: dict[str, tuple[Token, list[str]]] = {}
    for stmt in stmts:
        c: list[Any] = stmt.children
        reads: list[str]
        if stmt.data in ("input_stmt", "param_stmt"):
            tok, reads = c[1], []
        elif stmt.data == "const_stmt":
            tok, reads = c[0], []
        elif stmt.data == "op_stmt":
            tok, reads = c[0], [str(t)[1:] for t in c[4].children if isinstance(t, Token) and t.type == "VALUE"]
        else:
            continue
        refs.setdefault(str(tok)[1:], (tok, reads))
    return refs


def _forward_ref(src: _Source, name: str, ref: str, ref_tok: Token, name_tok: Token,
                 refs: dict[str, tuple[Token, list[str]]]) -> ParseError:
    """The error for ``%name`` reading ``%ref`` before ``%ref`` is defined.

    If ``%ref`` (transitively) reads ``%name`` the values form a cycle: name it, in data-flow
    order, at the line of ``%name`` (the cycle's first node in the file: every node before it
    only reads values defined earlier still). Otherwise it is only out of order.
    """
    if ref not in refs:
        return src.at(ref_tok, f"undefined value %{ref} (values must be defined before they are used)")
    # breadth-first from ref along "reads" edges, looking for name: the shortest cycle through it
    parent: dict[str, str | None] = {ref: None}
    queue, head = [ref], 0
    while head < len(queue):
        cur = queue[head]
        head += 1
        if cur == name:
            path = [cur]  # name, ..., ref: each is read by the next, and name reads ref
            while (up := parent[path[-1]]) is not None:
                path.append(up)
            chain = " -> ".join(f"%{v}" for v in path + [name])
            return src.at(name_tok, f"cycle: {chain} (a value cannot depend on itself)")
        for nxt in refs.get(cur, (None, []))[1]:
            if nxt not in parent and nxt in refs:
                parent[nxt] = cur
                queue.append(nxt)
    line = refs[ref][0].line
    return src.at(ref_tok, f"%{ref} is used before its definition (line {line}); values must be defined "
                           "before they are used")


def _op_node(src: _Source, c: list[Any], nodes: dict[str, Node], where: dict[str, Token],
             statement_refs: Callable[[], dict[str, tuple[Token, list[str]]]]) -> Node:
    name_tok, op_tok, attrs_tree, operands_tree, type_tok, meta = c[0], c[2], c[3], c[4], c[6], c[7]
    name, op = str(name_tok)[1:], str(op_tok)
    opdef = OPS.get(op)
    if opdef is None or opdef.kind == "source":
        if op in ("input", "param"):
            raise src.at(op_tok, f"'{op}' is not an op here: declare inputs with 'in %x : f64[3]' and params "
                                 "with 'param %w : f64[3]'")
        close = difflib.get_close_matches(op, [o for o, d in OPS.items() if d.kind != "source"], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise src.at(op_tok, f"unknown op '{op}'{hint}")
    ty = _parse_type(src, type_tok)
    inputs: list[str] = []
    for tok in operands_tree.children:
        if tok.type != "VALUE":
            continue
        ref = str(tok)[1:]
        if ref not in nodes:
            raise _forward_ref(src, name, ref, tok, name_tok, statement_refs())
        inputs.append(ref)
    attrs: dict[str, Any] = {}
    if attrs_tree is not None:
        for attr in attrs_tree.children:
            if not isinstance(attr, Tree):
                continue
            key_tok, _, value = attr.children  # type: Any, Any, Any
            key = str(key_tok)
            if key in attrs:
                raise src.at(key_tok, f"attribute {key} is given twice")
            kind = opdef.attrs.get(key)
            if kind is None:
                takes = ", ".join(opdef.attrs) or "none"
                raise src.at(key_tok, f"{op} has no attribute {key} (it takes: {takes})")
            attrs[key] = _parse_attr(src, kind, key, value, ty)
    try:
        check_node(opdef, Node(name, op, tuple(inputs), ty, attrs), [nodes[i].type for i in inputs])
    except ShapeError as e:
        raise src.at(name_tok, f"%{name} = {op}: {e}") from None
    except (ValueError, TypeError, IndexError, OverflowError, KeyError) as e:  # a type rule choking on odd input
        raise src.at(name_tok, f"%{name} = {op}: invalid operands or attributes ({e})") from None
    return Node(name, op, tuple(inputs), ty, attrs, *_meta_fields(src, meta))


# ==================================================================================================
# Files: IR text, and parameter values in .npz sidecars
# ==================================================================================================


def load_graph(path: str) -> Graph:
    """Read and parse an IR file (``-`` = standard input); a sidecar is resolved next to the file."""
    filename = "<stdin>" if path == "-" else path
    try:
        text = read_text(path)
    except UnicodeDecodeError:
        raise GptirError(f"{filename}: not a UTF-8 text file") from None
    except OSError as e:
        raise GptirError(f"cannot read {filename}: {e.strerror or e}") from None
    base_dir = os.getcwd() if path == "-" else (os.path.dirname(path) or ".")
    return parse(text, filename, base_dir)


def relative_to_output(target: str, out: str) -> str:
    """``target`` as the IR text written at ``out`` names it: relative to that file's folder (the
    working folder for ``-``), with ``/`` separators, as a ``params "..."`` header is resolved."""
    folder = os.getcwd() if out == "-" else os.path.dirname(os.path.abspath(out))
    return os.path.relpath(os.path.abspath(target), folder).replace(os.sep, "/")


def save_graph(graph: Graph, path: str, sidecar: str | None = None) -> None:
    """Write ``graph`` as IR text (atomically; ``-`` = standard output).

    With ``sidecar`` the param values go to that .npz and the text names it (relative to the IR
    file's folder). Without it, values are written inline; a graph that names a sidecar but holds
    no values keeps naming it.
    """
    if sidecar is not None:
        save_params(sidecar, graph.params)
        text = print_graph(graph.replace(params_file=relative_to_output(sidecar, path)))
    elif graph.params:
        text = print_graph(graph.replace(params_file=None))
    else:
        text = print_graph(graph)
    atomic_write_text(path, text)


class ParamTypeError(GptirError):
    """A params archive declares a value of another type than the graph's param (found before reading it)."""

    def __init__(self, message: str, name: str, declared: TensorType) -> None:
        super().__init__(message)
        self.name, self.declared = name, declared


def load_params(path: str, expected: Mapping[str, TensorType] | None = None) -> dict[str, np.ndarray]:
    """Parameter values from an .npz archive (never unpickles); raises GptirError when unreadable.

    Declared sizes are checked before anything is decompressed (``GPTIR_MAX_ARRAY_BYTES``; see
    :func:`gptir.fileio.open_npz`), and with ``expected`` ({param: type}) each array's declared type too."""
    try:
        data = read_bytes(path, "GPTIR_MAX_ARRAY_BYTES", "params file", magic=b"PK")
    except FileNotFoundError:
        raise GptirError(f"params file {path} does not exist") from None
    except IsADirectoryError:
        raise GptirError(f"params file {path} is not an .npz archive") from None
    except OSError as e:
        raise GptirError(f"cannot read params file {path}: {e.strerror or e}") from None
    if not data.startswith(b"PK"):
        raise GptirError(f"params file {path} is not a valid .npz archive (it is not a zip file)")
    zf = open_npz(data, f"params file {path}")
    out: dict[str, np.ndarray] = {}
    for k in npz_names(zf):
        dtype, shape = npz_header(zf, k, f"params file {path}")
        if dtype not in NUMPY_DTYPES.values():
            raise GptirError(f"params file {path}: {k} has dtype {dtype} (gptir has {', '.join(DTYPES)})")
        want = (expected or {}).get(k)
        if want is not None and (dtype != want.np_dtype or shape != want.shape):
            declared = TensorType(next(n for n, d in NUMPY_DTYPES.items() if d == dtype), shape)
            raise ParamTypeError(f"params file {path}: %{short(k)} is {want}, but the file holds {declared}",
                                 k, declared)
        out[k] = np.asarray(npz_read(zf, k, f"params file {path}"))
    return out


def save_params(path: str, params: Mapping[str, np.ndarray]) -> None:
    """Write parameter values to an .npz archive, atomically.

    The archive is what ``np.savez`` writes (one ``NAME.npy`` member per array), built with
    zipfile directly so that any param name works (``np.savez(**params)`` breaks on a param
    called ``file``).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in params.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
