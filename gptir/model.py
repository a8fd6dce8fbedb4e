"""The microgpt model on gptir: configuration, parameters in the reference order, and the loss.

``loss_graph`` and ``logits_graph`` trace the model for one token-sequence length; the trainer and
sampler cache one program per length. ``packed_loss_graph`` traces a batch packed into rows (``gptir train
--pack``): the per-token layers run on the documents' positions only, attention on the padded layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

from gptir import rng as R
from gptir.gcpause import gc_paused
from gptir.ir import FLOATS, NUMPY_DTYPES, GptirError, Graph, TensorType

if TYPE_CHECKING:  # the tracer is imported where graphs are built: a warm native run builds none
    from gptir.tracing import Builder, Tracer


class ConfigError(GptirError):
    """An impossible model configuration."""


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_embd: int = 16
    n_head: int = 4
    n_layer: int = 1
    block_size: int = 16
    init_std: float = 0.08
    dtype: str = "f64"  # of the parameters and all float arithmetic (f32: single precision)

    def __post_init__(self) -> None:
        if self.dtype not in FLOATS:
            raise ConfigError(f"dtype must be one of {', '.join(FLOATS)}, got {self.dtype!r}")
        for field in ("vocab_size", "n_embd", "n_head", "n_layer", "block_size"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    def to_json(self) -> dict:
        return asdict(self)


def param_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape, in the reference's initialisation order (matrices are [out, in])."""
    c = cfg.n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "wte": (cfg.vocab_size, c), "wpe": (cfg.block_size, c), "lm_head": (cfg.vocab_size, c)}
    for i in range(cfg.n_layer):
        for w in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{w}"] = (c, c)
        shapes[f"layer{i}.mlp_fc1"] = (4 * c, c)
        shapes[f"layer{i}.mlp_fc2"] = (c, 4 * c)
    return shapes


def num_params(cfg: GPTConfig) -> int:
    return sum(int(np.prod(s)) for s in param_shapes(cfg).values())


