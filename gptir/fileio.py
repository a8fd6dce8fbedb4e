"""Every file gptir reads or writes goes through here: safe writes, bounded reads, checked ``.npz`` archives.

Writes: a regular file is replaced atomically (a temporary file in the same folder, fsync, rename), so a
crash or a full disk leaves the old file intact, never half a file. A symlink is written through to its
target (the link stays a link); a special file (``/dev/null``, ``/dev/full``, a FIFO) is opened and
written directly, never replaced. Temporaries are named after their target
(``.NAME.gptir-PID.tmp``), so the next write of that file removes any a killed earlier run left.
``-`` means standard output for text, so commands pipe.

Reads are capped: a file larger than its limit (``/dev/zero`` included) is refused after reading at most
the limit, and an ``.npz`` archive's declared sizes are checked before anything is decompressed. The
limits come from environment variables (:data:`LIMITS`; the README lists them).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import sys
import zipfile
from collections.abc import Iterator
from typing import IO, BinaryIO, cast

import numpy as np

from gptir.budget import human
from gptir.ir import GptirError

def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return 8 << 30


# name -> (default, what it bounds). Each is read from the environment when used, so a user can raise it.
LIMITS: dict[str, tuple[int, str]] = {
    "GPTIR_MAX_TEXT_BYTES": (256 << 20, "the size of an IR file"),
    "GPTIR_MAX_DATA_BYTES": (1 << 30, "the size of a training data file"),
    "GPTIR_MAX_LINE_CHARS": (1 << 20, "the length of a line of training data"),
    "GPTIR_MAX_ARRAY_BYTES": (1 << 30, "the size of an array file (.npy, .npz, checkpoint) and the arrays it declares"),
    "GPTIR_MAX_MEMORY": (_physical_memory(), "the memory a program's values may take"),
}
_CHUNK = 1 << 20


class LimitError(GptirError):
    """An input is larger than a limit gptir enforces (the message names the limit and how to raise it)."""


def limit(name: str) -> int:
    """The current value of limit ``name`` (its environment variable, else the default)."""
    default = LIMITS[name][0]
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise GptirError(f"{name}={raw[:40]!r} must be a whole number of bytes") from None
    if value < 1:
        raise GptirError(f"{name} must be at least 1, got {value}")
    return value


def too_big(what: str, size: str, name: str) -> LimitError:
    """The error for an input above limit ``name``."""
    unit = "characters" if name.endswith("_CHARS") else "bytes"
    longer = "longer" if unit == "characters" else "larger"
    return LimitError(f"{what} is {longer} than {size}, the limit on {LIMITS[name][1]} "
                      f"(set {name} to a larger number of {unit} to allow it)")


# -- writing ------------------------------------------------------------------------------------------


def _temp_prefix(target: str) -> str:
    """``.NAME.gptir-``: temporaries are named after the file they will become."""
    base = os.path.basename(target)
    if len(base.encode("utf-8", "surrogateescape")) > 150:  # keep room for the suffix under NAME_MAX
        base = base[:40] + "-" + hashlib.sha256(base.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f".{base}.gptir-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: str) -> None:
    """Remove temporaries of ``target`` that a killed earlier write left (their process is gone)."""
    folder, prefix = os.path.dirname(target), _temp_prefix(target)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):-4]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def write_target(path: str) -> str:
    """Where writing ``path`` really writes: symlinks resolved (a dangling link names the file to create)."""
    return os.path.realpath(path)


def _is_special(st: os.stat_result) -> bool:
    return not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``: atomically for regular files, directly for devices and FIFOs."""
    st = _stat(path)
    if st is not None and _is_special(st):  # opened by the path itself: /dev/stdout's magic link works
        _write_direct(path, path, data)
        return
    target = write_target(path)
    folder = os.path.dirname(target)
    remove_stale_temporaries(target)
    tmp = os.path.join(folder, f"{_temp_prefix(target)}{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:  # name the file the user asked for, not our temporary
        raise OSError(e.errno, f"cannot write there ({e.strerror})", path) from None
    try:
        if st is not None:  # keep the mode of the file it replaces
            os.chmod(tmp, st.st_mode & 0o777)
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data, path)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _write_all(f: BinaryIO, data: bytes, path: str) -> None:
    try:
        f.write(data)
        f.flush()
    except OSError as e:  # ENOSPC and friends, naming the user's file
        raise OSError(e.errno, e.strerror, path) from None


