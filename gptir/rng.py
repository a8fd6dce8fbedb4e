"""Threaded, pure random generators.

gptir must reproduce two reference runs draw for draw: Karpathy's microgpt (Python's
Mersenne Twister, ``random.Random(42)``) and MicroGPTEx (Erlang's ``exsss``). Both are
offered behind one functional interface: every function takes a generator state and
returns the drawn value together with a *new* state. Nothing is global and nothing is
mutated, so the same state can be replayed, saved to JSON and resumed mid-stream.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

__all__ = [
    "PyRandom",
    "Exsss",
    "Rng",
    "python_random",
    "exsss",
    "uniform",
    "gauss",
    "gauss_many",
    "shuffle",
    "choice",
    "to_json",
    "from_json",
]

T = TypeVar("T")

M58 = (1 << 58) - 1
M64 = (1 << 64) - 1
_TWO_POW_MINUS53 = 2.0**-53
_MT_STATE_LEN = 625  # 624 words + the index, as in random.Random.getstate()[1]


# --------------------------------------------------------------------------- Python MT


@dataclass(frozen=True)
class PyRandom:
    """Python's Mersenne Twister as an immutable value.

    ``state`` is exactly ``random.Random.getstate()``: (version, 625 ints, gauss_next).
    Keeping CPython's own state (rather than a reimplementation) makes every draw
    bit-identical to ``random.Random`` by construction.
    """

    state: tuple[Any, ...]

    def _live(self) -> random.Random:
        """A throwaway ``random.Random`` positioned at this state."""
        r = random.Random()
        r.setstate(self.state)
        return r


def python_random(seed: int) -> PyRandom:
    """The state of ``random.Random(seed)``."""
    return PyRandom(random.Random(seed).getstate())


# --------------------------------------------------------------------------- Erlang exsss


@dataclass(frozen=True)
class Exsss:
    """Erlang's ``exsss`` (xorshift116**) state: two 58-bit words, s0 the older one."""

    s0: int
    s1: int


def _splitmix64(x: int) -> tuple[int, int]:
    """One splitmix64 step: (output, new state)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31), x


def _seed58(x: int) -> tuple[int, int]:
    """Splitmix64 until the low 58 bits are non-zero: (58-bit word, splitmix state)."""
    while True:
        z, x = _splitmix64(x)
        z &= M58
        if z != 0:
            return z, x


def exsss(seed: int) -> Exsss:
    """Seed exsss from an integer exactly as Erlang's ``rand:seed(exsss, N)`` does."""
    a1 = seed & M64
    a2 = (seed * 101 + 7) & M64
    a3 = (seed * 1009 + 23) & M64
    _, r1 = _seed58(a1)
    s0, r2 = _seed58(a2 ^ r1)
    s1, _ = _seed58(a3 ^ r2)
    return Exsss(s0, s1)


def _exsss_next(s0: int, s1: int) -> tuple[int, int, int]:
    """One exsss step on raw words: (58-bit output, new s0, new s1)."""
    t = (s0 ^ (s0 << 24)) & M58
    new = t ^ s1 ^ (t >> 11) ^ (s1 >> 41)
    a = (s1 + (s1 << 2)) & M58
    b = ((a << 7) & M58) | (a >> 51)
    out = (b + (b << 3)) & M58
    return out, s1, new


def _exsss_uniform(s0: int, s1: int) -> tuple[float, int, int]:
    """uniform01 on raw words: a 53-bit float in [0, 1)."""
    out, s0, s1 = _exsss_next(s0, s1)
    return (out >> 5) * _TWO_POW_MINUS53, s0, s1


def _exsss_normal(s0: int, s1: int, mu: float, sigma: float) -> tuple[float, int, int]:
    """Box-Muller from two fresh uniforms, no caching (as MicroGPTEx does)."""
    u1, s0, s1 = _exsss_uniform(s0, s1)
    u2, s0, s1 = _exsss_uniform(s0, s1)
    u1 = max(u1, 1e-12)
    z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return mu + sigma * z, s0, s1


# --------------------------------------------------------------------------- public API

Rng: TypeAlias = PyRandom | Exsss


def uniform(rng: Rng) -> tuple[float, Rng]:
    """A float in [0, 1): ``random()`` for Python, ``uniform01`` for exsss."""
    if isinstance(rng, PyRandom):
        r = rng._live()
        return r.random(), PyRandom(r.getstate())
    u, s0, s1 = _exsss_uniform(rng.s0, rng.s1)
    return u, Exsss(s0, s1)


def gauss(rng: Rng, mu: float, sigma: float) -> tuple[float, Rng]:
    """One normal draw: ``random.gauss`` (whose cached twin lives in the state) or exsss Box-Muller."""
    values, rng = gauss_many(rng, 1, mu, sigma)
    return values[0], rng


