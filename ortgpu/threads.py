"""The threads a run may use: ``SessionOptions.intra_op_num_threads`` as a bound on the BLAS
threads of the run (through threadpoolctl), shared fairly among concurrent runs.

One budget serves every session: a run gets the smallest of its bound and the cores divided
by the number of runs in progress when it starts (never less than one), so N caller threads
running one session at once share the cores instead of each asking for all of them.  A bound of 0 means
onnxruntime's default, every core this process may run on, less the cores other work keeps
busy when the run starts (at least one): OpenBLAS threads wait for each other at every GEMM,
so one of them descheduled by another process stalls the rest; on the 2-core development
machine under load, a 64x576x3025 GEMM took a median 29-52 ms on 2 threads and 2-6 ms on
one.  An explicit bound is kept whatever the load.  Sessions with
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
    """The BLAS threads of the runs in progress.  Each run, when it starts, gets the smallest of
    its bound and the cores divided by the runs then in progress (at least one), set for its
    own thread (OpenBLAS's thread-local setting where the library has it) and given back
    when it ends; a run keeps its share to its end."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._blas = None              # (setter, original count) per BLAS library, found on first use
        self._cores = available_cores()
        self.busy = runnable_elsewhere   # () -> threads other work has running now

    @contextlib.contextmanager
    def run(self, bound: int):
        """Enter around one run that may use `bound` BLAS threads (0: every core)."""
        with self._lock:
            self._active += 1
            share = self.share(bound)
        libraries = self._libraries()
        for set_threads, _ in libraries:
            set_threads(share)
        try:
            yield share
        finally:
            with self._lock:
                self._active -= 1
            for set_threads, original in libraries:
                set_threads(original)

    def share(self, bound: int) -> int:
        """The BLAS threads a run with `bound` (0: the idle cores) gets now."""
        if bound <= 0:
            others = max(0, self.busy() - self._active)  # each run in progress has a thread running
            bound = self._cores - others
        return max(1, min(bound, self._cores // max(1, self._active)))

    def _libraries(self) -> list:
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController  # noqa: PLC0415
                libs = ThreadpoolController().select(user_api="blas").lib_controllers
                self._blas = [(_thread_setter(lib), lib.num_threads) for lib in libs]
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


def _thread_setter(lib):
    """How to set a BLAS library's thread count from any thread.  OpenBLAS ignores
    ``openblas_set_num_threads`` called from another thread than the one that last set it
    (seen with 0.3.31); its ``openblas_set_num_threads_local`` (0.3.26 and newer) sets the
    count of the calling thread's BLAS calls, which is what a run wants: it is preferred where
    the library exports it."""
    if getattr(lib, "internal_api", "") == "openblas":
        import ctypes  # noqa: PLC0415
        try:
            fn = getattr(ctypes.CDLL(lib.filepath), "openblas_set_num_threads_local")
        except (OSError, AttributeError):
            fn = None
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            return fn
    return lib.set_num_threads


BUDGET = ThreadBudget()