def _write_direct(path: str, target: str, data: bytes) -> None:
    """A device or FIFO: written in place (replacing /dev/null with a regular file would be a disaster)."""
    try:
        with open(target, "wb", buffering=0) as f:
            view = memoryview(data)
            while view:
                n = f.write(view)
                view = view[n or len(view):]
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stat(path: str) -> os.stat_result | None:
    """What writing ``path`` would write to (symlinks followed); None if it does not exist; a folder is an error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "is a folder", path)
    return st


def check_writable(path: str) -> None:
    """Fail early (before a long run) when ``path`` cannot be written: the folder must exist and accept a
    new file (tried for real, so a read-only folder or file system fails here), or the device be writable."""
    if path == "-":
        return
    st = _stat(path)
    if st is not None and _is_special(st):
        if not os.access(path, os.W_OK):
            raise OSError(errno.EACCES, "cannot be written (permission denied)", path)
        return
    target = write_target(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OSError(errno.ENOENT, "its folder does not exist", path)
    remove_stale_temporaries(target)
    probe = os.path.join(folder, f"{_temp_prefix(target)}{os.getpid()}.tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except OSError as e:
        raise OSError(e.errno, f"cannot be written ({e.strerror})", path) from None
    os.unlink(probe)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; ``-`` writes to standard output."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(path, text.encode("utf-8"))


# -- reading ------------------------------------------------------------------------------------------


def _open_binary(path: str) -> BinaryIO:
    if path == "-":
        return getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode("utf-8"))
    return open(path, "rb")


def read_bytes(path: str, limit_name: str, what: str, *, magic: bytes | None = None, text: bool = False,
               zip_limit: str | None = None) -> bytes:
    """At most limit ``limit_name`` bytes of ``path`` (``-``: standard input), else a :class:`LimitError`.

    With ``magic``, reading stops after the first chunk when the file does not start with it (the
    caller then reports the wrong format); with ``text``, at the first NUL byte (not a text file).
    With ``zip_limit``, a file that starts as a zip (``PK``) is bounded by that limit instead, and is
    not text."""
    cap = limit(limit_name)
    name = "<stdin>" if path == "-" else path
    f = _open_binary(path)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = f.read(min(_CHUNK, cap + 1 - total))
            if not chunk:
                break
            if not chunks:
                if magic is not None and not chunk.startswith(magic):
                    return chunk
                if zip_limit is not None and chunk.startswith(b"PK"):
                    limit_name, cap, text, what = zip_limit, limit(zip_limit), False, "the archive"
            if text and b"\0" in chunk:
                raise GptirError(f"{name}: not a UTF-8 text file (it holds NUL bytes)")
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise too_big(f"{what} {name}", human(cap), limit_name)
    finally:
        if path != "-":
            f.close()
    return b"".join(chunks)


def read_text(path: str) -> str:
    """Read a UTF-8 IR text file (``-``: standard input), at most ``GPTIR_MAX_TEXT_BYTES``."""
    return read_bytes(path, "GPTIR_MAX_TEXT_BYTES", "the IR file", text=True).decode("utf-8")


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (``-``: stdin), streamed with universal newlines; a line
    longer than ``GPTIR_MAX_LINE_CHARS`` or a file longer than ``GPTIR_MAX_DATA_BYTES`` is refused."""
    max_line, max_bytes = limit("GPTIR_MAX_LINE_CHARS"), limit("GPTIR_MAX_DATA_BYTES")
    name = "<stdin>" if path == "-" else path
    raw = _open_binary(path)
    f = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline=None)
    try:
        total, number = 0, 0
        while True:
            line = f.readline(max_line + 1)
            if not line:
                return
            number += 1
            if len(line.rstrip("\n")) > max_line:
                raise too_big(f"line {number} of {name}", f"{max_line} characters", "GPTIR_MAX_LINE_CHARS")
            total += len(line)
            if total > max_bytes:
                raise too_big(f"the data file {name}", human(max_bytes), "GPTIR_MAX_DATA_BYTES")
            yield number, line
    finally:
        if path == "-":
            f.detach()  # leave standard input open
        else:
            f.close()


# -- .npz archives ------------------------------------------------------------------------------------


class NpzError(GptirError):
    """An .npz archive is damaged, not an archive of plain arrays, or declares more than the limit."""


