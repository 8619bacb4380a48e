"""The threads a run may use: ``SessionOptions.intra_op_num_threads`` as a bound on the BLAS
threads of the run (through threadpoolctl), shared fairly among concurrent runs.

One budget serves every session: a run gets the smallest of its bound and the cores divided
by the number of runs in progress when it starts (never less than one), so N caller threads
running one session at once share the cores instead of each asking for all of them.  A bound of 0 means
onnxruntime's default, every core this process may run on, less the cores other work keeps
busy when the run starts (at least one): OpenBLAS threads wait for each other at every GEMM,
so one of them descheduled by another process stalls the rest; on the 2-core development
machine under load, a 64x576x3025 GEMM took a median 29-52 ms on 2 threads and 2-6 ms on
one.  An explicit bound is kept whatever the load, except that a BLAS library has one thread
count per process: runs in progress together all run with the smallest of their shares.  Sessions with
``use_per_session_threads = False`` take their bound from ``set_global_thread_pool_sizes``.
"""
from __future__ import annotations

import contextlib
import os
import threading

_GLOBAL_SIZES = {"intra_op_num_threads": 0, "inter_op_num_threads": 0}


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_global_thread_pool_sizes(intra_op_num_threads: int = 0, inter_op_num_threads: int = 0) -> None:
    """The thread counts of sessions that do not use per-session threads (onnxruntime's
    global thread pools); 0 is the default (every core)."""
    for name, value in (("intra_op_num_threads", intra_op_num_threads),
                        ("inter_op_num_threads", inter_op_num_threads)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"set_global_thread_pool_sizes(): {name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise RuntimeError(f"set_global_thread_pool_sizes(): {name} must be >= 0, got {value}")
        _GLOBAL_SIZES[name] = value


def intra_op_threads(sess_options) -> int:
    """The intra-op thread bound a session's runs ask for (0: every core)."""
    if not sess_options.use_per_session_threads:
        return _GLOBAL_SIZES["intra_op_num_threads"]
    return sess_options.intra_op_num_threads


class ThreadBudget:
    """The BLAS threads of the runs in progress.  Each run, when it starts, gets its share: the
    smallest of its bound and the cores divided by the runs then in progress (at least one).
    A BLAS library's thread count is one setting for the whole process (OpenBLAS built with
    pthreads, as NumPy's wheels are, has no per-thread count), so while runs are in progress
    the libraries run with the smallest share among them, set again whenever a run starts or
    ends; the count the caller had is given back when the last run ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._shares: dict[int, int] = {}   # run token -> its share
        self._next_token = 0
        self._blas = None              # the BLAS libraries (_Blas), found on first use
        self._original: list[int] = []  # their counts before the first run in progress started
        self._counts: list[int] = []    # their counts now
        self._cores = available_cores()
        self.busy = runnable_elsewhere   # () -> threads other work has running now

    @contextlib.contextmanager
    def run(self, bound: int):
        """Enter around one run that may use `bound` BLAS threads (0: every core)."""
        with self._lock:
            self._active += 1
            share = self.share(bound)
            token, self._next_token = self._next_token, self._next_token + 1
            if not self._shares:
                self._original = [lib.num_threads for lib in self._libraries()]
                self._counts = list(self._original)
            self._shares[token] = share
            self._apply()
        try:
            yield share
        finally:
            with self._lock:
                self._active -= 1
                del self._shares[token]
                self._apply()

    def share(self, bound: int) -> int:
        """The BLAS threads a run with `bound` (0: the idle cores) gets now."""
        if bound <= 0:
            others = max(0, self.busy() - self._active)  # each run in progress has a thread running
            bound = self._cores - others
        return max(1, min(bound, self._cores // max(1, self._active)))

    def _apply(self) -> None:
        """Set the BLAS libraries to the smallest share in progress, or back to the caller's
        counts when no run is in progress (called with the lock held)."""
        want = min(self._shares.values(), default=0)
        for i, (lib, original) in enumerate(zip(self._libraries(), self._original)):
            count = want or original
            if self._counts[i] != count:
                lib.set(count)
                self._counts[i] = count

    def _libraries(self) -> list:
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController  # noqa: PLC0415
                libs = ThreadpoolController().select(user_api="blas").lib_controllers
                self._blas = [_Blas(lib) for lib in libs]
            except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive: leave BLAS as it is
                self._blas = []
        return self._blas


def runnable_elsewhere() -> int:
    """Threads the kernel has runnable now, machine-wide (the 4th field of /proc/loadavg,
    'running/total'), the caller's own included; 0 where it cannot be read (not Linux)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0


class _Blas:
    """One BLAS library's thread count, read through threadpoolctl and set from any thread.
    threadpoolctl lets only one thread of the process set OpenBLAS's (pthreads) count and
    silently ignores the others, while runs start on whichever thread calls them; so for
    OpenBLAS the library's own setter is called (the exported names differ between builds:
    NumPy's wheels prefix them)."""

    _OPENBLAS_SETTERS = ("openblas_set_num_threads_local", "openblas_set_num_threads",
                         "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_")

    def __init__(self, lib):
        self._lib = lib
        self._set = lib.set_num_threads
        if getattr(lib, "internal_api", "") == "openblas" and getattr(lib, "threading_layer", "") != "openmp":
            import ctypes  # noqa: PLC0415
            try:
                dynlib = ctypes.CDLL(lib.filepath)
            except OSError:
                return
            for name in self._OPENBLAS_SETTERS:
                fn = getattr(dynlib, name, None)
                if fn is not None:
                    fn.argtypes, fn.restype = [ctypes.c_int], None
                    self._set = fn
                    return

    @property
    def num_threads(self) -> int:
        return self._lib.num_threads

    def set(self, count: int) -> None:
        self._set(count)


BUDGET = ThreadBudget()
