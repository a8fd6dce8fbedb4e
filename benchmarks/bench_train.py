"""Training benchmark: gptir (compiled, interp, jax and native backends) against a PyTorch eager twin.

Three runs, all the microgpt recipe from the same initial weights:

* default: n_embd 16, n_head 4, n_layer 1, block_size 16, batch 1, ``--steps`` (1000) steps;
* scaled:  n_embd 64, n_head 4, n_layer 2, block_size 16, batch 32, ``--scaled-steps`` (200) steps;
* large:   n_embd 128, n_head 8, n_layer 4, block_size 16, batch 64, ``--large-steps`` (30) steps.

numpy and torch run on one core (OMP/OPENBLAS/MKL_NUM_THREADS=1 unless already set); XLA (the jax
backend, ``--skip-jax`` to leave it out) uses its own thread pool over the machine's cores, which is part
of what it offers. So that the jax comparison is fair, the large config also runs the numpy backend as
it runs by default, with OpenBLAS on every core (the row ``compiled-mt``: the thread count is raised
through OpenBLAS's own ``openblas_set_num_threads`` for that run only), and the jax target is judged
against the faster of the two numpy runs. Its build time is tracing plus XLA compilation of its one
padded program; the first (cold) one is printed as well as the best. The large config also runs the jax
backend with the per-length programs the numpy backends use (row ``jax-per-length``, ``pad=False``: one
XLA compile per batch length, no work on padding), and the target takes the faster jax row. Finally
the large config runs packed (``--pack``: a batch's documents as rows, a few programs keyed by the row
count, no work on padding outside attention) on every backend: rows ``compiled-packed``,
``compiled-mt-packed`` and ``jax-packed``; the target compares the fastest jax row with the fastest numpy
row, packed or not.

Build time (trace + grad + passes + codegen for every input shape the run needs, done up front
through ``ProgramCache.get``) is timed apart from step time. Every backend runs every step;
``--quick-interp`` runs the interpreter for only ``--interp-steps`` / ``--interp-scaled-steps`` steps and
extrapolates (marked ``~`` in the table), ``--skip-interp`` not at all.

    python benchmarks/bench_train.py [--steps 1000] [--scaled-steps 200] [--data PATH]
        [--skip-torch] [--skip-interp] [--quick-interp] [--repeat N] [--profile] [--only default|scaled|large]

Targets (PASS/FAIL): default compiled 1000 steps incl. build < 0.5 s; default build of all programs
< 1 s; scaled compiled time per step <= 1.1x torch eager's; large config per step on jax at least 2x
faster than compiled (numpy); default config's whole run on jax (compile included) < 5 s; native
(``--skip-native`` leaves it out; C built into a fresh temporary cache, so its first build is cold and
the repeats' builds are warm): default <= 50 us per step and >= 4x faster than compiled, the whole
1000-step ``gptir train --backend native`` process with a warm cache <= 0.25 s, scaled no slower per
step than compiled. The FLOPs of a step are counted from the IR (each op's ``count_flops`` in the op table:
matmul 2*M*N*K, one per element of an elementwise op or of a reduction's operand) and printed with the achieved GFLOP/s.
"""

from __future__ import annotations

import os

# One core for everyone, set before numpy (and torch) load their BLAS libraries.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_microgpt as tm  # noqa: E402  (also puts the repo root on sys.path)

from gptir import data as gdata  # noqa: E402

