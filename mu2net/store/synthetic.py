"""Synthetic components for exercising the store without a model: the store keeps bytes, so
deterministic random bytes stand in for `.npz` parameter files. Used by the store's tests and
its scaling benchmark."""

from __future__ import annotations

import numpy as np

from mu2net.schema import Component, sha256_hex


def synthetic_blob(seed: str, size: int = 256) -> bytes:
    """`size` random bytes, the same for the same `seed`."""
    rng = np.random.default_rng(int(sha256_hex(seed.encode())[:8], 16))
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def synthetic_component(creator: str, name: str, data: bytes) -> Component:
    """A component whose one parameter is `data` read as float32s."""
    blob = sha256_hex(data)
    return Component(id=Component.make_id(creator, name, blob), name=name, creator=creator,
                     shapes={"w": (len(data) // 4,)}, blob=blob)
