"""Pooling: AveragePool, MaxPool (with Indices), LpPool, the Global* pools and MaxUnpool.

Every windowed pool reduces the padded input with a loop over kernel offsets, each step one
vectorized operation on a strided slice; no Python loop runs over output pixels.  On the CPU
with numba, MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool run compiled bodies
instead (providers/cpu/pool_compiled.py); these NumPy bodies stay the fallback and the oracle.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ortgpu.providers.cpu import jit, pool_compiled
from ortgpu.providers.kernels.conv import compute_dtype, fill_spatial, pad_spatial, resolve_pads
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.registry import kernel


class PoolGeometry(NamedTuple):
    kernel: list
    strides: list
    dilations: list
    begins: list   # explicit begin pads
    ends: list     # explicit end pads
    extra: list    # end pads ceil_mode adds so the last window fits (they never count)
    out: list      # output spatial shape


def pool_geometry(in_shape, kernel_shape, strides, dilations, auto_pad, pads, ceil_mode):
    """Where the windows of a pool lie, from its attributes."""
    nd = len(in_shape)
    kernel = [int(k) for k in kernel_shape]
    strides = fill_spatial(strides, nd, 1)
    dilations = fill_spatial(dilations, nd, 1)
    begins, ends = resolve_pads(in_shape, kernel, strides, dilations, auto_pad, pads)
    out, extra = [], []
    for size, k, s, d, b, e in zip(in_shape, kernel, strides, dilations, begins, ends):
        span = (k - 1) * d + 1
        room = size + b + e - span
        o = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (o - 1) * s >= size + b:  # the last window may not start in the end pad
            o -= 1
        out.append(o)
        extra.append(max(0, (o - 1) * s + span - (size + b + e)))
    return PoolGeometry(kernel, strides, dilations, begins, ends, extra, out)


def padded(xp, x, geom, fill):
    """x padded with ``fill`` on the explicit pads and on the extra ceil_mode pads."""
    return pad_spatial(xp, x, geom.begins, [e + x_ for e, x_ in zip(geom.ends, geom.extra)], fill)


def window_slices(geom):
    """For each kernel offset: (flat offset index, the strided slice of the padded input it reads)."""
    for k, offs in enumerate(np.ndindex(*geom.kernel)):
        yield k, (slice(None), slice(None)) + tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offs, geom.dilations, geom.strides, geom.out))


def window_sum(xp, xpad, geom):
    """Sum over each window: a loop over kernel offsets, each step one vectorized add."""
    acc = None
    for _, sl in window_slices(geom):
        acc = xpad[sl].copy() if acc is None else xp.add(acc, xpad[sl], out=acc)
    return acc


COMPILED_MAX = frozenset(np.dtype(t) for t in ("float32", "float64", "int8", "uint8"))


def compiled_here(xp) -> bool:
    """Whether this call runs a compiled body: on the host with numba (and ORTGPU_JIT not 0)."""
    return xp is np and jit.enabled()


def lowest(dtype):
    dt = np.dtype(dtype)
    return np.iinfo(dt).min if dt.kind in "iu" else -np.inf


@kernel("AveragePool", since=(1, 7, 10, 11, 19, 22), types={"T": FLOATS})
def AveragePool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    """Average over windows; the divisor counts explicit pads only with count_include_pad (never ceil pads)."""
    xp = ctx.xp
    nd = X.ndim - 2
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    cdt = compute_dtype(X.dtype)
    if compiled_here(xp) and pool_compiled.can_pool(X, geom):
        y = pool_compiled.average_pool(X.astype(cdt, copy=False), geom, bool(count_include_pad))
        return y.astype(X.dtype, copy=False)
    total = window_sum(xp, padded(xp, X.astype(cdt, copy=False), geom, 0), geom)
    # the divisor per output position: pool a mask of the positions that count
    ones = xp.ones((1, 1) + tuple(X.shape[2:]), dtype=cdt)
    if count_include_pad:
        ones = pad_spatial(xp, pad_spatial(xp, ones, geom.begins, geom.ends, 1), [0] * nd, geom.extra, 0)
    else:
        ones = padded(xp, ones, geom, 0)
    count = window_sum(xp, ones, geom)
    return (total / xp.maximum(count, 1)).astype(X.dtype, copy=False)


@kernel("MaxPool", since=(1, 8, 10, 11, 12, 22),
        types={"T": FLOATS | frozenset({"int8", "uint8"}), "I": frozenset({"int64"})})
def MaxPool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Max over windows; Indices are flat positions in X (row- or column-major per storage_order)."""
    xp = ctx.xp
    nd = X.ndim - 2
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    x = X if X.dtype.kind in "iuf" else X.astype(np.float32)  # bfloat16 / float8: compare in float32
    want_indices = ctx.num_outputs > 1 and ctx.output_present[1]
    if compiled_here(xp) and pool_compiled.can_pool(X, geom):
        if x.dtype not in COMPILED_MAX:  # float16: its values compare the same in float32
            x = x.astype(np.float32)
        if want_indices:
            y, index = pool_compiled.max_pool_with_indices(x, geom, int(storage_order))
            return y.astype(X.dtype, copy=False), index
        y = pool_compiled.max_pool(x, geom).astype(X.dtype, copy=False)
        return (y, None) if ctx.num_outputs > 1 else y
    xpad = padded(xp, x, geom, lowest(x.dtype))
    best = arg = None
    for k, sl in window_slices(geom):
        v = xpad[sl]
        if best is None:
            best = v.copy()
            arg = xp.zeros(v.shape, dtype=np.int64) if want_indices else None
        elif want_indices:
            better = v > best  # strict: the first maximum in row-major kernel order wins
            best = xp.where(better, v, best)
            arg = xp.where(better, k, arg)
        else:
            xp.maximum(best, v, out=best)
    y = best.astype(X.dtype, copy=False)
    if not want_indices:
        return (y, None) if ctx.num_outputs > 1 else y
    n, c = X.shape[:2]
    out = geom.out
    offs = xp.unravel_index(arg, tuple(geom.kernel))
    in_shape = X.shape[2:]
    index = xp.zeros(arg.shape, dtype=np.int64)
    dims = range(nd) if not storage_order else reversed(range(nd))
    for i in dims:
        start = xp.arange(out[i]) * geom.strides[i] - geom.begins[i]
        start = start.reshape((out[i],) + (1,) * (nd - 1 - i))
        index = index * in_shape[i] + (start + offs[i] * geom.dilations[i])
    plane = math.prod(in_shape)
    index += (xp.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * nd)
    return y, index


