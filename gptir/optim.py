"""Adam with bias correction and linear learning-rate decay, expressed in IR.

The update is traced like model code, so the whole training step (loss, gradients, update) is one IR
program: state in (parameters, moments, step, tokens), state out (new parameters, moments, loss).
The arithmetic follows the reference line for line: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
``p -= lr_t * mhat / (vhat ** 0.5 + eps)`` with ``lr_t = lr * (1 - step/num_steps)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from gptir.ir import GptirError

if TYPE_CHECKING:  # the tracer is imported where the update is traced: a warm native run traces nothing
    from gptir.tracing import Tracer


@dataclass(frozen=True)
class AdamConfig:
    lr: float = 0.01
    beta1: float = 0.85
    beta2: float = 0.99
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise GptirError(f"Adam betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        if not all(math.isfinite(x) for x in (self.lr, self.beta1, self.beta2, self.eps)):
            raise GptirError(f"Adam settings must be finite numbers, got lr={self.lr}, eps={self.eps}")
        if self.lr < 0 or self.eps <= 0:
            raise GptirError(f"Adam needs lr >= 0 and eps > 0, got lr={self.lr}, eps={self.eps}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AdamScalars:
    """The per-step scalars shared by every parameter's update."""

    lr_t: Tracer
    bias1: Tracer
    bias2: Tracer


def adam_scalars(cfg: AdamConfig, step: Tracer, num_steps: int) -> AdamScalars:
    """``lr_t`` and the bias corrections for 0-based ``step`` (an f64 scalar input)."""
    from gptir.tracing import scope

    with scope("adam"):
        lr_t = cfg.lr * (1.0 - step / float(num_steps))
        t = step + 1.0
        bias1 = 1.0 - cfg.beta1 ** t
        bias2 = 1.0 - cfg.beta2 ** t
    return AdamScalars(lr_t, bias1, bias2)


def adam_update(cfg: AdamConfig, s: AdamScalars, p: Tracer, g: Tracer, m: Tracer, v: Tracer,
                name: str) -> tuple[Tracer, Tracer, Tracer]:
    """One parameter's Adam step: returns (new p, new m, new v)."""
    from gptir.tracing import scope

    with scope("adam"), scope(name.replace(".", "_")):
        m = cfg.beta1 * m + (1.0 - cfg.beta1) * g
        v = cfg.beta2 * v + (1.0 - cfg.beta2) * (g * g)
        m_hat = m / s.bias1
        v_hat = v / s.bias2
        p = p - s.lr_t * m_hat / (v_hat ** 0.5 + cfg.eps)
    return p, m, v
