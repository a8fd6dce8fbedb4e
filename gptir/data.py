"""Documents and the character tokenizer.

Everything here is a pure function of its inputs except :func:`load_docs`, the single
place that touches the file system, so the reference run's data pipeline (lines,
stripped, empty dropped; sorted character vocabulary; ``[BOS] + ids + [BOS]``) can be
tested without files.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gptir.fileio import LimitError, read_lines
from gptir.ir import GptirError

__all__ = ["DataError", "parse_docs", "load_docs", "default_docs", "Tokenizer"]

# Python's universal newlines (what open() iterates on): \r\n, \r and \n.
_NEWLINE = re.compile(r"\r\n|\r|\n")
_LOWER_AZ = re.compile(r"[a-z]+")
_NAMES_FILES = ("dist.male.first", "dist.female.first")
# Characters no document may hold: line breaks separate documents, and NUL cannot be stored in a
# checkpoint's vocabulary. One rule, checked when the data is read and when a vocabulary is built.
FORBIDDEN_CHARS = "\n\r\x00"


class DataError(GptirError, ValueError):
    """A problem with the training data: unreadable file, unknown character, bad token id."""


def parse_docs(text: str) -> list[str]:
    """The documents of a dataset text: every line stripped, empty lines dropped (as microgpt)."""
    return [s for s in (line.strip() for line in _NEWLINE.split(text)) if s]


def default_docs() -> list[str]:
    """The built-in corpus: first names from the ``names`` package, so gptir runs without data files.

    First column of ``dist.male.first`` and ``dist.female.first``, lower-cased, only a-z,
    de-duplicated and sorted (so the corpus does not depend on file order).
    """
    try:
        root = importlib.resources.files("names")
        texts = [(root / name).read_text(encoding="utf-8") for name in _NAMES_FILES]
    except (ModuleNotFoundError, OSError) as e:
        raise DataError(f"cannot read the default corpus from the 'names' package: {e}") from None
    found: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            cols = line.split()
            if cols:
                word = cols[0].lower()
                if _LOWER_AZ.fullmatch(word):
                    found.add(word)
    return sorted(found)


def load_docs(path: str | None) -> list[str]:
    """Documents from a text file (``-``: standard input), one per line; ``None`` gives :func:`default_docs`.

    The file is streamed (memory grows with the documents kept, not the file), lines and the file are
    bounded (``GPTIR_MAX_LINE_CHARS``, ``GPTIR_MAX_DATA_BYTES``), and every document is checked against
    :data:`FORBIDDEN_CHARS` here, so a run never trains on data its own checkpoint would reject."""
    if path is None:
        return default_docs()
    docs: list[str] = []
    try:
        for number, line in read_lines(path):
            doc = line.strip()
            if not doc:
                continue
            if "\x00" in doc:
                raise DataError(f"data file {path!r} line {number}: a document cannot hold a NUL character")
            docs.append(doc)
    except LimitError as e:
        raise DataError(str(e)) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise DataError(f"cannot read data file {path!r}: {reason}") from None
    return docs


@dataclass(frozen=True)
class Tokenizer:
    """Character-level tokenizer: id = index in ``chars``; BOS = len(chars) marks both ends."""

    chars: tuple[str, ...]
    bos: int
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise DataError(f"tokenizer chars must be distinct single characters, got {self.chars!r}")
        bad = [c for c in self.chars if c in FORBIDDEN_CHARS]
        if bad:
            raise DataError(f"a document cannot hold the character {bad[0]!r} (line breaks separate documents)")
        if self.bos != len(self.chars):
            raise DataError(f"tokenizer bos must be len(chars) = {len(self.chars)}, got {self.bos}")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @property
    def vocab_size(self) -> int:
        """Characters plus BOS."""
        return len(self.chars) + 1

    @classmethod
    def from_docs(cls, docs: Iterable[str]) -> Tokenizer:
        """The sorted set of characters over all documents (microgpt's ``uchars``)."""
        chars = tuple(sorted(set("".join(docs))))
        return cls(chars=chars, bos=len(chars))

    def encode(self, doc: str) -> list[int]:
        """``[BOS] + ids + [BOS]``; a character outside the vocabulary is a :class:`DataError`."""
        ids = [self.bos]
        for ch in doc:
            i = self._index.get(ch)
            if i is None:
                raise DataError(f"character {ch!r} is not in the tokenizer vocabulary (document {doc!r})")
            ids.append(i)
        ids.append(self.bos)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of ``ids``, BOS tokens dropped."""
        out: list[str] = []
        for i in ids:
            if i == self.bos:
                continue
            if not 0 <= i < len(self.chars):
                raise DataError(f"token id {i} is out of range for vocabulary size {self.vocab_size}")
            out.append(self.chars[i])
        return "".join(out)
