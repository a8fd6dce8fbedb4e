"""The only file writes in gptir: atomic (temporary file in the same folder, fsync, rename).

A crash or a full disk in the middle of a write leaves the old file intact, never half a file.
``-`` means standard output for text, so commands pipe.
"""

from __future__ import annotations

import os
import sys
import tempfile


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gptir-", suffix=".tmp", dir=folder)
    except OSError as e:  # name the file the user asked for, not our temporary
        raise OSError(e.errno, f"cannot write there ({e.strerror})", path) from None
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have, or the
        # mode of the file it replaces
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_writable(path: str) -> None:
    """Fail early (before a long run) when ``path`` cannot be written: its folder must exist."""
    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(2, "its folder does not exist", path)
    if os.path.isdir(path):
        raise OSError(21, "is a folder", path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; ``-`` writes to standard output."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str) -> str:
    """Read a UTF-8 text file; ``-`` reads standard input."""
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()
