"""A small 2-layer MLP (3 -> 4 -> 2) with fixed weights, made trainable params.

    gptir trace examples/mlp.py:mlp --arg x=f64[3]
    gptir trace examples/mlp.py:mlp --arg x=f64[3] | gptir exec - --input x=[1,2,3]
"""

import numpy as np

import gptir
from gptir.tracing import Tracer, current_scope

W1 = np.array([[0.5, -0.2, 0.1, 0.0], [0.3, 0.8, -0.5, 0.2], [-0.7, 0.1, 0.4, 0.6]])
B1 = np.array([0.1, 0.0, -0.1, 0.2])
W2 = np.array([[1.0, -1.0], [0.5, 0.25], [-0.3, 0.7], [0.2, 0.2]])
B2 = np.array([0.0, 0.1])


def weight(x: Tracer, name: str, value: np.ndarray) -> Tracer:
    """A trainable param of the graph that ``x`` belongs to, named by the current scope."""
    scope_path = current_scope()
    full = f"{scope_path}.{name}" if scope_path else name
    return x.builder.param(full, gptir.TensorType.of(value), value)


def linear(x: Tracer, w: np.ndarray, b: np.ndarray) -> Tracer:
    return x @ weight(x, "w", w) + weight(x, "b", b)


def mlp(x):
    with gptir.scope("layer0"):
        h = gptir.relu(linear(x, W1, B1))
    with gptir.scope("layer1"):
        return linear(h, W2, B2)