CONFIGS: dict[str, dict[str, int]] = {
    "default": dict(n_embd=16, n_head=4, n_layer=1, block_size=16, batch=1),
    "scaled": dict(n_embd=64, n_head=4, n_layer=2, block_size=16, batch=32),
    "large": dict(n_embd=128, n_head=8, n_layer=4, block_size=16, batch=64),
}
JAX_SPEEDUP_TARGET = 2.0  # large config: compiled (numpy) time per step / jax's
JAX_DEFAULT_TARGET_S = 5.0  # default config on jax: 1000 steps including compilation
NATIVE_STEP_TARGET_S = 50e-6  # default config: native time per step
NATIVE_SPEEDUP_TARGET = 4.0  # default config: compiled time per step / native's
NATIVE_WHOLE_TARGET_S = 0.25  # default config: whole 1000-step process on native, warm build cache
DEFAULT_TARGET_S = 0.5  # default config: 1000 steps including build
DEFAULT_BUILD_TARGET_S = 1.0  # default config: building every program it needs
SCALED_RATIO_TARGET = 1.1  # scaled config: gptir compiled time per step / torch eager's


@dataclass
class Row:
    config: str
    backend: str
    steps: int  # the run's length (what train s refers to)
    build_s: float | None
    train_s: float | None
    measured_steps: int = 0  # steps actually run (< steps: train_s is extrapolated)
    programs: int = 0
    losses: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def per_step(self) -> float | None:
        return None if self.train_s is None else self.train_s / self.steps


def load_gptir_train() -> tuple[Any, str]:
    """gptir.train, or None and the reason (other layers may still be in progress)."""
    try:
        from gptir import train as gtrain

        return gtrain, ""
    except Exception as e:  # noqa: BLE001 - reported in the table, the torch side still runs
        return None, f"{type(e).__name__}: {e}"


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def shapes_needed(run: tm.Run, steps: int) -> list[tuple[int, int]]:
    """Every (n, batch) program key the first ``steps`` steps use, in first-use order."""
    seen: dict[tuple[int, int], None] = {}
    bkey = 0 if run.batch == 1 else run.batch
    for s in range(steps):
        seen.setdefault((tm.encode(run, tm.step_docs(run, s))["tokens"].shape[-1], bkey), None)
    return list(seen)


MULTI_THREADED = "compiled-mt"  # the numpy backend with OpenBLAS on every core (its default without the pin)
JAX_PER_LENGTH = "jax-per-length"  # the jax backend with one program per batch length (`--per-length`), no padding
PACKED = "-packed"  # a row name's suffix: the run packs its batches (`--pack`)
JAX_ROWS = ("jax", JAX_PER_LENGTH, "jax" + PACKED)
NUMPY_ROWS = ("compiled", MULTI_THREADED, "compiled" + PACKED, MULTI_THREADED + PACKED)


def layout_of(backend: str) -> str:
    """The batch layout a benchmark row's programs use: packed, padded (the jax backend's default) or per-length."""
    return "packed" if backend.endswith(PACKED) else "padded" if backend == "jax" else "per-length"


def packed_shapes(run: tm.Run, steps: int) -> list[tuple[int, int]]:
    """Every packed program key ``(rows, batch)`` of the first ``steps`` steps, in first-use order."""
    from gptir import train as T

    return T.step_keys(run.state, run.docs, steps, pack=True)


def _openblas() -> Any:
    """numpy's OpenBLAS as a ctypes library with its thread-count setter, or None (another BLAS)."""
    import ctypes

    with open("/proc/self/maps") as maps:  # Linux; elsewhere the multi-threaded row reports an error
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def blas_threads(n: int) -> None:
    """Set numpy's OpenBLAS thread count (for the ``compiled-mt`` row)."""
    setter = _openblas()
    if setter is None:
        raise RuntimeError("numpy's BLAS is not OpenBLAS: cannot set its thread count")
    setter(n)


