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

At most one run per core is in progress at once: a caller thread beyond that waits for a run
to end before its own starts (blocked, not competing); runs of a session whose runs are short
(ortgpu.run_core.SHORT_RUN_NS: mostly Python between NumPy calls) go one at a time.  More runs in progress than cores only
slice the cores finer: each run's working set is thrown out of the cache at every switch, and
the threads queue for the GIL at every NumPy call that gives it back.  Measured on the
2-core machine: 8 threads each running a 64x576x3025 GEMM gave 177-190 GEMM/s, 292-334 with
two at a time; 8 threads sharing one session of a 32-wide BERT gave 317-325 runs/s, 462-469
with two at a time.  A run started from inside a run (a custom op running a session) does not
wait, and no run waits longer than ``GATE_WAIT_S``: runs that wait for each other (a barrier
across kernels of concurrent runs) are slowed, never deadlocked.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

_GLOBAL_SIZES = {"intra_op_num_threads": 0, "inter_op_num_threads": 0}
GATE_WAIT_S = 1.0  # the longest a run waits for a core before it starts anyway


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


def inter_op_threads(sess_options) -> int:
    """The steps a session's run may run at once: 1 unless ``execution_mode`` is ORT_PARALLEL,
    then ``inter_op_num_threads`` (the global size without per-session threads; 0: every core)."""
    from ortgpu.options import ExecutionMode  # noqa: PLC0415 - options imports nothing of ours at import
    if sess_options.execution_mode != ExecutionMode.ORT_PARALLEL:
        return 1
    n = (_GLOBAL_SIZES["inter_op_num_threads"] if not sess_options.use_per_session_threads
         else sess_options.inter_op_num_threads)
    return n if n > 0 else available_cores()


