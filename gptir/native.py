"""The native backend: a graph becomes one C function of fused loops, built by the system C compiler
and loaded with ``ctypes``.

Route: C through the system compiler (``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH), because a
C compiler is already on most Linux and macOS machines and ``ctypes`` is in the standard library, so
the backend adds no Python dependency. Where no compiler is found, using the backend is a one-line
:class:`NativeError` saying so.

Lowering (everything op-specific comes from each op's ``c`` trait in the op table, a
:class:`gptir.ops.CLower`): shapes are static per program. Views (reshape, transpose, broadcast,
slice, stop_gradient) are strided views and cost no code. Elementwise ops of one shape are fused into
one loop nest per group; inside the loop each node's element is a local variable, and a node's values
are stored only when something outside its group (or the caller) reads them; scalar operands are read
once before the loop. Reductions, argmax and matmuls are loop nests (matmul: ``i, k, j`` order over
contiguous rows of the right operand, copied contiguous first when they are not, in register tiles of
up to :func:`matmul_tile` sums, in vectors of the build machine's width (:func:`vector_bytes`); from :data:`GEMM_MIN` multiply-adds numpy's own BLAS gemm, handed to the
program when it is loaded, where numpy has one); gather and scatter_add are loops that check every index (an out-of-range index
makes the function return the node's number, which becomes the interpreter's one-line ExecError).
Constant subgraphs are evaluated once, at generation time, by the op table's own numpy ``evaluate``.
Buffers are planned once per program: every intermediate lives at a fixed offset of one arena,
allocated when the program is loaded and reused by every call (offsets are shared by values whose
lifetimes do not overlap); outputs are written straight into the arrays handed back to the caller.

Exactness: IEEE arithmetic, no fast-math; the compiler is told not to contract ``a*b+c`` into FMAs
(``-ffp-contract=off``) and integers wrap (``-fwrapv``), as numpy's do; vector instructions
(``-march=native`` on x86-64) compute the same IEEE results. add, sub, mul, div, neg,
maximum, minimum, relu, abs, sqrt, the comparisons, where, cast, max, min, argmax, gather,
scatter_add and the views are bit-identical to the interpreter; sum is too where numpy sums in the
same order (one reduced axis, or reduced axes contiguous in memory: numpy's pairwise summation is
reproduced; otherwise in index order); so is pow by a scalar 2 or 0.5 (``x*x`` and ``sqrt``, numpy's own
fast paths). exp, log, tanh, sin, cos, other pows and sigmoid call the C library (glibc's are correctly
rounded in nearly all cases) while numpy uses its own SIMD kernels, so they may differ in the last bit;
small matmuls sum in index order where numpy calls OpenBLAS (FMA, blocked), large ones call that
OpenBLAS, so matmul agrees to rounding. Everything agrees with the interpreter within 1e-12
(``tests/test_native.py``).

Safety: the C source holds only identifiers made from validated IR names (``[A-Za-z_][A-Za-z0-9_.]*``,
dots as underscores, with a prefix), integers from verified attributes and shapes, numbers printed
exactly (C99 hex floats; ``INFINITY``/``NAN`` for the others), and fixed text. Locations, scopes and
graph names never reach it. A compiler failure is a one-line NativeError.

Build cache: shared objects are kept in a folder (``cache_dir``, else ``$GPTIR_NATIVE_CACHE``, else
``$XDG_CACHE_HOME/gptir/native`` or ``~/.cache/gptir/native``) under the sha256 of the source, the
compiler's path and ``--version``, the flags (and the CPU, with ``-march=native``), written by temporary
file and rename (so concurrent runs are safe); an entry that does not load, or carries another key, is
rebuilt. A program made from a recipe rather than a graph (the training step: ``index=``) is also found
through an index entry keyed by that recipe, gptir's source, the compiler file and the CPU, so a warm
start neither traces the graph nor generates C (:class:`NativeProgram`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gptir.fileio import atomic_write_bytes
from gptir.interp import ExecError, bind_input
from gptir.interp import run as interp_run
from gptir.ir import ATTR_KINDS, INPUT_OPS, NUMPY_DTYPES, GptirError, Graph, Node
from gptir.ops import C_TYPES, OPS, c_strides, is_c_contiguous

FLAGS = ("-O2", "-fPIC", "-shared", "-std=c99", "-ffp-contract=off", "-fwrapv", "-fno-math-errno")
# gcc: its vectoriser with the cost model of -O3, at -O2's compile time (-O3 takes 4-5x as long to build a
# training step, for slower code here); clang vectorises at -O2 by itself
GCC_VECTORIZE = ("-ftree-vectorize", "-fvect-cost-model=dynamic")
# x86-64: the build machine's vector instructions (AVX2, AVX-512); IEEE results are the same, the cache key
# then carries the CPU's identity (see cpu_identity)
NATIVE_ARCH = ("-march=native",)
ENTRY = "gptir_main"
CACHE_ENV = "GPTIR_NATIVE_CACHE"
FOLD_MAX_ELEMENTS = 4096  # constant subgraphs up to this size are evaluated at generation time
GEMM_MIN = 32768  # matmul: multiply-adds from which BLAS's gemm is called (when numpy's BLAS is found)
ALIGN = 64  # bytes: every arena buffer starts on a cache line
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
NO_COMPILER = "the native backend needs a C compiler and none was found (set $CC, or install cc, gcc or clang)"


class NativeError(GptirError):
    """The native backend cannot build or load a program (no compiler, a compiler failure, ...)."""


# -- the compiler ----------------------------------------------------------------------------------


def find_compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` (split like a shell would), else cc, gcc or clang on PATH."""
    env = os.environ.get("CC", "").strip()
    if env:
        try:
            cmd = shlex.split(env)
        except ValueError:
            return None
        path = shutil.which(cmd[0]) if cmd else None
        return [path, *cmd[1:]] if path else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


_VERSIONS: dict[tuple[str, ...], str] = {}


def compiler_identity(cmd: Sequence[str]) -> str:
    """The compiler's path and ``--version`` output (part of every cache key); cached per process."""
    key = tuple(cmd)
    if key not in _VERSIONS:
        import subprocess  # here: a warm start (the cache's index) runs no compiler

        try:
            r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeError(f"the C compiler {cmd[0]} does not run: {e}") from None
        _VERSIONS[key] = " ".join(cmd) + "\n" + r.stdout
    return _VERSIONS[key]


def compile_flags(identity: str = "") -> tuple[str, ...]:
    """The flags for the compiler of ``identity`` (:func:`compiler_identity`): :data:`FLAGS`, gcc's
    :data:`GCC_VECTORIZE`, and on x86-64 :data:`NATIVE_ARCH` (the build machine's vector instructions; no
    fast-math and no contraction, so every result is the same as without it)."""
    flags = FLAGS if "clang" in identity.lower() else FLAGS + GCC_VECTORIZE
    return flags + NATIVE_ARCH if platform.machine().lower() in ("x86_64", "amd64") else flags


@functools.cache
def cpu_identity() -> str:
    """The CPU the code is built for (part of the cache key with ``-march=native``): the machine name
    and, on Linux, the first processor's model name and flags from /proc/cpuinfo (read once per process)."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 16).split("\n\n", 1)[0].splitlines()
        text += "".join("\n" + ln for ln in lines if ln.startswith(("model name", "flags", "vendor_id")))
    except OSError:
        text += "\n" + platform.processor()
    return text


def vector_bytes() -> int:
    """The size of the matmul tiles' vector type (``gx_vd``, ``gx_vf`` in the prelude): the build machine's
    vector registers, 64 bytes with AVX-512 (``avx512f``), 32 with AVX or AVX2, else 16 (SSE2, NEON).

    A vector type wider than the registers is split by the compiler, through the stack: 64-byte vectors on
    an AVX2-only CPU made microgpt's default training step 4x slower (133 against 29 us a call)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return 16
    flags = next((ln for ln in cpu_identity().splitlines() if ln.startswith("flags")), "").split()
    return 64 if "avx512f" in flags else 32 if "avx" in flags else 16


