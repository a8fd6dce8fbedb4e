"""``gptir opt``: default pipeline, --passes, --print-after-all (stderr), --dump-dir, -o, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gptir.cli import main
from gptir.interp import run
from gptir.ir import TensorType
from gptir.tracing import Builder, exp

from gptir import text


@pytest.fixture
def ir_file(tmp_path):
    b = Builder("demo")
    x = b.input("x", TensorType("f64", (2, 3)))
    w = b.param("w", x.type, np.full((2, 3), 0.5))
    y = (exp(x) * 1.0 + exp(x)) * w  # simplify drops *1.0 (mul, its 1.0 and its broadcast); cse merges the exps
    g = b.finish({"out": y, "w_out": w})
    path = tmp_path / "in.ir"
    path.write_text(text.print_graph(g))
    return str(path), g


def test_default_pipeline_to_stdout(ir_file, capsys):
    path, g = ir_file
    assert main(["opt", path]) == 0
    out = capsys.readouterr().out
    o = text.parse(out, "<out>")
    assert len(o) < len(g)
    assert [n.op for n in o].count("exp") == 1
    xv = np.array([[0.0, -0.0, 1.0], [np.nan, np.inf, -3.0]])
    assert run(o, {"x": xv})["out"].tobytes() == run(g, {"x": xv})["out"].tobytes()
    assert o.params["w"].tolist() == [[0.5] * 3] * 2  # param values travel with the IR


def test_print_after_all_goes_to_stderr_with_headers(ir_file, capsys, tmp_path):
    path, g = ir_file
    out_path = tmp_path / "out.ir"
    assert main(["opt", path, "--passes", "cse,dce", "--print-after-all", "-o", str(out_path)]) == 0
    cap = capsys.readouterr()
    assert cap.out == ""
    headers = [line for line in cap.err.splitlines() if line.startswith("# ----")]
    n = len(g)
    assert headers == [f"# ---- after cse: {n} -> {n - 1} nodes ----", f"# ---- after dce: {n - 1} -> {n - 1} nodes ----"]
    sections = cap.err.split("# ---- after dce")[0]
    assert text.parse(sections.split("\n", 1)[1], "<cse>") is not None  # each section parses
    assert len(text.load_graph(str(out_path))) == n - 1


def test_dump_dir_writes_numbered_files(ir_file, tmp_path, capsys):
    path, g = ir_file
    dump = tmp_path / "dumps"
    assert main(["opt", path, "--passes", "simplify,cse,dce", "--dump-dir", str(dump), "-o",
                 str(tmp_path / "o.ir")]) == 0
    assert sorted(os.listdir(dump)) == ["00-input.ir", "01-simplify.ir", "02-cse.ir", "03-dce.ir"]
    assert len(text.load_graph(str(dump / "00-input.ir"))) == len(g)
    assert len(text.load_graph(str(dump / "02-cse.ir"))) == len(g) - 4


def test_unknown_pass_is_a_usage_error(ir_file, capsys):
    path, _ = ir_file
    assert main(["opt", path, "--passes", "cse,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown pass 'nope'" in err and "dce, cse, fold, simplify" in err


def test_bad_input_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.ir"
    bad.write_text("graph g {\n  %y = frobnicate %x : f64[]\n}\n")
    assert main(["opt", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gptir opt: error:") and "Traceback" not in err
    assert main(["opt", str(tmp_path / "missing.ir")]) == 1


def test_opt_and_grad_keep_a_sidecar_instead_of_inlining(tmp_path):
    import subprocess
    import sys
    src, npz, sub = tmp_path / "m.ir", tmp_path / "m.npz", tmp_path / "sub"
    sub.mkdir()
    b = Builder("demo")
    x = b.input("x", TensorType("f64", (3,)))
    w = b.param("w", x.type, np.array([0.5, -1.0, 2.0]))
    g = b.finish({"out": (exp(x) * w).sum()})
    text.save_graph(g, str(src), sidecar=str(npz))
    for verb in (["opt", str(src)], ["grad", str(src), "--wrt", "w"]):
        out = sub / f"{verb[0]}.ir"
        r = subprocess.run([sys.executable, "-m", "gptir.cli", *verb, "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        body = out.read_text()
        assert 'params "../m.npz"' in body and "= [0.5" not in body
        back = text.load_graph(str(out))
        assert back.params["w"].tolist() == [0.5, -1.0, 2.0]
