"""`gptir train`, `gptir sample` and `gptir trace microgpt` end to end, through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]


def gptir(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gptir.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(DOCS) + "\n")
    return path


SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]


def read_log(path: Path) -> list[dict]:
    """The step and sample records (the first line describes the run)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert "run" in records[0]
    return records[1:]


def test_train_prints_samples_and_logs(data, tmp_path):
    log, ckpt = tmp_path / "log.jsonl", tmp_path / "run.ckpt"
    r = gptir("train", "--data", str(data), "--steps", "6", "--samples", "4", "--log", str(log), "--out", str(ckpt),
              *SMALL)
    assert r.returncode == 0, r.stderr
    names = r.stdout.splitlines()
    assert len(names) == 4 and all(set(n) <= set("".join(DOCS)) for n in names)
    assert "num docs: 10 | vocab size:" in r.stderr and "step    6/6" in r.stderr
    records = read_log(log)
    assert [rec["step"] for rec in records[:6]] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(rec["loss"], float) and rec["loss"] > 0 for rec in records[:6])
    assert records[6:] == [{"sample": i + 1, "text": n} for i, n in enumerate(names)]
    run = json.loads(log.read_text().splitlines()[0])["run"]
    assert run["recipe"] == "microgpt" and run["seed"] == 42 and run["model"]["n_embd"] == 8
    assert run["data"] == str(data.resolve())
    # sampling from the checkpoint continues the same stream: the same names
    s = gptir("sample", "--checkpoint", str(ckpt), "--num", "4")
    assert s.returncode == 0, s.stderr
    assert s.stdout.splitlines() == names


def test_resume_continues_bit_identically(data, tmp_path):
    full, part, rest = tmp_path / "full.jsonl", tmp_path / "part.jsonl", tmp_path / "rest.jsonl"
    ckpt = tmp_path / "mid.ckpt"
    assert gptir("train", "--data", str(data), "--steps", "8", "--samples", "2", "--log", str(full),
                 *SMALL).returncode == 0
    r = gptir("train", "--data", str(data), "--steps", "8", "--stop-after", "3", "--samples", "0", "--out", str(ckpt),
              "--log", str(part), *SMALL)
    assert r.returncode == 0, r.stderr
    r = gptir("train", "--data", str(data), "--resume", str(ckpt), "--steps", "8", "--samples", "2", "--log", str(rest))
    assert r.returncode == 0, r.stderr
    assert read_log(part) + read_log(rest) == read_log(full)  # losses compared exactly, as JSON floats


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    for args in (["sample", "--checkpoint", str(bad)], ["train", "--resume", str(bad)]):
        r = gptir(*args)
        assert r.returncode == 1
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "not a usable gptir checkpoint" in r.stderr


def test_bad_usage_exits_2(data):
    r = gptir("train", "--data", str(data), "--steps", "many")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_missing_data_file_is_a_user_error(tmp_path):
    r = gptir("train", "--data", str(tmp_path / "missing.txt"))
    assert r.returncode == 1 and "cannot read data file" in r.stderr and "Traceback" not in r.stderr


def test_dump_ir_every(data, tmp_path):
    dump = tmp_path / "dump"
    r = gptir("train", "--data", str(data), "--steps", "4", "--samples", "0", "--dump-ir-every", "2",
              "--dump-dir", str(dump), *SMALL)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dump.iterdir()) == ["step-0000.ir", "step-0002.ir", "step-0004.ir"]
    from gptir.text import load_graph
    a, b = load_graph(str(dump / "step-0000.ir")), load_graph(str(dump / "step-0002.ir"))
    assert list(a.nodes) == list(b.nodes) and set(a.params) == set(b.params)
    assert any(a.params[k].tobytes() != b.params[k].tobytes() for k in a.params)


