"""The parser's fast path: lark's own LALR table for ``grammars/gptir.lark``, driven without a tree.

The exact path (:mod:`gptir.parser`) lets lark build a tree of positioned tokens and walks it; that
costs microseconds per token. This path reads the same text with the same machinery, minus the
objects: lark's per-state (contextual) lexers — the same compiled terminal patterns in the same
order, keywords re-typed the same way — and lark's parse table for shifts, reductions and gotos.
Two phrases are taken whole, each only where lark's table has a goto for it:

- a statement of the usual one-line shape (``%y = add %a, %b : f64[3] @s loc("f.py:1")``) is matched
  at once by a pattern composed from the grammar's own terminal patterns, then lark's goto for that
  statement is taken;
- a bracketed tensor literal is one ``list`` phrase, kept as text and converted in bulk once its
  declared type is known (:class:`gptir.parser.BulkLiteral`).

Reductions build the parser's statement records, which :func:`gptir.parser.build` turns into the
graph with every check of the exact path. Nothing here words an error: anything this path does not
take — a syntax error, an odd literal, any semantic problem — raises :class:`Fallback`, and
:func:`gptir.parser.parse` parses the text again on the exact path, so messages and positions are
the exact path's, word for word.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable

from lark import Token, Tree

from gptir.diagnostics import ParseError, Source
from gptir.ir import Graph, TensorType
from gptir.ops import OPS
from gptir.parser import (
    BulkLiteral, Fallback, ReadyAttrs, Record, _parse_string, _parse_type, _parser, build, op_attrs,
)


class _FastSource(Source):
    """Stands in for the exact path's Source: every error is a Fallback (no positions needed)."""

    def __init__(self) -> None:  # no text: nothing here points at it
        self.text, self.filename, self.lines = "", "", []

    def error(self, reason: str, line: int, column: int) -> ParseError:
        raise Fallback()

    def at(self, tok: Any, reason: str) -> ParseError:
        raise Fallback()

    def at_end(self, reason: str) -> ParseError:
        raise Fallback()

    def line_of(self, tok: Any) -> int:
        return 0


_FAST = _FastSource()


@functools.lru_cache(maxsize=4096)
def _type(text: str) -> TensorType:
    return _parse_type(_FAST, text)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _string(text: str) -> str:
    """A STRING token's value, checked as the exact path checks it (a bad escape or a lone surrogate
    is a Fallback: the exact path words the error at its position)."""
    return _parse_string(_FAST, text)  # type: ignore[arg-type]


class _Star(list):  # type: ignore[type-arg]
    """The items of an EBNF repetition (lark's ``__x_star_n`` helper rules), punctuation dropped."""


_PUNCT = {"LBRACE", "RBRACE", "LSQB", "RSQB", "LPAR", "RPAR", "COLON", "COMMA", "EQUAL"}


