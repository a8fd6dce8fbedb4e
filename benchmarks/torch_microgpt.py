"""A PyTorch eager twin of gptir's microgpt training step: the yardstick for ``bench_train.py``.

Same model and arithmetic as gptir/model.py, gptir/nn.py and gptir/optim.py (float64; embeddings,
rmsnorm without gain, causal multi-head attention, relu MLP, lm_head, softmax with the maximum held
constant, mean NLL; Adam with bias correction and linear lr decay written out by hand so the formula
is the reference's, not ``torch.optim.Adam``'s slightly different one). Same batching semantics as
gptir.train: ``batch`` documents per step, docs[(step*B + i) % len(docs)], padded with BOS to the
longest (<= block_size) with a mask; loss = mean NLL over the real positions. Same initial weights:
taken from ``gptir.train.start`` (or, until gptir's autodiff lands, the identical shuffle +
``gptir.model.init_params`` sequence), so the losses can be compared number for number.

    python benchmarks/torch_microgpt.py [--data ../shared/data/names.txt] [--steps 1000]
        [--batch 1] [--n-embd 16 --n-head 4 --n-layer 1 --block-size 16] [--compare 5]

Prints the first ``--compare`` losses next to gptir's for the same run, then times ``--steps`` steps. Without torch it prints "torch not installed: skipping" and
exits 0. torch is never a gptir dependency.
"""

from __future__ import annotations

import os

# Single-threaded, set before numpy/torch load their BLAS: the benchmark compares one core each.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Mapping, Sequence  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "names.txt"

from gptir import data as gdata  # noqa: E402
from gptir import train as gtrain  # noqa: E402
from gptir.model import GPTConfig  # noqa: E402
from gptir.optim import AdamConfig  # noqa: E402

try:
    import torch
except ImportError:  # the twin is optional: gptir never depends on torch
    torch = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- the run's starting point


@dataclass(frozen=True)
class Run:
    """What both trainers start from: config, tokenizer, shuffled docs, initial weights."""

    cfg: GPTConfig
    adam: AdamConfig
    num_steps: int
    batch: int
    tokenizer: gdata.Tokenizer
    docs: list[str]
    params: Mapping[str, np.ndarray]
    state: Any  # the gptir.train.TrainState the run starts from


def default_data_path() -> str | None:
    """names.txt when ../shared/data has it, else None (gptir's built-in corpus)."""
    return str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None


def start_run(docs: Sequence[str], *, seed: int = 42, num_steps: int = 1000, n_embd: int = 16,
              n_head: int = 4, n_layer: int = 1, block_size: int = 16, batch: int = 1) -> Run:
    """gptir.train.start's run (microgpt recipe): the same documents, vocabulary and initial weights."""
    state, shuffled = gtrain.start(docs, recipe="microgpt", seed=seed, num_steps=num_steps, n_embd=n_embd,
                                   n_head=n_head, n_layer=n_layer, block_size=block_size, batch=batch)
    return Run(state.model, state.adam, num_steps, batch, state.tokenizer, shuffled, state.params, state)


def step_docs(run: Run, step: int) -> list[str]:
    """The documents of ``step``, exactly as gptir's trainer picks them."""
    return gtrain.step_docs(replace(run.state, step=step), run.docs)


def encode(run: Run, batch_docs: Sequence[str]) -> dict[str, np.ndarray]:
    """gptir's batch encoding: unpadded [n] for one document, else BOS-padded [B, n] plus a mask."""
    return gtrain.encode_batch(run.state, batch_docs)


# --------------------------------------------------------------------------- the torch model


def _softmax(x: "torch.Tensor") -> "torch.Tensor":
    """gptir.nn.softmax: subtract the (detached) maximum, exp, divide by the sum."""
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values.detach())
    return e / e.sum(dim=-1, keepdim=True)


def _rmsnorm(x: "torch.Tensor") -> "torch.Tensor":
    return x * ((x * x).sum(dim=-1, keepdim=True) / float(x.shape[-1]) + 1e-5) ** -0.5


def _linear(x: "torch.Tensor", w: "torch.Tensor") -> "torch.Tensor":
    return x @ w.t()  # weights are [out, in], as in the reference


