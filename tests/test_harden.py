"""Issue 11, class by class: nothing lost (same-file outputs, symlinks, devices, read-only folders, full
disks, killed writes, data its own checkpoint would reject), nothing unbounded (folding, memory estimates,
zip bombs, devices as inputs, batch sizes, long names) and no wrong answer or missing error (index
contract, exact numbers and empty shapes, option conflicts, tiny temperatures, lone surrogates, and
model-code errors naming the model's line)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from typing import Any

import numpy as np
import pytest

from gptir import checkpoint, fileio
from gptir.cli import main
from gptir.codegen import compile_graph
from gptir.interp import run as interp_run
from gptir.ir import GptirError
from gptir.passes import fold
from gptir.text import parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEURON = os.path.join(ROOT, "examples", "neuron.py")
SMALL_IR = "graph g {\n  in %x : f64[]\n  %y = mul %x, %x : f64[]\n  output y = %y\n}\n"
TINY = ["--steps", "2", "--n-embd", "4", "--n-head", "1", "--block-size", "4", "--samples", "1", "--quiet"]


def cli(capsys: Any, monkeypatch: Any, *args: str, cwd: str | None = None, stdin: str = "") -> tuple[int, str, str]:
    """The CLI in this process; returns (exit status, stdout, stderr) and checks the one-line error rule."""
    if cwd:
        monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code:
        assert err.strip() and len(err) < 2000, err
    return code, out, err


def names_file(tmp_path: Any, text: str = "emma\nolivia\nava\nmia\n") -> str:
    path = tmp_path / "names.txt"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: Any) -> str:
    """A tiny checkpoint (2 steps) to read."""
    folder = tmp_path_factory.mktemp("ckpt")
    data = folder / "names.txt"
    data.write_text("emma\nolivia\nava\nmia\n")
    path = str(folder / "run.ckpt")
    assert main(["train", "--data", str(data), *TINY, "--samples", "0", "--out", path]) == 0
    return path


# == data loss =================================================================================================


def test_outputs_that_are_inputs_are_refused_and_the_input_is_unchanged(capsys: Any, monkeypatch: Any,
                                                                        tmp_path: Any, ckpt: str) -> None:
    model = tmp_path / "m.py"
    model.write_text(open(NEURON).read())
    before = model.read_bytes()
    code, _, err = cli(capsys, monkeypatch, "trace", f"{model}:neuron", "--arg", "x=f64[]", "--param", "w1=0.5",
                       "--param", "w2=1.0", "-o", str(model))
    assert code == 1 and "same file as the model file" in err and model.read_bytes() == before
    data = names_file(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "train", "--data", data, *TINY, "--out", data)
    assert code == 1 and "--out" in err and "--data" in err and open(data).read() == "emma\nolivia\nava\nmia\n"
    code, _, err = cli(capsys, monkeypatch, "train", "--data", data, *TINY, "--out", str(tmp_path / "a"),
                       "--log", str(tmp_path / "a"))
    assert code == 1 and "are the same file" in err and not (tmp_path / "a").exists()
    ck_before = open(ckpt, "rb").read()
    code, _, err = cli(capsys, monkeypatch, "trace", "microgpt", "--checkpoint", ckpt, "--doc", "emma",
                       "--params-out", ckpt, "-o", str(tmp_path / "e.ir"))
    assert code == 1 and "--params-out" in err and open(ckpt, "rb").read() == ck_before
    # a hard link and a symlink to the input are the same file too
    ir = tmp_path / "g.ir"
    ir.write_text(SMALL_IR)
    os.link(ir, tmp_path / "hard.ir")
    os.symlink(ir, tmp_path / "soft.ir")
    for verb in (["opt"], ["grad", "--wrt", "x"]):
        for out in ("hard.ir", "soft.ir", "g.ir"):
            code, _, err = cli(capsys, monkeypatch, verb[0], str(ir), *verb[1:], "-o", str(tmp_path / out))
            assert code == 1 and "refusing to overwrite an input" in err, (verb, out, err)
    assert ir.read_text() == SMALL_IR
    # a graph's own params sidecar is an input as well
    (tmp_path / "p.ir").write_text(cli_text(capsys, monkeypatch, tmp_path))
    sidecar = (tmp_path / "p.npz").read_bytes()
    code, _, err = cli(capsys, monkeypatch, "opt", str(tmp_path / "p.ir"), "-o", str(tmp_path / "p.npz"))
    assert code == 1 and "sidecar" in err and (tmp_path / "p.npz").read_bytes() == sidecar


def cli_text(capsys: Any, monkeypatch: Any, tmp_path: Any) -> str:
    code, _, err = cli(capsys, monkeypatch, "trace", f"{NEURON}:neuron", "--arg", "x=f64[]", "--param", "w1=0.5",
                       "--param", "w2=1.0", "--params-out", str(tmp_path / "p.npz"), "-o", str(tmp_path / "p0.ir"))
    assert code == 0, err
    return (tmp_path / "p0.ir").read_text()


def test_resume_may_continue_its_own_checkpoint(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    data = names_file(tmp_path)
    path = str(tmp_path / "c.ckpt")
    opts = ["--data", data, "--steps", "3", "--n-embd", "4", "--n-head", "1", "--block-size", "4", "--quiet"]
    assert cli(capsys, monkeypatch, "train", *opts, "--stop-after", "1", "--samples", "0", "--out", path)[0] == 0
    code, _, err = cli(capsys, monkeypatch, "train", "--resume", path, "--out", path, "--samples", "0", "--quiet")
    assert code == 0, err
    assert checkpoint.load(path).step == 3


def test_symlinks_are_written_through_and_stay_links(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    ir = tmp_path / "g.ir"
    ir.write_text(SMALL_IR)
    target = tmp_path / "real.ir"
    target.write_text("old\n")
    link = tmp_path / "link.ir"
    os.symlink("real.ir", link)
    dangling = tmp_path / "dangling.ir"
    os.symlink("made.ir", dangling)
    for out in (link, dangling):
        code, _, err = cli(capsys, monkeypatch, "opt", str(ir), "-o", str(out))
        assert code == 0, err
        assert os.path.islink(out)
    assert parse(target.read_text()).same_as(parse(SMALL_IR))
    assert parse((tmp_path / "made.ir").read_text()).same_as(parse(SMALL_IR))
    assert os.readlink(link) == "real.ir"


def test_a_character_device_is_written_in_place_not_replaced(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    ir = tmp_path / "g.ir"
    ir.write_text(SMALL_IR)
    if os.geteuid() != 0:
        pytest.skip("making a device node (a copy of /dev/null) needs root")
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    for args in (["opt", str(ir), "-o", str(dev)], ["grad", str(ir), "--wrt", "x", "-o", str(dev)]):
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == 0, err
        st = os.stat(dev)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    data = names_file(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "train", "--data", data, *TINY, "--out", str(dev), "--log", str(dev))
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(dev).st_mode)


def test_a_full_disk_is_an_error(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    ir = tmp_path / "g.ir"
    ir.write_text(SMALL_IR)
    code, _, err = cli(capsys, monkeypatch, "opt", str(ir), "-o", "/dev/full")
    assert code == 1 and "/dev/full" in err and "No space" in err
    code, _, err = cli(capsys, monkeypatch, "train", "--data", names_file(tmp_path), *TINY, "--out", "/dev/full")
    assert code == 1 and "No space" in err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    # standard output on a full disk (a real process: its stdout is the device)
    r = subprocess.run([sys.executable, "-m", "gptir.cli", "opt", str(ir)], stdout=open("/dev/full", "w"),
                       stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "No space" in r.stderr and "Traceback" not in r.stderr


def test_train_checks_its_outputs_before_the_first_step(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    elif os.path.isdir("/sys") and not os.access("/sys", os.W_OK | os.X_OK) or _unwritable("/sys"):
        ro = "/sys"  # root may write into any mode-555 folder, but not into sysfs
    else:
        pytest.skip("no folder here that this user cannot write")
    log = tmp_path / "log.jsonl"
    for opt in ("--out", "--log"):
        code, _, err = cli(capsys, monkeypatch, "train", "--data", names_file(tmp_path), *TINY,
                           opt, os.path.join(str(ro), "x"), *(["--out", str(tmp_path / "o.ckpt")] if opt == "--log"
                                                               else ["--log", str(log)]))
        assert code == 1 and "cannot be written" in err
        assert "step" not in capsys.readouterr().err
        assert not log.exists() and not (tmp_path / "o.ckpt").exists()  # nothing ran, nothing was written


def _unwritable(folder: str) -> bool:
    try:
        os.close(os.open(os.path.join(folder, ".gptir-probe"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return True
    os.unlink(os.path.join(folder, ".gptir-probe"))
    return False


KILL_LOOP = """
import sys
from gptir import checkpoint
state = checkpoint.load(sys.argv[1])
print("ready", flush=True)
while True:
    checkpoint.save(sys.argv[2], state)
