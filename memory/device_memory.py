"""The memory of one device provider: its arena, its memory patterns and its pinned staging pool.

Each CUDA provider (so each session) owns one ``DeviceMemory`` for its device.  A run enters
``run(key)``: the allocation source it yields (the arena, or a pattern recording or replay
when ``key`` is an input signature) serves every device allocation of the run, and the run's
end is reported to the pattern cache.  ``stats()`` is what ``InferenceSession.get_memory_stats``
shows.  The composition is backend-neutral (tests run it on a host backend); ``for_cuda``
builds the CuPy one.
"""
from __future__ import annotations

import contextlib
import traceback

from ortgpu.memory.arena import NO_LIMIT, Arena
from ortgpu.memory.pattern import PatternCache
from ortgpu.memory.staging import StagingPool


class DeviceMemory:
    def __init__(self, backend, *, limit: int = NO_LIMIT, extend_strategy: str = "kNextPowerOfTwo",
                 pinned_backend=None, name: str = "arena", **arena_options):
        self.arena = Arena(backend, limit=limit, extend_strategy=extend_strategy, name=name, **arena_options)
        self.patterns = PatternCache(self.arena)
        self.staging = StagingPool(pinned_backend) if pinned_backend is not None else None

    @classmethod
    def for_cuda(cls, config) -> "DeviceMemory":
        """The memory of a CUDA provider with parsed options ``config`` (CUDAProviderConfig):
        gpu_mem_limit and arena_extend_strategy apply.  Never run on a GPU."""
        from ortgpu.memory.backends import CupyBackend, PinnedBackend  # noqa: PLC0415
        return cls(CupyBackend(config.device_id), limit=config.gpu_mem_limit,
                   extend_strategy=config.arena_extend_strategy, pinned_backend=PinnedBackend(),
                   name=f"CUDA arena (device {config.device_id})")

    @contextlib.contextmanager
    def run(self, key=None, stream=None):
        """Yields the allocation source of one run; ``key`` None: the arena, no pattern.
        ``stream``: the stream the run queues its work on; the arena's blocks are taken for it
        (stream-ordered reuse, see memory/arena.py).  When the run raises, the locals of its
        finished frames are cleared (release_frames), so that its buffers return to the arena
        now rather than when the caller drops the exception: a session that ran out of memory
        serves the next, smaller run."""
        source = self.patterns.begin(key)
        ok = False
        try:
            with self.arena.on_stream(stream):
                yield source
            ok = True
        except BaseException as e:
            release_frames(e)
            raise
        finally:
            self.patterns.finish(source, ok)

    def shrink(self) -> int:
        """Drop idle patterns and return free regions and idle pinned buffers; bytes returned
        to the device (pinned bytes not counted)."""
        self.patterns.release_idle()
        if self.staging is not None:
            self.staging.trim()
        return self.arena.shrink()

    def stats(self) -> dict:
        """Arena counters (ArenaStats fields) plus "mem_pattern" and "staging" dictionaries."""
        out = self.arena.stats().as_dict()
        out["mem_pattern"] = self.patterns.stats()
        if self.staging is not None:
            out["staging"] = self.staging.stats()
        return out


def release_frames(error: BaseException) -> None:
    """Clear the locals of the finished frames in the tracebacks of ``error`` and of the errors
    it was raised from or during (frames still executing are left alone by
    traceback.clear_frames).  Post-mortem debugging of such an error sees no locals there."""
    seen = set()
    pending = [error]
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        pending.extend((e.__cause__, e.__context__))
