"""Memory patterns (``SessionOptions.enable_mem_pattern``): record a run's allocations once,
plan them into one block, serve later runs of the same input signature from that block.

A run with a signature (``pattern_key`` of its inputs) asks ``PatternCache.begin`` for its
allocation source and hands it back to ``finish`` when the run ends:

* the first run of a signature is *recorded*: it allocates from the arena and notes, per
  allocation, its (aligned) size and the events at which it was made and released;
* at the end of a successful recorded run, the allocations released within the run become
  ``Interval``s, memory/planner.py gives them offsets, and one block of the plan's peak is
  taken from the arena and kept with the pattern.  Allocations still alive at the end (outputs
  left on the device, caches) are marked to be served by the arena;
* later runs *replay*: the k-th request is matched with the recorded sequence (the next
  recorded allocation of the same size within a window of 16, skipping recorded allocations
  that did not recur) and served from the block at its planned offset, **if that range of the
  block is free right now**.  Anything else goes to the arena.  So a replay is always safe;
  a replay that missed, or skipped a planned allocation, marks the pattern stale and the next
  run of the signature records again (at most 3 recordings per signature, then the arena).

A block serves one run at a time: a concurrent run of the same signature uses the arena.  The
cache keeps ``capacity`` patterns (least recently used first out); a pattern's block goes back
to the arena when the pattern is dropped and none of its slices is alive.  Under memory
pressure the arena calls ``release_idle`` (idle patterns are dropped).

Lock order: this cache's lock may be held while calling the arena, never the reverse.
"""
from __future__ import annotations

import bisect
import collections

import numpy as np

from ortgpu.memory.arena import ArenaOutOfMemory, round_up
from ortgpu.memory.locking import DeferringLock
from ortgpu.memory.planner import Interval, MemoryPlan, plan_offsets

MATCH_WINDOW = 16
SMALL_INT_VALUES = 16   # integer inputs up to this many elements put their values in the key


def pattern_key(inputs) -> tuple | None:
    """A hashable signature of a run's inputs: dtype and shape of each tensor, plus the values
    of small integer tensors (shape-like inputs decide allocation sizes); None for an input
    with no signature (a map), which turns patterns off for that run."""
    key = []
    for v in inputs:
        if v is None:
            key.append(None)
        elif isinstance(v, list):
            sub = pattern_key(v)
            if sub is None:
                return None
            key.append(("seq", sub))
        elif hasattr(v, "shape") and hasattr(v, "dtype"):
            entry = (str(v.dtype), tuple(v.shape))
            if v.dtype.kind in "iub" and v.size <= SMALL_INT_VALUES and isinstance(v, (np.ndarray, np.generic)):
                entry += (np.asarray(v).tobytes(),)
            key.append(entry)
        else:
            return None
    return tuple(key)


class _Pattern:
    """A planned allocation sequence and its block (state guarded by the cache's lock)."""

    def __init__(self, key, sizes, offsets, plan: MemoryPlan, block):
        self.key = key
        self.sizes = sizes          # aligned size of each recorded allocation
        self.offsets = offsets      # offset in the block, or None: served by the arena
        self.plan = plan
        self.block = block          # arena Block of plan.peak bytes
        self.busy = False           # a replay is using the block
        self.stale = False          # a replay diverged: record again
        self.retired = False        # dropped from the cache: free the block when idle
        self.live: list[tuple[int, int]] = []   # (start, end) of live slices, sorted

    def idle(self) -> bool:
        return not self.busy and not self.live

    def range_free(self, start: int, size: int) -> bool:
        """No live slice overlaps [start, start + size) (live slices never overlap each other,
        so sorted by start their ends grow too: the neighbours decide)."""
        i = bisect.bisect_left(self.live, (start, start))
        if i > 0 and self.live[i - 1][1] > start:
            return False
        return i == len(self.live) or self.live[i][0] >= start + size


