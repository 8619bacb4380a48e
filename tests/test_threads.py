"""intra_op_num_threads bounds the BLAS threads of a run, and concurrent runs share the cores
(checked with threadpoolctl from inside a running kernel; no timing)."""
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper
from threadpoolctl import threadpool_info

import ortgpu
from ortgpu.threads import BUDGET, available_cores
from support.observed_cpu import ObservedCPU


def _blas_threads() -> list[int]:
    """Thread counts of NumPy's BLAS (other BLAS copies loaded later, e.g. SciPy's, may be of a
    version without a per-thread setting)."""
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]


class _SeesBlasThreads(ObservedCPU):
    """The CPU, whose MatMul kernel records the BLAS thread counts it runs under; with a
    barrier, runs meet inside MatMul before and after reading (so both read while both run)."""
    observed = ("MatMul",)

    def __init__(self, barrier=None):
        super().__init__()
        self.seen, self.barrier = [], barrier

    def observe(self, op_type):
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        self.seen.append(_blas_threads())
        if self.barrier is not None:
            self.barrier.wait(timeout=30)


def _matmul_model():
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [64, 64]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [64, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _feed():
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((64, 64)).astype(np.float32),
            "b": rng.standard_normal((64, 64)).astype(np.float32)}


def _session(provider, **options):
    so = ortgpu.SessionOptions()
    for k, v in options.items():
        setattr(so, k, v)
    return ortgpu.InferenceSession(_matmul_model(), so, providers=[provider])


def test_intra_op_num_threads_1_runs_blas_on_one_thread_and_gives_the_threads_back():
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    before = _blas_threads()
    prov = _SeesBlasThreads()
    sess = _session(prov, intra_op_num_threads=1)
    feed = _feed()
    (y,) = sess.run(None, feed)
    np.testing.assert_allclose(y, feed["a"] @ feed["b"], rtol=1e-5, atol=1e-5)
    assert prov.seen and all(n == 1 for n in prov.seen[0])
    assert _blas_threads() == before  # outside runs, BLAS is as the caller left it


