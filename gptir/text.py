"""The text format, one import away: re-exports the printer, the parser and the file functions.

The jobs live in their own modules — :mod:`gptir.printer` (no lark), :mod:`gptir.parser` (lark's
LALR parser over ``grammars/gptir.lark``; :mod:`gptir.fastparse` is its table-driven fast path),
:mod:`gptir.diagnostics` (:class:`ParseError` and the wording of errors) and :mod:`gptir.graphio`
(IR files and ``.npz`` sidecars). The parser is loaded on first use, so importing this module for
the printer does not load lark.
"""

from __future__ import annotations

from typing import Any

from gptir.diagnostics import ParseError
from gptir.graphio import ParamTypeError, load_graph, load_params, relative_to_output, save_graph, save_params
from gptir.printer import (
    CANONICAL_NAN, format_attr, format_attrs, format_float, format_literal, format_node, format_scalar,
    format_string, print_graph,
)

_PARSER_NAMES = ("parse", "MAX_RANK", "_parser")


def __getattr__(name: str) -> Any:
    """``parse`` (and the parser's cached ``_parser``) load lark on first use."""
    if name in _PARSER_NAMES:
        from gptir import parser

        return getattr(parser, name)
    raise AttributeError(f"module 'gptir.text' has no attribute {name!r}")


__all__ = [
    "CANONICAL_NAN", "ParamTypeError", "ParseError", "format_attr", "format_attrs", "format_float", "format_literal",
    "format_node", "format_scalar", "format_string", "load_graph", "load_params", "parse", "print_graph",
    "relative_to_output", "save_graph", "save_params",
]
