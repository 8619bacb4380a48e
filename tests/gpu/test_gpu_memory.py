"""The CUDA provider's memory (`-m gpu`): the session arena (gpu_mem_limit, out of memory and
recovery, extend strategies, statistics), memory patterns (a replayed run allocates nothing),
pinned staging, CuPy's global allocator left alone, and sessions sharing one device.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import gpu_support as gs
from support.memory_cases import chain_model
import ortgpu
from ortgpu.errors import RuntimeException

pytestmark = gs.gpu_marks()

MiB = 1 << 20


def reference(x):
    return np.maximum(x - 2 / (1 + np.exp(-x)), 0)


def session(pattern=True, **options):
    so = ortgpu.SessionOptions()
    so.enable_mem_pattern = pattern
    opts = dict(gs.CUDA_OPTIONS, **{k: str(v) for k, v in options.items()})
    s = ortgpu.InferenceSession(chain_model(), so, providers=[(gs.CUDA, opts), gs.CPU])
    assert s.get_providers()[0] == gs.CUDA
    return s


def stats(s):
    return s.get_memory_stats()[gs.CUDA]


def feed(n, m, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, m)).astype(np.float32)}


def check(s, n, m, seed=0):
    f = feed(n, m, seed)
    np.testing.assert_allclose(s.run(None, f)[0], reference(f["x"]), rtol=1e-5, atol=1e-6)


def test_limit_refuses_a_big_run_and_the_session_recovers():
    limit = 64 * MiB
    s = session(pattern=False, gpu_mem_limit=limit)
    check(s, 512, 512)                                  # 1 MiB tensors: fits
    before = stats(s)["bytes_in_use"]
    with pytest.raises(RuntimeException) as info:
        s.run(None, feed(2048, 4096))                   # x (32 MiB) fits, Sigmoid's output not
    text = str(info.value)
    assert "Failed to allocate memory for requested buffer of size" in text
    assert f"limit (gpu_mem_limit): {limit} bytes" in text and "in use:" in text
    st = stats(s)
    assert st["max_bytes_reserved"] <= limit and st["bytes_reserved"] <= limit
    assert st["bytes_in_use"] == before                 # the failed run gave x back, although
                                                        # `info` still holds the error
    del info
    check(s, 512, 512, seed=1)                          # and the session still serves small runs
    check(s, 1024, 2048, seed=2)                        # 8 MiB tensors fit too


def test_statistics_after_runs():
    s = session(pattern=False)
    idle = stats(s)
    check(s, 256, 1024)                                 # 1 MiB tensors
    st = stats(s)
    assert st["num_allocs"] > idle["num_allocs"] and st["num_frees"] > idle["num_frees"]
    assert st["bytes_in_use"] == idle["bytes_in_use"]   # nothing leaked past the run
    assert st["max_bytes_in_use"] >= 2 * MiB            # x on the device and one intermediate at least
    assert st["bytes_reserved"] >= st["max_bytes_in_use"] and st["num_reserves"] >= 1
    assert st["largest_free_block"] <= st["bytes_reserved"]
    assert st["bytes_limit"] == 2 ** 64 - 1
    assert {"mem_pattern", "staging"} <= set(st)


def test_extend_strategies():
    same = session(pattern=False, arena_extend_strategy="kSameAsRequested")
    power = session(pattern=False, arena_extend_strategy="kNextPowerOfTwo")
    for s in (same, power):
        check(s, 2, 3)                                  # a few 256-byte requests
    assert stats(same)["bytes_reserved"] < MiB <= stats(power)["bytes_reserved"]


def test_a_replayed_run_allocates_nothing():
    s = session(pattern=True)
    check(s, 300, 700)                                  # recorded
    first = stats(s)
    assert first["mem_pattern"]["recordings"] == 1 and first["mem_pattern"]["patterns"] == 1
    check(s, 300, 700, seed=1)                          # replayed from the pattern's block
    second = stats(s)
    assert second["num_allocs"] == first["num_allocs"]
    mp = second["mem_pattern"]
    assert mp["replays"] == 1 and mp["replay_hits"] > 0 and mp["replay_misses"] == 0
    plan = mp["last_plan"]
    assert plan["lower_bound"] <= plan["peak"] <= 1.1 * plan["lower_bound"]
    check(s, 30, 70, seed=2)                            # another signature: recorded
    check(s, 300, 700, seed=3)                          # the first one replays again
    assert stats(s)["mem_pattern"]["replays"] == 2


def test_cupy_global_allocator_is_untouched():
    import cupy
    s = session()
    allocator = cupy.cuda.get_allocator()
    check(s, 64, 64)
    assert cupy.cuda.get_allocator() == allocator
    n = stats(s)["num_allocs"]
    outside = cupy.ones((1024, 1024), dtype=cupy.float32)      # not inside a run: CuPy's own pool
    assert stats(s)["num_allocs"] == n
    del outside


def test_a_device_array_kept_after_the_run_context_returns_to_the_arena_when_dropped():
    import cupy
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider
    p = CUDAExecutionProvider(dict(gs.CUDA_OPTIONS))
    with p.run_context():
        kept = cupy.ones(MiB, dtype=cupy.float32)
        view = kept[::2]
    assert p.memory_stats()["bytes_in_use"] >= 4 * MiB
    del kept
    assert p.memory_stats()["bytes_in_use"] >= 4 * MiB         # the view still holds it
    assert float(view.sum()) == MiB / 2
    del view
    assert p.memory_stats()["bytes_in_use"] == 0


def test_pinned_staging_round_trips_and_reuses_buffers():
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider
    p = CUDAExecutionProvider(dict(gs.CUDA_OPTIONS))
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 33)).astype(np.float32) for n in (1, 100, 5000)]
    arrays.append(np.arange(10, dtype=np.int64))
    arrays.append(np.array([True, False]))
    outs = []
    for x in arrays * 3:
        with p.run_context():
            y = p.to_host(p.from_host(x))
        np.testing.assert_array_equal(y, x)
        outs.append(y)
    for x, y in zip(arrays * 3, outs):                 # earlier results were not overwritten
        np.testing.assert_array_equal(y, x)
    st = p.memory_stats()["staging"]
    assert st["allocations"] >= 1 and st["reuses"] >= 1 and st["fallbacks"] == 0


def test_two_sessions_share_the_device_concurrently():
    small, big = session(), session(gpu_mem_limit=512 * MiB)
    errors = []

    def work(s, n, m, seed):
        try:
            for i in range(20):
                check(s, n, m, seed + i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(small, 64, 128, 0)),
               threading.Thread(target=work, args=(big, 1024, 2048, 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    a, b = stats(small), stats(big)
    assert a["max_bytes_in_use"] < b["max_bytes_in_use"]      # separate arenas, separate counters
    assert b["bytes_limit"] == 512 * MiB and a["bytes_limit"] == 2 ** 64 - 1


def test_one_session_run_from_two_threads():
    s = session()
    errors = []

    def work(seed):
        try:
            for i in range(20):
                check(s, 200, 300, seed + i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stats(s)["mem_pattern"]["replays"] >= 1