def test_runs_in_progress_together_share_the_cores_and_the_count_comes_back(monkeypatch):
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    budget = type(BUDGET)()  # this test's runs only, whatever else runs in the process
    budget.busy = lambda: 0  # as on a machine with nothing else running
    monkeypatch.setattr("ortgpu.run_core.BUDGET", budget)
    before = _blas_threads()
    alone = _SeesBlasThreads()
    _session(alone).run(None, _feed())  # intra_op_num_threads = 0: every core for a run alone
    assert alone.seen == [[available_cores()] * len(before)]
    prov = _SeesBlasThreads(threading.Barrier(2))
    sess = _session(prov)
    runs = [threading.Thread(target=sess.run, args=(None, _feed())) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(60)
    half = max(1, available_cores() // 2)
    assert prov.seen == [[half] * len(before)] * 2  # BLAS's one count per process: the smaller share
    assert _blas_threads() == before  # given back when the last run ends


def test_sessions_without_per_session_threads_use_the_global_sizes():
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    ortgpu.set_global_thread_pool_sizes(intra_op_num_threads=1)
    try:
        prov = _SeesBlasThreads()
        sess = _session(prov, use_per_session_threads=False, intra_op_num_threads=8)
        sess.run(None, _feed())
        assert all(n == 1 for n in prov.seen[0])
    finally:
        ortgpu.set_global_thread_pool_sizes(0, 0)
    with pytest.raises(RuntimeError, match="intra_op_num_threads"):
        ortgpu.set_global_thread_pool_sizes(-1)


def test_each_run_gets_the_cores_divided_by_the_runs_in_progress():
    budget = type(BUDGET)()
    budget._cores, budget._blas, budget.busy = 8, [], lambda: 0
    with budget.run(0) as alone:
        with budget.run(0) as second, budget.run(0) as third, budget.run(0) as fourth:
            assert (alone, second, third, fourth) == (8, 4, 2, 2)
        with budget.run(3) as bounded:
            assert bounded == 3
    assert budget._active == 0


def test_the_default_leaves_the_cores_other_work_keeps_busy_and_a_bound_is_kept():
    budget = type(BUDGET)()
    budget._cores, budget._blas, budget.BUSY_TTL_S = 8, [], 0.0  # every run reads the load
    running = {"n": 0}
    budget.busy = lambda: running["n"]
    for elsewhere, want in ((0, 8), (3, 5), (7, 1), (20, 1)):
        running["n"] = elsewhere
        with budget.run(0) as share:
            assert share == want, elsewhere
        with budget.run(6) as bounded:  # an explicit intra_op_num_threads is kept under load
            assert bounded == 6
    running["n"] = 1  # one thread of other work
    with budget.run(0) as first:
        with budget.run(0) as second:  # then a second run of ours starts
            assert (first, second) == (7, 4)  # the second: 8 cores less 1 busy, halved for 2 runs


def test_runs_waiting_at_the_gate_count_in_the_blas_share():
    """When a run ends while another waits to start, the BLAS threads stay at the share of the
    runs about to be in progress: the run left alone does not take every core for the moment
    until the waiting one starts (its second BLAS thread would then compete with that run)."""
    class FakeBlas:
        def __init__(self):
            self.num_threads, self.history = 2, []

        def set(self, count):
            self.num_threads = count
            self.history.append(count)

    blas = FakeBlas()
    budget = type(BUDGET)(cores=2)
    budget._blas, budget.busy = [blas], lambda: 0
    with budget.run(0, gate=False) as first:
        assert first == 2
        with budget.run(0, gate=False) as second:
            assert second == 1 and blas.num_threads == 1
            budget._waiting = 1   # a third run waits at the gate
        assert blas.num_threads == 1   # the second ended; the third is about to start
        budget._waiting = 0
    assert blas.num_threads == 2   # the caller's count again


def test_short_runs_read_the_load_less_often_than_long_ones():
    """Runs of sessions whose runs are short (one_at_a_time) reuse a reading of the machine's
    load for SHORT_BUSY_TTL_S; the others read it again after BUSY_TTL_S."""
    budget = type(BUDGET)()
    budget._cores, budget._blas = 8, []
    budget.BUSY_TTL_S, budget.SHORT_BUSY_TTL_S = 0.0, 60.0
    reads = []
    budget.busy = lambda: reads.append(1) or 2
    for _ in range(3):
        with budget.run(0, one_at_a_time=True) as share:
            assert share == 6
    assert len(reads) == 1   # the first short run read it, the next two reused it
    with budget.run(0) as share:
        assert share == 6
    assert len(reads) == 2   # a long run reads it again


def test_the_load_reader_follows_threads_that_come_and_go_and_a_fork():
    """The reader keeps one open stat file per thread of the process: files of new threads
    are opened, those of ended threads closed, and a forked child opens its own."""
    import os
    from ortgpu.threads import _ProcReader
    if not os.path.exists("/proc/self/task"):
        pytest.skip("no /proc")
    reader = _ProcReader()
    reader.TASKS_TTL_S = 3600.0   # no listing by age: a change in the thread count lists them
    assert reader.runnable_here() >= 1   # this thread is running
    release = threading.Event()
    waiters = [threading.Thread(target=release.wait) for _ in range(2)]
    for t in waiters:
        t.start()
    try:
        reader.runnable_here()
        assert {str(t.native_id) for t in waiters} <= set(reader._tasks)
        assert all(fd >= 0 for fd in reader._tasks.values())
    finally:
        release.set()
        for t in waiters:
            t.join()
    ended = {str(t.native_id) for t in waiters}
    deadline = time.monotonic() + 10   # join returns just before the OS thread is gone
    while any(os.path.exists(f"/proc/self/task/{tid}") for tid in ended):
        assert time.monotonic() < deadline, "the joined threads never left /proc/self/task"
        time.sleep(0.001)
    reader.runnable_here()
    assert not ended & set(reader._tasks)   # the ended threads' files are closed
    assert len(reader._tasks) == reader._threads()
    reader._pid = -2   # what a forked child finds: another process's files
    assert reader.runnable_elsewhere() >= 0
    assert reader._pid == os.getpid() and reader._loadavg >= 0


def test_runnable_threads_elsewhere_count_another_process_and_not_this_one():
    import subprocess
    import sys
    import time
    from ortgpu.threads import _runnable_here, runnable_elsewhere
    try:
        with open("/proc/loadavg") as f:
            f.read()
    except OSError:
        pytest.skip("no /proc/loadavg")
    assert _runnable_here() >= 1  # this thread is running
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 20
        while runnable_elsewhere() < 1:  # the spinning process is runnable all the time
            assert time.monotonic() < deadline, "another process's running thread was never counted"
            time.sleep(0.01)
    finally:
        spinner.kill()
        spinner.wait(10)


def _most_at_once(budget, runs: int, gate: bool, meet, one_at_a_time: bool = False) -> int:
    """How many of `runs` threads were inside ``budget.run(0, gate=gate)`` at once, each calling
    `meet()` there (a barrier: who it waits for is the test's point)."""
    lock, now, most = threading.Lock(), [0], [0]

    def one_run():
        with budget.run(0, gate=gate, one_at_a_time=one_at_a_time):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            meet()
            with lock:
                now[0] -= 1
    threads = [threading.Thread(target=one_run) for _ in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return most[0]


def test_at_most_one_run_per_core_is_in_progress_and_the_others_wait(monkeypatch):
    monkeypatch.setattr("ortgpu.threads.GATE_WAIT_S", 60.0)  # no run gives up waiting, however loaded
    budget = type(BUDGET)(cores=2)
    budget._blas, budget.busy = [], lambda: 0
    pairs = threading.Barrier(2, timeout=20)  # two runs are in progress together, whatever the load

    def pair_then_linger():
        pairs.wait()
        time.sleep(0.05)  # room for a third run to come in, if the gate let it
    assert _most_at_once(budget, 6, True, pair_then_linger) == 2
    assert budget._active == 0 and all(not g.locked() for g in budget._gates)

    # a session with a device provider: its runs do not take a core's turn
    four = threading.Barrier(4, timeout=20)  # met only if all four runs are in progress at once
    assert _most_at_once(budget, 4, False, four.wait) == 4


def test_short_runs_go_one_at_a_time_and_long_runs_one_per_core(monkeypatch):
    """A session whose runs are short (mostly Python, holding the GIL) runs one at a time when
    threads share it; one whose runs are long, one per core (ortgpu.run_core.SHORT_RUN_NS)."""
    monkeypatch.setattr("ortgpu.threads.GATE_WAIT_S", 60.0)
    budget = type(BUDGET)(cores=2)
    budget._blas, budget.busy = [], lambda: 0
    assert _most_at_once(budget, 4, True, lambda: time.sleep(0.05), one_at_a_time=True) == 1
    monkeypatch.setattr("ortgpu.run_core.BUDGET", budget)
    seen = []
    real_run = budget.run

    def spy(bound, gate=True, one_at_a_time=False):
        seen.append(one_at_a_time)
        return real_run(bound, gate, one_at_a_time)
    monkeypatch.setattr(budget, "run", spy)
    sess = _session("CPUExecutionProvider")
    core = sess._core
    for _ in range(3):
        sess.run(None, _feed())
    assert seen[0] is True  # not measured yet: one at a time
    assert 0 < core.run_ns < 2_000_000 and seen[-1] is True  # a 64x64 MatMul is short
    core.run_ns = 10_000_000  # as a long run would have measured
    seen.clear()
    sess.run(None, _feed())
    assert seen == [False] and core.run_ns > 2_000_000


def test_a_session_learns_its_runs_are_short_while_threads_share_it(monkeypatch):
    """A session whose first runs measured long (cold) learns that its runs are short from runs
    that overlap other runs: shorter measurements count there (overlap only lengthens a run)."""
    monkeypatch.setattr("ortgpu.threads.GATE_WAIT_S", 60.0)
    budget = type(BUDGET)(cores=2)
    budget._blas, budget.busy = [], lambda: 0
    monkeypatch.setattr("ortgpu.run_core.BUDGET", budget)
    sess = _session("CPUExecutionProvider")
    core = sess._core
    sess.run(None, _feed())
    core.run_ns = 50_000_000   # as a cold first run would have measured
    with budget.run(0, gate=False):   # another run in progress all along
        for _ in range(40):
            sess.run(None, _feed())
    assert core.run_ns < 2_000_000


def test_a_run_inside_a_run_does_not_wait_and_no_run_waits_past_the_limit(monkeypatch):
    budget = type(BUDGET)(cores=1)
    budget._blas, budget.busy = [], lambda: 0
    t0 = time.perf_counter()
    with budget.run(0), budget.run(0) as nested:  # a session run from inside a kernel: same thread
        assert nested == 1
    assert time.perf_counter() - t0 < 0.5
    monkeypatch.setattr("ortgpu.threads.GATE_WAIT_S", 0.2)
    inside, release = threading.Event(), threading.Event()

    def holder():
        with budget.run(0):
            inside.set()
            release.wait(30)
    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)
    t0 = time.perf_counter()
    with budget.run(0):  # the only core is taken by a run that waits for this one: it starts anyway
        waited = time.perf_counter() - t0
    release.set()
    t.join(30)
    assert 0.15 <= waited < 10
    assert budget._active == 0


def test_the_load_is_read_once_per_interval():
    budget = type(BUDGET)(cores=4)
    budget._blas = []
    reads = []
    budget.busy = lambda: reads.append(1) or 0
    budget.BUSY_TTL_S = 60.0
    for _ in range(5):
        with budget.run(0) as share:
            assert share == 4
    assert len(reads) == 1


def _conv_net():
    rng = np.random.default_rng(1)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], rng.standard_normal(216).astype(np.float32)),
             helper.make_tensor("m", TensorProto.FLOAT, [8, 16], rng.standard_normal(128).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MatMul", ["r", "m"], ["mm"]),
             helper.make_node("Softmax", ["mm"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_eight_threads_sharing_a_session_get_what_serial_runs_get():
    import onnxruntime
    so = ortgpu.SessionOptions()
    so.intra_op_num_threads = 1  # the same BLAS threads serially and concurrently: bit-identical sums
    sess = ortgpu.InferenceSession(_conv_net(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(64)]
    serial = [sess.run(None, f)[0] for f in feeds]
    got = [None] * len(feeds)

    def worker(k):
        for i in range(k, len(feeds), 8):
            got[i] = sess.run(None, feeds[i])[0]
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    for i, (a, b) in enumerate(zip(got, serial)):
        assert a is not None and np.array_equal(a, b), i
    oracle = onnxruntime.InferenceSession(_conv_net(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(serial[0], oracle.run(None, feeds[0])[0], rtol=1e-4, atol=1e-5)