def _action(origin: str, names: list[str]) -> Callable[[list[Any]], Any]:
    """What reducing by the rule ``origin: names`` makes, its children found by symbol name."""
    pos: dict[str, int] = {}
    for i, n in enumerate(names):
        pos.setdefault(n, i)

    def get(name: str) -> Callable[[list[Any]], Any]:
        i = pos.get(name)
        return (lambda ch: None) if i is None else (lambda ch: ch[i])

    value, vtype, meta, name_of = get("value"), get("TYPE"), get("meta"), get("VALUE")
    if origin.startswith("__"):  # a repetition: left-recursive, so the list is the first child
        keep = [i for i, n in enumerate(names) if n not in _PUNCT and n != origin]
        recursive = bool(names) and names[0] == origin

        if recursive and len(keep) == 1:
            last = keep[0]

            def star(ch: list[Any]) -> Any:
                ch[0].append(ch[last])
                return ch[0]
        else:
            def star(ch: list[Any]) -> Any:
                out = ch[0] if recursive else _Star()
                out.extend([ch[i] for i in keep])
                return out
        return star
    if origin in ("start", "stmt"):
        return lambda ch: ch[0]
    if origin == "value":
        terminal = names[0]
        if terminal in ("NUMBER", "NAME", "SPECIAL"):
            return lambda ch: Token(terminal, ch[0])
        return lambda ch: ch[0]
    if origin in ("tuple", "list"):
        items = [i for i, n in enumerate(names) if n not in _PUNCT]

        def seq(ch: list[Any]) -> Any:
            out: list[Any] = []
            for i in items:
                out.extend(ch[i]) if isinstance(ch[i], _Star) else out.append(ch[i])
            return Tree(origin, out)
        return seq
    if origin == "graph":
        header, stmts = get("header"), get("__graph_star_0")

        def graph(ch: list[Any]) -> Any:
            h, body = header(ch), stmts(ch) or []
            return ch[pos["NAME"]], ([h] if h is not None else []) + list(body)
        return graph
    if origin == "header":
        return lambda ch: ("header", ch[pos["STRING"]])
    if origin == "output_stmt":
        return lambda ch: ("output", ch[pos["NAME"]], ch[pos["VALUE"]])
    if origin == "input_stmt":
        return lambda ch: ("input", name_of(ch), _type(vtype(ch)), meta(ch))
    if origin == "param_stmt":
        eq = get("EQUAL")
        return lambda ch: ("param", name_of(ch), _type(vtype(ch)), eq(ch), value(ch), meta(ch))
    if origin == "const_stmt":
        return lambda ch: ("const", name_of(ch), value(ch), _type(vtype(ch)), meta(ch))
    if origin == "op_stmt":
        attrs, operands = get("attrs"), get("operands")
        return lambda ch: ("op", name_of(ch), ch[pos["NAME"]], attrs(ch), operands(ch), _type(vtype(ch)), meta(ch))
    if origin in ("operands", "attrs"):
        items = [i for i, n in enumerate(names) if n not in _PUNCT]

        def flat(ch: list[Any]) -> Any:
            out: list[Any] = []
            for i in items:
                out.extend(ch[i]) if isinstance(ch[i], _Star) else out.append(ch[i])
            return out
        return flat
    if origin == "attr":
        return lambda ch: (ch[pos["NAME"]], value(ch))
    if origin == "meta":
        scope, loc, backward = get("SCOPE"), get("loc"), "BACKWARD" in pos
        return lambda ch: ((scope(ch) or "@")[1:], loc(ch) or "", backward)
    if origin == "loc":
        return lambda ch: _string(ch[pos["STRING"]])
    raise ValueError(f"no fast action for rule {origin}")  # a new rule: build() falls back to the exact path


class _Machine:
    """lark's lexers and parse table for the grammar, in the shapes the driver loop reads fastest."""

    def __init__(self) -> None:
        from lark.parsers.lalr_analysis import Shift

        lark = _parser()
        table = lark.parser.parser.parser.parse_table
        self.start, self.end = table.start_states["start"], table.end_states["start"]
        self.lexers: dict[int, tuple[Callable[..., Any], dict[str, Any], frozenset[str]]] = {}
        for state, lexer in lark.parser.lexer.lexers.items():
            scanner = lexer.scanner
            if len(scanner._mres) != 1:  # pragma: no cover - lark splits only patterns of 100+ groups
                raise ValueError("lexer split")
            keywords = {t: cb.scanner for t, cb in lexer.callback.items()}
            self.lexers[state] = (scanner._mres[0].match, keywords, lexer.ignore_types)
        rules: dict[Any, tuple[int, str, Callable[[list[Any]], Any]]] = {}
        self.states: dict[int, dict[str, tuple[bool, Any]]] = {}
        for state, actions in table.states.items():
            row: dict[str, tuple[bool, Any]] = {}
            for sym, (act, arg) in actions.items():
                if act is Shift:
                    row[sym] = (True, arg)
                else:
                    if arg not in rules:
                        names = [s.name for s in arg.expansion]
                        rules[arg] = (len(names), arg.origin.name, _action(arg.origin.name, names))
                    row[sym] = (False, rules[arg])
            self.states[state] = row
        self.statement, self.kinds = _macros({t.name: t for t in lark.terminals})
        starts = {"VALUE", "IN", "PARAM", "OUTPUT"}
        self.statement_states = frozenset(st for st, row in self.states.items() if starts & row.keys())


