"""The arena's policy (best fit, split, coalesce, extend strategies, limit, pressure, stats) on a
host backend whose addresses are plain integers; invariants are recomputed from the blocks."""
import random
import threading

import pytest

from ortgpu.errors import RuntimeException
from ortgpu.memory import Arena, ArenaOutOfMemory, HostBackend

MiB = 1 << 20


def arena(limit=1 << 40, strategy="kSameAsRequested", backend=None, **kw):
    return Arena(backend or HostBackend(), limit=limit, extend_strategy=strategy, **kw)


def check_invariants(a: Arena, live: list, backend: HostBackend | None = None):
    """Recompute what the arena reports from its blocks and the live leases."""
    blocks = a.blocks()
    regions = {}
    for b in blocks:
        regions.setdefault(id(b.region), []).append(b)
    for bs in regions.values():
        r = bs[0].region
        assert bs[0].ptr == r.ptr and sum(b.size for b in bs) == r.size        # blocks tile the region
        for left, right in zip(bs, bs[1:]):
            assert left.ptr + left.size == right.ptr
            assert not (left.free and right.free), "free neighbours were not merged"
    used = [b for b in blocks if not b.free]
    assert {id(b) for b in used} == {id(b) for b in live}
    spans = sorted((b.ptr, b.ptr + b.size) for b in live)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert e0 <= s1, "two live blocks overlap"
    for b in live:
        assert b.size >= b.requested and b.ptr % a.alignment == 0
    s = a.stats()
    assert s.bytes_in_use == sum(b.size for b in live)
    assert s.bytes_reserved == sum(bs[0].region.size for bs in regions.values()) <= s.bytes_limit
    assert s.largest_free_block == max((b.size for b in blocks if b.free), default=0)
    assert s.num_regions == len(regions)
    if backend is not None:
        assert backend.outstanding == s.bytes_reserved


def test_best_fit_takes_the_smallest_hole_that_fits():
    a = arena()
    region = a.allocate(10 * 4096)
    region.release()                      # one free region of 40 KiB to carve
    blocks = [a.allocate(n * 1024) for n in (4, 1, 8, 1, 2, 1, 24 - 4)]
    blocks[0].release()                   # a 4 KiB hole
    blocks[2].release()                   # an 8 KiB hole
    blocks[4].release()                   # a 2 KiB hole
    hole_2k, hole_8k = blocks[4].ptr, blocks[2].ptr
    got = a.allocate(1500)
    assert got.ptr == hole_2k and got.size == 1536
    got2 = a.allocate(5000)               # only the 8 KiB hole fits
    assert got2.ptr == hole_8k
    assert a.stats().num_regions == 1
    check_invariants(a, [got, got2, blocks[1], blocks[3], blocks[5], blocks[6]])


def test_split_and_coalesce_restore_one_free_block_per_region():
    a = arena(strategy="kNextPowerOfTwo")
    live = [a.allocate(n) for n in (100, 5000, 70000, 300, 256, 1)]
    check_invariants(a, live)
    released = set()
    for i in (1, 3, 0, 5, 2, 4):          # release in an order that merges left, right and both
        live[i].release()
        released.add(i)
        check_invariants(a, [b for j, b in enumerate(live) if j not in released])
    blocks = a.blocks()
    assert all(b.free for b in blocks)
    assert len(blocks) == a.stats().num_regions == 1
    assert blocks[0].size == MiB and a.stats().bytes_in_use == 0


def test_same_as_requested_reserves_exactly_the_request():
    be = HostBackend()
    a = arena(backend=be)
    sizes = [1000, 3 * MiB + 7, 256]
    blocks = [a.allocate(n) for n in sizes]
    assert [b.region.size for b in blocks] == [1024, 3 * MiB + 256, 256]
    assert a.stats().num_reserves == be.num_mallocs == 3
    check_invariants(a, blocks, be)


def test_next_power_of_two_doubles_the_growth_and_covers_big_requests():
    be = HostBackend()
    a = arena(backend=be, strategy="kNextPowerOfTwo")
    held = [a.allocate(MiB)]                      # region 1 MiB, full
    held.append(a.allocate(MiB))                  # region 2 MiB (half used)
    held.append(a.allocate(MiB))                  # fits the 2 MiB region
    held.append(a.allocate(MiB))                  # region 4 MiB
    held.append(a.allocate(10 * MiB))             # bigger than the growth (8 MiB): 10 MiB
    held.append(a.allocate(MiB))                  # fits the 4 MiB region
    regions = sorted({id(b.region): b.region.size for b in held}.values())
    assert regions == [MiB, 2 * MiB, 4 * MiB, 10 * MiB]
    check_invariants(a, held, be)


def test_limit_refusal_names_request_limit_and_use_and_changes_nothing():
    a = arena(limit=8 * MiB, name="CUDA arena (device 0)")
    held = [a.allocate(3 * MiB), a.allocate(3 * MiB)]
    before = a.stats()
    with pytest.raises(ArenaOutOfMemory) as info:
        a.allocate(5 * MiB)
    err = info.value
    assert isinstance(err, RuntimeException) and isinstance(err, Exception)
    text = str(err)
    assert text.startswith("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA arena (device 0): "
                           "Failed to allocate memory for requested buffer of size 5242880")
    assert f"limit (gpu_mem_limit): {8 * MiB} bytes" in text and f"in use: {6 * MiB} bytes" in text
    assert (err.requested, err.limit, err.in_use, err.reserved) == (5 * MiB, 8 * MiB, 6 * MiB, 6 * MiB)
    after = a.stats()
    assert after == before
    small = a.allocate(2 * MiB)                   # the arena still serves what fits
    check_invariants(a, held + [small])
    with pytest.raises(ArenaOutOfMemory):
        a.allocate(1)                             # now exactly full


