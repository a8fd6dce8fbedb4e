"""``gptir trace`` and ``gptir exec`` end to end, through a real subprocess: outputs, pipes with
'-', sidecar params, exit codes 1 (user error, one message, no traceback) and 2 (bad usage)."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from gptir.text import parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# where the gptir under test is imported from (the source tree for an editable install, a --target folder
# when the tests run from an unpacked sdist): subprocesses import the same one
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__import__("gptir").__file__)))
MLP_WANT = None


def gptir(*args: str, stdin: str | None = None, cwd: str = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gptir.cli", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def ok(*args: str, stdin: str | None = None, cwd: str = ROOT) -> str:
    r = gptir(*args, stdin=stdin, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def fails(code: int, *args: str, stdin: str | None = None, cwd: str = ROOT) -> str:
    r = gptir(*args, stdin=stdin, cwd=cwd)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.strip()
    return r.stderr


def inproc(capsys: Any, monkeypatch: Any, *args: str, stdin: str = "", cwd: str = ROOT) -> tuple[int, str, str]:
    """The same CLI in this process (faster; the subprocess tests above cover the real entry point)."""
    from gptir.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def mlp_reference(x: np.ndarray) -> np.ndarray:
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import mlp  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return np.maximum(x @ mlp.W1 + mlp.B1, 0) @ mlp.W2 + mlp.B2


def test_trace_prints_readable_ir() -> None:
    text = ok("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]")
    assert text.startswith("graph mlp {\n  in %x : f64[3] loc(\"examples/mlp.py:")
    assert "param %layer0.w : f64[3,4] = [[0.5, -0.2, 0.1, 0.0]," in text
    assert "%layer1.add = add %layer1.matmul, %layer1.b : f64[2] @layer1" in text
    assert text.endswith("  output out = %layer1.add\n}\n")
    g = parse(text)
    assert [n.name for n in g.data_inputs] == ["x"] and len(g.param_inputs) == 4
    assert ok("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]", "-o", "-") == text


def test_trace_pipe_exec() -> None:
    ir = ok("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]")
    out = ok("exec", "-", "--input", "x=[1,2,3]", stdin=ir)
    want = mlp_reference(np.array([1.0, 2.0, 3.0]))
    assert out == f"out = [{float(want[0])!r}, {float(want[1])!r}]\n"


def test_exec_json_and_special_values(tmp_path: Any) -> None:
    ir = ok("trace", "examples/neuron.py:neuron", "--arg", "x=f64[]", "--param", "w1=0.5", "--param", "w2=-0.3")
    assert "param %w1 : f64[] = 0.5" in ir and "%neuron.relu = relu %neuron.add : f64[] @neuron" in ir
    doc = json.loads(ok("exec", "-", "--input", "x=2", "--format", "json", stdin=ir))
    assert doc == {"schema": "gptir-exec/1", "graph": "neuron",
                   "outputs": {"out": {"dtype": "f64", "shape": [], "value": 0.5 * 2 - 0.3}}}


@pytest.mark.parametrize("value,fmt,want", [
    ("inf", "json", '{"schema": "gptir-exec/1", "graph": "neuron", "outputs": {"out": {"dtype": "f64", "shape": [], "value": "inf"}}}\n'),
    ("-inf", "json", '{"schema": "gptir-exec/1", "graph": "neuron", "outputs": {"out": {"dtype": "f64", "shape": [], "value": "-inf"}}}\n'),
    ("nan", "json", '{"schema": "gptir-exec/1", "graph": "neuron", "outputs": {"out": {"dtype": "f64", "shape": [], "value": "nan"}}}\n'),
    ("-inf", "text", "out = -inf\n"), ("nan", "text", "out = nan\n"), ("0.1", "text", "out = 0.05\n"),
    ("-0.0", "text", "out = -0.0\n"), ("3", "text", "out = 1.5\n"),
])
def test_exec_special_values(capsys: Any, monkeypatch: Any, value: str, fmt: str, want: str) -> None:
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", f"x={value}", "--format", fmt,
                            stdin=NEURON_IR)
    assert (code, out, err) == (0, want, "")


def test_exec_bool_int_outputs_and_npy_input(tmp_path: Any) -> None:
    ir = ("graph g {\n  in %x : f64[2,2]\n  in %k : i64[2]\n  %z = const [[0.0, 0.0], [0.0, 0.0]] : f64[2,2]\n"
          "  %gt = gt %x, %z : bool[2,2]\n  %n = neg %k : i64[2]\n  output pos = %gt\n  output neg = %n\n}\n")
    (tmp_path / "g.ir").write_text(ir)
    np.save(str(tmp_path / "x.npy"), np.array([[1.5, -2.0], [0.0, 3.0]]))
    out = ok("exec", "g.ir", "--input", "x=@x.npy", "--input", "k=[4, -9223372036854775807]", cwd=str(tmp_path))
    assert out == "pos = [[true, false], [false, true]]\nneg = [-4, 9223372036854775807]\n"
    doc = json.loads(ok("exec", "g.ir", "--input", "x=@x.npy", "--input", "k=[1,2]", "--format", "json",
                        cwd=str(tmp_path)))
    assert doc["outputs"]["pos"] == {"dtype": "bool", "shape": [2, 2], "value": [[True, False], [False, True]]}
    assert doc["outputs"]["neg"] == {"dtype": "i64", "shape": [2], "value": [-1, -2]}


def test_sidecar_params(tmp_path: Any) -> None:
    ok("trace", os.path.join(ROOT, "examples/mlp.py") + ":mlp", "--arg", "x=f64[3]", "-o", "m.ir",
       "--params-out", "w/m.npz", cwd=str(tmp_path)) if (tmp_path / "w").mkdir() is None else None
    text = (tmp_path / "m.ir").read_text()
    assert 'params "w/m.npz"' in text and "= [[" not in text
    assert set(np.load(str(tmp_path / "w" / "m.npz")).files) == {"layer0.w", "layer0.b", "layer1.w", "layer1.b"}
    want = mlp_reference(np.array([1.0, 0.0, -1.0]))
    # run from elsewhere: the sidecar is found next to the IR file
    assert ok("exec", str(tmp_path / "m.ir"), "--input", "x=[1.0, 0, -1]") == f"out = [{float(want[0])!r}, {float(want[1])!r}]\n"
    # --params overrides the sidecar's values
    np.savez(str(tmp_path / "zero.npz"), **{"layer1.b": np.array([7.0, 8.0]), "layer1.w": np.zeros((4, 2))})
    assert ok("exec", "m.ir", "--input", "x=[1,2,3]", "--params", "zero.npz", cwd=str(tmp_path)) == "out = [7.0, 8.0]\n"
    os.remove(tmp_path / "w" / "m.npz")
    err = fails(1, "exec", "m.ir", "--input", "x=[1,2,3]", cwd=str(tmp_path))
    assert "m.ir:2:10: params file" in err and "does not exist" in err


USER_ERRORS = [
    (["exec", "-"], "missing input(s): x: f64[]"),
    (["exec", "-", "--input", "x=1", "--input", "y=2"], "unknown input(s): y"),
    (["exec", "-", "--input", "x=[1,2"], "--input x: cannot read '[1,2'"),
    (["exec", "-", "--input", "x=[1,2]"], "input x must be f64[], got shape [2]"),
    (["exec", "-", "--input", "x=\"a\""], "must hold only numbers"),
    (["exec", "-", "--input", "x=[[1],[2,3]]"], "is not a rectangular array"),
    (["exec", "-", "--input", "x=" + "[" * 100000], "cannot read"),
    (["exec", "-", "--input", "x=@nope.npy"], "nope.npy does not exist"),
    (["exec", "nope.ir"], "cannot read nope.ir"),
    (["exec", "-", "--input", "x=1", "--params", "nope.npz"], "params file nope.npz does not exist"),
    (["trace", "examples/neuron.py:nope", "--arg", "x=f64[]"], "has no function 'nope' (it defines: neuron)"),
    (["trace", "examples/neuron.py:neuron"], "missing --arg for x (neuron takes: x, w1, w2"),
    (["trace", "examples/neuron.py:neuron", "--arg", "q=f64[]"], "neuron has no parameter q"),
    (["trace", "examples/none.py:f"], "examples/none.py: no such file"),
    (["trace", "examples/neuron.py:neuron", "--arg", "x=f16[3]"], "bad type 'f16[3]'"),
    (["trace", "examples/neuron.py:neuron", "--arg", "x=f64[2]", "--param", "w1=[1,2]"],
     "operands have dtypes i64 and f64"),
]
NEURON_IR = """graph neuron {
  in %x : f64[]
  param %w1 : f64[] = 0.5
  %mul = mul %w1, %x : f64[]
  output out = %mul
}
"""


@pytest.mark.parametrize("args,message", USER_ERRORS)
def test_user_errors_exit_1(capsys: Any, monkeypatch: Any, args: list[str], message: str) -> None:
    code, out, err = inproc(capsys, monkeypatch, *args, stdin=NEURON_IR)
    assert code == 1 and out == ""
    assert err.startswith(f"gptir {args[0]}: error: ") and message in err, err
    assert err.count("\n") == 1  # one line


def test_user_errors_exit_1_subprocess() -> None:
    for args, message in USER_ERRORS[:1] + USER_ERRORS[-2:-1]:
        err = fails(1, *args, stdin=NEURON_IR)
        assert message in err and err.startswith(f"gptir {args[0]}: error: ")


def test_parse_error_keeps_its_caret(tmp_path: Any) -> None:
    (tmp_path / "model.ir").write_text("graph neuron {\n  in %x : f64[]\n  %mul = mul %w1, %x : @neuron\n}\n")
    err = fails(1, "exec", "model.ir", cwd=str(tmp_path))
    assert err == ("gptir exec: error: model.ir:3:24: expected a type such as f64[3] after ':', found '@neuron'\n"
                   "      %mul = mul %w1, %x : @neuron\n"
                   "                           ^\n")
    err = fails(1, "exec", "-", stdin="graph g {\n  in %x : f64[]\n  %y = neg %q : f64[]\n}\n")
    assert err.startswith("gptir exec: error: <stdin>:3:12: undefined value %q")


def test_user_code_errors_name_the_line(tmp_path: Any) -> None:
    (tmp_path / "bad.py").write_text("def f(x):\n    return x.nope\n\ndef g(x):\n    if x:\n        return x\n")
    err = fails(1, "trace", "bad.py:f", "--arg", "x=f64[]", cwd=str(tmp_path))
    assert "bad.py:2: AttributeError:" in err
    err = fails(1, "trace", "bad.py:g", "--arg", "x=f64[]", cwd=str(tmp_path))
    assert "use gptir.where instead of if/else" in err
    (tmp_path / "syn.py").write_text("def f(x:\n")
    assert "syn.py:1: syntax error" in fails(1, "trace", "syn.py:f", "--arg", "x=f64[]", cwd=str(tmp_path))


USAGE_ERRORS = [
    ["exec", "-", "--input", "x"], ["exec", "-", "--input", "1x=2"], ["exec", "-", "--format", "xml"],
    ["trace", "examples/neuron.py"], ["trace", "examples/neuron.py:neuron", "--arg", "x=f64[]", "--n-embd", "4"],
    ["trace", "microgpt", "--arg", "x=f64[]"], ["frobnicate"], ["exec"],
    ["trace", "examples/neuron.py:neuron", "--arg", "x=f64[]", "--arg", "x=f64[]"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS)
def test_usage_errors_exit_2(capsys: Any, monkeypatch: Any, args: list[str]) -> None:
    code, out, err = inproc(capsys, monkeypatch, *args)
    assert code == 2 and out == "" and "usage: gptir" in err and "error:" in err


def test_usage_errors_exit_2_subprocess() -> None:
    for args in (USAGE_ERRORS[0], USAGE_ERRORS[3]):
        assert "usage: gptir" in fails(2, *args, stdin="")


def test_output_file_and_trace_values(tmp_path: Any) -> None:
    ok("trace", os.path.join(ROOT, "examples/neuron.py") + ":neuron", "--arg", "x=[1.0, 2.0]", "--param", "w1=2.5",
       "-o", "n.ir", cwd=str(tmp_path))
    g = parse((tmp_path / "n.ir").read_text())
    assert str(g["x"].type) == "f64[2]" and g.params["w1"].item() == 2.5 and "w2" not in g.nodes
    assert [f for f in os.listdir(tmp_path) if f.startswith(".gptir-")] == []  # no temporary left behind
    assert ok("exec", "n.ir", "--input", "x=[1, -1]", cwd=str(tmp_path)) == "out = [2.2, 0.0]\n"


def test_compiled_backend_matches_interp() -> None:
    ir = ok("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]")
    compiled = ok("exec", "-", "--input", "x=[1,2,3]", "--backend", "compiled", stdin=ir)
    want = mlp_reference(np.array([1.0, 2.0, 3.0]))
    assert compiled == ok("exec", "-", "--input", "x=[1,2,3]", stdin=ir)
    assert compiled == f"out = [{float(want[0])!r}, {float(want[1])!r}]\n"


def test_trace_microgpt_output_parses_and_runs(tmp_path: Any) -> None:
    text = ok("trace", "microgpt", "--doc", "emma", "--n-embd", "4", "--n-head", "1", "--block-size", "8")
    g = parse(text)
    assert g.name == "microgpt_loss" and list(g.outputs) == ["loss"]
    assert g["wte"].op == "param" and str(g["wte"].type) == "f64[27,4]" and sum(n.op == "matmul" for n in g) >= 4
    (tmp_path / "m.ir").write_text(text)
    out = ok("exec", str(tmp_path / "m.ir"))
    assert out == ok("exec", str(tmp_path / "m.ir"), "--backend", "compiled")
    loss = float(out.removeprefix("loss = "))
    # an untrained model with small random weights predicts close to uniformly over the 27 characters
    assert abs(loss - math.log(27)) < 0.3, loss


def test_trace_microgpt_batch_is_the_first_training_batch(tmp_path: Any) -> None:
    """``--batch`` larger than the data wraps around as training does, so ``gptir exec`` gives step 1's loss."""
    data = tmp_path / "six.txt"
    data.write_text("emma\nolivia\nava\nisabella\nsophia\nmia\n")
    small = ["--data", str(data), "--n-embd", "8", "--n-head", "2", "--block-size", "4", "--batch", "7"]
    for extra in ([], ["--pack"]):
        ok("trace", "microgpt", *small, *extra, "-o", str(tmp_path / "b.ir"))
        traced = float(ok("exec", str(tmp_path / "b.ir")).removeprefix("loss = "))
        ok("train", *small, *extra, "--steps", "1", "-n", "0", "--quiet", "--log", str(tmp_path / "log.jsonl"))
        step1 = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[1])["loss"]
        assert abs(traced - step1) <= 1e-13 * abs(step1), (extra, traced, step1)


