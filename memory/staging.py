"""Pinned host staging: host<->device copies through reused page-locked buffers.

Copies between a device and page-locked ("pinned") host memory run at full bus speed and
asynchronously on a stream; copies from ordinary (pageable) NumPy memory do neither.  The
pool keeps pinned buffers in power-of-two size classes (at least ``min_size``) and reuses
them:

* a copy larger than ``max_buffer`` (64 MiB) is not staged (pinning that much for one copy,
  such as a big initializer at session creation, would hold it for the session's life);
* ``acquire(nbytes)`` returns a free buffer of the class whose *fence* (the event recorded
  after the last copy that used it) has completed; otherwise a new one while the pool holds
  less than ``max_bytes``; otherwise it waits on the fence of a busy buffer of the class;
  otherwise it returns idle buffers of other classes to make room; failing all that, None:
  the caller copies through pageable memory;
* ``release(buf, fence)`` puts a buffer back; it is reused once ``fence.done`` is true;
* ``host_view(buf, dtype, shape)`` is a NumPy array over the buffer that puts the buffer back
  when the array (and every view of it) is gone: a download hands its result out this way,
  without another host copy.

The pool logic is plain Python over a backend (``malloc``/``free``, memory/backends.py) and
fence objects (``done``, ``synchronize()``), checked on the CPU with a host backend.
``upload``/``download`` are the CUDA side (CuPy, the session stream); they have never run on a GPU.
"""
from __future__ import annotations

import collections

import numpy as np

from ortgpu.memory.locking import DeferringLock

DEFAULT_MIN_SIZE = 64 << 10
DEFAULT_MAX_BUFFER = 64 << 20
DEFAULT_MAX_BYTES = 256 << 20


class PinnedBuffer:
    __slots__ = ("ptr", "size", "handle", "fence")

    def __init__(self, ptr, size, handle):
        self.ptr, self.size, self.handle = ptr, size, handle
        self.fence = None

    def ready(self) -> bool:
        return self.fence is None or bool(self.fence.done)