def _lark_order(terminals: list[Any]) -> list[Any]:
    """Terminals in the order lark's lexer tries them (its BasicLexer sort)."""
    return sorted(terminals, key=lambda x: (-x.priority, -x.pattern.max_width, -len(x.pattern.value), x.name))


def _plain(pattern: str) -> str:
    """A terminal's pattern with its groups made non-capturing (same language, faster to match)."""
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)


def _macros(terms: dict[str, Any]) -> tuple[Callable[..., Any], dict[str, tuple[str, str, Callable[[Any], Record]]]]:
    """A pattern for one-line statements composed from the grammar's terminals, and per kind of
    statement (the name of its closing group) its first terminal, its rule and its record.

    Each terminal is an atomic group (no backtracking into a token: lark's lexer commits to its
    first match too); only whitespace separates the tokens of a statement (a comment inside one
    takes the token path); the pattern starts with the whitespace and comments before it.
    """
    pat = {name: _plain(t.pattern.to_regexp()) for name, t in terms.items()}

    def t(name: str) -> str:
        return f"(?>{pat[name]})"

    ws = f"(?:{pat['WS']})?"
    ign = f"(?:{t('WS')}|{t('COMMENT')})*"  # atomic: a comment never gives back the end of its line
    order = [x.name for x in _lark_order([terms["NUMBER"], terms["NAME"], terms["SPECIAL"]])]
    simple = "(?>" + "|".join(pat[n] for n in order) + ")"
    name_end = r"(?![A-Za-z0-9_]|\.[A-Za-z0-9_])"  # NAME's match ends here: a keyword, not a prefix
    tup = rf"\({ws}(?:{simple}(?:{ws},{ws}{simple})*(?:{ws},)?)?{ws}\)"
    attr = rf"{t('NAME')}{ws}={ws}(?:{simple}|{tup})"
    attrs = rf"\[{ws}(?:{attr}(?:{ws},{ws}{attr})*)?{ws}\]"

    def meta(k: str) -> str:
        return (rf"(?:{ws}(?P<{k}scope>{t('SCOPE')}))?(?:{ws}loc{ws}\({ws}(?P<{k}loc>{t('STRING')}){ws}\))?"
                rf"(?:{ws}(?P<{k}bw>backward))?")

    def typ(k: str) -> str:
        return rf"{ws}:{ws}(?P<{k}type>{t('TYPE')})"

    branches = [
        rf"(?P<o_name>{t('VALUE')}){ws}={ws}(?!const{name_end})(?P<o_op>{t('NAME')})(?:{ws}(?P<o_attrs>{attrs}))?"
        rf"(?:{ws}(?P<o_args>{t('VALUE')}(?:{ws},{ws}{t('VALUE')})*))?{typ('o_')}{meta('o_')}(?P<op>)",
        rf"(?P<c_name>{t('VALUE')}){ws}={ws}const{name_end}{ws}(?P<c_val>{simple}){typ('c_')}{meta('c_')}(?P<const>)",
        rf"param{ws}(?P<p_name>{t('VALUE')}){typ('p_')}(?:{ws}(?P<p_eq>=){ws}(?P<p_val>{simple})|(?!{ws}=))"
        rf"{meta('p_')}(?P<param>)",
        rf"in{ws}(?P<i_name>{t('VALUE')}){typ('i_')}{meta('i_')}(?P<input>)",
        rf"output{ws}(?P<u_out>{t('NAME')}){ws}={ws}(?P<u_val>{t('VALUE')})(?P<output>)",
    ]
    statement = re.compile(ign + "(?:" + "|".join(branches) + ")")
    values = re.compile(pat["VALUE"]).findall  # in a matched operand list: exactly its VALUE tokens
    classify = re.compile("|".join(f"(?P<{n}>{pat[n]})" for n in order))
    attr_tokens = re.compile(rf"{ws}(?:(?P<p>[\[\](),=])|(?P<v>{simple}))")

    def scalar(text: str) -> Token:
        m = classify.match(text)
        assert m is not None and m.lastgroup is not None and m.end() == len(text)
        return Token(m.lastgroup, text)

    @functools.lru_cache(maxsize=4096)
    def attr_items(text: str) -> tuple[tuple[str, Any], ...]:
        """``[k=v, ...]`` (already matched by ``attrs``) as (name, value) pairs; tuples as trees."""
        toks = [(m.group("p"), m.group("v")) for m in attr_tokens.finditer(text)]
        items: list[tuple[str, Any]] = []
        i = 1  # after '['
        while toks[i][0] != "]":
            key = toks[i][1]
            i += 2  # key, '='
            if toks[i][0] == "(":
                vals: list[Any] = []
                i += 1
                while toks[i][0] != ")":
                    if toks[i][1] is not None:
                        vals.append(scalar(toks[i][1]))
                    i += 1
                items.append((key, Tree("tuple", vals)))
            else:
                items.append((key, scalar(toks[i][1])))
            i += 1
            if toks[i][0] == ",":
                i += 1
        return tuple(items)

    @functools.lru_cache(maxsize=4096)
    def ready_attrs(op: str, text: str) -> ReadyAttrs | None:
        """The attributes of ``op`` written ``text``, read once (None for tensor attributes, which
        depend on the declared type, and for an unknown op: _op_node words that)."""
        opdef = OPS.get(op)
        if opdef is None or "tensor" in opdef.attrs.values():
            return None
        return ReadyAttrs(op_attrs(_FAST, opdef, list(attr_items(text)), None))  # type: ignore[arg-type]

    def meta_of(m: Any, k: str) -> tuple[str, str, bool]:
        scope, loc = m.group(k + "scope"), m.group(k + "loc")
        return (sys.intern(scope[1:]) if scope else "", _string(loc) if loc else "", m.group(k + "bw") is not None)

    def op(m: Any) -> Record:
        op, attrs, args = m.group("o_op"), m.group("o_attrs"), m.group("o_args")
        items: Any = None
        if attrs is not None:
            items = ready_attrs(op, attrs)
            if items is None:
                items = list(attr_items(attrs))
        return ("op", m.group("o_name"), op, items, values(args) if args else [],
                _type(m.group("o_type")), meta_of(m, "o_"))

    def const(m: Any) -> Record:
        return ("const", m.group("c_name"), scalar(m.group("c_val")), _type(m.group("c_type")), meta_of(m, "c_"))

    def inp(m: Any) -> Record:
        return ("input", m.group("i_name"), _type(m.group("i_type")), meta_of(m, "i_"))

    def param(m: Any) -> Record:
        val = m.group("p_val")
        return ("param", m.group("p_name"), _type(m.group("p_type")), m.group("p_eq"),
                None if val is None else scalar(val), meta_of(m, "p_"))

    def out(m: Any) -> Record:
        return ("output", m.group("u_out"), m.group("u_val"))

    return statement.match, {"op": ("VALUE", "op_stmt", op), "const": ("VALUE", "const_stmt", const),
                             "param": ("PARAM", "param_stmt", param), "input": ("IN", "input_stmt", inp),
                             "output": ("OUTPUT", "output_stmt", out)}


