"""Training: the reference recipe's state, one IR program per input shape, and the step loop.

Everything here is pure: a :class:`TrainState` goes in, a new one comes out. The training step is a
single IR program (loss, gradients by the autodiff pass, the Adam update) built once per input shape
and cached, then run by the interpreter or the compiled backend.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from gptir import rng as R
from gptir.budget import human
from gptir.data import Tokenizer
from gptir.interp import run as interp_run
from gptir.ir import NUMPY_DTYPES, GptirError, Graph, TensorType
from gptir.model import GPTConfig, init_params, loss_graph, num_params, packed_loss_graph, param_shapes
from gptir.optim import AdamConfig, adam_scalars, adam_update

RECIPES = ("microgpt", "microgptex")
MAX_PARAMS = 20_000_000  # ~0.5 GB of float64 state (parameters and two moments) and a minute of weight draws
BACKENDS = ("compiled", "interp", "jax", "native")
# the batch inputs a data-parallel (--devices N) program splits over its devices
BATCH_INPUTS = ("tokens", "targets", "mask")
PACK_QUANTUM = 64  # a packed batch's row count is a multiple of this, or batch * block_size (see packed_rows)

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class TrainState:
    """Everything a run needs to continue exactly: the checkpoint's contents."""

    model: GPTConfig
    adam: AdamConfig
    num_steps: int
    recipe: str
    seed: int
    tokenizer: Tokenizer
    params: Mapping[str, np.ndarray]
    m: np.ndarray  # Adam moments of all parameters, flat, in param_shapes order
    v: np.ndarray
    step: int
    rng: R.Rng
    docs_fingerprint: str
    batch: int = 1
    data: str | None = None  # where the documents came from (a file path; None: the built-in corpus)


def fingerprint(docs: Sequence[str]) -> str:
    """Identifies the (shuffled) training documents, so a resumed run can check it has the same data."""
    return hashlib.sha256("\n".join(docs).encode()).hexdigest()[:16]


def prepare(docs: Sequence[str], recipe: str, seed: int) -> tuple[list[str], R.Rng, R.Rng]:
    """Shuffle the documents the way the recipe does; returns (docs, rng for init, rng after shuffle).

    microgpt: one Mersenne-Twister stream shuffles, then initialises, then samples.
    microgptex: a fresh exsss generator shuffles (and is discarded); a second fresh one initialises
    and then samples.
    """
    if recipe == "microgpt":
        shuffled, rng = R.shuffle(R.python_random(seed), docs)
        return shuffled, rng, rng
    if recipe == "microgptex":
        shuffled, _ = R.shuffle(R.exsss(seed), docs)
        return shuffled, R.exsss(seed), R.exsss(seed)
    raise GptirError(f"unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")


def start(docs: Sequence[str], *, recipe: str = "microgpt", seed: int = 42, num_steps: int = 1000,
          n_embd: int = 16, n_head: int = 4, n_layer: int = 1, block_size: int = 16,
          adam: AdamConfig = AdamConfig(), batch: int = 1, dtype: str = "f64",
          max_memory: int | None = None) -> tuple[TrainState, list[str]]:
    """A fresh run: shuffled documents, vocabulary, initial weights and zero Adam moments.

    With ``max_memory`` (bytes), a batch and model whose training step cannot fit are refused before the
    weights are drawn (:func:`check_step_memory`)."""
    if not docs:
        raise GptirError("no training documents")
    if num_steps < 1 or batch < 1:
        raise GptirError("steps and batch must be at least 1")
    shuffled, init_rng, _ = prepare(docs, recipe, seed)
    tok = Tokenizer.from_docs(shuffled)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                    block_size=block_size, dtype=dtype)
    if num_params(cfg) > MAX_PARAMS:
        raise GptirError(f"the model would have {num_params(cfg):,} parameters; gptir trains models of up to "
                         f"{MAX_PARAMS:,} (weights are drawn one by one, exactly as the reference does)")
    if max_memory is not None:
        check_step_memory(cfg, batch, max_memory)
    params, rng = init_params(cfg, init_rng)
    zeros = np.zeros(num_params(cfg), NUMPY_DTYPES[dtype])
    state = TrainState(cfg, adam, num_steps, recipe, seed, tok, params, zeros, zeros.copy(), 0, rng,
                       fingerprint(shuffled), batch)
    return state, shuffled


