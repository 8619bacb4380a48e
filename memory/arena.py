"""A best-fit arena over regions obtained from a backend: the policy core of device memory.

Rules:

* Sizes are rounded up to ``alignment`` (256 bytes, what cudaMalloc guarantees).
* A request takes the smallest free block that fits (lowest address among equals) and splits
  off the rest as a free block.  A released block merges with free neighbours of its region.
* When no free block fits, the arena reserves a new region from the backend:
  ``kSameAsRequested`` reserves exactly the request; ``kNextPowerOfTwo`` reserves the larger of
  the request and the growth size, which starts at ``initial_region`` (1 MiB) and doubles
  after every reservation, so that a growing workload needs few regions.
* ``limit`` bounds the reserved bytes: a region is clipped to what is left under the limit,
  and a request that does not fit even then is refused.  Before refusing, the arena relieves
  pressure once: it calls the registered pressure callbacks (a pattern cache drops its idle
  blocks there) and returns its entirely free regions to the backend, then tries again.  A
  backend that refuses a region (the device is full) is asked for the bare request instead.
* A refusal raises ``ArenaOutOfMemory`` (an onnxruntime ``RuntimeException``) naming the
  request, the limit, the bytes in use and reserved; nothing changed, so smaller requests
  still succeed afterwards.

Stream order (what a device needs; a host backend ignores it):

* A block is taken on a *stream* (``allocate(n, stream=...)``, or the stream a thread bound
  with ``on_stream``; None: no stream, as on a host backend).  Work on that stream may still
  read or write the block after its lease is released, so the release records an event on
  that stream (``stream.record()``) and the free block keeps it.
* A request on the same stream takes such a block at once: the stream runs its work in
  order.  A request on another stream takes it only after ordering that stream after the
  event (``stream.wait_event(event)``, no host wait); a request with no stream waits for the
  event on the host (``event.synchronize()``).  Events already complete (``event.done``) are
  dropped.  Merged free blocks keep the events of both halves (the latest per stream).
* Streams and events are duck-typed as CuPy's (``record``, ``wait_event``, ``synchronize``,
  ``ptr``; ``done``, ``synchronize``); the device double of the tests models them.

The backend is any object with ``malloc(nbytes) -> (ptr, handle)`` (raising ``MemoryError``
when it cannot) and ``free(handle)``; memory/backends.py has a host one for tests and a CuPy
one.  Blocks are released from finalizers on any thread: see memory/locking.py.
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import threading

from ortgpu.errors import RuntimeException
from ortgpu.memory.locking import DeferringLock

EXTEND_STRATEGIES = ("kNextPowerOfTwo", "kSameAsRequested")
NO_LIMIT = 2 ** 64 - 1          # onnxruntime's gpu_mem_limit default (SIZE_MAX)
DEFAULT_ALIGNMENT = 256
DEFAULT_INITIAL_REGION = 1 << 20


class ArenaOutOfMemory(RuntimeException):
    """A request the arena cannot serve under its limit (or the device refused).  The text
    follows onnxruntime's "Failed to allocate memory for requested buffer of size N"; the
    numbers are attributes too (None after the executor re-raised it naming the node)."""

    def __init__(self, message: str, requested: int | None = None, limit: int | None = None,
                 in_use: int | None = None, reserved: int | None = None):
        super().__init__(message)
        self.requested, self.limit, self.in_use, self.reserved = requested, limit, in_use, reserved


def round_up(nbytes: int, alignment: int) -> int:
    return -(-nbytes // alignment) * alignment


_BOUND = object()   # allocate's default: the stream bound by on_stream


def _stream_key(stream):
    """One key per stream: its handle where it has one (CuPy: ``ptr``), else the object."""
    ptr = getattr(stream, "ptr", None)
    return ("ptr", ptr) if ptr is not None else ("id", id(stream))


def _record(stream):
    """An event after the work queued on ``stream`` so far (None without a stream).  If the
    event cannot be recorded (a finalizer at interpreter exit), the stream is waited for.
    While the stream captures a CUDA graph nothing is recorded (an event recorded into a
    capture never completes on its own, and a capture cannot wait on the host): the block is
    then ordered for its own stream only, which is the stream a capture's runs use."""
    if stream is None:
        return None
    capturing = getattr(stream, "is_capturing", None)
    if capturing is not None and capturing():
        return None
    try:
        return stream.record()
    except Exception:  # noqa: BLE001
        stream.synchronize()
        return None


def _order_after(events: dict, stream) -> None:
    """Make work on ``stream`` (the host when None) come after the events of a free block that
    were recorded on other streams and are not complete yet."""
    key = _stream_key(stream) if stream is not None else None
    for k, (_, _, event) in events.items():
        if k == key or event.done:
            continue
        if stream is None:
            event.synchronize()
        else:
            stream.wait_event(event)


