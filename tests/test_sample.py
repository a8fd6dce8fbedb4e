"""Sampling: the reference's softmax arithmetic, and a stream that continues exactly."""

from __future__ import annotations

import math
import random

import pytest

from gptir import rng as R
from gptir.ir import GptirError
from gptir.sample import LogitsCache, next_token_probs, sample
from gptir.train import start

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]


@pytest.fixture(scope="module")
def state():
    st, _ = start(DOCS, seed=3, num_steps=10, n_embd=8, n_head=2, block_size=6)
    return st


def test_probs_follow_the_reference_arithmetic():
    logits = [0.3, -1.25, 2.0, 0.0]
    # microgpt's Value arithmetic: l / T is l * T**-1, e / total is e * total**-1, sum from 0
    scaled = [l * 0.5 ** -1 for l in logits]
    exps = [math.exp(s - max(scaled)) for s in scaled]
    total = sum(exps)
    assert next_token_probs(logits, 0.5, "microgpt") == [e * total ** -1 for e in exps]
    assert math.isclose(sum(next_token_probs(logits, 0.7, "microgptex")), 1.0, rel_tol=1e-15)


def test_bad_temperature():
    with pytest.raises(GptirError, match="temperature"):
        next_token_probs([0.0, 1.0], 0.0, "microgpt")


@pytest.mark.parametrize("recipe", ["microgpt", "microgptex"])
def test_sampling_continues_the_stream(state, recipe):
    rng = R.python_random(5) if recipe == "microgpt" else R.exsss(5)
    cache = LogitsCache(state.model, "interp")
    all5, end5 = sample(state.model, state.params, state.tokenizer, rng, num=5, recipe=recipe, cache=cache)
    first2, mid = sample(state.model, state.params, state.tokenizer, rng, num=2, recipe=recipe, cache=cache)
    last3, end = sample(state.model, state.params, state.tokenizer, mid, num=3, recipe=recipe, cache=cache)
    assert first2 + last3 == all5 and end == end5
    assert all(set(name) <= set(state.tokenizer.chars) and len(name) <= state.model.block_size for name in all5)


def test_python_stream_uses_choices(state):
    """The draw is random.choices over the token ids, as in the reference."""
    rng = R.python_random(11)
    names, _ = sample(state.model, state.params, state.tokenizer, rng, num=1, recipe="microgpt")
    # replay by hand with random.Random and the same probabilities
    from gptir.interp import run
    from gptir.model import logits_graph
    import numpy as np
    r = random.Random(11)
    ids = [state.tokenizer.bos]
    out = []
    for _ in range(state.model.block_size):
        logits = run(logits_graph(state.model, len(ids)), {"tokens": np.array(ids)}, state.params)["logits"]
        probs = next_token_probs(logits.tolist(), 0.5, "microgpt")
        tok = r.choices(range(state.model.vocab_size), weights=probs)[0]
        if tok == state.tokenizer.bos:
            break
        out.append(tok)
        ids.append(tok)
    assert names == [state.tokenizer.decode(out)]


def test_diverged_parameters_are_a_clear_error(state):
    params = {k: v * float("nan") for k, v in state.params.items()}
    with pytest.raises(GptirError, match="not finite"):
        sample(state.model, params, state.tokenizer, R.python_random(1), num=1)
