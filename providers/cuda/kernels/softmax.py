"""Raw CUDA launchers for Softmax and LogSoftmax (source: softmax.cu).

They handle float types when the normalized axes are the trailing ones: always before
opset 13 (the input is coerced to 2-D at `axis`), and for axis = -1 from opset 13.  Other
axes, other types and 0-d inputs go to ``providers/kernels/normalization.py``, whose
three-step formula the CUDA source follows.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import normalization as shared
from ortgpu.providers.kernels.reduce import normalize_axes
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.registry import kernel

SOURCE = "softmax.cu"


def softmax_name(ctype: str, log: bool) -> str:
    return f"softmax_rows<{ctype}, {'true' if log else 'false'}>"


UNITS = {dt: cu.declare(SOURCE, cu.CTYPE[dt], [softmax_name(cu.CTYPE[dt], False),
                                                softmax_name(cu.CTYPE[dt], True)])
         for dt in cu.FLOAT_TYPES}


def trailing_split(ctx, shape, axis):
    """(rows, cols) when the op normalizes over all axes from `axis` on, else None."""
    ndim = len(shape)
    a = normalize_axes([axis], ndim)[0]
    if ctx.opset >= 13 and a != ndim - 1:
        return None
    return math.prod(shape[:a]), math.prod(shape[a:])


def run_softmax(x_in, rows: int, cols: int, log: bool):
    """Softmax (or LogSoftmax) of each row of ``x_in`` viewed as (rows, cols) on the GPU."""
    import cupy

    x = cupy.ascontiguousarray(x_in)
    y = cupy.empty(x.shape, dtype=x.dtype)
    if rows and cols:
        fn = cu.function(UNITS[x.dtype], softmax_name(cu.CTYPE[x.dtype], log))
        grid, block = cu.row_launch_config(rows, cols)
        fn(grid, block, (x, y, np.int64(rows), np.int64(cols)))
    return y


def _softmax(ctx, input, axis, log):
    if not cu.on_device(ctx, input) or input.dtype not in UNITS or input.ndim == 0:
        return None
    split = trailing_split(ctx, input.shape, axis)
    return None if split is None else run_softmax(input, *split, log)


@kernel("Softmax", since=(1, 11, 13), provider="cuda", types={"T": FLOATS})
def Softmax(ctx, input, *, axis=-1):
    """exp(x) / sum(exp(x)) over the trailing axes (raw CUDA)."""
    y = _softmax(ctx, input, axis, log=False)
    return y if y is not None else shared.Softmax(ctx, input, axis=axis)


@kernel("LogSoftmax", since=(1, 11, 13), provider="cuda", types={"T": FLOATS})
def LogSoftmax(ctx, input, *, axis=-1):
    """log(softmax(x)) over the trailing axes (raw CUDA)."""
    y = _softmax(ctx, input, axis, log=True)
    return y if y is not None else shared.LogSoftmax(ctx, input, axis=axis)
