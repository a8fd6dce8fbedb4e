"""The op table walk for the JAX backend: every op lowers (its ufunc trait, or an ``OpDef.jax`` entry).

Reading the table needs no JAX (gptir.jaxback imports it only to compile), so this runs everywhere;
tests/test_jaxback.py runs the lowerings.
"""

from __future__ import annotations

from gptir import jaxback
from gptir.ops import OPS, OpDef, _unary


def test_every_op_in_the_table_lowers() -> None:
    assert jaxback.unlowered_ops() == [], "ops without a JAX lowering (give them a ufunc or an OpDef.jax entry)"


def test_an_op_without_a_lowering_is_caught(monkeypatch) -> None:
    """A new op that is neither a ufunc nor has a ``jax`` entry fails the walk; a ufunc op needs nothing."""
    bare = OpDef("mystery", 1, _unary(("f64",)), lambda a, at: a[0], lambda a, at: a[0], kind="elementwise")
    tanh = OpDef("tanh", 1, _unary(("f64",)), None, None, kind="elementwise", ufunc="tanh")
    monkeypatch.setitem(OPS, "mystery", bare)
    monkeypatch.setitem(OPS, "tanh", tanh)
    assert jaxback.unlowered_ops() == ["mystery"]
    assert jaxback.lowering(tanh) is not None and jaxback.lowering(bare) is None
