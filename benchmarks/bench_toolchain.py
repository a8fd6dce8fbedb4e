"""The toolchain at model scale: each stage on microgpt loss graphs of about 1k, 10k and 100k nodes.

    python benchmarks/bench_toolchain.py                 # all three sizes (several minutes)
    python benchmarks/bench_toolchain.py --layers 13,135 # a quicker look

The graphs are gptir's own: ``gptir trace microgpt --n-layer N`` for N = 13, 135 and 1351 (about
1,000, 10,000 and 100,000 forward nodes), written once with a ``.npz`` sidecar ("no values") and
once with the values inline. Every stage runs in a fresh process (so its peak RSS is its own) on
an input it reads before the clock starts; the time is the best of ``--repeat`` runs in each of
``--rounds`` processes (the rounds go through the sizes in turn, so load drift is not growth). Stages:
trace, verify, print and parse (without and with inline values; MB/s of text), grad (w.r.t. every
param), optimize, codegen (``compile_graph``: source generation and Python's compile) and
``gptir diff`` of two files as a whole process. Then start-up: ``gptir --help`` as a whole process,
and ``gptir train --steps 1000 --stop-after 1`` as a whole process less the CPU time of its one step
(measured in this process: the same step run again from the same state, its program already built),
which is what the run spends before its first step; ``--steps 1`` is shown beside it. Times are CPU
seconds (user + system; whole processes included), the best of the runs: on a shared machine wall time
mostly measures the neighbours (``wall`` is in the raw figures). ``codegen`` compiles afresh on every
run (the source-text cache is emptied), so Python's compile of the source is always in it.

Child processes run with bytecode caching as a user has it: ``PYTHONDONTWRITEBYTECODE`` is removed
from their environment (the first process writes the ``.pyc`` files, later ones read them), and one
untimed run of each whole-process command comes first. ``--stages trace,grad`` runs only those
stages (and ``--stages startup`` only the start-up figures).
Prints the table and PASS/FAIL against the targets of issue #15; exit status 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STAGES = ("trace", "verify", "print", "print_values", "parse", "parse_values", "grad", "optimize", "codegen",
          "diff")
LINEAR = ("trace", "verify", "print", "parse", "grad", "optimize", "codegen", "diff")


def _child(stage: str, layers: int, folder: str, repeat: int) -> dict[str, float]:
    """Run one stage in this process (the parent starts a fresh one per stage); its figures."""
    import resource

    import gptir
    from gptir.ir import verify
    from gptir.ops import OPS
    from gptir.text import parse, print_graph

    ir, vir = os.path.join(folder, f"m{layers}.ir"), os.path.join(folder, f"v{layers}.ir")
    text = vtext = ""
    g = None
    if stage in ("parse", "verify", "print", "grad", "optimize", "codegen"):
        with open(ir, encoding="utf-8") as f:
            text = f.read()
        g = parse(text, ir, folder)
    if stage in ("parse_values", "print_values"):
        with open(vir, encoding="utf-8") as f:
            vtext = f.read()
        g = parse(vtext, vir)
    wrt = [n.name for n in g.nodes.values() if n.op == "param"] if g is not None else []

    def work() -> object:
        if stage == "trace":
            from gptir.cli.trace_microgpt import trace_microgpt
            return trace_microgpt(argparse.Namespace(n_layer=layers, seed=42))
        if stage == "verify":
            return verify(g, OPS)
        if stage == "print":
            return print_graph(g)
        if stage == "print_values":
            return print_graph(g)
        if stage == "parse":
            return parse(text, ir)  # the text alone (the sidecar's values are not text)
        if stage == "parse_values":
            return parse(vtext, vir)
        if stage == "grad":
            return gptir.grad(g, wrt)
        if stage == "optimize":
            return gptir.optimize(g)
        if stage == "codegen":
            from gptir.codegen import _CODE_CACHE

            _CODE_CACHE.clear()  # every run compiles its source (a repeat would otherwise find it cached)
            return gptir.compile_graph(g)
        if stage == "diff":
            c0 = _child_cpu()
            subprocess.run([sys.executable, "-m", "gptir.cli", "diff", ir, os.path.join(folder, f"e{layers}.ir")],
                           stdout=subprocess.DEVNULL, check=False)
            return _child_cpu() - c0
        raise ValueError(stage)

    best = wall = math.inf
    nodes = len(g) if g is not None else 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _cpu()
        out = work()
        cpu = _cpu() - c0 if stage != "diff" else out  # type: ignore[operator]
        best, wall = min(best, cpu), min(wall, time.perf_counter() - t0)
        if stage == "trace":
            nodes = len(out)  # type: ignore[arg-type]
        del out
    size = len(text or vtext)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux reports KB)
    if stage == "diff":
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": best, "wall": wall, "bytes": size, "peak_mb": peak, "nodes": nodes}


def _cpu() -> float:
    """CPU seconds of this process: on a shared machine wall time mostly measures the neighbours."""
    return time.process_time()


def _child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _prepare(layers: int, folder: str) -> int:
    """Write m{L}.ir (+ sidecar), v{L}.ir (values inline) and e{L}.ir (m with one constant edited)."""
    ir, vir, eir = (os.path.join(folder, f"{p}{layers}.ir") for p in "mve")
    gptir_cmd = [sys.executable, "-m", "gptir.cli"]
    if not os.path.exists(ir):
        subprocess.run(gptir_cmd + ["trace", "microgpt", "--n-layer", str(layers), "-o", ir, "--params-out",
                                    os.path.join(folder, f"m{layers}.npz")], check=True)
    if not os.path.exists(vir):
        subprocess.run(gptir_cmd + ["trace", "microgpt", "--n-layer", str(layers), "-o", vir], check=True)
    if not os.path.exists(eir):
        with open(ir, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"(%embed\.rmsnorm\.const\.1 = const )1e-05", r"\g<1>2e-05", text, count=1)
        with open(eir, "w", encoding="utf-8") as f:
            f.write(text)
    with open(ir, encoding="utf-8") as f:
        return sum(1 for line in f if line.startswith("  ") and not line.startswith("  output") and
                   not line.startswith("  params"))


# Child processes cache bytecode as a user's do (PYTHONDONTWRITEBYTECODE=1 would recompile every module
# of every process, about 0.1 s each).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run_stage(stage: str, layers: int, folder: str, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", stage, "--layers", str(layers), "--folder", folder,
                          "--repeat", str(repeat)], check=True, capture_output=True, text=True, cwd=ROOT, env=ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _whole(cmd: list[str], repeat: int) -> float:
    """A whole process's CPU seconds (the best of ``repeat`` runs)."""
    best = math.inf
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, env=ENV)
    for _ in range(repeat):  # (after one untimed run: bytecode written, files in the page cache)
        c0 = _child_cpu()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, env=ENV)
        best = min(best, _child_cpu() - c0)
    return best


