"""``gptir train``: train microgpt, then print sampled names (one per line on stdout).

Progress goes to stderr: a live bar when stderr is a terminal, a plain line every tenth of the run
otherwise. ``--log`` writes JSON lines (every step's loss at full precision, then every sample).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from typing import Any

from gptir import checkpoint
from gptir import train as T
from gptir.cli import UsageError
from gptir.cli.conventions import nonnegative_int, positive_float, positive_int
from gptir.data import load_docs
from gptir.cli.common import RAISE_MEMORY, add_native_options, check_paths, memory_limit, require_native
from gptir.fileio import atomic_write_text
from gptir.ir import GptirError
from gptir.model import num_params
from gptir.optim import AdamConfig
from gptir.sample import LogitsCache, check_temperature, sample


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train microgpt and print sampled names",
                       description="Train microgpt on names (the built-in corpus unless --data), then sample.")
    p.add_argument("--data", metavar="FILE", help="training text, one document per line; - reads standard input "
                   "(default: the built-in first-name corpus)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="length of the run: its learning rate decays to 0 there (default 1000). With --resume: "
                        "train until this step of the resumed run")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="K",
                   help="stop after step K of the run (with --out, to continue later with --resume)")
    # None = not given: a resumed run takes these from its checkpoint and refuses changes
    p.add_argument("--seed", type=int, default=None, metavar="S", help="the run's random seed (default 42)")
    p.add_argument("--recipe", choices=T.RECIPES, default=None,
                   help="microgpt (default): one Python random stream (Karpathy's run); "
                        "microgptex: threaded exsss streams (MicroGPTEx's run)")
    p.add_argument("--n-embd", type=positive_int, default=None, metavar="N", help="embedding width (default 16)")
    p.add_argument("--n-head", type=positive_int, default=None, metavar="N",
                   help="attention heads; must divide --n-embd (default 4)")
    p.add_argument("--n-layer", type=positive_int, default=None, metavar="N", help="transformer layers (default 1)")
    p.add_argument("--block-size", type=positive_int, default=None, metavar="N",
                   help="context length in tokens; longer documents are cut, with a note (default 16)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam's learning rate (default 0.01)")
    p.add_argument("--dtype", choices=("f64", "f32"), default=None,
                   help="float precision of the parameters and the arithmetic (default f64, the reference run)")
    p.add_argument("--batch", type=positive_int, default=None, metavar="B",
                   help="documents per step (padded and masked); 1 (the default) is the reference run")
    p.add_argument("--backend", choices=T.BACKENDS, default="compiled",
                   help="how the training step runs: compiled (numpy code), interp (the reference "
                        "interpreter), jax (XLA on CPU/GPU/TPU; needs gptir[jax]), native (C through the system "
                        "compiler)")
    add_native_options(p)
    p.add_argument("--pack", action="store_true",
                   help="pack each batch's documents into rows (a multiple of 64, at most B x block size): "
                        "no work on padding outside attention, a few programs per run")
    p.add_argument("--devices", type=positive_int, default=1, metavar="N",
                   help="jax: split each batch over N devices (data parallel; --batch a multiple of N)")
    p.add_argument("--per-length", action="store_true",
                   help="jax: compile one program per document length instead of one padded to block_size")
    p.add_argument("-n", "--num", "--samples", dest="samples", type=nonnegative_int, default=20, metavar="K",
                   help="names to sample after training (--samples is the older spelling)")
    p.add_argument("--temperature", type=positive_float, default=0.5, metavar="T", help="sampling temperature")
    p.add_argument("-o", "--output", "--out", dest="out", metavar="CKPT",
                   help="write a checkpoint here at the end, atomically (--out is the older spelling)")
    p.add_argument("--save-every", type=nonnegative_int, default=0, metavar="N",
                   help="also checkpoint every N steps (0: only at the end)")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint")
    p.add_argument("--log", metavar="FILE", help="write JSON lines: the run record, every step's loss, every sample")
    p.add_argument("--dump-ir-every", type=nonnegative_int, default=0, metavar="N",
                   help="write the loss graph with the current parameters every N steps (needs --dump-dir; 0: never)")
    p.add_argument("--dump-dir", metavar="DIR", help="folder for --dump-ir-every files (step-0000.ir, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")
    p.set_defaults(func=run)


LOG_SCHEMA = "gptir-train-log/1"  # --log: JSON lines, documented in the README


def run_record(args: argparse.Namespace, state: T.TrainState) -> dict[str, Any]:
    """The first line of ``--log``: what is needed to reproduce the run (settings, versions, command)."""
    import platform

    import lark
    import numpy as np

    from gptir import __version__

    return {"recipe": state.recipe, "seed": state.seed, "num_steps": state.num_steps, "start_step": state.step,
            "data": state.data, "batch": state.batch, "backend": args.backend, "model": state.model.to_json(),
            "adam": state.adam.to_json(), "command": list(getattr(args, "argv", ["gptir", "train"])),
            "versions": {"gptir": __version__, "numpy": np.__version__, "lark": lark.__version__,
                         "python": platform.python_version()}}


RUN_OPTIONS = ("seed", "recipe", "n_embd", "n_head", "n_layer", "block_size", "lr", "batch", "dtype")


def _start(args: argparse.Namespace) -> tuple[T.TrainState, list[str]]:
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in RUN_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be changed when resuming: a resumed run keeps its "
                             "checkpoint's settings (start a new run instead)")
        state = checkpoint.load(args.resume)
        data = args.data if args.data is not None else state.data
        if args.data is None and data == "-":
            raise GptirError("the checkpoint was trained on standard input: pass the same data with --data")
        if data is not None and args.data is None and not os.path.exists(data):
            raise GptirError(f"the checkpoint was trained on {data}, which no longer exists: pass --data")
        return state, T.resume_docs(state, load_docs(data))
    n_embd, n_head = args.n_embd or 16, args.n_head or 4
    if n_embd % n_head:
        raise UsageError(f"--n-embd {n_embd} must be a multiple of --n-head {n_head}")
    docs = load_docs(args.data)
    state, shuffled = T.start(
        docs, recipe=args.recipe or "microgpt", seed=42 if args.seed is None else args.seed,
        num_steps=args.steps or 1000, n_embd=n_embd, n_head=n_head,
        n_layer=args.n_layer or 1, block_size=args.block_size or 16,
        adam=AdamConfig(lr=0.01 if args.lr is None else args.lr), batch=args.batch or 1, dtype=args.dtype or "f64",
        max_memory=memory_limit())
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
        until = min(until, args.stop_after)
    if until <= state.step:
        if state.step == state.num_steps:
            raise GptirError(f"the checkpointed run is complete (step {state.step} of {state.num_steps}); "
                             "use gptir sample --checkpoint to sample from it")
        raise GptirError(f"the checkpoint is already at step {state.step}; stopping at step {until} "
                         "would train nothing")
    return until


class Progress:
    """Live bar on a terminal (one line, cut to the terminal's width, with an ETA), periodic plain lines
    otherwise."""

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
        eta = (self.until - step) / rate if rate > 0 else 0.0
        if self.tty:
            now = time.perf_counter()
            if step != self.until and now - self.drawn < 0.05:  # redraw at most 20 times a second
                return
            self.drawn = now
            width = shutil.get_terminal_size((80, 24)).columns
            # \r and erase-to-end-of-line: a shorter line leaves nothing of the previous one
            sys.stderr.write("\r" + progress_line(step, self.total, loss, rate, eta, width) + "\x1b[K")
            if step == self.until:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done % self.every == 0 or step == self.until:
            print(f"step {step:4d}/{self.total} | loss {loss:.6f} | {rate:.1f} steps/s | ETA {format_eta(eta)}",
                  file=sys.stderr, flush=True)


def format_eta(seconds: float) -> str:
    """``0:07``, ``12:30``, ``2:05:00``."""
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(step: int, total: int, loss: float, rate: float, eta: float, width: int) -> str:
    """The live bar, never longer than ``width - 1`` characters (a full-width line would wrap on some
    terminals). As the terminal narrows the rate goes first, then the bar, then the loss; the step and the
    ETA stay as long as they fit."""
    step_, loss_, eta_, rate_ = (f"step {step}/{total}", f"loss {loss:.4f}", f"ETA {format_eta(eta)}",
                                 f"{rate:.1f} steps/s")
    limit = max(width - 1, 1)
    for bar, fields in ((True, [step_, loss_, eta_, rate_]), (True, [step_, loss_, eta_]),
                        (False, [step_, loss_, eta_]), (False, [step_, eta_])):
        text = " | ".join(fields)
        room = limit - len(text) - 3  # "[" bar "] "
        if bar and room >= 10:
            bar_width = min(30, room)
            filled = int(bar_width * step / max(total, 1))
            return f"[{'#' * filled}{'-' * (bar_width - filled)}] {text}"
        if not bar and len(text) <= limit:
            return text
    return step_[:limit]


def run(args: argparse.Namespace) -> int:
    if bool(args.dump_ir_every) != bool(args.dump_dir):
        raise UsageError("--dump-ir-every N and --dump-dir DIR go together")
    if args.save_every and not args.out:
        raise UsageError("--save-every needs --output (the checkpoint to write)")
    for option, path in (("--output", args.out), ("--log", args.log)):
        if path == "-":
            raise UsageError(f"{option} needs a file name ('-' would mix it with the sampled names on stdout)")
    try:  # before training: a run must not fail at its end
        check_temperature(args.temperature)
    except GptirError as e:
        raise GptirError(f"--{e}") from None
    if args.dump_dir and os.path.exists(args.dump_dir):
        if not os.path.isdir(args.dump_dir):
            raise GptirError(f"--dump-dir {args.dump_dir}: exists and is not a folder")
        old = sorted(f for f in os.listdir(args.dump_dir) if f.startswith("step-") and f.endswith(".ir"))
        if old:  # a mix of two runs would make `gptir diff DIR` compare unrelated dumps
            raise GptirError(f"--dump-dir {args.dump_dir} already holds dumps ({old[0]}, ...): "
                             "choose an empty folder or remove them")
    if args.pack and (args.devices != 1 or args.per_length):  # options that cannot go together
        raise UsageError("--pack cannot be combined with --devices or --per-length (packed rows do not split "
                         "by document, and pack replaces the per-length programs)")
    if args.backend != "jax" and (args.devices != 1 or args.per_length):
        raise UsageError("--devices and --per-length need --backend jax")
    if args.backend == "jax":
        from gptir.jaxback import require_jax

        require_jax()  # a missing extra fails before any work
    require_native(args.backend)
    state, docs = _start(args)
    until = _target(args, state)
    if args.devices > 1 and state.batch % args.devices:
        raise GptirError(f"--batch {state.batch} cannot be split over --devices {args.devices}: "
                         "use a batch that is a multiple of the device count")
    _check_outputs(args, state, until)  # before the first step: a run must not fail at its end
    T.check_step_memory(state.model, state.batch, memory_limit(), RAISE_MEMORY)
    if not args.quiet:
        print(f"num docs: {len(docs)} | vocab size: {state.model.vocab_size} | num params: {num_params(state.model)}"
              f" | recipe {state.recipe} | backend {args.backend} | step {state.step}/{state.num_steps}",
              file=sys.stderr, flush=True)
    cut = T.truncated_docs(state, docs)
    if cut and not args.quiet:
        print(f"gptir train: note: {cut} of {len(docs)} documents are longer than --block-size "
              f"{state.model.block_size} and are cut to their first {state.model.block_size} tokens",
              file=sys.stderr, flush=True)
    # the run record only for --log (its versions would import lark, which training never needs)
    log: list[dict[str, Any]] = [{"schema": LOG_SCHEMA, "run": run_record(args, state)}] if args.log else []
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
    pad = False if args.per_length else None  # None: the backend's default (padded on jax)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, args.backend, pad=pad, devices=args.devices,
                           cache_dir=args.cache_dir, pack=args.pack)
    if args.backend == "native":  # every length's program at once: a cold cache compiles them in parallel
        cache.prebuild(T.step_keys(state, docs, until, pad=bool(cache.pad), pack=cache.pack))
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
                            cache=LogitsCache(state.model, args.backend, pad=pad, cache_dir=args.cache_dir))
        for i, name in enumerate(names, 1):
            log.append({"sample": i, "text": name})
            print(name)
        sys.stdout.flush()
    finally:
        if args.log:
            atomic_write_text(args.log, "".join(json.dumps(rec) + "\n" for rec in log))
    return 0


def _check_outputs(args: argparse.Namespace, state: T.TrainState, until: int) -> None:
    """Every output can be written and none is an input (``--resume C --out C`` continues C in place)."""
    dumps: list[tuple[str, str | None]] = []
    if args.dump_ir_every and os.path.isdir(args.dump_dir):
        dumps = [("--dump-dir", os.path.join(args.dump_dir, f"step-{s:04d}.ir"))
                 for s in range(state.step, until + 1) if s % args.dump_ir_every == 0]
    data = args.data if args.data is not None else state.data
    check_paths([("--data", data), ("--resume", args.resume)],
                [("--out", args.out), ("--log", args.log), *dumps, ("-", "-")], allow=[("--resume", "--out")])


def _dump(args: argparse.Namespace, state: T.TrainState, docs: list[str]) -> None:
    if not args.dump_ir_every or state.step % args.dump_ir_every:
        return
    from gptir.text import print_graph

    graph = T.snapshot_graph(state, docs[0])
    atomic_write_text(os.path.join(args.dump_dir, f"step-{state.step:04d}.ir"), print_graph(graph))
