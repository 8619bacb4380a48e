"""Dynamic batching: requests for one model wait in a bounded queue and run as one batch.

A worker thread per model instance (each with its own session) takes the oldest request, then
gathers further requests of the same shape signature (every dimension but the first, and the
dtypes) until the batch holds ``max_batch_size`` items, reaches a preferred size with nothing
more waiting, or the oldest request has waited ``max_queue_delay``. The inputs are concatenated
along the batch dimension, run once, and the outputs split back per request. When the queue holds
``max_queue_size`` requests, :meth:`DynamicBatcher.submit` raises :class:`QueueFull` at once
(the server answers 503) instead of letting the queue grow. A request whose future was cancelled
(its client went away) is dropped when dequeued, before it costs any compute.
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import QueueFull

RunFn = Callable[[dict], list]  # feeds -> outputs in the model's output order


@dataclass
class _Pending:
    feeds: dict
    batch: int
    signature: tuple
    future: concurrent.futures.Future
    enqueued: float = field(default_factory=time.monotonic)


def _signature(feeds: dict, batched: bool) -> tuple:
    return tuple((k, v.dtype.str, v.shape[1:] if batched else v.shape) for k, v in sorted(feeds.items()))


class DynamicBatcher:
    """Queue + one worker per instance. `run_fns[i]` runs instance i (called from its thread only)."""

    def __init__(self, run_fns: list[RunFn], *, max_batch_size: int = 0, dynamic: bool = False,
                 max_queue_delay_s: float = 0.0, preferred_batch_sizes=(), max_queue_size: int = 64,
                 name: str = "model", on_batch: Callable[[int, int], None] | None = None):
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self.name = name
        self.max_batch_size = max_batch_size
        self.dynamic = dynamic and max_batch_size > 0
        self.delay = max(0.0, max_queue_delay_s)
        self.preferred = frozenset(preferred_batch_sizes)
        self.max_queue_size = max_queue_size
        self.on_batch = on_batch
        self.batches = 0          # batches run
        self.items = 0            # requests answered through batches
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._workers = [threading.Thread(target=self._work, args=(fn,), name=f"ortgpu-{name}-{i}", daemon=True)
                         for i, fn in enumerate(run_fns)]
        for w in self._workers:
            w.start()

    def submit(self, feeds: dict, batch: int = 1) -> concurrent.futures.Future:
        """Queue one request (`batch` items along axis 0 when the model is batched); returns the
        future of its outputs. Raises QueueFull when the queue is at its bound."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        item = _Pending(feeds, batch, _signature(feeds, self.max_batch_size > 0), future)
        with self._cond:
            if self._closed:
                raise QueueFull(f"model {self.name} is shutting down")
            if len(self._queue) >= self.max_queue_size:
                raise QueueFull(f"model {self.name}: request queue full ({self.max_queue_size} waiting); "
                                "retry later")
            self._queue.append(item)
            self._cond.notify()
        return future

    def pending(self) -> int:
        """Requests queued or running now."""
        with self._cond:
            return len(self._queue) + self._busy

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting requests, let the workers finish what is queued, wait for them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for w in self._workers:
            w.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- worker side -------------------------------------------------------------------------
    def _work(self, run: RunFn) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            try:
                self._run_group(run, group)
            finally:
                with self._cond:
                    self._busy -= 1

    def _next_group(self) -> list[_Pending] | None:
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return None
                first = self._queue.popleft()
                if first.future.set_running_or_notify_cancel():
                    break  # else: cancelled while queued (client gone): drop it
            group, total = [first], first.batch
            if self.dynamic:
                deadline = first.enqueued + self.delay
                while total < self.max_batch_size:
                    total = self._take_compatible(group, total)
                    if total >= self.max_batch_size or (total in self.preferred and not self._queue):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
            self._busy += 1
            return group

    def _take_compatible(self, group: list[_Pending], total: int) -> int:
        """Move queued requests with the group's signature into it while they fit (lock held)."""
        keep = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if item.signature == group[0].signature and total + item.batch <= self.max_batch_size:
                if item.future.set_running_or_notify_cancel():
                    group.append(item)
                    total += item.batch
            else:
                keep.append(item)
        self._queue.extendleft(reversed(keep))
        return total

    def _run_group(self, run: RunFn, group: list[_Pending]) -> None:
        try:
            if len(group) == 1:
                outputs = run(group[0].feeds)
                results = [outputs]
            else:
                feeds = {k: np.concatenate([g.feeds[k] for g in group], axis=0) for k in group[0].feeds}
                results = _split(run(feeds), [g.batch for g in group])
        except BaseException as e:  # noqa: BLE001 - every request of the batch gets the error
            for g in group:
                g.future.set_exception(e)
            return
        self.batches += 1
        self.items += len(group)
        if self.on_batch is not None:
            self.on_batch(len(group), sum(g.batch for g in group))
        for g, r in zip(group, results):
            g.future.set_result(r)


def _split(outputs: list, sizes: list[int]) -> list[list]:
    """Split every output along axis 0 into pieces of `sizes`; an output whose first dimension is
    not the batch is an error (the model does not batch along axis 0)."""
    total = sum(sizes)
    for i, out in enumerate(outputs):
        if not isinstance(out, np.ndarray) or out.ndim == 0 or out.shape[0] != total:
            shape = getattr(out, "shape", None)
            raise RuntimeError(f"output {i} has shape {shape}, not batch-major with {total} rows: the model "
                               "cannot be batched along axis 0 (set max_batch_size: 0)")
    cuts = np.cumsum(sizes)[:-1]
    pieces = [np.split(out, cuts, axis=0) for out in outputs]
    return [[p[j] for p in pieces] for j in range(len(sizes))]