"""


def test_kill_9_during_checkpoint_writes_leaves_nothing_behind(tmp_path: Any, ckpt: str) -> None:
    out = str(tmp_path / "live.ckpt")
    leftovers: list[str] = []
    env = dict(os.environ, PYTHONPATH=ROOT)
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", KILL_LOOP, ckpt, out], stdout=subprocess.PIPE, env=env)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        checkpoint.load(out)  # whatever the moment of the kill: the old file or the new one, never half
        leftovers += [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    # the next write of the file removes any temporary a killed write left
    checkpoint.save(out, checkpoint.load(ckpt))
    assert sorted(os.listdir(tmp_path)) == ["live.ckpt"]
    assert checkpoint.load(out).step == checkpoint.load(ckpt).step


def test_stale_temporaries_are_named_after_their_file_and_removed(tmp_path: Any) -> None:
    target = tmp_path / "x.ir"
    stale = tmp_path / ".x.ir.gptir-999999999.tmp"  # no such process
    stale.write_text("half")
    other = tmp_path / ".y.ir.gptir-999999999.tmp"  # another file's: not ours to remove
    other.write_text("half")
    fileio.atomic_write_text(str(target), "new\n")
    assert target.read_text() == "new\n" and not stale.exists() and other.exists()
    long = tmp_path / ("n" * 250)
    fileio.atomic_write_text(str(long), "ok\n")  # a temporary name never exceeds the file-name limit
    assert long.read_text() == "ok\n"


def test_data_is_checked_at_the_start_by_the_checkpoint_rules(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    data = names_file(tmp_path, "emma\nol\x00ivia\n")
    out = tmp_path / "c.ckpt"
    code, _, err = cli(capsys, monkeypatch, "train", "--data", data, *TINY, "--out", str(out))
    assert code == 1 and "line 2" in err and "NUL" in err and not out.exists()
    from gptir.data import DataError, Tokenizer

    with pytest.raises(DataError):
        Tokenizer(("a", "\x00"), 2)  # the same rule a checkpoint's vocabulary is held to


# == unbounded resources =======================================================================================


def test_fold_leaves_big_work_for_run_time(monkeypatch: Any) -> None:
    from gptir import passes

    evaluated: list[str] = []
    real = passes.evaluate_node
    monkeypatch.setattr(passes, "evaluate_node", lambda node, args: (evaluated.append(node.name), real(node, args))[1])
    g = parse("graph g {\n  %c = const [1.0, 2.0] : f64[2]\n"
              "  %b = broadcast[shape=(100000000, 2)] %c : f64[100000000,2]\n"
              "  %k = concat[axis=0] %b, %b : f64[200000000,2]\n"
              "  %r = reshape[shape=(200000000,)] %b : f64[200000000]\n"
              "  %x = const 2.0 : f64[]\n  %xb = broadcast[shape=(1000000, 1000000)] %x : f64[1000000,1000000]\n"
              "  %s = sum[axes=(0, 1), keepdims=false] %xb : f64[]\n"
              "  %small = sum[axes=(0,), keepdims=false] %c : f64[]\n"
              "  output k = %k\n  output r = %r\n  output s = %s\n  output small = %small\n}\n")
    out = fold(g)
    assert set(evaluated) == {"b", "xb", "small"}  # views cost nothing; concat, the copying reshape, the sum wait
    assert out.nodes["small"].op == "const" and float(out.nodes["small"].attrs["value"]) == 3.0
    assert {out.nodes[n].op for n in ("k", "r", "s")} == {"concat", "reshape", "sum"}


def test_programs_that_cannot_fit_are_refused_naming_the_node(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    ir = tmp_path / "big.ir"
    ir.write_text("graph g {\n  in %x : f64[]\n  %huge = broadcast[shape=(1000000, 1000000)] %x : f64[1000000,1000000]\n"
                  "  %s = sum[axes=(0, 1), keepdims=false] %huge : f64[]\n  output s = %s\n}\n")
    for backend in ("interp", "compiled"):
        code, _, err = cli(capsys, monkeypatch, "exec", str(ir), "--input", "x=1", "--backend", backend)
        assert code == 1 and "%huge" in err and "7.3 TiB" in err and "GPTIR_MAX_MEMORY" in err
    small = tmp_path / "v.ir"
    small.write_text("graph g {\n  in %x : f64[100]\n  %y = mul %x, %x : f64[100]\n  output y = %y\n}\n")
    vec = json.dumps([1.0] * 100)
    monkeypatch.setenv("GPTIR_MAX_MEMORY", "500")  # the limit is the user's to lower or raise
    code, _, err = cli(capsys, monkeypatch, "exec", str(small), "--input", f"x={vec}")
    assert code == 1 and "%x" in err and "500 bytes" in err
    monkeypatch.setenv("GPTIR_MAX_MEMORY", "1200")  # x and y fit apart, not together
    code, _, err = cli(capsys, monkeypatch, "exec", str(small), "--input", f"x={vec}")
    assert code == 1 and "at once" in err and "%y" in err
    monkeypatch.setenv("GPTIR_MAX_MEMORY", "4000")
    assert cli(capsys, monkeypatch, "exec", str(small), "--input", f"x={vec}")[0] == 0


def test_batch_sizes_that_cannot_fit_are_refused_up_front(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    for args in (["train", "--batch", "100000000", "--steps", "1", "--quiet"],
                 ["trace", "microgpt", "--batch", "100000000", "-o", str(tmp_path / "t.ir")],
                 ["train", "--block-size", "1000000", "--n-embd", "4", "--n-head", "1", "--quiet"],
                 ["trace", f"{NEURON}:neuron", "--arg", "x=f64[]", "--param", "w1=f64[100000000000]"]):
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == 1 and "memory limit" in err and "GPTIR_MAX_MEMORY" in err, err
    from gptir import train as T
    from gptir.budget import peak
    from gptir.model import GPTConfig
    from gptir.optim import AdamConfig

    cfg = GPTConfig(vocab_size=27)  # the estimate bounds the real program from above
    assert T.step_memory(cfg, 16, 32) >= peak(T.step_graph(cfg, AdamConfig(), 10, 16, 32))[2]


def _bomb(path: str, name: str = "w", megabytes: int = 64) -> None:
    """An .npz whose member inflates to ``megabytes`` MB from a few kB."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(megabytes << 17), allow_pickle=False)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name + ".npy", buf.getvalue())