def time_gptir(gtrain: Any, run: tm.Run, backend: str, shapes: list[tuple[int, int]],
               measured: int) -> tuple[float, float, list[float]]:
    """One measurement: build every program (fresh cache), then run ``measured`` steps.

    Returns (build seconds, train seconds, losses). ``compiled-mt`` is the compiled backend with
    OpenBLAS on every core for this measurement (one thread again afterwards); ``jax-per-length`` is the
    jax backend with the per-length (unpadded) programs.
    """
    pack = backend.endswith(PACKED)
    backend = backend.removesuffix(PACKED)
    threads = backend == MULTI_THREADED
    per_length = backend == JAX_PER_LENGTH
    backend = "compiled" if threads else "jax" if per_length else backend
    cache = gtrain.ProgramCache(run.state.model, run.state.adam, run.state.num_steps, backend=backend,
                                cache_dir=NATIVE_CACHE if backend == "native" else None,
                                pad=False if per_length else None, **({"pack": True} if pack else {}))
    if threads:
        blas_threads(os.cpu_count() or 1)
    try:
        t0 = time.perf_counter()
        cache.prebuild(shapes)  # native: a cold cache's programs compiled in parallel (one compiler per CPU)
        build = time.perf_counter() - t0
        losses = []
        t0 = time.perf_counter()
        for _, loss in gtrain.train(run.state, run.docs, cache, until=measured):
            losses.append(loss)
        return build, time.perf_counter() - t0, losses
    finally:
        if threads:
            blas_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))


def bench_config(name: str, run: tm.Run, steps: int, gtrain: Any, backends: list[tuple[str, int]],
                 with_torch: bool, repeat: int) -> list[Row]:
    """Rows for one config: torch eager (if wanted) and each (gptir backend, steps actually run).

    The ``repeat`` measurements go round-robin over the backends and each keeps its best, so a
    machine whose load changes over time treats every backend alike.
    """
    shapes = shapes_needed(run, steps) if backends else []
    padded = [(run.state.model.block_size, run.batch)]  # the jax backend's one program
    packed = packed_shapes(run, steps) if any(b.endswith(PACKED) for b, _ in backends) else []
    keys = lambda b: packed if b.endswith(PACKED) else padded if b == "jax" else shapes  # noqa: E731
    builds: dict[str, list[float]] = {b: [] for b, _ in backends}
    trains: dict[str, list[float]] = {b: [] for b, _ in backends}
    losses: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    torch_secs: list[float] = []
    if with_torch:
        tm.train_torch(run, min(3, steps))  # warm-up, discarded: torch's one-time dispatch setup
    for _ in range(repeat):
        if with_torch:
            losses["torch eager"], secs = tm.train_torch(run, steps)
            torch_secs.append(secs)
        for backend, measured in backends:
            if backend in errors:
                continue
            try:
                build, train_s, losses[backend] = time_gptir(gtrain, run, backend, keys(backend), measured)
            except Exception as e:  # noqa: BLE001 - one failing backend must not hide the others
                errors[backend] = f"{type(e).__name__}: {e}"
                continue
            builds[backend].append(build)
            trains[backend].append(train_s)
    if "native" in builds and builds["native"]:
        NATIVE_COLD[name] = builds["native"][0]
    if "jax" in builds and builds["jax"]:
        JAX_COLD[name] = builds["jax"][0]
    rows = []
    if with_torch:
        rows.append(Row(name, "torch eager", steps, 0.0, min(torch_secs), steps, 0, losses["torch eager"]))
    for backend, measured in backends:
        if backend in errors:
            rows.append(Row(name, backend, steps, None, None, error=errors[backend]))
        else:
            rows.append(Row(name, backend, steps, min(builds[backend]), min(trains[backend]) * steps / measured,
                            measured, len(keys(backend)), losses[backend]))
    return rows


NATIVE_CACHE = os.path.join(__import__("tempfile").mkdtemp(prefix="gptir-bench-native-"), "cache")
NATIVE_COLD: dict[str, float] = {}
JAX_COLD: dict[str, float] = {}  # config -> the jax backend's first compile (the table's is the best)
FLOPS: dict[str, float] = {}  # config -> FLOPs of an average step
NATIVE_WHOLE: dict[str, float | None] = {}  # config -> the native backend's first (cold-cache) build seconds


def native_available() -> bool:
    try:
        from gptir import native
    except ImportError:
        return False
    return native.available() is None


