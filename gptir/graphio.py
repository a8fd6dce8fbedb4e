"""Files: IR text (:func:`load_graph`, :func:`save_graph`) and param values in ``.npz`` sidecars
(:func:`load_params`, :func:`save_params`). A ``params "file.npz"`` header names a sidecar, resolved
next to the IR file."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Mapping

import numpy as np

from gptir.fileio import atomic_write_bytes, atomic_write_text, read_text
from gptir.ir import DTYPES, NUMPY_DTYPES, GptirError, Graph
from gptir.printer import print_graph



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


def load_params(path: str) -> dict[str, np.ndarray]:
    """Parameter values from an .npz archive (never unpickles); raises GptirError when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):  # pragma: no cover - np.load of .npy returns an array
                raise GptirError(f"{path} is not an .npz archive")
            out = {k: np.asarray(data[k]) for k in data.files}
    except GptirError:
        raise
    except AttributeError:
        raise GptirError(f"params file {path} is not an .npz archive") from None
    except FileNotFoundError:
        raise GptirError(f"params file {path} does not exist") from None
    except OSError as e:
        raise GptirError(f"cannot read params file {path}: {e.strerror or e}") from None
    except (ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
        raise GptirError(f"params file {path} is not a valid .npz archive ({e})") from None
    for k, v in out.items():
        if v.dtype not in NUMPY_DTYPES.values():
            raise GptirError(f"params file {path}: {k} has dtype {v.dtype} (gptir has {', '.join(DTYPES)})")
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
