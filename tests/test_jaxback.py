"""The JAX backend: every op of the table lowers and matches the interpreter to 1e-12 (f64), the microgpt
training step matches, the reference run reproduces, one padded program serves every length, x64 stays
local, the batch shards over two (host) devices, StableHLO export, and the CLI (with and without JAX).

Tests that need JAX skip, saying so, where it is not installed (``pip install -e ".[test,jax]"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptir import train as T
from gptir.interp import run
from gptir.ir import TensorType
from gptir.ops import OPS, OpDef, _unary
from gptir.tracing import Builder

from backend_checks import SMALL, TOL, check_cli_exec_train_sample, check_training_step, close, gptir, losses_of
from test_ops_eval import CASES  # every op's evaluation cases (that test checks they cover the table)

jax = pytest.importorskip("jax", reason='JAX is not installed (pip install -e ".[test,jax]")')
from gptir import jaxback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ROOT.parent / "shared" / "data" / "names.txt"


def test_a_ufunc_op_lowers_from_its_trait_alone(monkeypatch) -> None:
    """tanh, given only ``ufunc="tanh"``, lowers to jnp.tanh and runs (tests/test_jax_table.py walks
    the table without JAX)."""
    tanh = OpDef("tanh", 1, _unary(("f64",)), None, None, kind="elementwise", ufunc="tanh")
    monkeypatch.setitem(OPS, "tanh", tanh)
    b = Builder("t")
    x = np.array([-2.0, 0.0, 0.5, 3.0])
    g = b.finish({"out": b.emit("tanh", [b.input("x", TensorType.of(x))], {})})
    got = jaxback.compile_graph(g)({"x": x})["out"]
    assert close(got, np.tanh(x))


@pytest.mark.parametrize("op,case", [(op, i) for op, cases in CASES.items() for i in range(len(cases))])
def test_op_matches_the_interpreter(op: str, case: int) -> None:
    args, attrs, _ = CASES[op][case]
    b = Builder(op)
    ins = [b.input(f"a{i}", TensorType.of(np.asarray(a))) for i, a in enumerate(args)]
    g = b.finish({"out": b.emit(op, ins, attrs)})
    inputs = {f"a{i}": a for i, a in enumerate(args)}
    want = run(g, inputs)["out"]
    got = jaxback.compile_graph(g)(inputs)["out"]
    assert isinstance(got, np.ndarray)
    assert close(got, want), (op, got, want)


def _f32(a: object) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == np.float64 else a


@pytest.mark.parametrize("op,case", [(op, i) for op, cases in CASES.items() for i, (args, _, _) in enumerate(cases)
                                     if any(np.asarray(a).dtype == np.float64 for a in args)])
def test_op_matches_the_interpreter_on_f32(op: str, case: int) -> None:
    """Every float op (the surface ops tanh, sigmoid, sqrt, sin, cos, min, argmax, strided slice included)
    lowers on f32 too, keeping the dtype, and agrees with the interpreter to f32 rounding."""
    args, attrs, _ = CASES[op][case]
    args = [_f32(a) for a in args]
    b = Builder(op)
    ins = [b.input(f"a{i}", TensorType.of(a)) for i, a in enumerate(args)]
    g = b.finish({"out": b.emit(op, ins, attrs)})
    inputs = {f"a{i}": a for i, a in enumerate(args)}
    want = run(g, inputs)["out"]
    got = jaxback.compile_graph(g)(inputs)["out"]
    assert close(got, want, 1e-5), (op, got, want)


def test_const_and_edge_values() -> None:
    b = Builder("c")
    x = b.input("x", TensorType("f64", (4,)))
    c = b.const(np.array([1.5, -0.0, np.inf, 2.0]))
    g = b.finish({"sum": b.emit("add", [x, c], {}), "log": b.emit("log", [x], {}), "c": c})
    x = np.array([0.0, -1.0, 1.0, np.inf])
    got, want = jaxback.compile_graph(g)({"x": x}), run(g, {"x": x})
    for k in want:
        assert close(got[k], want[k]), k
    assert got["log"][0] == -np.inf and np.isnan(got["log"][1])


def test_checked_inputs_and_missing_ones() -> None:
    from gptir.interp import ExecError

    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    prog = jaxback.compile_graph(b.finish({"y": x * x}))
    assert prog({"x": [1, 2]})["y"].tolist() == [1.0, 4.0]
    with pytest.raises(ExecError, match="missing input"):
        prog({})
    with pytest.raises(ExecError, match="must be f64"):
        prog({"x": [1, 2, 3]})


def test_gptir_compile_graph_backend_jax() -> None:
    import gptir

    b = Builder("m")
    x = b.input("x", TensorType("f64", (3,)))
    g = b.finish({"y": b.emit("exp", [x], {}).sum()})
    x0 = np.array([0.5, -1.0, 2.0])
    got = gptir.compile_graph(g, backend="jax")({"x": x0})["y"]
    assert close(got, gptir.compile_graph(g)({"x": x0})["y"])
    with pytest.raises(gptir.GptirError, match="unknown backend"):
        gptir.compile_graph(g, backend="tpu")


def test_x64_is_local_to_gptir() -> None:
    before = jax.config.jax_enable_x64
    b = Builder("m")
    x = b.input("x", TensorType("f64", (2,)))
    out = jaxback.compile_graph(b.finish({"y": x + x}))({"x": np.array([0.1, 0.2])})["y"]
    assert out.dtype == np.float64 and out.tolist() == [0.2, 0.4]
    assert jax.config.jax_enable_x64 == before


@pytest.fixture(scope="module")
def tiny():
    docs = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]
    state, shuffled = T.start(docs, n_embd=8, n_head=2, block_size=8, num_steps=20)
    return state, shuffled


@pytest.mark.parametrize("batch", [0, 3])
def test_training_step_matches_the_interpreter(tiny, batch) -> None:
    check_training_step(tiny[0], batch, "jax")


def test_one_padded_program_for_every_length(tiny) -> None:
    """A run on the jax backend compiles once; its losses match the per-length programs and the
    numpy backend's."""
    state, shuffled = tiny
    runs = {}
    for name, backend, pad in [("padded", "jax", None), ("per-length", "jax", False), ("numpy", "compiled", None)]:
        cache = T.ProgramCache(state.model, state.adam, state.num_steps, backend, pad=pad)
        losses = [loss for _, loss in T.train(state, shuffled, cache, until=12)]
        runs[name] = (losses, len(cache.programs))
    assert runs["padded"][1] == 1 and runs["per-length"][1] > 1
    for name in ("per-length", "numpy"):
        assert max(abs(a - b) for a, b in zip(runs["padded"][0], runs[name][0])) <= TOL


def test_pipelined_training_yields_each_step_with_its_own_loss(tiny) -> None:
    """train() starts step k + 1 before reading step k's loss on the jax backend; what it yields is the
    same as one train_step at a time (state k with loss k), and stopping early leaves no step unyielded."""
    state, shuffled = tiny
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, "jax")
    yielded = list(T.train(state, shuffled, cache, until=6))
    st, one_by_one = state, []
    for _ in range(6):
        st, loss = T.train_step(st, cache, shuffled)
        one_by_one.append((st, loss))
    assert [s.step for s, _ in yielded] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in yielded] == [loss for _, loss in one_by_one]
    assert len({loss for _, loss in yielded}) == 6
    for (a, _), (b, _) in zip(yielded, one_by_one):
        assert all(np.array_equal(np.asarray(a.params[k]), np.asarray(b.params[k])) for k in a.params)
        assert np.array_equal(np.asarray(a.m), np.asarray(b.m))
    first = next(iter(T.train(state, shuffled, cache)))  # a caller that stops after one step
    assert first[0].step == 1 and first[1] == yielded[0][1]


def test_f32_training_matches_the_numpy_backend(tiny) -> None:
    state, shuffled = tiny
    f32, _ = T.start(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"], n_embd=8, n_head=2,
                     block_size=8, num_steps=20, dtype="f32")
    runs = {}
    for backend in ("jax", "compiled"):
        cache = T.ProgramCache(f32.model, f32.adam, f32.num_steps, backend)
        runs[backend] = [(st, loss) for st, loss in T.train(f32, shuffled, cache, until=8)]
    assert np.asarray(runs["jax"][-1][0].params["wte"]).dtype == np.float32
    assert max(abs(a[1] - b[1]) for a, b in zip(runs["jax"], runs["compiled"])) <= 1e-5