def step_flops(gtrain: Any, run: tm.Run, steps: int, layout: str = "per-length") -> float:
    """FLOPs of an average training step of the run (counted on each program's IR, weighted by use), in
    ``layout``: per-length (the numpy backends' default), padded (the jax backend's) or packed."""
    from gptir import train as T
    from gptir.ops import OPS

    per_shape: dict[tuple[int, int], int] = {}
    bkey = 0 if run.batch == 1 else run.batch
    total = 0
    for s in range(steps):
        if layout == "packed":
            key = T.program_key(T.pack_batch(replace(run.state, step=s), T.step_docs(replace(run.state, step=s),
                                                                                      run.docs)))
        elif layout == "padded":
            key = (run.state.model.block_size, run.batch)  # the jax program: batched even for one document
        else:
            key = (tm.encode(run, tm.step_docs(run, s))["tokens"].shape[-1], bkey)
        if key not in per_shape:
            g = gtrain.step_graph(run.state.model, run.state.adam, run.state.num_steps, *key,
                                  **({"packed": True} if layout == "packed" else {}))
            per_shape[key] = sum(OPS[node.op].count_flops([g.nodes[i].type.shape for i in node.inputs],
                                                          node.type.shape) for node in g.nodes.values())
        total += per_shape[key]
    return total / steps


def native_whole_run(steps: int, repeat: int = 5) -> float | None:
    """Seconds (best of ``repeat``) of a whole ``gptir train --backend native --steps N`` process with a warm
    build cache. The process may write Python's bytecode cache (``PYTHONDONTWRITEBYTECODE`` is dropped
    from its environment), as an installed package has it: warm means warm for Python too."""
    import subprocess

    cmd = [sys.executable, "-m", "gptir", "train", "--backend", "native", "--steps", str(steps), "-n", "0",
           "--cache-dir", NATIVE_CACHE]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, capture_output=True, check=True, env=env)  # warms the caches
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    return best


def profile_compiled(gtrain: Any, run: tm.Run, steps: int, top: int = 15) -> str:
    """cProfile of ``steps`` compiled training steps (programs built beforehand).

    Good for the Python around the program (input checks, dicts, encoding); it under-counts the
    exec-generated program itself, which :func:`profile_statements` times directly.
    """
    cache = gtrain.ProgramCache(run.state.model, run.state.adam, run.state.num_steps, backend="compiled")
    for n, b in shapes_needed(run, steps):
        cache.get(n, b)
    prof = cProfile.Profile()
    prof.enable()
    for _ in gtrain.train(run.state, run.docs, cache, until=steps):
        pass
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _classify(expr: str) -> str:
    """The kind of numpy work one generated statement does, from its text."""
    if "@" in expr:
        return "matmul"
    for key, kind in (("_add.reduce", "sum"), ("_maximum.reduce", "max"), ("_scatter_add", "scatter_add"),
                      (".transpose(", "transpose (view)"), (".reshape(", "reshape"),
                      ("_broadcast_to(", "broadcast (view)"), (".astype(", "cast")):
        if key in expr:
            return kind
    m = re.match(r"_(\w+)\(", expr)
    if m:
        return m.group(1)
    if re.fullmatch(r"\w+\[\w+\]", expr):
        return "gather"
    if re.fullmatch(r"\w+\[.*\]", expr):
        return "slice"
    return "add/sub/mul/div/neg"