def gauss_many(rng: Rng, n: int, mu: float, sigma: float) -> tuple[list[float], Rng]:
    """``n`` consecutive normal draws; identical to ``n`` calls of :func:`gauss`, but fast."""
    if n < 0:
        raise ValueError(f"gauss_many: n must be >= 0, got {n}")
    if isinstance(rng, PyRandom):
        r = rng._live()
        draw = r.gauss
        values = [draw(mu, sigma) for _ in range(n)]
        return values, PyRandom(r.getstate())
    s0, s1 = rng.s0, rng.s1
    out: list[float] = []
    for _ in range(n):
        x, s0, s1 = _exsss_normal(s0, s1, mu, sigma)
        out.append(x)
    return out, Exsss(s0, s1)


def shuffle(rng: Rng, items: Sequence[T]) -> tuple[list[T], Rng]:
    """A shuffled copy: ``random.shuffle`` for Python, Fisher-Yates from the end for exsss."""
    result = list(items)
    if isinstance(rng, PyRandom):
        r = rng._live()
        r.shuffle(result)
        return result, PyRandom(r.getstate())
    s0, s1 = rng.s0, rng.s1
    for i in range(len(result) - 1, 0, -1):
        u, s0, s1 = _exsss_uniform(s0, s1)
        k = i + 1
        j = min(math.floor(u * k), k - 1)
        result[i], result[j] = result[j], result[i]
    return result, Exsss(s0, s1)


def choice(rng: Rng, weights: Sequence[float]) -> tuple[int, Rng]:
    """Draw an index with probability proportional to ``weights``.

    Python: exactly ``random.choices(range(len(weights)), weights=weights)[0]``.
    exsss: one uniform u; the first index whose cumulative weight is >= u * total.
    """
    if len(weights) == 0:
        raise ValueError("choice: weights must be non-empty")
    if isinstance(rng, PyRandom):
        r = rng._live()
        index = r.choices(range(len(weights)), weights=weights)[0]
        return index, PyRandom(r.getstate())
    u, s0, s1 = _exsss_uniform(rng.s0, rng.s1)
    cum = list(itertools.accumulate(weights))
    target = u * cum[-1]
    index = next((i for i, c in enumerate(cum) if c >= target), len(cum) - 1)
    return index, Exsss(s0, s1)


# --------------------------------------------------------------------------- JSON


def to_json(rng: Rng) -> dict[str, Any]:
    """An exact JSON-serialisable snapshot (ints stay ints, gauss_next as ``float.hex``)."""
    if isinstance(rng, PyRandom):
        version, words, gauss_next = rng.state
        return {
            "kind": "python",
            "version": version,
            "state": list(words),
            "gauss_next": None if gauss_next is None else float(gauss_next).hex(),
        }
    return {"kind": "exsss", "s0": rng.s0, "s1": rng.s1}


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def from_json(d: dict[str, Any]) -> Rng:
    """Rebuild a generator from :func:`to_json` output; ``ValueError`` if malformed."""
    if not isinstance(d, dict):
        raise ValueError(f"rng json: expected an object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind == "exsss":
        s0, s1 = d.get("s0"), d.get("s1")
        for name, w in (("s0", s0), ("s1", s1)):
            if not _is_int(w) or not 0 <= w <= M58:  # type: ignore[operator]  # _is_int(w): an int
                raise ValueError(f"rng json: exsss {name} must be an integer in [0, 2^58), got {w!r}")
        if s0 == 0 and s1 == 0:
            raise ValueError("rng json: exsss state must not be all zero")
        assert isinstance(s0, int) and isinstance(s1, int)  # checked above
        return Exsss(s0, s1)
    if kind == "python":
        version, words, gauss_next = d.get("version"), d.get("state"), d.get("gauss_next")
        if not _is_int(version):
            raise ValueError(f"rng json: python version must be an integer, got {version!r}")
        if not isinstance(words, list) or len(words) != _MT_STATE_LEN:
            raise ValueError(f"rng json: python state must be a list of {_MT_STATE_LEN} integers")
        if not all(_is_int(w) and 0 <= w < 2**32 for w in words):
            raise ValueError("rng json: python state words must be integers in [0, 2^32)")
        if not words[-1] <= 624:
            raise ValueError(f"rng json: python state index must be <= 624, got {words[-1]}")
        if gauss_next is None:
            g = None
        elif isinstance(gauss_next, str):
            try:
                g = float.fromhex(gauss_next)
            except ValueError:
                raise ValueError(f"rng json: gauss_next is not a hex float: {gauss_next!r}") from None
        else:
            raise ValueError(f"rng json: gauss_next must be null or a hex float string, got {gauss_next!r}")
        state = (version, tuple(words), g)
        try:
            random.Random().setstate(state)
        except (TypeError, ValueError) as e:
            raise ValueError(f"rng json: python state rejected: {e}") from None
        return PyRandom(state)
    raise ValueError(f"rng json: 'kind' must be 'python' or 'exsss', got {kind!r}")
