"""Sampling names from a trained model, continuing the run's random stream.

The logits come from IR programs (one per sequence length, cached like the training step). The last
step, temperature and softmax over 27 numbers and the draw, is plain Python on floats written exactly
as each reference run writes it, so a sampled name depends only on the logits and the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from gptir import rng as R
from gptir.data import Tokenizer
from gptir.ir import GptirError
from gptir.model import GPTConfig, logits_graph
from gptir.train import compile_program

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class LogitsCache:
    """Next-token-logits programs: one per sequence length, or with ``pad`` (default: on the jax
    backend) one for all lengths, fed tokens padded to ``block_size`` and the position to read."""

    model: GPTConfig
    backend: str = "compiled"
    programs: dict[int, Runner] = field(default_factory=dict)
    pad: bool | None = None
    cache_dir: str | None = None  # the native backend's build cache

    def __post_init__(self) -> None:
        if self.pad is None:
            self.pad = self.backend == "jax"

    def get(self, n: int) -> Runner:
        key = 0 if self.pad else n
        prog = self.programs.get(key)
        if prog is None:
            graph = logits_graph(self.model, n, bool(self.pad))
            prog = self.programs[key] = compile_program(graph, self.backend, cache_dir=self.cache_dir)
        return prog

    def logits(self, params: Mapping[str, np.ndarray], ids: Sequence[int], pad_token: int) -> np.ndarray:
        """The next-token logits after ``ids``."""
        inputs = dict(params)
        if self.pad:
            tokens = np.full(self.model.block_size, pad_token, np.int64)
            tokens[:len(ids)] = ids
            inputs["tokens"], inputs["pos"] = tokens, np.array(len(ids) - 1, np.int64)
        else:
            inputs["tokens"] = np.array(ids, dtype=np.int64)
        return np.asarray(self.get(len(ids))(inputs)["logits"])


def check_temperature(temperature: float, recipe: str = "microgpt") -> float:
    """``1 / temperature`` as the recipe computes it, or a GptirError when the temperature is not a positive
    number or so small (below about 5.6e-309) that its inverse overflows."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise GptirError(f"temperature must be a positive number, got {temperature}")
    try:
        scale = temperature ** -1 if recipe == "microgpt" else 1.0 / temperature
    except OverflowError:
        scale = math.inf
    if not math.isfinite(scale):
        raise GptirError(f"temperature {temperature} is too small: 1/temperature overflows f64 "
                         "(use at least 1e-300)")
    return scale


def next_token_probs(logits: Sequence[float], temperature: float, recipe: str) -> list[float]:
    """``softmax(logits / temperature)`` with each reference's float operations, in its order.

    microgpt divides through its Value class (``l * T**-1``), sums from 0 left to right and divides
    as ``e * total**-1``; MicroGPTEx multiplies by ``1/T`` and otherwise does the same arithmetic.
    """
    scale = check_temperature(temperature, recipe)
    scaled = [float(l) * scale for l in logits]
    if not all(math.isfinite(s) for s in scaled) and all(math.isfinite(float(l)) for l in logits):
        raise GptirError(f"temperature {temperature} is too small for this model: its logits divided by it "
                         "overflow f64; use a larger temperature")
    top = max(scaled)
    exps = [math.exp(s + (-top)) for s in scaled]
    total = 0.0
    for e in exps:
        total = total + e
    if not math.isfinite(total):
        raise GptirError("the model's next-token probabilities are not finite numbers (did training diverge? "
                         "try a smaller --lr)")
    inv = total ** -1
    return [e * inv for e in exps]


def sample(model: GPTConfig, params: Mapping[str, np.ndarray], tokenizer: Tokenizer, rng: R.Rng, *,
           num: int = 20, temperature: float = 0.5, recipe: str = "microgpt",
           cache: LogitsCache | None = None) -> tuple[list[str], R.Rng]:
    """Draw ``num`` names; returns them and the stream after the last draw.

    Each name starts from BOS at position 0 and draws one token per position until BOS is drawn or the
    block is full; the name is the characters drawn before BOS.
    """
    if num < 0:
        raise GptirError(f"the number of samples must be >= 0, got {num}")
    cache = cache or LogitsCache(model, "interp")
    names: list[str] = []
    for _ in range(num):
        ids = [tokenizer.bos]
        drawn: list[int] = []
        for _pos in range(model.block_size):
            logits = cache.logits(params, ids, tokenizer.bos)
            probs = next_token_probs(logits.tolist(), temperature, recipe)
            token, rng = R.choice(rng, probs)
            if token == tokenizer.bos:
                break
            drawn.append(token)
            ids.append(token)
        names.append(tokenizer.decode(drawn))
    return names, rng
