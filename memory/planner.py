"""Static memory planning: offsets in one block for tensors whose lifetimes are known.

A tensor is an ``Interval``: its size in bytes and the first and last step (inclusive) at
which it is alive.  Two tensors alive at a common step must not overlap in the block; tensors
that never live together may share bytes.  ``plan_offsets`` places them greedily, largest
first (ties: earlier first step), each at the best-fitting gap between the tensors already
placed that it lives with, or above them when no gap fits: the "greedy by size" heuristic of
on-device inference engines.  The plan reports its peak (the block size) against two bounds:
the naive sum (no reuse) and the lower bound, the largest number of bytes alive at one step,
which no placement can beat.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ortgpu.memory.arena import round_up


@dataclasses.dataclass(frozen=True)
class Interval:
    """A tensor of ``size`` bytes alive from step ``first`` to step ``last`` (inclusive)."""

    size: int
    first: int
    last: int
    name: str = ""

    def __post_init__(self):
        if self.size < 0 or self.last < self.first:
            raise ValueError(f"bad interval {self!r}: needs size >= 0 and first <= last")


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Offsets (bytes from the start of the block), in the order the intervals were given."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]      # the intervals' sizes rounded up to the alignment
    peak: int                   # block size: max(offset + size)
    naive_sum: int              # sum of sizes: the block without any reuse
    lower_bound: int            # max over steps of the bytes alive at that step

    @property
    def peak_over_lower_bound(self) -> float:
        return self.peak / self.lower_bound if self.lower_bound else 1.0

    @property
    def reuse_saving(self) -> float:
        """Fraction of the naive sum that reuse saves."""
        return 1 - self.peak / self.naive_sum if self.naive_sum else 0.0


def lower_bound(intervals, alignment: int = 1) -> int:
    """The largest sum of (rounded) sizes alive at one step."""
    if not intervals:
        return 0
    firsts = np.array([iv.first for iv in intervals], dtype=np.int64)
    lasts = np.array([iv.last for iv in intervals], dtype=np.int64)
    sizes = np.array([round_up(iv.size, alignment) for iv in intervals], dtype=np.int64)
    base = int(firsts.min())
    delta = np.zeros(int(lasts.max()) - base + 2, dtype=np.int64)
    np.add.at(delta, firsts - base, sizes)
    np.add.at(delta, lasts - base + 1, -sizes)
    return int(np.cumsum(delta).max())


def plan_offsets(intervals, alignment: int = 256) -> MemoryPlan:
    """Place the intervals (see the module docstring); O(n^2) in the worst case, vectorized."""
    n = len(intervals)
    sizes = np.array([round_up(iv.size, alignment) for iv in intervals], dtype=np.int64)
    firsts = np.array([iv.first for iv in intervals], dtype=np.int64)
    lasts = np.array([iv.last for iv in intervals], dtype=np.int64)
    offsets = np.zeros(n, dtype=np.int64)
    # arrays of the tensors placed so far, in placement order
    p_first = np.empty(n, dtype=np.int64)
    p_last = np.empty(n, dtype=np.int64)
    p_off = np.empty(n, dtype=np.int64)
    p_end = np.empty(n, dtype=np.int64)
    order = sorted(range(n), key=lambda i: (-sizes[i], firsts[i], i))
    for k, i in enumerate(order):
        size = sizes[i]
        live = (p_first[:k] <= lasts[i]) & (firsts[i] <= p_last[:k])
        offsets[i] = _best_gap(p_off[:k][live], p_end[:k][live], size)
        p_first[k], p_last[k], p_off[k], p_end[k] = firsts[i], lasts[i], offsets[i], offsets[i] + size
    peak = int((offsets + sizes).max()) if n else 0
    return MemoryPlan(tuple(int(o) for o in offsets), tuple(int(s) for s in sizes), peak,
                      int(sizes.sum()), lower_bound(intervals, alignment))


def _best_gap(starts: np.ndarray, ends: np.ndarray, size: int) -> int:
    """The lowest start of the smallest gap of at least ``size`` between the occupied ranges
    [start, end), or the top of the highest one when no gap fits."""
    if starts.size == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)                 # highest end among ranges so far
    below = np.concatenate(([0], reach[:-1]))           # where the gap before each range starts
    gaps = starts - below
    fits = gaps >= size
    if fits.any():
        j = int(np.argmin(np.where(fits, gaps, np.iinfo(np.int64).max)))
        return int(below[j])
    return int(reach[-1])

