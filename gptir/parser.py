"""The IR text parser: lark's LALR parser over ``grammars/gptir.lark``, and the semantic walk.

:func:`parse` reads what the printer (:mod:`gptir.printer`) writes, plus ``#`` comments to the end of
a line and free whitespace. Values must be defined before use; a value used too early is reported as
out of order, or as a cycle (``cycle: %a -> %b -> %a``) if it is one. Every problem, syntactic or
semantic, is a :class:`~gptir.diagnostics.ParseError` with file, line, column and a caret.

Two paths give the same graph: :mod:`gptir.fastparse` drives lark's own LALR table without building
a tree (and reads tensor literals in bulk); when it meets anything it does not take, the exact path
here (lark's parser, a tree walked by rule name) parses the text again and words the error.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import math
import os
import re
import struct
import sys
from typing import Any, Callable

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from gptir.diagnostics import ParseError, Source, _describe_token, _join
from gptir.gcpause import gc_paused
from gptir.graphio import ParamTypeError, load_params
from gptir.ir import (
    ATTR_KINDS, DTYPES, FLOATS, GptirError, Graph, Node, ShapeError, TensorType, VerifyError, check_node, short, verify,
)
from gptir.ops import OPS
from gptir.printer import CANONICAL_NAN, format_string

# ==================================================================================================
#
# The grammar (grammars/gptir.lark) only finds the statements; everything that depends on the op
# table or on a declared type (which literal a given attribute wants, which dtype a tensor literal
# has) is decided here, so error messages can name the op, the attribute and the expected form.
# The tree is walked with explicit loops and recursion bounded by the declared rank, never with a
# recursive lark Transformer: deeply nested brackets in a hostile file must not hit RecursionError.

MAX_RANK = 64  # numpy's limit on dimensions
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
    can never be resolved silently by lark's defaults. The fast path (:mod:`gptir.fastparse`) drives
    this same parser's tables, so this is the one place the grammar is loaded.
    """
    return Lark(_grammar_text(), parser="lalr", strict=True, propagate_positions=True)


def _first_token(x: Any) -> Token | None:
    """The first token of a value (for error positions), found without recursion."""
    while isinstance(x, Tree):
        if not x.children:
            return None
        x = x.children[0]
    return x if isinstance(x, Token) else None


def _tok(tree: Tree, terminal: str) -> Token | None:
    """The first child token of ``tree`` of type ``terminal`` (None when an optional part is absent)."""
    for c in tree.children:
        if isinstance(c, Token) and c.type == terminal:
            return c
    return None


def _sub(tree: Tree, rule: str) -> Tree | None:
    """The first child subtree of ``tree`` made by ``rule`` (None when an optional part is absent)."""
    for c in tree.children:
        if isinstance(c, Tree) and c.data == rule:
            return c
    return None


def _value_after(tree: Tree, terminal: str) -> Any:
    """The child just after the first ``terminal`` token (a value follows ``=`` or ``const``)."""
    children = tree.children
    for i, c in enumerate(children):
        if isinstance(c, Token) and c.type == terminal:
            return children[i + 1]
    return None


def _items(tree: Tree) -> list[Any]:
    """The values inside a tuple or list (punctuation dropped)."""
    return [c for c in tree.children if isinstance(c, Tree) or c.type not in ("LPAR", "RPAR", "LSQB", "RSQB", "COMMA")]


def _parse_type(src: Source, tok: Token) -> TensorType:
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


def _parse_int(src: Source, tok: Token, what: str) -> int:
    text = str(tok)
    if tok.type != "NUMBER" or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise src.at(tok, f"{what} must be an integer, got {_describe_token(tok)}")
    if len(text.lstrip("+-")) > 19 or not INT64_MIN <= int(text) <= INT64_MAX:
        raise src.at(tok, f"{what}: {_describe_token(tok)} does not fit in a 64-bit integer")
    value = int(text)
    return value


def _float_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _parse_float_bits(src: Source, tok: Token, what: str) -> int:
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


def _parse_bool(src: Source, tok: Any, what: str) -> bool:
    if isinstance(tok, Token) and tok.type == "NAME" and str(tok) in ("true", "false"):
        return str(tok) == "true"
    raise src.at(_first_token(tok), f"{what} must be true or false, got {_describe_value(tok)}")


