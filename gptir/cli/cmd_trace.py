"""``gptir trace FILE.py:FUNCTION``: trace a Python function into IR and print it.

Each ``--arg NAME=SPEC`` becomes a data input named after the function's parameter: SPEC is a type
(``f64[3,4]``), an example value (``[1.0, 2.0]``, its type is what counts) or ``@file.npy``. Each
``--param NAME=VALUE`` becomes a trainable ``param`` with that value. Parameters that are not given
keep their Python defaults. ``gptir trace microgpt`` traces the built-in model (see --n-embd ...).

The file is the user's own model code: it is imported and run, like ``python FILE.py`` would.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from typing import Any, Callable, Iterator

from gptir.cli import UsageError, shorten
from gptir.cli.common import (
    RAISE_MEMORY, check_paths, echo, file_args, is_type_spec, memory_limit, split_spec, value_or_file, write_graph,
)
from gptir.cli.conventions import positive_int
from gptir.ir import GptirError, Graph, TensorType
from gptir.tracing import Param, trace

MICROGPT_OPTIONS = ("n_embd", "n_head", "n_layer", "block_size", "doc", "train_step", "data", "seed",
                    "checkpoint", "batch", "dtype")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="trace a Python function (FILE.py:FUNCTION) or microgpt into IR",
                       description="Trace FILE.py:FUNCTION (or the built-in 'microgpt') and print its IR.")
    p.add_argument("target", metavar="FILE.py:FUNCTION|microgpt",
                   help="a function in a Python file, or the built-in microgpt model")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=SPEC",
                   help="a data input: NAME=f64[3,4] (a type), NAME=VALUE (JSON number/list) or NAME=@file.npy")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a trainable param with this value: NAME=VALUE or NAME=@file.npy")
    p.add_argument("-o", "--output", default="-", metavar="OUT.ir", help="where to write the IR (default: stdout)")
    p.add_argument("--params-out", metavar="FILE.npz",
                   help="write param values to this .npz sidecar instead of inline in the IR")
    g = p.add_argument_group("microgpt target")
    g.add_argument("--n-embd", type=positive_int, default=None, metavar="N", help="embedding width (default 16)")
    g.add_argument("--n-head", type=positive_int, default=None, metavar="N", help="attention heads (default 4)")
    g.add_argument("--n-layer", type=positive_int, default=None, metavar="N", help="transformer layers (default 1)")
    g.add_argument("--block-size", type=positive_int, default=None, metavar="N", help="context length (default 16)")
    g.add_argument("--doc", metavar="NAME", help="the document (name) to trace the loss of")
    g.add_argument("--train-step", action="store_true", help="trace a whole training step (loss, grads, Adam)")
    g.add_argument("--data", metavar="FILE",
                   help="training text, one document per line (default: the built-in first-name corpus)")
    g.add_argument("--seed", type=int, default=None, metavar="S", help="the run's random seed (default 42)")
    g.add_argument("--checkpoint", metavar="CKPT", help="take the model and parameters from this checkpoint")
    g.add_argument("--batch", type=positive_int, default=None, metavar="B", help="documents per step (default 1)")
    g.add_argument("--pack", action="store_true",
                   help="the batch packed into rows, as gptir train --pack (inputs pos, slots, rows become constants)")
    g.add_argument("--dtype", choices=("f64", "f32"), default=None,
                   help="the model's float type, as gptir train --dtype (default f64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = None if args.target == "microgpt" else args.target.rpartition(":")[0] or None
    check_paths(  # before tracing, which may take a while
        [("the model file", model), *file_args(args.arg, "--arg"), *file_args(args.param, "--param"),
         ("--data", args.data), ("--checkpoint", args.checkpoint)],
        [("-o", args.output), ("--params-out", args.params_out)])
    if args.target == "microgpt":
        if args.arg or args.param:
            raise UsageError("--arg and --param apply to FILE.py:FUNCTION targets, not microgpt")
        from gptir.cli.trace_microgpt import trace_microgpt  # the model layers load only for this target

        graph = trace_microgpt(args)
    else:
        given = [o for o in MICROGPT_OPTIONS if getattr(args, o) not in (None, False)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} only applies to the microgpt target")
        graph = trace_file(args.target, args.arg, args.param)
    write_graph(graph, args.output, args.params_out)
    return 0


def trace_file(target: str, arg_specs: list[str], param_specs: list[str]) -> Graph:
    """Import FILE.py, find FUNCTION and trace it with the given inputs (matched by parameter name)."""
    path, sep, fname = target.rpartition(":")
    if not sep or not path or not fname:
        raise UsageError(f"the target must be FILE.py:FUNCTION or microgpt, got {echo(target)}")
    fn = _load_function(path, fname)
    sig = inspect.signature(fn)
    names = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    specs: dict[str, Any] = {}
    for option, items in (("--arg", arg_specs), ("--param", param_specs)):
        for spec in items:
            name, rest = split_spec(spec, option)
            if name not in names:
                raise GptirError(f"{fname} has no parameter {shorten(name)} (it takes: {', '.join(names) or 'nothing'})")
            if name in specs:
                raise UsageError(f"parameter {shorten(name)} is given twice")
            specs[name] = _spec(option, name, rest)
    missing = [n for n in names if n not in specs and sig.parameters[n].default is inspect.Parameter.empty]
    if missing:
        raise GptirError(f"missing --arg for {', '.join(missing)} ({fname} takes: {', '.join(names)}; "
                         f"give each as --arg NAME=f64[3] or --param NAME=VALUE)")
    order = [n for n in names if n in specs]  # inputs appear in the function's parameter order

    def call(*args: Any) -> Any:
        return fn(**dict(zip(order, args)))

    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in order])
    with user_code(path):
        graph = trace(call, *[specs[n] for n in order], name=fname)
    return _inputs_at_definition(graph, fn)


@contextlib.contextmanager
def user_code(path: str) -> Iterator[None]:
    """Run the user's model code: any failure in it (a tracing error such as ``if`` on a traced value,
    an exception in a generator or a base class, a failed import, even ``sys.exit`` or an exception
    whose ``str`` fails) becomes one GptirError naming ``path`` and the line of the last frame inside it."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except SyntaxError as e:
        if e.filename and _same_file(e.filename, path):
            raise GptirError(f"{path}:{e.lineno}: syntax error: {_text(e.msg)}") from None
        raise GptirError(_user_error(e, path)) from None
    except SystemExit as e:  # sys.exit() in the model must not end gptir silently with its status
        raise GptirError(_exit_error(e, path)) from None
    except GptirError as e:  # a tracing error: say where in the model it happened
        msg = _text(e)
        m = re.match(r"(\S+?):(\d+): ", msg)  # the tracer may have named the model line already: name it once
        if m and (_same_file(m.group(1), path) or
                  os.path.realpath(path).endswith(os.sep + m.group(1).replace("/", os.sep))):
            msg = msg[m.end():]
        raise GptirError(f"{_where(e, path)}{msg}") from None
    except BaseException as e:  # the user's model code failed: say where, without a traceback
        raise GptirError(_user_error(e, path)) from None


