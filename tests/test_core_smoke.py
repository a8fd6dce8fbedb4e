"""Smoke tests of the core: trace, verify, run (the full suites live beside this file)."""

import numpy as np

import gptir
from gptir import Param, trace


def neuron(x, w1, w2):
    return gptir.relu(w1 * x + w2)


def test_neuron_traces_and_runs():
    g = trace(neuron, 2.0, Param(0.5), Param(-0.3))
    gptir.verify(g)
    assert [n.op for n in g] == ["input", "param", "param", "mul", "add", "relu"]
    out = gptir.run(g, {"x": 2.0})["out"]
    assert out == np.float64(0.5 * 2.0 - 0.3)


def test_names_are_stable_across_traces():
    def f(x):
        with gptir.scope("layer0"):
            return (x * x + x * x).sum()

    a = trace(f, "f64[3]")
    b = trace(f, "f64[3]")
    assert list(a.nodes) == list(b.nodes) == ["x", "layer0.mul", "layer0.mul.1", "layer0.add", "layer0.sum"]
