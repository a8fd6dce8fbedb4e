"""gptir.rng: PyRandom is random.Random draw for draw; Exsss is Erlang's exsss as specified."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptir import rng
from gptir.rng import Exsss, PyRandom

NAMES_TXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "names.txt"

seeds = st.integers(min_value=0, max_value=2**64)
weight_lists = st.lists(st.floats(min_value=0.0, max_value=1e3, allow_nan=False), min_size=1, max_size=30).filter(
    lambda ws: sum(ws) > 0
)


def _docs() -> list[str]:
    if not NAMES_TXT.exists():
        pytest.skip(f"reference dataset not present at {NAMES_TXT}")
    return [line.strip() for line in NAMES_TXT.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- PyRandom == random.Random


@given(seed=seeds)
@settings(max_examples=50)
def test_python_uniform_matches_random(seed: int) -> None:
    ref = random.Random(seed)
    g: rng.Rng = rng.python_random(seed)
    for _ in range(20):
        u, g = rng.uniform(g)
        assert u == ref.random()


@given(seed=seeds, mu=st.floats(-5, 5), sigma=st.floats(0.01, 3))
@settings(max_examples=50)
def test_python_gauss_matches_random_including_cached_twin(seed: int, mu: float, sigma: float) -> None:
    # Interleaving random() between gauss() calls checks that gauss_next travels in the state.
    ref = random.Random(seed)
    g: rng.Rng = rng.python_random(seed)
    for i in range(15):
        x, g = rng.gauss(g, mu, sigma)
        assert x == ref.gauss(mu, sigma)
        if i % 3 == 0:
            u, g = rng.uniform(g)
            assert u == ref.random()


@given(seed=seeds, n=st.integers(0, 50))
@settings(max_examples=50)
def test_python_gauss_many_matches_random(seed: int, n: int) -> None:
    ref = random.Random(seed)
    xs, g = rng.gauss_many(rng.python_random(seed), n, 0.0, 0.08)
    assert xs == [ref.gauss(0.0, 0.08) for _ in range(n)]
    assert rng.uniform(g)[0] == ref.random()


@given(seed=seeds, items=st.lists(st.integers(), max_size=40))
@settings(max_examples=50)
def test_python_shuffle_matches_random(seed: int, items: list[int]) -> None:
    ref = random.Random(seed)
    expected = list(items)
    ref.shuffle(expected)
    original = list(items)
    got, g = rng.shuffle(rng.python_random(seed), items)
    assert got == expected
    assert items == original  # a copy: the input is untouched
    assert rng.uniform(g)[0] == ref.random()


@given(seed=seeds, weights=weight_lists)
@settings(max_examples=50)
def test_python_choice_matches_random_choices(seed: int, weights: list[float]) -> None:
    ref = random.Random(seed)
    g: rng.Rng = rng.python_random(seed)
    for _ in range(10):
        i, g = rng.choice(g, weights)
        assert i == ref.choices(range(len(weights)), weights=weights)[0]


def test_python_reference_sequence_seed_42() -> None:
    # The reference run: shuffle, then weights with gauss, then sampling, on one stream.
    ref = random.Random(42)
    docs = [f"d{i}" for i in range(100)]
    ref_docs = list(docs)
    ref.shuffle(ref_docs)
    ref_w = [ref.gauss(0, 0.08) for _ in range(4192)]
    ref_c = [ref.choices(range(27), weights=[1.0 + k for k in range(27)])[0] for _ in range(5)]

    got_docs, g = rng.shuffle(rng.python_random(42), docs)
    got_w, g = rng.gauss_many(g, 4192, 0, 0.08)
    got_c = []
    for _ in range(5):
        c, g = rng.choice(g, [1.0 + k for k in range(27)])
        got_c.append(c)
    assert (got_docs, got_w, got_c) == (ref_docs, ref_w, ref_c)


# --------------------------------------------------------------------------- Exsss


def test_exsss_first_uniforms_seed_42() -> None:
    g: rng.Rng = rng.exsss(42)
    got = []
    for _ in range(3):
        u, g = rng.uniform(g)
        got.append(u)
    assert got == [0.7545723388395813, 0.5276200740158064, 0.09981513618580962]


def test_exsss_first_shuffled_docs_seed_42() -> None:
    docs = _docs()
    shuffled, _ = rng.shuffle(rng.exsss(42), docs)
    assert shuffled[:8] == ["sebastain", "maebh", "aksh", "keishawn", "slaton", "khairi", "kovin", "maddux"]
    assert sorted(shuffled) == sorted(docs)


@given(seed=seeds)
@settings(max_examples=50)
def test_exsss_state_is_58_bit_and_uniform_in_range(seed: int) -> None:
    g = rng.exsss(seed)
    assert 0 < g.s0 < 2**58 and 0 < g.s1 < 2**58
    for _ in range(20):
        u, g = rng.uniform(g)
        assert 0.0 <= u < 1.0
        assert u * 2**53 == int(u * 2**53)  # a 53-bit float


@given(seed=seeds, mu=st.floats(-5, 5), sigma=st.floats(0.01, 3))
@settings(max_examples=50)
def test_exsss_gauss_is_box_muller_of_two_fresh_uniforms(seed: int, mu: float, sigma: float) -> None:
    g: rng.Rng = rng.exsss(seed)
    u1, g1 = rng.uniform(g)
    u2, g2 = rng.uniform(g1)
    expected = mu + sigma * (math.sqrt(-2.0 * math.log(max(u1, 1e-12))) * math.cos(2.0 * math.pi * u2))
    x, g_after = rng.gauss(g, mu, sigma)
    assert x == expected
    assert g_after == g2  # no caching: exactly two uniforms consumed


@given(seed=seeds, n=st.integers(0, 30))
@settings(max_examples=30)
def test_exsss_gauss_many_equals_repeated_gauss(seed: int, n: int) -> None:
    g: rng.Rng = rng.exsss(seed)
    many, g_many = rng.gauss_many(g, n, 0.0, 0.08)
    one_by_one = []
    for _ in range(n):
        x, g = rng.gauss(g, 0.0, 0.08)
        one_by_one.append(x)
    assert many == one_by_one and g_many == g


@given(seed=seeds, items=st.lists(st.integers(), max_size=40))
@settings(max_examples=50)
def test_exsss_shuffle_is_fisher_yates_from_the_end(seed: int, items: list[int]) -> None:
    g: rng.Rng = rng.exsss(seed)
    expected = list(items)
    for i in range(len(expected) - 1, 0, -1):
        u, g = rng.uniform(g)
        j = min(math.floor(u * (i + 1)), i)
        expected[i], expected[j] = expected[j], expected[i]
    got, g_after = rng.shuffle(rng.exsss(seed), items)
    assert got == expected and g_after == g


@given(seed=seeds, weights=weight_lists)
@settings(max_examples=50)
def test_exsss_choice_is_first_cumulative_at_least_u_total(seed: int, weights: list[float]) -> None:
    g = rng.exsss(seed)
    u, g_after_u = rng.uniform(g)
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    expected = next((i for i, c in enumerate(cum) if c >= u * cum[-1]), len(cum) - 1)
    i, g_after = rng.choice(g, weights)
    assert i == expected and g_after == g_after_u
    assert weights[i] > 0 or i == len(weights) - 1


def test_exsss_choice_boundaries() -> None:
    # Find states whose uniform is known, then check the ">=" rule on hand-made weights.
    g: rng.Rng = rng.exsss(42)  # first uniform 0.7545723388395813
    assert rng.choice(g, [0.75, 0.25])[0] == 1  # 0.7546 > 0.75
    assert rng.choice(g, [0.76, 0.24])[0] == 0
    assert rng.choice(g, [0.0, 0.0, 1.0])[0] == 2


# --------------------------------------------------------------------------- purity, JSON


@pytest.mark.parametrize("make", [rng.python_random, rng.exsss])
def test_draws_are_pure(make) -> None:
    g = make(7)
    a = rng.uniform(g)
    b = rng.uniform(g)
    assert a == b  # same state, same draw: nothing was mutated
    assert rng.uniform(a[1])[0] != a[0]


@pytest.mark.parametrize("make", [rng.python_random, rng.exsss])
def test_json_round_trip_mid_stream_continues_the_stream(make) -> None:
    g: rng.Rng = make(42)
    _, g = rng.gauss_many(g, 7, 0.0, 1.0)  # odd count: PyRandom holds a cached gauss twin
    _, g = rng.shuffle(g, list(range(10)))
    _, g = rng.gauss(g, 0.0, 1.0)
    restored = rng.from_json(json.loads(json.dumps(rng.to_json(g))))
    assert restored == g
    assert type(restored) is type(g)
    a, _ = rng.gauss_many(g, 25, 0.0, 1.0)
    b, _ = rng.gauss_many(restored, 25, 0.0, 1.0)
    assert a == b


def test_to_json_shapes() -> None:
    d = rng.to_json(rng.exsss(42))
    assert d["kind"] == "exsss" and isinstance(d["s0"], int) and isinstance(d["s1"], int)
    _, g = rng.gauss(rng.python_random(1), 0.0, 1.0)
    p = rng.to_json(g)
    assert p["kind"] == "python" and len(p["state"]) == 625
    assert isinstance(p["gauss_next"], str) and float.fromhex(p["gauss_next"]) == g.state[2]
    assert rng.to_json(rng.python_random(1))["gauss_next"] is None


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {},
        {"kind": "mt"},
        {"kind": "exsss", "s0": 1},
        {"kind": "exsss", "s0": 1, "s1": "2"},
        {"kind": "exsss", "s0": 2**58, "s1": 1},
        {"kind": "exsss", "s0": 0, "s1": 0},
        {"kind": "exsss", "s0": True, "s1": 1},
        {"kind": "python", "version": 3, "state": [0] * 10, "gauss_next": None},
        {"kind": "python", "version": 3, "state": [0] * 624 + [625], "gauss_next": None},
        {"kind": "python", "version": 3, "state": [-1] * 625, "gauss_next": None},
        {"kind": "python", "version": 3, "state": [0] * 624 + [624], "gauss_next": "zz"},
        {"kind": "python", "version": 3, "state": [0] * 624 + [624], "gauss_next": 0.5},
        {"kind": "python", "version": 99, "state": [0] * 624 + [624], "gauss_next": None},
    ],
)
def test_from_json_rejects_malformed(bad) -> None:
    with pytest.raises(ValueError, match="rng json"):
        rng.from_json(bad)


def test_types() -> None:
    assert isinstance(rng.python_random(0), PyRandom)
    assert isinstance(rng.exsss(0), Exsss)
    with pytest.raises(Exception):
        rng.exsss(0).s0 = 1  # type: ignore[misc]  # frozen
