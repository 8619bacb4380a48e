"""Compiled bodies of the pools (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool): NumPy
pools a window as one strided-slice operation per kernel offset, each a pass over the whole
output, where a compiled loop reads the input about once per window row.

Max and sum are separable, so a windowed pool is two reductions, each over unit-stride memory
(which the compiler vectorises).  Per plane: the window rows are reduced into one padded row
per output row (a stride-1 pool reduces a block of consecutive rows as one run, then spreads
it into the padded rows; the pads hold the fill value and are written once per call), the
window columns are reduced along those padded rows taken end to end, at every start, and every
stride-th result is kept.  No output needs a special case at the edges.  1-D and 2-D inputs run
as 3-D ones with size-1 leading spatial axes.  The average's divisor is separable as well: the
window positions counted along each axis, multiplied.

MaxPool with Indices is a direct loop over each window (scalar; the first maximum in row-major
window order wins, as in the NumPy body).  Global pools reduce each contiguous plane into a few
independent partial results, so the loop vectorises without reassociating floating point.

Measured on the 2-core development machine, one thread (2026-12-06): MaxPool 3x3 stride 2 on
64x112x112 0.25 ms (was 0.67 with one row buffer per output row and a wrapped index), 3x3
stride 1 pad 1 on 832x6x6 0.06 ms (0.19 with the window edges handled per output row).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ortgpu.providers.cpu.jit import compiled, split_range

LANES = 16  # independent partial sums/maxima of a global pool's plane: one or two vector registers
WIDE = 64  # ... and of a long plane's, where 16 wait on each other (half the time on 56x56 planes)


@compiled
def _window_max(lo, hi, x, y, k, s, d, begins, wp, fill):
    """Planes lo..hi of y (N, C, OD, OH, OW) = max over windows of x (N, C, D, H, W): k, s, d
    are the (depth, height, width) kernel, strides and dilations, begins the begin pads, wp
    the width of a padded row (begin pad, input, end pad as far as the last window reaches).

    Indices are unsigned where they can: numba wraps a negative signed index around, and that
    check in a loop keeps it from being vectorised (2-3x slower here)."""
    c_all, d_all, h_all, w_all = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    od_all, oh_all, ow_all = y.shape[2], y.shape[3], y.shape[4]
    reach = (k[2] - 1) * d[2]
    cols = oh_all * wp - reach
    vp = np.full(oh_all * wp, fill, x.dtype)  # the window rows' maxima, one padded row per output row
    packed = s[1] == 1  # output rows read consecutive input rows: reduce them as one block
    v = np.empty(oh_all * w_all, x.dtype) if packed and wp != w_all else vp
    h = np.empty(max(cols, 1), x.dtype)  # the windows' maxima at every start in vp
    flat = x.reshape(x.size)
    yflat = y.reshape(y.size)
    pl = np.uint64(begins[2])
    wu = np.uint64(w_all)
    s2 = np.uint64(s[2])
    owu = np.uint64(ow_all)
    plane = h_all * w_all
    for q in range(lo, hi):
        for od in range(od_all):
            if packed:
                for t in range(v.size):
                    v[t] = fill
                for a in range(k[0]):
                    z = od * s[0] - begins[0] + a * d[0]
                    if z < 0 or z >= d_all:
                        continue
                    for i in range(k[1]):
                        off = i * d[1] - begins[1]
                        first = max(0, -off)
                        last = min(oh_all, h_all - off)
                        if last <= first:
                            continue
                        dst = np.uint64(first * w_all)
                        sb = np.uint64((q * d_all + z) * plane + (first + off) * w_all)
                        for t in range(np.uint64((last - first) * w_all)):
                            e = flat[sb + t]
                            v[dst + t] = e if e > v[dst + t] or e != e else v[dst + t]
                if wp != w_all:
                    for oh in range(oh_all):
                        src = np.uint64(oh * w_all)
                        dst = np.uint64(oh * wp) + pl
                        for t in range(wu):
                            vp[dst + t] = v[src + t]
            else:
                for oh in range(oh_all):
                    dst = np.uint64(oh * wp) + pl
                    first = True
                    for a in range(k[0]):
                        z = od * s[0] - begins[0] + a * d[0]
                        if z < 0 or z >= d_all:
                            continue
                        for i in range(k[1]):
                            r = oh * s[1] - begins[1] + i * d[1]
                            if r < 0 or r >= h_all:
                                continue
                            sb = np.uint64((q * d_all + z) * plane + r * w_all)
                            if first:
                                for t in range(wu):
                                    vp[dst + t] = flat[sb + t]
                                first = False
                            else:
                                for t in range(wu):
                                    e = flat[sb + t]
                                    vp[dst + t] = e if e > vp[dst + t] or e != e else vp[dst + t]
                    if first:
                        for t in range(wu):
                            vp[dst + t] = fill
            for t in range(cols):
                h[t] = vp[t]
            for j in range(1, k[2]):
                seg = vp[j * d[2]: j * d[2] + cols]
                for t in range(cols):
                    e = seg[t]
                    h[t] = e if e > h[t] or e != e else h[t]
            ob = np.uint64(((q * od_all) + od) * oh_all * ow_all)
            for oh in range(oh_all):
                hb = np.uint64(oh * wp)
                yb = ob + np.uint64(oh * ow_all)
                for t in range(owu):
                    yflat[yb + t] = h[hb + t * s2]


@compiled
def _window_mean(lo, hi, x, y, k, s, d, begins, wp, scale_d, scale_h, scale_w):
    """As _window_max with sums, each times scale_d[od] * scale_h[oh] * scale_w[ow] (one over
    the positions counted along each axis: a multiply takes 3/4 of the time of a divide here)."""
    fill = np.zeros(1, x.dtype)[0]
    c_all, d_all, h_all, w_all = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    od_all, oh_all, ow_all = y.shape[2], y.shape[3], y.shape[4]
    reach = (k[2] - 1) * d[2]
    cols = oh_all * wp - reach
    vp = np.full(oh_all * wp, fill, x.dtype)  # the window rows' sums
    packed = s[1] == 1
    v = np.empty(oh_all * w_all, x.dtype) if packed and wp != w_all else vp
    h = np.empty(max(cols, 1), x.dtype)
    flat = x.reshape(x.size)
    yflat = y.reshape(y.size)
    pl = np.uint64(begins[2])
    wu = np.uint64(w_all)
    s2 = np.uint64(s[2])
    owu = np.uint64(ow_all)
    plane = h_all * w_all
    for q in range(lo, hi):
        for od in range(od_all):
            if packed:
                for t in range(v.size):
                    v[t] = fill
                for a in range(k[0]):
                    z = od * s[0] - begins[0] + a * d[0]
                    if z < 0 or z >= d_all:
                        continue
                    for i in range(k[1]):
                        off = i * d[1] - begins[1]
                        first = max(0, -off)
                        last = min(oh_all, h_all - off)
                        if last <= first:
                            continue
                        dst = np.uint64(first * w_all)
                        sb = np.uint64((q * d_all + z) * plane + (first + off) * w_all)
                        for t in range(np.uint64((last - first) * w_all)):
                            e = flat[sb + t]
                            v[dst + t] = v[dst + t] + e
                if wp != w_all:
                    for oh in range(oh_all):
                        src = np.uint64(oh * w_all)
                        dst = np.uint64(oh * wp) + pl
                        for t in range(wu):
                            vp[dst + t] = v[src + t]
            else:
                for oh in range(oh_all):
                    dst = np.uint64(oh * wp) + pl
                    first = True
                    for a in range(k[0]):
                        z = od * s[0] - begins[0] + a * d[0]
                        if z < 0 or z >= d_all:
                            continue
                        for i in range(k[1]):
                            r = oh * s[1] - begins[1] + i * d[1]
                            if r < 0 or r >= h_all:
                                continue
                            sb = np.uint64((q * d_all + z) * plane + r * w_all)
                            if first:
                                for t in range(wu):
                                    vp[dst + t] = flat[sb + t]
                                first = False
                            else:
                                for t in range(wu):
                                    e = flat[sb + t]
                                    vp[dst + t] = vp[dst + t] + e
                    if first:
                        for t in range(wu):
                            vp[dst + t] = fill
            for t in range(cols):
                h[t] = vp[t]
            for j in range(1, k[2]):
                seg = vp[j * d[2]: j * d[2] + cols]
                for t in range(cols):
                    e = seg[t]
                    h[t] = h[t] + e
            ob = np.uint64(((q * od_all) + od) * oh_all * ow_all)
            for oh in range(oh_all):
                hb = np.uint64(oh * wp)
                yb = ob + np.uint64(oh * ow_all)
                rows = scale_d[od] * scale_h[oh]
                for t in range(owu):
                    yflat[yb + t] = h[hb + t * s2] * (rows * scale_w[t])


@compiled
def _max_with_indices(lo, hi, x, y, idx, k, s, d, begins, step, fill):
    """Planes lo..hi of y = max over windows and idx = the flat position in x of the first
    maximum in row-major window order; step = the flat index's step along (D, H, W) within a
    plane (row- or column-major).  Pad positions take part with the value fill."""
    c_all, d_all, h_all, w_all = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    od_all, oh_all, ow_all = y.shape[2], y.shape[3], y.shape[4]
    plane = d_all * h_all * w_all
    for q in range(lo, hi):
        n = q // c_all
        c = q - n * c_all
        base = q * plane
        for od in range(od_all):
            z0 = od * s[0] - begins[0]
            for oh in range(oh_all):
                r0 = oh * s[1] - begins[1]
                for ow in range(ow_all):
                    w0 = ow * s[2] - begins[2]
                    best = fill
                    where = base + z0 * step[0] + r0 * step[1] + w0 * step[2]
                    started = False
                    for a in range(k[0]):
                        z = z0 + a * d[0]
                        inz = 0 <= z < d_all
                        for i in range(k[1]):
                            r = r0 + i * d[1]
                            inr = inz and 0 <= r < h_all
                            for j in range(k[2]):
                                w = w0 + j * d[2]
                                v = x[n, c, z, r, w] if inr and 0 <= w < w_all else fill
                                if not started or v > best:
                                    best = v
                                    where = base + z * step[0] + r * step[1] + w * step[2]
                                    started = True
                    y[n, c, od, oh, ow] = best
                    idx[n, c, od, oh, ow] = where


@compiled
def _planes_mean(lo, hi, x, y, divisor):
    """y[p] = sum of the contiguous row x[p] / divisor, for rows lo..hi: partial sums in LANES
    lanes (WIDE lanes first on a long row)."""
    size = x.shape[1]
    wide = size - size % WIDE if size >= 4 * WIDE else 0
    whole = size - size % LANES
    part = np.empty(WIDE, x.dtype)
    for p in range(lo, hi):
        row = x[p]
        for t in range(LANES):
            part[t] = 0
        if wide:
            for t in range(LANES, WIDE):
                part[t] = 0
            for b in range(0, wide, WIDE):
                seg = row[b: b + WIDE]
                for t in range(WIDE):
                    part[t] += seg[t]
            for t in range(LANES):
                part[t] += (part[t + LANES] + part[t + 2 * LANES]) + part[t + 3 * LANES]
        for b in range(wide, whole, LANES):
            seg = row[b: b + LANES]
            for t in range(LANES):
                part[t] += seg[t]
        for t in range(whole, size):
            part[t - whole] += row[t]
        half = LANES // 2
        while half:  # a tree: a chain of 15 dependent adds costs more than the rest on a 6x6 plane
            for t in range(half):
                part[t] += part[t + half]
            half //= 2
        y[p] = part[0] / divisor


@compiled
def _planes_max(lo, hi, x, y):
    """y[p] = max of the contiguous float row x[p] (NaN if it holds one), for rows lo..hi."""
    size = x.shape[1]
    wide = size - size % WIDE if size >= 4 * WIDE else 0
    whole = size - size % LANES
    part = np.empty(WIDE, x.dtype)
    for p in range(lo, hi):
        row = x[p]
        for t in range(LANES):
            part[t] = -np.inf
        if wide:
            for t in range(LANES, WIDE):
                part[t] = -np.inf
            for b in range(0, wide, WIDE):
                seg = row[b: b + WIDE]
                for t in range(WIDE):
                    v = seg[t]
                    part[t] = v if v > part[t] or v != v else part[t]
            for t in range(LANES):
                for u in range(1, WIDE // LANES):
                    v = part[t + u * LANES]
                    part[t] = v if v > part[t] or v != v else part[t]
        for b in range(wide, whole, LANES):
            seg = row[b: b + LANES]
            for t in range(LANES):
                v = seg[t]
                part[t] = v if v > part[t] or v != v else part[t]
        for t in range(whole, size):
            v = row[t]
            part[t - whole] = v if v > part[t - whole] or v != v else part[t - whole]
        half = LANES // 2
        while half:
            for t in range(half):
                v = part[t + half]
                part[t] = v if v > part[t] or v != v else part[t]
            half //= 2
        y[p] = part[0]


def _as_3d(values, nd, default):
    """A per-axis list for nd spatial axes as three, the leading axes of size ``default``."""
    return tuple([default] * (3 - nd) + [int(v) for v in values])


def _volume(x, nd):
    """x (N, C, *S) viewed as (N, C, D, H, W), C-contiguous."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[:2] + (1,) * (3 - nd) + x.shape[2:])