def test_zip_bombs_are_refused_before_decompressing(capsys: Any, monkeypatch: Any, tmp_path: Any, ckpt: str) -> None:
    bomb = str(tmp_path / "bomb.npz")
    _bomb(bomb)
    assert os.path.getsize(bomb) < 200_000
    monkeypatch.setenv("GPTIR_MAX_ARRAY_BYTES", str(16 << 20))
    ir = tmp_path / "w.ir"
    ir.write_text("graph g {\n  param %w : f64[8388608]\n  output w = %w\n}\n")
    (tmp_path / "big.ir").write_text("graph g {\n  param %w : f64[1000000000]\n  output w = %w\n}\n")
    (tmp_path / "h.ir").write_text('graph g {\n  params "bomb.npz"\n  param %w : f64[8388608]\n  output w = %w\n}\n')
    runs = [(["exec", str(ir), "--params", bomb], 1), (["exec", str(tmp_path / "h.ir")], 1),
            (["sample", "--checkpoint", bomb], 1), (["diff", bomb, ckpt], 2),
            (["train", "--resume", bomb, "--quiet"], 1)]
    for args, status in runs:
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == status and "GPTIR_MAX_ARRAY_BYTES" in err, (args, err)
    # within the limit, a checkpoint's arrays are checked against the model before they are read
    monkeypatch.delenv("GPTIR_MAX_ARRAY_BYTES")
    with zipfile.ZipFile(ckpt) as src, zipfile.ZipFile(tmp_path / "odd.ckpt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "params/wte.npy":
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.zeros((3, 3)), allow_pickle=False)
                data = buf.getvalue()
            dst.writestr(info, data)
    with pytest.raises(checkpoint.CheckpointError, match="params/wte is float64"):
        checkpoint.load(str(tmp_path / "odd.ckpt"))
    # a header that declares more data than the member holds
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 9,)})
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as zf:
        zf.writestr("w.npy", buf.getvalue() + b"\0" * 64)
    code, _, err = cli(capsys, monkeypatch, "exec", str(tmp_path / "big.ir"), "--params", str(tmp_path / "liar.npz"))
    assert code == 1 and "declares" in err


