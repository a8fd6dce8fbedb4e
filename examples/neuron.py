"""The seed example: one neuron, relu(w1 * x + w2).

    gptir trace examples/neuron.py:neuron --arg x=f64[] --param w1=0.5 --param w2=-0.3
    gptir trace examples/neuron.py:neuron --arg x=f64[]          # w1, w2 stay constants
"""

import gptir


def neuron(x, w1=0.5, w2=-0.3):
    with gptir.scope("neuron"):
        return gptir.relu(w1 * x + w2)