@functools.lru_cache(maxsize=256)
def _scale(size, k, s, d, b, e, out, include_pad, dtype):
    """Per output position along one axis: one over how many of its window's positions count
    for the divisor (inside the input, or inside the explicit pads too with count_include_pad),
    at least 1 (a window with none has a zero sum)."""
    pos = (np.arange(out) * s - b)[:, None] + np.arange(k) * d
    lo, hi = (-b, size + e) if include_pad else (0, size)
    scale = np.ascontiguousarray(1.0 / np.maximum(((pos >= lo) & (pos < hi)).sum(axis=1), 1), dtype=dtype)
    scale.flags.writeable = False  # shared by every later call with this geometry
    return scale


def can_pool(x, geom) -> bool:
    """Whether the compiled windowed pools take this input and geometry: 1-3 spatial axes, no
    negative pads (which crop), a non-empty output."""
    return (1 <= x.ndim - 2 <= 3 and min(geom.begins + geom.ends) >= 0 and min(geom.out) > 0
            and x.shape[0] * x.shape[1] > 0)


def _geometry(x, geom):
    nd = x.ndim - 2
    k = _as_3d(geom.kernel, nd, 1)
    s = _as_3d(geom.strides, nd, 1)
    d = _as_3d(geom.dilations, nd, 1)
    b = _as_3d(geom.begins, nd, 0)
    out = _as_3d(geom.out, nd, 1)
    return nd, k, s, d, b, out


