"""Resize and Upsample: separable nearest / linear / cubic resampling, one axis at a time.

Per resized axis, the host computes which input positions ("taps") feed each output
position and with which weights (small (out_len, taps) tables in float64); the array
module then gathers along that axis and sums the weighted taps.
"""
import math
from typing import NamedTuple

import numpy as np

from ortgpu.providers.cpu import jit, resize_compiled
from ortgpu.providers.dtype_sets import BOOL, CUPY, FLOAT, INDEX, STANDARD, STRING
from ortgpu.providers.registry import HOST_ROUND_TRIP, kernel


def _source_coords(ctm, out_len, in_len, scale, roi_lo, roi_hi):
    """Output indices mapped to (fractional) input coordinates, per coordinate_transformation_mode.

    Like the onnx reference (and unlike onnxruntime), align_corners divides by the fractional
    target width scale * in_len, which differs from out_len when scales do not divide evenly.
    The arithmetic is float32, as in onnxruntime, so that nearest rounding ties break alike.
    """
    f = np.float32
    y = np.arange(out_len, dtype=f)
    scale, in_len, roi_lo, roi_hi = f(scale), f(in_len), f(roi_lo), f(roi_hi)
    width = scale * in_len
    if ctm == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = f(out_len) / width
        return in_len / 2 * (1 - adjustment) + (y + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len, f)
    if ctm == "align_corners":
        return y * (in_len - 1) / (width - 1) if width != 1 else np.zeros(out_len, f)
    if ctm == "asymmetric":
        return y / scale
    if ctm == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if ctm == "tf_crop_and_resize":
        if out_len > 1:
            return roi_lo * (in_len - 1) + y * (roi_hi - roi_lo) * (in_len - 1) / f(out_len - 1)
        return np.full(out_len, f(0.5) * (roi_lo + roi_hi) * (in_len - 1), f)
    raise ValueError(f"Resize: unknown coordinate_transformation_mode '{ctm}'")


def _nearest_index(x, nearest_mode, downsampling):
    """The input index nearest_mode picks for each coordinate in x."""
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    if nearest_mode == "legacy":  # Upsample / Resize-10: floor when enlarging, ceil when shrinking
        return np.ceil(x) if downsampling else np.floor(x)
    raise ValueError(f"Resize: unknown nearest_mode '{nearest_mode}'")


def _cubic_kernel(d, a):
    """Keys' cubic convolution kernel at distances d."""
    d = np.abs(d)
    d2, d3 = d * d, d * d * d
    near = (a + 2) * d3 - (a + 3) * d2 + 1
    far = a * d3 - 5 * a * d2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _axis_taps(mode, x, in_len, scale, *, cubic_a, exclude_outside, antialias):
    """(indices, weights) of shape (out_len, taps) for linear / cubic interpolation at x."""
    support = 1 if mode == "linear" else 2
    stretch = min(scale, 1.0) if antialias else 1.0   # antialias widens the filter when shrinking
    first = int(math.floor(-support / stretch)) + 1   # first tap offset relative to `base`
    ntaps = 2 - 2 * first
    base = np.ceil(x) - 1                              # x - base lies in (0, 1]
    taps = base[:, None] + np.arange(first, first + ntaps)[None, :]
    dist = (taps - x[:, None]) * stretch
    if mode == "linear":
        w = np.clip(1 - np.abs(dist), 0, 1)
    else:
        w = _cubic_kernel(dist, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((taps < 0) | (taps >= in_len), 0.0, w)
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot == 0, 1.0, tot)
    idx = np.clip(taps, 0, in_len - 1).astype(np.int64)
    return idx, w


def axis_table(p, out_len, in_len, scale, roi_lo, roi_hi):
    """How one axis is resampled: (indices, weights, outside).

    indices (out_len, taps) int64 are the input positions feeding each output position (one
    tap for nearest), weights (out_len, taps) float64 their weights (None for nearest), and
    outside (out_len,) bool marks the positions tf_crop_and_resize fills with
    extrapolation_value (None for the other modes)."""
    x = _source_coords(p["ctm"], out_len, in_len, scale, roi_lo, roi_hi).astype(np.float64)
    if p["mode"] == "nearest":
        idx = np.clip(_nearest_index(x, p["nearest_mode"], scale < 1), 0, in_len - 1).astype(np.int64)
        idx, w = idx[:, None], None
    else:
        idx, w = _axis_taps(p["mode"], x, in_len, scale, cubic_a=p["cubic_a"],
                            exclude_outside=p["exclude_outside"], antialias=p["antialias"])
    outside = (x < 0) | (x > in_len - 1) if p["ctm"] == "tf_crop_and_resize" else None
    return idx, w, outside


