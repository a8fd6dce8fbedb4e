"""The training step as one IR program: structure, learning, batching and bit-identical resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import gptir
from gptir import checkpoint
from gptir import train as T
from gptir.interp import run
from gptir.model import loss_graph
from gptir.optim import AdamConfig

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
SMALL = dict(seed=1, num_steps=30, n_embd=8, n_head=2, block_size=8)


def test_step_graph_is_one_verified_program():
    st, _ = T.start(DOCS, **SMALL)
    g = T.step_graph(st.model, st.adam, st.num_steps, 5)
    gptir.verify(g)
    names = list(st.params)
    assert list(g.outputs) == ["loss"] + names + ["adam.m", "adam.v"]
    assert {n.name for n in g.data_inputs} == {"tokens", "targets", "step", "adam.m", "adam.v"}
    assert g.nodes["adam.m"].type == gptir.TensorType("f64", (sum(p.size for p in st.params.values()),))
    assert any(n.backward for n in g)


@pytest.mark.parametrize("backend", ["interp", "compiled"])
def test_training_lowers_the_loss(backend):
    st, docs = T.start(DOCS, **SMALL)
    cache = T.ProgramCache(st.model, st.adam, st.num_steps, backend)
    losses = [loss for _, loss in T.train(st, docs, cache)]
    assert len(losses) == 30
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3


def test_compiled_equals_interpreted_bit_for_bit():
    st, docs = T.start(DOCS, **SMALL)
    runs = {}
    for backend in ("interp", "compiled"):
        cache = T.ProgramCache(st.model, st.adam, st.num_steps, backend)
        runs[backend] = list(T.train(st, docs, cache, until=12))
    assert [l for _, l in runs["interp"]] == [l for _, l in runs["compiled"]]
    a, b = runs["interp"][-1][0], runs["compiled"][-1][0]
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path):
    st, docs = T.start(DOCS, **SMALL)
    cache = T.ProgramCache(st.model, st.adam, st.num_steps, "compiled")
    straight = list(T.train(st, docs, cache, until=10))
    mid = None
    for mid, _ in T.train(st, docs, cache, until=4):
        pass
    path = str(tmp_path / "mid.ckpt")
    checkpoint.save(path, mid)
    back = checkpoint.load(path)
    resumed = list(T.train(back, T.resume_docs(back, DOCS), cache, until=10))
    assert [l for _, l in resumed] == [l for _, l in straight[4:]]
    end_a, end_b = straight[-1][0], resumed[-1][0]
    assert end_a.step == end_b.step == 10
    assert all(end_a.params[k].tobytes() == end_b.params[k].tobytes() for k in end_a.params)
    assert end_a.m.tobytes() == end_b.m.tobytes() and end_a.v.tobytes() == end_b.v.tobytes()


def test_resume_with_other_data_is_refused():
    st, _ = T.start(DOCS, **SMALL)
    with pytest.raises(gptir.GptirError, match="differs from the data"):
        T.resume_docs(st, DOCS[:-1])


def test_batched_loss_is_the_mean_over_real_positions():
    st, docs = T.start(DOCS, **SMALL)
    batch_docs = docs[:3]
    bst = replace(st, batch=3)
    data = T.encode_batch(bst, batch_docs)
    n = data["tokens"].shape[1]
    batched = float(run(loss_graph(st.model, n, 3), data, st.params)["loss"])
    total, count = 0.0, 0
    for d in batch_docs:
        one = T.encode_batch(st, [d])
        k = len(one["tokens"])
        total += float(run(loss_graph(st.model, k), one, st.params)["loss"]) * k
        count += k
    assert batched == pytest.approx(total / count, rel=1e-13)
    assert data["mask"].sum() == count


def test_batch_training_runs_and_learns():
    st, docs = T.start(DOCS, batch=4, **SMALL)
    cache = T.ProgramCache(st.model, st.adam, st.num_steps, "compiled")
    losses = [loss for _, loss in T.train(st, docs, cache)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_one_document_steps_cycle_through_the_data():
    st, docs = T.start(DOCS, **SMALL)
    assert [T.step_docs(replace(st, step=s), docs) for s in (0, 1, 10, 11)] == [
        [docs[0]], [docs[1]], [docs[0]], [docs[1]]]


def test_truncated_docs_counts_what_encoding_gives() -> None:
    """truncated_docs counts from lengths when every character is in the vocabulary; that is the
    count of encoded documents longer than the context, and an unknown character still fails."""
    from gptir.data import DataError

    docs = ["a" * k for k in range(1, 40)] + ["abc" * 7, "zyx"]
    st, shuffled = T.start(docs, block_size=8)
    want = sum(1 for d in shuffled if len(st.tokenizer.encode(d)) - 1 > 8)
    assert T.truncated_docs(st, shuffled) == want == sum(1 for d in docs if len(d) >= 8)
    with pytest.raises(DataError, match="'q' is not in the tokenizer vocabulary"):
        T.truncated_docs(st, shuffled + ["q"])