@pytest.mark.skipif(not NAMES.exists(), reason=f"the reference dataset {NAMES} is not present")
def test_reference_run_1000_steps_and_samples() -> None:
    from gptir.data import load_docs
    from gptir.sample import LogitsCache, sample

    ref = json.loads((ROOT / "tests" / "data" / "reference_microgpt.json").read_text())
    state, shuffled = T.start(load_docs(str(NAMES)), recipe="microgpt", seed=42, num_steps=1000)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps, "jax")
    losses = []
    for state, loss in T.train(state, shuffled, cache):
        losses.append(loss)
    assert len(cache.programs) == 1  # one shape-polymorphic (padded) program for the whole run
    assert len(losses) == 1000
    worst = max(abs(a - b) for a, b in zip(losses, ref["losses"]))
    assert worst <= 1e-9, f"largest per-step difference {worst:.3e}"
    logits = LogitsCache(state.model, "jax")
    names, _ = sample(state.model, state.params, state.tokenizer, state.rng, num=20, cache=logits)
    assert names == ref["samples"]
    assert len(logits.programs) == 1


def test_stablehlo_export() -> None:
    b = Builder("m")
    x = b.input("x", TensorType("f64", (3,)))
    w = b.param("w", TensorType("f64", (3,)), np.ones(3))
    text = jaxback.stablehlo(b.finish({"y": (x * w).sum()}))
    assert text.startswith("module @") and "func.func public @main" in text
    assert "tensor<3xf64>" in text and "stablehlo.multiply" in text and "stablehlo.reduce" in text


# -- through the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper"]) + "\n")
    return path


