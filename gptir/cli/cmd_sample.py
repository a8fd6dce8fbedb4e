"""``gptir sample``: names from a checkpoint, continuing the run's random stream.

The checkpoint holds the stream as it was after training, so ``gptir sample --checkpoint CKPT`` prints
the same names ``gptir train`` printed when it wrote CKPT, drawn by the recipe that trained it.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptir import checkpoint
from gptir.cli.common import RAISE_MEMORY, add_native_options, check_paths, memory_limit, require_native
from gptir.cli.conventions import nonnegative_int, positive_float
from gptir.sample import LogitsCache, check_temperature, sample
from gptir.train import BACKENDS, check_step_memory


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample names from a checkpoint",
                       description="Sample names from a trained checkpoint (one per line on stdout).")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by gptir train -o")
    p.add_argument("-n", "--num", type=nonnegative_int, default=20, metavar="K", help="names to sample")
    p.add_argument("--temperature", type=positive_float, default=0.5, metavar="T", help="sampling temperature")
    p.add_argument("--backend", choices=BACKENDS, default="compiled",
                   help="how the logits are computed: compiled (numpy code), interp, jax (XLA; needs gptir[jax]), "
                        "native (C through the system compiler)")
    add_native_options(p)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help=f"text: one name per line; json: one {JSON_SCHEMA} object")
    p.set_defaults(func=run)


JSON_SCHEMA = "gptir-sample/1"  # --format json, documented in the README


def run(args: argparse.Namespace) -> int:
    check_paths([("--checkpoint", args.checkpoint)], [("-", "-")])
    if args.backend == "jax":
        from gptir.jaxback import require_jax

        require_jax()
    require_native(args.backend)
    state = checkpoint.load(args.checkpoint)
    check_temperature(args.temperature, state.recipe)
    check_step_memory(state.model, 1, memory_limit(), RAISE_MEMORY)  # the same bound as training's
    names, _ = sample(state.model, state.params, state.tokenizer, state.rng, num=args.num,
                      temperature=args.temperature, recipe=state.recipe, cache=LogitsCache(state.model, args.backend, cache_dir=args.cache_dir))
    if args.format == "json":
        doc = {"schema": JSON_SCHEMA, "checkpoint": args.checkpoint, "recipe": state.recipe, "step": state.step,
               "temperature": args.temperature, "samples": names}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        for name in names:
            print(name)
    sys.stdout.flush()
    return 0