def init_params(cfg: GPTConfig, rng: R.Rng) -> tuple[dict[str, np.ndarray], R.Rng]:
    """Draw every weight from N(0, init_std), row by row, in the reference order (drawn in double
    precision, then rounded to ``cfg.dtype``)."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        values, rng = R.gauss_many(rng, int(np.prod(shape)), 0.0, cfg.init_std)
        params[name] = np.array(values, dtype=np.float64).reshape(shape).astype(NUMPY_DTYPES[cfg.dtype])
    return params, rng


@dataclass(frozen=True)
class Packing:
    """How a packed batch's rows map to and from documents (see :func:`packed_loss_graph`).

    ``pos`` i64[N]: each row's position in its document; ``slots`` i64[B, T]: the row at each
    document position (any row, e.g. 0, past a document's end); ``rows`` i64[N]: each row's index in the
    documents flattened to [B * T] (any index for a filler row)."""

    pos: Tracer
    slots: Tracer
    rows: Tracer


def forward(cfg: GPTConfig, p: Mapping[str, Tracer], tokens: Tracer, packing: Packing | None = None) -> Tracer:
    """Logits [..., T, vocab] for token ids [..., T] (positions 0..T-1); with ``packing``, logits
    [N, vocab] for a packed batch's token ids [N]: every per-token layer runs on the N rows, and only
    attention on the documents' [B, T] layout (gathered from the rows and back)."""
    from gptir.nn import causal_attention, linear, mlp, rmsnorm
    from gptir.tracing import gather, reshape, scope

    t = tokens.shape[-1] if packing is None else packing.slots.shape[-1]
    if t > cfg.block_size:
        raise ConfigError(f"a sequence of {t} tokens is longer than block_size {cfg.block_size}")

    def attention(q: Tracer, k: Tracer, v: Tracer) -> Tracer:
        if packing is None:
            return causal_attention(q, k, v, cfg.n_head)
        b, c = packing.slots.shape[0], q.shape[-1]
        out = causal_attention(gather(q, packing.slots), gather(k, packing.slots), gather(v, packing.slots),
                               cfg.n_head)  # on [B, T, C]
        return gather(reshape(out, (b * t, c)), packing.rows)  # [N, C]

    with scope("embed"):
        x = gather(p["wte"], tokens) + (p["wpe"][:t] if packing is None else gather(p["wpe"], packing.pos))
        x = rmsnorm(x)
    for i in range(cfg.n_layer):
        with scope(f"layer{i}"):
            with scope("attn"):
                r = x
                x = rmsnorm(x)
                q = linear(x, p[f"layer{i}.attn_wq"])
                k = linear(x, p[f"layer{i}.attn_wk"])
                v = linear(x, p[f"layer{i}.attn_wv"])
                x = linear(attention(q, k, v), p[f"layer{i}.attn_wo"]) + r
            with scope("mlp"):
                r = x
                x = mlp(rmsnorm(x), p[f"layer{i}.mlp_fc1"], p[f"layer{i}.mlp_fc2"]) + r
    with scope("lm_head"):
        return linear(x, p["lm_head"])


def token_nll(logits: Tracer, targets: Tracer) -> Tracer:
    """-log softmax(logits)[target] at every position: probabilities first, as the reference does."""
    from gptir.nn import softmax
    from gptir.tracing import gather, reshape, scope

    with scope("loss"):
        probs = softmax(logits, axis=-1)
        *lead, v = probs.shape
        count = int(np.prod(lead, dtype=np.int64))
        offsets = (np.arange(count, dtype=np.int64) * v).reshape(lead)
        picked = gather(reshape(probs, (count * v,)), targets + offsets)
        return -(picked.builder.emit("log", [picked]))


def doc_loss(cfg: GPTConfig, p: Mapping[str, Tracer], tokens: Tracer, targets: Tracer) -> Tracer:
    """The mean negative log-likelihood of one document's targets (the reference's loss)."""
    from gptir.tracing import scope

    nll = token_nll(forward(cfg, p, tokens), targets)
    with scope("loss"):
        return (1.0 / tokens.shape[-1]) * nll.sum()


def batch_loss(cfg: GPTConfig, p: Mapping[str, Tracer], tokens: Tracer, targets: Tracer, mask: Tracer,
               packing: Packing | None = None) -> Tracer:
    """Mean over the real (mask true) positions of a padded batch [B, T] (or packed rows [N])."""
    from gptir.tracing import scope, where

    nll = token_nll(forward(cfg, p, tokens, packing), targets)
    with scope("loss"):
        real = where(mask, nll, 0.0).sum()
        one = nll.builder.const(1.0, nll.dtype)  # the model's float dtype, as the literals above
        count = where(mask, one, 0.0).sum()
        return real / count


def _param_inputs(b: Builder, cfg: GPTConfig) -> dict[str, Tracer]:
    return {name: b.param(name, TensorType(cfg.dtype, shape)) for name, shape in param_shapes(cfg).items()}


@gc_paused  # (as gptir.trace: the nodes all stay alive, so collecting while it runs finds nothing)
def loss_graph(cfg: GPTConfig, n: int, batch: int = 0) -> Graph:
    """The loss of one document with ``n`` positions (or a padded batch of ``batch`` documents).

    Inputs: the parameters (``param``), ``tokens`` and ``targets`` (i64[n], or i64[B,n] with a bool
    ``mask``); output ``loss``.
    """
    from gptir.tracing import Builder

    b = Builder("microgpt_loss")
    p = _param_inputs(b, cfg)
    shape = (batch, n) if batch else (n,)
    tokens = b.input("tokens", TensorType("i64", shape))
    targets = b.input("targets", TensorType("i64", shape))
    if batch:
        mask = b.input("mask", TensorType("bool", shape))
        return b.finish({"loss": batch_loss(cfg, p, tokens, targets, mask)})
    return b.finish({"loss": doc_loss(cfg, p, tokens, targets)})


@gc_paused
def packed_loss_graph(cfg: GPTConfig, size: int, batch: int) -> Graph:
    """The loss of a batch of ``batch`` documents packed into ``size`` token rows.

    Inputs: the parameters, ``tokens``, ``targets``, ``pos`` (i64[size]), ``mask`` (bool[size]: false on
    the filler rows after the documents), ``slots`` (i64[batch, block_size]) and ``rows`` (i64[size]), as
    :class:`Packing` describes; output ``loss``. The per-token layers (embedding, norms, projections, MLP,
    loss) do work only for the rows, not for every document padded to ``block_size``.
    """
    from gptir.tracing import Builder

    b = Builder("microgpt_loss")
    p = _param_inputs(b, cfg)
    tokens = b.input("tokens", TensorType("i64", (size,)))
    targets = b.input("targets", TensorType("i64", (size,)))
    mask = b.input("mask", TensorType("bool", (size,)))
    packing = Packing(b.input("pos", TensorType("i64", (size,))),
                      b.input("slots", TensorType("i64", (batch, cfg.block_size))),
                      b.input("rows", TensorType("i64", (size,))))
    return b.finish({"loss": batch_loss(cfg, p, tokens, targets, mask, packing)})


def logits_graph(cfg: GPTConfig, n: int, padded: bool = False) -> Graph:
    """Next-token logits after a sequence of ``n`` tokens (used for sampling). ``padded``: one program
    for every length, ``tokens`` i64[block_size] (padding after the sequence, which causal attention
    never lets it see) and ``pos`` i64[], the position whose logits come out (``n`` is ignored)."""
    from gptir.tracing import Builder, gather

    b = Builder("microgpt_logits")
    p = _param_inputs(b, cfg)
    tokens = b.input("tokens", TensorType("i64", (cfg.block_size if padded else n,)))
    logits = forward(cfg, p, tokens)
    if padded:
        return b.finish({"logits": gather(logits, b.input("pos", TensorType("i64", ())))})
    return b.finish({"logits": logits[n - 1]})