# ---- nothing escapes as a traceback ------------------------------------------------------------

BIG_IR = """graph g {
  %c = const 1.0 : f64[]
  %b = broadcast[shape=(100000,100000)] %c : f64[100000,100000]
  %e = exp %b : f64[100000,100000]
  output o = %e
}
"""


@pytest.mark.parametrize("backend", ["interp", "compiled"])
def test_out_of_memory_is_one_line(capsys: Any, monkeypatch: Any, backend: str) -> None:
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--backend", backend, stdin=BIG_IR)
    assert code == 1 and out == ""
    assert err.startswith("gptir exec: error: out of memory: ") and "74.5 GiB" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def _raising(exc: BaseException) -> Any:
    def run(args: Any) -> int:
        raise exc
    return run


@pytest.mark.parametrize("exc,start", [
    (MemoryError(), "gptir exec: error: out of memory: "),
    (RecursionError("maximum recursion depth exceeded"), "gptir exec: error: recursion too deep"),
    (ValueError("bad\nthing"), "gptir exec: internal error: ValueError: bad thing "
                                "(set GPTIR_TRACEBACK=1 to see the traceback)\n"),
    (KeyError("k"), "gptir exec: internal error: KeyError: 'k' (set GPTIR_TRACEBACK=1 to see the traceback)\n"),
])
def test_unexpected_errors_are_one_line(capsys: Any, monkeypatch: Any, exc: BaseException, start: str) -> None:
    import gptir.cli.cmd_exec

    monkeypatch.delenv("GPTIR_TRACEBACK", raising=False)
    monkeypatch.setattr(gptir.cli.cmd_exec, "run", _raising(exc))
    code, out, err = inproc(capsys, monkeypatch, "exec", "-")
    assert (code, out) == (1, "") and err.startswith(start), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_internal_error_traceback_on_request(capsys: Any, monkeypatch: Any) -> None:
    import gptir.cli.cmd_exec

    monkeypatch.setenv("GPTIR_TRACEBACK", "1")
    monkeypatch.setattr(gptir.cli.cmd_exec, "run", _raising(ZeroDivisionError("oops")))
    code, out, err = inproc(capsys, monkeypatch, "exec", "-")
    assert code == 1 and err.startswith("Traceback (most recent call last):")
    assert 'raise exc' in err and err.endswith("gptir exec: internal error: ZeroDivisionError: oops "
                                               "(set GPTIR_TRACEBACK=1 to see the traceback)\n")


