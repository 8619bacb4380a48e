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

MIN_WORK_PER_THREAD = 1_600_000  # multiply-adds below which another thread costs more than it saves.
# Alone, handing a chunk to the pool and waiting for it costs 50-85 us on the 2-core machine (an
# empty body: 1.3 us on one thread, 53-85 us on two), so a second thread pays from about 150 us
# of work (GELU of 46K floats: 37 us on one thread, 70 on two; of 737K: 577 and 360 us).  Inside
# a model the other core is mostly busy with BLAS's worker, still spinning after the last GEMM,
# and whole runs were no faster with 400K than with no split at all (PP-OCR cls 7.03 vs 6.67 ms,
# rec 17.5 vs 17.1, det 55.7 vs 54.9, others even): only bodies of about 600 us and more split.


def _environ_codec():
    """ORTGPU_JIT and "0" as os.environ stores them in its own dict (bytes on POSIX), or Nones
    where the mapping is not CPython's os._Environ."""
    try:
        return os.environ.encodekey("ORTGPU_JIT"), os.environ.encodevalue("0")
    except AttributeError:
        return None, None


_ENV_KEY, _ENV_OFF = _environ_codec()


def enabled() -> bool:
    """Whether compiled bodies are used: numba imports and ``ORTGPU_JIT`` is not ``0``.  Read on
    every kernel call (tests switch it per test), from os.environ's own dict where it has one:
    its mapping interface encodes the key and decodes the value each time (0.66 vs 0.1 us, up
    to 20 reads a run of a small model)."""
    env = os.environ
    data = getattr(env, "_data", None)
    if data is not None and _ENV_KEY is not None:
        return _HAVE_NUMBA and data.get(_ENV_KEY) != _ENV_OFF
    return _HAVE_NUMBA and env.get("ORTGPU_JIT", "1") != "0"


class compiled:  # noqa: N801 - used as a decorator
    """``@compiled`` on a plain-Python body: the body, compiled by numba on its first call."""

    fastmath: frozenset = frozenset()   # LLVM fast-math flags the body allows (see compiled_with)

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
                    _resolve_helpers(self.body.__globals__)
                    opts = {"fastmath": set(self.fastmath)} if self.fastmath else {}
                    try:
                        self._fn = numba.njit(nogil=True, cache=True, error_model="numpy", **opts)(self.body)
                    except RuntimeError:  # no place to cache it (a body not defined in a file): compile each process
                        self._fn = numba.njit(nogil=True, error_model="numpy", **opts)(self.body)
            fn = self._fn
        return fn(*args)


def compiled_with(*flags: str):
    """``@compiled_with("contract", ...)``: ``@compiled`` allowing these LLVM fast-math flags only.
    "contract" fuses a * b + c into one multiply-add (rounding once: the polynomial bodies of exp
    and erf run 1.7x faster); "reassoc" lets a sum be split into vector lanes (a float reduction
    loop is not vectorised without it).  Neither changes what NaN, Inf or -0.0 mean, which the
    full fastmath=True would ("nnan", "ninf", "nsz")."""
    def wrap(body) -> compiled:
        c = compiled(body)
        c.fastmath = frozenset(flags)
        return c
    return wrap


_HELPERS_LOCK = threading.RLock()


class _Helper:
    """A function that compiled bodies call (see ``helper``): plain Python until a body that
    calls it compiles, then numba-compiled once, inlined into its callers."""

    def __init__(self, fn, flags):
        self.fn = fn
        self.flags = frozenset(flags)
        self._fn = None
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def compiled(self):
        with _HELPERS_LOCK:   # one re-entrant lock for all helpers: no lock-order cycle between them
            if self._fn is None:
                import numba  # noqa: PLC0415 - see _HAVE_NUMBA
                opts = {"fastmath": set(self.flags)} if self.flags else {}
                self._fn = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always", **opts)(self.fn)
                _resolve_helpers(self.fn.__globals__)   # set first: its own module names this helper too
        return self._fn

    def __call__(self, *args):
        return self.fn(*args)


def helper(*flags: str):
    """``@helper(...)`` on a function that compiled bodies call (a block of exp, say), with these
    fast-math flags: inlined into each caller by numba (a call per 32-wide row of a layer norm
    cost 3 of its 5 us on a (128, 32) block, a tuple return more).  numba is not imported for
    it: the module names of helpers become their numba versions when the first body of that
    module compiles (numba types a body's globals then)."""
    def wrap(fn) -> _Helper:
        return _Helper(fn, flags)
    return wrap


def _resolve_helpers(namespace: dict) -> None:
    """Replace the helpers among a module's names by their numba versions (numba only calls
    numba functions from a compiled body)."""
    for name, value in list(namespace.items()):
        if isinstance(value, _Helper):
            namespace[name] = value.compiled()


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
