"""Component parameters <-> `.npz` bytes, deterministic so that equal parameters hash equally.

A component's parameters are a flat mapping `weight name -> float32 array` (names like
`kernel` or `MultiHeadDotProductAttention_1/query/kernel`, the vit_jax / flax layout relative
to the component). They are stored as an uncompressed `.npz` (a zip of `.npy` files) whose zip
entries are sorted and carry a fixed timestamp: `np.savez` stamps the current time, so the same
parameters would get a new hash on every save and content addressing would not deduplicate.
Reading never unpickles (`allow_pickle=False`).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from mu2net.errors import IntegrityError, SchemaError

Params = Mapping[str, np.ndarray]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def params_to_npz_bytes(params: Params) -> bytes:
    """Canonical `.npz` bytes: sorted names, fixed timestamps, no compression, C order."""
    if not params:
        raise SchemaError("component params are empty: a component needs at least one weight")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(params):
            array = np.asarray(params[name])
            if array.dtype == object:
                raise SchemaError(f"component weight {name!r} has dtype object; numeric only")
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, entry.getvalue())
    return buffer.getvalue()


def npz_bytes_to_params(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of a component's `.npz` bytes (never unpickles)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def params_sha256(params: Params) -> str:
    """Content address of a component's parameters (sha256 of its canonical `.npz` bytes)."""
    return sha256_bytes(params_to_npz_bytes(params))


def write_file_atomic(file_path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `file_path`, then move it into place: a reader
    (or a retried step) finds the whole file or none."""
    os.makedirs(os.path.dirname(file_path) or ".", exist_ok=True)
    tmp = f"{file_path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, file_path)


def write_params(params: Params, out_dir: str) -> tuple[str, str]:
    """Write `<out_dir>/<sha256>.npz` (atomically, idempotent); returns (sha256, file path)."""
    data = params_to_npz_bytes(params)
    digest = sha256_bytes(data)
    target = os.path.join(out_dir, f"{digest}.npz")
    if not os.path.exists(target):
        write_file_atomic(target, data)  # a retried step finds a complete file or none
    return digest, target


def verified(data: bytes, expected_sha256: str, where: str) -> bytes:
    """The bytes, if they hash to `expected_sha256`; `IntegrityError` naming `where` if not."""
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise IntegrityError(f"blob {expected_sha256} read from {where} hashes to {actual}: "
                             "the stored bytes are corrupt or were replaced")
    return data


def param_shapes(params: Params) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(s) for s in np.shape(value)) for name, value in params.items()}
