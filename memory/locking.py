"""A lock for allocator state that finalizers reach.

Buffers go back to their allocator from finalizers (``__del__`` of the memory object a CuPy
array holds), and a finalizer runs wherever the last reference drops or the garbage collector
happens to run: on any thread, and possibly inside the allocator's own critical section.  So a
release must never wait for the lock (two allocators' locks taken in opposite orders by a
finalizer and a thread would deadlock) and must never edit state that is half updated.

``DeferringLock.call(fn, *args)`` runs ``fn`` at once when the lock is free, and otherwise
queues it; whoever holds the lock runs the queue when entering and before leaving.  (A call
queued in the instant between the holder's last look and its release waits for the next
entry: the state then lags by that release, which is always safe for an allocator.)
"""
from __future__ import annotations

import collections
import threading
import warnings


class DeferringLock:
    """``with lock:`` is a critical section (waits for the lock); ``lock.call(fn, *args)``
    never waits (see the module docstring)."""

    __slots__ = ("_lock", "_pending")

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: collections.deque = collections.deque()

    def __enter__(self):
        self._lock.acquire()
        self._drain()
        return self

    def __exit__(self, *exc):
        try:
            self._drain()
        finally:
            self._lock.release()
        return False

    def call(self, fn, *args) -> None:
        if not self._lock.acquire(blocking=False):
            self._pending.append((fn, args))
            return
        try:
            fn(*args)
            self._drain()
        finally:
            self._lock.release()

    def _drain(self) -> None:
        """Run the queued calls; the caller holds the lock.  A queued call's error belongs to
        the finalizer that queued it, not to the operation that drains: it becomes a warning."""
        while self._pending:
            fn, args = self._pending.popleft()
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"deferred release failed: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