def _describe_value(v: Any) -> str:
    if isinstance(v, Tree):
        return "a tuple" if v.data == "tuple" else "a bracketed literal"
    return _describe_token(v)


def _parse_scalar(src: Source, v: Any, dtype: str, what: str) -> Any:
    if isinstance(v, Tree):
        raise src.at(_first_token(v), f"{what}: expected a single {dtype} value here, got {_describe_value(v)}")
    if dtype in FLOATS:  # f32 literals are written as the (exact) double of the f32 value
        return _parse_float_bits(src, v, what)
    if dtype == "i64":
        return _parse_int(src, v, what)
    return _parse_bool(src, v, what)


class Fallback(Exception):
    """The fast path does not take this text: the exact path parses it again (and words any error)."""


# A bulk literal is read as data: its skeleton (brackets and commas, each number an ``a``) must be
# exactly the declared shape's, and its numbers exactly the grammar's NUMBER (or inf/nan words).
_WS_CHARS = " \t\f\r\n"
_ATOM = re.compile(r"[^ \t\f\r\n\[\],]+")
_DROP_WS = str.maketrans("", "", _WS_CHARS)
# float() reads exactly NUMBER and [+-]inf/nan among strings of these characters (no '_', no
# 'infinity', no capitals, no spaces inside): checking the characters and letting float() fail is
# the NUMBER check, at the speed of one scan
_F64_ALIEN = re.compile(r"[^0-9.eE+\-inf a\t\f\r\n\[\],]")
_I64_ATOMS = re.compile(r"(?:[+-]?[0-9]{1,19}(?: |$))*")  # more digits: the exact path words it
_BOOL_ATOMS = re.compile(r"(?:(?:true|false)(?: |$))*")


@functools.lru_cache(maxsize=256)
def _skeleton(shape: tuple[int, ...]) -> str:
    """The literal of ``shape`` with every number written ``a`` and no spaces: ``[[a,a],[a,a]]``."""
    inner = "a"
    for d in reversed(shape):
        inner = "[" + ",".join([inner] * d) + "]"
    return inner


class BulkLiteral:
    """A bracketed literal the fast path kept as text, converted when its declared type is known."""

    type = "BULK"  # what the exact path's token checks see: not a token they take

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def array(self, ty: TensorType) -> np.ndarray:
        """The value as ``ty``, bit for bit what the exact path gives; Fallback for anything else."""
        text = self.text
        if ty.rank == 0 or len(ty.shape) > MAX_RANK or ty.dtype not in ("f64", "i64", "bool"):
            raise Fallback()
        if _ATOM.sub("a", text).translate(_DROP_WS) != _skeleton(ty.shape):
            raise Fallback()
        if ty.size == 0:
            return np.zeros(ty.shape, dtype=ty.np_dtype)
        atoms = _ATOM.findall(text)
        try:
            if ty.dtype == "f64":
                if _F64_ALIEN.search(text) is not None:
                    raise Fallback()
                arr = np.fromiter(map(float, atoms), dtype=np.float64, count=len(atoms))
                inf = np.isinf(arr)
                if inf.any() and int(inf.sum()) != sum(1 for a in atoms if a.endswith("inf")):
                    raise Fallback()  # a number too large for f64: the exact path says so
            elif ty.dtype == "i64":
                if _I64_ATOMS.fullmatch(" ".join(atoms)) is None:
                    raise Fallback()
                arr = np.fromiter(map(int, atoms), dtype=np.int64, count=len(atoms))
            else:
                if _BOOL_ATOMS.fullmatch(" ".join(atoms)) is None:
                    raise Fallback()
                arr = np.fromiter((a == "true" for a in atoms), dtype=np.bool_, count=len(atoms))
        except (ValueError, OverflowError, MemoryError):
            raise Fallback() from None
        return arr.reshape(ty.shape)


def _parse_literal(src: Source, value: Any, ty: TensorType, what: str) -> np.ndarray:
    """A tensor literal checked against its declared type, converted bit-exactly.

    Recursion is bounded by the declared rank (at most MAX_RANK): nesting deeper than the type
    is reported at the first extra bracket.
    """
    if isinstance(value, BulkLiteral):
        return value.array(ty)
    flat: list[Any] = []

    def walk(v: Any, depth: int) -> None:
        if isinstance(v, BulkLiteral):  # the fast path read an inner list whole (the outer one it could not)
            sub = v.array(TensorType(ty.dtype, ty.shape[depth:]))
            flat.extend((sub.view(np.uint64) if ty.dtype == "f64" else sub).ravel().tolist())
            return
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
    """The parser's view of a written attribute value (a token or a tuple tree, from either path),
    for :meth:`gptir.ir.AttrKind.parse`."""

    def __init__(self, src: Source) -> None:
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


