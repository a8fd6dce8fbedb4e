"""Checkpoints: exact round trip, atomic writes, and one clear error for every kind of bad file."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from gptir import checkpoint, rng as R
from gptir.checkpoint import CheckpointError
from gptir.train import start

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]


@pytest.fixture(scope="module")
def state():
    st, _ = start(DOCS, seed=7, num_steps=10, n_embd=8, n_head=2, block_size=8)
    return st


def test_round_trip_is_exact(state, tmp_path):
    path = str(tmp_path / "run.ckpt")
    checkpoint.save(path, state)
    back = checkpoint.load(path)
    assert back.model == state.model and back.adam == state.adam
    assert (back.step, back.num_steps, back.recipe, back.seed, back.batch) == (0, 10, "microgpt", 7, 1)
    assert back.tokenizer == state.tokenizer and back.docs_fingerprint == state.docs_fingerprint
    assert list(state.params) == list(back.params)
    assert all(state.params[k].tobytes() == back.params[k].tobytes() for k in state.params)
    assert back.m.tobytes() == state.m.tobytes() and back.v.tobytes() == state.v.tobytes()
    # the random stream continues identically
    assert R.uniform(back.rng)[0] == R.uniform(state.rng)[0]


def test_exsss_state_round_trips(tmp_path):
    st, _ = start(DOCS, recipe="microgptex", seed=42, num_steps=5, n_embd=8, n_head=2, block_size=8)
    path = str(tmp_path / "x.ckpt")
    checkpoint.save(path, st)
    back = checkpoint.load(path)
    assert back.recipe == "microgptex" and back.rng == st.rng


def test_save_is_atomic(state, tmp_path, monkeypatch):
    path = str(tmp_path / "run.ckpt")
    checkpoint.save(path, state)
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, state)
    assert open(path, "rb").read() == before
    assert [f for f in os.listdir(tmp_path) if f != "run.ckpt"] == []  # no temporary left behind


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[: len(b) // 2], "not a usable gptir checkpoint"),
    (lambda b: b[:10], "not a usable gptir checkpoint"),
    (lambda b: b"", "not a usable gptir checkpoint"),
    (lambda b: b"hello, this is a text file\n", "not a usable gptir checkpoint"),
    (lambda b: bytes(x ^ 0xFF if 200 <= i < 400 else x for i, x in enumerate(b)), "not a usable gptir checkpoint"),
])
def test_bad_bytes_give_one_clear_error(state, tmp_path, mutate, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(mutate(checkpoint.to_bytes(state)))
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.load(str(path))
    assert "\n" not in str(e.value)


def test_foreign_npz_is_rejected(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, weights=np.zeros(3))
    path = tmp_path / "foreign.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="no gptir metadata"):
        checkpoint.load(str(path))


def test_shape_mismatch_is_rejected(state, tmp_path):
    params = dict(state.params)
    params["wte"] = np.zeros((3, 3))
    from dataclasses import replace
    path = tmp_path / "shape.ckpt"
    path.write_bytes(checkpoint.to_bytes(replace(state, params=params)))
    with pytest.raises(CheckpointError, match=r"params/wte is float64\[3, 3\]"):
        checkpoint.load(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(str(tmp_path / "nope.ckpt"))