class _Slice:
    """A lease on part of a pattern's block (same interface as an arena Block)."""

    __slots__ = ("cache", "pattern", "offset", "size", "requested", "ptr", "owner")

    def __init__(self, cache, pattern, offset, size, requested):
        self.cache, self.pattern, self.offset, self.size, self.requested = cache, pattern, offset, size, requested
        self.ptr = pattern.block.ptr + offset
        self.owner = pattern.block.owner

    def release(self) -> None:
        self.cache._lock.call(self.cache._free_slice, self)


class _Traced:
    """An arena block handed out during a recording; its release is noted in the recording."""

    __slots__ = ("block", "recording", "index")

    def __init__(self, block, recording, index):
        self.block, self.recording, self.index = block, recording, index

    ptr = property(lambda self: self.block.ptr)
    size = property(lambda self: self.block.size)
    requested = property(lambda self: self.block.requested)
    owner = property(lambda self: self.block.owner)

    def release(self) -> None:
        self.recording.cache._lock.call(self.recording.note_free, self.index)
        self.block.release()


class _Recording:
    """Allocation source of a recorded run: the arena, with every allocation noted."""

    def __init__(self, cache, key):
        self.cache, self.key = cache, key
        self.sizes: list[int] = []
        self.born: list[int] = []
        self.died: list[int | None] = []
        self.events = 0
        self.open = True

    def allocate(self, nbytes: int):
        block = self.cache.arena.allocate(nbytes)
        with self.cache._lock:
            index = len(self.sizes)
            self.sizes.append(block.size)
            self.born.append(self.events)
            self.died.append(None)
            self.events += 1
        return _Traced(block, self, index)

    def note_free(self, index: int) -> None:
        if self.open and self.died[index] is None:
            self.died[index] = self.events
            self.events += 1


class _Replay:
    """Allocation source of a replayed run (see the module docstring for the matching)."""

    def __init__(self, cache, pattern: _Pattern):
        self.cache, self.pattern = cache, pattern
        self.cursor = 0
        self.hits = self.misses = 0
        self.diverged = False

    def allocate(self, nbytes: int):
        with self.cache._lock:
            lease = self._serve(round_up(max(int(nbytes), 1), self.cache.arena.alignment), nbytes)
        return lease if lease is not None else self.cache.arena.allocate(nbytes)

    def _serve(self, size: int, nbytes: int):
        p = self.pattern
        end = min(len(p.sizes), self.cursor + MATCH_WINDOW)
        j = self.cursor
        while j < end and p.sizes[j] != size:
            j += 1
        if j == end:
            self.misses += 1
            self.diverged = True
            return None
        if any(p.offsets[k] is not None for k in range(self.cursor, j)):
            self.diverged = True   # a planned allocation did not recur
        self.cursor = j + 1
        offset = p.offsets[j]
        if offset is None:
            return None            # it outlived the recorded run: the arena serves it
        if not p.range_free(offset, size):
            self.misses += 1
            self.diverged = True
            return None
        bisect.insort(p.live, (offset, offset + size))
        self.hits += 1
        return _Slice(self.cache, p, offset, size, nbytes)

    def finished(self) -> None:
        p = self.pattern
        if any(o is not None for o in p.offsets[self.cursor:]):
            self.diverged = True   # the run made fewer planned allocations than recorded