def test_internal_error_subprocess(tmp_path: Any) -> None:
    """The real entry point: an internal error cannot be provoked from outside without a bug, so a
    sitecustomize module patches one into the exec verb."""
    (tmp_path / "sitecustomize.py").write_text(
        "import gptir.cli.cmd_exec as m\n"
        "def run(args):\n    raise TypeError('injected')\n"
        "m.run = run\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + PKG_ROOT)
    env.pop("GPTIR_TRACEBACK", None)
    r = subprocess.run([sys.executable, "-m", "gptir.cli", "exec", "-"], input="", capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "gptir exec: internal error: TypeError: injected (set GPTIR_TRACEBACK=1 to see the traceback)\n"


def test_usage_error_inside_a_verb_prints_the_verbs_usage(capsys: Any, monkeypatch: Any) -> None:
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", "x")
    assert code == 2 and out == ""
    assert err.startswith("usage: gptir exec [-h] ") and "--input NAME=VALUE" in err
    assert "usage: gptir [-h] VERB" not in err
    assert err.endswith("gptir exec: error: --input expects NAME=VALUE (NAME an identifier such as x or layer0.w), "
                        "got 'x'\n")
    code, out, err = inproc(capsys, monkeypatch, "trace", "examples/neuron.py")
    assert code == 2 and err.startswith("usage: gptir trace [-h] [--arg NAME=SPEC]") and "FILE.py:FUNCTION|microgpt" in err
    assert err.endswith("gptir trace: error: the target must be FILE.py:FUNCTION or microgpt, "
                        "got 'examples/neuron.py'\n")


def test_echoed_user_text_is_truncated(capsys: Any, monkeypatch: Any) -> None:
    huge = "[" + ",".join(["1"] * 10000) + "]]"  # 20 kB, and not valid JSON
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", f"x={huge}", stdin=NEURON_IR)
    assert code == 1 and err.count("\n") == 1 and len(err) < 300, len(err)
    assert "--input x: cannot read '[1,1,1," in err and "1,1,...' as a number or nested list" in err
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", "x" * 20000, stdin=NEURON_IR)
    assert code == 2 and "got 'xxxxx" in err and "xxx...'" in err and len(err.splitlines()[-1]) < 200
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", "x=" + "[" * 10000 + "true" + "]" * 9999 + ",1]",
                            stdin=NEURON_IR)
    assert code == 1 and len(err) < 300
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", "x=1", "--input", "y" * 20000 + "=1",
                            stdin=NEURON_IR)
    assert code == 1 and err == f"gptir exec: error: unknown input(s): {'y' * 77}... (the graph takes: x, w1)\n"