def _parse_attr(src: Source, kind: str, name: str, v: Any, ty: TensorType) -> Any:
    return ATTR_KINDS[kind].parse(_AttrSyntax(src), v, f"attribute {name}", ty)


def _meta_fields(src: Source, meta: Any) -> tuple[str, str, bool]:
    """Scope, loc and the backward flag from a ``meta`` tree (the fast path hands them decoded)."""
    if not isinstance(meta, Tree):
        return meta  # type: ignore[no-any-return]
    scope_tok, loc_tree = _tok(meta, "SCOPE"), _sub(meta, "loc")
    scope_path = sys.intern(str(scope_tok)[1:]) if scope_tok is not None else ""
    loc = _parse_string(src, _tok(loc_tree, "STRING")) if loc_tree is not None else ""  # type: ignore[arg-type]
    return scope_path, loc, _tok(meta, "BACKWARD") is not None


def _parse_string(src: Source, tok: Token) -> str:
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


@gc_paused  # a parse allocates objects that all stay alive: collecting while it runs finds nothing
def parse(text: str, filename: str = "<string>", base_dir: str | None = None) -> Graph:
    """Parse IR text into a verified Graph; raises ParseError (with file:line:col) on any bad input.

    Values must be defined before they are used (which also makes cycles impossible to write); a
    forward reference is reported as a cycle when it closes one, else as out of order.
    With ``base_dir``, a ``params "file.npz"`` header is loaded from that folder; without it the
    graph only records the sidecar's name (``graph.params_file``) and has no values from it.
    """
    if text.startswith("\ufeff"):  # a byte-order mark some editors write: not part of the text
        text = " " + text[1:]  # keep every column where the editor shows it
    from gptir.fastparse import parse_fast  # beside this module: it drives the same lark parser

    try:
        return parse_fast(text, base_dir)
    except Exception:  # Fallback, or a check that failed in another way: the exact path decides
        pass  # (and words any error; MemoryError and the like are not Exceptions and propagate)
    return parse_exact(text, filename, base_dir)


def parse_exact(text: str, filename: str = "<string>", base_dir: str | None = None) -> Graph:
    """:func:`parse` on the exact path only: lark's tree, walked by rule name (what the fast path
    falls back to; tests compare the two)."""
    src = Source(text, filename)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise src.syntax(e) from None
    except LarkError as e:  # pragma: no cover - any other lark failure is still a parse error
        raise src.error(f"syntax error ({e})", 1, 1) from None
    gtree = tree.children[0]
    assert isinstance(gtree, Tree)
    return build(src, str(_tok(gtree, "NAME")), _records(gtree), _tok(gtree, "RBRACE"), base_dir)


# A statement record: what the semantic walk needs of one statement, the same from both paths.
#   ("header", STRING)                 ("output", NAME, VALUE)
#   ("input", VALUE, TYPE, meta)       ("param", VALUE, TYPE, EQUAL | None, value | None, meta)
#   ("const", VALUE, value, TYPE, meta)
#   ("op", VALUE, NAME, [(NAME, value), ...] | None, [VALUE, ...], TYPE, meta)
# Tokens are lark Tokens (with positions) from the exact path; the fast path passes plain strings,
# a TensorType for TYPE and a decoded (scope, loc, backward) meta, and never needs a position.
Record = tuple[Any, ...]