def profile_statements(gtrain: Any, run: tm.Run, reps: int, top: int = 10) -> str:
    """Time every statement of the compiled program of the run's first step, grouped by kind.

    Uses codegen internals (``plan``, the namespace) on purpose: a diagnostic for whoever optimises
    codegen, so it may need adjusting when they change. Each statement is exec'd alone (~0.3 us extra).
    """
    from gptir import codegen, passes

    st = run.state
    inputs: dict[str, Any] = dict(tm.encode(run, tm.step_docs(run, 0)))
    graph = passes.optimize(gtrain.step_graph(st.model, st.adam, st.num_steps, inputs["tokens"].shape[-1],
                                              0 if run.batch == 1 else run.batch))
    prog = codegen.plan(graph)
    ns = codegen._namespace_base()  # noqa: SLF001 - diagnostic
    ns["_asarray"] = np.asarray
    ns.update(prog.consts)
    inputs = gtrain.step_inputs(st, inputs)
    for name, var in prog.args:
        ns[var] = np.asarray(inputs[name]) if name in inputs else graph.params[name]
    stmts = []
    for line in prog.source.splitlines():
        line = line.strip()
        if " = " in line and line.startswith("v_") and not line.startswith("return"):
            var, expr = line.split(" = ", 1)
            stmts.append((var, expr, compile(line, "<stmt>", "exec")))
    by_kind: dict[str, float] = {}
    count: dict[str, int] = {}
    by_stmt: dict[str, float] = {}
    with np.errstate(all="ignore"):
        for r in range(reps + 1):  # the first pass warms caches and is not counted
            for var, expr, code in stmts:
                t0 = time.perf_counter()
                exec(code, ns)  # noqa: S102 - gptir's own generated code, being timed
                dt = time.perf_counter() - t0
                if r:
                    kind = _classify(expr)
                    by_kind[kind] = by_kind.get(kind, 0.0) + dt / reps
                    by_stmt[f"{var} = {expr}"] = by_stmt.get(f"{var} = {expr}", 0.0) + dt / reps
                    count[kind] = count.get(kind, 0) + (r == 1)
    total = sum(by_kind.values())
    lines = [f"{len(stmts)} statements, {1e3 * total:.3f} ms per step summed over statements "
             f"(n={inputs['tokens'].shape[-1]}, batch {run.batch})"]
    for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind:22s} {count[kind]:4d} stmts  {1e3 * t:8.3f} ms  {100 * t / total:5.1f}%")
    lines.append("  slowest statements:")
    for text, t in sorted(by_stmt.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {1e6 * t:9.1f} us  {text[:120]}")
    return "\n".join(lines)


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def loss_diff(row: Row, ref: Row | None) -> float | None:
    if ref is None or not row.losses or not ref.losses or row is ref:
        return None
    k = min(len(row.losses), len(ref.losses))
    return float(np.max(np.abs(np.array(row.losses[:k]) - np.array(ref.losses[:k]))))


def table(rows: list[Row]) -> str:
    torch_rows = {r.config: r for r in rows if r.backend == "torch eager" and r.train_s is not None}
    head = ("config", "backend", "progs", "build s", "steps", "train s", "steps/s", "ms/step", "x torch",
            "max|dloss|")
    lines = [head]
    for r in rows:
        t = torch_rows.get(r.config)
        if r.error:
            lines.append((r.config, r.backend, "-", "-", str(r.steps), "-", "-", "-", "-", "-"))
            continue
        approx = "~" if r.measured_steps < r.steps else ""
        ratio = None if t is None or r.per_step is None else r.per_step / t.per_step
        d = loss_diff(r, t)
        lines.append((r.config, r.backend, str(r.programs) if r.backend != "torch eager" else "-",
                      fmt(r.build_s, ".3f"), str(r.steps), approx + fmt(r.train_s, ".3f"),
                      approx + fmt(None if r.per_step is None else 1 / r.per_step, ".1f"),
                      approx + fmt(None if r.per_step is None else 1e3 * r.per_step, ".3f"),
                      fmt(ratio, ".2f"), fmt(d, ".1e")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
           for line in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def targets(rows: list[Row]) -> list[str]:
    """The three goals, PASS/FAIL (or n/a when a needed row is missing)."""
    get: Callable[[str, str], Row | None] = lambda c, b: next(  # noqa: E731
        (r for r in rows if r.config == c and r.backend == b and r.train_s is not None), None)
    out = []
    d = get("default", "compiled")
    if d is None:
        out.append("default: 1000 steps incl. build < 0.5 s: n/a (no compiled default run)")
        out.append("default: build of all programs < 1 s: n/a (no compiled default run)")
    else:
        total = d.build_s + d.train_s * 1000 / d.steps
        note = "" if d.steps == 1000 else f" (train time scaled from {d.steps} steps)"
        out.append(f"default: 1000 steps incl. build < {DEFAULT_TARGET_S} s: {total:.3f} s"
                   f"{note} -> {'PASS' if total < DEFAULT_TARGET_S else 'FAIL'}")
        out.append(f"default: build of all {d.programs} programs < {DEFAULT_BUILD_TARGET_S} s: {d.build_s:.3f} s "
                   f"-> {'PASS' if d.build_s < DEFAULT_BUILD_TARGET_S else 'FAIL'}")
    jax_runs = [r for r in (get("large", b) for b in JAX_ROWS) if r is not None]
    j = min(jax_runs, key=lambda r: r.per_step) if jax_runs else None
    numpy_runs = [r for r in (get("large", b) for b in NUMPY_ROWS) if r is not None]
    if j is None or not numpy_runs:
        out.append(f"large: jax at least {JAX_SPEEDUP_TARGET}x faster per step than compiled: n/a "
                   "(needs both large runs)")
    else:
        c = min(numpy_runs, key=lambda r: r.per_step)
        speedup = c.per_step / j.per_step
        each = ", ".join(f"{r.backend} {1e3 * r.per_step:.2f} ms ({r.per_step / j.per_step:.2f}x)" for r in numpy_runs)
        out.append(f"large: jax at least {JAX_SPEEDUP_TARGET}x faster per step than the faster numpy run: "
                   f"{1e3 * j.per_step:.2f} ms ({j.backend}) vs {1e3 * c.per_step:.2f} ms ({c.backend}) = {speedup:.2f}x -> "
                   f"{'PASS' if speedup >= JAX_SPEEDUP_TARGET else 'FAIL'} [{each}]")
    dj = get("default", "jax")
    if dj is None:
        out.append(f"default: jax 1000 steps incl. compile < {JAX_DEFAULT_TARGET_S} s: n/a (no jax default run)")
    else:
        cold = JAX_COLD.get("default", dj.build_s)  # judged with the first compile, not the best one
        total = cold + dj.train_s * 1000 / dj.steps
        out.append(f"default: jax 1000 steps incl. compile < {JAX_DEFAULT_TARGET_S} s: {total:.3f} s "
                   f"(first compile {cold:.3f} s, best {dj.build_s:.3f} s) -> "
                   f"{'PASS' if total < JAX_DEFAULT_TARGET_S else 'FAIL'}")
    n, c = get("default", "native"), get("default", "compiled")
    if n is None or c is None:
        out.append("default: native <= 50 us per step and >= 4x faster than compiled: n/a (needs both default runs)")
    else:
        ok = n.per_step <= NATIVE_STEP_TARGET_S and c.per_step / n.per_step >= NATIVE_SPEEDUP_TARGET
        out.append(f"default: native <= {NATIVE_STEP_TARGET_S * 1e6:.0f} us per step and >= {NATIVE_SPEEDUP_TARGET}x "
                   f"faster than compiled: {n.per_step * 1e6:.1f} us, {c.per_step / n.per_step:.2f}x -> "
                   f"{'PASS' if ok else 'FAIL'}")
    whole = NATIVE_WHOLE.get("default")
    if whole is None:
        out.append(f"default: native whole 1000-step process, warm cache <= {NATIVE_WHOLE_TARGET_S} s: n/a")
    else:
        out.append(f"default: native whole 1000-step process, warm cache <= {NATIVE_WHOLE_TARGET_S} s: {whole:.3f} s "
                   f"-> {'PASS' if whole <= NATIVE_WHOLE_TARGET_S else 'FAIL'}")
    n, c = get("scaled", "native"), get("scaled", "compiled")
    if n is None or c is None:
        out.append("scaled: native no slower per step than compiled: n/a (needs both scaled runs)")
    else:
        out.append(f"scaled: native no slower per step than compiled: {1e3 * n.per_step:.2f} ms vs "
                   f"{1e3 * c.per_step:.2f} ms -> {'PASS' if n.per_step <= c.per_step else 'FAIL'}")
    s, t = get("scaled", "compiled"), get("scaled", "torch eager")
    if s is None or t is None:
        out.append(f"scaled: time per step <= {SCALED_RATIO_TARGET}x torch eager: n/a "
                   f"(needs both the compiled and the torch scaled runs)")
    else:
        ratio = s.per_step / t.per_step
        out.append(f"scaled: time per step <= {SCALED_RATIO_TARGET}x torch eager: {1e3 * s.per_step:.2f} ms vs "
                   f"{1e3 * t.per_step:.2f} ms = {ratio:.2f}x -> {'PASS' if ratio <= SCALED_RATIO_TARGET else 'FAIL'}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="default-config run length (1000)")
    ap.add_argument("--scaled-steps", type=int, default=200, help="scaled-config run length (200)")
    ap.add_argument("--large-steps", type=int, default=30, help="large-config run length (30)")
    ap.add_argument("--skip-jax", action="store_true", help="do not run gptir's jax backend")
    ap.add_argument("--skip-native", action="store_true", help="do not run gptir's native (C) backend")
    ap.add_argument("--data", default=None, help="documents, one a line (default: ../shared/data/names.txt "
                    "if present, else gptir's built-in corpus)")
    ap.add_argument("--skip-torch", action="store_true", help="do not run the torch eager twin")
    ap.add_argument("--skip-interp", action="store_true", help="do not run gptir's interpreter backend")
    ap.add_argument("--quick-interp", action="store_true",
                    help="run the interpreter for fewer steps (--interp-steps, --interp-scaled-steps) and "
                         "extrapolate (marked ~); by default it runs every step like the other backends")
    ap.add_argument("--interp-steps", type=int, default=100,
                    help="with --quick-interp: default-config interpreter steps actually run (100)")
    ap.add_argument("--interp-scaled-steps", type=int, default=10,
                    help="with --quick-interp: scaled-config interpreter steps actually run (10)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measure N times, round-robin over the backends, and report each one's best (3)")
    ap.add_argument("--only", choices=tuple(CONFIGS), help="run one config only")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile the compiled steps of each config and print the top costs")
    args = ap.parse_args(argv)
    if min(args.steps, args.scaled_steps, args.large_steps, args.interp_steps, args.interp_scaled_steps, args.repeat) < 1:
        print("error: step counts and --repeat must be at least 1", file=sys.stderr)
        return 2

    torch = None if args.skip_torch else tm.torch
    if torch is not None:
        torch.set_num_threads(1)
    gtrain, why = load_gptir_train()
    path = args.data if args.data is not None else tm.default_data_path()
    try:
        docs = gdata.load_docs(path)
        if not docs:
            raise gdata.DataError(f"no documents in {path}")
    except gdata.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"data: {path or 'built-in corpus'} ({len(docs)} docs); threads: OMP={os.environ['OMP_NUM_THREADS']} "
          f"OPENBLAS={os.environ['OPENBLAS_NUM_THREADS']} MKL={os.environ['MKL_NUM_THREADS']}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} thread)" if torch is not None else ""))
    if not args.skip_jax and jax_available():
        print(f"jax: XLA's CPU thread pool over {os.cpu_count()} cores (XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); "
              f"{MULTI_THREADED} (large): OpenBLAS on {os.cpu_count()} threads")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min)")
    if args.skip_torch:
        print("torch eager: skipped (--skip-torch)")
    elif torch is None:
        print("torch not installed: skipping the torch eager twin")
    if gtrain is None:
        print(f"gptir trainer unavailable: {why}")

    rows: list[Row] = []
    profiles: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, cfg in CONFIGS.items():
        if args.only and name != args.only:
            continue
        steps = {"default": args.steps, "scaled": args.scaled_steps, "large": args.large_steps}[name]
        run = tm.start_run(docs, num_steps=steps, **cfg)
        c = run.cfg
        print(f"[{name}] n_embd {c.n_embd}, n_head {c.n_head}, n_layer {c.n_layer}, block_size {c.block_size}, "
              f"batch {run.batch}, vocab {c.vocab_size}: {steps} steps ...", flush=True)
        backends: list[tuple[str, int]] = []
        if gtrain is not None and run.state is not None:
            backends.append(("compiled", steps))
            if name == "large":  # the jax comparison's numpy rows (and packing's effect, with or without jax)
                backends.append((MULTI_THREADED, steps))
                backends.extend([("compiled" + PACKED, steps), (MULTI_THREADED + PACKED, steps)])
            if not args.skip_jax and jax_available():
                backends.append(("jax", steps))
                if name == "large":
                    backends.extend([(JAX_PER_LENGTH, steps), ("jax" + PACKED, steps)])
            if not args.skip_native and native_available():
                backends.append(("native", steps))
            if not args.skip_interp:
                k = steps if not args.quick_interp else min(steps, args.interp_steps if name == "default"
                                                       else args.interp_scaled_steps)
                backends.append(("interp", k))
                if k < steps:
                    notes.append(f"{name}/interp: ran {k} of {steps} steps; train s, steps/s and ms/step (~) "
                                 f"are extrapolated")
        new_rows = bench_config(name, run, steps, gtrain, backends, torch is not None, args.repeat)
        rows.extend(new_rows)
        if gtrain is not None and run.state is not None:
            FLOPS[name] = step_flops(gtrain, run, steps)
            for layout in ("padded", "packed"):  # the layouts some row of this config ran
                if any(layout_of(b) == layout for b, _ in backends):
                    FLOPS[f"{name}/{layout}"] = step_flops(gtrain, run, steps, layout)
        if name == "default" and any(r.backend == "native" and not r.error for r in new_rows):
            NATIVE_WHOLE["default"] = native_whole_run(1000)
        compiled = next((r for r in new_rows if r.backend == "compiled"), None)
        if args.profile and compiled is not None and not compiled.error:
            profiles.append((f"cProfile, {name} config, {steps} compiled steps (programs prebuilt), top by "
                             f"tottime:", profile_compiled(gtrain, run, steps)))
            try:
                text = profile_statements(gtrain, run, reps=200 if name == "default" else 20)
            except Exception as e:  # noqa: BLE001 - a diagnostic relying on codegen internals
                text = f"unavailable ({type(e).__name__}: {e})"
            profiles.append((f"generated program of {name}'s first step, per statement:", text))

    print()
    print(table(rows))
    for r in rows:
        if r.error:
            print(f"{r.config}/{r.backend} failed: {r.error}")
    for n in notes:
        print(f"note: {n}")
    print("build s: trace + grad + passes + codegen of every input-shape program the run needs (interp: no "
          "passes/codegen); x torch: time per step / torch eager's; max|dloss|: largest loss difference vs "
          "torch over the steps both ran")
    print()
    for r in rows:
        flops = FLOPS.get(f"{r.config}/{layout_of(r.backend)}", FLOPS.get(r.config))
        if flops and r.per_step:
            print(f"{r.config}/{r.backend}: {flops / 1e3:.0f} kFLOP per step, "
                  f"{flops / r.per_step / 1e9:.3f} GFLOP/s")
    for name, secs in JAX_COLD.items():
        print(f"{name}/jax: first compile {secs:.3f} s (the table's build is the best one)")
    for name, secs in NATIVE_COLD.items():
        print(f"{name}/native: cold-cache build {secs:.3f} s (the table's build is the best warm one)")
    for line in targets(rows):
        print(line)
    for title, text in profiles:
        print(f"\n{title}")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