BOOL_IR = "graph g {\n  in %b : bool[2]\n  in %x : f64[2]\n  %y = where %b, %x, %x : f64[2]\n  output y = %y\n}\n"


@pytest.mark.parametrize("inputs,message", [
    (["x=[true,false]", "b=[true,false]"], "input x must be f64[2]: give numbers, not true/false"),
    (["x=[1.0,2.0]", "b=[1,0]"], "input b must be bool[2]: give true/false, not int64 values"),
    (["x=[1.0,2.0]", "b=[1.0,0.0]"], "input b must be bool[2]: give true/false, not float64 values"),
    (["x=[1,true]", "b=[true,false]"], "--input x: '[1,true]' mixes true/false with numbers"),
])
def test_bools_and_numbers_do_not_mix(capsys: Any, monkeypatch: Any, inputs: list[str], message: str) -> None:
    args = [a for spec in inputs for a in ("--input", spec)]
    for backend in ("interp", "compiled"):
        code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--backend", backend, *args, stdin=BOOL_IR)
        assert (code, out) == (1, "") and message in err, err


def test_ints_are_fine_for_f64_inputs(capsys: Any, monkeypatch: Any) -> None:
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--input", "x=[3,-4]", "--input", "b=[true,false]",
                            stdin=BOOL_IR)
    assert (code, out, err) == (0, "y = [3.0, -4.0]\n", "")


