"""Files: IR text (:func:`load_graph`, :func:`save_graph`) and param values in ``.npz`` sidecars
(:func:`load_params`, :func:`save_params`). A ``params "file.npz"`` header names a sidecar, resolved
next to the IR file."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Mapping

import numpy as np

from gptir.fileio import (
    atomic_write_bytes, atomic_write_text, npz_header, npz_names, npz_read, open_npz, read_bytes, read_text,
)
from gptir.ir import DTYPES, NUMPY_DTYPES, GptirError, Graph, TensorType, short
from gptir.printer import print_graph


def read_user_text(path: str) -> str:
    """A user's text file (``-`` = standard input), read with the capped reader; failures are one-line
    GptirErrors naming the file."""
    filename = "<stdin>" if path == "-" else path
    try:
        return read_text(path)
    except UnicodeDecodeError:
        raise GptirError(f"{filename}: not a UTF-8 text file") from None
    except OSError as e:
        raise GptirError(f"cannot read {filename}: {e.strerror or e}") from None


def load_graph(path: str) -> Graph:
    """Read and parse an IR file (``-`` = standard input); a sidecar is resolved next to the file."""
    filename = "<stdin>" if path == "-" else path
    text = read_user_text(path)
    base_dir = os.getcwd() if path == "-" else (os.path.dirname(path) or ".")
    from gptir.parser import parse  # the printer-only users of this module never load lark

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