def test_region_is_clipped_to_the_room_left_under_the_limit():
    a = arena(limit=3 * MiB, strategy="kNextPowerOfTwo", initial_region=2 * MiB)
    first = a.allocate(3 * MiB // 2)
    assert first.region.size == 2 * MiB
    second = a.allocate(MiB)                      # the growth is 4 MiB, the room 1 MiB
    assert second.region.size == MiB and a.stats().bytes_reserved == 3 * MiB
    check_invariants(a, [first, second])


def test_refusal_returns_free_regions_then_fits_a_bigger_request():
    be = HostBackend()
    a = arena(limit=4 * MiB, backend=be)
    blocks = [a.allocate(MiB) for _ in range(4)]
    for b in blocks:
        b.release()
    assert a.stats().bytes_reserved == 4 * MiB
    big = a.allocate(3 * MiB)                     # no free block fits and no room: shrink, retry
    s = a.stats()
    assert s.num_shrinks == 4 and s.bytes_reserved == 3 * MiB and s.num_reserves == 5
    check_invariants(a, [big], be)


def test_pressure_callbacks_run_before_a_refusal():
    a = arena(limit=4 * MiB)
    cached = [a.allocate(2 * MiB)]
    calls = []

    def drop_cache():
        calls.append(1)
        freed = bool(cached)
        while cached:
            cached.pop().release()
        return freed
    a.add_pressure_callback(drop_cache)
    other = a.allocate(MiB)
    assert calls == []                            # no pressure yet
    big = a.allocate(2 * MiB + 256)               # needs the cached block's region back
    assert calls == [1]
    check_invariants(a, [other, big])
    with pytest.raises(ArenaOutOfMemory):
        a.allocate(4 * MiB)
    assert calls == [1, 1]


def test_a_device_that_refuses_gets_asked_for_the_bare_request():
    be = HostBackend(capacity=3 * MiB)            # the "device" is smaller than the limit
    a = arena(backend=be, strategy="kNextPowerOfTwo", initial_region=4 * MiB)
    b = a.allocate(MiB)                           # 4 MiB refused, 1 MiB granted
    assert b.region.size == MiB
    with pytest.raises(ArenaOutOfMemory, match="the device refused a region of 3145728 bytes"):
        a.allocate(3 * MiB)
    check_invariants(a, [b], be)


def test_double_release_and_foreign_blocks_are_errors():
    a, other = arena(), arena()
    b = a.allocate(100)
    b.release()
    with pytest.raises(RuntimeError, match="not allocated here"):
        b.release()
    c = other.allocate(100)
    with pytest.raises(RuntimeError, match="not allocated here"):
        a.release(c)
    with pytest.raises(ValueError):
        a.allocate(-1)
    with pytest.raises(ValueError, match="arena_extend_strategy"):
        Arena(HostBackend(), extend_strategy="kDouble")


@pytest.mark.parametrize("strategy", ["kNextPowerOfTwo", "kSameAsRequested"])
@pytest.mark.parametrize("seed", range(4))
def test_random_alloc_free_sequences_keep_every_invariant(strategy, seed):
    rng = random.Random(seed)
    be = HostBackend()
    a = arena(limit=64 * MiB, strategy=strategy, backend=be)
    live, peak = [], 0
    for step in range(600):
        if live and (rng.random() < 0.45 or a.stats().bytes_in_use > 48 * MiB):
            live.pop(rng.randrange(len(live))).release()
        else:
            n = rng.choice([rng.randrange(1, 4096), rng.randrange(4096, 1 << 18), rng.randrange(1 << 18, 4 * MiB)])
            try:
                live.append(a.allocate(n))
            except ArenaOutOfMemory as e:
                assert e.requested == n and e.reserved <= 64 * MiB
        peak = max(peak, sum(b.size for b in live))
        if step % 25 == 0:
            check_invariants(a, live, be)
        if step % 200 == 199:
            a.shrink()
    check_invariants(a, live, be)
    s = a.stats()
    assert s.max_bytes_in_use == peak
    assert s.num_allocs - s.num_frees == len(live)
    for b in live:
        b.release()
    a.shrink()
    assert a.stats().bytes_reserved == 0 and be.outstanding == 0 and be.num_frees == be.num_mallocs


def test_a_release_inside_the_critical_section_is_deferred_not_lost():
    a = arena()
    b, c = a.allocate(1000), a.allocate(1000)
    with a._lock:                                 # as when a finalizer runs during an allocation
        b.release()
        assert a._in_use == 2048                  # not applied mid-update
    assert a.stats().bytes_in_use == 1024
    check_invariants(a, [c])


def test_threads_allocating_and_releasing_concurrently():
    be = HostBackend()
    a = arena(strategy="kNextPowerOfTwo", backend=be)
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        mine = []
        try:
            for _ in range(400):
                if mine and rng.random() < 0.5:
                    mine.pop(rng.randrange(len(mine))).release()
                else:
                    mine.append(a.allocate(rng.randrange(1, 200_000)))
            for b in mine:
                b.release()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check_invariants(a, [], be)
    s = a.stats()
    assert s.bytes_in_use == 0 and s.num_allocs == s.num_frees > 0