_WS = " \t\f\r\n"
_BULK_RUN = re.compile(r"\[[\[\] \t\f\r\n,0-9A-Za-z_.+\-]*")
_BRACKETS = re.compile(r"[\[\]]")


def _bulk_end(text: str, pos: int) -> int:
    """The end of the bracketed literal at ``pos`` if it holds only numbers, words, brackets and
    commas (else -1): the position just after its matching ``]``."""
    m = _BULK_RUN.match(text, pos)
    if m is None:
        return -1
    depth = 0
    for b in _BRACKETS.finditer(text, pos, m.end()):
        depth += 1 if b.group() == "[" else -1
        if depth == 0:
            return b.end()
    return -1


@functools.lru_cache(maxsize=1)
def _machine() -> _Machine:
    return _Machine()


def parse_fast(text: str, base_dir: str | None) -> Graph:
    """The graph of ``text``, as the exact path builds it; raises Fallback for anything else."""
    try:
        machine = _machine()
    except Exception:  # pragma: no cover - a lark whose internals differ: the exact path only
        raise Fallback() from None
    name, stmts = _drive(machine, text)
    return build(_FAST, str(name), stmts, None, base_dir, fast=True)


def _reduce(states: dict[int, dict[str, tuple[bool, Any]]], stack: list[int], values: list[Any],
            typ: str, end: int) -> Any:
    """Reduce while lark's table says so for lookahead ``typ``; the shift target, or the start
    symbol's value once ``$END`` is accepted."""
    row = states[stack[-1]]
    while True:
        try:
            shift, arg = row[typ]
        except KeyError:
            raise Fallback() from None
        if shift:
            return arg
        k, origin, action = arg
        if k == 1:
            children = [values.pop()]
            stack.pop()
        elif k:
            children = values[-k:]
            del values[-k:], stack[-k:]
        else:
            children = []
        values.append(action(children))
        goto = states[stack[-1]][origin][1]
        stack.append(goto)
        if typ == "$END" and goto == end:
            return None
        row = states[goto]


