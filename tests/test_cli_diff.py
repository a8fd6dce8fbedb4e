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
    a = write(tmp_path / "a.ir", model())
    g = subprocess.run([sys.executable, "-m", "gptir.cli", "grad", a, "--wrt", "w,b", "-o", str(tmp_path / "g.ir")],
                       capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr  # gptir grad exists: a failure here is a bug, not a skip
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


# -- checkpoints (issue 6) ---------------------------------------------------------------------------------

NAMES = "emma\nolivia\nava\nisabella\nsophia\n"


def train_ckpt(folder: Path, name: str, steps: int, n_embd: int = 8) -> str:
    """A tiny checkpoint from a real `gptir train` run (5 documents, ~0.3 s)."""
    data = folder / "names.txt"
    data.write_text(NAMES, encoding="utf-8")
    out = folder / name
    p = subprocess.run([sys.executable, "-m", "gptir.cli", "train", "--data", str(data), "--steps", str(steps),
                        "--out", str(out), "--n-embd", str(n_embd), "--n-head", "2", "--block-size", "8",
                        "--samples", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and out.exists(), p.stderr
    return str(out)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ckpts")
    return {"a": train_ckpt(folder, "a.ckpt", 3), "b": train_ckpt(folder, "b.ckpt", 6),
            "wide": train_ckpt(folder, "wide.ckpt", 3, n_embd=12)}


def test_two_checkpoints_diff_by_value(ckpts, capsys, monkeypatch):
    a, b = ckpts["a"], ckpts["b"]
    p = gdiff(a, b)
    assert p.returncode == 1 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"--- {a} (checkpoint, step 3/3)\tgraph microgpt_logits")
    assert lines[1].startswith(f"+++ {b} (checkpoint, step 6/6)\tgraph microgpt_logits")
    assert lines[2] == "@@ values @@"
    changed = [l.split()[2] for l in lines[3:]]
    params = ["wte", "wpe", "lm_head"] + [f"layer0.{w}" for w in
                                          ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")]
    # every weight moved, and so did both Adam moments of every weight
    assert sorted(changed) == sorted(f"%{n}" for n in params + [f"adam.{k}.{n}" for k in "mv" for n in params])
    assert any(l.startswith("~ param %wte : f64[12,8]  96/96 changed, max|Δ| ") for l in lines)
    code, out, _ = inproc(capsys, monkeypatch, "--format", "json", a, b)
    obj = json.loads(out)
    assert code == 1 and obj["structurally_equal"] is True and obj["equal"] is False
    # 1024 weights, each with two moments; 9 weight tensors, 18 moment tensors
    assert obj["summary"]["tensors_changed"] == 27 and obj["summary"]["values_changed"] == 3 * 1024
    assert obj["summary"]["params_not_compared"] == 0
    # the same checkpoint: equal, exit 0, nothing printed; without values a and b are the same model
    same = gdiff(a, a)
    assert (same.returncode, same.stdout, same.stderr) == (0, "", "")
    assert inproc(capsys, monkeypatch, "--no-values", a, b)[:2] == (0, "")


def test_checkpoints_of_two_configs_differ_in_structure(ckpts, capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "--format", "json", ckpts["a"], ckpts["wide"])
    obj = json.loads(out)
    assert code == 1 and obj["structurally_equal"] is False
    types = {c["b"]["name"]: (c["a"]["type"], c["b"]["type"]) for c in obj["changed"] if "type" in c["what"]}
    assert types["wte"] == ("f64[12,8]", "f64[12,12]") and types["adam.m.wte"] == ("f64[12,8]", "f64[12,12]")


def test_ir_against_checkpoint_and_stdin(ckpts, tmp_path, capsys, monkeypatch):
    a = ckpts["a"]
    from gptir.checkpoint import load
    from gptir.cli.cmd_diff import checkpoint_graph

    state = load(a)
    g = checkpoint_graph(state)
    assert set(g.params) == set(state.params) | {f"adam.{k}.{n}" for k in "mv" for n in state.params}
    assert [n.name for n in g.param_inputs if n.name.startswith("adam.")] and g.outputs.keys() == {"logits"}
    # the same graph as IR text without the moments: only the 18 moment params are "added"
    plain = make_graph(g.name, [n for n in g if not n.name.startswith("adam.")], g.outputs,
                       {k: v for k, v in g.params.items() if not k.startswith("adam.")})
    ir = write(tmp_path / "plain.ir", plain)
    code, out, _ = inproc(capsys, monkeypatch, "--format", "json", ir, a)
    obj = json.loads(out)
    assert code == 1 and obj["removed"] == [] and obj["changed"] == [] and obj["values"] == []
    assert sorted(n["name"] for n in obj["added"]) == sorted(f"adam.{k}.{n}" for k in "mv" for n in state.params)
    assert all(n["op"] == "param" and n["scope"] == "adam" for n in obj["added"])
    # a checkpoint on standard input
    p = subprocess.run([sys.executable, "-m", "gptir.cli", "diff", "-", ckpts["b"]], input=Path(a).read_bytes(),
                       capture_output=True, timeout=60)
    assert p.returncode == 1 and p.stdout.decode().startswith("--- <stdin> (checkpoint, step 3/3)")
    assert b"Traceback" not in p.stderr


def test_checkpoint_history_folder(ckpts, tmp_path):
    hist = tmp_path / "hist"
    hist.mkdir()
    (hist / "step-03.ckpt").write_bytes(Path(ckpts["a"]).read_bytes())
    (hist / "step-06.ckpt").write_bytes(Path(ckpts["b"]).read_bytes())
    (hist / "step-07.ckpt").write_bytes(Path(ckpts["b"]).read_bytes())
    p = gdiff(str(hist))
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == "step-06.ckpt -> step-07.ckpt: no differences"
    assert lines[0].startswith("step-03.ckpt -> step-06.ckpt: 0 structural, 3072 values changed, max|Δ| 0.0")


def test_bad_checkpoints_exit_2_with_one_line(ckpts, tmp_path):
    a = ckpts["a"]
    (tmp_path / "cut.ckpt").write_bytes(Path(a).read_bytes()[:300])
    np.savez(tmp_path / "foreign.npz", w=np.zeros(3))
    (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04 this is no zip")
    for bad, why in (("cut.ckpt", "is not a usable gptir checkpoint"),
                     ("foreign.npz", "is not a usable gptir checkpoint: it has no gptir metadata"),
                     ("junk.ckpt", "is not a usable gptir checkpoint")):
        p = gdiff(a, str(tmp_path / bad))
        assert p.returncode == 2 and p.stdout == "", bad
        assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("gptir diff: error: "), bad
        assert bad in p.stderr and why in p.stderr, bad


def test_trace_opt_diff_pairs_by_name(tmp_path, capsys, monkeypatch):
    """The reported case through the CLI: no node 'renamed', no changed node whose -/+ lines agree."""
    m, o = str(tmp_path / "m.ir"), str(tmp_path / "o.ir")
    for argv in (["trace", "microgpt", "--doc", "emma", "-o", m], ["opt", m, "-o", o]):
        assert main(argv) == 0, capsys.readouterr().err
    code, out, _ = inproc(capsys, monkeypatch, "--format", "json", m, o)
    obj = json.loads(out)
    assert code == 1 and obj["renamed"] == [] and obj["summary"]["renamed"] == 0
    assert [c["b"]["name"] for c in obj["changed"] if c["a"]["line"] == c["b"]["line"]] == []
    assert "layer0.attn.matmul.3" not in {c["b"]["name"] for c in obj["changed"]}
    code, text, _ = inproc(capsys, monkeypatch, m, o)
    minus = {l[2:].split("    # ")[0] for l in text.splitlines() if l.startswith("- ")}
    plus = {l[2:] for l in text.splitlines() if l.startswith("+ ")}
    assert code == 1 and not minus & plus