def test_coerce_input_rejects_bool_number_mixups() -> None:
    from gptir.interp import ExecError, run

    g = parse(BOOL_IR)
    assert run(g, {"x": [1, 2], "b": np.array([True, False])})["y"].tolist() == [1.0, 2.0]
    with pytest.raises(ExecError, match="input x must be f64\\[2\\]: give numbers, not true/false"):
        run(g, {"x": [True, False], "b": np.array([True, False])})
    with pytest.raises(ExecError, match="input b must be bool\\[2\\]: give true/false"):
        run(g, {"x": [1.0, 2.0], "b": [1, 0]})


@pytest.mark.parametrize("code_text,where", [
    ("import sys\n\ndef f(x):\n    sys.exit(0)\n", "exits.py:4: the model code called sys.exit(0)"),
    ("import sys\nsys.exit('bye')\n\ndef f(x):\n    return x\n", "exits.py:2: the model code called sys.exit('bye')"),
    ("def f(x):\n    raise SystemExit\n", "exits.py:2: the model code called sys.exit()"),
])
def test_user_code_calling_sys_exit(tmp_path: Any, code_text: str, where: str) -> None:
    (tmp_path / "exits.py").write_text(code_text)
    err = fails(1, "trace", "exits.py:f", "--arg", "x=f64[]", cwd=str(tmp_path))
    assert err == f"gptir trace: error: {where}\n"


