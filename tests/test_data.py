"""gptir.data: the reference data pipeline (documents, default corpus, tokenizer)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptir.data import DataError, Tokenizer, default_docs, load_docs, parse_docs

NAMES_TXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "names.txt"


def test_parse_docs_strips_and_drops_empty_lines() -> None:
    assert parse_docs("emma\n  olivia \n\n\t\nava") == ["emma", "olivia", "ava"]
    assert parse_docs("a\r\nb\rc\n") == ["a", "b", "c"]
    assert parse_docs("") == []
    assert parse_docs("\n\n  \n") == []


@given(st.lists(st.text(alphabet=string.ascii_lowercase, min_size=1), max_size=20))
def test_parse_docs_round_trips_joined_lines(docs: list[str]) -> None:
    assert parse_docs("\n".join(docs)) == docs


def test_load_docs_from_file(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("emma\n\n olivia\nava")
    assert load_docs(str(p)) == ["emma", "olivia", "ava"]


def test_load_docs_missing_file_is_a_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="cannot read data file") as e:
        load_docs(str(missing))
    assert isinstance(e.value, ValueError)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError):
        load_docs(str(tmp_path))  # a directory


def test_load_docs_reference_dataset() -> None:
    if not NAMES_TXT.exists():
        pytest.skip(f"reference dataset not present at {NAMES_TXT}")
    docs = load_docs(str(NAMES_TXT))
    assert len(docs) == 32033
    assert docs[:3] == ["emma", "olivia", "ava"]
    tok = Tokenizer.from_docs(docs)
    assert tok.chars == tuple(string.ascii_lowercase)
    assert (tok.bos, tok.vocab_size) == (26, 27)


def test_default_corpus() -> None:
    docs = load_docs(None)
    assert docs == default_docs()
    assert len(docs) > 1000
    assert len(set(docs)) == len(docs)
    assert docs == sorted(docs)
    assert all(d and set(d) <= set(string.ascii_lowercase) for d in docs)
    assert {"james", "mary", "john", "patricia"} <= set(docs)
    assert Tokenizer.from_docs(docs).vocab_size == 27


def test_tokenizer_from_docs_encode_decode() -> None:
    tok = Tokenizer.from_docs(["bca", "ab"])
    assert tok.chars == ("a", "b", "c")
    assert tok.bos == 3 and tok.vocab_size == 4
    assert tok.encode("cab") == [3, 2, 0, 1, 3]
    assert tok.encode("") == [3, 3]
    assert tok.decode([3, 2, 0, 1, 3]) == "cab"
    assert tok.decode([0, 3, 1]) == "ab"
    assert tok == Tokenizer(chars=("a", "b", "c"), bos=3)
    assert hash(tok) == hash(Tokenizer(chars=("a", "b", "c"), bos=3))


def test_tokenizer_errors() -> None:
    tok = Tokenizer.from_docs(["abc"])
    with pytest.raises(DataError, match="'z'"):
        tok.encode("abz")
    with pytest.raises(DataError):
        tok.decode([7])
    with pytest.raises(DataError):
        Tokenizer(chars=("a", "b"), bos=5)
    with pytest.raises(DataError):
        Tokenizer(chars=("a", "a"), bos=2)


@given(st.lists(st.text(alphabet="abcdefxyz", max_size=12), min_size=1, max_size=10))
def test_encode_decode_round_trip(docs: list[str]) -> None:
    tok = Tokenizer.from_docs(docs)
    for d in docs:
        ids = tok.encode(d)
        assert ids[0] == ids[-1] == tok.bos
        assert all(0 <= i < tok.bos for i in ids[1:-1])
        assert tok.decode(ids) == d