def matmul_tile(vbytes: int, itemsize: int = 8) -> int:
    """Output columns a matmul tile sums at once, kept in registers over k: 32 with 64-byte vectors (as
    tuned on AVX-512: 4 registers of f64, 2 of f32), else two vectors' worth (on AVX2: 8 columns of f64,
    16 of f32; measured fastest on the default training step of an AVX2 machine, f64 29 us against 37 us
    with 16 columns and 41 us with 32, f32 17 us against 19.5 us with 8 columns)."""
    return 32 if vbytes >= 64 else 2 * vbytes // itemsize


def available() -> str | None:
    """None when the native backend can build, else the reason it cannot (one line)."""
    return None if find_compiler() is not None else NO_COMPILER


def cache_folder(cache_dir: str | None = None) -> str:
    """Where built programs are kept (see the module docstring)."""
    if cache_dir:
        return cache_dir
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gptir", "native")


@dataclass
class BuildInfo:
    """How a program's shared object was obtained: from the cache or built (and how long it took)."""

    path: str
    key: str
    cached: bool
    seconds: float


def build(source: str, cache_dir: str | None = None) -> tuple[ctypes.CDLL, BuildInfo]:
    """The loaded shared object for ``source``: from the cache, else compiled and stored there."""
    t0 = time.perf_counter()
    cmd = find_compiler()
    if cmd is None:
        raise NativeError(NO_COMPILER)
    flags = compile_flags(compiler_identity(cmd))
    ident = [source, compiler_identity(cmd), " ".join(flags)]
    if NATIVE_ARCH[0] in flags:
        ident.append(cpu_identity())
    key = hashlib.sha256("\0".join(ident).encode()).hexdigest()
    folder = cache_folder(cache_dir)
    path = os.path.join(folder, f"gptir-{key[:40]}.so")
    if os.path.exists(path):
        lib = _load(path, key)
        if lib is not None:
            return lib, BuildInfo(path, key, True, time.perf_counter() - t0)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise NativeError(f"cannot create the native build cache {folder}: {e.strerror or e}") from None
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gptir-cc-") as tmp:
        src, obj = os.path.join(tmp, "program.c"), os.path.join(tmp, "program.so")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            r = subprocess.run([*cmd, *flags, f'-DGPTIR_KEY="{key}"', "-o", obj, src, "-lm"],
                               capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeError(f"the C compiler {cmd[0]} failed to run: {e}") from None
        if r.returncode != 0 or not os.path.exists(obj):
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:200] or "no message")
            raise NativeError(f"the C compiler failed (exit {r.returncode}): {first.strip()[:300]}")
        # loaded from the private build (a fresh name: the process may hold a bad entry under the cache's)
        lib = _load(obj, key)
        if lib is None:
            raise NativeError(f"the compiled program for {path} does not load")
        with open(obj, "rb") as f:
            data = f.read()
        try:
            atomic_write_bytes(path, data)  # temporary file and rename: never a half-written entry
        except OSError:
            pass  # an unwritable cache: this run still works, the next one builds again
    return lib, BuildInfo(path, key, False, time.perf_counter() - t0)


@functools.cache
def gptir_digest() -> str:
    """The sha256 of gptir's own source (every module of the package), once per process: what a program
    generated from a recipe (not from a graph's text) depends on."""
    h = hashlib.sha256()
    pkg = os.path.dirname(os.path.abspath(__file__))
    for root, dirs, files in os.walk(pkg):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    h.update(os.path.relpath(path, pkg).encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def index_key(index: str) -> str:
    """The build cache's index key for programs named ``index``: that text, gptir's source, the compiler
    (its command and the file it runs: real path, size and modification time, which stand for its
    ``--version`` without running it), the flag sets and the CPU."""
    env = os.environ.get("CC", "")
    stamp = _STAMPS.get(env)
    if stamp is None:  # once per process and $CC
        cmd = find_compiler()
        if cmd is None:
            raise NativeError(NO_COMPILER)
        real = os.path.realpath(cmd[0])
        try:
            st = os.stat(real)
        except OSError as e:
            raise NativeError(f"the C compiler {cmd[0]} cannot be read: {e.strerror or e}") from None
        stamp = _STAMPS[env] = "\0".join([gptir_digest(), " ".join(cmd), f"{real} {st.st_size} {st.st_mtime_ns}",
                                          " ".join(FLAGS + GCC_VECTORIZE + NATIVE_ARCH), cpu_identity()])
    return hashlib.sha256(f"gptir-native-index/1\0{index}\0{stamp}".encode()).hexdigest()


_STAMPS: dict[str, str] = {}  # $CC -> the compiler's, gptir's and the CPU's part of index keys


_DTYPES: dict[str, np.dtype] = {dt.name: dt for dt in NUMPY_DTYPES.values()}  # an index entry's dtype names


def _sig_of(items: Any) -> Sig | None:
    """A checked (name, shape, dtype) list from an index entry's JSON (None: malformed)."""
    if not isinstance(items, list):
        return None
    out: Sig = []
    for it in items:
        if not (isinstance(it, list) and len(it) == 3 and isinstance(it[0], str) and isinstance(it[1], list)
                and all(type(d) is int and d >= 0 for d in it[1]) and it[2] in _DTYPES):
            return None
        out.append((it[0], tuple(it[1]), _DTYPES[it[2]]))
    return out


def _index_path(cache_dir: str | None, ikey: str) -> str:
    return os.path.join(cache_folder(cache_dir), f"gptir-index-{ikey[:40]}.json")


def _read_index(cache_dir: str | None, ikey: str) -> tuple[Any, ...] | None:
    """(library, path, key, inputs, outputs, arena bytes, node names) of a valid index entry, else None
    (missing, malformed, or its shared object missing or not carrying the recorded key)."""
    try:
        with open(_index_path(cache_dir, ikey), encoding="utf-8") as f:
            e = json.loads(f.read(1 << 24))
    except (OSError, ValueError):
        return None
    if not isinstance(e, dict) or e.get("index") != ikey:
        return None
    key, arena, nodes = e.get("key"), e.get("arena"), e.get("nodes")
    ins, outs = _sig_of(e.get("inputs")), _sig_of(e.get("outputs"))
    if not (isinstance(key, str) and re.fullmatch(r"[0-9a-f]{64}", key) and type(arena) is int and arena >= 0
            and isinstance(nodes, list) and all(isinstance(n, str) for n in nodes) and ins is not None
            and outs is not None):
        return None
    path = os.path.join(cache_folder(cache_dir), f"gptir-{key[:40]}.so")
    lib = _load(path, key) if os.path.exists(path) else None
    return None if lib is None else (lib, path, key, ins, outs, arena, nodes)


def _write_index(cache_dir: str | None, ikey: str, prog: "NativeProgram") -> None:
    entry = {"index": ikey, "key": prog.build.key, "arena": prog.arena_bytes, "nodes": prog.node_names,
             "inputs": [[n, list(sh), np.dtype(dt).name] for n, sh, dt in prog.inputs],
             "outputs": [[n, list(sh), np.dtype(dt).name] for n, sh, dt in prog.outputs]}
    try:
        atomic_write_bytes(_index_path(cache_dir, ikey), json.dumps(entry).encode())
    except OSError:
        pass  # an unwritable cache: the next run generates again


BLAS_SYMBOLS = (("scipy_cblas_dgemm64_", "scipy_cblas_sgemm64_"), ("cblas_dgemm64_", "cblas_sgemm64_"))


@functools.cache
def blas() -> tuple[int, int] | None:
    """The addresses of numpy's own BLAS gemm functions (the OpenBLAS its wheels bundle, with 64-bit
    integers: :data:`BLAS_SYMBOLS`), looked up once per process; None where numpy has none of them."""
    import glob

    root = os.path.dirname(os.path.abspath(np.__file__))
    for path in sorted(glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
                       + glob.glob(os.path.join(root, ".dylibs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same library
        except OSError:
            continue
        for d, f in BLAS_SYMBOLS:
            if hasattr(lib, d) and hasattr(lib, f):
                found = (ctypes.cast(getattr(lib, d), ctypes.c_void_p).value or 0,
                         ctypes.cast(getattr(lib, f), ctypes.c_void_p).value or 0)
                if found[0] and found[1]:
                    return found
    return None


def build_all(sources: Sequence[str], cache_dir: str | None = None, jobs: int | None = None) -> list[BuildInfo]:
    """:func:`build` for several programs at once: the compiler runs in up to ``jobs`` processes (default:
    one per CPU), each entry written to the cache as ``build`` writes it."""
    if not sources:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), jobs or os.cpu_count() or 1))) as pool:
        return [info for _, info in pool.map(lambda src: build(src, cache_dir), sources)]


