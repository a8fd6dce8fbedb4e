"""Packaging: the sdist is complete (tests pass from it), the wheel is lean, a ``pip install --target``
install parses IR (the grammar is package data), and the version has one source.

The sdist and wheel are built once per session with ``python -m build --no-isolation`` from the test
environment's setuptools, and installed with ``pip --no-index --no-deps``: no network. Inside the test run
from the unpacked sdist (GPTIR_SDIST_TEST=1) these tests skip, so the check does not recurse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import gptir

ROOT = Path(__file__).resolve().parents[1]
NESTED = os.environ.get("GPTIR_SDIST_TEST") == "1"
pytestmark = pytest.mark.skipif(NESTED, reason="inside the test run from the unpacked sdist")
# the tests that depend on files the sdist must carry: conftest, tests/data, examples, grammar, schemas
# (the whole suite passes there too; these are the ones whose files the sdist must carry, kept few for time)
FROM_SDIST = ["tests/test_text.py", "tests/test_parity.py",
              "tests/test_cli_core.py::test_trace_prints_readable_ir", "tests/test_cli_core.py::test_trace_pipe_exec",
              "tests/test_cli_conventions.py::test_every_schema_file_is_a_valid_json_schema",
              "tests/test_cli_conventions.py::test_the_readmes_error_example_is_what_gptir_prints"]
IR = "graph g {\n  in %x : f64[]\n  %y = mul %x, %x : f64[]\n  output y = %y\n}\n"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: Any) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")  # build makes the wheel from the sdist
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="session")
def target(dist: dict[str, Path], tmp_path_factory: Any) -> Path:
    folder = tmp_path_factory.mktemp("target")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--target", str(folder), str(dist["wheel"])], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return folder


def _isolated_env(pythonpath: Path) -> dict[str, str]:
    # PYTHONSAFEPATH: the working folder (a source tree) is not put on sys.path, so gptir comes from
    # ``pythonpath`` only; the test environment still provides lark, numpy, pytest, ...
    return dict(os.environ, PYTHONPATH=str(pythonpath), PYTHONSAFEPATH="1")


def test_the_wheel_holds_the_package_and_its_grammar_only(dist: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    assert "gptir/grammars/gptir.lark" in names and "gptir/__main__.py" in names and "gptir/cli/conventions.py" in names
    assert {n.split("/")[0] for n in names} == {"gptir", f"gptir-{gptir.__version__}.dist-info"}
    assert f"gptir-{gptir.__version__}.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.endswith((".pyc", ".ir", ".json")) or "/tests/" in n]


def test_a_target_install_parses_and_runs(target: Path, tmp_path: Path) -> None:
    (tmp_path / "g.ir").write_text(IR)
    code = ("import gptir, importlib.resources as r; print(gptir.__file__); "
            "print(r.files('gptir.grammars').joinpath('gptir.lark')); "
            "print(gptir.parse(open('g.ir').read()).name)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=_isolated_env(target), timeout=120)
    assert r.returncode == 0, r.stderr
    module, grammar, name = r.stdout.splitlines()
    assert module.startswith(str(target)) and grammar.startswith(str(target)) and name == "g"
    script = target / "bin" / "gptir"  # pip puts the console script there, for this interpreter
    for argv in ([sys.executable, "-m", "gptir", "exec", "g.ir", "--input", "x=3.0"],
                 [str(script), "exec", "g.ir", "--input", "x=3.0"]):
        r = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=_isolated_env(target), timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (0, "y = 9.0\n", "")


def _tracked(folder: str) -> list[str]:
    r = subprocess.run(["git", "-C", str(ROOT), "ls-files", folder], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("not a git checkout: the list of tracked files is unknown")
    return [line for line in r.stdout.splitlines() if line]


def test_the_sdist_holds_every_tracked_test_example_grammar_benchmark_and_schema(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        prefix = f"gptir-{gptir.__version__}/"
        names = {m.name[len(prefix):] for m in tar.getmembers() if m.isfile()}
    want = {"LICENSE", "README.md", "DEVELOPERS.md", "pyproject.toml"}
    for folder in ("gptir", "tests", "examples", "grammars", "benchmarks", "schemas"):
        files = _tracked(folder)
        assert files, folder
        want.update(files)
    assert not want - names, sorted(want - names)
    assert "examples/broken.ir" in names and "tests/conftest.py" in names and "tests/data/reference_microgpt.json" in names


def test_tests_pass_from_the_unpacked_sdist(dist: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        tar.extractall(tmp_path, filter="data")
    src = tmp_path / f"gptir-{gptir.__version__}"
    # install what the sdist builds (its wheel) and test that against the sdist's own tests and data
    installed = tmp_path / "installed"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--no-build-isolation", "--target", str(installed), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env = dict(_isolated_env(installed), GPTIR_SDIST_TEST="1")
    r = subprocess.run([sys.executable, "-c", "import gptir; print(gptir.__file__)"], capture_output=True, text=True,
                       cwd=src, env=env, timeout=60)
    assert r.stdout.startswith(str(installed)), r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *FROM_SDIST],
                       capture_output=True, text=True, cwd=src, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout
