"""``gptir opt IN.ir [--passes P1,P2,...] [--print-after-all] [--dump-dir DIR] [-o OUT.ir]``.

Runs optimisation passes (default: the standard pipeline) and writes the optimised IR to ``-o``
(default: standard output). ``--print-after-all`` prints the IR after every pass to *standard error*
under a header ``# ---- after cse: 412 -> 380 nodes ----`` (``#`` is the IR comment syntax, so each
section parses on its own), keeping standard output for the final IR. ``--dump-dir DIR`` writes
``00-input.ir``, ``01-<pass>.ir``, ... there (atomically). An unknown pass name is a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from gptir.cli import UsageError
from gptir.fileio import atomic_write_text
from gptir.ir import GptirError, Graph
from gptir.passes import DEFAULT_PIPELINE, PASSES, run_pipeline
from gptir.cli.common import check_paths, graph_text_for, sidecar_of
from gptir.text import print_graph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("opt", help="optimise an IR graph (dce, cse, fold, simplify)",
                       description="Run optimisation passes over IN.ir ('-' reads standard input); each pass is "
                                   "verified. Passes: " + ", ".join(PASSES) + ".")
    p.add_argument("input", metavar="IN.ir", help="IR file ('-' reads standard input)")
    p.add_argument("--passes", default=None, metavar="P1,P2,...",
                   help=f"comma-separated passes to run in order (default: {','.join(DEFAULT_PIPELINE)})")
    p.add_argument("--print-after-all", action="store_true",
                   help="print the IR after every pass to standard error")
    p.add_argument("--dump-dir", default=None, metavar="DIR",
                   help="write the IR before and after every pass as DIR/00-input.ir, DIR/01-<pass>.ir, ...")
    p.add_argument("-o", "--output", default="-", metavar="OUT.ir", help="where to write the IR (default: stdout)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help=f"text: the IR; json: one {JSON_SCHEMA} object on stdout (a report of the passes, and "
                        "the IR as a string when -o is stdout)")
    p.set_defaults(func=run)


JSON_SCHEMA = "gptir-opt/1"  # --format json, documented in the README


def _pass_names(spec: str | None) -> list[str]:
    if spec is None:
        return list(DEFAULT_PIPELINE)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UsageError(f"--passes needs at least one pass (passes: {', '.join(PASSES)})")
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise UsageError(f"unknown pass {', '.join(repr(u) for u in unknown)} (passes: {', '.join(PASSES)})")
    return names


def _text(graph: Graph) -> str:
    """Self-contained IR text: param values inline (a sidecar path would be relative to the input)."""
    return print_graph(graph.replace(params_file=None) if graph.params else graph)


def run(args: argparse.Namespace) -> int:
    from gptir.text import load_graph  # the parser lives beside the printer

    names = _pass_names(args.passes)
    graph = load_graph(args.input)
    dumps = [os.path.join(args.dump_dir, f"{i:02d}-{n}.ir") for i, n in enumerate(["input", *names])] \
        if args.dump_dir is not None and os.path.isdir(args.dump_dir) else []
    check_paths([("IN.ir", args.input), ("its params sidecar", sidecar_of(graph, args.input))],
                [("-o", args.output), *(("--dump-dir", d) for d in dumps)])
    if args.dump_dir is not None:
        if os.path.exists(args.dump_dir) and not os.path.isdir(args.dump_dir):
            raise GptirError(f"--dump-dir {args.dump_dir} exists and is not a folder")
        if os.path.isdir(args.dump_dir):
            old = sorted(f for f in os.listdir(args.dump_dir) if re.fullmatch(r"\d\d-[A-Za-z_]+\.ir", f))
            if old:  # a mix of two pipelines would make `gptir diff DIR` compare unrelated dumps
                raise GptirError(f"--dump-dir {args.dump_dir} already holds dumps ({old[0]}, ...): "
                                 "choose an empty folder or remove them")
        os.makedirs(args.dump_dir, exist_ok=True)
        atomic_write_text(os.path.join(args.dump_dir, "00-input.ir"), _text(graph))
    step = 0
    report: list[dict[str, object]] = []

    def on_pass(name: str, before: Graph, after: Graph) -> None:
        nonlocal step
        step += 1
        report.append({"pass": name, "nodes_before": len(before), "nodes_after": len(after)})
        if args.print_after_all:
            sys.stderr.write(f"# ---- after {name}: {len(before)} -> {len(after)} nodes ----\n")
            sys.stderr.write(print_graph(after, inline_params=False))
            sys.stderr.flush()
        if args.dump_dir is not None:
            atomic_write_text(os.path.join(args.dump_dir, f"{step:02d}-{name}.ir"), _text(after))

    result = run_pipeline(graph, names, on_pass=on_pass, check="full")
    text = graph_text_for(result, args.input, args.output)
    if args.format == "json":
        if args.output != "-":
            atomic_write_text(args.output, text)
        doc = {"schema": JSON_SCHEMA, "input": {"file": args.input, "graph": graph.name, "nodes": len(graph)},
               "passes": report, "output": {"file": args.output, "graph": result.name, "nodes": len(result)},
               "ir": text if args.output == "-" else None}
        atomic_write_text("-", json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        atomic_write_text(args.output, text)
    return 0
