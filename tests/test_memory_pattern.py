"""Memory patterns on a host-backed arena: record a run's allocations, replay later runs from one
block without touching the arena, fall back safely when a run diverges.  Runs are simulated as
programs of allocations and releases; overlaps are checked here against the live leases."""
import threading

import numpy as np
import pytest

from ortgpu.memory import Arena, DeviceMemory, HostBackend, PatternCache, pattern_key

KiB = 1024

# a small network's allocation program: ("a", name, bytes) allocates, ("f", name) releases
NET = [("a", "x", 64 * KiB), ("a", "h1", 256 * KiB), ("f", "x"), ("a", "h2", 256 * KiB), ("f", "h1"),
       ("a", "tmp", 4 * KiB), ("f", "tmp"), ("a", "h3", 128 * KiB), ("f", "h2"), ("a", "y", 16 * KiB),
       ("f", "h3"), ("f", "y")]


class Run:
    """Executes a program against an allocation source, checking that live leases never overlap."""

    def __init__(self, source):
        self.source = source
        self.live = {}
        self.leases = {}

    def alloc(self, name, size):
        lease = self.source.allocate(size)
        assert lease.size >= size
        for other_name, other in self.live.items():
            assert lease.ptr + lease.size <= other.ptr or other.ptr + other.size <= lease.ptr, \
                f"{name} overlaps live {other_name}"
        self.live[name] = self.leases[name] = lease
        return lease

    def free(self, name):
        self.live.pop(name).release()

    def play(self, program):
        for ev in program:
            if ev[0] == "a":
                self.alloc(ev[1], ev[2])
            else:
                self.free(ev[1])
        return self


def run(memory: DeviceMemory, key, program, ok=True):
    with memory.run(key) as source:
        r = Run(source).play(program)
        if not ok:
            raise_in_run()
    return r


def raise_in_run():
    raise RuntimeError("the run failed")


def memory(**kw):
    return DeviceMemory(HostBackend(), extend_strategy="kSameAsRequested", **kw)


def in_block(mem: DeviceMemory, lease) -> bool:
    p = next(iter(mem.patterns._patterns.values()))
    return p.block.ptr <= lease.ptr and lease.ptr + lease.size <= p.block.ptr + p.block.size


def test_second_run_is_served_from_the_block_without_arena_allocations():
    mem = memory()
    key = ("float32", (1, 3))
    first = run(mem, key, NET)
    assert not any(in_block(mem, lease) for lease in first.leases.values())
    after_first = mem.arena.stats()
    p = mem.patterns._patterns[key]
    assert p.plan.peak == p.plan.lower_bound == 512 * KiB < p.plan.naive_sum
    for _ in range(3):
        replay = run(mem, key, NET)
        assert all(in_block(mem, lease) for lease in replay.leases.values())
        s = mem.arena.stats()
        assert s.num_allocs == after_first.num_allocs and s.bytes_in_use == p.plan.peak
    # the same program always lands at the same planned addresses (what CUDA graphs need)
    again = run(mem, key, NET)
    assert {n: lease.ptr for n, lease in again.leases.items()} == {n: lease.ptr for n, lease in replay.leases.items()}
    stats = mem.stats()["mem_pattern"]
    assert stats["recordings"] == 1 and stats["replays"] == 4 and stats["replay_misses"] == 0
    assert stats["replay_hits"] == 4 * 6 and stats["last_plan"]["peak"] == 512 * KiB


def test_runs_without_a_key_use_the_arena():
    mem = memory()
    run(mem, None, NET)
    run(mem, None, NET)
    assert mem.stats()["mem_pattern"]["recordings"] == 0
    assert mem.arena.stats().num_allocs == 2 * 6


def test_an_allocation_that_outlives_the_run_is_left_to_the_arena():
    mem = memory()
    program = NET[:-1]                       # y stays alive (an output left on the device)
    first = run(mem, "k", program)
    y1 = first.live.pop("y")
    before = mem.arena.stats().num_allocs
    second = run(mem, "k", program)
    y2 = second.live.pop("y")
    assert not in_block(mem, y2) and mem.arena.stats().num_allocs == before + 1
    assert all(in_block(mem, second.leases[n]) for n in ("x", "h1", "h2", "h3", "tmp"))
    assert mem.stats()["mem_pattern"]["diverged_replays"] == 0
    y1.release()
    y2.release()


def test_a_diverging_run_is_safe_and_is_recorded_again():
    mem = memory()
    run(mem, "k", NET)
    bigger = [ev if ev[0] == "f" or ev[1] != "h2" else ("a", "h2", 300 * KiB) for ev in NET]
    replay = run(mem, "k", bigger)           # h2 has no match: the arena serves it
    assert not in_block(mem, replay.leases["h2"]) and in_block(mem, replay.leases["h1"])
    s = mem.stats()["mem_pattern"]
    assert s["replay_misses"] >= 1 and s["diverged_replays"] == 1
    run(mem, "k", bigger)                    # recorded again for the new sequence
    final = run(mem, "k", bigger)
    assert all(in_block(mem, lease) for lease in final.leases.values())
    assert mem.stats()["mem_pattern"]["recordings"] == 2


def test_a_release_later_than_recorded_makes_the_replay_fall_back_not_overlap():
    mem = memory()
    run(mem, "k", NET)
    late = [ev for ev in NET if ev != ("f", "h1")]
    late.insert(late.index(("a", "y", 16 * KiB)), ("f", "h1"))   # h1 lives past h3's allocation
    r = run(mem, "k", late)                  # Run() asserts that no two live leases overlap
    assert mem.stats()["mem_pattern"]["replay_misses"] >= 1
    assert mem.arena.stats().bytes_in_use == mem.patterns.stats()["bytes_in_blocks"]
    assert r.live == {}