def has_index(index: str, cache_dir: str | None = None) -> bool:
    """Whether the build cache has an index entry for ``index`` (checked when a program loads it)."""
    return os.path.exists(_index_path(cache_dir, index_key(index)))


def _load(path: str, key: str) -> ctypes.CDLL | None:
    """The shared object at ``path`` if it loads and carries ``key`` (a corrupt or foreign entry: None)."""
    try:
        lib = ctypes.CDLL(os.path.abspath(path))
        got = (ctypes.c_char * (len(key) + 1)).in_dll(lib, "gptir_key").value
        getattr(lib, ENTRY)
        set_blas = lib.gptir_set_blas
    except (OSError, AttributeError, ValueError):
        return None
    if got != key.encode():
        return None
    gemm = blas()
    set_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    set_blas.restype = None
    set_blas(*(gemm or (None, None)))
    return lib


# -- C text ------------------------------------------------------------------------------------------


def c_number(value: Any, dtype: str) -> str:
    """A C literal for one element of ``dtype``: floats exactly (hex), INFINITY/NAN, i64 and bool."""
    if dtype in ("f64", "f32"):
        x = float(value)
        if math.isnan(x):
            text = "NAN"
        elif math.isinf(x):
            text = "INFINITY" if x > 0 else "(-INFINITY)"
        else:
            text = x.hex()
            if text.startswith("-"):
                text = f"({text})"
        return f"((float){text})" if dtype == "f32" else text
    if dtype == "i64":
        n = int(value)
        if n == -2 ** 63:
            return "(-INT64_C(9223372036854775807) - 1)"
        return f"INT64_C({n})" if n >= 0 else f"(-INT64_C({-n}))"
    if dtype == "bool":
        return "1" if bool(value) else "0"
    raise NativeError(f"no C type for dtype {dtype}")


PRELUDE = r"""#include <math.h>
#include <stdint.h>
#include <string.h>

const char gptir_key[] = GPTIR_KEY;

/* BLAS (numpy's OpenBLAS, ILP64 cblas_?gemm), given by gptir_set_blas when the program is loaded; large
   matmuls call it when set and are loops otherwise */
typedef void (*gx_dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                           const double *, int64_t, double, double *, int64_t);
typedef void (*gx_sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                           const float *, int64_t, float, float *, int64_t);
static gx_dgemm_t gx_dgemm;
static gx_sgemm_t gx_sgemm;
void gptir_set_blas(void *d, void *s) { gx_dgemm = (gx_dgemm_t)d; gx_sgemm = (gx_sgemm_t)s; }

/* matmul tiles: vectors of the machine's register width (GCC/clang vector types), loaded and stored
   unaligned */
typedef double gx_vd __attribute__((vector_size(GX_VECTOR_BYTES)));
typedef float gx_vf __attribute__((vector_size(GX_VECTOR_BYTES)));
static inline gx_vd gx_vd_ld(const double *p) { gx_vd v; memcpy(&v, p, sizeof v); return v; }
static inline void gx_vd_st(double *p, gx_vd v) { memcpy(p, &v, sizeof v); }
static inline gx_vf gx_vf_ld(const float *p) { gx_vf v; memcpy(&v, p, sizeof v); return v; }
static inline void gx_vf_st(float *p, gx_vf v) { memcpy(p, &v, sizeof v); }

/* a fused loop has no loop-carried dependence: within one step no buffer written overlaps one read */
#if defined(__clang__)
#define GX_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define GX_IVDEP _Pragma("GCC ivdep")
#else
#define GX_IVDEP
#endif

/* numpy's (x86's) float -> i64 conversion: NaN and out-of-range values give INT64_MIN */
static inline int64_t gx_ftoi(double x) {
    return (x != x || x >= 9223372036854775808.0 || x < -9223372036854775808.0) ? INT64_MIN : (int64_t)x;
}

/* numpy's pairwise summation (its add.reduce over a contiguous axis), in the same order */
#define GX_PAIRWISE(NAME, T)                                                              \
static T NAME(const T *a, int64_t n, int64_t s) {                                         \
    if (n < 8) {                                                                          \
        T r = -0.0;                                                                       \
        for (int64_t i = 0; i < n; i++) r += a[i * s];                                    \
        return r;                                                                         \
    }                                                                                     \
    if (n <= 128) {                                                                       \
        T r[8];                                                                           \
        for (int j = 0; j < 8; j++) r[j] = a[j * s];                                      \
        int64_t i;                                                                        \
        for (i = 8; i < n - (n % 8); i += 8)                                              \
            for (int j = 0; j < 8; j++) r[j] += a[(i + j) * s];                           \
        T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));        \
        for (; i < n; i++) res += a[i * s];                                               \
        return res;                                                                       \
    }                                                                                     \
    int64_t n2 = n / 2;                                                                   \
    n2 -= n2 % 8;                                                                         \
    return NAME(a, n2, s) + NAME(a + n2 * s, n - n2, s);                                  \
}
GX_PAIRWISE(gx_pairwise_f64, double)
GX_PAIRWISE(gx_pairwise_f32, float)
"""


def _cident(prefix: str, name: str, taken: set[str]) -> str:
    """A C identifier for IR value ``name``: validated, dots as underscores, prefixed, made unique."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise NativeError(f"unsafe value name {name!r}")
    base = prefix + name.replace(".", "_")
    cand, k = base, 0
    while cand in taken:
        k += 1
        cand = f"{base}_{k}"
    taken.add(cand)
    return cand


# -- values ------------------------------------------------------------------------------------------


@dataclass
class Buf:
    """A block of memory the program reads or writes: an input, an output, a constant or an arena slot."""

    var: str  # the C pointer variable
    dtype: str
    size: int  # elements
    kind: str  # input, output, const, arena
    slot: int = -1  # input/output position
    first: int = -1  # the step that writes it (arena)
    last: int = -1  # the last step that reads it
    offset: int = 0  # bytes into the arena


@dataclass
class Val:
    """How a node's value is found: ``literal`` (one number for every element), or elements of ``buf``
    at ``offset + sum(i * stride)``; ``pending`` while its fused group has not been emitted."""

    shape: tuple[int, ...]
    dtype: str
    buf: Buf | None = None
    strides: tuple[int, ...] = ()
    offset: int = 0
    literal: str | None = None
    value: np.ndarray | None = None  # known at generation time (constants and their views)
    root: str | None = None  # the node whose buffer this is or views
    group: "Group | None" = None


@dataclass
class Group:
    """Elementwise nodes of one shape, fused into one loop nest."""

    shape: tuple[int, ...]
    nodes: list[Node] = field(default_factory=list)
    members: set[str] = field(default_factory=set)


def _coalesce(shape: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop axes of length 1 and merge neighbouring axes every access walks as one (numpy's coalescing)."""
    keep = [i for i, d in enumerate(shape) if d != 1]
    dims = [shape[i] for i in keep]
    strs = [[s[i] for i in keep] for s in strides]
    k = len(dims) - 1
    while k > 0:
        if all(s[k - 1] == s[k] * dims[k] for s in strs):
            dims[k - 1] *= dims[k]
            del dims[k]
            for s in strs:
                s[k - 1] = s[k]
                del s[k]
        k -= 1
    return dims, strs


