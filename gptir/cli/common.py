"""Helpers shared by the CLI verbs: reading IR files, ``NAME=VALUE`` specs, printing results.

Values on the command line are JSON numbers or nested lists (plus ``inf``, ``-inf``, ``nan``),
``true``/``false`` for booleans, or ``@file.npy`` to load an array. They are parsed with ``json``,
never evaluated.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from gptir.cli import UsageError, shorten
from gptir.budget import human
from gptir.fileio import check_writable, limit, too_big
from gptir.ir import GptirError, Graph, TensorType, is_identifier
from gptir.text import format_literal, load_graph, load_params, print_graph, relative_to_output, save_graph

_TYPE_SPEC = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\[")
# lowercase inf/nan (not inside a word) become the spellings Python's json module reads
_SPECIAL = re.compile(r"(?<![A-Za-z0-9_])(-?)(inf|nan)(?![A-Za-z0-9_])")


RAISE_MEMORY = "set GPTIR_MAX_MEMORY to a larger number of bytes to allow it"


def memory_limit() -> int:
    """The memory a program's values may take (``GPTIR_MAX_MEMORY``, default: the machine's memory)."""
    return limit("GPTIR_MAX_MEMORY")


def split_spec(spec: str, option: str) -> tuple[str, str]:
    """``NAME=REST`` -> (NAME, REST); a malformed spec is a usage error (exit 2)."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not is_identifier(name):
        raise UsageError(f"{option} expects NAME=VALUE (NAME an identifier such as x or layer0.w), got {echo(spec)}")
    return name, rest


def echo(text: str) -> str:
    """User text quoted for an error message, cut to ~80 characters (a bad 20 kB value is not echoed whole)."""
    return repr(shorten(text))


def parse_value(text: str, what: str) -> np.ndarray:
    """A JSON number, bool or nested list (with inf/-inf/nan) as an array: f64 if any float, else i64/bool.

    true/false and numbers do not mix: ``[1, true]`` is an error, not the integers ``[1, 1]``."""
    src = _SPECIAL.sub(lambda m: m.group(1) + ("Infinity" if m.group(2) == "inf" else "NaN"), text.strip())
    try:
        value = json.loads(src, parse_float=lambda s: _exact_float(s, what))
    except (ValueError, RecursionError) as e:
        raise GptirError(f"{what}: cannot read {echo(text)} as a number or nested list ({_short(e)})") from None
    _check_json(value, what, text)
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError) as e:
        raise GptirError(f"{what}: {echo(text)} is not a rectangular array ({_short(e)})") from None
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u":
            raise GptirError(f"{what}: integers in {echo(text)} do not fit in 64 bits")
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr
    raise GptirError(f"{what}: {echo(text)} is not a rectangular array of numbers")


def _exact_float(s: str, what: str) -> float:
    """A JSON number as the nearest f64, refusing one that is not a finite f64 at all: ``1e400`` would
    silently become inf and ``1e-400`` 0.0 (write ``inf`` for infinity)."""
    v = float(s)
    if math.isinf(v):
        raise GptirError(f"{what}: {shorten(s)} is beyond the range of f64 (about ±1.8e308); write inf for infinity")
    if v == 0.0 and any(c in "123456789" for c in s.lower().partition("e")[0]):
        raise GptirError(f"{what}: {shorten(s)} is too small for f64 (it would become 0.0); write 0 for zero")
    return v