def _lowest(dtype):
    return dtype.type(np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf)


def _padded_width(x, geom, out):
    """The row width the windowed bodies pad to: room for the input after the begin pad and for
    the last window."""
    k, s, d, b = geom.kernel[-1], geom.strides[-1], geom.dilations[-1], geom.begins[-1]
    return max(b + x.shape[-1], (out - 1) * s + (k - 1) * d + 1)


def _work(v, out, k):
    """The work per plane for the thread split, in split_range's units (multiply-adds of a
    convolution): a quarter of the vectorised element operations (one thread's share has to
    take about 40 us before a second thread pays for its hand-off)."""
    return out[0] * (k[0] * k[1] + k[2] + 1) * out[1] * v.shape[4] / 4


def _one_window(x, geom) -> bool:
    """Whether geom has one window, over all of x (then a pool is a global pool: the window
    passes at every output row cost more than the pooling when the planes are small)."""
    return all(o == 1 and d == 1 and k - b >= size for o, d, k, b, size in
               zip(geom.out, geom.dilations, geom.kernel, geom.begins, x.shape[2:]))


def max_pool(x: np.ndarray, geom) -> np.ndarray:
    """MaxPool of x (N, C, *S; float32, float64, int8 or uint8) over the windows of geom."""
    if _one_window(x, geom) and x.dtype.kind == "f" and x.size:
        return global_max(x)
    nd, k, s, d, b, out = _geometry(x, geom)
    v = _volume(x, nd)
    y = np.empty(v.shape[:2] + out, dtype=v.dtype)
    split_range(_window_max, v.shape[0] * v.shape[1], _work(v, out, k), v, y, k, s, d, b,
                _padded_width(x, geom, out[2]), _lowest(v.dtype))
    return y.reshape(x.shape[:2] + tuple(geom.out))