@dataclasses.dataclass(frozen=True)
class ArenaStats:
    """A snapshot of an arena's counters (bytes unless named num_)."""

    bytes_in_use: int          # held by live blocks (rounded sizes)
    max_bytes_in_use: int      # the peak of bytes_in_use
    bytes_reserved: int        # regions held from the backend
    max_bytes_reserved: int
    bytes_limit: int
    largest_free_block: int
    num_allocs: int            # successful allocate() calls
    num_frees: int
    num_reserves: int          # regions reserved from the backend
    num_shrinks: int           # regions returned to the backend
    num_regions: int
    max_alloc_size: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Region:
    __slots__ = ("arena", "ptr", "size", "handle", "first")

    def __init__(self, arena, ptr, size, handle):
        self.arena, self.ptr, self.size, self.handle = arena, ptr, size, handle
        self.first = None


class Block:
    """A piece of a region: free, or handed out by ``allocate``.  A handed-out block is a lease:
    ``ptr``, ``size`` (rounded), ``requested``, ``owner`` (what keeps the memory valid) and
    ``release()`` (once)."""

    __slots__ = ("region", "ptr", "size", "requested", "free", "prev", "next", "stream", "events")

    def __init__(self, region, ptr, size, free, prev=None, next=None, events=None):
        self.region, self.ptr, self.size, self.free = region, ptr, size, free
        self.requested = 0
        self.prev, self.next = prev, next
        self.stream = None        # the stream the lease was taken on (None: no stream)
        self.events = events or {}   # free: stream key -> (seq, stream, event) of work that may use it

    @property
    def owner(self):
        return self.region.handle

    def release(self) -> None:
        self.region.arena.release(self)

    def __repr__(self):
        state = "free" if self.free else "used"
        return f"Block(ptr={self.ptr:#x}, size={self.size}, {state})"


