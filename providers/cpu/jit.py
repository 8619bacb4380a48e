"""Compiled CPU kernel bodies: numba, where NumPy's array-at-a-time calls are far from the
machine (a 5x5 depthwise convolution on 240x12x80 is 25 multiply-adds per output: NumPy
shifted sums take 4.9 ms there, numexpr 5.1 ms, im2col 10.7 ms, a compiled loop 0.47 ms on one
core and 0.24 ms on two, onnxruntime 0.15 ms; 2-core development machine, 2026-12-06).

A body is compiled on first use (``nogil``, cached on disk beside its source, so a later
process loads it instead of compiling) and called on plain C-contiguous NumPy arrays.  Work is
split over the run's thread share (``threads.BUDGET.kernel_threads``) by ``split_range``: the
body takes the half-open range of items it owns, the caller's thread runs the first chunk and
a small pool of Python threads the others; numba's own parallel loops are not used (their
threading layers differ in thread safety and fork safety, and their thread count is not the
run's).

Without numba, or with ``ORTGPU_JIT=0`` in the environment, ``enabled()`` is False and every
kernel keeps its NumPy body, which the tests also check against the same oracles.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ortgpu.threads import BUDGET, available_cores

# numba is imported when the first body compiles (importing it costs ~0.2 s); a platform
# without a numba wheel keeps the NumPy bodies
_HAVE_NUMBA = importlib.util.find_spec("numba") is not None

MIN_WORK_PER_THREAD = 100_000  # multiply-adds below which another thread costs more than it saves


def enabled() -> bool:
    """Whether compiled bodies are used: numba imports and ``ORTGPU_JIT`` is not ``0``."""
    return _HAVE_NUMBA and os.environ.get("ORTGPU_JIT", "1") != "0"


class compiled:  # noqa: N801 - used as a decorator
    """``@compiled`` on a plain-Python body: the body, compiled by numba on its first call."""

    def __init__(self, body):
        self.body = body
        self._fn = None
        self._lock = threading.Lock()
        self.__name__ = body.__name__
        self.__doc__ = body.__doc__

    def __call__(self, *args):
        fn = self._fn
        if fn is None:
            with self._lock:
                if self._fn is None:
                    import numba  # noqa: PLC0415 - see _HAVE_NUMBA
                    self._fn = numba.njit(nogil=True, cache=True, error_model="numpy")(self.body)
            fn = self._fn
        return fn(*args)


_POOL: ThreadPoolExecutor | None = None
_POOL_PID = -1
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The helper threads (made again in a forked child, whose copy has no threads)."""
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid():
        with _POOL_LOCK:
            if _POOL is None or _POOL_PID != os.getpid():
                _POOL = ThreadPoolExecutor(max(1, available_cores() - 1), thread_name_prefix="ortgpu-kernel")
                _POOL_PID = os.getpid()
    return _POOL


def split_range(body: compiled, items: int, work_per_item: float, *args) -> None:
    """``body(lo, hi, *args)`` over ``range(items)`` in contiguous chunks, one per thread of the
    run's share (fewer when there is too little work to pay for a thread)."""
    threads = min(BUDGET.kernel_threads, items, int(items * work_per_item // MIN_WORK_PER_THREAD) or 1)
    if threads <= 1:
        body(0, items, *args)
        return
    bounds = [items * t // threads for t in range(threads + 1)]
    pool = _pool()
    futures = [pool.submit(body, bounds[t], bounds[t + 1], *args) for t in range(1, threads)]
    body(bounds[0], bounds[1], *args)
    for f in futures:
        f.result()