def _inputs_at_definition(graph: Graph, fn: Callable[..., Any]) -> Graph:
    """Inputs made from the function's parameters point at its ``def`` line, not at this module."""
    code = getattr(fn, "__code__", None)
    if code is None:  # pragma: no cover - a callable object without code
        return graph
    rel = os.path.relpath(code.co_filename)
    where = f"{rel if not rel.startswith('..') else os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    nodes = {k: (n.replace(loc=where.replace(os.sep, "/")) if n.op in ("input", "param")
                 and n.loc.startswith("gptir/cli/") else n) for k, n in graph.nodes.items()}
    return graph.replace(nodes=nodes)


def _spec(option: str, name: str, rest: str) -> Any:
    if option == "--arg" and is_type_spec(rest):
        return TensorType.parse(rest)
    if option == "--param" and is_type_spec(rest):
        ty = TensorType.parse(rest)
        import numpy as np

        from gptir.budget import human, value_bytes

        if value_bytes(ty) > memory_limit():  # its zeros are made here: refuse what cannot fit
            raise GptirError(f"out of memory: --param {shorten(name)}={ty} needs {human(value_bytes(ty))}, more than "
                             f"the {human(memory_limit())} memory limit ({RAISE_MEMORY})")

        return Param(np.zeros(ty.shape, ty.np_dtype))
    value = value_or_file(rest, f"{option} {name}")
    return Param(value) if option == "--param" else value


def _load_function(path: str, fname: str) -> Callable[..., Any]:
    if not os.path.isfile(path):
        raise GptirError(f"{path}: no such file")
    module_name = "_gptir_user_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise GptirError(f"{path}: cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the model's own helper modules beside it
    try:
        with user_code(path):
            spec.loader.exec_module(module)
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:  # pragma: no cover
            pass
    fn = getattr(module, fname, None)
    if not callable(fn):
        defined = sorted(n for n, v in vars(module).items()
                         if inspect.isfunction(v) and v.__module__ == module_name and not n.startswith("_"))
        raise GptirError(f"{path} has no function {fname!r} (it defines: {', '.join(defined) or 'none'})")
    return fn


def _exit_error(e: SystemExit, path: str) -> str:
    """``file.py:3: the model code called sys.exit(0)``: gptir must not end silently with its status."""
    code = "" if e.code is None else shorten(_text(e.code, repr))
    return f"{_where(e, path)}the model code called sys.exit({code})"


def _user_error(e: BaseException, path: str) -> str:
    """``file.py:12: TypeError: ...`` at the innermost frame of the user's file."""
    msg = shorten(_text(e), 300)
    return f"{_where(e, path)}{type(e).__name__}{': ' + msg if msg else ''}"


def _text(x: Any, fn: Callable[[Any], str] = str) -> str:
    """``str(x)`` on one line, even when the model's exception class breaks ``__str__``."""
    try:
        return " ".join(fn(x).split())
    except Exception:  # noqa: BLE001 - user code: anything can fail
        return f"<{type(x).__name__} whose message cannot be shown>"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _where(e: BaseException, path: str) -> str:
    """``file.py:12: `` for the innermost frame of the user's file in ``e``'s traceback (including the
    exceptions it was raised from, so an error re-raised by gptir still points at the model)."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    full = os.path.realpath(path)
    known: dict[str, bool] = {}
    for exc in chain:
        frames = traceback.extract_tb(exc.__traceback__)
        for f in reversed(frames):
            if f.filename not in known:
                known[f.filename] = os.path.realpath(f.filename) == full
            if known[f.filename]:
                return f"{path}:{f.lineno}: "
    return f"{path}: "