class Arena:
    """Best-fit arena (see the module docstring for its rules)."""

    def __init__(self, backend, *, limit: int = NO_LIMIT, extend_strategy: str = "kNextPowerOfTwo",
                 initial_region: int = DEFAULT_INITIAL_REGION, alignment: int = DEFAULT_ALIGNMENT,
                 name: str = "arena"):
        if extend_strategy not in EXTEND_STRATEGIES:
            raise ValueError(f"arena_extend_strategy must be one of {EXTEND_STRATEGIES}, got {extend_strategy!r}")
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        self.backend = backend
        self.limit = int(limit)
        self.strategy = extend_strategy
        self.alignment = alignment
        self.name = name
        self._growth = round_up(initial_region, alignment)
        self._regions: list[_Region] = []
        self._free: list[tuple[int, int]] = []   # (size, ptr) of free blocks, sorted
        self._free_at: dict[int, Block] = {}     # ptr -> free block
        self._pressure: list = []
        self._lock = DeferringLock()
        self._bound = threading.local()          # on_stream: the stream of this thread's requests
        self._seq = 0                            # orders events recorded on one stream
        self._in_use = self._max_in_use = self._reserved = self._max_reserved = 0
        self._allocs = self._frees = self._reserves = self._shrinks = self._max_alloc = 0

    # --- public -------------------------------------------------------------------------
    def allocate(self, nbytes: int, stream=_BOUND) -> Block:
        """A block of at least ``nbytes`` (see the rules), or ArenaOutOfMemory; ``stream``: the
        stream that will use it (default: the one bound by ``on_stream``, else None)."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size ({nbytes})")
        if stream is _BOUND:
            stream = getattr(self._bound, "stream", None)
        size = round_up(max(int(nbytes), 1), self.alignment)
        for relieve in (True, False):
            with self._lock:
                block = self._find(size)
                if block is None:
                    block = self._extend(size)
                if block is not None:
                    return self._take(block, size, nbytes, stream)
            if not relieve or not self.relieve_pressure():
                break
        raise self._refusal(nbytes, size)

    @contextlib.contextmanager
    def on_stream(self, stream):
        """This thread's requests are made for ``stream`` until the block ends (nests)."""
        previous = getattr(self._bound, "stream", None)
        self._bound.stream = stream
        try:
            yield self
        finally:
            self._bound.stream = previous

    def release(self, block: Block) -> None:
        """Give a block back (any thread; deferred while this thread is inside the arena).  The
        work its stream queued so far is marked by an event that a later taker on another
        stream is ordered after (see the module docstring)."""
        self._lock.call(self._release, block, _record(block.stream))

    def add_pressure_callback(self, fn) -> None:
        """``fn()`` is called (without the arena's lock) before a request is refused; it returns
        whether it released anything."""
        self._pressure.append(fn)

    def relieve_pressure(self) -> bool:
        """Run the pressure callbacks, then return free regions; whether anything was freed."""
        freed = False
        for fn in list(self._pressure):
            freed = bool(fn()) or freed
        return self.shrink() > 0 or freed

    def shrink(self) -> int:
        """Return every entirely free region to the backend; the bytes returned."""
        with self._lock:
            returned = 0
            for region in [r for r in self._regions if r.first.free and r.first.size == r.size]:
                self._unindex(region.first)
                self._regions.remove(region)
                self._reserved -= region.size
                self._shrinks += 1
                returned += region.size
                self.backend.free(region.handle)
            return returned

    def stats(self) -> ArenaStats:
        with self._lock:
            return ArenaStats(
                bytes_in_use=self._in_use, max_bytes_in_use=self._max_in_use,
                bytes_reserved=self._reserved, max_bytes_reserved=self._max_reserved,
                bytes_limit=self.limit, largest_free_block=self._free[-1][0] if self._free else 0,
                num_allocs=self._allocs, num_frees=self._frees, num_reserves=self._reserves,
                num_shrinks=self._shrinks, num_regions=len(self._regions), max_alloc_size=self._max_alloc)

    def blocks(self) -> list[Block]:
        """Every block of every region in address order (for tests and debugging)."""
        with self._lock:
            out = []
            for region in sorted(self._regions, key=lambda r: r.ptr):
                b = region.first
                while b is not None:
                    out.append(b)
                    b = b.next
            return out

    # --- inside the lock ----------------------------------------------------------------
    def _find(self, size: int) -> Block | None:
        i = bisect.bisect_left(self._free, (size, -1))
        if i == len(self._free):
            return None
        return self._free_at[self._free[i][1]]

    def _region_size(self, size: int) -> int | None:
        room = self.limit - self._reserved
        if size > room:
            return None
        want = size if self.strategy == "kSameAsRequested" else max(size, self._growth)
        return min(want, room)

    def _extend(self, size: int) -> Block | None:
        """A new region holding one free block of at least ``size``, or None."""
        region_size = self._region_size(size)
        if region_size is None:
            return None
        for attempt in dict.fromkeys((region_size, size)):  # the strategy's size, then the bare request
            try:
                ptr, handle = self.backend.malloc(attempt)
            except MemoryError:
                continue
            region = _Region(self, ptr, attempt, handle)
            region.first = Block(region, ptr, attempt, True)
            self._regions.append(region)
            self._reserved += attempt
            self._max_reserved = max(self._max_reserved, self._reserved)
            self._reserves += 1
            if self.strategy == "kNextPowerOfTwo":
                self._growth *= 2
            self._index(region.first)
            return region.first
        return None

    def _take(self, block: Block, size: int, requested: int, stream=None) -> Block:
        self._unindex(block)
        if block.size - size >= self.alignment:
            rest = Block(block.region, block.ptr + size, block.size - size, True, block, block.next,
                         dict(block.events))
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            self._index(rest)
        _order_after(block.events, stream)
        block.events = {}
        block.stream = stream
        block.free = False
        block.requested = requested
        self._in_use += block.size
        self._max_in_use = max(self._max_in_use, self._in_use)
        self._allocs += 1
        self._max_alloc = max(self._max_alloc, requested)
        return block

    def _release(self, block: Block, event=None) -> None:
        if block.free or block.region.arena is not self or block.region not in self._regions:
            raise RuntimeError(f"{self.name}: release of a block that is not allocated here: {block!r}")
        if event is not None:
            self._seq += 1
            block.events = {_stream_key(block.stream): (self._seq, block.stream, event)}
        block.stream = None
        block.free = True
        self._in_use -= block.size
        self._frees += 1
        nxt = block.next
        if nxt is not None and nxt.free:
            self._unindex(nxt)
            self._absorb(block, nxt)
        prev = block.prev
        if prev is not None and prev.free:
            self._unindex(prev)
            self._absorb(prev, block)
            block = prev
        self._index(block)

    @staticmethod
    def _absorb(left: Block, right: Block) -> None:
        for key, entry in right.events.items():
            if key not in left.events or left.events[key][0] < entry[0]:
                left.events[key] = entry
        left.size += right.size
        left.next = right.next
        if right.next is not None:
            right.next.prev = left

    def _index(self, block: Block) -> None:
        bisect.insort(self._free, (block.size, block.ptr))
        self._free_at[block.ptr] = block

    def _unindex(self, block: Block) -> None:
        i = bisect.bisect_left(self._free, (block.size, block.ptr))
        del self._free[i]
        del self._free_at[block.ptr]

    def _refusal(self, nbytes: int, size: int) -> ArenaOutOfMemory:
        s = self.stats()
        room = s.bytes_limit - s.bytes_reserved
        why = (f"the device refused a region of {size} bytes" if size <= room
               else f"only {room} bytes remain under the limit")
        limit = "none" if s.bytes_limit == NO_LIMIT else f"{s.bytes_limit} bytes"
        return ArenaOutOfMemory(
            f"{self.name}: Failed to allocate memory for requested buffer of size {nbytes} "
            f"({why}; limit (gpu_mem_limit): {limit}, in use: {s.bytes_in_use} bytes, "
            f"reserved: {s.bytes_reserved} bytes, largest free block: {s.largest_free_block} bytes)",
            requested=nbytes, limit=s.bytes_limit, in_use=s.bytes_in_use, reserved=s.bytes_reserved)
