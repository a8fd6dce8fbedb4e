"""The yardstick: a faithful pure-Python scalar reimplementation of the reference runs.

Two recipes (see ../shared/reference/microgpt.md and microgptex.md):

* ``microgpt``   -- Karpathy's microgpt exactly: scalar ``Value`` autograd, one
  ``random.Random(seed)`` stream for shuffle, ``gauss`` weight init and ``choices`` sampling.
* ``microgptex`` -- MicroGPTEx's run: the same model, but Erlang ``exsss`` randomness
  (shuffle with one fresh generator, weights and sampling with a second one).

Bit-exactness needs more than the math on the spec pages; both details below were checked
against the published losses (each one alone breaks several of the first 20):

* Adam: microgpt uses ``g ** 2`` and ``v_hat ** 0.5`` (C ``pow``, which differs from
  ``g*g`` / ``sqrt`` in ~0.1% of inputs); MicroGPTEx uses ``g * g`` and ``sqrt``.
* Sums: microgpt's ``sum()`` builds nodes (partial, x_k) from 0; MicroGPTEx's
  ``Enum.reduce(xs, &add/2)`` builds (x_k, partial) from x0. Forward values agree, but the
  backward sweep's order, hence the float order of gradient accumulation, differs.

This is deliberately the slow, obviously-correct version (~200 s for 1000 steps): gptir's
compiled model must reproduce its losses and samples bit for bit. It is not part of gptir.

    python benchmarks/reference_microgpt.py --data ../shared/data/names.txt \
        [--steps 1000] [--stop-after N] [--recipe microgpt|microgptex] [--seed 42] [--out FILE.json]

``--steps`` is the run length that sets the learning-rate decay; ``--stop-after`` trains only
the first N of those steps (e.g. to check the first 20 published losses quickly).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gptir.rng, for exsss

from gptir import rng as grng  # noqa: E402

# --------------------------------------------------------------------------- autograd


class Value:
    """A scalar with a gradient: Karpathy's micrograd node, operation for operation."""

    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data: float, children: tuple[Value, ...] = (), local_grads: tuple[float, ...] = ()) -> None:
        self.data = data
        self.grad: float = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other: float) -> Value:
        return Value(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self) -> Value:
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self) -> Value:
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self) -> Value:
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: float) -> Value:
        return self + other

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: float) -> Value:
        return other + (-self)

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        return self * other**-1

    def __rtruediv__(self, other: float) -> Value:
        return other * self**-1

    def backward(self) -> None:
        """Reverse-mode sweep; the same topological order as the reference's recursive DFS
        (children in order, post-order), done iteratively so deep graphs cannot hit the
        recursion limit. The order matters: it fixes the float summation order of grads."""
        topo: list[Value] = []
        visited = {self}
        stack = [(self, iter(self._children))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in visited:
                    visited.add(child)
                    stack.append((child, iter(child._children)))
                    break
            else:
                stack.pop()
                topo.append(node)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


# --------------------------------------------------------------------------- model

N_EMBD, N_HEAD, N_LAYER, BLOCK_SIZE = 16, 4, 1, 16
HEAD_DIM = N_EMBD // N_HEAD
INIT_STD = 0.08
LEARNING_RATE, BETA1, BETA2, EPS_ADAM = 0.01, 0.85, 0.99, 1e-8
TEMPERATURE = 0.5
NUM_SAMPLES = 20

Matrix = list[list[Value]]
StateDict = dict[str, Matrix]


def init_state_dict(vocab_size: int, gauss: Callable[[float, float], float]) -> StateDict:
    """Weights drawn row by row, in the reference's matrix order."""

    def matrix(nout: int, nin: int, std: float = INIT_STD) -> Matrix:
        return [[Value(gauss(0, std)) for _ in range(nin)] for _ in range(nout)]

    sd: StateDict = {
        "wte": matrix(vocab_size, N_EMBD),
        "wpe": matrix(BLOCK_SIZE, N_EMBD),
        "lm_head": matrix(vocab_size, N_EMBD),
    }
    for i in range(N_LAYER):
        sd[f"layer{i}.attn_wq"] = matrix(N_EMBD, N_EMBD)
        sd[f"layer{i}.attn_wk"] = matrix(N_EMBD, N_EMBD)
        sd[f"layer{i}.attn_wv"] = matrix(N_EMBD, N_EMBD)
        sd[f"layer{i}.attn_wo"] = matrix(N_EMBD, N_EMBD)
        sd[f"layer{i}.mlp_fc1"] = matrix(4 * N_EMBD, N_EMBD)
        sd[f"layer{i}.mlp_fc2"] = matrix(N_EMBD, 4 * N_EMBD)
    return sd


VSum = Callable[[list[Value]], Value]


def python_sum(xs: list[Value]) -> Value:
    """Python's ``sum``: ((0 + x0) + x1) + ...; each node's children are (partial, x_k)."""
    return sum(xs)  # type: ignore[return-value]


def elixir_sum(xs: list[Value]) -> Value:
    """MicroGPTEx's ``Enum.reduce(xs, &add/2)``: no 0 start, each node is ``add(x_k, partial)``.

    Same forward values as :func:`python_sum`, but the children are (x_k, partial), which
    changes the backward sweep's topological order and so the float order in which
    gradients of shared nodes are accumulated.
    """
    if not xs:
        return Value(0.0)
    acc = xs[0]
    for x in xs[1:]:
        acc = x + acc
    return acc


class GPT:
    """The reference forward pass over scalar Values; ``vsum`` fixes the graph's sum shape."""

    def __init__(self, sd: StateDict, vsum: VSum) -> None:
        self.sd = sd
        self.vsum = vsum

    def linear(self, x: list[Value], w: Matrix) -> list[Value]:
        return [self.vsum([wi * xi for wi, xi in zip(wo, x)]) for wo in w]

    def softmax(self, logits: list[Value]) -> list[Value]:
        max_val = max(val.data for val in logits)  # a constant: no gradient through the max
        exps = [(val - max_val).exp() for val in logits]
        total = self.vsum(exps)
        return [e / total for e in exps]

    def rmsnorm(self, x: list[Value]) -> list[Value]:
        ms = self.vsum([xi * xi for xi in x]) / len(x)
        scale = (ms + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    def __call__(
        self, token_id: int, pos_id: int, keys: list[list[list[Value]]], values: list[list[list[Value]]]
    ) -> list[Value]:
        """One position of the forward pass, with the reference's key/value cache."""
        sd, linear, rmsnorm = self.sd, self.linear, self.rmsnorm
        tok_emb = sd["wte"][token_id]
        pos_emb = sd["wpe"][pos_id]
        x = [t + p for t, p in zip(tok_emb, pos_emb)]
        x = rmsnorm(x)
        for li in range(N_LAYER):
            x_residual = x
            x = rmsnorm(x)
            q = linear(x, sd[f"layer{li}.attn_wq"])
            k = linear(x, sd[f"layer{li}.attn_wk"])
            v = linear(x, sd[f"layer{li}.attn_wv"])
            keys[li].append(k)
            values[li].append(v)
            x_attn: list[Value] = []
            for h in range(N_HEAD):
                hs = h * HEAD_DIM
                q_h = q[hs : hs + HEAD_DIM]
                k_h = [ki[hs : hs + HEAD_DIM] for ki in keys[li]]
                v_h = [vi[hs : hs + HEAD_DIM] for vi in values[li]]
                attn_logits = [
                    self.vsum([q_h[j] * k_h[t][j] for j in range(HEAD_DIM)]) / HEAD_DIM**0.5 for t in range(len(k_h))
                ]
                attn_weights = self.softmax(attn_logits)
                head_out = [self.vsum([attn_weights[t] * v_h[t][j] for t in range(len(v_h))]) for j in range(HEAD_DIM)]
                x_attn.extend(head_out)
            x = linear(x_attn, sd[f"layer{li}.attn_wo"])
            x = [a + b for a, b in zip(x, x_residual)]
            x_residual = x
            x = rmsnorm(x)
            x = linear(x, sd[f"layer{li}.mlp_fc1"])
            x = [xi.relu() for xi in x]
            x = linear(x, sd[f"layer{li}.mlp_fc2"])
            x = [a + b for a, b in zip(x, x_residual)]
        return linear(x, sd["lm_head"])


# --------------------------------------------------------------------------- recipes

Softmax = Callable[[list[Value]], list[Value]]


class Recipe(Protocol):
    """What differs between the two runs: randomness, and the exact float shape of a few ops."""

    vsum: VSum

    def shuffle(self, docs: list[str]) -> list[str]: ...
    def gauss(self, mu: float, sigma: float) -> float: ...
    def loss_mean(self, losses: list[Value], n: int) -> Value: ...
    def adam(self, p: float, m: float, v: float, g: float, lr_t: float, step: int) -> tuple[float, float, float]: ...
    def sample_token(self, softmax: Softmax, logits: list[Value], vocab_size: int) -> int: ...


class MicroGPT:
    """Karpathy's microgpt.py: one random.Random(seed) stream for everything."""

    vsum: VSum = staticmethod(python_sum)

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def shuffle(self, docs: list[str]) -> list[str]:
        docs = list(docs)
        self.random.shuffle(docs)
        return docs

    def gauss(self, mu: float, sigma: float) -> float:
        return self.random.gauss(mu, sigma)

    def loss_mean(self, losses: list[Value], n: int) -> Value:
        return (1 / n) * self.vsum(losses)

    def adam(self, p: float, m: float, v: float, g: float, lr_t: float, step: int) -> tuple[float, float, float]:
        # Verbatim: ``g ** 2`` and ``v_hat ** 0.5`` are C pow(), which is NOT always g*g / sqrt.
        m = BETA1 * m + (1 - BETA1) * g
        v = BETA2 * v + (1 - BETA2) * g**2
        m_hat = m / (1 - BETA1 ** (step + 1))
        v_hat = v / (1 - BETA2 ** (step + 1))
        return p - lr_t * m_hat / (v_hat**0.5 + EPS_ADAM), m, v

    def sample_token(self, softmax: Softmax, logits: list[Value], vocab_size: int) -> int:
        probs = softmax([l / TEMPERATURE for l in logits])
        return self.random.choices(range(vocab_size), weights=[p.data for p in probs])[0]


class MicroGPTEx:
    """MicroGPTEx (lib/microgptex.ex): exsss randomness, Enum.reduce sums, g*g and sqrt in Adam."""

    vsum: VSum = staticmethod(elixir_sum)

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng: grng.Rng = grng.exsss(seed)  # weights, then sampling

    def shuffle(self, docs: list[str]) -> list[str]:
        shuffled, _discarded = grng.shuffle(grng.exsss(self.seed), docs)
        return shuffled

    def gauss(self, mu: float, sigma: float) -> float:
        x, self.rng = grng.gauss(self.rng, mu, sigma)
        return x

    def loss_mean(self, losses: list[Value], n: int) -> Value:
        return self.vsum(losses) * n**-1

    def adam(self, p: float, m: float, v: float, g: float, lr_t: float, step: int) -> tuple[float, float, float]:
        m = BETA1 * m + (1.0 - BETA1) * g
        v = BETA2 * v + (1.0 - BETA2) * (g * g)
        m_hat = m / (1.0 - BETA1 ** float(step + 1))
        v_hat = v / (1.0 - BETA2 ** float(step + 1))
        return p - lr_t * m_hat / (math.sqrt(v_hat) + EPS_ADAM), m, v

    def sample_token(self, softmax: Softmax, logits: list[Value], vocab_size: int) -> int:
        inv_temp = 1.0 / TEMPERATURE
        probs = softmax([Value(l.data * inv_temp) for l in logits])
        u, self.rng = grng.uniform(self.rng)
        cum: list[float] = []
        acc = 0.0
        for p in probs:
            acc = p.data + acc
            cum.append(acc)
        target = u * cum[-1]
        return next((i for i, c in enumerate(cum) if c >= target), vocab_size - 1)


RECIPES: dict[str, Callable[[int], Recipe]] = {"microgpt": MicroGPT, "microgptex": MicroGPTEx}


# --------------------------------------------------------------------------- run


def run(
    docs: Sequence[str],
    recipe: Recipe,
    num_steps: int = 1000,
    stop_after: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Train (``num_steps`` sets the lr decay; only ``stop_after`` steps are taken) and sample."""
    docs = recipe.shuffle(list(docs))
    uchars = sorted(set("".join(docs)))
    bos = len(uchars)
    vocab_size = len(uchars) + 1
    sd = init_state_dict(vocab_size, recipe.gauss)
    params = [p for mat in sd.values() for row in mat for p in row]
    gpt = GPT(sd, recipe.vsum)
    log(f"num docs: {len(docs)} | vocab size: {vocab_size} | num params: {len(params)}")

    m = [0.0] * len(params)
    v = [0.0] * len(params)
    losses_out: list[float] = []
    t0 = time.perf_counter()
    for step in range(num_steps if stop_after is None else min(stop_after, num_steps)):
        doc = docs[step % len(docs)]
        tokens = [bos] + [uchars.index(ch) for ch in doc] + [bos]
        n = min(BLOCK_SIZE, len(tokens) - 1)
        keys: list[list[list[Value]]] = [[] for _ in range(N_LAYER)]
        values: list[list[list[Value]]] = [[] for _ in range(N_LAYER)]
        losses: list[Value] = []
        for pos_id in range(n):
            token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
            logits = gpt(token_id, pos_id, keys, values)
            probs = gpt.softmax(logits)
            losses.append(-probs[target_id].log())
        loss = recipe.loss_mean(losses, n)
        loss.backward()
        lr_t = LEARNING_RATE * (1 - step / num_steps)
        for i, p in enumerate(params):
            p.data, m[i], v[i] = recipe.adam(p.data, m[i], v[i], p.grad, lr_t, step)
            p.grad = 0
        losses_out.append(loss.data)
        log(f"step {step + 1:4d} / {num_steps:4d} | loss {loss.data!r} | {time.perf_counter() - t0:.1f}s")

    samples: list[str] = []
    for _ in range(NUM_SAMPLES):
        keys = [[] for _ in range(N_LAYER)]
        values = [[] for _ in range(N_LAYER)]
        token_id = bos
        sample: list[str] = []
        for pos_id in range(BLOCK_SIZE):
            logits = gpt(token_id, pos_id, keys, values)
            token_id = recipe.sample_token(gpt.softmax, logits, vocab_size)
            if token_id == bos:
                break
            sample.append(uchars[token_id])
        samples.append("".join(sample))
    for i, s in enumerate(samples):
        log(f"sample {i + 1:2d}: {s}")

    return {
        "losses": losses_out,
        "samples": samples,
        "num_docs": len(docs),
        "vocab_size": vocab_size,
        "num_params": len(params),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset, one document per line (e.g. ../shared/data/names.txt)")
    ap.add_argument("--steps", type=int, default=1000, help="run length; sets the lr decay (default 1000)")
    ap.add_argument("--stop-after", type=int, default=None, help="train only the first N steps of the run")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="microgpt")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="write the JSON result here (default: stdout)")
    args = ap.parse_args(argv)

    with open(args.data, encoding="utf-8") as f:
        docs = [line.strip() for line in f if line.strip()]
    result = run(
        docs,
        RECIPES[args.recipe](args.seed),
        num_steps=args.steps,
        stop_after=args.stop_after,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    result.update(recipe=args.recipe, seed=args.seed, num_steps=args.steps)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