def _startup(repeat: int) -> dict[str, float]:
    gptir_exe = os.path.join(os.path.dirname(sys.executable), "gptir")
    cmd = [gptir_exe] if os.path.exists(gptir_exe) else [sys.executable, "-m", "gptir.cli"]
    help_s = _whole(cmd + ["--help"], repeat)
    quiet = ["--samples", "0", "--quiet"]  # no sampling after the run: only start-up and the steps
    one = _whole(cmd + ["train", "--steps", "1"] + quiet, repeat)
    first = _whole(cmd + ["train", "--steps", "1000", "--stop-after", "1"] + quiet, repeat)
    step = _one_step(repeat)
    # the 1000-step run up to and including its first step, less that step
    return {"help": help_s, "train_steps1": one, "train_first_of_1000": first, "step": step,
            "before_first_step": first - step}


def _one_step(repeat: int) -> float:
    """CPU seconds of the default run's first training step itself: its program built beforehand (the
    step is pure, so it runs again from the same state)."""
    from gptir import train as T
    from gptir.data import load_docs

    state, docs = T.start(load_docs(None), num_steps=1000)
    cache = T.ProgramCache(state.model, state.adam, state.num_steps)
    T.train_step(state, cache, docs)  # builds the program
    best = math.inf
    for _ in range(max(repeat, 3)):
        c0 = _cpu()
        T.train_step(state, cache, docs)
        best = min(best, _cpu() - c0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="13,135,1351", help="n_layer values (default: 13,135,1351)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage and process; the best counts (default: 3)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="fresh processes per stage and size, sizes interleaved; the best counts (default: 2)")
    ap.add_argument("--folder", help="where the graphs are written (default: a temporary folder)")
    ap.add_argument("--stages", default=",".join(STAGES + ("startup",)),
                    help="stages to run, comma-separated (default: all of them and startup)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, int(args.layers), args.folder, args.repeat)))
        return 0
    layers = [int(x) for x in args.layers.split(",")]
    wanted = [x for x in args.stages.split(",") if x]
    unknown = [x for x in wanted if x not in STAGES + ("startup",)]
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)} (stages: {', '.join(STAGES)}, startup)")
    stages = [x for x in STAGES if x in wanted]
    folder = args.folder or tempfile.mkdtemp(prefix="gptir-bench-")
    os.makedirs(folder, exist_ok=True)
    print("child processes: bytecode caching on (PYTHONDONTWRITEBYTECODE removed), "
          f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{args.rounds} round(s) of {args.repeat} run(s)", flush=True)
    results: dict[int, dict[str, dict[str, float]]] = {}
    nodes = {n: _prepare(n, folder) for n in (layers if stages else [])}
    for rnd in range(args.rounds):
        # rounds interleave the sizes, so a change in the machine's load between the small and the
        # big runs does not show up as growth (each figure is the best over all rounds)
        for n in nodes:
            results.setdefault(n, {})
            for stage in stages:
                r = _run_stage(stage, n, folder, 1 if (stage == "trace" and n > 500) else args.repeat)
                prev = results[n].get(stage)
                if prev is not None:
                    r["peak_mb"] = max(r["peak_mb"], prev["peak_mb"])
                    if prev["seconds"] <= r["seconds"]:
                        r = {**prev, "peak_mb": r["peak_mb"]}
                results[n][stage] = r
                print(f"  round {rnd + 1}: n_layer={n} ({nodes[n]} nodes) {stage}: {r['seconds']:.3f} s best, "
                      f"peak {r['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    for n in nodes:
        results[n]["nodes"] = {"seconds": nodes[n]}  # type: ignore[dict-item]
    fails: list[str] = []
    if stages:
        fails += _table(layers, stages, results)
    if "startup" in wanted:
        s = _startup(args.repeat)
        for what, ok in ((f"gptir --help {s['help']:.3f} s < 0.15 s", s["help"] < 0.15),
                         (f"gptir train before its first step {s['before_first_step']:.3f} s < 0.3 s "
                          f"(--steps 1000 --stop-after 1: {s['train_first_of_1000']:.3f} s whole process, less its "
                          f"step {s['step']:.4f} s; --steps 1: {s['train_steps1']:.3f} s)",
                          s["before_first_step"] < 0.3)):
            print(f"{'PASS' if ok else 'FAIL'}  {what}")
            if not ok:
                fails.append(what)
    for f in fails:
        if "exponent" in f:
            print(f"FAIL  {f}")
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("PASS" if not fails else f"FAIL ({len(fails)} target(s))")
    return 1 if fails else 0


def _table(layers: list[int], stages: list[str], results: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    """Print the table (seconds, MB/s, peak RSS, exponent) and the size targets; returns what failed."""
    fails: list[str] = []
    print(f"\n{'stage':<14}" + "".join(f"{results[n]['nodes']['seconds']:>12,.0f} n" for n in layers) +
          "   peak RSS (MB)" + "   exponent")
    for stage in stages:
        row = f"{stage:<14}"
        for n in layers:
            r = results[n][stage]
            mbs = f" {r['bytes'] / r['seconds'] / 1e6:4.1f}MB/s" if stage.startswith(("parse", "print")) else ""
            row += f"{r['seconds']:>9.3f} s{mbs}" if mbs else f"{r['seconds']:>12.3f} s"
        row += "   " + "/".join(f"{results[n][stage]['peak_mb']:.0f}" for n in layers)
        if len(layers) >= 2:
            a, b = layers[-2], layers[-1]
            na, nb = results[a]["nodes"]["seconds"], results[b]["nodes"]["seconds"]
            ta, tb = results[a][stage]["seconds"], results[b][stage]["seconds"]
            exp = math.log(tb / ta) / math.log(nb / na) if ta > 0 and tb > 0 else float("nan")
            row += f"   {exp:.2f}"
            if stage in LINEAR and nb >= 50_000 and exp > 1.1:
                fails.append(f"{stage} grows with exponent {exp:.2f} > 1.1")
        print(row)
    big = max(layers)
    if results[big]["nodes"]["seconds"] >= 50_000:
        r = results[big]
        checks = [
            ("parse", "parse without values >= 5 MB/s", lambda: r["parse"]["bytes"] / r["parse"]["seconds"] / 1e6 >= 5),
            ("parse_values", "parse of inline values >= 10 MB/s",
             lambda: r["parse_values"]["bytes"] / r["parse_values"]["seconds"] / 1e6 >= 10),
            ("codegen", "codegen <= 3 s", lambda: r["codegen"]["seconds"] <= 3),
            ("diff", "gptir diff <= 10 s", lambda: r["diff"]["seconds"] <= 10),
            ("grad", "grad <= 2 s", lambda: r["grad"]["seconds"] <= 2),
            ("optimize", "optimize <= 2 s", lambda: r["optimize"]["seconds"] <= 2),
        ]
        for stage, what, ok in checks:
            if stage not in stages:
                continue
            passed = ok()
            print(f"{'PASS' if passed else 'FAIL'}  {what}")
            if not passed:
                fails.append(what)
    return fails


if __name__ == "__main__":
    sys.exit(main())
