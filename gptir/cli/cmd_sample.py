"""``gptir sample``: names from a checkpoint, continuing the run's random stream.

The checkpoint holds the stream as it was after training, so ``gptir sample --checkpoint CKPT`` prints
the same names ``gptir train`` printed when it wrote CKPT, drawn by the recipe that trained it.
"""

from __future__ import annotations

import argparse
import sys

from gptir import checkpoint
from gptir.sample import LogitsCache, sample
from gptir.train import BACKENDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample names from a checkpoint",
                       description="Sample names from a trained checkpoint (one per line on stdout).")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--num", type=int, default=20, metavar="K")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--backend", choices=BACKENDS, default="compiled",
                   help="compiled (numpy code), interp, jax (XLA; needs gptir[jax])")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.backend == "jax":
        from gptir.jaxback import require_jax

        require_jax()
    state = checkpoint.load(args.checkpoint)
    names, _ = sample(state.model, state.params, state.tokenizer, state.rng, num=args.num,
                      temperature=args.temperature, recipe=state.recipe, cache=LogitsCache(state.model, args.backend))
    for name in names:
        print(name)
    sys.stdout.flush()
    return 0
