"""Small host tables uploaded to the device once, not once per launch.

Some launchers work from tables computed on the host (Resize's per-axis indices and weights,
functions of the shapes and attributes only).  Uploading them with ``cupy.asarray`` at every
launch costs a host-to-device copy each time, and a copy from the host cannot be recorded
into a CUDA graph, so such a launcher could not run inside a capture.  ``DeviceTables`` keeps
one device copy per table content (dtype, shape and bytes): the warm-up runs before a capture
upload them, the capture and every replay then find them and copy nothing.

Each CUDA provider owns one (``provider.device_tables``): its device, freed with the
session.  Entries are never evicted (a captured graph may hold their addresses); past
``MAX_ENTRIES`` distinct tables a session uploads per launch again instead of growing.
Cached arrays are shared: a launcher reads them and never writes into them.
"""
from __future__ import annotations

import threading

import numpy as np

MAX_ENTRIES = 4096


class DeviceTables:
    """Device copies of host tables, one per content (see the module docstring)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._cache: dict = {}
        self._lock = threading.Lock()
        self.uploads = 0

    def upload(self, xp, table, dtype=None):
        """The device copy of ``table`` (a NumPy array or scalar, as ``dtype`` when given)."""
        host = np.ascontiguousarray(np.asarray(table, dtype=dtype))
        key = (host.dtype.str, host.shape, host.tobytes())
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        dev = xp.asarray(host)
        self.uploads += 1
        with self._lock:
            if len(self._cache) < self.max_entries:
                dev = self._cache.setdefault(key, dev)
        return dev

    def __len__(self) -> int:
        return len(self._cache)


def tables_of(ctx) -> DeviceTables:
    """The tables of the provider running ``ctx``, or a fresh (uncached) set without one."""
    tables = getattr(getattr(ctx, "ep", None), "device_tables", None)
    return tables if tables is not None else DeviceTables(max_entries=0)


class CachedUploads:
    """An array module that is ``xp`` except that ``asarray`` of host data goes through
    ``tables``: a shared kernel run with it uploads each of its host tables once."""

    def __init__(self, xp, tables: DeviceTables):
        self._xp, self._tables = xp, tables

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def asarray(self, a, dtype=None, **kwargs):
        if isinstance(a, self._xp.ndarray) or kwargs:
            return self._xp.asarray(a, dtype=dtype, **kwargs)
        return self._tables.upload(self._xp, a, dtype)
