"""``gptir diff``: a structure-aware diff of two IR files or checkpoints, or the history of a dump folder.

``gptir diff A B`` (either may be ``-``) prints the unified form, ``--stat`` a summary, ``--format json``
the machine form (schema in :data:`gptir.diff.JSON_SCHEMA_DOC`). ``gptir diff DIR`` diffs each consecutive
pair of ``*.ir`` / ``*.ckpt`` files in sorted order (``gptir opt --dump-dir`` passes, ``gptir train
--dump-ir-every`` steps), one line per pair. Exit status as diff(1): 0 equal, 1 different, 2 trouble (bad
file, parse error, bad usage), with a one-line message and never a traceback.

A file that starts with the zip magic ``PK`` is read as a ``gptir train`` checkpoint and stands for the
graph :func:`checkpoint_graph` builds from it: the logits graph of its model configuration (structure from
the config, so two configurations differ structurally) with its parameters as values, plus the Adam
moments as unused ``param`` inputs ``adam.m.<param>`` / ``adam.v.<param>`` (value-only: no output reads
them). IR and checkpoints mix freely; an IR file simply has no ``adam.*`` inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from gptir import diff as gdiff
from gptir import text as gtext
from gptir.cli.common import check_paths
from gptir.fileio import read_bytes, read_text
from gptir.gcpause import gc_paused
from gptir.ir import GptirError, Graph, Node, TensorType, make_graph, short_words


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff", help="structure-aware diff of IR graphs (exit 0 equal, 1 different, 2 error)",
        description="Compare two IR files or checkpoints by structure and stable names (renumbering and\n"
                    "reordering are not differences), or with one DIR, each consecutive pair of its *.ir and\n"
                    "*.ckpt files. A checkpoint stands for its model's logits graph with its parameters, plus\n"
                    "the Adam moments as unused params adam.m.<name> / adam.v.<name> (compared as values).\n"
                    "Exit status: 0 equal, 1 different, 2 error.",
        epilog=gdiff.JSON_SCHEMA_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="A B: IR files or checkpoints (either may be '-' for stdin), or one DIR")
    p.add_argument("--stat", action="store_true", help="print counts per op and per scope instead of the lines")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="ANSI colour: auto = only when stdout is a terminal (default)")
    p.add_argument("--values", action=argparse.BooleanOptionalAction, default=True,
                   help="compare param and constant values (default on)")
    p.add_argument("--atol", type=float, default=0.0, metavar="X",
                   help="values within X count as equal (default 0: any bit change counts, nan == nan)")
    p.add_argument("--locs", action="store_true", help="also report nodes whose model location (loc) changed")
    p.add_argument("-U", "--context", type=int, default=2, metavar="N",
                   help="matched operands/users shown around each change (default 2)")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    # one line, as diff(1): a parse error's source excerpt and caret are dropped, its file:line:col kept
    line = short_words(msg.strip().splitlines()[0]) if msg.strip() else "unknown error"
    print(f"gptir diff: error: {line}", file=sys.stderr)
    return 2


@gc_paused  # one short-lived process holding two big graphs: the collector would rescan them again and again
def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except GptirError as e:
        return _fail(str(e))
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _fail(f"{where}{e.strerror or e}")
    except UnicodeDecodeError as e:
        return _fail(f"not UTF-8 text ({e.reason})")


def _run(args: argparse.Namespace) -> int:
    if args.atol < 0 or args.atol != args.atol or args.atol == float("inf"):
        return _fail(f"--atol must be a finite number >= 0, got {args.atol}")
    if args.context < 0:
        return _fail("--context must be >= 0")
    color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb")
    paths = args.paths
    if len(paths) == 1:
        if not os.path.isdir(paths[0]):
            return _fail(f"{paths[0]}: not a directory (give two IR files or checkpoints, "
                         "or one folder of *.ir / *.ckpt files)")
        return _history(args, paths[0])
    if len(paths) != 2:
        return _fail(f"expected two files (A B) or one DIR, got {len(paths)} paths")
    if paths == ["-", "-"]:
        return _fail("only one of the two files can be '-' (standard input)")
    for p in paths:
        if p != "-" and os.path.isdir(p):
            return _fail(f"{p} is a directory (give one DIR alone to diff its dumps in sequence)")
    check_paths([("A", paths[0]), ("B", paths[1])], [("-", "-")])  # stdout must not be one of them
    (a, note_a), (b, note_b) = load_any(paths[0]), load_any(paths[1])
    d = gdiff.diff_graphs(a, b, values=args.values, atol=args.atol, locs=args.locs)
    labels = (paths[0] if paths[0] != "-" else "<stdin>", paths[1] if paths[1] != "-" else "<stdin>")
    if args.format == "json":
        out = gdiff.to_json(d, labels)
    elif args.stat:
        out = gdiff.format_stat(d)
    else:
        headers = (labels[0] + (f" ({note_a})" if note_a else ""), labels[1] + (f" ({note_b})" if note_b else ""))
        out = gdiff.format_unified(d, color=color, labels=headers, context=args.context)
    _write(out)
    return 0 if d.equal else 1


def _history(args: argparse.Namespace, folder: str) -> int:
    files = sorted(f for f in os.listdir(folder)
                   if f.endswith((".ir", ".ckpt")) and os.path.isfile(os.path.join(folder, f)))
    if len(files) < 2:
        return _fail(f"{folder}: needs at least two *.ir or *.ckpt files to compare, found {len(files)}")
    different = False
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    prev = load_any(os.path.join(folder, files[0]))[0]
    for name_a, name_b in zip(files, files[1:]):
        cur = load_any(os.path.join(folder, name_b))[0]
        d = gdiff.diff_graphs(prev, cur, values=args.values, atol=args.atol, locs=args.locs)
        different = different or not d.equal
        lines.append(gdiff.history_line(d, name_a, name_b))
        summary = {k: gdiff._num(v) if isinstance(v, float) else v for k, v in gdiff.summary(d).items()}
        records.append({"a": name_a, "b": name_b, "pass": gdiff.pass_label(name_b), "equal": d.equal,
                        "summary": summary})
        prev = cur
    if args.format == "json":
        _write(json.dumps({"schema": "gptir-diff-history/1", "dir": folder, "pairs": records}, indent=2,
                          ensure_ascii=False) + "\n")
    else:
        _write("\n".join(lines) + "\n")
    return 1 if different else 0


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `gptir diff ... | head`: the reader left, which is fine
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass


# -- loading --------------------------------------------------------------------------------------------

ZIP_MAGIC = b"PK"  # an .npz is a zip; IR text never starts with these bytes ("graph", comments, blanks)


def load_any(path: str) -> tuple[Graph, str | None]:
    """An IR file or a checkpoint ('-' = stdin, either kind) as a graph, with a note for the text
    header (``checkpoint, step 3/6``) when it was a checkpoint."""
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:  # a text-only stdin (tests replace it): it can only be IR
            return gtext.parse(read_text("-"), "<stdin>", os.getcwd()), None
        name, folder = "<stdin>", os.getcwd()
    else:
        name, folder = path, os.path.dirname(os.path.abspath(path))
    try:  # read once: the path may be a pipe (`<(...)`) that cannot be read twice; bounded either way
        data = read_bytes(path, "GPTIR_MAX_TEXT_BYTES", "the IR file", text=True, zip_limit="GPTIR_MAX_ARRAY_BYTES")
    except OSError as e:
        raise GptirError(f"cannot read {path}: {e.strerror or e}") from None
    if data.startswith(ZIP_MAGIC):
        return _from_checkpoint(lambda ck: ck.from_bytes(data, name))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GptirError(f"{name}: not a UTF-8 text file (nor a gptir checkpoint)") from None
    return gtext.parse(text, name, folder), None


def _from_checkpoint(read: Any) -> tuple[Graph, str]:
    # imported here: checkpoints pull in the trainer, which plain IR diffs do not need
    from gptir import checkpoint as ck

    state = read(ck)
    return checkpoint_graph(state), f"checkpoint, step {state.step}/{state.num_steps}"


def checkpoint_graph(state: Any) -> Graph:
    """What a checkpoint (a :class:`gptir.train.TrainState`) is compared as: the model's logits graph
    for a full block (its structure follows the configuration), the checkpoint's parameters as its
    param values, and each parameter's Adam moments as two more ``param`` inputs ``adam.m.<name>`` and
    ``adam.v.<name>`` of the parameter's shape (scope ``adam``). No output reads the moments: they are
    there to be compared as values. The training step, seed and vocabulary are not compared."""
    from gptir.model import logits_graph, param_shapes

    cfg = state.model
    g = logits_graph(cfg, cfg.block_size)
    params = {name: np.asarray(v) for name, v in state.params.items()}
    extra: list[Node] = []
    for kind, flat in (("m", np.asarray(state.m)), ("v", np.asarray(state.v))):
        offset = 0
        for name, shape in param_shapes(cfg).items():
            size = int(np.prod(shape, dtype=np.int64))
            moment = f"adam.{kind}.{name}"
            extra.append(Node(moment, "param", (), TensorType(cfg.dtype, tuple(shape)), scope="adam"))
            params[moment] = flat[offset:offset + size].reshape(shape)
            offset += size
    return make_graph(g.name, [*g.nodes.values(), *extra], g.outputs, params)