def test_a_signature_that_never_repeats_its_sequence_is_given_up():
    mem = memory()
    sizes = iter(range(1, 100))
    for _ in range(7):                       # record, diverge, record, diverge, record, diverge, give up
        n = next(sizes) * KiB
        run(mem, "k", [("a", "a", n), ("a", "b", 2 * n), ("f", "a"), ("f", "b")])
    s = mem.stats()["mem_pattern"]
    assert s["recordings"] == 3 and s["signatures_given_up"] == 1 and s["patterns"] == 0


def test_a_failed_recording_leaves_no_pattern():
    mem = memory()
    with pytest.raises(RuntimeError, match="the run failed"):
        run(mem, "k", NET, ok=False)
    assert mem.stats()["mem_pattern"]["patterns"] == 0
    run(mem, "k", NET)
    assert mem.stats()["mem_pattern"]["patterns"] == 1


def test_a_concurrent_run_of_the_same_signature_uses_the_arena():
    mem = memory()
    run(mem, "k", NET)
    with mem.run("k") as a, mem.run("k") as b:
        ra, rb = Run(a).play(NET), Run(b).play(NET)
    assert all(in_block(mem, lease) for lease in ra.leases.values())
    assert not any(in_block(mem, lease) for lease in rb.leases.values())
    assert mem.stats()["mem_pattern"]["concurrent_runs"] == 1


class SharedRun(Run):
    """A Run that also checks its leases against those of every other thread's runs."""

    ranges: list = []
    lock = threading.Lock()

    def alloc(self, name, size):
        lease = super().alloc(name, size)
        with self.lock:
            for other in self.ranges:
                assert lease.ptr + lease.size <= other.ptr or other.ptr + other.size <= lease.ptr
            self.ranges.append(lease)
        return lease

    def free(self, name):
        with self.lock:
            self.ranges.remove(self.live[name])
        super().free(name)


def test_threads_replaying_at_once_never_share_bytes():
    mem = memory()
    run(mem, "k", NET)
    errors = []

    def worker():
        try:
            for _ in range(30):
                with mem.run("k") as source:
                    SharedRun(source).play(NET)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and SharedRun.ranges == []
    assert mem.arena.stats().bytes_in_use == mem.patterns.stats()["bytes_in_blocks"]
    assert mem.stats()["mem_pattern"]["replays"] >= 1


def test_least_recently_used_patterns_go_and_their_blocks_return_when_idle():
    mem = memory()
    for i in range(4):
        run(mem, i, NET)
    held = Run(mem.patterns.begin(0))        # a replay of pattern 0 holds its block...
    held.alloc("x", 64 * KiB)
    for i in range(1, 4):
        run(mem, i, NET)                     # ...while 1, 2, 3 are used again
    run(mem, 4, NET)                         # a fifth signature evicts pattern 0 (least recent)
    assert 0 not in mem.patterns._patterns and len(mem.patterns._patterns) == 4
    blocks = mem.patterns.stats()["bytes_in_blocks"]
    assert mem.arena.stats().bytes_in_use == blocks + 512 * KiB     # pattern 0's block still lent
    mem.patterns.finish(held.source, True)
    assert mem.arena.stats().bytes_in_use == blocks + 512 * KiB     # its slice x is alive
    held.free("x")
    assert mem.arena.stats().bytes_in_use == blocks                 # now it went back


def test_memory_pressure_drops_idle_patterns():
    mem = memory(limit=1024 * KiB)
    run(mem, "k", NET)                       # peak 512 KiB held by the pattern
    mem.arena.shrink()
    big = mem.arena.allocate(900 * KiB)      # only fits once the pattern's block is gone
    s = mem.stats()
    assert s["mem_pattern"]["patterns"] == 0 and s["mem_pattern"]["dropped_under_pressure"] == 1
    big.release()


def test_no_block_without_room_then_the_arena_serves():
    mem = memory(limit=520 * KiB)
    first = run(mem, "k", NET[:-1])          # peaks at 512 KiB and keeps y (16 KiB): no room for
    assert mem.stats()["mem_pattern"]["patterns"] == 0          # a 512 KiB block besides y
    assert mem.stats()["mem_pattern"]["no_room_for_block"] == 1
    first.free("y")
    run(mem, "k", NET)                       # recorded again, and now the block fits
    assert mem.stats()["mem_pattern"]["patterns"] == 1


def test_pattern_cache_on_its_own_arena():
    a = Arena(HostBackend())
    cache = PatternCache(a, capacity=1)
    src = cache.begin("k")
    Run(src).play(NET)
    cache.finish(src, True)
    src = cache.begin("j")
    Run(src).play(NET)
    cache.finish(src, True)
    assert list(cache._patterns) == ["j"]
    assert a.stats().bytes_in_use == 512 * KiB


def test_pattern_key():
    x = np.zeros((2, 3), np.float32)
    assert pattern_key([x]) == (("float32", (2, 3)),)
    assert pattern_key([x]) == pattern_key([np.ones((2, 3), np.float32)])
    assert pattern_key([x]) != pattern_key([np.zeros((3, 2), np.float32)])
    assert pattern_key([x]) != pattern_key([x.astype(np.float16)])
    # small integer inputs are shape-like: their values count, large ones do not
    assert pattern_key([np.array([1, 2])]) != pattern_key([np.array([1, 3])])
    big = np.zeros(100, np.int64)
    assert pattern_key([big]) == pattern_key([big + 1])
    assert pattern_key([None, [x, x]]) == (None, ("seq", (("float32", (2, 3)),) * 2))
    assert pattern_key([{"a": 1}]) is None
