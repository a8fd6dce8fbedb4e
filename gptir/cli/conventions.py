"""The command-line conventions every verb gets without asking: one parser class for all of them.

- ``allow_abbrev=False``: ``--form json`` is an error, not ``--format json``, so scripts do not break when
  an option is added later.
- ``--help`` shows every option's default: the formatter appends ``(default: X)`` to a help text that does
  not already say it (``None``/``False`` defaults mean "not given" and are not shown).
- Option values are checked by argparse types (:func:`positive_int`, ...), so an out-of-range value is a
  usage error, exit 2 with the verb's usage, like a malformed one.

``gptir.cli.build_parser`` makes the root parser a :class:`GptirParser`; argparse makes every subparser of
the same class, so a verb registered by ``register(subparsers)`` follows these rules automatically.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable


class _DefaultsMixin(argparse.HelpFormatter):
    """Append ``(default: X)`` to option help that does not mention its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower() or "%(default)" in text:
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == []:
            return text
        if isinstance(default, bool):  # BooleanOptionalAction with default True
            shown = "on"
        elif isinstance(default, (list, tuple)):
            shown = ",".join(map(str, default))
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})" if text else f"(default: {shown.replace('%', '%%')})"


def with_defaults(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` that also shows defaults (a verb may still choose e.g. RawDescriptionHelpFormatter)."""
    if issubclass(formatter, _DefaultsMixin):
        return formatter
    return type(f"Gptir{formatter.__name__}", (_DefaultsMixin, formatter), {})


class GptirParser(argparse.ArgumentParser):
    """An ArgumentParser with gptir's conventions (see the module docstring); subparsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs["formatter_class"] = with_defaults(kwargs.get("formatter_class", argparse.HelpFormatter))
        super().__init__(*args, **kwargs)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
nonnegative_int = _int_at_least(0)


def _float(strictly_positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
            want = "a finite number > 0" if strictly_positive else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    parse.__name__ = "positive number" if strictly_positive else "number >= 0"
    return parse


positive_float = _float(True)
nonnegative_float = _float(False)


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """verb -> its parser (empty for a parser without verbs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def verb_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """verb -> its one-line help, as ``gptir --help`` lists it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}