def step_graph(cfg: GPTConfig, adam: AdamConfig, num_steps: int, n: int, batch: int = 0, packed: bool = False) -> Graph:
    """The whole training step as one IR program (``packed``: of ``batch`` documents packed into ``n``
    rows, :func:`gptir.model.packed_loss_graph`'s inputs).

    Inputs: parameters (``param``), the Adam moments ``adam.m`` and ``adam.v`` (every parameter's,
    flattened and concatenated in :func:`param_shapes` order), ``step`` (f64, 0-based) and
    ``tokens``/``targets`` (and ``mask`` when batched); floats are of the model's dtype (``step`` too). Outputs: ``loss``, every parameter's new value
    (named like the parameter), then the new ``adam.m`` and ``adam.v``.

    The update is fused: one Adam over the concatenated gradients rather than one per parameter. Each
    element sees exactly the same arithmetic (elementwise ops do not mix elements), so the run is
    unchanged, but the program has ~14 elementwise statements instead of ~14 per parameter.
    """
    from gptir.autodiff import grad, gradient_outputs_of  # here: a warm native start builds no graph
    from gptir.tracing import Builder, concat, reshape, scope

    shapes = param_shapes(cfg)
    names = list(shapes)
    loss = packed_loss_graph(cfg, n, batch) if packed else loss_graph(cfg, n, batch)
    g = grad(loss, wrt=names, of="loss")
    g = g.replace(name="microgpt_train_step")
    b = Builder(g.name, base=g)
    step = b.input("step", TensorType(cfg.dtype, ()))
    size = num_params(cfg)
    m_in, v_in = b.input("adam.m", TensorType(cfg.dtype, (size,))), b.input("adam.v", TensorType(cfg.dtype, (size,)))
    scalars = adam_scalars(adam, step, num_steps)
    grads = gradient_outputs_of(g, names)
    with scope("adam"):
        flat_p = concat([reshape(b.value(name), (-1,)) for name in names])
        flat_g = concat([reshape(b.value(g.outputs[grads[name]]), (-1,)) for name in names])
    p, m, v = adam_update(adam, scalars, flat_p, flat_g, m_in, v_in, "all")
    outputs = {"loss": b.value(g.outputs["loss"])}
    with scope("adam"):
        offset = 0
        for name, shape in shapes.items():
            count = int(np.prod(shape))
            outputs[name] = reshape(p[offset:offset + count], shape)
            offset += count
    outputs["adam.m"], outputs["adam.v"] = m, v
    return b.finish(outputs)


def compile_program(graph: Graph, backend: str, devices: int = 1, cache_dir: str | None = None) -> Runner:
    """A callable for ``graph``: optimised and compiled (numpy code, XLA through JAX or C through the
    system compiler), or the reference interpreter. ``devices`` > 1 (jax only) splits the batch inputs
    over that many devices; ``cache_dir`` is the native backend's build cache (None: its default)."""
    if devices != 1 and backend != "jax":
        raise GptirError("--devices needs --backend jax")
    if backend == "native":
        from gptir.native import compile_graph as native_compile
        from gptir.passes import optimize

        return native_compile(optimize(graph), checked=False, cache_dir=cache_dir)
    if backend == "jax":
        from gptir.jaxback import compile_graph as jax_compile
        from gptir.passes import optimize

        shard = BATCH_INPUTS if devices > 1 else ()
        return jax_compile(optimize(graph), checked=False, devices=devices, shard=shard)
    if backend == "interp":
        return lambda inputs: interp_run(graph, inputs)
    if backend == "compiled":
        from gptir.codegen import compile_graph
        from gptir.passes import optimize

        return compile_graph(optimize(graph))
    raise GptirError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")


