"""Arena leases as CuPy memory: the allocator that ``cupy.cuda.using_allocator`` installs
for the duration of a run (thread-local and scoped: CuPy's global allocator stays as it is
for code outside the session's runs).

A lease (an arena ``Block``, a pattern slice, a recorded block: anything with ``ptr``,
``size``, ``owner`` and ``release()``) is wrapped in an ``UnownedMemory`` subclass whose
``__del__`` releases the lease: CuPy drops that object when the last array or view on it
goes, so the memory returns to the session's arena exactly then.

Never run on a GPU: written without a device.  (Constructing the memory objects needs CuPy
but no device; that much was checked on the CPU with CuPy importable.)
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def leased_memory_class():
    """The ``cupy.cuda.UnownedMemory`` subclass that releases its lease when collected."""
    import cupy  # noqa: PLC0415

    class LeasedMemory(cupy.cuda.memory.UnownedMemory):
        def __init__(self, lease, device_id: int):
            super().__init__(lease.ptr, lease.size, lease.owner, device_id)
            self.lease = lease

        def __del__(self):
            lease, self.lease = self.lease, None
            if lease is not None:
                lease.release()

    return LeasedMemory


class CupyAllocator:
    """``nbytes -> cupy.cuda.MemoryPointer`` served by ``source.allocate(nbytes)``."""

    __slots__ = ("source", "device_id", "_memory", "_pointer")

    def __init__(self, source, device_id: int):
        import cupy  # noqa: PLC0415
        self.source = source
        self.device_id = device_id
        self._memory = leased_memory_class()
        self._pointer = cupy.cuda.MemoryPointer

    def __call__(self, nbytes: int):
        return self._pointer(self._memory(self.source.allocate(nbytes), self.device_id), 0)
