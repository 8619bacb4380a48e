"""Device memory: a best-fit arena with a limit and statistics (arena.py), the static lifetime
planner (planner.py), memory patterns that replay a planned run from one block (pattern.py),
pinned host staging (staging.py), and their composition per provider (device_memory.py).
Nothing here imports CuPy at import time; the CuPy pieces (backends.CupyBackend,
cupy_allocator, staging.upload/download) have never run on a GPU."""
from ortgpu.memory.arena import ArenaOutOfMemory, Arena, ArenaStats, Block, EXTEND_STRATEGIES
from ortgpu.memory.backends import HostBackend
from ortgpu.memory.device_memory import DeviceMemory
from ortgpu.memory.pattern import PatternCache, pattern_key
from ortgpu.memory.planner import Interval, MemoryPlan, lower_bound, plan_offsets
from ortgpu.memory.staging import StagingPool

__all__ = ["Arena", "ArenaOutOfMemory", "ArenaStats", "Block", "EXTEND_STRATEGIES", "HostBackend",
           "DeviceMemory", "PatternCache", "pattern_key", "Interval", "MemoryPlan", "lower_bound",
           "plan_offsets", "StagingPool"]