def _records(gtree: Tree) -> list[Record]:
    """The statements of a graph tree as records, each child found by its rule or terminal name."""
    out: list[Record] = []
    for stmt in gtree.children:
        if not isinstance(stmt, Tree):
            continue
        kind = stmt.data
        name_tok, type_tok, meta = _tok(stmt, "VALUE"), _tok(stmt, "TYPE"), _sub(stmt, "meta")
        if kind == "header":
            out.append(("header", _tok(stmt, "STRING")))
        elif kind == "output_stmt":
            out.append(("output", _tok(stmt, "NAME"), name_tok))
        elif kind == "input_stmt":
            out.append(("input", name_tok, type_tok, meta))
        elif kind == "param_stmt":
            eq_tok = _tok(stmt, "EQUAL")
            out.append(("param", name_tok, type_tok, eq_tok, _value_after(stmt, "EQUAL") if eq_tok else None, meta))
        elif kind == "const_stmt":
            out.append(("const", name_tok, _value_after(stmt, "CONST"), type_tok, meta))
        elif kind == "op_stmt":
            attrs_tree, operands = _sub(stmt, "attrs"), _sub(stmt, "operands")
            attrs = None if attrs_tree is None else [
                (_tok(a, "NAME"), _value_after(a, "EQUAL")) for a in attrs_tree.children if isinstance(a, Tree)]
            reads = [t for t in operands.children if isinstance(t, Token) and t.type == "VALUE"] if operands else []
            out.append(("op", name_tok, _tok(stmt, "NAME"), attrs, reads, type_tok, meta))
        else:  # pragma: no cover - the grammar has no other statements
            raise AssertionError(f"unexpected statement {kind}")
    return out


def _type_of(src: Source, tok: Any) -> TensorType:
    return tok if isinstance(tok, TensorType) else _parse_type(src, tok)


def build(src: Source, graph_name: str, stmts: list[Record], end_tok: Any, base_dir: str | None,
          fast: bool = False) -> Graph:
    """The verified graph of a statement list: every semantic check, each error at its token.

    ``fast=True`` (the fast path) skips the final :func:`~gptir.ir.verify`: it is the backstop of
    checks made here already (definition before use, so topological order; each op's type check;
    names by the grammar; outputs; param values), and the fast path has no positions to improve."""
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
            raise src.at(tok, f"duplicate definition of %{node.name} (first defined on line {src.line_of(first)})")
        nodes[node.name] = node
        where[node.name] = tok

    checked: set[tuple[Any, ...]] | None = set() if fast else None
    refs = functools.partial(_statement_refs, stmts)
    for stmt in stmts:
        kind = stmt[0]
        if kind == "op":
            define(stmt[1], _op_node(src, stmt, nodes, refs, checked))
        elif kind == "input":
            _, name_tok, type_tok, meta = stmt
            ty = _type_of(src, type_tok)
            define(name_tok, Node(str(name_tok)[1:], "input", (), ty, {}, *_meta_fields(src, meta)))
        elif kind == "param":
            _, name_tok, type_tok, eq_tok, value, meta = stmt
            name, ty = str(name_tok)[1:], _type_of(src, type_tok)
            if eq_tok is not None:
                if params_file is not None:
                    raise src.at(eq_tok, f"param %{name} has an inline value, but this graph takes its "
                                         f"param values from {format_string(params_file)}")
                params[name] = _parse_literal(src, value, ty, f"the value of %{name}")
            define(name_tok, Node(name, "param", (), ty, {}, *_meta_fields(src, meta)))
        elif kind == "const":
            _, name_tok, value, type_tok, meta = stmt
            ty = _type_of(src, type_tok)
            arr = _parse_literal(src, value, ty, "the literal")
            define(name_tok, Node(str(name_tok)[1:], "const", (), ty, {"value": arr}, *_meta_fields(src, meta)))
        elif kind == "output":
            _, out_tok, vtok = stmt
            out = str(out_tok)
            if out in outputs:
                raise src.at(out_tok, f"duplicate output {out}")
            outputs[out] = str(vtok)[1:]
            output_toks[out] = (out_tok, vtok)
        else:  # "header"
            params_tok = stmt[1]
            params_file = _parse_string(src, params_tok)  # type: ignore[arg-type]
            if not params_file:
                raise src.at(params_tok, "the params file name is empty")

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
    if fast:
        return graph
    try:
        verify(graph, OPS)
    except VerifyError as e:  # a backstop: the checks above should have caught it with a better position
        tok = where.get(e.node) if e.node else None
        raise src.at(tok or end_tok, e.reason) from None
    return graph


def _statement_refs(stmts: list[Record]) -> dict[str, tuple[Token, list[str]]]:
    """Every value the file defines (first definition): its name token and the values it reads.
    Only built when a value is used before its definition, to tell a cycle from a misordering."""
    refs: dict[str, tuple[Token, list[str]]] = {}
    for stmt in stmts:
        if stmt[0] in ("input", "param", "const", "op"):
            reads = [str(t)[1:] for t in stmt[4]] if stmt[0] == "op" else []
            refs.setdefault(str(stmt[1])[1:], (stmt[1], reads))
    return refs


