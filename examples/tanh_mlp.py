"""A tanh MLP written as plain numpy: numpy functions, operators and methods only, no gptir calls.

The same function runs on arrays (``tanh_mlp(np.ones((2, 3)), W1, W2)`` is a float) and traces into
IR, since tracers take part in numpy's dispatch (``np.tanh(t)``, ``t @ w``, ``np.mean``):

    gptir trace examples/tanh_mlp.py:tanh_mlp --arg x=f64[2,3] \
        --param "w1=[[0.5,-0.2],[0.3,0.8],[-0.7,0.1]]" --param "w2=[1.0,-1.0]"
    ... | gptir grad - --wrt w1,w2 | gptir exec - --input "x=[[1,2,3],[0,-1,1]]"
"""

import numpy as np


def tanh_mlp(x, w1, w2):
    h = np.tanh(x @ w1)             # hidden layer: [batch, 2]
    y = h @ w2                      # one output per row: [batch]
    return np.mean((y - 1.0) ** 2)  # mean squared error against a target of 1