@dataclass
class ProgramCache:
    """Compiled training-step programs, one per input shape (document lengths vary).

    With ``pad`` every step is padded to ``block_size`` and masked (the batched program, even for one
    document), so a run compiles one program; without it each document length gets its own.
    ``pad=None`` means: pad on the jax backend (where compiling is costly), not on the others.
    With ``pack`` every step's documents are packed into rows (:func:`pack_batch`) and the programs
    are keyed by their row count: the per-token layers skip the padding (``pad`` is then unused).
    """

    model: GPTConfig
    adam: AdamConfig
    num_steps: int
    backend: str = "compiled"
    programs: dict[tuple[int, int], Runner] = field(default_factory=dict)
    pad: bool | None = None
    devices: int = 1
    cache_dir: str | None = None  # the native backend's build cache
    pack: bool = False

    def __post_init__(self) -> None:
        if self.pad is None:
            self.pad = self.backend == "jax"
        if self.pack and self.devices > 1:
            raise GptirError("--pack cannot be combined with --devices (a packed batch's rows do not split "
                             "by document)")

    def recipe(self, n: int, batch: int) -> str:
        """The native build cache's index name of the program for ``(n, batch)``."""
        packed = " packed" if self.pack else ""
        return f"training step {self.model!r} {self.adam!r} num_steps={self.num_steps} n={n} batch={batch}{packed}"

    def graph(self, n: int, batch: int) -> Graph:
        """The optimised training-step graph for ``(n, batch)``."""
        from gptir.passes import optimize  # here: a warm native start neither traces nor generates C

        return optimize(step_graph(self.model, self.adam, self.num_steps, n, batch, self.pack))

    def get(self, n: int, batch: int = 0, graph: Graph | None = None) -> Runner:
        """The program for ``(n, batch)``, made now if need be (``graph``: its optimised graph, if made)."""
        key = (n, batch)
        prog = self.programs.get(key)
        if prog is None and self.backend == "native" and self.devices == 1:
            from gptir.native import compile_graph as native_compile

            prog = native_compile(graph if graph is not None else (lambda: self.graph(n, batch)), checked=False,
                                  cache_dir=self.cache_dir, index=self.recipe(n, batch))
            self.programs[key] = prog
        elif prog is None:
            graph = step_graph(self.model, self.adam, self.num_steps, n, batch, self.pack)
            prog = compile_program(graph, self.backend, self.devices, self.cache_dir)
            self.programs[key] = prog
        return prog

    def prebuild(self, keys: Sequence[tuple[int, int]]) -> None:
        """Make the programs for ``keys`` now. On the native backend the ones not in the build cache are
        generated one by one and then compiled at once, one compiler per CPU (:func:`gptir.native.build_all`)."""
        graphs: dict[tuple[int, int], Graph] = {}
        if self.backend == "native" and self.devices == 1:
            from gptir import native

            for key in dict.fromkeys(keys):
                if key not in self.programs and not native.has_index(self.recipe(*key), self.cache_dir):
                    graphs[key] = self.graph(*key)
            native.build_all([native.generate_source(g) for g in graphs.values()], self.cache_dir)
        for key in keys:
            self.get(*key, graph=graphs.get(key))


def step_keys(state: TrainState, docs: Sequence[str], until: int, pad: bool = False,
              pack: bool = False) -> list[tuple[int, int]]:
    """The program keys ``(n, batch)`` of the steps from the state's to ``until``, each once, in first use."""
    keys: dict[tuple[int, int], None] = {}
    for step in range(state.step, until):
        if state.batch == 1 and not (pad or pack):
            ids = state.tokenizer.encode(docs[step % len(docs)])
            keys.setdefault((positions(state, ids), 0), None)
        else:
            at = replace(state, step=step)
            keys.setdefault(program_key(encode_batch(at, step_docs(at, docs), pad, pack)), None)
    return list(keys)


def step_memory(cfg: GPTConfig, n: int, batch: int) -> int:
    """An estimate (in bytes, from above: measured 1.1-1.5x the interpreter's peak of live values) of what
    one training step on ``batch`` documents of ``n`` positions holds at once: per position the logits and
    their gradients, per layer the attention scores and the activations kept for the backward pass, plus
    the parameters, their gradients and the Adam moments. Arithmetic only, so hostile sizes cost nothing."""
    per_position = cfg.vocab_size * 4 + cfg.n_layer * (cfg.n_head * n * 6 + cfg.n_embd * 30) + 8
    return 8 * max(batch, 1) * n * per_position + 32 * num_params(cfg)


def check_step_memory(cfg: GPTConfig, batch: int, limit: int,
                      how: str = "set GPTIR_MAX_MEMORY to a larger number of bytes to allow it") -> None:
    """Refuse, before anything is allocated, a batch and model whose training step cannot fit in ``limit``."""
    need = step_memory(cfg, cfg.block_size, batch)
    if need > limit:
        raise GptirError(f"a training step with batch {batch} (block size {cfg.block_size}, n_embd {cfg.n_embd}, "
                         f"{cfg.n_layer} layer(s)) needs about {human(need)}, more than the {human(limit)} memory "
                         f"limit; use a smaller --batch or model ({how})")


