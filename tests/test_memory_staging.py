"""The pinned staging pool's logic on host memory: size classes, reuse only after a copy's fence
completed, the byte cap (wait, trim, fall back), and result views that return their buffer."""
import gc

import numpy as np
import pytest

from ortgpu.memory import HostBackend, StagingPool

KiB = 1024


class Fence:
    """Stands in for a CUDA event recorded after an asynchronous copy."""

    def __init__(self, done=False):
        self.done = done
        self.waited = False

    def synchronize(self):
        self.waited = True
        self.done = True


def pool(**kw):
    return StagingPool(HostBackend(materialize=True), **kw)


def test_size_classes_are_powers_of_two_from_the_minimum():
    p = pool(min_size=64 * KiB)
    assert [p.size_class(n) for n in (0, 1, 64 * KiB, 64 * KiB + 1, 1000 * KiB)] == \
        [64 * KiB, 64 * KiB, 64 * KiB, 128 * KiB, 1024 * KiB]


def test_a_buffer_is_reused_only_once_its_copy_completed():
    p = pool()
    a = p.acquire(1000)
    fence = Fence()
    p.release(a, fence)
    b = p.acquire(2000)                      # same class, but a's copy is still in flight
    assert b is not a
    fence.done = True
    c = p.acquire(3000)
    assert c is a and c.fence is None
    s = p.stats()
    assert s["allocations"] == 2 and s["reuses"] == 1 and s["bytes_held"] == 2 * 64 * KiB


def test_over_the_cap_it_waits_for_a_busy_buffer_of_the_class():
    p = pool(max_bytes=64 * KiB)
    a = p.acquire(10)
    fence = Fence()
    p.release(a, fence)
    b = p.acquire(10)
    assert b is a and fence.waited and p.stats()["waits"] == 1


def test_over_the_cap_it_trims_other_classes_then_falls_back():
    be = HostBackend(materialize=True)
    p = StagingPool(be, max_bytes=192 * KiB)
    small = p.acquire(10)
    p.release(small)                         # idle 64 KiB buffer
    big = p.acquire(100 * KiB)               # 128 KiB: fits beside it (192 KiB)
    other = p.acquire(100 * KiB)             # a second 128 KiB: trims the idle 64 KiB, still no room
    assert other is None and p.stats()["fallbacks"] == 1 and be.num_frees == 1
    p.release(big)
    again = p.acquire(100 * KiB)
    assert again is big


def test_a_backend_refusal_is_a_fallback():
    p = StagingPool(HostBackend(capacity=10 * KiB))
    assert p.acquire(1) is None and p.stats()["fallbacks"] == 1 and p.stats()["bytes_held"] == 0


def test_host_view_holds_the_buffer_until_the_result_is_gone():
    p = pool()
    buf = p.acquire(24)
    data = np.arange(6, dtype=np.float32)
    p.bytes_view(buf, data.nbytes)[:] = data.view(np.uint8)   # as the device copy would write it
    out = p.host_view(buf, np.float32, (2, 3))
    np.testing.assert_array_equal(out, data.reshape(2, 3))
    assert out.flags.writeable and out.ctypes.data == buf.ptr
    view = out[1]
    del out
    gc.collect()
    assert p.stats()["free_buffers"] == 0    # a view still reads the buffer
    np.testing.assert_array_equal(view, [3, 4, 5])
    del view
    gc.collect()
    assert p.stats()["free_buffers"] == 1
    assert p.acquire(8) is buf


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.float16, np.int64, np.complex64])
def test_host_views_of_every_dtype(dtype):
    p = pool()
    src = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    buf = p.acquire(src.nbytes)
    p.bytes_view(buf, src.nbytes)[:] = src.reshape(-1).view(np.uint8)
    out = p.host_view(buf, src.dtype, src.shape)
    assert out.dtype == src.dtype and out.shape == src.shape
    np.testing.assert_array_equal(out, src)


def test_trim_frees_idle_buffers_only():
    be = HostBackend(materialize=True)
    p = StagingPool(be)
    a, b = p.acquire(10), p.acquire(10)
    p.release(a)
    p.release(b, Fence(done=False))
    assert p.trim() == 64 * KiB and be.num_frees == 1
    assert p.stats()["bytes_held"] == 64 * KiB and p.stats()["free_buffers"] == 1


def test_copies_larger_than_the_biggest_buffer_are_not_staged():
    be = HostBackend(materialize=True)
    p = StagingPool(be, max_buffer=256 * KiB)
    assert p.acquire(256 * KiB) is not None
    assert p.acquire(256 * KiB + 1) is None
    assert p.stats()["too_large"] == 1 and be.num_mallocs == 1