def test_cli_exec_train_sample_on_jax(data, tmp_path) -> None:
    logs = check_cli_exec_train_sample("jax", data, tmp_path)
    r = gptir("train", "--data", str(data), "--steps", "8", "--stop-after", "1", "--samples", "0", "--backend", "jax",
              "--per-length", "--log", str(tmp_path / "pl.jsonl"), *SMALL)
    assert r.returncode == 0, r.stderr
    assert abs(losses_of(tmp_path / "pl.jsonl")[0] - logs["jax"][0][0]) <= TOL


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``gptir ARGS`` in this process (exit status, stdout, stderr)."""
    from gptir.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_export(tmp_path, capsys) -> None:
    ir, out = tmp_path / "mlp.ir", tmp_path / "mlp.mlir"
    assert cli(capsys, "trace", str(ROOT / "examples" / "mlp.py") + ":mlp", "--arg", "x=f64[3]", "-o", str(ir))[0] == 0
    code, _, err = cli(capsys, "export", str(ir), "--format", "stablehlo", "-o", str(out))
    assert code == 0, err
    assert "stablehlo.dot_general" in out.read_text()
    assert cli(capsys, "export", str(ir), "--format", "stablehlo")[1] == out.read_text()  # stdout by default
    code, _, err = cli(capsys, "export", str(ir), "--format", "stablehlo", "-o", str(ir))
    assert code == 1 and "is the same file as FILE.ir" in err and len(err.splitlines()) == 1
    code, _, err = cli(capsys, "export", str(tmp_path / "none.ir"), "--format", "stablehlo")
    assert code == 1 and len(err.splitlines()) == 1
    code, _, err = cli(capsys, "export", str(ir), "--format", "stablehlo", "-o", os.devnull)
    assert code == 0, err  # a device is written directly, as by every verb (gptir.fileio)
    with pytest.raises(SystemExit) as e:
        cli(capsys, "export", str(ir), "--format", "onnx")
    assert e.value.code == 2


def test_cli_usage_errors(data, capsys) -> None:
    code, _, err = cli(capsys, "train", "--data", str(data), "--devices", "2", *SMALL)
    assert code == 2 and "need --backend jax" in err  # options that cannot go together: a usage error
    code, _, err = cli(capsys, "train", "--data", str(data), "--backend", "jax", "--devices", "2", "--batch", "3", *SMALL)
    assert code == 1 and "multiple of" in err and len(err.splitlines()) == 1


# JAX blocked: `import jax` fails, as where the extra is not installed
NO_JAX = "import sys; sys.modules['jax'] = None; from gptir.cli import main; sys.exit(main(sys.argv[1:]))"


def test_without_jax_the_backend_is_a_one_line_error(data, tmp_path) -> None:
    ir = tmp_path / "n.ir"
    ir.write_text("graph n {\n  in %x : f64[]\n  output y = %x\n}\n")
    for args in (["exec", str(ir), "--input", "x=1", "--backend", "jax"],
                 ["train", "--data", str(data), "--backend", "jax", *SMALL],
                 ["export", str(ir), "--format", "stablehlo"]):
        r = subprocess.run([sys.executable, "-c", NO_JAX, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and 'pip install "gptir[jax]"' in r.stderr, r.stderr


def test_import_gptir_does_not_import_jax() -> None:
    r = subprocess.run([sys.executable, "-c", "import sys, gptir, gptir.cli; print('jax' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


# -- many devices: the host CPU split into two (the flag must be set before jax is imported) --------------

TWO_DEVICES = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")


def test_two_devices_give_the_one_device_losses(data, tmp_path) -> None:
    logs = {}
    for n in ("1", "2"):
        log = tmp_path / f"d{n}.jsonl"
        r = gptir("train", "--data", str(data), "--steps", "6", "--batch", "4", "--samples", "2", "--backend", "jax",
                  "--devices", n, "--log", str(log), *SMALL, env=TWO_DEVICES)
        assert r.returncode == 0, r.stderr
        logs[n] = (losses_of(log), r.stdout)
    assert len(logs["2"][0]) == 6
    assert max(abs(a - b) for a, b in zip(logs["1"][0], logs["2"][0])) <= TOL
    assert logs["1"][1] == logs["2"][1]
    r = gptir("train", "--data", str(data), "--backend", "jax", "--devices", "4", "--batch", "4", *SMALL,
              env=TWO_DEVICES)
    assert r.returncode == 1 and "only 2 device" in r.stderr


def test_sharded_program_is_split_over_the_mesh(tiny) -> None:
    """In a subprocess with two host devices: the compiled step's batch inputs are sharded over both."""
    code = (
        "import numpy as np\n"
        "from gptir import train as T\n"
        "st, docs = T.start(['emma', 'ava', 'mia', 'zoe'], n_embd=8, n_head=2, block_size=8)\n"
        "p = T.compile_program(T.step_graph(st.model, st.adam, st.num_steps, 8, 4), 'jax', devices=2)\n"
        "specs = {n.name: s for n, s in zip(p.lowered.args, p.compiled.input_shardings[0])}\n"
        "print(tuple(specs['tokens'].spec), tuple(specs['wte'].spec), len(specs['tokens'].device_set))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=TWO_DEVICES)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["('batch',)", "()", "2"]


def test_compiler_options_by_program_size() -> None:
    """Small programs compile at the quick level; big ones at XLA's default level (faster kernels)."""
    def graph(n: int):  # noqa: ANN202
        b = Builder("g")
        x = b.input("x", TensorType("f64", (n,)))
        return b.finish({"y": x * x})

    small, big = graph(1000), graph(jaxback.FAST_MIN_ELEMENTS // 2)  # input and result: 2 values of n
    assert jaxback.compiler_options(small) == jaxback.COMPILER_OPTIONS
    assert jaxback.compiler_options(big) == jaxback.FAST_OPTIONS
    assert jaxback.COMPILER_OPTIONS != jaxback.FAST_OPTIONS
    x = np.arange(4.0)
    assert np.array_equal(jaxback.compile_graph(graph(4))({"x": x})["y"], x * x)