def step_docs(state: TrainState, docs: Sequence[str]) -> list[str]:
    """The documents of the state's next step: docs[s % len(docs)] for one document per step."""
    b = state.batch
    return [docs[(state.step * b + i) % len(docs)] for i in range(b)]


def positions(state: TrainState, ids: Sequence[int]) -> int:
    """How many positions a document of token ids ``ids`` trains on (it is cut to ``block_size``)."""
    return min(state.model.block_size, len(ids) - 1)


def program_key(data: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """The :class:`ProgramCache` key ``(n, batch)`` of a step's arrays (batch 0: one unpadded document;
    packed: ``n`` is the row count)."""
    tokens = data["tokens"]
    if "slots" in data:
        return tokens.shape[0], data["slots"].shape[0]
    return tokens.shape[-1], tokens.shape[0] if tokens.ndim == 2 else 0


def encode_batch(state: TrainState, batch_docs: Sequence[str], pad: bool = False,
                 pack: bool = False) -> dict[str, np.ndarray]:
    """Token, target (and mask) arrays for a step; one document uses the unpadded reference shapes
    unless ``pad``, which pads every batch (one document too) to ``block_size`` positions, or
    ``pack`` (:func:`pack_batch`)."""
    if pack:
        return pack_batch(state, batch_docs)
    bs = state.model.block_size
    seqs = [state.tokenizer.encode(d) for d in batch_docs]
    if len(seqs) == 1 and not pad:
        ids = seqs[0]
        n = positions(state, ids)
        return {"tokens": np.array(ids[:n], np.int64), "targets": np.array(ids[1:n + 1], np.int64)}
    n = bs if pad else min(bs, max(len(s) - 1 for s in seqs))
    tokens = np.full((len(seqs), n), state.tokenizer.bos, np.int64)
    targets = np.full((len(seqs), n), state.tokenizer.bos, np.int64)
    mask = np.zeros((len(seqs), n), bool)
    for i, ids in enumerate(seqs):
        k = min(n, len(ids) - 1)
        tokens[i, :k], targets[i, :k], mask[i, :k] = ids[:k], ids[1:k + 1], True
    return {"tokens": tokens, "targets": targets, "mask": mask}


def packed_rows(count: int, batch: int, block_size: int) -> int:
    """The row count of a packed batch with ``count`` positions: the next multiple of PACK_QUANTUM (so
    that a run needs a few programs, not one per total), never more than the padded ``batch * block_size``."""
    return min(-(-count // PACK_QUANTUM) * PACK_QUANTUM, batch * block_size)


def pack_batch(state: TrainState, batch_docs: Sequence[str]) -> dict[str, np.ndarray]:
    """A batch's arrays packed (:func:`gptir.model.packed_loss_graph`): each document's positions (up to
    ``block_size``) one after another as rows, then filler rows up to :func:`packed_rows`. A filler
    row is token 0 at position 0, masked out; past a document's end its ``slots`` point at row 0 (what
    attention computes there is never read back)."""
    bs = state.model.block_size
    seqs = [state.tokenizer.encode(d) for d in batch_docs]
    lengths = [min(bs, len(s) - 1) for s in seqs]
    count = sum(lengths)
    size = packed_rows(count, len(seqs), bs)
    tokens, targets = np.zeros(size, np.int64), np.zeros(size, np.int64)
    pos, rows = np.zeros(size, np.int64), np.zeros(size, np.int64)
    mask = np.zeros(size, bool)
    slots = np.zeros((len(seqs), bs), np.int64)
    at = 0
    for i, (ids, k) in enumerate(zip(seqs, lengths)):
        tokens[at:at + k], targets[at:at + k] = ids[:k], ids[1:k + 1]
        pos[at:at + k] = np.arange(k)
        rows[at:at + k] = i * bs + np.arange(k)
        slots[i, :k] = np.arange(at, at + k)
        at += k
    mask[:count] = True
    return {"tokens": tokens, "targets": targets, "mask": mask, "pos": pos, "slots": slots, "rows": rows}


def truncated_docs(state: TrainState, docs: Sequence[str]) -> int:
    """How many documents do not fit the context: their tokens beyond ``block_size`` are never trained on."""
    bs, tok = state.model.block_size, state.tokenizer
    if not set(tok.chars).issuperset("".join(docs)):  # encoding says which character is unknown
        return sum(1 for d in docs if len(tok.encode(d)) - 1 > bs)
    # every character is one token between two BOS: len(encode(d)) == len(d) + 2 (without encoding
    # every document before the first step)
    return sum(1 for d in docs if len(d) + 1 > bs)


def train_step(state: TrainState, cache: ProgramCache, docs: Sequence[str]) -> tuple[TrainState, float]:
    """Run one step; returns the new state and the step's loss."""
    new, loss = _dispatch_step(state, cache, docs)
    return new, float(loss)


def _dispatch_step(state: TrainState, cache: ProgramCache, docs: Sequence[str]) -> tuple[TrainState, Any]:
    """Start one step: the new state and the step's loss as the program returned it (on the jax backend an
    array still being computed: reading it waits for the step, so :func:`train` reads it one step later)."""
    data = encode_batch(state, step_docs(state, docs), pad=bool(cache.pad), pack=cache.pack)
    program = cache.get(*program_key(data))
    out = program(step_inputs(state, data))
    params = {k: out[k] for k in state.params}
    return replace(state, params=params, m=out["adam.m"], v=out["adam.v"], step=state.step + 1), out["loss"]


def step_inputs(state: TrainState, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs of a training-step program: the batch, parameters, moments and step counter."""
    inputs: dict[str, np.ndarray] = dict(data)
    inputs.update(state.params)
    inputs["adam.m"], inputs["adam.v"] = state.m, state.v
    inputs["step"] = np.float64(state.step)  # type: ignore[assignment]  # a numpy scalar, as before
    return inputs


def resume_docs(state: TrainState, docs: Sequence[str]) -> list[str]:
    """The shuffled documents of a checkpointed run, checked to be the ones it trained on."""
    shuffled, _, _ = prepare(docs, state.recipe, state.seed)
    if fingerprint(shuffled) != state.docs_fingerprint:
        raise GptirError("the training data differs from the data this checkpoint was trained on "
                         "(pass the same --data as the original run)")
    return shuffled


def snapshot_graph(state: TrainState, doc: str) -> Graph:
    """The loss graph of ``doc`` with the state's parameters inline: what ``--dump-ir-every`` writes.

    The document is fixed for a run, so consecutive snapshots differ only in parameter values.
    """
    data = encode_batch(replace(state, batch=1), [doc])
    g = loss_graph(state.model, len(data["tokens"]))
    return g.replace(params={k: np.asarray(v) for k, v in state.params.items()})


def train(state: TrainState, docs: Sequence[str], cache: ProgramCache, until: int | None = None) -> Iterator[tuple[TrainState, float]]:
    """Yield (state, loss) after each step until step ``until`` (default: the run's num_steps).

    Where the backend runs asynchronously (jax: a call returns while XLA computes), step k + 1 is started
    before step k's loss is read and yielded, so the Python around a step (batch encoding, argument
    checks, the caller's logging) overlaps XLA's work instead of waiting for it; the losses and states
    are the same. On the native backend the steps run on resident state (:class:`ResidentSteps`): the
    same arithmetic, without the Python of a program call per step. Elsewhere each step is yielded as
    soon as it is done."""
    stop = state.num_steps if until is None else min(until, state.num_steps)
    if cache.backend == "native" and state.step < stop:
        yield from ResidentSteps(state, docs, cache).run(stop)
        return
    pending: tuple[TrainState, Any] | None = None
    while state.step < stop:
        state, loss = _dispatch_step(state, cache, docs)
        if isinstance(loss, (float, np.ndarray, np.generic)):  # a finished step (numpy backends)
            yield state, float(loss)
            continue
        if pending is not None:
            yield pending[0], float(pending[1])
        pending = (state, loss)
    if pending is not None:
        yield pending[0], float(pending[1])


class ResidentSteps:
    """Native training steps with the parameters and Adam moments in flat buffers the programs read and
    write directly (the parameters in :func:`param_shapes` order, then ``m``, then ``v``): per step
    Python only writes the step's tokens into the program's input, calls it once and reads the loss.

    Each step reads one buffer and writes another. A yielded state's arrays are views of the buffer
    its step wrote, and a buffer is written again only when nothing outside this object refers to it
    (its reference count: every array viewing it holds one), else a new buffer is taken. So states stay
    values, as on every other backend: an old state kept by the caller never changes."""

    def __init__(self, state: TrainState, docs: Sequence[str], cache: ProgramCache) -> None:
        self.state, self.docs, self.cache = state, docs, cache
        self.shapes = param_shapes(state.model)
        self.size = num_params(state.model)
        self.layout: list[tuple[str, int, int, tuple[int, ...]]] = []
        for name, shape in self.shapes.items():
            at = self.layout[-1][2] if self.layout else 0
            self.layout.append((name, at, at + int(np.prod(shape)), shape))
        self.dt = NUMPY_DTYPES[state.model.dtype]
        self.pool: list[np.ndarray] = []
        self.held: list[int] = []  # per buffer: the references bound programs hold to it
        self.bound: dict[tuple[tuple[int, int], int, int], Any] = {}
        self.step_in = np.zeros((), self.dt)
        self.loss = np.zeros((), self.dt)
        self.both: dict[int, np.ndarray] = {}  # per length: one document's tokens and targets

    def views(self, buf: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """A buffer's parameters (each its own view), ``m`` and ``v``."""
        params = {name: buf[a:b].reshape(shape) for name, a, b, shape in self.layout}
        return params, buf[self.size:2 * self.size], buf[2 * self.size:]

    def fresh(self, busy: int = -1) -> int:
        """A buffer of the pool, not ``busy``, that nothing else refers to: its reference count is the
        pool's, the call argument's and the bound programs' (``held``)."""
        for i in range(len(self.pool)):
            if i != busy and sys.getrefcount(self.pool[i]) <= 2 + self.held[i]:
                return i
        self.pool.append(np.empty(3 * self.size, self.dt))
        self.held.append(0)
        return len(self.pool) - 1

    def program(self, key: tuple[int, int], src: int, dst: int, data: Mapping[str, np.ndarray]) -> Any:
        """The program for ``key`` bound to read buffer ``src`` and ``data`` and write buffer ``dst``."""
        bound = self.bound.get((key, src, dst))
        if bound is None:
            prog = self.cache.get(*key)
            before = [sys.getrefcount(self.pool[i]) for i in (src, dst)]
            ins, outs = dict(data), {}
            params, ins["adam.m"], ins["adam.v"] = self.views(self.pool[src])
            ins.update(params)
            params, outs["adam.m"], outs["adam.v"] = self.views(self.pool[dst])
            outs.update(params)
            ins["step"], outs["loss"] = self.step_in, self.loss
            bound = self.bound[(key, src, dst)] = prog.bind(ins, outs)  # type: ignore[attr-defined]
            del ins, outs, params
            for i, b in zip((src, dst), before):  # the views the bound program keeps
                self.held[i] += sys.getrefcount(self.pool[i]) - b
        return bound

    def run(self, stop: int) -> Iterator[tuple[TrainState, float]]:
        state = self.state
        del self.state  # held here, it would keep the first buffer from being reused
        src = self.fresh()
        buf = self.pool[src]
        params, m, v = self.views(buf)
        for name in self.shapes:
            params[name][...] = state.params[name]
        m[...], v[...] = state.m, state.v
        del buf, params, m, v
        pad, pack, docs, n_docs, batch = bool(self.cache.pad), self.cache.pack, self.docs, len(self.docs), state.batch
        tokenizer = state.tokenizer
        while state.step < stop:
            if batch == 1 and not (pad or pack):  # encode_batch's unpadded arrays, written into the program's own
                ids = tokenizer.encode(docs[state.step % n_docs])
                n = positions(state, ids)
                key = (n, 0)
                both = self.both.get(n)
                if both is None:
                    both = self.both[n] = np.empty(n + 1, np.int64)
                both[:] = ids[:n + 1]
                dst = self.fresh(src)
                bound = self.bound.get((key, src, dst)) or self.program(key, src, dst, {"tokens": both[:n],
                                                                                          "targets": both[1:]})
            else:
                data = encode_batch(state, step_docs(state, docs), pad=pad, pack=pack)
                key = program_key(data)
                dst = self.fresh(src)
                bound = self.program(key, src, dst, data)
                for name, a in data.items():
                    bound.point(name, a)
            self.step_in[()] = state.step
            bound()
            loss = float(self.loss)
            params, m, v = self.views(self.pool[dst])
            # the next state: replace()'s fields, set without its per-field checks (a frozen dataclass)
            new = object.__new__(TrainState)
            new.__dict__.update(state.__dict__, params=params, m=m, v=v, step=state.step + 1)
            state = new
            del params, m, v
            src = dst
            yield state, loss