class TorchTrainer:
    """The training step in torch eager mode; parameters and Adam moments live as float64 tensors."""

    def __init__(self, run: Run) -> None:
        if torch is None:
            raise RuntimeError("torch is not installed")
        self.run = run
        self.names = list(run.params)
        self.p = {k: torch.tensor(np.asarray(v, np.float64), dtype=torch.float64, requires_grad=True)
                  for k, v in run.params.items()}
        self.m = [torch.zeros_like(t) for t in self.p.values()]
        self.v = [torch.zeros_like(t) for t in self.p.values()]
        self.step = 0
        self._masks: dict[int, torch.Tensor] = {}  # causal masks by length: data, not work

    def _causal(self, t: int) -> "torch.Tensor":
        mask = self._masks.get(t)
        if mask is None:
            mask = self._masks[t] = torch.ones(t, t, dtype=torch.bool).tril()
        return mask

    def forward(self, tokens: "torch.Tensor") -> "torch.Tensor":
        """Logits [..., T, vocab] (gptir.model.forward)."""
        cfg, p = self.run.cfg, self.p
        t, c, h = tokens.shape[-1], cfg.n_embd, cfg.n_head
        d = c // h
        lead = tuple(tokens.shape[:-1])
        x = _rmsnorm(p["wte"][tokens] + p["wpe"][:t])
        causal = self._causal(t)
        for i in range(cfg.n_layer):
            r = x
            x = _rmsnorm(x)
            q, k, v = (_linear(x, p[f"layer{i}.attn_w{w}"]).reshape(*lead, t, h, d).transpose(-3, -2)
                       for w in "qkv")
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
            weights = _softmax(scores.masked_fill(~causal, -math.inf))
            att = (weights @ v).transpose(-3, -2).reshape(*lead, t, c)
            x = _linear(att, p[f"layer{i}.attn_wo"]) + r
            r = x
            x = _linear(torch.relu(_linear(_rmsnorm(x), p[f"layer{i}.mlp_fc1"])), p[f"layer{i}.mlp_fc2"]) + r
        return _linear(x, p["lm_head"])

    def loss(self, inputs: Mapping[str, np.ndarray]) -> "torch.Tensor":
        """Mean NLL (over the real positions when batched): gptir.model.doc_loss / batch_loss."""
        tokens = torch.from_numpy(inputs["tokens"])
        targets = torch.from_numpy(inputs["targets"])
        probs = _softmax(self.forward(tokens))
        nll = -torch.log(probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
        if "mask" not in inputs:
            return (1.0 / tokens.shape[-1]) * nll.sum()
        mask = torch.from_numpy(inputs["mask"])
        return torch.where(mask, nll, 0.0).sum() / mask.sum().to(torch.float64)

    def train_step(self, inputs: Mapping[str, np.ndarray]) -> float:
        """Forward, backward and the reference Adam update; returns the loss."""
        loss = self.loss(inputs)
        params = list(self.p.values())
        grads = torch.autograd.grad(loss, params)
        a, s = self.run.adam, self.step
        lr_t = a.lr * (1.0 - s / float(self.run.num_steps))
        bias1 = 1.0 - a.beta1 ** (s + 1.0)
        bias2 = 1.0 - a.beta2 ** (s + 1.0)
        with torch.no_grad():
            # m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; p -= lr_t * (m/bias1) / ((v/bias2)**0.5 + eps).
            # The foreach kernels are what torch's own optimizers use: the fair eager baseline.
            torch._foreach_mul_(self.m, a.beta1)
            torch._foreach_add_(self.m, torch._foreach_mul(grads, 1.0 - a.beta1))
            torch._foreach_mul_(self.v, a.beta2)
            torch._foreach_add_(self.v, torch._foreach_mul(torch._foreach_mul(grads, grads), 1.0 - a.beta2))
            m_hat = torch._foreach_div(self.m, bias1)
            v_hat = torch._foreach_div(self.v, bias2)
            denom = torch._foreach_add(torch._foreach_pow(v_hat, 0.5), a.eps)
            torch._foreach_sub_(params, torch._foreach_div(torch._foreach_mul(m_hat, lr_t), denom))
        self.step += 1
        return loss.detach().item()

    def params_numpy(self) -> dict[str, np.ndarray]:
        return {k: t.detach().numpy().copy() for k, t in self.p.items()}


def train_torch(run: Run, steps: int) -> tuple[list[float], float]:
    """``steps`` steps from the run's start; returns (losses, seconds incl. batch encoding)."""
    trainer = TorchTrainer(run)
    losses = []
    t0 = time.perf_counter()
    for s in range(steps):
        losses.append(trainer.train_step(encode(run, step_docs(run, s))))
    return losses, time.perf_counter() - t0


# --------------------------------------------------------------------------- the other side of the comparison


def gptir_losses(run: Run, steps: int, backend: str = "interp") -> tuple[list[float], str]:
    """The first ``steps`` losses of gptir's own trainer on the same run."""
    cache = gtrain.ProgramCache(run.state.model, run.state.adam, run.state.num_steps, backend=backend)
    return [loss for _, loss in gtrain.train(run.state, run.docs, cache, until=steps)], f"gptir ({backend})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="documents, one a line (default: ../shared/data/names.txt "
                    "if present, else gptir's built-in corpus)")
    ap.add_argument("--steps", type=int, default=1000, help="steps to time (and the lr-decay length)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n-embd", type=int, default=16)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-layer", type=int, default=1)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--compare", type=int, default=5, help="losses to compare with gptir (0: none)")
    ap.add_argument("--backend", default="compiled", choices=("interp", "compiled"),
                    help="gptir backend for the comparison")
    args = ap.parse_args(argv)
    if torch is None:
        print("torch not installed: skipping")
        return 0
    torch.set_num_threads(1)
    path = args.data if args.data is not None else default_data_path()
    try:
        docs = gdata.load_docs(path)
        run = start_run(docs, seed=args.seed, num_steps=args.steps, n_embd=args.n_embd, n_head=args.n_head,
                        n_layer=args.n_layer, block_size=args.block_size, batch=args.batch)
    except Exception as e:  # noqa: BLE001 - a benchmark script: one line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"data: {path or 'built-in corpus'} ({len(docs)} docs) | {run.cfg} | batch {run.batch} | "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    if args.compare > 0:
        k = min(args.compare, args.steps)
        theirs, who = gptir_losses(run, k, args.backend)
        ours, _ = train_torch(run, k)
        print(f"first {k} losses: torch eager vs {who}")
        for i, a in enumerate(ours):
            b = theirs[i] if i < len(theirs) else float("nan")
            print(f"  step {i + 1:3d}  torch {a:.17g}  other {b:.17g}  |diff| {abs(a - b):.2e}")
        if theirs:
            print(f"max |diff| {max(abs(a - b) for a, b in zip(ours, theirs)):.3e}")
    losses, secs = train_torch(run, args.steps)
    print(f"torch eager: {args.steps} steps in {secs:.3f} s ({args.steps / secs:.1f} steps/s, "
          f"{1e3 * secs / args.steps:.3f} ms/step); loss {losses[0]:.4f} -> mean of last 50 "
          f"{float(np.mean(losses[-50:])):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
