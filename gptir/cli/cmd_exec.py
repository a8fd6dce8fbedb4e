"""``gptir exec FILE.ir``: run a graph on inputs given on the command line and print its outputs.

Inputs are ``--input NAME=VALUE`` (a JSON number or nested list, ``inf``/``-inf``/``nan``,
``true``/``false``) or ``NAME=@file.npy``. Param values come from the IR (inline or its sidecar)
and from ``--params FILE.npz``. Text output is ``name = value`` per output, values printed at full
precision in the IR's literal syntax; JSON output spells non-finite floats "inf", "-inf", "nan".
"""

from __future__ import annotations

import argparse
import sys

from gptir.budget import check_fits
from gptir.cli.common import (
    EXEC_SCHEMA, RAISE_MEMORY, add_native_options, check_paths, file_args, fit_empty, format_outputs, json_specs,
    memory_limit, parse_inputs, read_graph, require_native,
)
from gptir.interp import bind_inputs, run as interp_run
from gptir.ir import GptirError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run an IR file on inputs and print its outputs",
                       description="Run FILE.ir ('-' for stdin) and print its outputs.")
    p.add_argument("file", metavar="FILE.ir", help="IR file ('-' reads standard input)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                   help="an input value: JSON number or nested list, inf/nan, true/false, or @file.npy")
    p.add_argument("--params", metavar="FILE.npz", help="param values (override the IR's own)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help=f"text: NAME = VALUE per output, one per line; json: one {EXEC_SCHEMA} object")
    p.add_argument("--backend", choices=("compiled", "interp", "jax", "native"), default="compiled",
                   help="compiled numpy or the reference interpreter (bit-identical results), "
                        "jax (XLA; needs gptir[jax]) or native (C through the system compiler)")
    add_native_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_paths([("FILE.ir", args.file), ("--params", args.params), *file_args(args.input, "--input")],
                [("-", "-")])
    require_native(args.backend)
    inputs = parse_inputs(args.input, "--input")
    graph = read_graph(args.file, args.params)
    inputs = fit_empty(graph, inputs, json_specs(args.input))
    check_fits(graph, memory_limit(), RAISE_MEMORY)  # refuse up front, naming the node, what cannot fit
    if args.backend == "compiled":
        try:
            from gptir.codegen import compile_graph
        except ImportError:
            raise GptirError("the compiled backend is not available") from None
        env = bind_inputs(graph, inputs)  # checks and converts every input and param
        outputs = compile_graph(graph)(env)
    elif args.backend == "native":
        from gptir.native import compile_graph as compile_native

        outputs = compile_native(graph, cache_dir=args.cache_dir)(inputs)
    elif args.backend == "jax":
        from gptir.jaxback import compile_graph as compile_jax

        outputs = compile_jax(graph)(inputs)
    else:
        outputs = interp_run(graph, inputs)
    sys.stdout.write(format_outputs(outputs, graph, args.format))
    return 0
