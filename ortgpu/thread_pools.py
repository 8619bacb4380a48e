"""onnxruntime's global thread pools (set_global_thread_pool_sizes).

onnxruntime can share one intra-op and one inter-op pool between sessions that set
``use_per_session_threads = False``.  ortgpu's CPU kernels run in NumPy, whose BLAS keeps its
own threads, and its sessions run nodes one after another, so the sizes are validated and
recorded (``global_thread_pool_sizes()``) but schedule nothing.
"""
from __future__ import annotations

_sizes = {"intra_op_num_threads": 0, "inter_op_num_threads": 0}


def set_global_thread_pool_sizes(intra_op_num_threads: int = 0, inter_op_num_threads: int = 0) -> None:
    """Record the global pool sizes (0 = as many as cores, onnxruntime's default)."""
    for name, value in (("intra_op_num_threads", intra_op_num_threads),
                        ("inter_op_num_threads", inter_op_num_threads)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"set_global_thread_pool_sizes(): {name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise RuntimeError(f"set_global_thread_pool_sizes(): {name} must be >= 0, got {value}")
        _sizes[name] = value


def global_thread_pool_sizes() -> dict[str, int]:
    return dict(_sizes)
