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
MLP_WANT = None


def gptir(*args: str, stdin: str | None = None, cwd: str = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
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
    assert doc == {"outputs": {"out": {"dtype": "f64", "shape": [], "value": 0.5 * 2 - 0.3}}}


@pytest.mark.parametrize("value,fmt,want", [
    ("inf", "json", '{"outputs": {"out": {"dtype": "f64", "shape": [], "value": "inf"}}}\n'),
    ("-inf", "json", '{"outputs": {"out": {"dtype": "f64", "shape": [], "value": "-inf"}}}\n'),
    ("nan", "json", '{"outputs": {"out": {"dtype": "f64", "shape": [], "value": "nan"}}}\n'),
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
    (["trace", "examples/neuron.py:neuron", "--arg", "x=f32[3]"], "bad type 'f32[3]'"),
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


def test_compiled_backend_matches_interp_or_says_unavailable() -> None:
    ir = ok("trace", "examples/mlp.py:mlp", "--arg", "x=f64[3]")
    r = gptir("exec", "-", "--input", "x=[1,2,3]", "--backend", "compiled", stdin=ir)
    if r.returncode == 0:
        assert r.stdout == ok("exec", "-", "--input", "x=[1,2,3]", stdin=ir)
    else:
        assert r.returncode == 1 and "the compiled backend is not available" in r.stderr


def test_trace_microgpt_output_parses() -> None:
    pytest.importorskip("gptir.cli.trace_microgpt")
    text = ok("trace", "microgpt", "--doc", "emma", "--n-embd", "4", "--n-head", "1", "--block-size", "8")
    g = parse(text)
    assert g.name and g.outputs and any(n.op == "matmul" for n in g)
    assert not math.isnan(len(g))
