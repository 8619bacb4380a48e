"""Raw CUDA launchers for MaxPool, AveragePool (source: pool.cu), GlobalAveragePool and
GlobalMaxPool (the reduction kernels of reduce.cu over the spatial axes).

MaxPool and AveragePool handle 2-D (NCHW) and 1-D (NCW, run as H = 1) pooling with every
attribute the shared kernel takes (auto_pad, pads, strides, dilations, ceil_mode,
count_include_pad): the window geometry is the shared ``pool_geometry``.  MaxPool takes
float32, float16, float64, int8 and uint8; AveragePool the float types (float16 summed in
float32).  MaxPool with its Indices output, 3-D pooling, negative pads and other types go
to ``providers/kernels/pool.py``.

Never run on a GPU yet: written, compile-checked and run on the host emulator only.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.cuda.kernels import reduce as cu_reduce
from ortgpu.providers.kernels import pool as shared
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.registry import kernel

SOURCE = "pool.cu"
MAX_TYPES = cu.FLOAT_TYPES + (np.dtype(np.int8), np.dtype(np.uint8))
AVERAGE_TYPES = cu.FLOAT_TYPES
KIND = {"max": 0, "average": 1, "average_include_pad": 2}    # PoolKind of pool.cu

# struct PoolWindow { i64 kernel[2], stride[2], dilation[2], begin[2], end[2]; }
WINDOW_DTYPE = np.dtype([(f, "<i8", (2,)) for f in ("kernel", "stride", "dilation", "begin", "end")])


def pool_name(dtype) -> str:
    return f"pool2d<{cu.CTYPE[np.dtype(dtype)]}>"


UNIT = cu.declare(SOURCE, "all", [pool_name(dt) for dt in MAX_TYPES])


def window_struct(geom: shared.PoolGeometry) -> np.ndarray | None:
    """The PoolWindow struct of a 1-D or 2-D geometry (1-D as H = 1 with a kernel of 1), or
    None when the kernel does not cover it (3-D, negative pads, an empty output)."""
    nd = len(geom.kernel)
    if nd not in (1, 2) or min(geom.begins + geom.ends) < 0 or min(geom.out) <= 0:
        return None
    lead = 2 - nd
    info = np.zeros(1, WINDOW_DTYPE)
    for field, values, pad in (("kernel", geom.kernel, 1), ("stride", geom.strides, 1),
                               ("dilation", geom.dilations, 1), ("begin", geom.begins, 0),
                               ("end", geom.ends, 0)):
        info[field][0] = [pad] * lead + list(values)
    return info


def run_pool(X, geom: shared.PoolGeometry, kind: str):
    """Pooling of X by ``geom`` on the GPU, or None when not handled here."""
    types = MAX_TYPES if kind == "max" else AVERAGE_TYPES
    if X.ndim not in (3, 4) or X.dtype not in types:
        return None
    window = window_struct(geom)
    if window is None:
        return None
    import cupy

    if X.size == 0:
        return None   # nothing to compute: the shared kernel's empty result
    out = cupy.empty(tuple(X.shape[:2]) + tuple(geom.out), dtype=X.dtype)
    in_h, in_w = (1, X.shape[2]) if X.ndim == 3 else X.shape[2:]
    out_h, out_w = (1, geom.out[0]) if X.ndim == 3 else geom.out
    x = cupy.ascontiguousarray(X)
    fn = cu.function(UNIT, pool_name(X.dtype))
    cu.launch_elementwise(fn, out.size, (x, out, np.int64(out.size), np.int64(in_h), np.int64(in_w),
                                         np.int64(out_h), np.int64(out_w), window, np.int32(KIND[kind])))
    return out


# ---------------------------------------------------------------- registrations

@kernel("AveragePool", since=(1, 7, 10, 11, 19, 22), provider="cuda", types={"T": FLOAT})
def AveragePool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    """Average over windows (raw CUDA for 1-D and 2-D)."""
    if cu.on_device(ctx, X):
        geom = shared.pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
        y = run_pool(X, geom, "average_include_pad" if count_include_pad else "average")
        if y is not None:
            return y
    return shared.AveragePool(ctx, X, auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                              dilations=dilations, kernel_shape=kernel_shape, pads=pads, strides=strides)


@kernel("MaxPool", since=(1, 8, 10, 11, 12, 22), provider="cuda",
        types={"T": FLOAT | frozenset({"int8", "uint8"}), "I": frozenset({"int64"})})
def MaxPool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Max over windows (raw CUDA for 1-D and 2-D without the Indices output)."""
    want_indices = ctx.num_outputs > 1 and ctx.output_present[1]
    if cu.on_device(ctx, X) and not want_indices:
        geom = shared.pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
        y = run_pool(X, geom, "max")
        if y is not None:
            return (y, None) if ctx.num_outputs > 1 else y
    return shared.MaxPool(ctx, X, auto_pad=auto_pad, ceil_mode=ceil_mode, dilations=dilations,
                          kernel_shape=kernel_shape, pads=pads, storage_order=storage_order, strides=strides)


def _global(ctx, X, name):
    if cu.on_device(ctx, X) and X.ndim >= 3 and X.dtype in cu.FLOAT_TYPES:
        return cu_reduce.run_reduce(name, X, tuple(range(2, X.ndim)), keepdims=1)
    return None


@kernel("GlobalAveragePool", since=(1, 22), provider="cuda", types={"T": FLOAT})
def GlobalAveragePool(ctx, X):
    """Mean over all spatial axes, kept as size-1 axes (raw CUDA reduction)."""
    y = _global(ctx, X, "ReduceMean")
    return y if y is not None else shared.GlobalAveragePool(ctx, X)


@kernel("GlobalMaxPool", since=(1, 22), provider="cuda", types={"T": FLOAT})
def GlobalMaxPool(ctx, X):
    """Max over all spatial axes, kept as size-1 axes (raw CUDA reduction)."""
    y = _global(ctx, X, "ReduceMax")
    return y if y is not None else shared.GlobalMaxPool(ctx, X)
