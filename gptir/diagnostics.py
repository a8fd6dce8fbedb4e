"""Parse diagnostics: :class:`ParseError` and the wording of syntax errors (never lark's internals).

Every problem, syntactic or semantic, is a :class:`ParseError` with file, line, column and a caret;
:class:`Source` turns lark's exceptions and token positions into those errors.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from gptir.ir import GptirError

if TYPE_CHECKING:  # lark is loaded by the parser; ParseError itself needs no lark
    from lark import Token
    from lark.exceptions import UnexpectedInput


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


class Source:
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

    def line_of(self, tok: Token) -> int:
        """The line of ``tok``, for messages that name where something else was."""
        return int(tok.line or 0)

    def at(self, tok: Token | None, reason: str) -> ParseError:
        if tok is None or getattr(tok, "line", None) is None or tok.line is None or tok.column is None:
            return self.error(reason, len(self.lines), 1)
        return self.error(reason, tok.line, tok.column)

    def syntax(self, e: UnexpectedInput) -> ParseError:
        from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

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

