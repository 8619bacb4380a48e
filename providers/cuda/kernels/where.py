"""Raw CUDA launcher for Where (source: where.cu), for a bool condition and X, Y of one
element type of 1, 2, 4 or 8 bytes, broadcast over up to 8 collapsed dims.  Other cases
go to the shared kernel of ``providers/kernels/elementwise.py``.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import elementwise as shared
from ortgpu.providers.dtype_sets import BOOL, CUPY_BF16
from ortgpu.providers.registry import kernel

SOURCE = "where.cu"
WIDTH_CTYPE = cu.WIDTH_CTYPE   # element width in bytes -> the unsigned type the kernel moves
INDEX_TYPES = ("int", "long long")


def flat_name(width: int) -> str:
    return f"where_flat<{WIDTH_CTYPE[width]}>"


def bcast_name(width: int, index: str) -> str:
    return f"where_bcast<{WIDTH_CTYPE[width]}, {index}>"


def _names():
    for w in WIDTH_CTYPE:
        yield flat_name(w)
        for index in INDEX_TYPES:
            yield bcast_name(w, index)


UNIT = cu.declare(SOURCE, "all", _names())


def _strides(a):
    return a.shape, cu.element_strides(a.shape, a.strides, a.itemsize)


def run_where(condition, X, Y):
    """``where(condition, X, Y)`` on the GPU, or None when not handled here."""
    dt = X.dtype
    if condition.dtype != np.bool_ or Y.dtype != dt or not cu.movable(dt):
        return None
    import cupy

    out_shape = np.broadcast_shapes(condition.shape, X.shape, Y.shape)
    plan = cu.plan_broadcast(out_shape, [_strides(condition), _strides(X), _strides(Y)])
    if plan is None:
        return None
    out = cupy.empty(out_shape, dtype=dt)
    if plan.size == 0:
        return out
    if plan.steps is not None:
        fn = cu.function(UNIT, flat_name(dt.itemsize))
        args = (condition, X, Y, out, np.int64(plan.size), *(np.int32(s) for s in plan.steps))
    else:
        fn = cu.function(UNIT, bcast_name(dt.itemsize, cu.index_ctype(plan)))
        args = (condition, X, Y, out, np.int64(plan.size), plan.struct())
    cu.launch_elementwise(fn, plan.size, args)
    return out


@kernel("Where", since=(9, 16), provider="cuda", types={"B": BOOL, "T": CUPY_BF16})
def Where(ctx, condition, X, Y):
    """X where condition is true, else Y, with broadcasting (raw CUDA)."""
    if cu.on_device(ctx, condition, X, Y):
        out = run_where(condition, X, Y)
        if out is not None:
            return out
    return shared.Where(ctx, condition, X, Y)
