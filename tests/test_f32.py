"""f32 is a dtype everywhere: types and the text format, every op's type rule and evaluation (the
interpreter and the compiled backend agree bit for bit, as for f64), casts, gradients (checked against
central differences in f64 of the same function), checkpoints and ``gptir train --dtype f32``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptir import checkpoint
from gptir import train as T
from gptir.autodiff import grad
from gptir.codegen import compile_graph
from gptir.interp import ExecError, run
from gptir.ir import ShapeError, TensorType
from gptir.ops import OPS
from gptir.text import ParseError, parse, print_graph
from gptir.tracing import Builder

from test_ops_eval import CASES


def as_f32(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == np.float64 else a


def f32_cases() -> list[tuple[str, int]]:
    return [(op, i) for op, cases in CASES.items() for i, (args, _, _) in enumerate(cases)
            if any(np.asarray(a).dtype == np.float64 for a in args)]


def test_every_float_op_has_an_f32_case() -> None:
    ops = {op for op, _ in f32_cases()}
    floaty = {name for name, d in OPS.items() if d.kind != "source" and name in CASES}
    assert floaty - ops == set(), f"ops never evaluated on f32: {sorted(floaty - ops)}"


@pytest.mark.parametrize("op,case", f32_cases())
def test_op_on_f32(op: str, case: int) -> None:
    args, attrs, _ = CASES[op][case]
    args = [as_f32(a) for a in args]
    b = Builder(op)
    ins = [b.input(f"a{i}", TensorType.of(a)) for i, a in enumerate(args)]
    g = b.finish({"out": b.emit(op, ins, attrs)})
    assert parse(print_graph(g)).same_as(g)
    inputs = {f"a{i}": a for i, a in enumerate(args)}
    got = run(g, inputs)["out"]
    want = OPS[op].evaluate(args, attrs)  # the numpy evaluation on f32 arrays
    assert got.dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        assert got.dtype == np.float32
    comp = compile_graph(g)(inputs)["out"]
    assert comp.dtype == got.dtype and comp.tobytes() == got.tobytes()


def test_f32_literals_round_trip_bit_for_bit() -> None:
    vals = np.array([0.1, -0.0, np.inf, -np.inf, np.nan, 3.4028234663852886e38, 1e-45], np.float32)
    b = Builder("c")
    g = b.finish({"c": b.const(vals, "f32")})
    text = print_graph(g)
    assert "f32[7]" in text
    back = parse(text)
    assert back.same_as(g)
    assert run(back)["c"].tobytes() == vals.tobytes()
    with pytest.raises(ParseError, match="too large for f32"):
        parse("graph g {\n  %c = const 1e39 : f32[]\n  output c = %c\n}\n")


def test_types_and_casts() -> None:
    assert TensorType.parse("f32[2,3]") == TensorType("f32", (2, 3))
    b = Builder("m")
    x = b.input("x", TensorType("f32", (2,)))
    y = b.input("y", TensorType("f64", (2,)))
    with pytest.raises(ShapeError, match="dtypes f32 and f64"):
        _ = x + y
    g = b.finish({"z": b.emit("cast", [x], {"dtype": "f64"}) + y, "h": b.emit("cast", [y], {"dtype": "f32"})})
    out = run(g, {"x": [0.1, 2.0], "y": [1.0, 2.0]})
    assert out["z"].dtype == np.float64 and out["z"][0] == float(np.float32(0.1)) + 1.0
    assert out["h"].dtype == np.float32
    with pytest.raises(ExecError, match="2\\*\\*24"):
        run(g, {"x": [2 ** 25 + 1, 0], "y": [1.0, 2.0]})


def test_f32_gradient_against_central_differences() -> None:
    b = Builder("f")
    x = b.input("x", TensorType("f32", (3,)))
    w = b.param("w", TensorType("f32", (3,)), np.array([0.5, -1.0, 2.0], np.float32))
    y = ((x * w).sum() ** 2.0) + b.emit("exp", [x], {}).sum()
    g = grad(b.finish({"y": y}), ["x", "w"], of="y")
    assert all(n.type.dtype in ("f32", "bool", "i64") for n in g)
    x0 = np.array([0.3, -0.2, 0.1], np.float32)
    out = run(g, {"x": x0})
    assert out["grad.x"].dtype == np.float32
    w0 = np.array([0.5, -1.0, 2.0])

    def f(xv: np.ndarray) -> float:
        return float((xv @ w0) ** 2 + np.exp(xv).sum())

    h = 1e-6
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        fd = (f(x0.astype(float) + e) - f(x0.astype(float) - e)) / (2 * h)
        assert abs(out["grad.x"][i] - fd) <= 1e-5 * max(1.0, abs(fd))


DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]


def test_f32_training_on_every_backend_and_checkpoint(tmp_path) -> None:
    state, shuffled = T.start(DOCS, n_embd=8, n_head=2, block_size=8, num_steps=10, dtype="f32")
    assert state.params["wte"].dtype == np.float32 and state.m.dtype == np.float32
    runs = {}
    for backend in ("interp", "compiled"):
        cache = T.ProgramCache(state.model, state.adam, state.num_steps, backend)
        runs[backend] = [(s, loss) for s, loss in T.train(state, shuffled, cache)]
    assert [l for _, l in runs["interp"]] == [l for _, l in runs["compiled"]]  # bit-identical, as in f64
    last = runs["compiled"][-1][0]
    assert last.params["wte"].dtype == np.float32
    f64, _ = T.start(DOCS, n_embd=8, n_head=2, block_size=8, num_steps=10)
    ref = [l for _, l in T.train(f64, shuffled, T.ProgramCache(f64.model, f64.adam, 10, "compiled"))]
    worst = max(abs(a - b) for a, b in zip(ref, [l for _, l in runs["compiled"]]))
    assert 0 < worst < 1e-4  # single precision: close, not equal
    path = str(tmp_path / "f32.ckpt")
    checkpoint.save(path, last)
    back = checkpoint.load(path)
    assert back.model.dtype == "f32" and back.params["wte"].dtype == np.float32
    assert back.params["wte"].tobytes() == np.asarray(last.params["wte"]).tobytes()


def test_cli_train_dtype_f32(tmp_path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n")
    log, ckpt = tmp_path / "log.jsonl", tmp_path / "f32.ckpt"
    small = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--quiet"]
    r = subprocess.run([sys.executable, "-m", "gptir.cli", "train", "--data", str(data), "--steps", "4", "--dtype",
                        "f32", "--samples", "2", "--log", str(log), "--out", str(ckpt), *small],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert recs[0]["run"]["model"]["dtype"] == "f32"
    r = subprocess.run([sys.executable, "-m", "gptir.cli", "train", "--resume", str(ckpt), "--dtype", "f64"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--dtype" in r.stderr  # options that cannot go together: a usage error
    assert Path(ckpt).exists()