def _resample_axis(xp, data, axis, table, p):
    """Resize `data` along one axis by its axis_table."""
    idx, w, outside = table
    out_len = idx.shape[0]
    if w is None:
        out = xp.take(data, xp.asarray(idx[:, 0]), axis=axis)
    else:
        n = idx.shape[1]
        g = xp.take(data, xp.asarray(idx.reshape(-1)), axis=axis)
        g = g.reshape(data.shape[:axis] + (out_len, n) + data.shape[axis + 1:])
        wshape = (out_len, n) + (1,) * (data.ndim - axis - 1)
        out = (g * xp.asarray(w.reshape(wshape), dtype=data.dtype)).sum(axis=axis + 1)
    if outside is not None and outside.any():
        mshape = (out_len,) + (1,) * (data.ndim - axis - 1)
        fill = xp.asarray(p["extrapolation_value"], dtype=out.dtype)
        out = xp.where(xp.asarray(outside.reshape(mshape)), fill, out)
    return out


def _present(t):
    return t is not None and t.size > 0


def _host(t):
    """A small tensor input as a NumPy array: roi, scales and sizes are declared host inputs,
    so they arrive as NumPy arrays on every provider."""
    return np.asarray(t)


class ResizePlan(NamedTuple):
    """The resized axes in the order they are resampled and, per axis of X, the output
    length, the scale and the roi bounds (0 and 1 unless tf_crop_and_resize), and whether
    the axis is left as it is (not resized, or resized to itself)."""
    axes: tuple
    out_shape: tuple
    scales: tuple
    roi_lo: tuple
    roi_hi: tuple
    identity: tuple


def resize_plan(in_shape, roi, scales, sizes, p, axes=None, keep_aspect_ratio_policy="stretch") -> ResizePlan:
    """Work out per-axis output sizes, scales and roi from Resize's inputs and attributes."""
    r = len(in_shape)
    axes = list(range(r)) if axes is None else [a + r if a < 0 else a for a in axes]
    scale_of = [1.0] * r
    out_shape = list(in_shape)
    if _present(sizes):
        sz = [int(s) for s in _host(sizes).reshape(-1)]
        if len(sz) != len(axes):
            raise ValueError(f"Resize: 'sizes' has {len(sz)} values for {len(axes)} axes")
        ratios = [sz[i] / in_shape[a] for i, a in enumerate(axes)]
        if keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            s = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
            for a in axes:
                scale_of[a] = s
                out_shape[a] = int(s * in_shape[a] + 0.5)
        elif keep_aspect_ratio_policy == "stretch":
            for i, a in enumerate(axes):
                scale_of[a] = ratios[i]
                out_shape[a] = sz[i]
        else:
            raise ValueError(f"Resize: unknown keep_aspect_ratio_policy '{keep_aspect_ratio_policy}'")
    elif _present(scales):
        sc = [float(s) for s in _host(scales).astype(np.float32).reshape(-1)]
        if len(sc) != len(axes):
            raise ValueError(f"Resize: 'scales' has {len(sc)} values for {len(axes)} axes")
        for i, a in enumerate(axes):
            if sc[i] <= 0:
                raise ValueError(f"Resize: scales must be positive, got {sc[i]}")
            scale_of[a] = sc[i]
            out_shape[a] = int(math.floor(in_shape[a] * sc[i]))
    else:
        raise ValueError("Resize: one of 'scales' and 'sizes' must be given")

    lo, hi = [0.0] * r, [1.0] * r
    if p["ctm"] == "tf_crop_and_resize":
        if not _present(roi):
            raise ValueError("Resize: tf_crop_and_resize needs the 'roi' input")
        rv = _host(roi).astype(np.float64).reshape(-1)
        if len(rv) != 2 * len(axes):
            raise ValueError(f"Resize: 'roi' has {len(rv)} values, expected {2 * len(axes)}")
        for i, a in enumerate(axes):
            lo[a], hi[a] = float(rv[i]), float(rv[len(axes) + i])
    identity = tuple(a not in axes or (out_shape[a] == in_shape[a] and scale_of[a] == 1.0 and lo[a] == 0.0
                                       and hi[a] == 1.0 and p["ctm"] != "tf_crop_and_resize")
                     for a in range(r))
    return ResizePlan(tuple(axes), tuple(out_shape), tuple(scale_of), tuple(lo), tuple(hi), identity)