def lp_pool(xp, X, geom, p):
    cdt = compute_dtype(X.dtype)
    x = xp.abs(X.astype(cdt, copy=False))
    s = window_sum(xp, padded(xp, x ** p, geom, 0), geom)
    return (s ** (1.0 / p)).astype(X.dtype, copy=False)


@kernel("LpPool", since=(1, 2, 11, 18, 22), types={"T": FLOATS})
def LpPool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2,
           pads=None, strides=None):
    """(sum over window of |x|^p)^(1/p); pads contribute zeros."""
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    return lp_pool(ctx.xp, X, geom, float(p))


@kernel("GlobalAveragePool", since=(1, 22), types={"T": FLOATS})
def GlobalAveragePool(ctx, X):
    """Mean over all spatial axes, kept as size-1 axes."""
    x = X.astype(compute_dtype(X.dtype), copy=False)
    if compiled_here(ctx.xp) and X.ndim > 2 and X.size:
        return pool_compiled.global_mean(x).astype(X.dtype, copy=False)
    return x.mean(axis=tuple(range(2, X.ndim)), keepdims=True).astype(X.dtype)


@kernel("GlobalMaxPool", since=(1, 22), types={"T": FLOATS})
def GlobalMaxPool(ctx, X):
    """Max over all spatial axes, kept as size-1 axes."""
    if compiled_here(ctx.xp) and X.ndim > 2 and X.size:
        x = X if X.dtype in COMPILED_MAX else X.astype(np.float32)  # float16: exact in float32
        return pool_compiled.global_max(x).astype(X.dtype, copy=False)
    return X.max(axis=tuple(range(2, X.ndim)), keepdims=True)


@kernel("GlobalLpPool", since=(1, 2, 22), types={"T": FLOATS})
def GlobalLpPool(ctx, X, *, p=2):
    """(sum over all spatial axes of |x|^p)^(1/p), kept as size-1 axes."""
    xp = ctx.xp
    x = xp.abs(X.astype(compute_dtype(X.dtype), copy=False))
    s = (x ** float(p)).sum(axis=tuple(range(2, X.ndim)), keepdims=True)
    return (s ** (1.0 / float(p))).astype(X.dtype)


@kernel("MaxUnpool", since=(9, 11, 22), types={"T1": FLOATS, "T2": frozenset({"int64"})}, host_inputs=(2,))
def MaxUnpool(ctx, X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):
    """Scatter X to the flat positions I of a zero tensor (MaxPool's Indices layout)."""
    xp = ctx.xp
    nd = X.ndim - 2
    kernel = [int(k) for k in kernel_shape]
    strides = fill_spatial(strides, nd, 1)
    pads = fill_spatial(pads, 2 * nd, 0)
    spatial = [(size - 1) * s + k - pads[i] - pads[i + nd]
               for i, (size, k, s) in enumerate(zip(X.shape[2:], kernel, strides))]
    shape = tuple(X.shape[:2]) + tuple(spatial)
    y = xp.zeros(math.prod(shape), dtype=X.dtype)
    y[I.reshape(-1).astype(np.int64)] = X.reshape(-1)
    y = y.reshape(shape)
    if output_shape is not None:  # indices keep the default layout; the rest is zero-padded at the end
        target = [int(v) for v in np.asarray(output_shape).tolist()][-nd:]
        y = pad_spatial(xp, y, [0] * nd, [t - s for t, s in zip(target, shape[2:])])
    return y
