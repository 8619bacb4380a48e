"""Raw CUDA launchers for Resize and Upsample (source: resize.cu).

They handle resizing of the last two axes (2-D spatial NCHW, or a 1-D resize of the last
axis): the leading axes must be left as they are.  The plan and the per-axis tables come
from the shared kernel (``providers/kernels/resize.py``: ``resize_plan`` and
``axis_table``), so every coordinate_transformation_mode, nearest_mode, roi and
extrapolation rule is the shared one; the kernels only gather and weigh.  Nearest moves
elements of any 1, 2, 4 or 8-byte type; linear, cubic and antialiased filters take the
float types (float16 computed in float32).  Other cases (integer interpolation, leading
axes resized) go to the shared kernel.

The tables are small (output length x taps per axis), cached on the host per geometry and
uploaded once per session and content (providers/cuda/device_tables.py): after the warm-up
runs a launch copies nothing from the host, so Resize and Upsample run inside a CUDA-graph
capture.  The shared kernel, where it takes over, runs with the same cached uploads.

Never run on a GPU yet: written, compile-checked and run on the host emulator only.
"""
from __future__ import annotations

import copy
import functools
import math

import numpy as np

from ortgpu.providers.cuda.device_tables import CachedUploads, tables_of
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import resize as shared
from ortgpu.providers.dtype_sets import BOOL, CUPY, FLOAT, INDEX
from ortgpu.providers.registry import kernel

SOURCE = "resize.cu"


def nearest_name(width: int) -> str:
    return f"resize_nearest<{cu.WIDTH_CTYPE[width]}>"


def taps_name(dtype) -> str:
    return f"resize_taps<{cu.CTYPE[np.dtype(dtype)]}>"


UNIT = cu.declare(SOURCE, "all", [nearest_name(w) for w in cu.WIDTH_CTYPE]
                  + [taps_name(dt) for dt in cu.FLOAT_TYPES])


# ---------------------------------------------------------------- host-side tables