def _whole_factors(plan: ResizePlan, p, shape):
    """(kh, kw) when a nearest resize only enlarges the last two axes by whole factors with every
    output index picking index // factor (true of the usual coordinate and rounding modes for
    factor 2), else None."""
    r = len(shape)
    factors = []
    for a in range(r):
        if plan.identity[a]:
            if a >= r - 2:
                factors.append(1)
            continue
        if a < r - 2 or plan.out_shape[a] % shape[a]:
            return None
        k = plan.out_shape[a] // shape[a]
        idx, _, outside = axis_table(p, plan.out_shape[a], shape[a], plan.scales[a], plan.roi_lo[a], plan.roi_hi[a])
        if outside is not None or not np.array_equal(idx[:, 0], np.arange(plan.out_shape[a]) // k):
            return None
        factors.append(k)
    return tuple(factors) if factors != [1, 1] else None


def _resize(ctx, X, roi, scales, sizes, p, axes=None, keep_aspect_ratio_policy="stretch"):
    """Shared Resize driver: work out per-axis output sizes and scales, then resample each axis."""
    xp = ctx.xp
    plan = resize_plan(X.shape, roi, scales, sizes, p, axes, keep_aspect_ratio_policy)
    is_float = np.issubdtype(X.dtype, np.floating) and X.dtype.itemsize >= 4
    if p["mode"] == "nearest" and xp is np and X.ndim >= 2 and jit.enabled() and resize_compiled.takes(X):
        factors = _whole_factors(plan, p, X.shape)
        if factors is not None:
            return resize_compiled.nearest_repeat(X, *factors)
    work = X
    if p["mode"] != "nearest" and not is_float:
        work = X.astype(np.float32)  # float16 / bfloat16 / integers are interpolated in float32
    for a in plan.axes:
        if plan.identity[a]:
            continue
        table = axis_table(p, plan.out_shape[a], X.shape[a], plan.scales[a], plan.roi_lo[a], plan.roi_hi[a])
        work = _resample_axis(xp, work, a, table, p)
    if work.dtype != X.dtype:
        if np.issubdtype(X.dtype, np.integer):
            info = np.iinfo(X.dtype)
            work = xp.clip(xp.rint(work), info.min, info.max)
        work = work.astype(X.dtype)
    return work


def _params(mode, ctm="half_pixel", nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75,
            exclude_outside=0, extrapolation_value=0.0, antialias=0):
    mode = {"bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"Resize: unknown mode '{mode}'")
    return {"mode": mode, "ctm": ctm, "nearest_mode": nearest_mode, "cubic_a": float(cubic_coeff_a),
            "exclude_outside": bool(exclude_outside), "extrapolation_value": float(extrapolation_value),
            "antialias": bool(antialias) and mode != "nearest"}


@kernel("Resize", since=10, types={"T": CUPY | STRING}, host_inputs=(1,), capturable=HOST_ROUND_TRIP)
def Resize_10(ctx, X, scales, *, mode="nearest"):
    """Resize-10: asymmetric coordinates; nearest floors when enlarging and ceils when shrinking."""
    return _resize(ctx, X, None, scales, None, _params(mode, "asymmetric", "legacy"))


@kernel("Resize", since=(11, 13), types={"T1": STANDARD, "T2": FLOAT}, host_inputs=(1, 2, 3),
        capturable=HOST_ROUND_TRIP)
def Resize_11(ctx, X, roi=None, scales=None, sizes=None, *, coordinate_transformation_mode="half_pixel",
              cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, mode="nearest",
              nearest_mode="round_prefer_floor"):
    """Resize-11/13: scales or sizes over every axis; roi only matters for tf_crop_and_resize."""
    p = _params(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside,
                extrapolation_value)
    return _resize(ctx, X, roi, scales, sizes, p)


@kernel("Resize", since=(18, 19), types={"T1": STANDARD, "T2": FLOAT}, host_inputs=(1, 2, 3),
        capturable=HOST_ROUND_TRIP)
def Resize(ctx, X, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    """Resize-18/19: adds axes, antialias and keep_aspect_ratio_policy (19: half_pixel_symmetric)."""
    p = _params(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside,
                extrapolation_value, antialias)
    return _resize(ctx, X, roi, scales, sizes, p, axes=axes, keep_aspect_ratio_policy=keep_aspect_ratio_policy)


@kernel("Upsample", since=1, types={"T": FLOAT | INDEX | BOOL}, capturable=HOST_ROUND_TRIP)
def Upsample_1(ctx, X, *, height_scale, width_scale, mode="nearest"):
    """Upsample-1 (experimental): NCHW input scaled by height_scale and width_scale."""
    scales = np.array([1.0, 1.0, height_scale, width_scale], dtype=np.float32)
    return _resize(ctx, X, None, scales, None, _params(mode, "asymmetric", "legacy"))


@kernel("Upsample", since=7, types={"T": CUPY | STRING}, capturable=HOST_ROUND_TRIP)
def Upsample_7(ctx, X, *, mode="nearest", scales=()):
    """Upsample-7: scales as an attribute; asymmetric coordinates, nearest rounds down."""
    return _resize(ctx, X, None, np.asarray(scales, dtype=np.float32), None,
                   _params(mode, "asymmetric", "legacy"))


@kernel("Upsample", since=(9, 10), types={"T": CUPY | STRING}, host_inputs=(1,), capturable=HOST_ROUND_TRIP)
def Upsample(ctx, X, scales, *, mode="nearest"):
    """Upsample-9/10: scales as an input; same sampling as Upsample-7."""
    return _resize(ctx, X, None, scales, None, _params(mode, "asymmetric", "legacy"))
