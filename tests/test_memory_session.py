"""Sessions with device memory, on the CPU: the device double (tests/support/device_double.py) gets an
arena on a host backend, and every new buffer of a device array is allocated from the run's
allocation source and released when its last view dies, as CuPy's allocator hook does.  So the
session's pattern keys, the arena limit with its out-of-memory error and recovery, and a
replayed run that allocates nothing are exercised through real runs, checked against NumPy."""
from __future__ import annotations

import contextlib
import threading
import weakref

import numpy as np
import pytest

import ortgpu
from support.device_double import CheckedCPUExecutionProvider, FakeArray, FakeDeviceExecutionProvider
from support.memory_cases import chain_model
from ortgpu.errors import RuntimeException
from ortgpu.memory import DeviceMemory, HostBackend
from ortgpu.providers.cuda.provider import CUDAExecutionProvider

_current = threading.local()        # the allocation source of the run in progress on this thread


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class ArenaDevice(FakeDeviceExecutionProvider):
    """The device double with an arena: run_context routes new buffers to DeviceMemory.run's
    source, like CUDAExecutionProvider.run_context with cupy.cuda.using_allocator."""

    def __init__(self, **memory_options):
        super().__init__()
        self.memory = DeviceMemory(HostBackend(), name="double arena", **memory_options)
        self.keys = []

    @contextlib.contextmanager
    def run_context(self, pattern_key=None):
        self.keys.append(pattern_key)
        with self.memory.run(pattern_key) as source:
            previous = getattr(_current, "source", None)
            _current.source = source
            try:
                yield self
            finally:
                _current.source = previous

    def memory_stats(self):
        return self.memory.stats()


@pytest.fixture(autouse=True)
def allocating_fake_arrays(monkeypatch):
    """FakeArray buffers made during a run are allocated from the run's source and released when
    their root NumPy array is collected."""
    tracked: dict[int, weakref.ref] = {}
    original = FakeArray.__init__

    def init(self, a):
        original(self, a)
        source = getattr(_current, "source", None)
        root = _root(a)
        ref = tracked.get(id(root))
        if source is None or (ref is not None and ref() is root):
            return
        lease = source.allocate(root.nbytes)
        tracked[id(root)] = weakref.ref(root)
        weakref.finalize(root, lease.release).atexit = False
    monkeypatch.setattr(FakeArray, "__init__", init)


def session(device, pattern=True):
    so = ortgpu.SessionOptions()
    so.enable_mem_pattern = pattern
    # one node per step (no fused chain), so that a failure names the node that allocated
    return ortgpu.InferenceSession(chain_model(), so, providers=[device, CheckedCPUExecutionProvider()],
                                   disabled_optimizers=["ElementwiseChainFusion"])


def check(s, n, m, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, m)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], np.maximum(x - 2 / (1 + np.exp(-x)), 0),
                               rtol=1e-6, atol=1e-6)


def test_the_session_passes_the_input_signature_only_with_mem_pattern():
    on, off = ArenaDevice(), ArenaDevice()
    check(session(on), 3, 4)
    check(session(off, pattern=False), 3, 4)
    assert on.keys[-1] == (("float32", (3, 4)),) and off.keys[-1] is None
    assert on.keys[0] is None               # initializers copied at construction: no pattern


def test_a_replayed_run_allocates_nothing_from_the_arena():
    dev = ArenaDevice()
    s = session(dev)
    check(s, 64, 32)
    first = s.get_memory_stats()["FakeDeviceExecutionProvider"]
    assert first["mem_pattern"]["recordings"] == 1 and first["mem_pattern"]["patterns"] == 1
    for seed in (1, 2, 3):
        check(s, 64, 32, seed)
    st = s.get_memory_stats()["FakeDeviceExecutionProvider"]
    assert st["num_allocs"] == first["num_allocs"]
    mp = st["mem_pattern"]
    assert mp["replays"] == 3 and mp["replay_misses"] == 0 and mp["replay_hits"] >= 3 * 4
    plan = mp["last_plan"]
    assert plan["lower_bound"] <= plan["peak"] <= 1.1 * plan["lower_bound"] and plan["peak"] < plan["naive_sum"]
    check(s, 8, 8)                          # another signature is recorded ...
    check(s, 64, 32, 4)                     # ... and the first still replays
    assert s.get_memory_stats()["FakeDeviceExecutionProvider"]["mem_pattern"]["replays"] == 4


def test_without_patterns_every_run_uses_the_arena_and_leaks_nothing():
    dev = ArenaDevice()
    s = session(dev, pattern=False)
    idle = dev.memory_stats()
    check(s, 64, 32)
    check(s, 64, 32, 1)
    st = dev.memory_stats()
    assert st["bytes_in_use"] == idle["bytes_in_use"] and st["num_allocs"] > idle["num_allocs"]
    assert st["max_bytes_in_use"] >= 2 * 64 * 32 * 4     # x and an intermediate at least
    assert st["mem_pattern"]["recordings"] == 0


def test_out_of_memory_names_the_node_and_the_session_recovers():
    limit = 1 << 20
    dev = ArenaDevice(limit=limit)
    s = session(dev, pattern=False)
    check(s, 64, 64)                                       # 16 KiB tensors
    in_use = dev.memory_stats()["bytes_in_use"]
    with pytest.raises(RuntimeException) as info:
        check(s, 512, 320)                                 # fails inside Sigmoid: x and its
                                                           # output, 640 KiB each, do not fit
    text = str(info.value)
    assert "Non-zero status code returned while running Sigmoid node. Name:'sigmoid'" in text
    assert "Failed to allocate memory for requested buffer of size" in text
    assert f"limit (gpu_mem_limit): {limit} bytes" in text
    assert dev.memory_stats()["bytes_in_use"] == in_use   # the failed run's buffers went back,
    assert dev.memory_stats()["max_bytes_reserved"] <= limit   # although `info` still holds the error
    check(s, 64, 64, 1)
    check(s, 128, 256, 2)                                  # 128 KiB tensors fit


def test_out_of_memory_during_a_recording_leaves_no_pattern():
    dev = ArenaDevice(limit=1 << 20)
    s = session(dev)
    with pytest.raises(RuntimeException):
        check(s, 512, 512)
    assert dev.memory_stats()["mem_pattern"]["patterns"] == 0
    check(s, 64, 64)
    check(s, 64, 64)
    assert dev.memory_stats()["mem_pattern"]["replays"] == 1


def test_memory_stats_api():
    cpu = ortgpu.InferenceSession(chain_model(), providers=["CPUExecutionProvider"])
    assert cpu.get_memory_stats() == {}
    cuda = CUDAExecutionProvider({"gpu_mem_limit": "1048576", "arena_extend_strategy": "kSameAsRequested"},
                                 device_count=None)
    st = cuda.memory_stats()                               # no device needed to read them
    assert st["bytes_limit"] == 1 << 20 and st["bytes_in_use"] == 0 and st["num_allocs"] == 0
    assert cuda.memory.arena.strategy == "kSameAsRequested" and "device 0" in cuda.memory.arena.name
    assert {"max_bytes_in_use", "bytes_reserved", "largest_free_block", "mem_pattern", "staging"} <= set(st)