@functools.lru_cache(maxsize=256)
def kernel_table(params: tuple, identity: bool, out_len: int, in_len: int, scale: float,
                 roi_lo: float, roi_hi: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(indices, weights) of one axis as the kernels read them: indices (out_len, taps)
    int64 with the first index of a position outside tf_crop_and_resize's region set to -1,
    weights (out_len, taps) float64 or None for nearest.  An identity axis is one tap of
    weight 1.  ``params`` is the shared kernel's parameter dict as sorted items."""
    p = dict(params)
    if identity:
        idx = np.arange(out_len, dtype=np.int64)[:, None]
        w = None if p["mode"] == "nearest" else np.ones((out_len, 1))
    else:
        idx, w, outside = shared.axis_table(p, out_len, in_len, scale, roi_lo, roi_hi)
        if outside is not None:
            idx = idx.copy()
            idx[outside, 0] = -1
    idx.setflags(write=False)
    if w is not None:
        w.setflags(write=False)
    return idx, w


def unchanged_axis(plan: shared.ResizePlan, params: tuple, axis: int, in_len: int) -> bool:
    """True when resampling ``axis`` by ``plan`` gives back its input: the shared kernel
    skips it, or (tf_crop_and_resize over the whole axis) its table picks each position
    itself with weight 1 and nothing else (the kernels then skip it too; only an inf or
    NaN input, which the shared kernel would multiply by the 0 weights, tells them apart)."""
    if plan.identity[axis]:
        return True
    if plan.out_shape[axis] != in_len:
        return False
    idx, w = kernel_table(params, False, in_len, in_len, plan.scales[axis], plan.roi_lo[axis], plan.roi_hi[axis])
    rows = np.arange(in_len)
    if w is None:
        return bool((idx[:, 0] == rows).all())
    on = idx == rows[:, None]
    return bool((np.where(on, w, 0).sum(axis=1) == 1).all() and (np.where(on, 0, w) == 0).all())


def handles(plan: shared.ResizePlan, in_shape, dtype, p: dict) -> bool:
    """True when the kernels cover this resize: the axes before the last two are unchanged,
    one of the last two changes, and the element type suits the mode."""
    rank = len(in_shape)
    params = tuple(sorted(p.items()))
    if rank == 0 or all(plan.identity):
        return False
    if not all(unchanged_axis(plan, params, a, in_shape[a]) for a in range(rank - 2)):
        return False
    dt = np.dtype(dtype)
    return cu.movable(dt) if p["mode"] == "nearest" else dt in cu.FLOAT_TYPES


def _hw(shape):
    """(planes, H, W) of a shape whose last two axes are resized (H = 1 for rank 1)."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    return math.prod(shape[:-2]), shape[-2], shape[-1]


# ---------------------------------------------------------------- launch

def run_resize(X, plan: shared.ResizePlan, p: dict, tables=None):
    """X resized by ``plan`` on the GPU, or None when not handled here; ``tables``: the
    DeviceTables its index and weight tables are uploaded through."""
    if not handles(plan, X.shape, X.dtype, p):
        return None
    import cupy

    up = functools.partial((tables if tables is not None else tables_of(None)).upload, cupy)
    dt = X.dtype
    if X.size == 0 or math.prod(plan.out_shape) == 0:
        return None   # nothing to compute: the shared kernel's empty (or error) result
    out = cupy.empty(plan.out_shape, dtype=dt)
    params = tuple(sorted(p.items()))
    tables = []
    for a in range(max(X.ndim - 2, 0), X.ndim):
        tables.append(kernel_table(params, plan.identity[a], plan.out_shape[a], X.shape[a],
                                   plan.scales[a], plan.roi_lo[a], plan.roi_hi[a]))
    if X.ndim == 1:   # the missing H axis: one row, kept
        tables.insert(0, kernel_table(params, True, 1, 1, 1.0, 0.0, 1.0))
    (yidx, yw), (xidx, xw) = tables
    planes, in_h, in_w = _hw(X.shape)
    _, out_h, out_w = _hw(plan.out_shape)
    x = cupy.ascontiguousarray(X)
    n = out.size
    head = (x, out, np.int64(n), np.int64(in_h), np.int64(in_w), np.int64(out_h), np.int64(out_w))
    if p["mode"] == "nearest":
        bits = np.dtype(f"u{dt.itemsize}")
        fill = np.asarray(p["extrapolation_value"]).astype(dt).reshape(1).view(bits)[0]
        fn = cu.function(UNIT, nearest_name(dt.itemsize))
        args = head + (up(yidx[:, 0]), up(xidx[:, 0]), fill)
    else:
        cdt = cu.compute_scalar(dt, 0).dtype
        fn = cu.function(UNIT, taps_name(dt))
        args = head + (up(yidx), up(yw, cdt), np.int32(yidx.shape[1]),
                       up(xidx), up(xw, cdt), np.int32(xidx.shape[1]),
                       cu.compute_scalar(dt, p["extrapolation_value"]))
    cu.launch_elementwise(fn, n, args)
    return out


def _resize(ctx, X, roi, scales, sizes, p, axes=None, keep_aspect_ratio_policy="stretch"):
    """The CUDA result, or None for the shared kernel."""
    if not cu.on_device(ctx, X):
        return None
    plan = shared.resize_plan(X.shape, roi, scales, sizes, p, axes, keep_aspect_ratio_policy)
    return run_resize(X, plan, p, tables_of(ctx))


def _uploading_once(ctx):
    """``ctx`` for the shared kernel: on the device, its host tables go through the
    provider's DeviceTables (uploaded once, so the fallback is capturable too)."""
    if ctx.xp is np:
        return ctx
    out = copy.copy(ctx)
    out.xp = CachedUploads(ctx.xp, tables_of(ctx))
    return out


# ---------------------------------------------------------------- registrations

@kernel("Resize", since=10, provider="cuda", types={"T": CUPY}, host_inputs=(1,), capturable=True)
def Resize_10(ctx, X, scales, *, mode="nearest"):
    """Resize-10: asymmetric coordinates, legacy nearest rounding (raw CUDA for H, W)."""
    y = _resize(ctx, X, None, scales, None, shared._params(mode, "asymmetric", "legacy"))
    return y if y is not None else shared.Resize_10(_uploading_once(ctx), X, scales, mode=mode)


@kernel("Resize", since=(11, 13), provider="cuda", types={"T1": CUPY, "T2": FLOAT}, host_inputs=(1, 2, 3),
        capturable=True)
def Resize_11(ctx, X, roi=None, scales=None, sizes=None, *, coordinate_transformation_mode="half_pixel",
              cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, mode="nearest",
              nearest_mode="round_prefer_floor"):
    """Resize-11/13 (raw CUDA when only H and W change)."""
    p = shared._params(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside,
                       extrapolation_value)
    y = _resize(ctx, X, roi, scales, sizes, p)
    if y is not None:
        return y
    return shared.Resize_11(_uploading_once(ctx), X, roi, scales, sizes,
                            coordinate_transformation_mode=coordinate_transformation_mode,
                            cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                            extrapolation_value=extrapolation_value, mode=mode, nearest_mode=nearest_mode)


@kernel("Resize", since=(18, 19), provider="cuda", types={"T1": CUPY, "T2": FLOAT}, host_inputs=(1, 2, 3),
        capturable=True)
def Resize(ctx, X, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    """Resize-18/19 with axes, antialias and keep_aspect_ratio_policy (raw CUDA when only H and W change)."""
    p = shared._params(mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside,
                       extrapolation_value, antialias)
    y = _resize(ctx, X, roi, scales, sizes, p, axes, keep_aspect_ratio_policy)
    if y is not None:
        return y
    return shared.Resize(_uploading_once(ctx), X, roi, scales, sizes, antialias=antialias, axes=axes,
                         coordinate_transformation_mode=coordinate_transformation_mode,
                         cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                         extrapolation_value=extrapolation_value, keep_aspect_ratio_policy=keep_aspect_ratio_policy,
                         mode=mode, nearest_mode=nearest_mode)


@kernel("Upsample", since=1, provider="cuda", types={"T": FLOAT | INDEX | BOOL}, capturable=True)
def Upsample_1(ctx, X, *, height_scale, width_scale, mode="nearest"):
    """Upsample-1: NCHW scaled by height_scale and width_scale (raw CUDA)."""
    scales = np.array([1.0, 1.0, height_scale, width_scale], dtype=np.float32)
    y = _resize(ctx, X, None, scales, None, shared._params(mode, "asymmetric", "legacy"))
    return y if y is not None else shared.Upsample_1(_uploading_once(ctx), X, height_scale=height_scale,
                                                     width_scale=width_scale, mode=mode)


@kernel("Upsample", since=7, provider="cuda", types={"T": CUPY}, capturable=True)
def Upsample_7(ctx, X, *, mode="nearest", scales=()):
    """Upsample-7: scales as an attribute (raw CUDA when only H and W change)."""
    y = _resize(ctx, X, None, np.asarray(scales, dtype=np.float32), None,
                shared._params(mode, "asymmetric", "legacy"))
    return y if y is not None else shared.Upsample_7(_uploading_once(ctx), X, mode=mode, scales=scales)


@kernel("Upsample", since=(9, 10), provider="cuda", types={"T": CUPY}, host_inputs=(1,),
        capturable=True)
def Upsample(ctx, X, scales, *, mode="nearest"):
    """Upsample-9/10: scales as an input (raw CUDA when only H and W change)."""
    y = _resize(ctx, X, None, scales, None, shared._params(mode, "asymmetric", "legacy"))
    return y if y is not None else shared.Upsample(_uploading_once(ctx), X, scales, mode=mode)