def _steady(stack0: tuple[int, ...], values0: list[Any], stack: list[int], values: list[Any]) -> bool:
    """Whether taking a statement (stack and values ``stack0``/``values0`` before, ``stack``/``values``
    after) only appended the previous statement's record to the repetition list below it and
    pushed the new record, leaving every state but the top as it was.

    lark's table decides reductions by the stack's states and the lookahead alone, and the
    repetition's action appends its new item to the list it is given, so the same statement kind
    on the same stack does exactly the same again: the driver then takes that shortcut directly.
    """
    return (len(stack) == len(stack0) and tuple(stack[:-1]) == stack0[:-1] and len(values) == len(values0) >= 2
            and all(x is y for x, y in zip(values[:-1], values0[:-1])) and isinstance(values[-2], _Star)
            and len(values[-2]) > 0 and values[-2][-1] is values0[-1])


def _drive(machine: _Machine, text: str) -> Any:
    """Run lark's LALR table over ``text``; the value of the start symbol."""
    states, lexers, end = machine.states, machine.lexers, machine.end
    statement, kinds, statement_states = machine.statement, machine.kinds, machine.statement_states
    stack: list[int] = [machine.start]
    values: list[Any] = []
    pos, n = 0, len(text)
    # (stack, kind of statement) -> the state on top after taking it, where lark's table was seen to
    # reduce the previous statement into the repetition below it and nothing else (see _steady)
    steady: dict[tuple[tuple[int, ...], str | None], int] = {}
    while True:
        s = stack[-1]
        if s in statement_states:  # a whole one-line statement, taken at once
            mm = statement(text, pos)
            if mm is not None:
                kind = mm.lastgroup
                first, rule, record = kinds[kind]
                key = (tuple(stack), kind)
                top = steady.get(key)
                if top is not None:
                    values[-2].append(values[-1])
                    values[-1] = record(mm)
                    stack[-1] = top
                    pos = mm.end()
                    continue
                before = list(values)
                _reduce(states, stack, values, first, end)
                goto = states[stack[-1]].get(rule)
                if goto is None:
                    raise Fallback()
                values.append(record(mm))
                stack.append(goto[1])
                pos = mm.end()
                if _steady(key[0], before, stack, values):
                    steady[key] = stack[-1]
                continue
        match, keywords, ignore = lexers[s]
        while True:  # the next token, as lark's lexer for this state reads it
            if pos >= n:
                typ, val, start = "$END", "", n
                break
            m = match(text, pos)
            if m is None:
                raise Fallback()
            typ, start, pos = m.lastgroup, pos, m.end()
            if typ in ignore:
                continue
            val = m.group()
            if typ in keywords:
                typ = keywords[typ].fullmatch(val) or typ
            break
        target = _reduce(states, stack, values, typ, end)
        if target is None:
            return values[-1]
        if typ == "LSQB" and "list" in states[stack[-1]]:  # a tensor literal: one phrase, read in bulk later
            stop = _bulk_end(text, start)
            if stop > 0:
                values.append(BulkLiteral(text[start:stop]))
                stack.append(states[stack[-1]]["list"][1])
                pos = stop
                continue
        values.append(val)
        stack.append(target)
