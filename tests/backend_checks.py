"""What the backends that agree with the interpreter to rounding (jax, native) are checked against, shared by
their tests: the tolerance, the training-step case and the command-line train/sample round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gptir import train as T
from gptir.interp import run

TOL = 1e-12
ROOT = Path(__file__).resolve().parents[1]
DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--quiet"]


def close(got: np.ndarray, want: np.ndarray, tol: float = TOL) -> bool:
    """Same dtype and shape, and every element within ``tol`` (relative to the larger of 1 and |want|)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if want.dtype.kind != "f":
        return bool(np.array_equal(got, want))
    inf = np.isinf(want)
    same_special = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(got[inf], want[inf])
    fin = np.isfinite(want)
    return same_special and bool(np.all(np.abs(got[fin] - want[fin]) <= tol * np.maximum(1.0, np.abs(want[fin]))))


def check_training_step(state: T.TrainState, batch: int, backend: str) -> None:
    """One training step of 7 positions (``batch`` documents, 0: unbatched) on random tokens and moments:
    ``backend`` gives the interpreter's outputs, in order, within TOL."""
    g = T.step_graph(state.model, state.adam, state.num_steps, 7, batch)
    rng = np.random.default_rng(0)
    shape = (batch, 7) if batch else (7,)
    inputs = T.step_inputs(state, {"tokens": rng.integers(0, state.model.vocab_size, shape),
                                   "targets": rng.integers(0, state.model.vocab_size, shape)})
    if batch:
        inputs["mask"] = np.arange(7)[None, :] < np.array([[7], [3], [5]])
    inputs["adam.m"] = rng.normal(size=state.m.shape) * 1e-3
    inputs["adam.v"] = np.abs(rng.normal(size=state.v.shape)) * 1e-3
    inputs["step"] = np.float64(4)
    want = run(g, inputs)
    got = T.compile_program(g, backend)(inputs)
    assert list(got) == list(want)
    for k in want:
        assert close(got[k], want[k]), k


def gptir(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptir.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def losses_of(log: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, log.read_text().splitlines()) if "step" in r]


def check_cli_exec_train_sample(backend: str, data: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    """``exec`` of examples/mlp.py, then ``train`` (8 steps, 3 names) on ``backend`` and on compiled:
    losses within TOL and the same names; ``sample`` from the checkpoint prints them again. Returns the
    (losses, stdout) of each backend's run."""
    ir = tmp_path / "mlp.ir"
    r = gptir("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]", "-o", str(ir), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = gptir("exec", str(ir), "--input", "x=[1,2,3]", "--backend", backend, *extra)
    assert (r.returncode, r.stdout) == (0, "out = [1.27, 1.1450000000000002]\n"), r.stderr
    logs = {}
    for b in (backend, "compiled"):
        log, ckpt = tmp_path / f"{b}.jsonl", tmp_path / f"{b}.ckpt"
        r = gptir("train", "--data", str(data), "--steps", "8", "--samples", "3", "--backend", b,
                  "--log", str(log), "--out", str(ckpt), *SMALL, *(extra if b == backend else ()))
        assert r.returncode == 0, r.stderr
        logs[b] = (losses_of(log), r.stdout)
    assert max(abs(a - b) for a, b in zip(logs[backend][0], logs["compiled"][0])) <= TOL
    assert logs[backend][1] == logs["compiled"][1]  # the same sampled names
    r = gptir("sample", "--checkpoint", str(tmp_path / f"{backend}.ckpt"), "--num", "3", "--backend", backend, *extra)
    assert (r.returncode, r.stdout) == (0, logs[backend][1]), r.stderr
    return logs
