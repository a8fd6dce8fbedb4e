"""``gptir view``: one self-contained HTML page (no network at view time) picturing IR.

- ``gptir view FILE.ir``: the graph, laid out by gptir (collapsible scopes, pan and zoom, node details,
  search);
- ``gptir view A.ir B.ir``: the diff (``gptir diff``'s matching) as a picture;
- ``gptir view DIR``: a stepper (← →) over the ``*.ir`` dumps of ``gptir opt --dump-dir`` or
  ``gptir train --dump-ir-every``, each step highlighting what changed from the one before;
- ``gptir view RUN.jsonl``: the loss curve of a ``gptir train --log`` file, with the run record.

``-o OUT.html`` names the page (default: the first input's name with ``.html``, in the working folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gptir import viewer as gview
from gptir.cli import UsageError, shorten
from gptir.cli.common import check_paths
from gptir.fileio import atomic_write_text
from gptir.graphio import read_user_text
from gptir.ir import GptirError
from gptir.text import load_graph

MAX_STEPS = 200  # dump files one page may step through


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="picture a graph, a diff, a dump folder or a training log as HTML",
                       description="Write one self-contained HTML page: FILE.ir (a graph), A.ir B.ir (their "
                                   "diff), DIR (a stepper over its *.ir dumps) or RUN.jsonl (a gptir train "
                                   "--log loss curve). Open it from disk in any browser.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="FILE.ir | A.ir B.ir | DIR | RUN.jsonl")
    p.add_argument("-o", "--output", metavar="OUT.html",
                   help="where to write (default: the first PATH's name with .html; '-' for stdout)")
    p.set_defaults(func=run)


def check_output(out: str, inputs: list[str]) -> None:
    """The path rule every verb follows (:func:`gptir.cli.common.check_paths`: the output's folder
    accepts a new file, and it is no input — symlinks followed, hard links by inode), plus view's own:
    a folder is no output, and a page written into a dump folder must not become one of its dumps."""
    if out == "-":
        return
    if os.path.isdir(out):
        raise GptirError(f"{out}: is a folder; give a file name such as {os.path.join(out, 'view.html')}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise GptirError(f"{out}: its folder does not exist")
    for path in inputs:
        if os.path.isdir(path) and out.endswith(".ir") and os.path.samefile(path, folder):
            raise GptirError(f"{out}: would be one of the dumps of {path}; choose another output")
    check_paths([("PATH", p) for p in inputs if not os.path.isdir(p)], [("-o", out)])


def _default_output(path: str) -> str:
    if path == "-":
        raise UsageError("give -o OUT.html when reading standard input")
    base = os.path.basename(os.path.normpath(path))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem or "view") + ".html"


def run(args: argparse.Namespace) -> int:
    paths = args.paths
    if len(paths) > 2:
        raise UsageError(f"expected FILE.ir, A.ir B.ir, DIR or RUN.jsonl, got {len(paths)} paths")
    out = args.output or _default_output(paths[0])
    check_output(out, paths)
    if len(paths) == 2:
        if paths == ["-", "-"]:
            raise UsageError("only one of the two files can be '-' (standard input)")
        for p in paths:
            if p != "-" and os.path.isdir(p):
                raise GptirError(f"{p}: is a folder (give one DIR alone to step through its dumps)")
        a, b = load_graph(paths[0]), load_graph(paths[1])
        text = gview.view(a, b, title=f"{shorten(paths[0])} -> {shorten(paths[1])}")
    elif os.path.isdir(paths[0]):
        text = _steps(paths[0])
    elif paths[0].endswith((".jsonl", ".json")):
        text = gview.loss_html(_read_log(paths[0]), f"training run {shorten(os.path.basename(paths[0]))}")
    else:
        text = gview.view(load_graph(paths[0]), title=f"{shorten(paths[0])}")
    atomic_write_text(out, text)
    if out != "-":
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _steps(folder: str) -> str:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".ir") and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise GptirError(f"{folder}: holds no *.ir dumps (make some with gptir opt --dump-dir or "
                         "gptir train --dump-ir-every N --dump-dir)")
    if len(files) > MAX_STEPS:
        raise GptirError(f"{folder}: holds {len(files)} dumps; one page steps through at most {MAX_STEPS}")
    graphs = [(f, load_graph(os.path.join(folder, f))) for f in files]
    return gview.view(graphs, title=f"{shorten(folder)}: {len(files)} dumps")


def _read_log(path: str) -> list[dict[str, Any]]:
    text = read_user_text(path)
    records: list[dict[str, Any]] = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            raise GptirError(f"{path}:{i}: not a JSON line (a gptir train --log file has one record a line)") from None
        if not isinstance(rec, dict):
            raise GptirError(f"{path}:{i}: expected a JSON object such as {{\"step\": 1, \"loss\": 3.3}}")
        if "loss" in rec and not isinstance(rec.get("loss"), (int, float)) or (
                "step" in rec and (not isinstance(rec["step"], int) or isinstance(rec["step"], bool))):
            raise GptirError(f"{path}:{i}: a step record needs an integer step and a numeric loss")
        records.append(rec)
    if not any("loss" in r for r in records):
        raise GptirError(f"{path}: holds no {{\"step\": N, \"loss\": X}} records (write one with gptir train --log)")
    return records