def max_pool_with_indices(x: np.ndarray, geom, storage_order: int):
    """MaxPool and its Indices (flat positions in x, spatial axes row-major, or column-major
    with storage_order=1)."""
    nd, k, s, d, b, out = _geometry(x, geom)
    v = _volume(x, nd)
    depth, height = v.shape[2], v.shape[3]
    step = (1, depth, depth * height) if storage_order else (height * v.shape[4], v.shape[4], 1)
    y = np.empty(v.shape[:2] + out, dtype=v.dtype)
    idx = np.empty(v.shape[:2] + out, dtype=np.int64)
    work = 4 * math.prod(out) * math.prod(k)
    split_range(_max_with_indices, v.shape[0] * v.shape[1], work, v, y, idx, k, s, d, b, step,
                _lowest(v.dtype))
    shape = x.shape[:2] + tuple(geom.out)
    return y.reshape(shape), idx.reshape(shape)


def average_pool(x: np.ndarray, geom, count_include_pad: bool) -> np.ndarray:
    """AveragePool of x (N, C, *S; float32 or float64) over the windows of geom; the divisor
    counts the explicit pads with count_include_pad, the ceil_mode pads never."""
    if _one_window(x, geom) and x.size:
        counted = [min(size + e if count_include_pad else size, k - b) - (-b if count_include_pad else 0)
                   for size, k, b, e in zip(x.shape[2:], geom.kernel, geom.begins, geom.ends)]
        return _global(_planes_mean, x, x.dtype.type(math.prod(counted)))
    nd, k, s, d, b, out = _geometry(x, geom)
    v = _volume(x, nd)
    e = _as_3d(geom.ends, nd, 0)
    scales = [_scale(v.shape[2 + i], k[i], s[i], d[i], b[i], e[i], out[i], bool(count_include_pad), v.dtype)
              for i in range(3)]
    y = np.empty(v.shape[:2] + out, dtype=v.dtype)
    split_range(_window_mean, v.shape[0] * v.shape[1], _work(v, out, k), v, y, k, s, d, b,
                _padded_width(x, geom, out[2]), *scales)
    return y.reshape(x.shape[:2] + tuple(geom.out))


def _global(body, x: np.ndarray, *args) -> np.ndarray:
    rows = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], -1)
    y = np.empty(rows.shape[0], dtype=x.dtype)
    split_range(body, rows.shape[0], rows.shape[1], rows, y, *args)
    return y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def global_mean(x: np.ndarray) -> np.ndarray:
    """GlobalAveragePool of x (N, C, *S; float32 or float64, S not empty): size-1 spatial axes."""
    return _global(_planes_mean, x, x.dtype.type(math.prod(x.shape[2:])))


def global_max(x: np.ndarray) -> np.ndarray:
    """GlobalMaxPool of x (N, C, *S; float32 or float64, S not empty): size-1 spatial axes."""
    return _global(_planes_max, x)