class ThreadBudget:
    """The BLAS threads of the runs in progress.  Each run, when it starts, gets its share: the
    smallest of its bound and the cores divided by the runs then in progress (at least one).
    A BLAS library's thread count is one setting for the whole process (OpenBLAS built with
    pthreads, as NumPy's wheels are, has no per-thread count), so while runs are in progress
    the libraries run with the smallest share among them, set again whenever a run starts or
    ends; the count the caller had is given back when the last run ends.

    Entering and leaving costs a few microseconds (a run of one Add is about 20): the gate is
    C-level locks, the load is read at most every ``BUSY_TTL_S`` and the BLAS counts through
    the libraries' own getters."""

    BUSY_TTL_S = 0.05  # how long one reading of the machine's load is used
    # ... by runs of under SHORT_RUN_NS (ortgpu.run_core): a reading costs 50-100 us inside a
    # model's runs (the /proc files are cold), a third of a silero VAD run, and at every 50 ms
    # one run in ten 20-run windows paid it; those runs' GEMMs are small besides
    SHORT_BUSY_TTL_S = 1.0

    def __init__(self, cores: int | None = None):
        self._lock = threading.Lock()
        self._active = 0
        self._waiting = 0   # runs waiting at the gates
        self._shares: dict[int, int] = {}   # run token -> its share
        self._next_token = 0
        self._blas = None              # the BLAS libraries (_Blas), found on first use
        self._blas_stale = False       # a BLAS library was loaded since they were listed
        self._original: list[int] = []  # their counts before the first run in progress started
        self._counts: list[int] = []    # their counts now
        self._cores = cores or available_cores()
        # the threads a kernel of ours may split its work over now: the share the BLAS
        # libraries run with while runs are in progress, every core otherwise
        self.kernel_threads = self._cores
        self.busy = runnable_elsewhere   # () -> threads other processes have running now
        self._busy_at, self._busy_seen = -1.0, 0
        self._gates = [threading.Lock() for _ in range(self._cores)]  # one run in progress per core
        self._local = threading.local()  # per thread: runs in progress (nested ones skip the gate), gate
        self._gate_of = itertools.count()

    def run(self, bound: int, gate: bool = True, one_at_a_time: bool = False) -> "_Run":
        """A context manager around one run that may use `bound` BLAS threads (0: every core),
        giving the run's share; with `gate` the run first waits (at most GATE_WAIT_S) until
        fewer runs than cores are in progress (runs of sessions with a device provider do not:
        they mostly wait for their device, with the GIL given back), with `one_at_a_time` until
        no other such run is (runs that are mostly Python between NumPy calls only slow each
        other down at the GIL)."""
        return _Run(self, bound, gate, one_at_a_time)

    @property
    def runs_in_progress(self) -> int:
        return self._active

    def _enter_gate(self, gate: bool = True, one_at_a_time: bool = False):
        """The gate lock this thread's run holds (None: nested, ungated, or it waited too long)."""
        local = self._local
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        if depth or not gate:
            return None
        gates = self._gates[:1] if one_at_a_time else self._gates
        for gate in gates:  # a free core
            if gate.acquire(False):
                return gate
        if one_at_a_time:
            mine = gates[0]
        else:
            mine = getattr(local, "gate", None)
            if mine is None:  # threads wait on the gates in turn, so that every gate has waiters
                mine = local.gate = self._gates[next(self._gate_of) % len(self._gates)]
        with self._lock:
            self._waiting += 1
        try:
            return mine if mine.acquire(timeout=GATE_WAIT_S) else None
        finally:
            with self._lock:
                self._waiting -= 1

    def _leave_gate(self, gate) -> None:
        self._local.depth -= 1
        if gate is not None:
            gate.release()

    def _start(self, bound: int, short: bool = False) -> tuple[int, int]:
        """Count a run in; (its token, its share).  A run that starts alone (the usual case)
        reads the caller's counts and sets its share directly."""
        with self._lock:
            self._active += 1
            share = self.share(bound, self.SHORT_BUSY_TTL_S if short else self.BUSY_TTL_S)
            token = self._next_token
            self._next_token = token + 1
            shares = self._shares
            shares[token] = share
            if len(shares) == 1:
                if self._blas_stale:   # listed again only while no other run holds the old list's counts
                    self._blas, self._blas_stale = None, False
                libs = self._blas if self._blas is not None else self._libraries()
                self._original = original = [lib.num_threads for lib in libs]
                self._counts = counts = list(original)
                self.kernel_threads = share
                for i, lib in enumerate(libs):
                    if counts[i] != share:
                        lib.set(share)
                        counts[i] = share
            else:
                self._apply()
        return token, share

    def _end(self, token: int) -> None:
        with self._lock:
            self._active -= 1
            shares = self._shares
            del shares[token]
            if shares:
                self._apply()
                return
            self.kernel_threads = self._cores  # the last run ended: the caller's counts again
            counts, original = self._counts, self._original
            for i, lib in enumerate(self._blas or ()):
                if counts[i] != original[i]:
                    lib.set(original[i])
                    counts[i] = original[i]

    def share(self, bound: int, busy_ttl: float) -> int:
        """The BLAS threads a run with `bound` (0: the idle cores, the load read again once the
        last reading is `busy_ttl` seconds old) gets now."""
        cores = self._cores
        if bound <= 0:  # less other processes' runnable threads (ours excluded)
            bound = cores - self._busy_now(busy_ttl)
        runs = self._active + self._waiting   # runs waiting now will start as soon as a run ends
        fair = cores // runs if runs > 1 else cores
        share = bound if bound < fair else fair
        return share if share > 1 else 1

    def _busy_now(self, ttl: float) -> int:
        """``busy()``, read again once the last reading is `ttl` seconds old."""
        now = time.monotonic()
        if now - self._busy_at >= ttl or self._busy_at < 0:
            self._busy_seen, self._busy_at = self.busy(), now
        return self._busy_seen

    def _apply(self) -> None:
        """Set the BLAS libraries to the smallest share in progress, or back to the caller's
        counts when no run is in progress (called with the lock held)."""
        shares = self._shares
        if not shares:
            want = 0
        elif len(shares) == 1:
            want = next(iter(shares.values()))
        else:
            want = min(shares.values())
        if want and self._waiting:   # a run ends with others waiting: the next starts at once
            want = min(want, max(1, self._cores // (self._active + self._waiting)))
        self.kernel_threads = want or self._cores
        counts = self._counts
        for i, lib in enumerate(self._libraries()):
            count = want or self._original[i]
            if counts[i] != count:
                lib.set(count)
                counts[i] = count

    def libraries_changed(self) -> None:
        """A BLAS library was loaded (mkl_blas): list the libraries again when the next run
        starts alone."""
        self._blas_stale = True

    def _libraries(self) -> list:
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController  # noqa: PLC0415
                libs = ThreadpoolController().select(user_api="blas").lib_controllers
                self._blas = [_Blas(lib) for lib in libs]
            except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive: leave BLAS as it is
                self._blas = []
        return self._blas


class _Run:
    """``with budget.run(bound) as share``: through the gate, then counted in (a class rather
    than a generator: it is entered on every run)."""

    __slots__ = ("_budget", "_bound", "_gated", "_one", "_gate", "_token")

    def __init__(self, budget: ThreadBudget, bound: int, gated: bool, one_at_a_time: bool = False):
        self._budget, self._bound, self._gated, self._one = budget, bound, gated, one_at_a_time

    def __enter__(self) -> int:
        budget = self._budget
        gate = self._gate = budget._enter_gate(self._gated, self._one)
        try:
            self._token, share = budget._start(self._bound, self._one)
        except BaseException:
            budget._leave_gate(gate)
            raise
        return share

    def __exit__(self, *exc) -> None:
        budget = self._budget
        try:
            budget._end(self._token)
        finally:
            budget._local.depth -= 1  # _leave_gate, inlined: every run leaves once
            if self._gate is not None:
                self._gate.release()


def runnable_elsewhere() -> int:
    """Threads of other processes runnable now: the machine's runnable threads (the 4th field
    of /proc/loadavg, 'running/total') less this process's own (its threads in state R under
    /proc/self/task).  This process's threads do not count: its BLAS workers, still spinning
    after the last GEMM, would otherwise read as other work and halve the next run's threads
    on an idle machine.  0 where it cannot be read (not Linux)."""
    return _PROC.runnable_elsewhere()


def _runnable_here() -> int:
    """This process's threads in state R (running or runnable)."""
    return _PROC.runnable_here()


class _ProcReader:
    """/proc/loadavg and this process's /proc/self/task/<tid>/stat files kept open and read with
    pread: a reading of the load costs 10-20 us in a loop and 50-100 us inside a model's runs,
    where opening the files each time cost 200-250 us (the slowest run of a third of the 4x32
    BERT's 20-run windows).  The thread list is read again when the process's thread count
    changes, every TASKS_TTL_S, when a thread's file fails, and in a forked child (whose
    /proc/self is another process)."""

    TASKS_TTL_S = 1.0
    MOST_KEPT = 64   # thread files kept open at most; a process with more threads reads them each time

    def __init__(self):
        self._lock = threading.Lock()
        self._pid = -1
        self._loadavg = -1
        self._self_stat = -1
        self._tasks: dict[str, int] = {}   # tid -> open descriptor of its stat file
        self._listed_at = -1.0

    def runnable_elsewhere(self) -> int:
        with self._lock:
            try:
                self._check_process()
                machine = int(os.pread(self._loadavg, 128, 0).split()[3].split(b"/")[0])
            except (OSError, ValueError, IndexError):
                return 0
            return max(0, machine - self._runnable_here())

    def runnable_here(self) -> int:
        with self._lock:
            try:
                self._check_process()
            except OSError:
                return 0
            return self._runnable_here()

    def _check_process(self) -> None:
        """Open the files (again, in a forked child)."""
        if self._pid != os.getpid():
            self._close_all()
            self._loadavg = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
            self._self_stat = os.open("/proc/self/stat", os.O_RDONLY | os.O_CLOEXEC)
            self._pid = os.getpid()

    def _runnable_here(self) -> int:
        now = time.monotonic()
        if now - self._listed_at >= self.TASKS_TTL_S or self._listed_at < 0 or self._threads() != len(self._tasks):
            self._list_tasks()
            self._listed_at = now
        count = 0
        for tid, fd in list(self._tasks.items()):
            try:
                stat = os.pread(fd, 512, 0) if fd >= 0 else _read_once(f"/proc/self/task/{tid}/stat")
            except OSError:
                stat = b""
            if not stat:   # the thread ended: list the threads again next time
                self._drop(tid)
                self._listed_at = -1.0
                continue
            # the state follows the parenthesised command name, which may hold spaces or ')'
            end = stat.rfind(b")")
            if stat[end + 2:end + 3] == b"R":
                count += 1
        return count

    def _threads(self) -> int:
        """The process's thread count now (the 20th field of /proc/self/stat): a thread started
        since the list was read (a BLAS library's OpenMP workers, say) is listed at once, or its
        running would count as other work until the next listing."""
        try:
            stat = os.pread(self._self_stat, 512, 0)
            return int(stat[stat.rfind(b")") + 2:].split()[17])
        except (OSError, ValueError, IndexError):
            return len(self._tasks)

    def _list_tasks(self) -> None:
        try:
            tids = set(os.listdir("/proc/self/task"))
        except OSError:
            tids = set()
        for tid in [t for t in self._tasks if t not in tids]:
            self._drop(tid)
        kept = sum(1 for fd in self._tasks.values() if fd >= 0)
        for tid in tids - self._tasks.keys():
            fd = -1
            if kept < self.MOST_KEPT:
                try:
                    fd = os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY | os.O_CLOEXEC)
                    kept += 1
                except OSError:   # ended meanwhile
                    continue
            self._tasks[tid] = fd

    def _drop(self, tid: str) -> None:
        fd = self._tasks.pop(tid, -1)
        if fd >= 0:
            _close(fd)

    def _close_all(self) -> None:
        for fd in list(self._tasks.values()) + [self._loadavg, self._self_stat]:
            if fd >= 0:
                _close(fd)
        self._tasks, self._loadavg, self._self_stat, self._listed_at = {}, -1, -1, -1.0


def _read_once(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_PROC = _ProcReader()


class _Blas:
    """One BLAS library's thread count, read through threadpoolctl and set from any thread.
    threadpoolctl lets only one thread of the process set OpenBLAS's (pthreads) count and
    silently ignores the others, while runs start on whichever thread calls them; so for
    OpenBLAS the library's own setter is called (the exported names differ between builds:
    NumPy's wheels prefix them)."""

    _OPENBLAS_SETTERS = ("openblas_set_num_threads_local", "openblas_set_num_threads",
                         "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_")
    # read on every run that starts alone: the library's getter is a C call, threadpoolctl's a
    # few microseconds of Python
    _OPENBLAS_GETTERS = ("openblas_get_num_threads", "openblas_get_num_threads64_",
                         "scipy_openblas_get_num_threads64_")

    def __init__(self, lib):
        self._lib = lib
        self._set = lib.set_num_threads
        self._get = None
        api = getattr(lib, "internal_api", "")
        if api == "openblas" and getattr(lib, "threading_layer", "") != "openmp":
            import ctypes  # noqa: PLC0415
            try:
                dynlib = ctypes.CDLL(lib.filepath)
            except OSError:
                return
            self._set = self._exported(dynlib, self._OPENBLAS_SETTERS, [ctypes.c_int], None) or self._set
            self._get = self._exported(dynlib, self._OPENBLAS_GETTERS, [], ctypes.c_int)
        elif api == "mkl":   # the same C calls threadpoolctl makes, without its Python around them
            import ctypes  # noqa: PLC0415
            try:
                dynlib = ctypes.CDLL(lib.filepath)
            except OSError:
                return
            self._set = self._exported(dynlib, ("MKL_Set_Num_Threads",), [ctypes.c_int], None) or self._set
            self._get = self._exported(dynlib, ("MKL_Get_Max_Threads",), [], ctypes.c_int)

    @staticmethod
    def _exported(dynlib, names, argtypes, restype):
        """The first of `names` the library exports, typed; None if it exports none."""
        for name in names:
            fn = getattr(dynlib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = argtypes, restype
                return fn
        return None

    @property
    def num_threads(self) -> int:
        return self._get() if self._get is not None else self._lib.num_threads

    def set(self, count: int) -> None:
        self._set(count)


BUDGET = ThreadBudget()
