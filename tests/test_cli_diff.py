"""``gptir diff`` end to end: exit codes 0/1/2, one-line errors, never a traceback.

The main paths run as real processes (``python -m gptir.cli diff``); option variations call
``gptir.cli.main`` in-process, which is the same code without the interpreter start-up cost.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gptir
from gptir import Param, make_graph, scope, trace
from gptir.cli import main
from gptir.ir import Graph
from gptir.text import print_graph, save_graph


def block(x, w, b):
    with scope("layer0"):
        h = gptir.exp(x @ w + b)
    with scope("head"):
        return (h * h).sum()


def model(shift: float = 0.0) -> Graph:
    rng = np.random.default_rng(0)
    return trace(block, "f64[4]", Param(rng.normal(size=(4, 3)) + shift), Param(rng.normal(size=3)))


def gdiff(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    p = subprocess.run([sys.executable, "-m", "gptir.cli", "diff", *args], input=stdin, capture_output=True,
                       text=True, cwd=cwd, env=env, timeout=60)
    assert "Traceback" not in p.stderr
    return p


def inproc(capsys, monkeypatch, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``gptir diff ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        code = main(["diff", *args])
    except SystemExit as e:  # argparse usage errors
        code = int(e.code)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def write(path: Path, g: Graph) -> str:
    path.write_text(print_graph(g), encoding="utf-8")
    return str(path)


def renamed(g: Graph) -> Graph:
    """Every value renamed, and the node list reversed where that stays a valid order."""
    new = {n: f"n{i}" for i, n in enumerate(reversed(list(g.nodes)))}
    nodes = [n.replace(name=new[n.name], inputs=tuple(new[i] for i in n.inputs)) for n in reversed(list(g))]
    return make_graph(g.name, nodes, {k: new[v] for k, v in g.outputs.items()},
                      {new[k]: v for k, v in g.params.items()})


def test_equal_files_exit_0_with_no_output(tmp_path):
    a = write(tmp_path / "a.ir", model())
    b = write(tmp_path / "b.ir", renamed(model()))
    assert "%n0" in Path(b).read_text()
    p = gdiff(a, b)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_changed_file_exit_1_with_unified_text(tmp_path, capsys, monkeypatch):
    g = model()
    h = make_graph(g.name, [n.replace(op="log") if n.name == "layer0.exp" else n for n in g], g.outputs, g.params)
    a, b = write(tmp_path / "a.ir", g), write(tmp_path / "b.ir", h)
    p = gdiff(a, b)
    assert p.returncode == 1 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"--- {a}") and lines[1].startswith(f"+++ {b}")
    assert "@@ layer0 @@" in lines
    assert sum(l.startswith("- ") for l in lines) == 1 and sum(l.startswith("+ ") for l in lines) == 1
    assert any(l.startswith("- %layer0.exp = exp %layer0.add") for l in lines)
    assert any(l.startswith("+ %layer0.exp = log %layer0.add") for l in lines)
    assert "\x1b[" not in p.stdout  # stdout is a pipe: no colour under --color auto
    # stdin as either side
    p2 = gdiff("-", b, stdin=Path(a).read_text())
    assert p2.returncode == 1 and p2.stdout.splitlines()[0].startswith("--- <stdin>")
    code, out, _ = inproc(capsys, monkeypatch, a, "-", stdin=Path(b).read_text())
    assert code == 1 and out.splitlines()[1].startswith("+++ <stdin>")
    # colour, --stat, --format json
    assert "\x1b[31m- %layer0.exp" in inproc(capsys, monkeypatch, "--color", "always", a, b)[1]
    assert "\x1b[" not in inproc(capsys, monkeypatch, "--color", "never", a, b)[1]
    code, out, _ = inproc(capsys, monkeypatch, "--stat", a, b)
    assert code == 1 and out.startswith("0 removed, 0 added, 1 changed nodes")
    code, out, _ = inproc(capsys, monkeypatch, "--format", "json", a, b)
    obj = json.loads(out)
    assert code == 1 and obj["schema"] == "gptir-diff/1" and obj["a"]["file"] == a
    assert [(c["b"]["name"], c["what"]) for c in obj["changed"]] == [("layer0.exp", ["op"])]
    assert inproc(capsys, monkeypatch, "-U", "0", a, b)[1].count("\n  %") == 0  # no context lines


def test_values_inline_and_sidecar(tmp_path, capsys, monkeypatch):
    g = model()
    a = write(tmp_path / "a.ir", g)
    save_graph(g, str(tmp_path / "side.ir"), sidecar=str(tmp_path / "side.npz"))
    assert 'params "side.npz"' in (tmp_path / "side.ir").read_text()
    assert inproc(capsys, monkeypatch, a, str(tmp_path / "side.ir"))[0] == 0
    shifted = model(shift=0.01)
    save_graph(shifted, str(tmp_path / "shift.ir"), sidecar=str(tmp_path / "shift.npz"))
    p = gdiff(a, str(tmp_path / "shift.ir"))
    assert p.returncode == 1
    value_lines = [l for l in p.stdout.splitlines() if l.startswith("~ ")]
    assert len(value_lines) == 1 and value_lines[0].startswith("~ param %w : f64[4,3]  12/12 changed, max|Δ| 0.01,")
    assert inproc(capsys, monkeypatch, "--no-values", a, str(tmp_path / "shift.ir"))[0] == 0
    assert inproc(capsys, monkeypatch, "--atol", "0.02", a, str(tmp_path / "shift.ir"))[0] == 0
    assert inproc(capsys, monkeypatch, "--atol", "0.001", a, str(tmp_path / "shift.ir"))[0] == 1


def test_directory_history_of_passes_and_steps(tmp_path, capsys, monkeypatch):
    passes = tmp_path / "passes"
    passes.mkdir()
    g = model()
    dead = g.nodes["layer0.exp"].replace(name="layer0.dead", op="neg")
    write(passes / "00-input.ir", make_graph(g.name, list(g) + [dead], g.outputs, g.params))
    write(passes / "01-dce.ir", g)
    write(passes / "02-cse.ir", g)
    p = gdiff(str(passes))
    assert p.returncode == 1
    assert p.stdout.splitlines() == ["00-input.ir -> 01-dce.ir: -1 nodes (dce)",
                                     "01-dce.ir -> 02-cse.ir: no differences (cse)"]
    steps = tmp_path / "steps"
    steps.mkdir()
    write(steps / "step-0000.ir", g)
    save_graph(model(shift=0.0123), str(steps / "step-0010.ir"), sidecar=str(steps / "step-0010.npz"))
    code, out, _ = inproc(capsys, monkeypatch, str(steps))
    assert code == 1
    assert out == "step-0000.ir -> step-0010.ir: 0 structural, 12 values changed, max|Δ| 0.0123\n"
    js = json.loads(inproc(capsys, monkeypatch, "--format", "json", str(steps))[1])
    assert js["pairs"][0]["summary"]["values_changed"] == 12 and js["pairs"][0]["equal"] is False
    same = tmp_path / "same"
    same.mkdir()
    write(same / "a.ir", g)
    write(same / "b.ir", renamed(g))
    assert inproc(capsys, monkeypatch, str(same))[:2] == (0, "a.ir -> b.ir: no differences\n")


def test_grad_output_through_the_cli(tmp_path):
    pytest.importorskip("gptir.autodiff", reason="gptir.autodiff is not built yet")
    a = write(tmp_path / "a.ir", model())
    g = subprocess.run([sys.executable, "-m", "gptir.cli", "grad", a, "--wrt", "w,b", "-o", str(tmp_path / "g.ir")],
                       capture_output=True, text=True, timeout=60)
    if g.returncode != 0:
        pytest.skip(f"gptir grad is not usable here: {g.stderr.strip()}")
    obj = json.loads(gdiff("--format", "json", a, str(tmp_path / "g.ir")).stdout)
    assert obj["removed"] == [] and obj["changed"] == [] and obj["added"]
    assert all(n["backward"] for n in obj["added"])
    assert obj["outputs"]["added"].keys() == {"grad.w", "grad.b"}


def test_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    a = write(tmp_path / "a.ir", model())
    (tmp_path / "bad.ir").write_text("graph g {\n  %x = exp %y : f64[]\n}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "side.ir").write_text('graph g {\n  params "gone.npz"\n  param %w : f64[]\n  output out = %w\n}\n')
    (tmp_path / "binary.ir").write_bytes(b"\xff\xfe\x00graph")
    # as a real process: a parse error is one line naming file:line:col, exit 2
    p = gdiff(a, str(tmp_path / "bad.ir"))
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.splitlines()) == 1
    assert p.stderr.startswith("gptir diff: error: ") and "bad.ir:2:" in p.stderr and "%y" in p.stderr
    cases = {
        "missing": [a, str(tmp_path / "nope.ir")],
        "two-stdin": ["-", "-"],
        "file-as-dir": [a],
        "dir-and-file": [a, str(tmp_path / "empty")],
        "empty-dir": [str(tmp_path / "empty")],
        "atol": ["--atol", "-1", a, a],
        "nan-atol": ["--atol", "nan", a, a],
        "context": ["-U", "-1", a, a],
        "three": [a, a, a],
        "sidecar": [a, str(tmp_path / "side.ir")],
        "binary": [a, str(tmp_path / "binary.ir")],
        "color": ["--color", "sometimes", a, a],
    }
    for case, args in cases.items():
        code, out, err = inproc(capsys, monkeypatch, *args)
        assert code == 2 and out == "", case
        msg = [l for l in err.splitlines() if l.startswith("gptir")]
        assert len(msg) == 1 and "error" in msg[0], case
        if case != "color":  # argparse prints its usage line first
            assert len(err.splitlines()) == 1, case
