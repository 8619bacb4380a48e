"""Raw CUDA launcher for LayerNormalization (source: layernorm.cu).

It handles float types with Scale and B of X's type whose elements cover the normalized
axes one to one (shape equal to X.shape[axis:] up to leading 1s).  Other cases go to
``providers/kernels/normalization.py``, whose formula the CUDA source follows; Mean and
InvStdDev come out in the compute type and are cast to the declared stash type as there.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import normalization as shared
from ortgpu.providers.kernels.reduce import float_work_dtype, normalize_axes
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.registry import kernel

SOURCE = "layernorm.cu"


def layernorm_name(ctype: str) -> str:
    return f"layernorm_rows<{ctype}>"


UNITS = {dt: cu.declare(SOURCE, cu.CTYPE[dt], [layernorm_name(cu.CTYPE[dt])]) for dt in cu.FLOAT_TYPES}


def _param_ok(p, dtype, tail) -> bool:
    """A Scale or B the kernel reads as a flat run of the normalized elements."""
    if p is None:
        return True
    if p.dtype != dtype or p.size != math.prod(tail):
        return False
    try:
        return np.broadcast_shapes(p.shape, tail) == tuple(tail)
    except ValueError:
        return False


def run_layernorm(X, Scale, B, a: int, epsilon: float, want_mean: bool, want_inv: bool):
    """(Y, Mean, InvStdDev) on the GPU with the statistics in the compute type (None when
    not asked for), or None when the inputs are not handled here."""
    dt = X.dtype
    tail = X.shape[a:]
    if dt not in UNITS or not (_param_ok(Scale, dt, tail) and _param_ok(B, dt, tail)):
        return None
    rows, cols = math.prod(X.shape[:a]), math.prod(tail)
    if rows == 0 or cols == 0:
        return None
    import cupy

    cdt = float_work_dtype(dt)
    x = cupy.ascontiguousarray(X)
    scale = cupy.ascontiguousarray(Scale).reshape(-1)
    bias = None if B is None else cupy.ascontiguousarray(B).reshape(-1)
    y = cupy.empty(x.shape, dtype=dt)
    stat_shape = X.shape[:a] + (1,) * (X.ndim - a)
    mean = cupy.empty(stat_shape, dtype=cdt) if want_mean else None
    inv = cupy.empty(stat_shape, dtype=cdt) if want_inv else None
    fn = cu.function(UNITS[dt], layernorm_name(cu.CTYPE[dt]))
    grid, block = cu.row_launch_config(rows, cols)
    fn(grid, block, (x, scale, bias, y, mean, inv, np.int64(rows), np.int64(cols),
                     cu.compute_scalar(dt, epsilon)))
    return y, mean, inv


@kernel("LayerNormalization", since=17, provider="cuda", types={"T": FLOATS, "U": frozenset({"float32"})})
@kernel("LayerNormalization", since=1, provider="cuda", types={"*": FLOATS})  # onnxruntime's pre-17 op
def LayerNormalization(ctx, X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Normalize over the axes from `axis` on (raw CUDA); outputs Y, Mean, InvStdDev."""
    if cu.on_device(ctx, X, Scale, B) and X.ndim > 0:
        a = normalize_axes([axis], X.ndim)[0]
        res = run_layernorm(X, Scale, B, a, epsilon, ctx.num_outputs > 1, ctx.num_outputs > 2)
        if res is not None:
            y, mean, inv = res
            if ctx.num_outputs == 1:
                return y
            stats = [s.astype(shared._stats_dtype(ctx, i, X, stash_type), copy=False)
                     for i, s in ((1, mean), (2, inv)) if s is not None]
            return (y, *stats)[:ctx.num_outputs]
    return shared.LayerNormalization(ctx, X, Scale, B, axis=axis, epsilon=epsilon,
                                     stash_type=stash_type)