class PatternCache:
    """Patterns of one arena, by input signature (see the module docstring)."""

    def __init__(self, arena, *, capacity: int = 4, max_recordings: int = 3):
        self.arena = arena
        self.capacity = capacity
        self.max_recordings = max_recordings
        self._patterns: collections.OrderedDict = collections.OrderedDict()
        self._recording: set = set()        # keys being recorded now
        self._recordings: collections.Counter = collections.Counter()
        self._given_up: set = set()
        self._lock = DeferringLock()
        self._counts = collections.Counter()
        self._last_plan: MemoryPlan | None = None
        arena.add_pressure_callback(self.release_idle)

    def begin(self, key):
        """The allocation source for a run with signature ``key`` (None: the arena)."""
        if key is None:
            return self.arena
        with self._lock:
            p = self._patterns.get(key)
            if p is not None:
                self._patterns.move_to_end(key)
                if not p.stale:
                    if not p.idle():
                        self._counts["concurrent_runs"] += 1
                        return self.arena
                    p.busy = True
                    return _Replay(self, p)
            if key in self._given_up or key in self._recording:
                return self.arena
            if self._recordings[key] >= self.max_recordings:
                self._given_up.add(key)
                self._drop(key)
                return self.arena
            self._recording.add(key)
            self._recordings[key] += 1
            return _Recording(self, key)

    def finish(self, source, ok: bool) -> None:
        """End of the run that used ``source``; ``ok`` is False when the run raised."""
        if isinstance(source, _Replay):
            source.finished()
            with self._lock:
                p = source.pattern
                p.busy = False
                self._counts["replays"] += 1
                self._counts["replay_hits"] += source.hits
                self._counts["replay_misses"] += source.misses
                if source.diverged and ok:
                    p.stale = True
                    self._counts["diverged_replays"] += 1
                self._release_if_retired(p)
        elif isinstance(source, _Recording):
            self._finish_recording(source, ok)

    def _finish_recording(self, rec: _Recording, ok: bool) -> None:
        with self._lock:
            rec.open = False
            self._recording.discard(rec.key)
            self._counts["recordings"] += 1
            sizes, born, died = list(rec.sizes), list(rec.born), list(rec.died)
        if not ok:
            return
        planned = [i for i, d in enumerate(died) if d is not None]
        if not planned:
            with self._lock:
                self._given_up.add(rec.key)   # nothing to plan: every allocation outlives the run
            return
        plan = plan_offsets([Interval(sizes[i], born[i], died[i]) for i in planned], self.arena.alignment)
        try:
            block = self.arena.allocate(plan.peak)
        except ArenaOutOfMemory:
            self._counts["no_room_for_block"] += 1
            return
        offsets: list[int | None] = [None] * len(sizes)
        for i, off in zip(planned, plan.offsets):
            offsets[i] = off
        with self._lock:
            self._drop(rec.key)
            self._patterns[rec.key] = _Pattern(rec.key, tuple(sizes), tuple(offsets), plan, block)
            self._last_plan = plan
            while len(self._patterns) > self.capacity:
                self._drop(next(iter(self._patterns)))

    def _drop(self, key) -> None:
        """Forget a pattern (lock held); its block goes back when it is idle."""
        p = self._patterns.pop(key, None)
        if p is not None:
            p.retired = True
            self._release_if_retired(p)

    def _release_if_retired(self, p: _Pattern) -> None:
        if p.retired and p.idle() and p.block is not None:
            block, p.block = p.block, None
            block.release()

    def _free_slice(self, s: _Slice) -> None:
        p = s.pattern
        p.live.remove((s.offset, s.offset + s.size))
        self._release_if_retired(p)

    def release_idle(self) -> bool:
        """Drop every idle pattern (the arena's pressure callback); whether any was dropped."""
        with self._lock:
            idle = [k for k, p in self._patterns.items() if p.idle()]
            for k in idle:
                self._drop(k)
                self._counts["dropped_under_pressure"] += 1
            return bool(idle)

    def clear(self) -> None:
        with self._lock:
            for k in list(self._patterns):
                self._drop(k)

    def stats(self) -> dict:
        with self._lock:
            out = {"patterns": len(self._patterns),
                   "bytes_in_blocks": sum(p.plan.peak for p in self._patterns.values() if p.block is not None),
                   "signatures_given_up": len(self._given_up)}
            for name in ("recordings", "replays", "replay_hits", "replay_misses", "diverged_replays",
                         "concurrent_runs", "no_room_for_block", "dropped_under_pressure"):
                out[name] = self._counts[name]
            if self._last_plan is not None:
                plan = self._last_plan
                out["last_plan"] = {"peak": plan.peak, "lower_bound": plan.lower_bound,
                                    "naive_sum": plan.naive_sum, "tensors": len(plan.sizes)}
            return out