def test_traced_loss_matches_the_training_loss(data, tmp_path):
    log, ir, params = tmp_path / "log.jsonl", tmp_path / "loss.ir", tmp_path / "p.npz"
    assert gptir("train", "--data", str(data), "--steps", "1", "--samples", "0", "--log", str(log),
                 *SMALL).returncode == 0
    first_loss = read_log(log)[0]["loss"]
    r = gptir("trace", "microgpt", "--data", str(data), *SMALL, "--params-out", str(params), "-o", str(ir))
    assert r.returncode == 0, r.stderr
    r = gptir("exec", str(ir), "--params", str(params), "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["outputs"]["loss"]
    assert out["value"] == first_loss
    r = gptir("trace", "microgpt", "--data", str(data), *SMALL, "--train-step", "-o", str(tmp_path / "step.ir"))
    assert r.returncode == 0, r.stderr
    assert "backward" in (tmp_path / "step.ir").read_text()


def test_traced_f32_loss_matches_the_f32_training_loss(data, tmp_path):
    log, ir, ckpt = tmp_path / "log.jsonl", tmp_path / "loss32.ir", tmp_path / "c.ckpt"
    assert gptir("train", "--data", str(data), "--steps", "1", "--samples", "0", "--log", str(log), "--dtype",
                 "f32", "--out", str(ckpt), *SMALL).returncode == 0
    first_loss = read_log(log)[0]["loss"]
    r = gptir("trace", "microgpt", "--data", str(data), *SMALL, "--dtype", "f32", "-o", str(ir))
    assert r.returncode == 0, r.stderr
    assert "f32[" in ir.read_text() and "f64[" not in ir.read_text()
    out = json.loads(gptir("exec", str(ir), "--format", "json").stdout)["outputs"]["loss"]
    assert out["value"] == first_loss
    r64 = gptir("trace", "microgpt", "--data", str(data), *SMALL, "-o", str(tmp_path / "loss64.ir"))
    assert r64.returncode == 0, r64.stderr
    out64 = json.loads(gptir("exec", str(tmp_path / "loss64.ir"), "--format", "json").stdout)["outputs"]["loss"]
    assert out64["value"] != first_loss and abs(out64["value"] - first_loss) < 1e-5
    r = gptir("trace", "microgpt", "--checkpoint", str(ckpt), "--doc", "emma", "--dtype", "f64")
    assert r.returncode == 1 and "--dtype cannot be combined with --checkpoint" in r.stderr


@pytest.mark.parametrize("extra, message", [
    (["--out", "/nonexistent-gptir/run.ckpt"], "its folder does not exist"),
    (["--log", "/nonexistent-gptir/log.jsonl"], "its folder does not exist"),
])
def test_bad_options_fail_before_training(data, extra, message):
    r = gptir("train", "--data", str(data), "--steps", "1000", *extra)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert "step" not in r.stderr  # refused before any training step


@pytest.mark.parametrize("extra, message", [
    (["--temperature", "0"], "argument --temperature: must be a finite number > 0, got 0"),
    (["--n-embd", "6", "--n-head", "4"], "--n-embd 6 must be a multiple of --n-head 4"),
])
def test_bad_option_values_are_usage_errors(data, extra, message):
    r = gptir("train", "--data", str(data), "--steps", "1000", *extra)
    assert r.returncode == 2 and message in r.stderr and "usage: gptir train" in r.stderr
    assert "loss" not in r.stderr  # refused before any training step


def test_traced_loss_with_a_checkpoint_matches_the_next_training_step(data, tmp_path):
    from gptir.train import start
    ckpt, log, ir, params = tmp_path / "c.ckpt", tmp_path / "rest.jsonl", tmp_path / "l.ir", tmp_path / "p.npz"
    assert gptir("train", "--data", str(data), "--steps", "6", "--stop-after", "3", "--samples", "0", "--out",
                 str(ckpt), *SMALL).returncode == 0
    _, shuffled = start(DOCS, seed=42, num_steps=6, n_embd=8, n_head=2, block_size=8)
    doc = shuffled[3]  # the document of step 4
    r = gptir("trace", "microgpt", "--checkpoint", str(ckpt), "--doc", doc, "--params-out", str(params),
              "-o", str(ir))
    assert r.returncode == 0, r.stderr
    exec_loss = json.loads(gptir("exec", str(ir), "--params", str(params), "--format", "json").stdout)
    assert gptir("train", "--data", str(data), "--resume", str(ckpt), "--samples", "0", "--log",
                 str(log)).returncode == 0
    step4 = read_log(log)[0]
    assert step4["step"] == 4 and exec_loss["outputs"]["loss"]["value"] == step4["loss"]


def test_resume_keeps_the_checkpoint_settings(data, tmp_path):
    ckpt, log = tmp_path / "c.ckpt", tmp_path / "log.jsonl"
    assert gptir("train", "--data", str(data), "--recipe", "microgptex", "--steps", "6", "--stop-after", "2",
                 "--samples", "0", "--out", str(ckpt), *SMALL).returncode == 0
    r = gptir("train", "--resume", str(ckpt), "--n-embd", "16", "--lr", "0.5")
    assert r.returncode == 2 and "--n-embd, --lr cannot be changed when resuming" in r.stderr
    # no --data: the checkpoint remembers where its documents came from
    r = gptir("train", "--resume", str(ckpt), "--samples", "1", "--log", str(log))
    assert r.returncode == 0, r.stderr
    first = json.loads(log.read_text().splitlines()[0])["run"]
    assert first["recipe"] == "microgptex" and first["start_step"] == 2
    assert [rec["step"] for rec in read_log(log)[:-1]] == [3, 4, 5, 6]


@pytest.mark.parametrize("lr, message, code", [("nan", "argument --lr: must be a finite number > 0", 2),
                                               ("1e300", "training diverged at step", 1)])
def test_divergence_and_nonsense_rates_are_clear_errors(data, tmp_path, lr, message, code):
    log = tmp_path / "log.jsonl"
    r = gptir("train", "--data", str(data), "--steps", "5", "--lr", lr, "--log", str(log), *SMALL)
    assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr
    for line in log.read_text().splitlines() if log.exists() else []:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON log"))


@pytest.mark.parametrize("extra, message, code", [
    (["--steps", "10", "--stop-after", "0"], "argument --stop-after: must be at least 1, got 0", 2),
    (["--dump-dir", "x"], "go together", 2),
    (["--save-every", "2"], "--save-every needs --output", 2),
    (["--log", "-"], "--log needs a file name", 2),
    (["-o", "-"], "--output needs a file name", 2),
    (["--n-embd", "4000", "--n-layer", "200"], "gptir trains models of up to", 1),
])
def test_contradictory_or_impossible_options(data, extra, message, code):
    r = gptir("train", "--data", str(data), *extra)
    assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr


def test_training_data_from_stdin(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gptir.cli", "train", "--data", "-", "--steps", "3", "--samples", "2",
                        "--quiet", *SMALL], input="\n".join(DOCS) + "\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2


def test_resume_that_would_train_nothing_is_refused(data, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    assert gptir("train", "--data", str(data), "--steps", "6", "--stop-after", "4", "--samples", "0", "--out",
                 str(ckpt), *SMALL).returncode == 0
    r = gptir("train", "--resume", str(ckpt), "--steps", "3")
    assert r.returncode == 1 and "already at step 4" in r.stderr


def test_dump_dir_with_earlier_dumps_is_refused(data, tmp_path):
    dump = tmp_path / "d"
    args = ["train", "--data", str(data), "--steps", "2", "--samples", "0", "--dump-ir-every", "1",
            "--dump-dir", str(dump), *SMALL]
    assert gptir(*args).returncode == 0
    r = gptir(*args)
    assert r.returncode == 1 and "already holds dumps" in r.stderr