class StagingPool:
    """Reused pinned buffers (see the module docstring for the rules)."""

    def __init__(self, backend, *, min_size: int = DEFAULT_MIN_SIZE, max_buffer: int = DEFAULT_MAX_BUFFER,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.backend = backend
        self.min_size = min_size
        self.max_buffer = max_buffer
        self.max_bytes = max_bytes
        self._free: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._held = 0          # bytes of every buffer the pool owns (free or lent)
        self._lock = DeferringLock()
        self._counts = collections.Counter()

    def size_class(self, nbytes: int) -> int:
        return max(self.min_size, 1 << max(int(nbytes) - 1, 0).bit_length())

    def acquire(self, nbytes: int) -> PinnedBuffer | None:
        size = self.size_class(nbytes)
        if size > self.max_buffer:
            with self._lock:
                self._counts["too_large"] += 1
            return None
        with self._lock:
            free = self._free[size]
            for buf in free:
                if buf.ready():
                    free.remove(buf)
                    buf.fence = None
                    self._counts["reuses"] += 1
                    return buf
            if self._held + size > self.max_bytes and free:
                buf = free.popleft()           # the oldest busy one: wait for its copy
                self._counts["waits"] += 1
            else:
                buf = None
        if buf is not None:
            buf.fence.synchronize()
            buf.fence = None
            return buf
        if self._held + size > self.max_bytes:
            self.trim(size)
        with self._lock:
            if self._held + size > self.max_bytes:
                self._counts["fallbacks"] += 1
                return None
            self._held += size
        try:
            ptr, handle = self.backend.malloc(size)
        except MemoryError:
            with self._lock:
                self._held -= size
                self._counts["fallbacks"] += 1
            return None
        self._counts["allocations"] += 1
        return PinnedBuffer(ptr, size, handle)

    def release(self, buf: PinnedBuffer, fence=None) -> None:
        """Back to the pool; reusable once ``fence`` (None: at once) is done.  Never waits."""
        buf.fence = fence
        self._lock.call(self._put_back, buf)

    def _put_back(self, buf: PinnedBuffer) -> None:
        self._free[buf.size].append(buf)

    def trim(self, need: int = 0) -> int:
        """Free idle (ready) buffers, largest classes first, until ``need`` more bytes fit under
        ``max_bytes`` (need=0: all of them); the bytes freed."""
        freed = 0
        with self._lock:
            for size in sorted(self._free, reverse=True):
                free = self._free[size]
                for buf in [b for b in free if b.ready()]:
                    if need and self._held + need <= self.max_bytes:
                        return freed
                    free.remove(buf)
                    self._held -= buf.size
                    freed += buf.size
                    self.backend.free(buf.handle)
        return freed

    def host_view(self, buf: PinnedBuffer, dtype, shape) -> np.ndarray:
        """A NumPy array over the buffer; the buffer returns to the pool when it is collected."""
        return np.asarray(_HostView(self, buf, np.dtype(dtype), tuple(shape)))

    @staticmethod
    def bytes_view(buf: PinnedBuffer, nbytes: int) -> np.ndarray:
        """The first ``nbytes`` of the buffer as uint8, without returning it when dropped."""
        return np.asarray(_HostView(None, buf, np.dtype(np.uint8), (nbytes,)))

    def stats(self) -> dict:
        with self._lock:
            free = sum(len(q) for q in self._free.values())
            out = {"bytes_held": self._held, "free_buffers": free}
            for name in ("allocations", "reuses", "waits", "fallbacks", "too_large"):
                out[name] = self._counts[name]
            return out


class _HostView:
    """Exposes a pinned buffer to NumPy (``__array_interface__``) and returns it to the pool
    when NumPy drops it (an array keeps the object it was made from as its base); with no
    pool, the view returns nothing."""

    def __init__(self, pool, buf, dtype, shape):
        self.pool, self.buf = pool, buf
        self.__array_interface__ = {"data": (buf.ptr, False), "shape": shape, "typestr": dtype.str,
                                    "version": 3}
        if dtype.fields is not None or dtype.kind == "V":
            self.__array_interface__["descr"] = dtype.descr

    def __del__(self):
        buf, self.buf = self.buf, None
        if buf is not None and self.pool is not None:
            self.pool.release(buf)


# --- the CUDA side (CuPy; never run on a GPU) ---------------------------------------------------
def upload(pool: StagingPool | None, array: np.ndarray, stream):
    """A CuPy copy of ``array`` on the current device, queued on ``stream``: the host data is
    copied into a pinned buffer, the buffer to the device asynchronously, and the buffer goes
    back to the pool fenced by an event after that copy.  The device array may be used on
    ``stream`` at once; other streams must wait for ``stream``.  Without a pool or a buffer the
    copy goes through pageable memory.  Never run on a GPU."""
    import cupy  # noqa: PLC0415
    array = np.ascontiguousarray(array)
    out = cupy.empty(array.shape, array.dtype)
    nbytes = array.nbytes
    buf = pool.acquire(nbytes) if pool is not None and nbytes else None
    if buf is None:
        if nbytes:
            out.set(array, stream=stream)
        return out
    np.copyto(pool.bytes_view(buf, nbytes), array.reshape(-1).view(np.uint8))
    out.data.copy_from_host_async(buf.ptr, nbytes, stream)
    fence = cupy.cuda.Event(block=False, disable_timing=True)
    fence.record(stream)
    pool.release(buf, fence)
    return out


def download(pool: StagingPool | None, array, stream) -> np.ndarray:
    """A NumPy copy of the CuPy ``array``, complete when returned: queued on ``stream`` after
    the work that produced it, into a pinned buffer that the returned array views (the buffer
    returns to the pool when the array is collected).  Never run on a GPU."""
    import cupy  # noqa: PLC0415
    with stream:  # the packing copy, if any, on the same stream as the download (not the current one)
        array = cupy.ascontiguousarray(array)
    nbytes = array.nbytes
    buf = pool.acquire(nbytes) if pool is not None and nbytes else None
    if buf is None:
        host = array.get(stream=stream)
        stream.synchronize()
        return host
    array.data.copy_to_host_async(buf.ptr, nbytes, stream)
    done = cupy.cuda.Event(block=True, disable_timing=True)
    done.record(stream)
    done.synchronize()   # the caller reads the result next: wait for this copy, not the whole device
    return pool.host_view(buf, array.dtype, array.shape)
