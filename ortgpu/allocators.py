"""Shared allocators registered with the environment: OrtArenaCfg and
create_and_register_allocator(_v2), as onnxruntime's Python API has them.

onnxruntime lets a program register one allocator per device in its environment, which sessions
created with the config entry ``session.use_env_allocators=1`` share.  ortgpu's CPU values are
NumPy arrays (NumPy allocates them from the C heap, which keeps freed memory: memory/host_heap.py), and each CUDA provider owns its
arena (ortgpu.memory), so a registration is checked and recorded as onnxruntime checks it, and
``arena_options(device_id)`` turns a CUDA registration into the CUDA provider options it maps to
(``gpu_mem_limit`` from ``max_mem``, ``arena_extend_strategy``), which a session with
``session.use_env_allocators=1`` gives its CUDA provider (providers_select.apply_env_allocators).
The arena is still the provider's own, not shared between sessions as onnxruntime's is; the other
knobs (chunk sizes, dead bytes per chunk) have no counterpart in ortgpu's arena and are recorded only.
"""
from __future__ import annotations

import threading

from ortgpu.device_info import OrtMemoryInfo, device_kind_name
from ortgpu.enums import OrtEnum


class ArenaExtendStrategy(OrtEnum):
    """How an arena grows: by powers of two or by exactly the request."""
    kNextPowerOfTwo = 0
    kSameAsRequested = 1


kNextPowerOfTwo = ArenaExtendStrategy.kNextPowerOfTwo
kSameAsRequested = ArenaExtendStrategy.kSameAsRequested

_KEYS = ("max_mem", "arena_extend_strategy", "initial_chunk_size_bytes", "max_dead_bytes_per_chunk",
         "initial_growth_chunk_size_bytes", "max_power_of_two_extend_bytes")


def _as_int(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"OrtArenaCfg: {key} must be an int, not {type(value).__name__}")
    return int(value)


class OrtArenaCfg:
    """An arena configuration: ``OrtArenaCfg(max_mem, arena_extend_strategy,
    initial_chunk_size_bytes, max_dead_bytes_per_chunk)`` or ``OrtArenaCfg({key: value})``;
    -1 (and max_mem 0) mean "the default".  Values are kept as given, as onnxruntime keeps them
    (an arena checks them when it is made, see arena_options)."""

    def __init__(self, *args):
        values = {k: -1 for k in _KEYS}
        values["max_mem"] = 0
        if len(args) == 1 and isinstance(args[0], dict):
            for key, value in args[0].items():
                if key not in _KEYS:
                    raise RuntimeError(f"Invalid OrtArenaCfg option: {key} (options: {', '.join(_KEYS)})")
                values[key] = _as_int(key, value)
        elif len(args) == 4:
            for key, value in zip(_KEYS[:2] + _KEYS[2:4], args):
                values[key] = _as_int(key, value)
        else:
            raise TypeError("OrtArenaCfg() takes (max_mem, arena_extend_strategy, initial_chunk_size_bytes, "
                            f"max_dead_bytes_per_chunk) or a dict, got {len(args)} arguments")
        self.__dict__.update(values)

    def __repr__(self):
        return "OrtArenaCfg(" + ", ".join(f"{k}={getattr(self, k)}" for k in _KEYS) + ")"


_lock = threading.Lock()
_registered: dict[tuple[str, int], tuple[OrtMemoryInfo, OrtArenaCfg | None, dict]] = {}


def _check(mem_info, arena_cfg) -> tuple[str, int]:
    if not isinstance(mem_info, OrtMemoryInfo):
        raise TypeError(f"create_and_register_allocator: mem_info must be an OrtMemoryInfo, "
                        f"not {type(mem_info).__name__}")
    if arena_cfg is not None and not isinstance(arena_cfg, OrtArenaCfg):
        raise TypeError(f"create_and_register_allocator: arena_cfg must be an OrtArenaCfg, "
                        f"not {type(arena_cfg).__name__}")
    return device_kind_name(mem_info._ort_device()), mem_info.device_id


def _record(key, mem_info, arena_cfg, options) -> None:
    """Record a registration; a later one for the same device replaces it (onnxruntime accepts both)."""
    with _lock:
        _registered[key] = (mem_info, arena_cfg, dict(options))


def create_and_register_allocator(mem_info: OrtMemoryInfo, arena_cfg: OrtArenaCfg) -> None:
    """Register a shared CPU allocator (as onnxruntime: CPU devices only here)."""
    kind, device_id = _check(mem_info, arena_cfg)
    if kind != "cpu":
        raise RuntimeError("Error when creating and registering allocator: Only CPU devices are supported. "
                           "Please call CreateAndRegisterAllocatorV2() for other device.")
    _record((kind, device_id), mem_info, arena_cfg, {})


def create_and_register_allocator_v2(provider_type: str, mem_info: OrtMemoryInfo, options: dict,
                                     arena_cfg: OrtArenaCfg) -> None:
    """Register a shared allocator for `provider_type`'s device (CPU or CUDA here)."""
    if provider_type not in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        raise RuntimeError(f"Error when creating and registering allocator in create_and_register_allocator_v2: "
                           f"provider '{provider_type}' is not one ortgpu runs (CPUExecutionProvider, "
                           f"CUDAExecutionProvider)")
    if not isinstance(options, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in options.items()):
        raise TypeError("create_and_register_allocator_v2: options must be a dict of str to str")
    kind, device_id = _check(mem_info, arena_cfg)
    _record((kind, device_id), mem_info, arena_cfg, options)


def arena_options(device_id: int) -> dict[str, str]:
    """CUDA provider options that the allocator registered for CUDA device `device_id` maps to
    (empty without one): ``gpu_mem_limit`` from a positive ``max_mem`` and the extend strategy."""
    with _lock:
        entry = _registered.get(("cuda", int(device_id)))
    if entry is None or entry[1] is None:
        return {}
    cfg, out = entry[1], {}
    if cfg.max_mem > 0:
        out["gpu_mem_limit"] = str(cfg.max_mem)
    if cfg.arena_extend_strategy in (0, 1):
        out["arena_extend_strategy"] = ArenaExtendStrategy(cfg.arena_extend_strategy).name
    return out


def registered() -> dict[tuple[str, int], tuple]:
    """(device kind, device id) -> (mem_info, arena_cfg, options) of every registration."""
    with _lock:
        return dict(_registered)


def _clear_for_tests() -> None:
    with _lock:
        _registered.clear()