class _Writer:
    """Generates the C function for one graph (see :func:`generate`)."""

    def __init__(self, graph: Graph) -> None:
        from gptir.passes import evaluate_node  # here: a warm start (the cache's index) generates nothing

        self.evaluate = evaluate_node
        self.graph = graph
        self.vbytes = vector_bytes()
        self.nodes = graph.nodes
        self.users = graph.users()
        self.outputs_of: dict[str, list[str]] = {}
        for out, v in graph.outputs.items():
            self.outputs_of.setdefault(v, []).append(out)
        self.taken: set[str] = set()
        self.vals: dict[str, Val] = {}
        self.bufs: list[Buf] = []
        self.consts: list[str] = []  # static array definitions
        self.body: list[str] = []  # kernels' text; one entry per step
        self.open: dict[tuple[int, ...], Group] = {}
        self.inputs: list[Node] = []
        self.out_bufs: dict[str, Buf] = {}  # output name -> its buffer
        self.position = {name: i for i, name in enumerate(self.nodes)}
        self.claimed: set[str] = set()  # outputs whose array a computed value already writes

    # -- helpers
    def fresh_buf(self, node: Node, prefix: str = "b_") -> Buf:
        """The buffer a computed node's values go to: the caller's output array if it is an output."""
        for o in self.outputs_of.get(node.name, []):
            if o not in self.claimed:
                self.claimed.add(o)
                return self.out_bufs[o]
        buf = Buf(_cident(prefix, node.name, self.taken), node.type.dtype, node.type.size, "arena")
        self.bufs.append(buf)
        return buf

    def materialized(self, node: Node) -> Val:
        buf = self.fresh_buf(node)
        for o in self.outputs_of.get(node.name, []):
            if self.out_bufs[o] is buf:
                buf.first = len(self.body)
        return Val(node.type.shape, node.type.dtype, buf, c_strides(node.type.shape), 0, root=node.name)

    def bufof(self, v: Val) -> Buf | None:
        """``v``'s buffer (a view made while its root was pending finds the root's buffer now)."""
        if v.buf is None and v.literal is None and v.root is not None:
            return self.vals[v.root].buf
        return v.buf

    def pending(self, v: Val) -> Group | None:
        """The open group that will compute the buffer ``v`` views, if any."""
        return self.vals[v.root].group if v.root is not None and v.root in self.vals else None

    def read(self, v: Val, step: int) -> None:
        buf = self.bufof(v)
        if buf is not None:
            buf.last = max(buf.last, step)

    def write(self, buf: Buf, step: int) -> None:
        if buf.first < 0:
            buf.first = step

    def at(self, v: Val, idx: Sequence[str]) -> str:
        """The C expression of ``v``'s element at loop indices ``idx`` (one per axis of ``v``)."""
        if v.literal is not None:
            return v.literal
        buf = self.bufof(v)
        assert buf is not None
        terms = [str(v.offset)] if v.offset else []
        for i, s in zip(idx, v.strides):
            if s and i != "0":
                terms.append(i if s == 1 else f"{i} * {s}")
        return f"{buf.var}[{' + '.join(terms) or '0'}]"

    def loops(self, shape: Sequence[int], depth: int = 1, prefix: str = "i") -> tuple[list[str], list[str], list[str]]:
        """(headers, closers, index variables) of a loop nest over ``shape`` (axes of length 1 get "0")."""
        heads: list[str] = []
        closes: list[str] = []
        idx: list[str] = []
        for k, d in enumerate(shape):
            if d == 1:
                idx.append("0")
                continue
            var = f"{prefix}{k}"
            ind = "    " * (depth + len(heads))
            heads.append(f"{ind}for (int64_t {var} = 0; {var} < {d}; {var}++) {{")
            closes.append(f"{ind}}}")
            idx.append(var)
        closes.reverse()
        return heads, closes, idx

    def emit(self, comment: str, lines: Sequence[str]) -> None:
        self.body.append("\n".join([f"    /* {comment} */", "    {", *lines, "    }"]))

    def copy(self, dst: Val, src: Val, comment: str) -> None:
        """A loop copying ``src``'s elements into ``dst`` (same shape)."""
        step = len(self.body)
        self.read(src, step)
        assert dst.buf is not None
        self.write(dst.buf, step)
        if src.literal is None:
            dims, (ds, ss) = _coalesce(dst.shape, [dst.strides, src.strides])
        else:
            dims, (ds,) = _coalesce(dst.shape, [dst.strides])
            ss = [0] * len(dims)
        d2 = Val(tuple(dims), dst.dtype, dst.buf, tuple(ds), dst.offset)
        s2 = Val(tuple(dims), src.dtype, self.bufof(src), tuple(ss), src.offset, literal=src.literal)
        heads, closes, idx = self.loops(dims, 2)
        ind = "    " * (2 + len(heads))
        self.emit(comment, [*heads, f"{ind}{self.at(d2, idx)} = {self.at(s2, idx)};", *closes])

    def contiguous(self, v: Val, node: Node) -> Val:
        """``v`` itself if it is a C-contiguous buffer view, else a contiguous copy of it."""
        if v.literal is None and self.bufof(v) is not None and is_c_contiguous(v.shape, v.strides):
            return v
        buf = Buf(_cident("c_", node.name, self.taken), v.dtype, int(np.prod(v.shape, dtype=np.int64)), "arena")
        self.bufs.append(buf)
        dst = Val(v.shape, v.dtype, buf, c_strides(v.shape), 0, root=node.name)
        self.copy(dst, v, f"a contiguous copy for %{node.name}")
        return dst

    # -- groups
    def close(self, group: Group) -> None:
        """Emit ``group``'s loop nest: each node's element a local, stored where it escapes."""
        if self.open.get(group.shape) is group:
            del self.open[group.shape]
        step = len(self.body)
        locs: dict[str, str] = {}
        stores: list[tuple[str, Val]] = []
        reads: list[Val] = []
        for node in group.nodes:
            v = self.vals[node.name]
            v.group = None
            escapes = bool(self.outputs_of.get(node.name)) or any(
                u not in group.members for u in self.users.get(node.name, ()))
            if escapes:
                mv = self.materialized(node)
                v.buf, v.strides, v.offset = mv.buf, mv.strides, mv.offset
                assert v.buf is not None
                self.write(v.buf, step)
                stores.append((node.name, v))
            for i in node.inputs:
                if self.alias(i, group) is None:
                    reads.append(self.vals[i])
        for r in reads:
            self.read(r, step)
        accesses = [v for _, v in stores] + [r for r in reads if r.literal is None]
        dims, strs = _coalesce(group.shape, [a.strides for a in accesses])
        flat = {id(a): Val(tuple(dims), a.dtype, self.bufof(a), tuple(s), a.offset) for a, s in zip(accesses, strs)}
        heads, closes, idx = self.loops(dims, 2)
        if heads:
            last = heads[-1]
            heads.insert(len(heads) - 1, last[:len(last) - len(last.lstrip())] + "GX_IVDEP")
        ind = "    " * (2 + len(heads) - bool(heads))
        # operands that are one element for the whole loop (scalars, broadcasts) are read once, before it
        hoisted: dict[int, str] = {}
        pre = []
        for r in reads:
            fv = flat.get(id(r))
            if fv is not None and id(r) not in hoisted and not any(fv.strides):
                hoisted[id(r)] = _cident("s_", r.root or "x", self.taken)
                pre.append(f"        const {C_TYPES[r.dtype]} {hoisted[id(r)]} = {self.at(fv, ['0'] * len(dims))};")
        body = []
        for node in group.nodes:
            opdef = OPS[node.op]
            assert opdef.c is not None and opdef.c.expr is not None
            args = []
            for i in node.inputs:
                member = self.alias(i, group)
                if member is not None:
                    args.append(locs[member])
                else:
                    v = self.vals[i]
                    args.append(v.literal if v.literal is not None else hoisted.get(id(v)) or self.at(flat[id(v)], idx))
            dt = self.nodes[node.inputs[-1]].type.dtype
            loc = _cident("t_", node.name, self.taken)
            locs[node.name] = loc
            body.append(f"{ind}const {C_TYPES[node.type.dtype]} {loc} = {opdef.c.expr(args, dt, _safe_attrs(node))};")
        for name, v in stores:
            body.append(f"{ind}{self.at(flat[id(v)], idx)} = {locs[name]};")
        names = " ".join(f"%{n.name}" for n in group.nodes)
        self.emit(f"fused {'x'.join(map(str, group.shape)) or 'scalar'}: {names}", [*pre, *heads, *body, *closes])

    def alias(self, name: str, group: Group) -> str | None:
        """The member of ``group`` whose element value ``name`` is at every loop index (the member
        itself, or a view with the member's very layout, such as stop_gradient), else None."""
        if name in group.members:
            return name
        v = self.vals[name]
        if v.root in group.members and v.buf is None and v.literal is None:
            rv = self.vals[v.root]
            if (v.shape, v.strides, v.offset) == (rv.shape, rv.strides, rv.offset):
                return v.root
        return None

    def settle(self, node: Node, joining: Group | None = None) -> None:
        """Close every open group ``node`` reads from, unless it joins that group reading members whole."""
        for i in node.inputs:
            g = self.pending(self.vals[i])
            if g is None or (g is joining and self.alias(i, g) is not None):
                continue
            self.close(g)

    # -- nodes
    def source(self, node: Node) -> Val:
        t = node.type
        if node.op in INPUT_OPS:
            buf = Buf(_cident("in_", node.name, self.taken), t.dtype, t.size, "input", slot=len(self.inputs))
            self.inputs.append(node)
            self.bufs.append(buf)
            return Val(t.shape, t.dtype, buf, c_strides(t.shape), 0, root=node.name)
        value = node.attrs.get("value")
        if not isinstance(value, np.ndarray):
            raise NativeError(f"%{node.name}: a const needs a tensor value")
        return self.const_val(node, value)

    def const_val(self, node: Node, value: np.ndarray) -> Val:
        t = node.type
        value = np.ascontiguousarray(value, dtype=t.np_dtype).reshape(t.shape)
        if value.size == 1:
            return Val(t.shape, t.dtype, literal=c_number(value.reshape(-1)[0], t.dtype), value=value,
                       strides=(0,) * t.rank)
        buf = Buf(_cident("k_", node.name, self.taken), t.dtype, t.size, "const")
        items = ", ".join(c_number(x, t.dtype) for x in value.reshape(-1).tolist()) or "0"
        self.consts.append(f"static const {C_TYPES[t.dtype]} {buf.var}[{max(t.size, 1)}] = {{{items}}};")
        return Val(t.shape, t.dtype, buf, c_strides(t.shape), 0, value=value, root=None)

    def node(self, node: Node) -> None:
        opdef = OPS.get(node.op)
        if opdef is None or opdef.c is None:
            raise NativeError(f"%{node.name}: op '{node.op}' has no C lowering")
        kind = opdef.c.kind
        if kind == "source":
            self.vals[node.name] = self.source(node)
            return
        ins = [self.vals[i] for i in node.inputs]
        attrs = _safe_attrs(node)
        if kind != "view" and all(v.value is not None for v in ins) and node.type.size <= FOLD_MAX_ELEMENTS \
                and all(v.value is not None and v.value.size <= FOLD_MAX_ELEMENTS for v in ins):
            value = self.evaluate(node, [v.value for v in ins if v.value is not None])
            if value is not None:
                self.vals[node.name] = self.const_val(node, value)
                return
        if kind == "view":
            self.view(node, ins[0], attrs)
            return
        if kind == "expr":
            g = self.open.get(node.type.shape)
            self.settle(node, g)
            g = self.open.get(node.type.shape)
            if g is None:
                g = self.open[node.type.shape] = Group(node.type.shape)
            g.nodes.append(node)
            g.members.add(node.name)
            t = node.type
            self.vals[node.name] = Val(t.shape, t.dtype, None, c_strides(t.shape), 0, root=node.name, group=g)
            return
        self.settle(node)
        ins = [self.vals[i] for i in node.inputs]
        getattr(self, f"k_{kind}")(node, ins, attrs)

    def view(self, node: Node, v: Val, attrs: Mapping[str, Any]) -> None:
        opdef = OPS[node.op]
        assert opdef.c is not None and opdef.c.view is not None
        value = None
        if v.value is not None:
            value = self.evaluate(node, [v.value])
        if v.literal is not None:
            self.vals[node.name] = Val(node.type.shape, node.type.dtype, literal=v.literal, value=value,
                                       strides=(0,) * node.type.rank)
            return
        got = opdef.c.view((v.shape, v.strides, v.offset), attrs)
        if got is None:
            g = self.pending(v)
            if g is not None:
                self.close(g)
            base = self.contiguous(v, node)
            got = opdef.c.view((base.shape, base.strides, base.offset), attrs)
            assert got is not None
            v = base
        shape, strides, off = got
        self.vals[node.name] = Val(tuple(shape), node.type.dtype, v.buf, tuple(strides), off, value=value,
                                   root=v.root)

    # -- kernels: each writes one fresh buffer
    def kernel_out(self, node: Node, reads: Sequence[Val]) -> tuple[Val, Buf]:
        """The fresh buffer a kernel for ``node`` writes (the step's reads and write recorded)."""
        out = self.materialized(node)
        step = len(self.body)
        for v in reads:
            self.read(v, step)
        assert out.buf is not None
        self.write(out.buf, step)
        return out, out.buf

    def k_reduce(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        x, opdef = ins[0], OPS[node.op]
        assert opdef.c is not None and opdef.c.expr is not None
        out, obuf = self.kernel_out(node, [x])
        axes = tuple(attrs["axes"])
        kept = [a for a in range(len(x.shape)) if a not in axes]
        red = [a for a in axes if x.shape[a] != 1]
        ctype = C_TYPES[x.dtype]
        heads, closes, kidx = self.loops([x.shape[a] for a in kept], 2, "i")
        ind = "    " * (2 + len(heads))
        okeys = dict(zip(kept, kidx))
        ostr = c_strides(node.type.shape)
        oterms = [f"{kidx[j]} * {ostr[j if not attrs['keepdims'] else kept[j]]}" for j in range(len(kept))
                  if kidx[j] != "0" and ostr[j if not attrs['keepdims'] else kept[j]]]
        oref = f"{obuf.var}[{' + '.join(oterms) or '0'}]"
        lines = [*heads]
        # numpy's order: pairwise over one contiguous run of reduced elements when that run is the
        # operand's innermost (smallest-stride) axis; otherwise element by element in index order
        rdims, (rstr,) = _coalesce([x.shape[a] for a in red], [[x.strides[a] for a in red]])
        inner = min((abs(s) for d, s in zip(x.shape, x.strides) if d != 1), default=0)
        if opdef.c.pairwise and x.dtype in ("f64", "f32") and len(rdims) == 1 and abs(rstr[0]) == inner and \
                x.literal is None:
            base = self.at(x, [okeys.get(a, "0") for a in range(len(x.shape))])
            lines.append(f"{ind}{oref} = ({ctype})0 + gx_pairwise_{x.dtype}(&{base}, {rdims[0]}, {rstr[0]});")
        else:
            rheads, rcloses, ridx = self.loops([x.shape[a] for a in red], 3 + len(heads) - 1, "r")
            full: list[str] = []
            rk = dict(zip(red, ridx))
            for a in range(len(x.shape)):
                full.append(okeys.get(a) or rk.get(a) or "0")
            first = [okeys.get(a, "0") for a in range(len(x.shape))]
            init = opdef.c.init if opdef.c.init is not None else self.at(x, first)
            if opdef.c.init is not None:
                init = f"({ctype}){init}"
            lines.append(f"{ind}{ctype} acc = {init};")
            lines.extend(rheads)
            rind = "    " * (2 + len(heads) + len(rheads))
            lines.append(f"{rind}acc = {opdef.c.expr(['acc', self.at(x, full)], x.dtype, attrs)};")
            lines.extend(rcloses)
            lines.append(f"{ind}{oref} = acc;")
        lines.extend(closes)
        self.vals[node.name] = out
        self.emit(f"{node.op} over axes {list(axes)}: %{node.name}", lines)

    def k_argmax(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        x = ins[0]
        axis = attrs["axis"]
        out, obuf = self.kernel_out(node, [x])
        kept = [a for a in range(len(x.shape)) if a != axis]
        heads, closes, kidx = self.loops([x.shape[a] for a in kept], 2, "i")
        ind = "    " * (2 + len(heads))
        okeys = dict(zip(kept, kidx))
        ostr = c_strides(node.type.shape)
        oterms = [f"{kidx[j]} * {ostr[j]}" for j in range(len(kept)) if kidx[j] != "0"]
        full = [okeys.get(a, "r") for a in range(len(x.shape))]
        first = [okeys.get(a, "0") for a in range(len(x.shape))]
        ctype = C_TYPES[x.dtype]
        nan = " || v != v" if x.dtype in ("f64", "f32") else ""
        stop = "if (best != best) break; " if x.dtype in ("f64", "f32") else ""
        lines = [*heads, f"{ind}{ctype} best = {self.at(x, first)}; int64_t at = 0;",
                 f"{ind}for (int64_t r = 1; r < {x.shape[axis]}; r++) {{",
                 f"{ind}    {stop}{ctype} v = {self.at(x, full)};",
                 f"{ind}    if (v > best{nan}) {{ best = v; at = r; }}",
                 f"{ind}}}", f"{ind}{obuf.var}[{' + '.join(oterms) or '0'}] = at;", *closes]
        self.vals[node.name] = out
        self.emit(f"argmax over axis {axis}: %{node.name}", lines)

    def k_matmul(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        a, b = (self.contiguous(v, node) if v.literal is not None else v for v in ins)
        gemm = _gemm_layout(a, b, node.type.dtype)
        if gemm is None and len(b.shape) > 1 and b.shape[-1] > 1 and b.strides[-1] != 1:
            b = self.contiguous(b, node)  # rows of B contiguous, so the inner loop below is over them
        out, obuf = self.kernel_out(node, [a, b])
        # as [batch..., m, k] @ [batch..., k, n] -> [batch..., m, n], with stride 0 for missing axes
        a_sh, a_st = list(a.shape), list(a.strides)
        b_sh, b_st = list(b.shape), list(b.strides)
        if len(a_sh) == 1:
            a_sh, a_st = [1, *a_sh], [0, *a_st]
        if len(b_sh) == 1:
            b_sh, b_st = [*b_sh, 1], [*b_st, 0]
        batch = a_sh[:-2]
        m, k, n = a_sh[-2], a_sh[-1], b_sh[-1]
        bb_st = b_st[:-2] if len(b_sh) > 2 else [0] * len(batch)
        o_shape = [*batch, m, n]
        o_st = list(c_strides(o_shape))
        heads, closes, bidx = self.loops(batch, 2, "q")
        ind = "    " * (2 + len(heads))

        def term(idx: Sequence[str], st: Sequence[int], off: int) -> str:
            parts = [str(off)] if off else []
            parts += [i if s == 1 else f"{i} * {s}" for i, s in zip(idx, st) if s and i != "0"]
            return " + ".join(parts) or "0"

        abuf, bbuf = self.bufof(a), self.bufof(b)
        assert abuf is not None and bbuf is not None
        ov, av, bv = obuf.var, abuf.var, bbuf.var
        ob = term(bidx, o_st[:-2], 0)
        ab = term(bidx, a_st[:-2], a.offset)
        bbase = term(bidx, bb_st, b.offset)
        am, ak = a_st[-2], a_st[-1]
        bk, bn = b_st[-2], b_st[-1]
        om, on = o_st[-2], o_st[-1]
        # restrict: within one step no buffer written overlaps one read (the arena's plan; caller arrays)
        lines = [*heads, f"{ind}const {C_TYPES[a.dtype]} *restrict A = {av} + {ab}, *restrict B = {bv} + {bbase};",
                 f"{ind}{C_TYPES[node.type.dtype]} *restrict O = {ov} + {ob};"]
        T = C_TYPES[node.type.dtype]
        if gemm is not None:  # large: BLAS's gemm when the program was given one (numpy's), else dot products
            fn = "gx_dgemm" if node.type.dtype == "f64" else "gx_sgemm"
            ta, lda, tb, ldb = gemm
            lines += [f"{ind}if ({fn}) {fn}(101, {ta}, {tb}, {m}, {n}, {k}, 1, A, {lda}, B, {ldb}, 0, O, {n});",
                      f"{ind}else"]
        if bn == 1 and n > 1 and gemm is None:  # rows of B contiguous: i, k, j (each element summed in k order)
            # j in blocks of up to matmul_tile() columns and rows in blocks of r, so that r * w sums are
            # kept in registers over k (independent chains of additions): whole vectors of self.vbytes
            # (GCC/clang vector types: a multiply and an add per element, as the scalar code), then the
            # columns left over as scalars
            itemsize = np.dtype(_NP[node.type.dtype]).itemsize
            vw = self.vbytes // itemsize
            tile = matmul_tile(self.vbytes, itemsize)
            full = n - n % vw if on == 1 else 0
            for j0, j1, vec in ((0, full, True), (full, n, False)):
                for jb in range(j0, j1, tile):
                    w = min(tile, j1 - jb)
                    lines += self.matmul_tile(T, m, k, jb, w, vw if vec else 0, am, ak, bk, om, on, ind, tile)
        else:
            lines += [f"{ind}for (int64_t i = 0; i < {m}; i++)" + (" {" if gemm else ""),
                      f"{ind}    for (int64_t j = 0; j < {n}; j++) {{",
                      f"{ind}        {T} acc = 0;",
                      f"{ind}        for (int64_t p = 0; p < {k}; p++) acc += A[i * {am} + p * {ak}] * B[p * {bk} + j * {bn}];",
                      f"{ind}        O[i * {om} + j * {on}] = acc;",
                      f"{ind}    }}"] + ([f"{ind}}}"] if gemm else [])
        lines += closes
        self.vals[node.name] = out
        self.emit(f"matmul {a.shape} @ {b.shape}: %{node.name}", lines)

    @staticmethod
    def matmul_tile(T: str, m: int, k: int, j0: int, w: int, vw: int, am: int, ak: int, bk: int, om: int, on: int,
                    ind: str, tile: int) -> list[str]:
        """Columns ``j0 .. j0+w`` of ``O = A @ B`` (B's rows contiguous), ``r`` rows at a time with their
        ``r * w`` sums in registers; in vectors of ``vw`` elements (``w`` a multiple of it), or scalars (0)."""
        rows = max(1, min(m, tile // w, 4))
        V = f"gx_v{'d' if T == 'double' else 'f'}"
        out = []
        for i0, i1, r in ((0, m - m % rows, rows), (m - m % rows, m, 1)):
            if i1 <= i0:
                continue
            if vw:
                nv = w // vw
                acc = [f"{ind}    {V} acc[{r}][{nv}];",
                       f"{ind}    for (int64_t q = 0; q < {r}; q++) for (int64_t t = 0; t < {nv}; t++) acc[q][t] = ({V}){{0}};"]
                step = f"for (int64_t t = 0; t < {nv}; t++) acc[q][t] += x * {V}_ld(br + {vw} * t);"
                store = (f"for (int64_t q = 0; q < {r}; q++) for (int64_t t = 0; t < {nv}; t++) "
                         f"{V}_st(O + (i + q) * {om} + {j0} + {vw} * t, acc[q][t]);")
            else:
                acc = [f"{ind}    {T} acc[{r}][{w}];",
                       f"{ind}    for (int64_t q = 0; q < {r}; q++) for (int64_t j = 0; j < {w}; j++) acc[q][j] = 0;"]
                step = f"for (int64_t j = 0; j < {w}; j++) acc[q][j] += x * br[j];"
                store = (f"for (int64_t q = 0; q < {r}; q++) for (int64_t j = 0; j < {w}; j++) "
                         f"O[(i + q) * {om} + ({j0} + j) * {on}] = acc[q][j];")
            out += [f"{ind}for (int64_t i = {i0}; i < {i1}; i += {r}) {{", *acc,
                    f"{ind}    for (int64_t p = 0; p < {k}; p++) {{",
                    f"{ind}        const {T} *restrict br = B + p * {bk} + {j0};",
                    f"{ind}        for (int64_t q = 0; q < {r}; q++) {{",
                    f"{ind}            const {T} x = A[(i + q) * {am} + p * {ak}];",
                    f"{ind}            {step}",
                    f"{ind}        }}",
                    f"{ind}    }}",
                    f"{ind}    {store}",
                    f"{ind}}}"]
        return out

    def k_concat(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        out = self.materialized(node)
        axis, off = attrs["axis"], 0
        assert out.buf is not None
        for i, v in zip(node.inputs, ins):
            d = v.shape[axis]
            if d:
                dst = Val(v.shape, v.dtype, out.buf, out.strides, off * out.strides[axis])
                self.copy(dst, v, f"concat: %{i} into %{node.name}")
            off += d
        if not any(v.shape[axis] for v in ins):
            self.write(out.buf, len(self.body))
        self.vals[node.name] = out

    def indexed(self, node: Node, data: Val, idx: Val, rows: int, scatter: bool) -> None:
        """gather (``out[i..., j...] = data[idx[i...], j...]``) or scatter_add (``out[idx[i...], j...] +=
        data[i..., j...]`` over a zeroed ``out``), in index order, each index checked against ``rows``."""
        out, buf = self.kernel_out(node, [data, idx])
        heads, closes, iidx = self.loops(idx.shape, 2, "i")
        ind = "    " * (2 + len(heads))
        rest = node.type.shape[1:] if scatter else data.shape[1:]
        rheads, rcloses, ridx = self.loops(rest, 2 + len(heads), "j")
        rind = "    " * (2 + len(heads) + len(rheads))
        dest = Val(node.type.shape, node.type.dtype, buf, c_strides(node.type.shape), 0)
        if scatter:
            move = f"{self.at(dest, ['ix', *ridx])} += {self.at(data, [*iidx, *ridx])};"
            lines = [f"        memset({buf.var}, 0, sizeof({C_TYPES[node.type.dtype]}) * {node.type.size});"]
        else:
            move = f"{self.at(dest, [*iidx, *ridx])} = {self.at(data, ['ix', *ridx])};"
            lines = []
        err = self.position[node.name] + 1
        lines += [*heads, f"{ind}const int64_t ix = {self.at(idx, iidx)};",
                  f"{ind}if (ix < 0 || ix >= {rows}) return {err};  /* %{node.name}: index out of range */",
                  *rheads, f"{rind}{move}", *rcloses, *closes]
        self.vals[node.name] = out
        self.emit(f"{node.op}: %{node.name}", lines)

    def k_gather(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        self.indexed(node, ins[0], ins[1], ins[0].shape[0], scatter=False)

    def k_scatter_add(self, node: Node, ins: Sequence[Val], attrs: Mapping[str, Any]) -> None:
        self.indexed(node, ins[0], ins[1], attrs["size"], scatter=True)

    # -- the whole program
    def run(self) -> "CProgram":
        graph = self.graph
        for o, v in graph.outputs.items():
            node = graph.nodes[v]
            self.out_bufs[o] = Buf(_cident("out_", o, self.taken), node.type.dtype, node.type.size, "output",
                                   slot=len(self.out_bufs))
        for node in graph.nodes.values():
            self.node(node)
        for g in list(self.open.values()):
            self.close(g)
        # outputs not computed straight into their array: copied (views, inputs, constants, repeats)
        for o, v in graph.outputs.items():
            buf, val = self.out_bufs[o], self.vals[v]
            if val.buf is buf:
                continue
            node = graph.nodes[v]
            self.copy(Val(node.type.shape, node.type.dtype, buf, c_strides(node.type.shape), 0), val,
                      f"output {o}: %{v}")
        end = len(self.body)
        return self.finish(end)

    def finish(self, end: int) -> "CProgram":
        arena = _plan_arena([b for b in self.bufs if b.kind == "arena"], end)
        n_in = len(self.inputs)
        decl = []
        for b in self.bufs:
            t = C_TYPES[b.dtype]
            if b.kind == "input":
                decl.append(f"    const {t} *const {b.var} = (const {t} *)io[{b.slot}];")
            elif b.kind == "arena" and b.first >= 0:
                decl.append(f"    {t} *const {b.var} = ({t} *)(arena + {b.offset});")
        for b in self.out_bufs.values():
            t = C_TYPES[b.dtype]
            decl.append(f"    {t} *const {b.var} = ({t} *)io[{n_in + b.slot}];")
        used = [n.name for n in self.inputs]
        head = (f"/* gptir native program: {len(self.graph.nodes)} nodes, {len(self.body)} loop nests; "
                f"inputs {', '.join(used) or 'none'} */")
        src = "\n".join([head, f"#define GX_VECTOR_BYTES {self.vbytes}", PRELUDE, *self.consts, "",
                         f"int {ENTRY}(void *const *io, char *arena) {{", "    (void)arena;", *decl,
                         *self.body, "    return 0;", "}", ""])
        outs = [(o, self.graph.nodes[v]) for o, v in self.graph.outputs.items()]
        return CProgram(src, list(self.inputs), [(o, n.type.shape, n.type.np_dtype) for o, n in outs], arena,
                        len(self.body))


def _gemm_layout(a: Val, b: Val, dtype: str) -> tuple[int, int, int, int] | None:
    """For a matmul of at least :data:`GEMM_MIN` multiply-adds of matrices each with one unit stride:
    (transA, lda, transB, ldb) of a row-major cblas gemm call (CblasNoTrans 111, CblasTrans 112), else None."""
    if dtype not in ("f64", "f32") or len(a.shape) < 2 or len(b.shape) < 2 or a.literal or b.literal:
        return None
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if m * n * k < GEMM_MIN or min(m, n, k) < 2:
        return None

    def one(rows: int, cols: int, st: tuple[int, ...]) -> tuple[int, int] | None:
        if st[-1] == 1 and st[-2] >= cols:
            return 111, st[-2]
        if st[-2] == 1 and st[-1] >= rows:
            return 112, st[-1]
        return None

    la, lb = one(m, k, a.strides), one(k, n, b.strides)
    return None if la is None or lb is None else (*la, *lb)


def _plan_arena(bufs: list[Buf], end: int) -> int:
    """Give each arena buffer a byte offset so that buffers live at once never overlap; returns the
    arena's size. A buffer lives from the step writing it to the last step reading it (both included)."""
    placed: list[Buf] = []
    total = 0
    for b in sorted((b for b in bufs if b.first >= 0), key=lambda b: b.first):
        if b.last < b.first:
            b.last = b.first
        need = max(ALIGN, -(-b.size * np.dtype(_NP[b.dtype]).itemsize // ALIGN) * ALIGN)
        live = sorted((p for p in placed if p.last >= b.first), key=lambda p: p.offset)
        at = 0
        for p in live:
            pend = p.offset + max(ALIGN, -(-p.size * np.dtype(_NP[p.dtype]).itemsize // ALIGN) * ALIGN)
            if at + need <= p.offset:
                break
            at = max(at, pend)
        b.offset = at
        placed.append(b)
        total = max(total, at + need)
    return total


_NP = {"f64": np.float64, "f32": np.float32, "i64": np.int64, "bool": np.bool_}


def _safe_attrs(node: Node) -> dict[str, Any]:
    """Attributes rebuilt from plain ints/bools/dtype names by their kind's ``emit`` (tensors never)."""
    opdef = OPS[node.op]
    out: dict[str, Any] = {}
    for k, kind in opdef.attrs.items():
        if k not in node.attrs:
            continue
        if kind == "tensor":
            continue
        try:
            out[k] = ATTR_KINDS[kind].emit(node.attrs[k])
        except (ValueError, TypeError) as e:
            raise NativeError(f"%{node.name}: attribute {k} {e}") from None
        if kind == "dtype" and out[k] not in C_TYPES:
            raise NativeError(f"%{node.name}: attribute {k}: no C type for {out[k]!r}")
    return out


@dataclass
class CProgram:
    """A graph's C source and what calling it needs: input nodes in argument order, outputs (name,
    shape, dtype) in output order after them, the arena's size in bytes."""

    source: str
    inputs: list[Node]
    outputs: list[tuple[str, tuple[int, ...], np.dtype]]
    arena_bytes: int
    n_kernels: int


def generate(graph: Graph) -> CProgram:
    """The C program of ``graph`` (assumed verified; see the module docstring)."""
    return _Writer(graph).run()


def generate_source(graph: Graph) -> str:
    """The C source of ``graph``'s program (what ``gptir compile --emit c`` prints)."""
    return generate(graph).source


# -- running -----------------------------------------------------------------------------------------


Sig = list[tuple[str, tuple[int, ...], np.dtype]]  # (name, shape, dtype) of a program's inputs or outputs


class NativeProgram:
    """A graph compiled to machine code; ``program(inputs) -> {output: array}``.

    ``checked`` inputs are converted and checked like the interpreter's; unchecked ones must already
    be arrays of the declared type (a training loop's own arrays), non-contiguous ones are copied.
    Outputs are fresh arrays every call. One program instance owns one arena, so calls on one
    instance must not run concurrently (instances are independent).

    ``graph`` may be a function making the graph, with ``index``: a text that names what it makes (the
    training step's settings, say). The build cache then keeps an index entry under a key of that text,
    gptir's own source and the compiler (see :func:`index_key`), recording the program's key and calling
    convention, so that a warm start loads the shared object without building the graph or generating C
    (the graph is made only if needed later: a failing call, :attr:`source`)."""

    def __init__(self, graph: Graph | Callable[[], Graph], *, checked: bool = True, cache_dir: str | None = None,
                 index: str | None = None) -> None:
        self.checked = checked
        self._graph = graph if isinstance(graph, Graph) else None
        self._make = graph if not isinstance(graph, Graph) else None
        self._source: str | None = None
        self.generate_seconds = 0.0
        entry = None
        if index is not None:
            t0 = time.perf_counter()
            ikey = index_key(index)
            entry = _read_index(cache_dir, ikey)
            if entry is not None:
                self.lib, self.build = entry[0], BuildInfo(entry[1], entry[2], True, time.perf_counter() - t0)
                self.inputs, self.outputs, self.arena_bytes, self.node_names = entry[3:]
        if entry is None:
            graph = self.graph
            t0 = time.perf_counter()
            program = generate(graph)
            self.generate_seconds = time.perf_counter() - t0
            self._source = program.source
            self.lib, self.build = build(program.source, cache_dir)
            self.inputs = [(n.name, n.type.shape, n.type.np_dtype) for n in program.inputs]
            self.outputs = list(program.outputs)
            self.arena_bytes, self.node_names = program.arena_bytes, list(graph.nodes)
            if index is not None:
                _write_index(cache_dir, ikey, self)
        fn = getattr(self.lib, ENTRY)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = ctypes.c_int
        self._fn = fn
        self._arena = np.zeros(self.arena_bytes + ALIGN, np.uint8)
        base = self._arena.ctypes.data
        self._arena_ptr = base + (-base) % ALIGN
        self._io = np.zeros(max(len(self.inputs) + len(self.outputs), 1), np.uintp)
        self._io_ptr = self._io.ctypes.data
        self._sig: list[tuple[str, Node, tuple[int, ...], np.dtype, Any]] | None = None

    @property
    def graph(self) -> Graph:
        """The program's graph (made now if the program came from the cache's index)."""
        if self._graph is None:
            assert self._make is not None
            self._graph = self._make()
        return self._graph

    @property
    def source(self) -> str:
        """The program's C source."""
        if self._source is None:
            self._source = generate(self.graph).source
        return self._source

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self._sig is None:
            graph = self.graph
            self._sig = [(name, graph.nodes[name], shape, dt, graph.params.get(name)) for name, shape, dt in self.inputs]
            self._known = {node.name for node in graph.inputs}
        get = inputs.get
        keep = []
        io = self._io
        ndarray = np.ndarray
        k = 0
        for name, node, shape, dt, default in self._sig:
            v = get(name, default)
            if v is None:
                missing = [f"{n}: {nd.type}" for n, nd, _, _, d in self._sig if n not in inputs and d is None]
                raise ExecError(f"missing input(s): {', '.join(missing)}")
            if type(v) is not ndarray or v.dtype is not dt or v.shape != shape or not v.flags.c_contiguous:
                v = bind_input(node, v)
            keep.append(v)
            io[k] = v.__array_interface__["data"][0]
            k += 1
        if self.checked and not self._known.issuperset(inputs):
            unknown = sorted(set(inputs) - self._known)
            raise ExecError(f"unknown input(s): {', '.join(unknown)[:80]} (the graph takes: "
                            f"{', '.join(sorted(self._known)) or 'nothing'})")
        outs = []
        for _, shape, dt in self.outputs:
            a = np.empty(shape, dt)
            outs.append(a)
            io[k] = a.__array_interface__["data"][0]
            k += 1
        rc = self._fn(self._io_ptr, self._arena_ptr)
        if rc:
            interp_run(self.graph, inputs)  # raises the interpreter's ExecError naming the node
            raise ExecError(f"the native program failed at %{self.failed_node(rc)}")
        return {o: a for (o, _, _), a in zip(self.outputs, outs)}

    def failed_node(self, rc: int) -> str:
        """The node a program's nonzero return value names."""
        return self.node_names[rc - 1] if 0 < rc <= len(self.node_names) else "?"

    def bind(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> "Bound":
        """The program's call with every input and output array fixed now (checked once: ndarray of the
        declared dtype and shape, C-contiguous; outputs writeable and not overlapping any other array
        given), so that a call converts nothing (see :class:`Bound`)."""
        arrays: list[np.ndarray] = []
        slots: dict[str, int] = {}
        wanted = [(name, shape, dt, False) for name, shape, dt in self.inputs]
        wanted += [(o, shape, dt, True) for o, shape, dt in self.outputs]
        for k, (name, shape, dt, out) in enumerate(wanted):
            a = (outputs if out else inputs).get(name)
            if a is None and not out and name in self.graph.params:  # (makes the graph: defaults are in it)
                a = np.ascontiguousarray(self.graph.params[name], dt)
            if not isinstance(a, np.ndarray) or a.dtype != dt or a.shape != shape or not a.flags.c_contiguous \
                    or (out and not a.flags.writeable):
                what = "output" if out else "input"
                raise ExecError(f"bind: {what} {name} must be a C-contiguous {np.dtype(dt).name} array of shape "
                                f"{shape}{' (writeable)' if out else ''}")
            arrays.append(a)
            if not out:
                slots[name] = k
        # contiguous arrays are byte ranges: by start, one overlaps an earlier one iff it starts before the
        # largest end so far (of outputs, for an input; of any array, for an output)
        ptrs = [a.ctypes.data for a in arrays]
        spans = sorted((p, p + a.nbytes, w[3], w[0]) for p, a, w in zip(ptrs, arrays, wanted) if a.nbytes)
        end = out_end = 0
        for start, stop, out, name in spans:
            if start < out_end or (out and start < end):
                raise ExecError(f"bind: {name} overlaps {'another array' if out else 'an output'} of the call")
            end = max(end, stop)
            if out:
                out_end = max(out_end, stop)
        return Bound(self, arrays, ptrs, slots)


class Bound:
    """A :class:`NativeProgram` call with its arrays fixed (:meth:`NativeProgram.bind`): ``bound()`` runs the
    program on them, writing the outputs in place. ``point(name, array)`` makes an input read another
    array of the same type (checked), so a training loop can hand each step's tokens without a copy."""

    def __init__(self, program: NativeProgram, arrays: list[np.ndarray], ptrs: list[int], slots: dict[str, int]) -> None:
        self.program, self.arrays, self.slots = program, arrays, slots
        self.io = np.array(ptrs or [0], np.uintp)
        self._args = (ctypes.c_void_p(self.io.ctypes.data), ctypes.c_void_p(program._arena_ptr))
        self._fn = program._fn
        self._known: dict[int, tuple[np.ndarray, int]] = {}

    def point(self, name: str, array: np.ndarray) -> None:
        k = self.slots[name]
        known = self._known.get(id(array))
        if known is None or known[0] is not array:
            old = self.arrays[k]
            if not isinstance(array, np.ndarray) or array.dtype != old.dtype or array.shape != old.shape \
                    or not array.flags.c_contiguous:
                raise ExecError(f"point: input {name} must be a C-contiguous {old.dtype.name} array of shape "
                                f"{old.shape}")
            # checked once: kept (so its id names it) with its address
            known = self._known[id(array)] = (array, array.ctypes.data)
        self.io[k] = known[1]

    def __call__(self) -> None:
        rc = self._fn(*self._args)
        if rc:
            raise ExecError(f"the native program failed at %{self.program.failed_node(rc)} (an index out of range)")


def compile_graph(graph: Graph | Callable[[], Graph], checked: bool = True, cache_dir: str | None = None,
                  index: str | None = None) -> NativeProgram:
    """Compile ``graph`` to machine code (see :class:`NativeProgram`)."""
    return NativeProgram(graph, checked=checked, cache_dir=cache_dir, index=index)


def uncovered_ops() -> list[str]:
    """Ops of the table without a C lowering (the table-walking test wants none)."""
    from gptir.ops import C_KINDS

    return sorted(name for name, d in OPS.items() if d.c is None or d.c.kind not in C_KINDS
                  or (d.c.kind in ("expr", "reduce") and d.c.expr is None)
                  or (d.c.kind == "view" and d.c.view is None)
                  or (d.c.kind not in ("expr", "reduce", "view", "source") and not hasattr(_Writer, f"k_{d.c.kind}")))


Compiled = Callable[[Mapping[str, Any]], dict[str, np.ndarray]]
