"""Pooling: AveragePool, MaxPool (with Indices), LpPool, the Global* pools and MaxUnpool.

Every windowed pool is a reduction over a strided window view of the padded input, so no
Python loop runs over output pixels.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.kernels.conv import (compute_dtype, fill_spatial, pad_spatial,
                                           resolve_pads, window_view)
from ortgpu.providers.registry import kernel


def pool_geometry(in_shape, kernel_shape, strides, dilations, auto_pad, pads, ceil_mode):
    """(kernel, strides, dilations, begin pads, end pads, extra end pads, output shape)."""
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
    return kernel, strides, dilations, begins, ends, extra, out


def windows(xp, x, geom, fill):
    """Window view (N, C, *out, *kernel) of x padded with ``fill`` (explicit and ceil pads)."""
    kernel, strides, dilations, begins, ends, extra, out = geom
    xpad = pad_spatial(xp, x, begins, [e + x_ for e, x_ in zip(ends, extra)], fill)
    return window_view(xp, xpad, kernel, strides, dilations, out)


def window_axes(nd):
    return tuple(range(2 + nd, 2 + 2 * nd))


def lowest(dtype):
    dt = np.dtype(dtype)
    return np.iinfo(dt).min if dt.kind in "iu" else -np.inf


@kernel("AveragePool", since=(1, 7, 10, 11, 19, 22))
def AveragePool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    """Average over windows; the divisor counts explicit pads only with count_include_pad (never ceil pads)."""
    xp = ctx.xp
    nd = X.ndim - 2
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    cdt = compute_dtype(X.dtype)
    axes = window_axes(nd)
    total = windows(xp, X.astype(cdt, copy=False), geom, 0).sum(axis=axes)
    # the divisor per output position: pool a mask of the positions that count
    ones = xp.ones((1, 1) + tuple(X.shape[2:]), dtype=cdt)
    kernel, strides_, dilations_, begins, ends, extra, out = geom
    if count_include_pad:
        ones = pad_spatial(xp, ones, begins, ends, 1)
        ones = pad_spatial(xp, ones, [0] * nd, extra, 0)
        count = window_view(xp, ones, kernel, strides_, dilations_, out).sum(axis=axes)
    else:
        count = windows(xp, ones, geom, 0).sum(axis=axes)
    return (total / xp.maximum(count, 1)).astype(X.dtype, copy=False)


@kernel("MaxPool", since=(1, 8, 10, 11, 12, 22))
def MaxPool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
            storage_order=0, strides=None):
    """Max over windows; Indices are flat positions in X (row- or column-major per storage_order)."""
    xp = ctx.xp
    nd = X.ndim - 2
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    x = X if X.dtype.kind in "iuf" and X.dtype.itemsize >= 4 or X.dtype.kind in "iu" \
        else X.astype(np.float32)
    view = windows(xp, x, geom, lowest(x.dtype))
    axes = window_axes(nd)
    want_indices = ctx.num_outputs > 1 and ctx.output_present[1]
    if not want_indices:
        y = view.max(axis=axes).astype(X.dtype, copy=False)
        return (y, None) if ctx.num_outputs > 1 else y
    kernel, strides_, dilations_, begins, _, _, out = geom
    n, c = X.shape[:2]
    flat = view.reshape(n, c, *out, math.prod(kernel))
    arg = xp.argmax(flat, axis=-1)
    y = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0].astype(X.dtype, copy=False)
    offs = xp.unravel_index(arg, tuple(kernel))
    in_shape = X.shape[2:]
    pos = []
    for i in range(nd):
        start = xp.arange(out[i]) * strides_[i] - begins[i]
        start = start.reshape((out[i],) + (1,) * (nd - 1 - i))
        pos.append(start + offs[i] * dilations_[i])
    index = xp.zeros(arg.shape, dtype=np.int64)
    dims = range(nd) if not storage_order else reversed(range(nd))
    for i in dims:
        index = index * in_shape[i] + pos[i]
    plane = math.prod(in_shape)
    index += (xp.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * nd)
    return y, index


def lp_pool(xp, X, geom, p):
    nd = X.ndim - 2
    cdt = compute_dtype(X.dtype)
    x = xp.abs(X.astype(cdt, copy=False))
    s = windows(xp, x ** p, geom, 0).sum(axis=window_axes(nd))
    return (s ** (1.0 / p)).astype(X.dtype, copy=False)


@kernel("LpPool", since=(1, 2, 11, 18, 22))
def LpPool(ctx, X, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2,
           pads=None, strides=None):
    """(sum over window of |x|^p)^(1/p); pads contribute zeros."""
    geom = pool_geometry(X.shape[2:], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    return lp_pool(ctx.xp, X, geom, float(p))


@kernel("GlobalAveragePool", since=(1, 22))
def GlobalAveragePool(ctx, X):
    """Mean over all spatial axes, kept as size-1 axes."""
    axes = tuple(range(2, X.ndim))
    return X.astype(compute_dtype(X.dtype), copy=False).mean(axis=axes, keepdims=True).astype(X.dtype)


@kernel("GlobalMaxPool", since=(1, 22))
def GlobalMaxPool(ctx, X):
    """Max over all spatial axes, kept as size-1 axes."""
    return X.max(axis=tuple(range(2, X.ndim)), keepdims=True)


@kernel("GlobalLpPool", since=(1, 2, 22))
def GlobalLpPool(ctx, X, *, p=2):
    """(sum over all spatial axes of |x|^p)^(1/p), kept as size-1 axes."""
    xp = ctx.xp
    x = xp.abs(X.astype(compute_dtype(X.dtype), copy=False))
    s = (x ** float(p)).sum(axis=tuple(range(2, X.ndim)), keepdims=True)
    return (s ** (1.0 / float(p))).astype(X.dtype)


@kernel("MaxUnpool", since=(9, 11, 22))
def MaxUnpool(ctx, X, I, output_shape=None, *, kernel_shape=None, pads=None, strides=None):
    """Scatter X to the flat positions I of a zero tensor (MaxPool's Indices layout)."""
    xp = ctx.xp
    nd = X.ndim - 2
    kernel = [int(k) for k in kernel_shape]
    strides = fill_spatial(strides, nd, 1)
    pads = fill_spatial(pads, 2 * nd, 0)
    shape = tuple(X.shape[:2]) + tuple((size - 1) * s + k - pads[i] - pads[i + nd]
                                       for i, (size, k, s) in enumerate(zip(X.shape[2:], kernel, strides)))
    y = xp.zeros(math.prod(shape), dtype=X.dtype)
    y[I.reshape(-1).astype(np.int64)] = X.reshape(-1)
    y = y.reshape(shape)
    if output_shape is not None:  # indices keep the default layout; the rest is zero-padded at the end
        target = [int(v) for v in np.asarray(output_shape.get() if hasattr(output_shape, "get")
                                             else output_shape).tolist()][-nd:]
        y = pad_spatial(xp, y, [0] * nd, [t - s for t, s in zip(target, shape[2:])])
    return y
