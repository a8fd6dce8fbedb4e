"""Packed batches (``--pack``): a step's documents as rows, with only attention on the [B, T] layout.

The packed loss is the padded batch's loss to rounding, its gradients are the padded program's, and a
packed run gives the padded run's losses on every backend; the row counts come in a few sizes.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gptir
from gptir import native
from gptir import train as T
from gptir.autodiff import grad, gradient_outputs_of
from gptir.interp import run
from gptir.model import loss_graph, packed_loss_graph, param_shapes

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail",
        "emily", "elizabeth", "mila", "ella", "avery", "sofia", "camila", "aria", "scarlett", "victoria"]
SMALL = dict(seed=1, num_steps=30, n_embd=8, n_head=2, block_size=8)
HAS_JAX = importlib.util.find_spec("jax") is not None
NO_CC = native.available()  # None: the native backend can build here
BACKENDS = ["compiled", "interp"] + (["jax"] if HAS_JAX else []) + (["native"] if NO_CC is None else [])


def test_pack_batch_layout() -> None:
    st, docs = T.start(DOCS, batch=3, **SMALL)
    batch_docs = ["ava", "isabella", "mia"]  # 4, 8 (cut from 9) and 4 positions
    data = T.pack_batch(st, batch_docs)
    assert T.program_key(data) == (24, 3)  # 16 positions: 64 rows, but never more than batch * block_size
    assert data["mask"].tolist() == [True] * 16 + [False] * 8
    assert data["pos"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3] + [0] * 8
    assert data["rows"].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19] + [0] * 8
    assert data["slots"][1].tolist() == list(range(4, 12)) and data["slots"][0].tolist() == [0, 1, 2, 3, 0, 0, 0, 0]
    padded = T.encode_batch(st, batch_docs)
    real = data["mask"]
    assert data["tokens"][real].tolist() == padded["tokens"].reshape(-1)[data["rows"][real]].tolist()
    assert data["targets"][real].tolist() == padded["targets"].reshape(-1)[data["rows"][real]].tolist()
    assert data["tokens"][data["slots"][1]].tolist() == padded["tokens"][1].tolist()  # "isabella", cut to 8


def test_packed_rows_come_in_multiples_of_the_quantum() -> None:
    assert T.packed_rows(1, 64, 16) == T.PACK_QUANTUM == 64
    assert [T.packed_rows(n, 64, 16) for n in (63, 64, 65, 128, 129)] == [64, 64, 128, 128, 192]  # no filler at 64
    assert T.packed_rows(460, 64, 16) == 512
    assert T.packed_rows(1000, 64, 16) == 1024 == T.packed_rows(1024, 64, 16)
    assert T.packed_rows(20, 2, 16) == 32  # never more rows than the padded batch
    assert T.packed_rows(65, 5, 13) == 65  # capped at 5 * 13, not a multiple of 64


def test_packed_loss_and_gradients_are_the_padded_batchs() -> None:
    st, docs = T.start(DOCS, batch=5, **SMALL)
    batch_docs = docs[:5]
    padded = T.encode_batch(st, batch_docs)
    packed = T.pack_batch(st, batch_docs)
    names = list(param_shapes(st.model))
    gp = grad(loss_graph(st.model, padded["tokens"].shape[1], 5), wrt=names, of="loss")
    gk = grad(packed_loss_graph(st.model, len(packed["tokens"]), 5), wrt=names, of="loss")
    gptir.verify(gk)
    want, got = run(gp, padded, st.params), run(gk, packed, st.params)
    assert float(got["loss"]) == pytest.approx(float(want["loss"]), rel=1e-13)
    assert float(got["loss"]) > 1.0  # a real loss (27 classes), not a masked-out zero
    wp, wk = gradient_outputs_of(gp, names), gradient_outputs_of(gk, names)
    for name in names:
        a, b = got[wk[name]], want[wp[name]]
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14, err_msg=name)


def test_filler_rows_change_nothing() -> None:
    """Rows past the documents (masked) and document slots past a document's end leave the loss and its
    gradients as they are, whatever they hold or point at."""
    st, docs = T.start(DOCS, batch=2, **SMALL)
    data = T.pack_batch(st, ["ava", "mia"])  # 8 positions in 16 rows
    assert data["mask"].sum() == 8 and len(data["mask"]) == 16
    names = list(param_shapes(st.model))
    g = grad(packed_loss_graph(st.model, 16, 2), wrt=names, of="loss")
    base = run(g, data, st.params)
    noisy = {k: v.copy() for k, v in data.items()}
    noisy["tokens"][8:] = np.arange(8) % st.model.vocab_size
    noisy["targets"][8:] = np.arange(8, 0, -1)
    noisy["pos"][8:] = 7
    noisy["rows"][8:] = np.arange(8) + 3  # filler rows read any document slot
    noisy["slots"][:, 4:] = np.arange(8, 12)  # slots past each document's 4 positions point at filler rows
    got = run(g, noisy, st.params)
    assert float(got["loss"]) == float(base["loss"]) > 1.0
    wanted = gradient_outputs_of(g, names)
    for name in names:
        np.testing.assert_allclose(got[wanted[name]], base[wanted[name]], rtol=1e-13, atol=1e-17, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_run_gives_the_padded_runs_losses(backend: str, tmp_path: Path) -> None:
    """(The native backend runs packed steps on its resident state; its build cache is a fresh folder.)"""
    st, docs = T.start(DOCS, batch=4, **SMALL)
    padded = T.ProgramCache(st.model, st.adam, st.num_steps, "compiled", pad=True)
    packed = T.ProgramCache(st.model, st.adam, st.num_steps, backend, pack=True, cache_dir=str(tmp_path / "cache"))
    want = [loss for _, loss in T.train(st, docs, padded, until=6)]
    got = [loss for _, loss in T.train(st, docs, packed, until=6)]
    assert len(got) == 6 and got[0] > 2.0
    assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-12
    assert set(packed.programs) == set(T.step_keys(st, docs, 6, pack=True))
    assert all(batch == 4 for _, batch in packed.programs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_run_switching_row_counts(backend: str, tmp_path: Path) -> None:
    """A run whose batches pack into different row counts (here 64 and 128 rows of batch 10) uses one program
    per count, in turn (on the native backend: several programs bound to its resident state)."""
    st, docs = T.start(DOCS * 5, seed=1, num_steps=30, n_embd=8, n_head=2, block_size=16, batch=10)
    padded = T.ProgramCache(st.model, st.adam, st.num_steps, "compiled", pad=True)
    packed = T.ProgramCache(st.model, st.adam, st.num_steps, backend, pack=True, cache_dir=str(tmp_path / "cache"))
    keys = T.step_keys(st, docs, 10, pack=True)
    assert sorted(keys) == [(64, 10), (128, 10)]
    want = [loss for _, loss in T.train(st, docs, padded, until=10)]
    got = [loss for _, loss in T.train(st, docs, packed, until=10)]
    assert len(got) == 10 and max(abs(a - b) for a, b in zip(got, want)) <= 1e-12
    assert sorted(packed.programs) == sorted(keys)


def test_packed_one_document_batch_is_the_reference_loss() -> None:
    st, docs = T.start(DOCS, **SMALL)
    one = T.encode_batch(st, [docs[0]])
    want = float(run(loss_graph(st.model, len(one["tokens"])), one, st.params)["loss"])
    data = T.pack_batch(st, [docs[0]])
    got = float(run(packed_loss_graph(st.model, len(data["tokens"]), 1), data, st.params)["loss"])
    assert got == pytest.approx(want, rel=1e-13)
    cache = T.ProgramCache(st.model, st.adam, st.num_steps, "compiled", pack=True)
    straight = [loss for _, loss in T.train(st, docs, T.ProgramCache(st.model, st.adam, st.num_steps), until=3)]
    packed = [loss for _, loss in T.train(st, docs, cache, until=3)]
    assert max(abs(a - b) for a, b in zip(straight, packed)) <= 1e-12


def test_pack_with_devices_is_refused() -> None:
    st, _ = T.start(DOCS, batch=4, **SMALL)
    with pytest.raises(gptir.GptirError, match="--pack cannot be combined with --devices"):
        T.ProgramCache(st.model, st.adam, st.num_steps, "jax", pack=True, devices=2)


def test_cli_train_pack(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n")
    base = [sys.executable, "-m", "gptir.cli", "train", "--data", str(data), "--steps", "6", "--batch", "4",
            "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--samples", "2", "--quiet"]
    runs = {}
    for name, extra in (("padded", []), ("packed", ["--pack"])):
        log = tmp_path / f"{name}.jsonl"
        r = subprocess.run(base + extra + ["--log", str(log)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        runs[name] = [line for line in log.read_text().splitlines() if '"step"' in line]
    assert len(runs["packed"]) == 6
    a = [json.loads(x)["loss"] for x in runs["padded"]]
    b = [json.loads(x)["loss"] for x in runs["packed"]]
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-12
    bad = subprocess.run(base + ["--pack", "--backend", "jax", "--devices", "2"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr  # a usage error, as other clashing options
    assert bad.stderr.splitlines()[-1].startswith("gptir train: error: --pack cannot be combined with --devices")


def test_cli_trace_microgpt_pack(tmp_path: Path) -> None:
    """``gptir trace microgpt --batch 4 --pack`` writes the packed loss graph; ``gptir exec`` on it gives the
    padded batch's loss to rounding."""
    losses = {}
    for name, extra in (("padded", []), ("packed", ["--pack"])):
        out = tmp_path / f"{name}.ir"
        r = subprocess.run([sys.executable, "-m", "gptir.cli", "trace", "microgpt", "--batch", "4", *extra, "-o", str(out)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert ("slots" in out.read_text()) == (name == "packed")
        r = subprocess.run([sys.executable, "-m", "gptir.cli", "exec", str(out)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        losses[name] = float(r.stdout.split("=")[1])
    assert losses["packed"] == pytest.approx(losses["padded"], rel=1e-13) and losses["packed"] > 3.0
