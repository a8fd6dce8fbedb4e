"""Checkpoints: a training run's whole state in one file, written atomically.

The file is an ``.npz`` (a zip of ``.npy`` arrays, read with ``allow_pickle=False`` so a checkpoint
is pure data): ``params/<name>`` for every parameter, the Adam moments ``adam/m`` and ``adam/v`` (flat, in
parameter order), and ``meta``, a
UTF-8 JSON document (as bytes) with the format tag, configs, step, random state, recipe and
vocabulary. Loading checks everything against the model configuration, so a truncated, corrupted or
foreign file gets one clear error instead of a traceback or a silently wrong run.
"""

from __future__ import annotations

import io
import json
from dataclasses import fields
from typing import Any

import numpy as np

from gptir import rng as R
from gptir.data import DataError, Tokenizer
from gptir.fileio import NpzError, atomic_write_bytes, npz_header, npz_names, npz_read, open_npz, read_bytes
from gptir.ir import NUMPY_DTYPES, GptirError
from gptir.model import ConfigError, GPTConfig, num_params, param_shapes
from gptir.optim import AdamConfig
from gptir.train import RECIPES, TrainState

FORMAT = "gptir-checkpoint"
VERSION = 1


class CheckpointError(GptirError):
    """A checkpoint cannot be read: missing, truncated, corrupted, or not a gptir checkpoint."""


def to_bytes(state: TrainState) -> bytes:
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": state.model.to_json(),
        "adam": state.adam.to_json(),
        "num_steps": state.num_steps,
        "recipe": state.recipe,
        "seed": state.seed,
        "step": state.step,
        "batch": state.batch,
        "chars": "".join(state.tokenizer.chars),
        "docs_fingerprint": state.docs_fingerprint,
        "rng": R.to_json(state.rng),
        "data": state.data,
    }
    arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for name in state.params:
        arrays[f"params/{name}"] = state.params[name]
    arrays["adam/m"], arrays["adam/v"] = state.m, state.v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save(path: str, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    atomic_write_bytes(path, to_bytes(state))


def load(path: str) -> TrainState:
    """Read a checkpoint, checking every part of it; raises CheckpointError on any problem.

    At most ``GPTIR_MAX_ARRAY_BYTES`` are read (a device such as /dev/zero is refused after its first
    bytes), and every array's declared size is checked against the model before it is decompressed."""
    try:
        data = read_bytes(path, "GPTIR_MAX_ARRAY_BYTES", "the checkpoint", magic=b"PK")
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    return from_bytes(data, path)


META_LIMIT = 16 << 20  # the metadata member: JSON of configs, vocabulary and random state


def from_bytes(data: bytes, path: str = "<checkpoint>") -> TrainState:
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable gptir checkpoint: {why}")

    if not data.startswith(b"PK"):
        raise bad("it is not an .npz (zip) file" if data else "the file is empty")
    try:
        zf = open_npz(data, path)
    except NpzError as e:
        raise bad(str(e)) from None
    names = npz_names(zf)
    if len(set(names)) != len(names):
        raise bad("it holds an array twice")
    arrays: dict[str, np.ndarray] = {}
    if "meta" not in names or zf.getinfo("meta.npy").file_size > META_LIMIT:
        raise bad("it has no gptir metadata")
    try:
        arrays["meta"] = npz_read(zf, "meta", path)
    except NpzError as e:
        raise bad(str(e)) from None
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8 or arrays["meta"].ndim != 1:
        raise bad("it has no gptir metadata")
    try:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"its metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("it has no gptir metadata")
    if meta.get("version") != VERSION:
        raise bad(f"format version {meta.get('version')!r}, this gptir reads version {VERSION}")
    try:
        model = GPTConfig(**_fields(meta["model"], GPTConfig))
        adam = AdamConfig(**_fields(meta["adam"], AdamConfig))
        chars = meta["chars"]
        if not isinstance(chars, str):
            raise TypeError("chars must be a string")
        tokenizer = Tokenizer(tuple(chars), len(chars))
        rng = R.from_json(meta["rng"])
        step, num_steps, batch, seed = (_int(meta[k], k) for k in ("step", "num_steps", "batch", "seed"))
        recipe = meta["recipe"]
        fingerprint = meta["docs_fingerprint"]
        data_path = meta.get("data")
        if data_path is not None and not isinstance(data_path, str):
            raise TypeError("data must be a path or null")
    except (KeyError, TypeError, ValueError, ConfigError, DataError, GptirError) as e:
        raise bad(f"bad metadata ({type(e).__name__}: {e})") from None
    if recipe not in RECIPES:
        raise bad(f"unknown recipe {recipe!r}")
    if tokenizer.vocab_size != model.vocab_size:
        raise bad(f"vocabulary of {tokenizer.vocab_size} tokens but the model expects {model.vocab_size}")
    if not 0 <= step <= num_steps or batch < 1:
        raise bad(f"step {step} of {num_steps} (batch {batch}) is impossible")
    shapes = {f"params/{name}": shape for name, shape in param_shapes(model).items()}
    shapes["adam/m"] = shapes["adam/v"] = (num_params(model),)
    if set(names) != set(shapes) | {"meta"}:
        missing = sorted(set(shapes) - set(names))
        extra = sorted(set(names) - set(shapes) - {"meta"})
        raise bad(f"arrays do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    want = NUMPY_DTYPES[model.dtype]
    for key, shape in shapes.items():  # declared types first: nothing big is decompressed for a wrong file
        try:
            dtype, declared = npz_header(zf, key, path)
        except NpzError as e:
            raise bad(str(e)) from None
        if dtype != want or declared != shape:
            raise bad(f"{key} is {dtype}{list(declared)}, expected {np.dtype(want)}{list(shape)}")
    for key in shapes:
        try:
            arrays[key] = npz_read(zf, key, path)
        except NpzError as e:
            raise bad(str(e)) from None
    params = {key.split("/", 1)[1]: arrays[key] for key in shapes if key.startswith("params/")}
    return TrainState(model, adam, num_steps, recipe, seed, tokenizer, params, arrays["adam/m"], arrays["adam/v"],
                      step, rng, str(fingerprint), batch, data_path)


def _fields(d: Any, cls: type) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise TypeError(f"{cls.__name__} must be an object")
    types = {f.name: str(f.type) for f in fields(cls)}
    unknown = set(d) - set(types)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    for k, v in d.items():
        want, what = {"int": ((int,), "an integer"), "str": ((str,), "a string")}.get(types[k], ((int, float), "a number"))
        if isinstance(v, bool) or not isinstance(v, want):
            raise TypeError(f"{cls.__name__}.{k} must be {what}")
    return dict(d)


def _int(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{what} must be an integer")
    return x
