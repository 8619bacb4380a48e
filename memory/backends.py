"""Where an arena's regions (and the staging pool's buffers) come from.

A backend has ``malloc(nbytes) -> (ptr, handle)``, raising ``MemoryError`` when it cannot,
and ``free(handle)``.  ``HostBackend`` serves tests and CPU-side planning; ``CupyBackend``
and ``PinnedBackend`` reserve CUDA device and page-locked host memory through CuPy.
"""
from __future__ import annotations

import numpy as np


class HostBackend:
    """Host stand-in for a device.

    Without ``materialize`` it hands out addresses only (integers from a counter, 4 KiB
    aligned, never reused), so tests can reserve terabytes.  With ``materialize`` every
    allocation is a NumPy byte buffer and ``ptr`` its address, so data can be written there.
    ``capacity`` makes ``malloc`` refuse (MemoryError) past that many outstanding bytes, as a
    full device would.  Counters: ``num_mallocs``, ``num_frees``, ``outstanding``."""

    PAGE = 4096

    def __init__(self, capacity: int | None = None, materialize: bool = False):
        self.capacity = capacity
        self.materialize = materialize
        self.outstanding = 0
        self.num_mallocs = self.num_frees = 0
        self._next = 1 << 40
        self._live: dict[int, int] = {}   # id(handle) -> size

    def malloc(self, nbytes: int):
        if self.capacity is not None and self.outstanding + nbytes > self.capacity:
            raise MemoryError(f"host backend: {nbytes} bytes requested, {self.outstanding} of "
                              f"{self.capacity} outstanding")
        if self.materialize:
            handle = np.empty(max(nbytes, 1), dtype=np.uint8)
            ptr = handle.ctypes.data
        else:
            ptr = self._next
            self._next += -(-max(nbytes, 1) // self.PAGE) * self.PAGE + self.PAGE  # a gap page
            handle = _VirtualHandle(ptr, nbytes)
        self._live[id(handle)] = nbytes
        self.outstanding += nbytes
        self.num_mallocs += 1
        return ptr, handle

    def free(self, handle) -> None:
        size = self._live.pop(id(handle), None)
        if size is None:
            raise RuntimeError(f"host backend: free of an unknown or freed handle {handle!r}")
        self.outstanding -= size
        self.num_frees += 1


class _VirtualHandle:
    __slots__ = ("ptr", "size")

    def __init__(self, ptr, size):
        self.ptr, self.size = ptr, size

    def __repr__(self):
        return f"_VirtualHandle({self.ptr:#x}, {self.size})"


def _out_of_memory(error) -> bool:
    """Whether a CuPy error means 'not enough memory' (cudaErrorMemoryAllocation)."""
    return isinstance(error, MemoryError) or getattr(error, "status", None) == 2


class CupyBackend:
    """Device memory of one CUDA device straight from cudaMalloc (``cupy.cuda.Memory``), past
    CuPy's own pool, so that the arena's limit and statistics count real reservations.  The
    memory is freed when its handle (the ``Memory`` object) is dropped.

    Never run on a GPU: written without a device."""

    def __init__(self, device_id: int = 0):
        self.device_id = device_id

    def malloc(self, nbytes: int):
        import cupy  # noqa: PLC0415
        try:
            with cupy.cuda.Device(self.device_id):
                mem = cupy.cuda.Memory(nbytes)
        except Exception as e:  # CUDARuntimeError(cudaErrorMemoryAllocation) or OutOfMemoryError
            if _out_of_memory(e):
                raise MemoryError(f"cudaMalloc of {nbytes} bytes on device {self.device_id} failed: {e}") from e
            raise
        return mem.ptr, mem

    def free(self, handle) -> None:
        """Nothing to call: CuPy frees the ``Memory`` when its last reference (the arena's
        region, or a lease that still points into it) goes."""


class PinnedBackend:
    """Page-locked host memory (``cupy.cuda.PinnedMemory``, cudaHostAlloc), past CuPy's pinned
    pool; freed when the handle is dropped.  Never run on a GPU: written without a device."""

    def malloc(self, nbytes: int):
        import cupy  # noqa: PLC0415
        try:
            mem = cupy.cuda.pinned_memory.PinnedMemory(nbytes)
        except Exception as e:
            if _out_of_memory(e):
                raise MemoryError(f"cudaHostAlloc of {nbytes} bytes failed: {e}") from e
            raise
        return mem.ptr, mem

    def free(self, handle) -> None:
        """Nothing to call (see CupyBackend.free)."""
