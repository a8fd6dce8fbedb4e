"""Neural-network building blocks, written on tracers: ordinary Python that traces into IR.

Every function works on any number of leading (batch, time) axes; the feature axis is the last one.
The arithmetic follows the reference microgpt operation for operation (division by the length in the
mean, ``** -0.5`` in rmsnorm, the maximum as a constant in softmax) so that traced training reproduces
the reference run.
"""

from __future__ import annotations

import math

import numpy as np

from gptir.tracing import Tracer, exp, log, mean, relu, reshape, scope, stop_gradient, tanh, transpose, var, where


def linear(x: Tracer, w: Tracer) -> Tracer:
    """``W @ x`` for every row of ``x``; ``w`` is stored [out, in] as in the reference."""
    return x @ transpose(w)


def rmsnorm(x: Tracer, eps: float = 1e-5) -> Tracer:
    """``x * (mean(x*x) + eps) ** -0.5`` over the last axis (no learned gain)."""
    with scope("rmsnorm"):
        ms = (x * x).sum(axis=-1, keepdims=True) / float(x.shape[-1])
        return x * (ms + eps) ** -0.5


def softmax(x: Tracer, axis: int = -1) -> Tracer:
    """Softmax that subtracts the maximum first; the maximum is a constant for differentiation."""
    with scope("softmax"):
        m = stop_gradient(x.max(axis=axis, keepdims=True))
        e = exp(x - m)
        return e / e.sum(axis=axis, keepdims=True)


def causal_attention(q: Tracer, k: Tracer, v: Tracer, n_head: int) -> Tracer:
    """Multi-head causal self-attention over [..., T, C] queries, keys and values.

    Position p attends to positions 0..p: the reference computes this one token at a time with a
    key/value cache; the whole sequence at once with a causal mask is the same arithmetic (masked
    scores become exp(-inf) = 0 and add nothing).
    """
    *lead, t, c = q.shape
    d = c // n_head

    def heads(x: Tracer) -> Tracer:  # [..., T, C] -> [..., H, T, d]
        x = reshape(x, (*lead, t, n_head, d))
        n = len(lead)
        return transpose(x, (*range(n), n + 1, n, n + 2))

    qh, kh, vh = heads(q), heads(k), heads(v)
    n = len(lead)
    scores = (qh @ transpose(kh, (*range(n + 1), n + 2, n + 1))) / math.sqrt(d)
    mask = np.tril(np.ones((t, t), dtype=bool))
    scores = where(mask, scores, -math.inf)
    weights = softmax(scores, axis=-1)
    out = weights @ vh  # [..., H, T, d]
    out = transpose(out, (*range(n), n + 1, n, n + 2))
    return reshape(out, (*lead, t, c))


def mlp(x: Tracer, fc1: Tracer, fc2: Tracer) -> Tracer:
    return linear(relu(linear(x, fc1)), fc2)


def log_softmax(x: Tracer, axis: int = -1) -> Tracer:
    """``x - logsumexp(x)`` with the maximum subtracted first (a constant for differentiation)."""
    with scope("log_softmax"):
        s = x - stop_gradient(x.max(axis=axis, keepdims=True))
        return s - log(exp(s).sum(axis=axis, keepdims=True))


def logsumexp(x: Tracer, axis: int | None = -1, keepdims: bool = False) -> Tracer:
    """``log(sum(exp(x)))`` computed as ``m + log(sum(exp(x - m)))`` with ``m`` the maximum; its
    gradient is the softmax (``m`` is a constant for differentiation: its two uses cancel)."""
    with scope("logsumexp"):
        m = stop_gradient(x.max(axis=axis, keepdims=True))
        out = m + log(exp(x - m).sum(axis=axis, keepdims=True))
        if keepdims:
            return out
        axes = range(x.ndim) if axis is None else (axis % max(x.ndim, 1),)
        return reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def layer_norm(x: Tracer, gain: Tracer | None = None, bias: Tracer | None = None, eps: float = 1e-5) -> Tracer:
    """``(x - mean) * (var + eps) ** -0.5`` over the last axis, then ``* gain + bias`` if given
    (torch.nn.functional.layer_norm's definition, with the population variance)."""
    with scope("layer_norm"):
        y = (x - mean(x, -1, keepdims=True)) * (var(x, -1, keepdims=True) + eps) ** -0.5
        if gain is not None:
            y = y * gain
        return y if bias is None else y + bias


def gelu(x: Tracer) -> Tracer:
    """GELU, tanh form (GPT-2's): ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    with scope("gelu"):
        return 0.5 * x * (1.0 + tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))