def test_output_to_a_folder_or_a_missing_folder(tmp_path: Any) -> None:
    (tmp_path / "out").mkdir()
    neuron = os.path.join(ROOT, "examples/neuron.py") + ":neuron"
    for opts, message in [
        (["-o", "out"], "gptir trace: error: out: is a folder\n"),
        (["-o", "nope/n.ir"], "gptir trace: error: nope/n.ir: its folder does not exist\n"),
        (["-o", "n.ir", "--params-out", "out"], "gptir trace: error: out: is a folder\n"),
        (["-o", "n.ir", "--params-out", "nope/p.npz"], "gptir trace: error: nope/p.npz: its folder does not exist\n"),
    ]:
        assert fails(1, "trace", neuron, "--arg", "x=f64[]", *opts, cwd=str(tmp_path)) == message
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == []


def test_os_error_names_the_users_path_not_a_temporary(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    """os.replace(tmp, path) fails naming both files; the message names the user's."""
    import gptir.cli.cmd_exec

    err = IsADirectoryError(21, "Is a directory", str(tmp_path / ".gptir-abc.tmp"), None, "want.ir")
    monkeypatch.setattr(gptir.cli.cmd_exec, "run", _raising(err))
    code, out, err_text = inproc(capsys, monkeypatch, "exec", "-")
    assert (code, err_text) == (1, "gptir exec: error: want.ir: Is a directory\n")


def test_internal_error_before_a_verb(capsys: Any, monkeypatch: Any) -> None:
    import gptir.cli

    def broken(*args: Any) -> Any:
        raise AttributeError("a verb module is broken")

    monkeypatch.delenv("GPTIR_TRACEBACK", raising=False)
    monkeypatch.setattr(gptir.cli, "build_parser", broken)
    code, out, err = inproc(capsys, monkeypatch, "exec", "-")
    assert (code, out) == (1, "")
    assert err == "gptir: internal error: AttributeError: a verb module is broken (set GPTIR_TRACEBACK=1 to see the traceback)\n"
