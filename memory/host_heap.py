"""The CPU provider's arena: the C heap, told to keep the memory NumPy frees for its next
allocation instead of giving it back to the kernel.

onnxruntime's CPU arena (``SessionOptions.enable_cpu_mem_arena``, on by default) keeps freed
blocks for reuse.  ortgpu's host arrays come from NumPy, that is from glibc's malloc, which by
default returns a freed block of 128 KiB or more to the kernel at once (mmap/munmap, or a trim
of the heap top); the next run's temporary of the same size then pays a page fault per 4 KiB
page touched.  With glibc asked to serve blocks up to 64 MiB from its heap and to keep up to
1 GiB of freed memory at the top (measured on the 2-core development machine, quiet, min of 15
runs: PP-OCRv4 det 78 -> 55 ms, DenseNet-121 68 -> 61 ms, PP-OCRv4 rec 18.5 -> 16.7 ms,
ResNet-50 unchanged, peak resident memory within 20%).

The setting is the process's, made once, by the first session created with the arena on; a
process that sets glibc's malloc itself (the MALLOC_*_ variables or GLIBC_TUNABLES) keeps its
own.  Elsewhere than glibc this does nothing.  ``give_back`` is the arena shrink
(run config ``memory.enable_memory_arena_shrinkage = "cpu:0"``): malloc_trim.
"""
from __future__ import annotations

import ctypes
import os
import threading

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEEP = ((M_MMAP_THRESHOLD, 64 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_state = {"decided": False, "kept": False}


def _glibc():
    """The C library when it is glibc (it has gnu_get_libc_version and mallopt), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc exports it
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (once per process); whether it is kept."""
    with _lock:
        if not _state["decided"]:
            _state["decided"] = True
            libc = None if any(os.environ.get(v) for v in USER_SETTINGS) else _glibc()
            if libc is not None:
                _state["kept"] = all(libc.mallopt(param, value) == 1 for param, value in KEEP)
        return _state["kept"]


def give_back() -> None:
    """Return the heap's free memory to the kernel (the CPU arena's shrink)."""
    libc = _glibc() if _state["kept"] else None
    if libc is not None:
        libc.malloc_trim(0)
