"""The process-wide seed of the random ops (onnxruntime's ``set_seed``).

A random node without a ``seed`` attribute draws its generator seed from this module: after
``set_seed(n)`` the sequence of draws is the same each time (for a new session and the same
runs), as onnxruntime's global seed makes it; before any ``set_seed`` the draws are fresh.
The values are NumPy's / CuPy's, never onnxruntime's bit for bit.
"""
from __future__ import annotations

import threading

import numpy as np

_lock = threading.Lock()
_source: np.random.Generator | None = None


def set_seed(seed: int) -> None:
    """Seed every later random node that has no seed attribute of its own."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_seed(): the seed must be an int, not {type(seed).__name__}")
    global _source
    with _lock:
        _source = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)


def next_seed() -> int | None:
    """The seed for one unseeded random node, or None (fresh entropy) when no seed was set."""
    with _lock:
        if _source is None:
            return None
        return int(_source.integers(0, 2**63 - 1))
