"""The CLI conventions every verb follows (gptir/cli/conventions.py): no abbreviations, defaults in --help,
the usage-error rule (exit 2) versus user errors (exit 1), a quiet exit on a closed pipe, --version and
``python -m gptir``, consistent option names, the --block-size note, the run record, the progress line,
shell completion and the versioned JSON schemas of every machine-readable output (schemas/)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import gptir
from gptir.cli import VERBS, build_parser
from gptir.cli.cmd_completion import bash_script, zsh_script
from gptir.cli.cmd_train import format_eta, progress_line
from gptir.cli.conventions import subparsers_of

from test_cli_core import NEURON_IR, PKG_ROOT, ROOT, inproc

SCHEMAS = Path(ROOT) / "schemas"
DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]


def run(*args: str, stdin: str | None = None, module: str = "gptir.cli", cwd: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(DOCS) + "\n")
    return path


@pytest.fixture(scope="module")
def ckpt(data: Path, tmp_path_factory: Any) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    r = run("train", "--data", str(data), "--steps", "3", "-n", "0", "-o", str(out), "--quiet", *SMALL)
    assert r.returncode == 0, r.stderr
    return out


def validate(doc: Any, schema: str) -> None:
    jsonschema.validate(doc, json.loads((SCHEMAS / f"{schema}.schema.json").read_text()))


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    return {"": build_parser(), **subparsers_of(build_parser())}


# -- parser conventions, walked over every verb (a verb added later is checked too) ------------------------

def test_every_verb_is_registered_and_refuses_abbreviations() -> None:
    verbs = subparsers_of(build_parser())
    assert list(verbs) == [v for v in VERBS]
    for name, p in all_parsers().items():
        assert p.allow_abbrev is False, name


def test_abbreviated_options_are_usage_errors(capsys: Any, monkeypatch: Any) -> None:
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--form", "json", stdin=NEURON_IR)
    assert code == 2 and "unrecognized arguments: --form" in err and "usage: gptir exec" in err
    code, out, err = inproc(capsys, monkeypatch, "exec", "-", "--format", "json", "--input", "x=1", stdin=NEURON_IR)
    assert code == 0 and json.loads(out)["schema"] == "gptir-exec/1"


def test_every_option_has_help_and_shows_its_default() -> None:
    for name, p in all_parsers().items():
        text = p.format_help()
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert a.help, f"gptir {name}: {a.option_strings or a.dest} has no help"
            if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in p._get_formatter()._get_help_string(a).lower(), (name, a.option_strings)
        assert "(default: None)" not in text and "(default: False)" not in text, name


def test_help_shows_defaults_of_the_options_the_issue_names() -> None:
    verbs = subparsers_of(build_parser())
    train = " ".join(verbs["train"].format_help().split())
    assert "--backend {compiled,interp,jax,native} how the training step runs: compiled" in train
    assert "native (C through the system compiler) (default: compiled)" in train
    assert "names to sample after training (--samples is the older spelling) (default: 20)" in train
    assert "sampling temperature (default: 0.5)" in train
    sample = " ".join(verbs["sample"].format_help().split())
    assert "-n K, --num K names to sample (default: 20)" in sample
    exe = " ".join(verbs["exec"].format_help().split())
    assert "(default: text)" in exe and "(default: compiled)" in exe


def test_bare_gptir_lists_the_verbs_as_a_usage_error() -> None:
    r = run()
    assert r.returncode == 2 and r.stdout == ""
    for verb in VERBS:
        assert f"    {verb}" in r.stderr
    assert "run an IR file on inputs and print its outputs" in r.stderr


def test_version_and_python_m_gptir() -> None:
    want = f"gptir {gptir.__version__}\n"
    assert gptir.__version__ == importlib.metadata.version("gptir")  # one source: pyproject reads it
    for module in ("gptir", "gptir.cli"):
        r = run("--version", module=module)
        assert (r.returncode, r.stdout, r.stderr) == (0, want, "")
    r = run("exec", "-", "--input", "x=2.0", module="gptir", stdin=NEURON_IR)
    assert (r.returncode, r.stdout) == (0, "out = 1.0\n"), r.stderr


# -- the exit-status rule -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["train", "--steps", "-5"], "argument --steps: must be at least 1, got -5"),
    (["train", "--steps", "abc"], "argument --steps: expected an integer, got 'abc'"),
    (["train", "--n-head", "0"], "argument --n-head: must be at least 1, got 0"),
    (["train", "--n-embd", "10", "--n-head", "4"], "--n-embd 10 must be a multiple of --n-head 4"),
    (["train", "--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
    (["train", "--temperature", "-1"], "argument --temperature: must be a finite number > 0"),
    (["train", "--num", "-1"], "argument -n/--num/--samples: must be at least 0, got -1"),
    (["train", "--save-every", "2"], "--save-every needs --output"),
    (["sample", "--checkpoint", "x.ckpt", "--num", "-3"], "argument -n/--num: must be at least 0"),
    (["sample", "--checkpoint", "x.ckpt", "--temperature", "0"], "argument --temperature: must be"),
    (["trace", "microgpt", "--n-embd", "0"], "argument --n-embd: must be at least 1, got 0"),
    (["trace", "microgpt", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
    (["exec", "-", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["exec", "-", "--input", "x"], "--input expects NAME=VALUE"),
    (["opt", "-", "--passes", "nope"], "unknown pass 'nope'"),
    (["completion", "fish"], "argument SHELL: invalid choice: 'fish'"),
])
def test_bad_command_lines_exit_2_with_the_verbs_usage(capsys: Any, monkeypatch: Any, args: list[str],
                                                       message: str) -> None:
    code, out, err = inproc(capsys, monkeypatch, *args, stdin=NEURON_IR)
    assert code == 2 and message in err and f"usage: gptir {args[0]}" in err and out == ""


@pytest.mark.parametrize("args, message", [
    (["exec", "no-such.ir"], "no-such.ir"),
    (["sample", "--checkpoint", "no-such.ckpt"], "no-such.ckpt"),
    (["train", "--data", "no-such.txt"], "no-such.txt"),
    (["trace", "no-such.py:f"], "no-such.py: no such file"),
])
def test_failures_on_the_input_exit_1_without_usage(capsys: Any, monkeypatch: Any, tmp_path: Path,
                                                    args: list[str], message: str) -> None:
    code, out, err = inproc(capsys, monkeypatch, *args, cwd=str(tmp_path))
    assert code == 1 and message in err and "usage:" not in err and len(err.strip().splitlines()) == 1


# -- closed pipes --------------------------------------------------------------------------------------------

def _first_line_then_close(args: list[str], stdin: str = "", lines: int = 1) -> tuple[int, str, str]:
    """Run gptir with stdout on a pipe whose reader leaves after ``lines`` lines (0: before gptir writes
    anything, as `gptir ... | true` does), like `| head -1`."""
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "gptir", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    first = "".join(p.stdout.readline() for _ in range(lines))
    p.stdout.close()  # the reader is gone
    p.stdin.write(stdin)
    p.stdin.close()
    err = p.stderr.read()
    return p.wait(timeout=300), first, err


def test_a_closed_pipe_ends_quietly(ckpt: Path, data: Path) -> None:
    # the reader leaves before gptir writes: its first write (or final flush) meets the closed pipe
    code, first, err = _first_line_then_close(["exec", "-", "--input", "x=1.5"], stdin=NEURON_IR, lines=0)
    assert (code, err) == (141, "")
    code, first, err = _first_line_then_close(["sample", "--checkpoint", str(ckpt), "--num", "50"], lines=0)
    assert (code, err) == (141, "")
    code, first, err = _first_line_then_close(["train", "--data", str(data), "--steps", "2", "-n", "50", *SMALL],
                                              lines=0)
    assert code == 141 and "rror" not in err and err.startswith("num docs: 10")  # progress, then quiet
    # `| head -1`: one line read, then the pipe closes while the rest (more than the pipe holds) is being
    # written. The IR goes out in one write; when the kernel already took part of it, that write ends
    # short without an error (exit 0), else it fails (141): quiet either way
    code, first, err = _first_line_then_close(["trace", "microgpt", "--data", str(data)], lines=1)
    assert code in (0, 141) and (err, first) == ("", "graph microgpt_loss {\n")


# -- option names -----------------------------------------------------------------------------------------

def test_output_and_sample_count_have_one_spelling_everywhere(data: Path, tmp_path: Path) -> None:
    parsers = subparsers_of(build_parser())
    for verb in ("trace", "grad", "opt", "train"):
        assert "-o" in parsers[verb]._option_string_actions and "--output" in parsers[verb]._option_string_actions
    for verb in ("train", "sample"):
        assert "-n" in parsers[verb]._option_string_actions and "--num" in parsers[verb]._option_string_actions
    backends = {v: p._option_string_actions["--backend"].default for v, p in parsers.items()
                if "--backend" in p._option_string_actions}
    assert set(backends) >= {"exec", "train", "sample"} and set(backends.values()) == {"compiled"}
    # the old spellings still work and mean the same
    outs = []
    for spelling in (["-o", "a.ckpt", "-n", "2"], ["--out", "b.ckpt", "--samples", "2"]):
        r = run("train", "--data", str(data), "--steps", "2", "--quiet", *spelling, *SMALL, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 2
    assert (tmp_path / "a.ckpt").read_bytes()[:2] == b"PK" and (tmp_path / "b.ckpt").exists()


# -- training: the --block-size note, the run record, the progress line ----------------------------------------

def test_documents_longer_than_the_block_are_counted_once_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "d.txt"
    data.write_text("\n".join(DOCS + ["a" * 100, "abcdefgh"]) + "\n")
    r = run("train", "--data", str(data), "--steps", "2", "-n", "0", *SMALL)
    assert r.returncode == 0, r.stderr
    # block 8: "a"*100, "isabella", "abigail"+... every document whose tokens (with the end marker) exceed 8
    long = sum(1 for d in DOCS + ["a" * 100, "abcdefgh"] if len(d) + 1 > 8)
    assert r.stderr.count("note:") == 1
    assert (f"gptir train: note: {long} of {len(DOCS) + 2} documents are longer than --block-size 8 and are cut "
            "to their first 8 tokens") in r.stderr
    assert "note:" not in run("train", "--data", str(data), "--steps", "1", "-n", "0", "--quiet", *SMALL).stderr
    r = run("train", "--data", str(data), "--steps", "1", "-n", "0", "--n-embd", "8", "--n-head", "2")
    assert "note: 1 of 12 documents are longer than --block-size 16" in r.stderr  # only the 100-letter one
    fits = tmp_path / "fits.txt"
    fits.write_text("\n".join(DOCS) + "\n")
    assert "note:" not in run("train", "--data", str(fits), "--steps", "1", "-n", "0").stderr


def test_the_train_log_schema_knows_every_backend() -> None:
    from gptir.train import BACKENDS

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "gptir-train-log-1.schema.json").read_text())
    assert schema["oneOf"][0]["properties"]["run"]["properties"]["backend"]["enum"] == list(BACKENDS)


def test_the_run_record_reproduces_the_run(data: Path, tmp_path: Path) -> None:
    import lark
    import numpy as np

    log = tmp_path / "log.jsonl"
    args = ["train", "--data", str(data), "--steps", "3", "-n", "2", "--log", str(log), "--seed", "7", *SMALL]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        validate(line, "gptir-train-log-1")
    record = lines[0]
    assert record["schema"] == "gptir-train-log/1"
    assert record["run"]["versions"] == {"gptir": gptir.__version__, "numpy": np.__version__,
                                         "lark": lark.__version__, "python": record["run"]["versions"]["python"]}
    assert record["run"]["command"] == ["gptir", *args]
    assert [list(x) for x in lines[1:]] == [["step", "loss"]] * 3 + [["sample", "text"]] * 2
    # the recorded command line, run again, gives the same log
    again = run(*record["run"]["command"][1:])
    assert again.returncode == 0 and again.stdout == r.stdout
    assert [json.loads(x) for x in log.read_text().splitlines()][1:] == lines[1:]


@pytest.mark.parametrize("width", [1, 8, 20, 33, 40, 60, 80, 200])
def test_the_progress_line_never_wraps(width: int) -> None:
    line = progress_line(512, 1000, 2.345678, 1234.5, 3725.0, width)
    assert len(line) <= max(width - 1, 1)
    if 33 <= width < 55:
        assert line in ("step 512/1000 | loss 2.3457 | ETA 1:02:05", "step 512/1000 | ETA 1:02:05")
    if width >= 60:
        assert line.startswith("[") and "step 512/1000 | loss 2.3457 | ETA 1:02:05" in line
    if width >= 200:
        assert line == "[" + "#" * 15 + "-" * 15 + "] step 512/1000 | loss 2.3457 | ETA 1:02:05 | 1234.5 steps/s"


def test_eta_format() -> None:
    assert [format_eta(s) for s in (0, 7.4, 59.6, 754, 7500)] == ["0:00", "0:07", "1:00", "12:34", "2:05:00"]


def test_the_plain_progress_lines_carry_an_eta(data: Path) -> None:
    r = run("train", "--data", str(data), "--steps", "10", "-n", "0", *SMALL)
    lines = [x for x in r.stderr.splitlines() if x.startswith("step")]
    assert len(lines) == 10 and all(" | ETA " in x for x in lines) and lines[-1].startswith("step   10/10 | loss ")


# -- shell completion -------------------------------------------------------------------------------------

def _bash_complete(script: str, words: list[str]) -> list[str]:
    code = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) if w else chr(34) * 2 for w in words)}); "
            f"COMP_CWORD={len(words) - 1}; _gptir; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "--norc", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_comes_from_the_parser() -> None:
    r = run("completion", "bash")
    assert r.returncode == 0 and r.stdout == bash_script(build_parser())
    script = r.stdout
    assert _bash_complete(script, ["gptir", ""]) == [*VERBS, "-h", "--help", "--version"]
    assert _bash_complete(script, ["gptir", "ex"]) == ["exec", "export"]
    assert _bash_complete(script, ["gptir", "exe"]) == ["exec"]
    assert _bash_complete(script, ["gptir", "exec", "--fo"]) == ["--format"]
    assert _bash_complete(script, ["gptir", "exec", "--format", ""]) == ["text", "json"]
    assert _bash_complete(script, ["gptir", "train", "--recipe", "microgpte"]) == ["microgptex"]
    assert _bash_complete(script, ["gptir", "completion", ""]) == ["bash", "zsh"]
    for verb, p in subparsers_of(build_parser()).items():  # every option of every verb
        assert set(_bash_complete(script, ["gptir", verb, "-"])) == set(p._option_string_actions)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (the script's text is still checked)")
def test_zsh_completion_loads(tmp_path: Path) -> None:
    path = tmp_path / "_gptir"
    path.write_text(zsh_script(build_parser()))
    r = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["zsh", "-fc", f"autoload -U compinit && compinit -u -d {tmp_path}/zcd && source {path} "
                        "&& print -r -- $_comps[gptir]"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "_gptir\n"), r.stderr


def test_zsh_completion_text() -> None:
    script = run("completion", "zsh").stdout
    assert script.startswith("#compdef gptir\n") and script == zsh_script(build_parser())
    for verb in VERBS:
        assert f"        '{verb}:" in script and f"        {verb})" in script
    assert "'--format[text - NAME = VALUE per output, one per line;" in script and ":format:(text json)'" in script


# -- versioned JSON schemas ---------------------------------------------------------------------------------

def test_every_schema_file_is_a_valid_json_schema() -> None:
    files = sorted(SCHEMAS.glob("*.schema.json"))
    assert [f.name for f in files] == [f"gptir-{n}-1.schema.json" for n in
                                       ("diff", "diff-history", "exec", "opt", "sample", "train-log")]
    for f in files:
        jsonschema.Draft202012Validator.check_schema(json.loads(f.read_text()))


def test_exec_opt_sample_and_diff_json_match_their_schemas(ckpt: Path, tmp_path: Path, capsys: Any,
                                                          monkeypatch: Any) -> None:
    code, out, _ = inproc(capsys, monkeypatch, "exec", "-", "--input", "x=nan", "--format", "json", stdin=NEURON_IR)
    validate(json.loads(out), "gptir-exec-1")
    with pytest.raises(jsonschema.ValidationError):  # the schema is not vacuous
        validate({**json.loads(out), "schema": "gptir-exec/2"}, "gptir-exec-1")
    code, out, _ = inproc(capsys, monkeypatch, "opt", "-", "--format", "json", stdin=NEURON_IR)
    doc = json.loads(out)
    validate(doc, "gptir-opt-1")
    assert doc["ir"].startswith("graph neuron {") and [p["pass"] for p in doc["passes"]] == ["cse", "simplify",
                                                                                            "fold", "dce"]
    code, out, _ = inproc(capsys, monkeypatch, "opt", "-", "--format", "json", "-o", str(tmp_path / "o.ir"),
                          stdin=NEURON_IR)
    doc = json.loads(out)
    validate(doc, "gptir-opt-1")
    assert doc["ir"] is None and (tmp_path / "o.ir").read_text().startswith("graph neuron {")
    code, out, _ = inproc(capsys, monkeypatch, "sample", "--checkpoint", str(ckpt), "-n", "3", "--format", "json")
    doc = json.loads(out)
    validate(doc, "gptir-sample-1")
    code, text, _ = inproc(capsys, monkeypatch, "sample", "--checkpoint", str(ckpt), "-n", "3")
    assert doc["samples"] == text.splitlines() and doc["step"] == 3
    (tmp_path / "a.ir").write_text(NEURON_IR)
    (tmp_path / "b.ir").write_text(NEURON_IR.replace("= 0.5", "= 0.25"))
    code, out, _ = inproc(capsys, monkeypatch, "diff", "--format", "json", str(tmp_path / "a.ir"),
                          str(tmp_path / "b.ir"))
    assert code == 1
    validate(json.loads(out), "gptir-diff-1")
    dumps = tmp_path / "dumps"
    code, _, err = inproc(capsys, monkeypatch, "opt", "-", "--dump-dir", str(dumps), "-o", "-", stdin=NEURON_IR)
    assert code == 0, err
    code, out, _ = inproc(capsys, monkeypatch, "diff", "--format", "json", str(dumps))
    validate(json.loads(out), "gptir-diff-history-1")


def test_the_readmes_error_example_is_what_gptir_prints() -> None:
    readme = (Path(ROOT) / "README.md").read_text()
    block = readme[readme.index("$ gptir exec examples/broken.ir\n"):]
    block = block[:block.index("```")]
    want = block.split("\n", 1)[1]
    r = run("exec", "examples/broken.ir")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", want)


def test_the_command_runs_blas_on_one_thread_unless_a_count_is_chosen() -> None:
    from gptir.cli import BLAS_THREAD_VARIABLES, blas_threads_default

    env: dict[str, str] = {"PATH": "/bin"}
    blas_threads_default(env)
    assert env == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "1"}
    for var in BLAS_THREAD_VARIABLES:
        env = {var: "4"}
        blas_threads_default(env)
        assert env == {var: "4"}, var
