"""``gptir train``: train microgpt, then print sampled names (one per line on stdout).

Progress goes to stderr: a live bar when stderr is a terminal, a plain line every tenth of the run
otherwise. ``--log`` writes JSON lines (every step's loss at full precision, then every sample).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from typing import Any

from gptir import checkpoint
from gptir import train as T
from gptir.data import load_docs
from gptir.fileio import atomic_write_text, check_writable
from gptir.ir import GptirError
from gptir.model import num_params
from gptir.optim import AdamConfig
from gptir.sample import LogitsCache, sample


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train microgpt and print sampled names",
                       description="Train microgpt on names (the built-in corpus unless --data), then sample.")
    p.add_argument("--data", help="training text, one document per line; - reads standard input "
                   "(default: the built-in first-name corpus)")
    p.add_argument("--steps", type=int, default=None,
                   help="length of the run: its learning rate decays to 0 there (default 1000). With --resume: "
                        "train until this step of the resumed run")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop after step K of the run (with --out, to continue later with --resume)")
    # None = not given: a resumed run takes these from its checkpoint and refuses changes
    p.add_argument("--seed", type=int, default=None, help="(default 42)")
    p.add_argument("--recipe", choices=T.RECIPES, default=None,
                   help="microgpt (default): one Python random stream (Karpathy's run); "
                        "microgptex: threaded exsss streams (MicroGPTEx's run)")
    p.add_argument("--n-embd", type=int, default=None, help="(default 16)")
    p.add_argument("--n-head", type=int, default=None, help="(default 4)")
    p.add_argument("--n-layer", type=int, default=None, help="(default 1)")
    p.add_argument("--block-size", type=int, default=None, help="(default 16)")
    p.add_argument("--lr", type=float, default=None, help="(default 0.01)")
    p.add_argument("--dtype", choices=("f64", "f32"), default=None,
                   help="float precision of the parameters and the arithmetic (default f64, the reference run)")
    p.add_argument("--batch", type=int, default=None,
                   help="documents per step (padded and masked); 1 (the default) is the reference run")
    p.add_argument("--backend", choices=T.BACKENDS, default="compiled",
                   help="compiled (numpy code, the default), interp (the reference interpreter), "
                        "jax (XLA on CPU/GPU/TPU; needs gptir[jax])")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="jax: split each batch over N devices (data parallel; --batch a multiple of N)")
    p.add_argument("--per-length", action="store_true",
                   help="jax: compile one program per document length instead of one padded to block_size")
    p.add_argument("--samples", type=int, default=20, metavar="K", help="names to sample after training")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--out", metavar="CKPT", help="write a checkpoint here at the end (atomically)")
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="also checkpoint every N steps")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint")
    p.add_argument("--log", metavar="FILE", help="write JSON lines: every step's loss, then every sample")
    p.add_argument("--dump-ir-every", type=int, default=0, metavar="N",
                   help="write the loss graph with the current parameters every N steps (needs --dump-dir)")
    p.add_argument("--dump-dir", metavar="DIR", help="folder for --dump-ir-every files (step-0000.ir, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


RUN_OPTIONS = ("seed", "recipe", "n_embd", "n_head", "n_layer", "block_size", "lr", "batch", "dtype")


def _start(args: argparse.Namespace) -> tuple[T.TrainState, list[str]]:
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in RUN_OPTIONS if getattr(args, name) is not None]
        if given:
            raise GptirError(f"{', '.join(given)} cannot be changed when resuming: a resumed run keeps its "
                             "checkpoint's settings (start a new run instead)")
        state = checkpoint.load(args.resume)
        data = args.data if args.data is not None else state.data
        if args.data is None and data == "-":
            raise GptirError("the checkpoint was trained on standard input: pass the same data with --data")
        if data is not None and args.data is None and not os.path.exists(data):
            raise GptirError(f"the checkpoint was trained on {data}, which no longer exists: pass --data")
        return state, T.resume_docs(state, load_docs(data))
    for name in ("steps", "n_embd", "n_head", "n_layer", "block_size", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GptirError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    docs = load_docs(args.data)
    state, shuffled = T.start(
        docs, recipe=args.recipe or "microgpt", seed=42 if args.seed is None else args.seed,
        num_steps=args.steps or 1000, n_embd=args.n_embd or 16, n_head=args.n_head or 4,
        n_layer=args.n_layer or 1, block_size=args.block_size or 16,
        adam=AdamConfig(lr=0.01 if args.lr is None else args.lr), batch=args.batch or 1, dtype=args.dtype or "f64")
    data = None if args.data is None else args.data if args.data == "-" else os.path.abspath(args.data)
    return replace(state, data=data), shuffled


def _target(args: argparse.Namespace, state: T.TrainState) -> int:
    until = state.num_steps
    if args.resume and args.steps is not None:
        if args.steps > state.num_steps:
            raise GptirError(f"the checkpointed run is {state.num_steps} steps long (its learning rate reaches 0 "
                             f"there); --steps {args.steps} is beyond it: start a new run for a longer schedule")
        until = args.steps
    if args.stop_after is not None:
        if args.stop_after < 1:
            raise GptirError("--stop-after must be at least 1")
        until = min(until, args.stop_after)
    if until <= state.step:
        if state.step == state.num_steps:
            raise GptirError(f"the checkpointed run is complete (step {state.step} of {state.num_steps}); "
                             "use gptir sample --checkpoint to sample from it")
        raise GptirError(f"the checkpoint is already at step {state.step}; stopping at step {until} "
                         "would train nothing")
    return until


class Progress:
    """Live bar on a terminal, periodic plain lines otherwise."""

    def __init__(self, start: int, until: int, total: int, quiet: bool) -> None:
        self.start, self.until, self.total, self.quiet = start, until, total, quiet
        self.tty = sys.stderr.isatty()
        self.every = max(1, (until - start) // 10)
        self.t0 = time.perf_counter()
        self.drawn = 0.0

    def update(self, step: int, loss: float) -> None:
        if self.quiet:
            return
        done = step - self.start
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        if self.tty:
            now = time.perf_counter()
            if step != self.until and now - self.drawn < 0.05:  # redraw at most 20 times a second
                return
            self.drawn = now
            width = 30
            filled = int(width * step / self.total)
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] step {step:4d}/{self.total} | loss {loss:.4f} | {rate:7.1f} steps/s")
            if step == self.until:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done % self.every == 0 or step == self.until:
            print(f"step {step:4d}/{self.total} | loss {loss:.6f} | {rate:.1f} steps/s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.dump_ir_every < 0 or args.save_every < 0:
        raise GptirError("--dump-ir-every and --save-every must be >= 1 (or left out)")
    if bool(args.dump_ir_every) != bool(args.dump_dir):
        raise GptirError("--dump-ir-every N and --dump-dir DIR go together")
    if args.save_every and not args.out:
        raise GptirError("--save-every needs --out (the checkpoint to write)")
    for name in ("out", "log"):
        if getattr(args, name) == "-":
            raise GptirError(f"--{name} needs a file name ('-' would mix it with the sampled names on stdout)")
    if args.samples < 0:
        raise GptirError("--samples must be >= 0")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise GptirError(f"--temperature must be a positive number, got {args.temperature}")
    for path in (args.out, args.log):
        if path:
            check_writable(path)
    if args.dump_dir and os.path.exists(args.dump_dir):
        if not os.path.isdir(args.dump_dir):
            raise GptirError(f"--dump-dir {args.dump_dir}: exists and is not a folder")
        old = sorted(f for f in os.listdir(args.dump_dir) if f.startswith("step-") and f.endswith(".ir"))
        if old:  # a mix of two runs would make `gptir diff DIR` compare unrelated dumps
            raise GptirError(f"--dump-dir {args.dump_dir} already holds dumps ({old[0]}, ...): "
                             "choose an empty folder or remove them")
    if args.devices < 1:
        raise GptirError(f"--devices must be at least 1, got {args.devices}")
    if args.backend != "jax" and (args.devices != 1 or args.per_length):
        raise GptirError("--devices and --per-length need --backend jax")
    if args.backend == "jax":
        from gptir.jaxback import require_jax

        require_jax()  # a missing extra fails before any work
    state, docs = _start(args)
    until = _target(args, state)
    if args.devices > 1 and state.batch % args.devices:
        raise GptirError(f"--batch {state.batch} cannot be split over --devices {args.devices}: "
                         "use a batch that is a multiple of the device count")
    if not args.quiet:
        print(f"num docs: {len(docs)} | vocab size: {state.model.vocab_size} | num params: {num_params(state.model)}"
              f" | recipe {state.recipe} | backend {args.backend} | step {state.step}/{state.num_steps}",
              file=sys.stderr, flush=True)
    log: list[dict[str, Any]] = [{"run": {
        "recipe": state.recipe, "seed": state.seed, "num_steps": state.num_steps, "start_step": state.step,
        "data": state.data, "batch": state.batch, "model": state.model.to_json(), "adam": state.adam.to_json()}}]
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
    pad = False if args.per_length else None  # None: the backend's default (padded on jax)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, args.backend, pad=pad, devices=args.devices)
    progress = Progress(state.step, until, state.num_steps, args.quiet)
    try:
        _dump(args, state, docs)
        try:
            for state, loss in T.train(state, docs, cache, until=until):
                if not math.isfinite(loss):
                    log.append({"step": state.step, "loss": str(loss)})  # JSON has no NaN or inf
                    raise GptirError(f"training diverged at step {state.step} (loss {loss}); try a smaller --lr")
                log.append({"step": state.step, "loss": loss})
                progress.update(state.step, loss)
                if args.out and args.save_every and state.step % args.save_every == 0:
                    checkpoint.save(args.out, state)
                _dump(args, state, docs)
        except KeyboardInterrupt:
            if args.out:  # keep the finished steps: the run can go on with --resume
                checkpoint.save(args.out, state)
                print(f"\ninterrupted after step {state.step}; checkpoint written to {args.out} "
                      f"(continue with --resume {args.out})", file=sys.stderr)
            raise
        if args.out:
            checkpoint.save(args.out, state)
        names, rng = sample(state.model, state.params, state.tokenizer, state.rng, num=args.samples,
                            temperature=args.temperature, recipe=state.recipe,
                            cache=LogitsCache(state.model, args.backend, pad=pad))
        for i, name in enumerate(names, 1):
            log.append({"sample": i, "text": name})
            print(name)
        sys.stdout.flush()
    finally:
        if args.log:
            atomic_write_text(args.log, "".join(json.dumps(rec) + "\n" for rec in log))
    return 0


def _dump(args: argparse.Namespace, state: T.TrainState, docs: list[str]) -> None:
    if not args.dump_ir_every or state.step % args.dump_ir_every:
        return
    from gptir.text import print_graph

    graph = T.snapshot_graph(state, docs[0])
    atomic_write_text(os.path.join(args.dump_dir, f"step-{state.step:04d}.ir"), print_graph(graph))