def open_npz(data: bytes, what: str) -> zipfile.ZipFile:
    """A zip of ``.npy`` members whose declared (uncompressed) sizes add up to at most
    ``GPTIR_MAX_ARRAY_BYTES`` — checked before anything is decompressed (zipfile never yields more than a
    member's declared size, so this bounds the memory a zip bomb can take)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise NpzError(f"{what} is not a valid .npz archive ({type(e).__name__}: {e})") from None
    odd = [i.filename for i in infos if not i.filename.endswith(".npy")]
    if odd or len({i.filename for i in infos}) != len(infos):
        raise NpzError(f"{what} is not an .npz of arrays (member {(odd or ['twice'])[0][:80]!r})")
    cap = limit("GPTIR_MAX_ARRAY_BYTES")
    declared = sum(i.file_size for i in infos)
    if declared > cap:
        raise too_big(f"{what} (declaring {human(declared)} of arrays)", human(cap), "GPTIR_MAX_ARRAY_BYTES")
    return zf


def npz_names(zf: zipfile.ZipFile) -> list[str]:
    """The array names (member names without ``.npy``)."""
    return [n[:-4] for n in zf.namelist()]


# The header numpy writes for a plain array, e.g. ``{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }``
# (space-padded, newline-terminated). Only this exact form is read here; any other header goes to
# numpy's own parser (the same checks and errors as always), so this only saves time: numpy's parser
# compiles each header with ast.literal_eval, which dominated loading a sidecar of 24k small arrays.
_PLAIN_HEADER = re.compile(r"\{'descr': '([<>|=](?:f4|f8|[iu][1248]|b1))', 'fortran_order': False, "
                           r"'shape': \(((?:[0-9]{1,18}, )*(?:[0-9]{1,18},?)?)\), \} *\n\Z")
_NPY_MAGIC = b"\x93NUMPY"


def _plain_header(f: IO[bytes]) -> tuple[np.dtype, tuple[int, ...]] | None:
    """The dtype and shape of a ``.npy`` stream positioned at its start, if its header is numpy's plain
    form for a C-order array (the stream is left at the data); None for anything else."""
    lead = f.read(8)
    if len(lead) != 8 or lead[:6] != _NPY_MAGIC or lead[6] not in (1, 2) or lead[7] != 0:
        return None
    size_bytes = 2 if lead[6] == 1 else 4
    raw = f.read(size_bytes)
    if len(raw) != size_bytes:
        return None
    hlen = int.from_bytes(raw, "little")
    if hlen > 4096:
        return None
    header = f.read(hlen)
    try:
        m = _PLAIN_HEADER.match(header.decode("latin1"))
    except UnicodeDecodeError:  # pragma: no cover - latin1 decodes every byte
        return None
    if m is None:
        return None
    return np.dtype(m.group(1)), tuple(int(d) for d in m.group(2).replace(" ", "").split(",") if d)


def npz_header(zf: zipfile.ZipFile, name: str, what: str) -> tuple[np.dtype, tuple[int, ...]]:
    """An array's dtype and shape from its ``.npy`` header only (a few hundred bytes decompressed)."""
    try:
        with zf.open(name + ".npy") as f:
            plain = _plain_header(f)
        if plain is not None:
            return plain
        with zf.open(name + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except Exception as e:  # noqa: BLE001 - hostile bytes fail in many ways
        raise NpzError(f"{what}: {name} is not a valid .npy array ({type(e).__name__}: {e})") from None
    return dtype, tuple(shape)


def npz_read(zf: zipfile.ZipFile, name: str, what: str) -> np.ndarray:
    """Read one array (never unpickles) after checking that its header declares no more data than the
    member holds."""
    try:
        with zf.open(name + ".npy") as f:
            plain = _plain_header(f)
            if plain is not None:  # numpy's plain header: read the data straight into the array
                dtype, shape = plain
                size = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if size <= zf.getinfo(name + ".npy").file_size:
                    out = np.empty(shape, dtype)
                    if cast(io.BufferedIOBase, f).readinto(out.reshape(-1).view(np.uint8).data) == size:
                        return out
    except Exception:  # noqa: BLE001 - whatever went wrong, numpy's reader below says it as before
        pass
    dtype, shape = npz_header(zf, name, what)
    if dtype.hasobject:
        raise NpzError(f"{what}: {name} holds Python objects (gptir reads plain arrays only)")
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > zf.getinfo(name + ".npy").file_size:
        raise NpzError(f"{what}: {name} declares {human(size)} but holds less (damaged file)")
    try:
        with zf.open(name + ".npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise NpzError(f"{what}: {name} cannot be read ({type(e).__name__}: {e})") from None
