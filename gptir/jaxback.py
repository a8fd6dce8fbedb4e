"""The JAX backend: a graph lowers to one ``jax.numpy`` function, which XLA compiles (CPU, GPU, TPU).

Every op's lowering comes from the op table: an op that *is* a numpy ufunc lowers to the
``jax.numpy`` function of the same name (``add`` -> ``jnp.add``, relu's fixed extra operand included);
any other op carries its own lowering in its ``OpDef.jax`` entry. Sources are the function's
arguments (``input``, ``param``) or constants. So adding an op stays one entry, and
``tests/test_jaxback.py`` walks the table and fails for an op that does not lower.

JAX is optional (``pip install "gptir[jax]"``) and imported only when this backend is used, so
``import gptir`` never imports it. float64: gptir's programs are traced, compiled and run inside
``jax.enable_x64(True)`` (``jax.experimental.enable_x64()`` on older JAX), a context manager that
sets x64 for the calling thread only; the user's global JAX configuration is left as it is.

Results agree with the interpreter to rounding (XLA fuses, reorders reductions and has its own
``exp``/``log``), not bit for bit; out-of-range ``gather`` indices clamp as XLA does instead of raising.
With ``devices=N`` the program is compiled for a one-axis mesh of N devices: the inputs named in
``shard`` are split along their first (batch) axis, everything else is replicated, and XLA inserts the
all-reduces (data parallelism through ``jax.sharding``).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from gptir.interp import ExecError, bind_input
from gptir.ir import INPUT_OPS, GptirError, Graph, Node
from gptir.ops import OPS, OpDef

INSTALL_HINT = 'the jax backend needs JAX: pip install "gptir[jax]"'
# XLA options for gptir's programs, passed to each compile (never set globally). XLA's LLVM pipeline
# dominates compile time for a few hundred small fused kernels (microgpt's default step: ~11 s at the
# default level, ~5 s with these on a loaded 2-core machine, ~2 s idle) and bought no step time there;
# the arithmetic (no fast-math either way) is the same. A program with big tensors is compiled at XLA's
# default level instead (FAST_OPTIONS, empty: XLA's defaults): there the optimised kernels pay for the
# compile at once (the large benchmark config: 89 ms a step against 108 ms at level 0, idle machine).
COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
FAST_OPTIONS: dict[str, Any] = {}
# a program whose node results hold at least this many elements in all is compiled with FAST_OPTIONS
# (microgpt's default step: 0.2 million; batch 32 at n_embd 64: 12 million; the large config: 94 million)
FAST_MIN_ELEMENTS = 4_000_000


def compiler_options(graph: Graph) -> dict[str, Any]:
    """The XLA options ``graph`` is compiled with: COMPILER_OPTIONS (quick to compile) for a small
    program, FAST_OPTIONS (XLA's defaults, faster kernels) once its values hold FAST_MIN_ELEMENTS."""
    total = sum(math.prod(n.type.shape) for n in graph.nodes.values())
    return dict(FAST_OPTIONS if total >= FAST_MIN_ELEMENTS else COMPILER_OPTIONS)

def require_jax() -> Any:
    """The ``jax`` module, or a one-line GptirError saying how to install it."""
    try:
        import jax
        import jax.numpy  # noqa: F401 - the lowerings use it
    except ImportError:
        raise GptirError(INSTALL_HINT) from None
    return jax


@contextlib.contextmanager
def x64() -> Iterator[None]:
    """float64 for gptir's programs only: JAX's thread-local x64 switch, restored on exit."""
    jax = require_jax()
    if callable(getattr(jax, "enable_x64", None)):  # jax >= 0.6 (the jax.experimental one is gone)
        ctx = jax.enable_x64(True)
    else:  # pragma: no cover - older jax
        from jax.experimental import enable_x64  # type: ignore[attr-defined]

        ctx = enable_x64()
    with ctx:
        yield


def lowering(opdef: OpDef) -> Callable[[Any, Sequence[Any], Mapping[str, Any]], Any] | None:
    """How ``opdef`` lowers: its own ``jax`` entry, else ``jnp.<ufunc>`` (None: it does not lower;
    graph inputs and params are arguments, not lowered ops)."""
    if opdef.jax is not None:
        return opdef.jax
    if opdef.ufunc is not None:
        name, extra = opdef.ufunc, opdef.extra

        def ufunc(jnp: Any, a: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
            fn = getattr(jnp, name)
            return fn(*a, *(np.asarray(e, a[0].dtype) for e in extra))
        return ufunc
    return None


def unlowered_ops() -> list[str]:
    """Ops in the table that the JAX backend cannot lower (the table-walking test wants none)."""
    return sorted(name for name, d in OPS.items() if name not in INPUT_OPS and lowering(d) is None)


@dataclass(frozen=True)
class Lowered:
    """A graph as a pure function of its inputs and params (in ``args`` order) to its outputs."""

    fn: Callable[..., tuple[Any, ...]]
    args: tuple[Node, ...]
    outputs: tuple[str, ...]


def lower(graph: Graph) -> Lowered:
    """``graph`` as a function over ``jax.numpy`` arrays (see the module docstring)."""
    require_jax()
    import jax.numpy as jnp

    steps = []
    for node in graph.nodes.values():
        if node.op in INPUT_OPS:
            continue
        fn = lowering(OPS[node.op])
        if fn is None:
            raise GptirError(f"op {node.op!r} has no JAX lowering (node %{node.name})")
        steps.append((node.name, fn, node.inputs, dict(node.attrs)))
    args = tuple(graph.inputs)
    arg_names = [n.name for n in args]
    outputs = tuple(graph.outputs)
    out_values = [graph.outputs[o] for o in outputs]

    def program(*values: Any) -> tuple[Any, ...]:
        env = dict(zip(arg_names, values))
        for name, fn, ins, attrs in steps:
            env[name] = fn(jnp, [env[i] for i in ins], attrs)
        return tuple(env[v] for v in out_values)

    return Lowered(program, args, outputs)


def _specs(lowered: Lowered, shardings: Sequence[Any] | None) -> list[Any]:
    import jax

    specs = []
    for i, node in enumerate(lowered.args):
        kw = {"sharding": shardings[i]} if shardings is not None else {}
        specs.append(jax.ShapeDtypeStruct(node.type.shape, node.type.np_dtype, **kw))
    return specs


def mesh_shardings(lowered: Lowered, devices: int, shard: Sequence[str]) -> tuple[list[Any], Any]:
    """NamedShardings over a one-axis ``batch`` mesh of the first ``devices`` devices: the args in
    ``shard`` split along axis 0, the rest (and the outputs) replicated."""
    jax = require_jax()
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    available = jax.devices()
    if devices > len(available):
        raise GptirError(f"--devices {devices}: JAX sees only {len(available)} device(s) "
                         f"({available[0].platform}); on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count="
                         f"{devices} splits it (set before the run starts)")
    mesh = Mesh(np.array(available[:devices]), ("batch",))
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("batch"))
    ins = []
    for node in lowered.args:
        if node.name in shard:
            if node.type.rank < 1 or node.type.shape[0] % devices:
                raise GptirError(f"input {node.name} ({node.type}) cannot be split over {devices} devices: "
                                 f"its first axis must be a multiple of {devices} (use --batch a multiple of "
                                 "--devices)")
            ins.append(split)
        else:
            ins.append(replicated)
    return ins, replicated


class JaxProgram:
    """A graph compiled once by XLA; ``program(inputs) -> {output: array}``.

    ``checked`` inputs are converted and checked like the interpreter's (numpy in, numpy out);
    unchecked programs take arrays of the right type (numpy or JAX) and return JAX arrays, so a
    training loop keeps its state on the device between steps. ``compile_seconds`` is the time
    tracing and XLA compilation took.
    """

    def __init__(self, graph: Graph, *, checked: bool = True, devices: int = 1, shard: Sequence[str] = ()) -> None:
        jax = require_jax()
        self.graph, self.checked = graph, checked
        t0 = time.perf_counter()
        self.lowered = lower(graph)
        with x64():
            if devices > 1:
                ins, out = mesh_shardings(self.lowered, devices, shard)
                jitted = jax.jit(self.lowered.fn, in_shardings=ins, out_shardings=out)
                specs = _specs(self.lowered, ins)
            else:
                jitted, specs = jax.jit(self.lowered.fn), _specs(self.lowered, None)
            self.compiled = jitted.lower(*specs).compile(compiler_options(graph))
        self.compile_seconds = time.perf_counter() - t0
        self._sig = [(n.name, n, graph.params.get(n.name)) for n in self.lowered.args]
        self._shardings = list(self.compiled.input_shardings[0])
        self._jax_array, self._device_put = jax.Array, jax.device_put

    def _args(self, inputs: Mapping[str, Any]) -> list[Any]:
        args = []
        for (name, node, default), sharding in zip(self._sig, self._shardings):
            v = inputs.get(name, default)
            if v is None:
                missing = [f"{n}: {nd.type}" for n, nd, d in self._sig if n not in inputs and d is None]
                raise ExecError(f"missing input(s): {', '.join(missing)}")
            if isinstance(v, self._jax_array):
                if v.sharding != sharding:  # e.g. a result of a program on other devices
                    v = self._device_put(v, sharding)
                if self.checked:
                    v = np.asarray(v)
            if self.checked or not isinstance(v, (np.ndarray, self._jax_array)):
                v = bind_input(node, v)
            args.append(v)
        if self.checked:
            unknown = sorted(set(inputs) - {n for n, _, _ in self._sig})
            if unknown:
                raise ExecError(f"unknown input(s): {', '.join(unknown)[:80]}")
        return args

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        args = self._args(inputs)
        with x64():
            outs = self.compiled(*args)
        if self.checked:
            outs = [np.asarray(o) for o in outs]
        return dict(zip(self.lowered.outputs, outs))


def compile_graph(graph: Graph, checked: bool = True, devices: int = 1, shard: Sequence[str] = ()) -> JaxProgram:
    """Compile ``graph`` for XLA (see :class:`JaxProgram`)."""
    return JaxProgram(graph, checked=checked, devices=devices, shard=shard)


def stablehlo(graph: Graph) -> str:
    """The StableHLO (MLIR text) of ``graph``: its inputs and params are the function's arguments, in
    graph order, and its outputs the results, in output order."""
    jax = require_jax()
    lowered = lower(graph)
    with x64():
        return jax.jit(lowered.fn).lower(*_specs(lowered, None)).as_text()