def test_devices_and_huge_files_as_inputs_are_bounded(capsys: Any, monkeypatch: Any, tmp_path: Any, ckpt: str) -> None:
    ir = tmp_path / "g.ir"
    ir.write_text(SMALL_IR)
    runs = [(["train", "--data", "/dev/zero", "--quiet"], 1), (["sample", "--checkpoint", "/dev/zero"], 1),
            (["diff", str(ir), "/dev/zero"], 2), (["exec", "/dev/zero"], 1), (["opt", "/dev/zero"], 1)]
    for args, status in runs:
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == status, (args, err)
    # a checkpoint whose recorded data file is /dev/zero
    state = checkpoint.load(ckpt)
    from dataclasses import replace

    odd = str(tmp_path / "zero.ckpt")
    checkpoint.save(odd, replace(state, data="/dev/zero", num_steps=state.num_steps + 2))
    code, _, err = cli(capsys, monkeypatch, "train", "--resume", odd, "--quiet", "--samples", "0")
    assert code == 1 and "GPTIR_MAX_LINE_CHARS" in err
    # a big data file is read line by line within its limit; over it, one clear error
    monkeypatch.setenv("GPTIR_MAX_DATA_BYTES", "20")
    code, _, err = cli(capsys, monkeypatch, "train", "--data", names_file(tmp_path, "emma\n" * 10), "--quiet")
    assert code == 1 and "GPTIR_MAX_DATA_BYTES" in err
    monkeypatch.setenv("GPTIR_MAX_TEXT_BYTES", "20")
    code, _, err = cli(capsys, monkeypatch, "opt", str(ir))
    assert code == 1 and "GPTIR_MAX_TEXT_BYTES" in err