def fit_empty(graph: Graph, inputs: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Empty JSON values for inputs of an empty type: ``[]`` (or ``[[], []]``, ...) is every empty shape whose
    leading dimensions it spells, of any dtype (``x=[]`` for an ``f64[0,3]`` or ``i64[0]`` input)."""
    out = dict(inputs)
    for name in names:
        arr, node = out.get(name), graph.nodes.get(name)
        if arr is None or node is None or node.op not in ("input", "param"):
            continue
        want = node.type
        if arr.size == 0 and want.size == 0 and arr.dtype.kind == "f" and arr.shape == want.shape[:arr.ndim]:
            out[name] = np.zeros(want.shape, want.np_dtype)
    return out


def json_specs(specs: Sequence[str]) -> list[str]:
    """The names of ``NAME=VALUE`` specs given as JSON (not ``@file.npy``)."""
    return [n.strip() for n, _, rest in (s.partition("=") for s in specs) if not rest.startswith("@")]


def _check_json(value: Any, what: str, text: str) -> None:
    stack = [value]
    kinds: set[str] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, float):
            kinds.add("number")
        elif isinstance(v, int):
            kinds.add("number")
            if not -(2**63) <= v < 2**63:
                raise GptirError(f"{what}: the integer {shorten(str(v))} does not fit in 64 bits")
        else:
            raise GptirError(f"{what}: {echo(text)} must hold only numbers, true/false and lists")
    if len(kinds) > 1:
        raise GptirError(f"{what}: {echo(text)} mixes true/false with numbers; give all numbers or all true/false")


def _short(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return msg if len(msg) < 120 else msg[:117] + "..."


def load_array(path: str, what: str) -> np.ndarray:
    """An array from a .npy file (never unpickles), of at most ``GPTIR_MAX_ARRAY_BYTES``."""
    try:
        if os.path.getsize(path) > limit("GPTIR_MAX_ARRAY_BYTES"):
            raise too_big(f"{what}: {shorten(path)}", human(limit("GPTIR_MAX_ARRAY_BYTES")), "GPTIR_MAX_ARRAY_BYTES")
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GptirError(f"{what}: {path} does not exist") from None
    except OSError as e:
        raise GptirError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    except (ValueError, EOFError) as e:
        raise GptirError(f"{what}: {path} is not a valid .npy file ({_short(e)})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise GptirError(f"{what}: {path} is an .npz archive; give a single array as .npy")
    try:
        TensorType.of(arr)
    except GptirError as e:
        raise GptirError(f"{what}: {path}: {e}") from None
    return arr


def value_or_file(rest: str, what: str) -> np.ndarray:
    """VALUE or @file.npy."""
    if rest.startswith("@"):
        return load_array(rest[1:], what)
    return parse_value(rest, what)


def is_type_spec(rest: str) -> bool:
    return bool(_TYPE_SPEC.match(rest))


def parse_inputs(specs: list[str] | None, option: str) -> dict[str, np.ndarray]:
    """``--input NAME=VALUE`` (or ``NAME=@file.npy``) options as {name: array}."""
    out: dict[str, np.ndarray] = {}
    for spec in specs or []:
        name, rest = split_spec(spec, option)
        if name in out:
            raise UsageError(f"{option} {shorten(name)} is given twice")
        out[name] = value_or_file(rest, f"{option} {shorten(name)}")
    return out


def read_graph(path: str, params_path: str | None = None) -> Graph:
    """Parse an IR file (``-`` = stdin) and merge param values from ``params_path`` (.npz) if given."""
    graph = load_graph(path)
    if params_path:
        values = load_params(params_path, {n.name: n.type for n in graph.nodes.values() if n.op == "param"})
        params = dict(graph.params)
        for name, arr in values.items():
            node = graph.nodes.get(name)
            if node is None or node.op != "param":
                raise GptirError(f"{params_path} holds a value for {name}, which is not a param of graph {graph.name}")
            if TensorType.of(arr) != node.type:
                raise GptirError(f"{params_path}: %{name} is {node.type}, but the file holds {TensorType.of(arr)}")
            params[name] = arr
        graph = graph.replace(params=params)
    return graph


def write_graph(graph: Graph, out: str, params_out: str | None = None) -> None:
    """Print ``graph`` to ``out`` (``-`` = stdout). With ``params_out`` the values go to that .npz
    and the text names it."""
    save_graph(graph, out, sidecar=params_out)


def format_value(arr: np.ndarray) -> str:
    """Full precision, round-trippable: the IR's literal syntax (floats in repr form, nan(0x..) bits)."""
    return format_literal(np.asarray(arr))


def _json_safe(v: Any) -> Any:
    """Non-finite floats become the strings "inf", "-inf", "nan" (JSON has no spelling for them)."""
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


EXEC_SCHEMA = "gptir-exec/1"  # gptir exec --format json, documented in the README


def format_outputs(outputs: Mapping[str, np.ndarray], graph: Graph, fmt: str) -> str:
    if fmt == "json":
        doc: dict[str, Any] = {"schema": EXEC_SCHEMA, "graph": graph.name, "outputs": {}}
        for name, arr in outputs.items():
            arr = np.asarray(arr)
            ty = graph.nodes[graph.outputs[name]].type
            doc["outputs"][name] = {"dtype": ty.dtype, "shape": list(arr.shape), "value": _json_safe(arr.tolist())}
        return json.dumps(doc, allow_nan=False) + "\n"
    return "".join(f"{name} = {format_value(arr)}\n" for name, arr in outputs.items())


def graph_text_for(graph: Graph, source: str, out: str) -> str:
    """The text of ``graph`` (read from ``source``) to be written at ``out``.

    A graph whose values came from a sidecar keeps naming that same sidecar, re-pathed relative to the
    new file (or the working folder for stdout), so a pass or a gradient does not inline megabytes of
    parameters; values without a sidecar stay inline.
    """
    sidecar = sidecar_of(graph, source)
    if sidecar is None:
        return print_graph(graph)
    return print_graph(graph.replace(params_file=relative_to_output(sidecar, out)))


# -- the paths of a verb: no output may clobber an input or another output ------------------------------

Paths = Sequence[tuple[str, Optional[str]]]  # (option as the user wrote it, path or None)


def _identity(path: str) -> tuple[str, Optional[tuple[int, int]], bool]:
    """(resolved path, (device, inode) if it exists, whether it is a regular file or absent)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real, None, True
    return real, (st.st_dev, st.st_ino), stat.S_ISREG(st.st_mode)


def _same(a: tuple[str, Optional[tuple[int, int]], bool], b: tuple[str, Optional[tuple[int, int]], bool]) -> bool:
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def check_paths(inputs: Paths, outputs: Paths, *, allow: Sequence[tuple[str, str]] = ()) -> None:
    """The one path check every verb calls before its work: each output can be written (its folder
    accepts a new file, see :func:`gptir.fileio.check_writable`), and no output is the same file as an
    input or as another output — compared by resolved path (symlinks followed) and by device and inode
    (hard links), so ``-o m.py`` for the model ``m.py`` is refused, not written. ``-`` as an output is
    standard output: a regular file there (``> m.ir``) must not be an input either. Special files
    (``/dev/null``) may be named by several outputs. ``allow`` lists (input option, output option)
    pairs that may name one file (``--resume C --out C`` continues a checkpoint in place)."""
    ins = [(opt, p, _identity(p)) for opt, p in inputs if p and p != "-"]
    outs: list[tuple[str, str, tuple[str, Optional[tuple[int, int]], bool]]] = []
    for opt, p in outputs:
        if not p:
            continue
        if p == "-":
            try:
                st = os.fstat(sys.stdout.fileno())
            except (OSError, AttributeError, ValueError):  # no real stdout (a test's StringIO)
                continue
            if stat.S_ISREG(st.st_mode):
                outs.append(("standard output", "-", ("", (st.st_dev, st.st_ino), True)))
            continue
        check_writable(p)  # an OSError naming the path: exit 1 with "PATH: reason"
        outs.append((opt, p, _identity(p)))
    for i, (opt, p, ident) in enumerate(outs):
        for in_opt, in_p, in_ident in ins:
            if _same(ident, in_ident) and (in_opt, opt) not in allow and ident[2]:
                raise GptirError(f"{opt} {shorten(p)} is the same file as {in_opt} {shorten(in_p)}: "
                                 "refusing to overwrite an input (choose another output file)")
        for opt2, p2, ident2 in outs[:i]:
            if _same(ident, ident2) and ident[2]:
                raise GptirError(f"{opt} {shorten(p)} and {opt2} {shorten(p2)} are the same file: "
                                 "give each output its own file")


def file_args(specs: Sequence[str], option: str) -> list[tuple[str, Optional[str]]]:
    """The ``@file.npy`` paths in ``NAME=@file`` specs, as inputs for :func:`check_paths`."""
    out: list[tuple[str, Optional[str]]] = []
    for spec in specs:
        rest = spec.partition("=")[2]
        if rest.startswith("@"):
            out.append((option, rest[1:]))
    return out


def sidecar_of(graph: Graph, source: str) -> Optional[str]:
    """The path of the ``params "..."`` sidecar ``graph`` (read from ``source``) names, if any."""
    if graph.params_file is None:
        return None
    base = os.getcwd() if source == "-" else os.path.dirname(os.path.abspath(source))
    return os.path.join(base, graph.params_file)


def add_native_options(p: Any) -> None:
    """``--cache-dir``: where the native backend keeps built programs (every verb that can build them)."""
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="native backend: the folder of built programs (default: $GPTIR_NATIVE_CACHE, else "
                        "$XDG_CACHE_HOME/gptir/native or ~/.cache/gptir/native)")


def require_native(backend: str) -> None:
    """For ``--backend native``: a one-line error before any work when no C compiler is found."""
    if backend == "native":
        from gptir.native import NativeError, available

        reason = available()
        if reason:
            raise NativeError(reason)
