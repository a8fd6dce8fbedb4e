"""``gptir grad`` end to end: a real subprocess, files and pipes, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NEURON = """graph neuron {
  in %x : f64[]
  param %w1 : f64[] = 0.5
  param %w2 : f64[] = -0.3
  %mul = mul %w1, %x : f64[]
  %add = add %mul, %w2 : f64[]
  %relu = relu %add : f64[]
  output out = %relu
}
"""


def gptir(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptir.cli", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=60)


@pytest.fixture
def neuron(tmp_path: Path) -> Path:
    path = tmp_path / "neuron.ir"
    path.write_text(NEURON)
    return path


def test_grad_then_exec(neuron: Path, tmp_path: Path):
    out = tmp_path / "neuron_grad.ir"
    r = gptir("grad", str(neuron), "--wrt", "w1,w2,x", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "output grad.w1 = " in text and " backward" in text
    r = gptir("exec", str(out), "--input", "x=2.0")
    assert r.returncode == 0, r.stderr
    values = dict(line.split(" = ") for line in r.stdout.splitlines())
    assert float(values["out"]) == pytest.approx(0.7)
    assert (float(values["grad.w1"]), float(values["grad.w2"]), float(values["grad.x"])) == (2.0, 1.0, 0.5)


def test_stdin_to_stdout_and_second_derivative():
    text = "graph cube {\n  in %x : f64[]\n  %c = const 3.0 : f64[]\n  %p = pow %x, %c : f64[]\n  output y = %p\n}\n"
    first = gptir("grad", "-", "--wrt", "x", stdin=text)
    assert first.returncode == 0, first.stderr
    second = gptir("grad", "-", "--wrt", "x", "--of", "grad.x", stdin=first.stdout)
    assert second.returncode == 0, second.stderr
    assert "output grad.x = " in second.stdout and "output grad.grad.x = " in second.stdout
    r = gptir("exec", "-", "--input", "x=3.0", stdin=second.stdout)
    assert r.returncode == 0, r.stderr
    values = dict(line.split(" = ") for line in r.stdout.splitlines())
    # the first derivative is kept (3x**2 = 27) and the second added beside it (6x = 18)
    assert values == {"y": "27.0", "grad.x": "27.0", "grad.grad.x": "18.0"}


@pytest.mark.parametrize("args, message", [
    (["--wrt", "nope"], "'nope' is not an input or param of graph neuron"),
    (["--wrt", "x", "--of", "missing"], "no output named 'missing'"),
])
def test_user_errors_exit_1_without_traceback(neuron: Path, args: list[str], message: str):
    r = gptir("grad", str(neuron), *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_non_scalar_output_and_integer_input(tmp_path: Path):
    path = tmp_path / "vec.ir"
    path.write_text("graph vec {\n  in %x : f64[2]\n  in %i : i64[]\n  %e = exp %x : f64[2]\n"
                    "  output e = %e\n}\n")
    r = gptir("grad", str(path), "--wrt", "x")
    assert r.returncode == 1 and "scalar f64 output" in r.stderr and "Traceback" not in r.stderr
    path.write_text("graph vec {\n  in %x : f64[2]\n  in %i : i64[]\n  %e = exp %x : f64[2]\n"
                    "  %s = sum[axes=(0,), keepdims=false] %e : f64[]\n  output s = %s\n}\n")
    r = gptir("grad", str(path), "--wrt", "i")
    assert r.returncode == 1 and "not f64" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_and_empty_wrt(neuron: Path, tmp_path: Path):
    r = gptir("grad", str(tmp_path / "absent.ir"), "--wrt", "x")
    assert r.returncode == 1 and "absent.ir" in r.stderr and "Traceback" not in r.stderr
    r = gptir("grad", str(neuron), "--wrt", ",")
    assert r.returncode == 2 and "--wrt" in r.stderr