def test_huge_names_are_shortened_in_messages(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    name = "v" * 1_000_000
    ir = tmp_path / "n.ir"
    ir.write_text(f"graph g {{\n  in %x : f64[]\n  %y = mul %x, %x : f64[]\n  output y = %{name}\n}}\n")
    for args in (["exec", str(ir), "--input", "x=1"], ["opt", str(ir)], ["diff", str(ir), str(ir)]):
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code in (1, 2) and len(err) < 1000 and "vvv..." in err


# == wrong answers and missing errors ===========================================================================


INDEX_IR = """graph g {
  in %t : f64[3,2]
  in %i : i64[2]
  in %u : f64[2,2]
  %g = gather %t, %i : f64[2,2]
  %s = scatter_add[size=3] %u, %i : f64[3,2]
  output g = %g
  output s = %s
}
"""


@pytest.mark.parametrize("bad", [[-1, 0], [0, 3], [2, 99]])
def test_gather_and_scatter_add_indices_must_be_in_range(bad: list[int]) -> None:
    g = parse(INDEX_IR)
    t, u = np.arange(6.0).reshape(3, 2), np.ones((2, 2))
    good = interp_run(g, {"t": t, "i": np.array([2, 0]), "u": u})
    assert good["g"].tolist() == [[4.0, 5.0], [0.0, 1.0]] and good["s"].tolist() == [[1, 1], [0, 0], [1, 1]]
    inputs = {"t": t, "i": np.array(bad), "u": u}
    with pytest.raises(GptirError, match=r"%g = gather.*outside \[0, 3\)"):
        interp_run(g, inputs)
    with pytest.raises(GptirError, match=r"%g = gather.*outside \[0, 3\)"):
        compile_graph(g)(inputs)
    only_scatter = parse(INDEX_IR.replace("  %g = gather %t, %i : f64[2,2]\n", "").replace("  output g = %g\n", ""))
    with pytest.raises(GptirError, match=r"%s = scatter_add.*outside \[0, 3\)"):
        interp_run(only_scatter, inputs)
    with pytest.raises(GptirError, match=r"%s = scatter_add.*outside \[0, 3\)"):
        compile_graph(only_scatter)(inputs)


def test_input_numbers_are_exact_and_empty_shapes_are_accepted(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    ir = tmp_path / "e.ir"
    ir.write_text("graph g {\n  in %x : f64[0,3]\n  in %n : i64[2,0]\n  in %v : f64[3]\n"
                  "  %s = sum[axes=(0, 1), keepdims=false] %x : f64[]\n"
                  "  output s = %s\n  output n = %n\n  output v = %v\n}\n")
    for backend in ("interp", "compiled"):
        code, out, err = cli(capsys, monkeypatch, "exec", str(ir), "--input", "x=[]", "--input", "n=[[], []]",
                             "--input", "v=[1e308, 5e-324, -0.0]", "--backend", backend)
        assert code == 0, err
        assert out == "s = 0.0\nn = [[], []]\nv = [1e+308, 5e-324, -0.0]\n"
    for bad, why in (("v=[1e400,1,1]", "beyond the range of f64"), ("v=[1e-400,1,1]", "too small for f64"),
                     ("v=[-1e999,1,1]", "beyond the range")):
        code, _, err = cli(capsys, monkeypatch, "exec", str(ir), "--input", "x=[]", "--input", "n=[[],[]]",
                           "--input", bad)
        assert code == 1 and why in err
    code, _, err = cli(capsys, monkeypatch, "exec", str(ir), "--input", "x=[[]]", "--input", "n=[[],[]]",
                       "--input", "v=[1,2,3]")
    assert code == 1 and "f64[0,3]" in err  # [[]] is [1, 0], not an f64[0,3]
    code, out, _ = cli(capsys, monkeypatch, "exec", str(ir), "--input", "x=[]", "--input", "n=[[],[]]",
                       "--input", "v=[inf,-inf,0]")
    assert code == 0 and "v = [inf, -inf, 0.0]" in out


def test_options_a_checkpoint_decides_are_refused(capsys: Any, monkeypatch: Any, tmp_path: Any, ckpt: str) -> None:
    for opt in (["--n-embd", "32"], ["--n-layer", "2"], ["--seed", "1"], ["--data", names_file(tmp_path)]):
        code, _, err = cli(capsys, monkeypatch, "trace", "microgpt", "--checkpoint", ckpt, "--doc", "emma", *opt)
        assert code == 1 and opt[0] in err and "--checkpoint" in err


def test_tiny_temperatures_are_a_clear_error(capsys: Any, monkeypatch: Any, tmp_path: Any, ckpt: str) -> None:
    code, _, err = cli(capsys, monkeypatch, "sample", "--checkpoint", ckpt, "--temperature", "1e-320")
    assert code == 1 and "too small" in err
    log = tmp_path / "log"
    code, _, err = cli(capsys, monkeypatch, "train", "--data", names_file(tmp_path), *TINY, "--temperature", "1e-320",
                       "--log", str(log))
    assert code == 1 and "too small" in err and not log.exists()  # refused before training
    from gptir.sample import next_token_probs

    with pytest.raises(GptirError, match="too small"):
        next_token_probs([1e10, 0.0], 1e-300, "microgpt")
    assert next_token_probs([1.0, 1.0], 1e-300, "microgptex") == [0.5, 0.5]


def test_a_lone_surrogate_in_a_string_is_a_parse_error(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    ir = tmp_path / "s.ir"
    ir.write_text('graph g {\n  in %x : f64[] loc("m.py:\\ud800")\n  output y = %x\n}\n')
    for args, status in ((["opt", str(ir)], 1), (["diff", str(ir), str(ir)], 2), (["exec", str(ir)], 1)):
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == status and "s.ir:2:" in err and "surrogate" in err
    ok = tmp_path / "ok.ir"  # a proper pair is a character, and round-trips
    ok.write_text('graph g {\n  in %x : f64[] loc("m.py:\\ud83d\\ude00")\n  output y = %x\n}\n')
    code, out, err = cli(capsys, monkeypatch, "opt", str(ok))
    assert code == 0 and "\U0001F600" in out


MODEL_ERRORS = {
    "if_": ("def if_(x):\n    if x:\n        return x\n    return x\n", 2, "truth value"),
    "length": ("def length(x):\n    return len(x) * x\n", 2, "a traced scalar has no length"),
    "index": ("def index(x):\n    return x[5]\n", 2, "index 5 is out of range"),
    "mask": ("def mask(x):\n    return x[x > 0]\n", 2, "boolean masks"),
    "gen": ("def gen(x):\n    def g():\n        yield x\n        raise ValueError('boom')\n    return sum(g())\n", 4,
            "ValueError: boom"),
    "shapes": ("def shapes(x):\n    return x + x[0:2]\n", 2, "do not broadcast"),
    "weird": ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError\n\n"
              "def weird(x):\n    raise E()\n", 6, "E:"),
    "base": ("def base(x):\n    raise BaseException('out')\n", 2, "BaseException: out"),
}
IMPORT_ERRORS = {
    "import": ("import no_such_module_gptir\n", 1, "ModuleNotFoundError"),
    "baseclass": ("class A(object()):\n    pass\n", 1, "TypeError"),
    "metaclass": ("class M(type):\n    def __new__(m, *a):\n        raise TypeError('meta')\n\nclass A(metaclass=M):\n"
                  "    pass\n", 3, "TypeError: meta"),
    "syntax": ("def f(x:\n    return x\n", 1, "syntax error"),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS) + sorted(IMPORT_ERRORS))
def test_model_code_errors_name_the_model_file_and_line(capsys: Any, monkeypatch: Any, tmp_path: Any,
                                                        case: str) -> None:
    source, line, what = MODEL_ERRORS.get(case) or IMPORT_ERRORS[case]
    fn = case if case in MODEL_ERRORS else "f"
    if case in IMPORT_ERRORS and case != "syntax":
        source += "\n\ndef f(x):\n    return x\n"
    (tmp_path / "model.py").write_text(source)
    arg = "x=f64[]" if case in ("if_", "length") else "x=f64[3]"
    code, _, err = cli(capsys, monkeypatch, "trace", f"model.py:{fn}", "--arg", arg, cwd=str(tmp_path))
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"gptir trace: error: model.py:{line}: ") and what in err, err