def _forward_ref(src: Source, name: str, ref: str, ref_tok: Token, name_tok: Token,
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
    line = src.line_of(refs[ref][0])
    return src.at(ref_tok, f"%{ref} is used before its definition (line {line}); values must be defined "
                           "before they are used")


class ReadyAttrs(dict):  # type: ignore[type-arg]
    """Attributes the fast path already read with :func:`op_attrs` (the same text gives the same
    values, so it reads each distinct attribute text once)."""


def op_attrs(src: Source, opdef: Any, attr_items: list[tuple[Any, Any]] | None, ty: TensorType) -> dict[str, Any]:
    """The attribute values of one use of ``opdef``, each checked against its kind."""
    attrs: dict[str, Any] = {}
    for key_tok, value in attr_items or ():
        key = str(key_tok)
        if key in attrs:
            raise src.at(key_tok, f"attribute {key} is given twice")
        kind = opdef.attrs.get(key)
        if kind is None:
            takes = ", ".join(opdef.attrs) or "none"
            raise src.at(key_tok, f"{opdef.name} has no attribute {key} (it takes: {takes})")
        attrs[key] = _parse_attr(src, kind, key, value, ty)
    return attrs


def _op_node(src: Source, stmt: Record, nodes: dict[str, Node],
             statement_refs: Callable[[], dict[str, tuple[Token, list[str]]]],
             checked: set[tuple[Any, ...]] | None = None) -> Node:
    """The node of an op statement, checked against its op's signature and type rule.

    With ``checked`` (the fast path: types and attribute values come interned, one object per
    distinct text, all alive while the graph is built), a node whose op, attribute object, declared
    type and operand types are those of a node already checked is not checked again: the check reads
    nothing else, so it would pass again."""
    _, name_tok, op_tok, attr_items, operand_toks, type_tok, meta = stmt
    name, op = str(name_tok)[1:], str(op_tok)
    opdef = OPS.get(op)
    if opdef is None or opdef.kind == "source":
        if op in ("input", "param"):
            raise src.at(op_tok, f"'{op}' is not an op here: declare inputs with 'in %x : f64[3]' and params "
                                 "with 'param %w : f64[3]'")
        close = difflib.get_close_matches(op, [o for o, d in OPS.items() if d.kind != "source"], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise src.at(op_tok, f"unknown op '{op}'{hint}")
    op = opdef.name  # the op table's own string, and each operand the name object of the node it names:
    # one object per distinct name, so the passes' lookups and comparisons touch less memory
    ty = _type_of(src, type_tok)
    inputs: list[str] = []
    for tok in operand_toks:
        ref = str(tok)[1:]
        operand = nodes.get(ref)
        if operand is None:
            raise _forward_ref(src, name, ref, tok, name_tok, statement_refs())
        inputs.append(operand.name)
    ready = attr_items is None or isinstance(attr_items, ReadyAttrs)
    attrs = dict(attr_items or ()) if ready else op_attrs(src, opdef, attr_items, ty)
    in_types = [nodes[i].type for i in inputs]
    key: tuple[Any, ...] | None = None
    if checked is not None and ready:
        key = (op, id(attr_items), id(ty), *map(id, in_types))
        if key in checked:
            return Node(name, op, tuple(inputs), ty, attrs, *meta)
    # meta comes decoded from the fast path (build the node once); a tree is read after the check
    node = Node(name, op, tuple(inputs), ty, attrs, *meta) if not isinstance(meta, Tree) else None
    try:
        check_node(opdef, node or Node(name, op, tuple(inputs), ty, attrs), in_types)
    except ShapeError as e:
        raise src.at(name_tok, f"%{name} = {op}: {e}") from None
    except (ValueError, TypeError, IndexError, OverflowError, KeyError) as e:  # a type rule choking on odd input
        raise src.at(name_tok, f"%{name} = {op}: invalid operands or attributes ({e})") from None
    if key is not None:
        checked.add(key)  # type: ignore[union-attr]
    return node or Node(name, op, tuple(inputs), ty, attrs, *_meta_fields(src, meta))

