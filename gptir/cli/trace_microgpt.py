"""``gptir trace microgpt``: the model's loss graph for one document (or the whole training step) as IR.

The document's tokens and targets become constants of the graph and the parameter values travel with
it (inline, or in the ``--params-out`` sidecar that the text names), so ``gptir exec FILE.ir`` computes
the loss that training reports for that document. Parameters come from ``--checkpoint`` or, without one,
are the run's initial weights (``--data``/``--seed``, as ``gptir train`` would draw them).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Mapping

import numpy as np

from gptir import checkpoint
from gptir import train as T
from gptir.data import load_docs
from gptir.cli.common import RAISE_MEMORY, memory_limit
from gptir.ir import GptirError, Graph, make_graph
from gptir.model import loss_graph, packed_loss_graph
from gptir.optim import AdamConfig


# what a checkpoint fixes (and --checkpoint therefore refuses)
CHECKPOINT_FIXED = ("n_embd", "n_head", "n_layer", "block_size", "seed", "data", "dtype")


def _state(args: argparse.Namespace) -> tuple[T.TrainState, list[str] | None]:
    if getattr(args, "checkpoint", None):
        given = [f"--{k.replace('_', '-')}" for k in CHECKPOINT_FIXED if getattr(args, k, None) is not None]
        if given:  # the checkpoint decides these: an option that would be ignored is refused
            raise GptirError(f"{', '.join(given)} cannot be combined with --checkpoint: the model, seed, data and "
                             "dtype come from the checkpoint")
        return checkpoint.load(args.checkpoint), None
    docs = load_docs(getattr(args, "data", None))
    opts = {k: getattr(args, k) for k in ("n_embd", "n_head", "n_layer", "block_size", "dtype") if getattr(args, k, None)}
    state, shuffled = T.start(docs, seed=args.seed if getattr(args, "seed", None) is not None else 42,
                              adam=AdamConfig(), batch=max(getattr(args, "batch", None) or 1, 1),
                              max_memory=memory_limit(), **opts)
    return state, shuffled


def constant_inputs(graph: Graph, values: Mapping[str, np.ndarray]) -> Graph:
    """``graph`` with the named data inputs turned into constants of the given values."""
    nodes = []
    for node in graph.nodes.values():
        if node.name in values and node.op == "input":
            node = node.replace(op="const", attrs={"value": np.asarray(values[node.name], node.type.np_dtype)})
        nodes.append(node)
    return make_graph(graph.name, nodes, graph.outputs, graph.params, graph.params_file)


def trace_microgpt(args: argparse.Namespace) -> Graph:
    state, docs = _state(args)
    batch = getattr(args, "batch", None) or 1
    if batch < 1:
        raise GptirError("--batch must be at least 1")
    if getattr(args, "doc", None) is not None and not args.doc:
        raise GptirError("--doc needs a non-empty document")
    if getattr(args, "doc", None):
        batch_docs = [args.doc] * batch if batch > 1 else [args.doc]
    else:
        if docs is None:
            raise GptirError("with --checkpoint, name the document to trace with --doc NAME")
        batch_docs = T.step_docs(replace(state, batch=batch, step=0), docs)  # training's first batch (wraps around)
    state = replace(state, batch=batch)
    T.check_step_memory(state.model, batch, memory_limit(), RAISE_MEMORY)
    pack = bool(getattr(args, "pack", False))
    # raises a clear error for characters outside the vocabulary
    data = T.encode_batch(state, batch_docs, pack=pack)
    n, b = T.program_key(data)  # (positions or packed rows, batch; 0: one unpadded document)
    if getattr(args, "train_step", False):
        graph = T.step_graph(state.model, state.adam, state.num_steps, n, b, packed=pack)
    else:
        graph = packed_loss_graph(state.model, n, b) if pack else loss_graph(state.model, n, b)
    # the parameter values travel with the graph: inline in the text, or in the --params-out sidecar
    return constant_inputs(graph, data).replace(params={k: np.asarray(v) for k, v in state.params.items()})
