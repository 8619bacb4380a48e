"""Detection ops: NonMaxSuppression, RoiAlign and MaxRoiPool."""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.kernels.conv import compute_dtype
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.registry import DATA_DEPENDENT, HOST_ROUND_TRIP, kernel


def host(a):
    """A small array on the host as NumPy (CuPy arrays copied back)."""
    return np.asarray(a.get() if hasattr(a, "get") else a)


def scalar(a, default, cast):
    if a is None or a.size == 0:
        return default
    return cast(host(a).reshape(-1)[0])


@kernel("NonMaxSuppression", since=(10, 11), provider="cpu", types={}, capturable=DATA_DEPENDENT)
def NonMaxSuppression(ctx, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                      score_threshold=None, *, center_point_box=0):
    """Greedy per-class NMS: keep score > threshold, drop boxes with IoU > iou_threshold; (k, 3) int64."""
    max_out = scalar(max_output_boxes_per_class, 0, int)
    iou_thr = scalar(iou_threshold, 0.0, float)
    score_thr = scalar(score_threshold, None, float)
    b = host(boxes).astype(np.float64)
    s = host(scores).astype(np.float64)
    if center_point_box:
        half_w, half_h = b[..., 2] / 2, b[..., 3] / 2
        y1, x1 = b[..., 1] - half_h, b[..., 0] - half_w
        y2, x2 = b[..., 1] + half_h, b[..., 0] + half_w
    else:  # corners may come in either order
        y1 = np.minimum(b[..., 0], b[..., 2])
        y2 = np.maximum(b[..., 0], b[..., 2])
        x1 = np.minimum(b[..., 1], b[..., 3])
        x2 = np.maximum(b[..., 1], b[..., 3])
    area = (y2 - y1) * (x2 - x1)
    selected = []
    if max_out > 0:
        for bi in range(s.shape[0]):
            for ci in range(s.shape[1]):
                sc = s[bi, ci]
                cand = np.arange(sc.shape[0]) if score_thr is None else np.nonzero(sc > score_thr)[0]
                cand = cand[np.argsort(-sc[cand], kind="stable")]
                kept = 0
                while cand.size and kept < max_out:
                    top, rest = cand[0], cand[1:]
                    selected.append((bi, ci, top))
                    kept += 1
                    ih = np.minimum(y2[bi, top], y2[bi, rest]) - np.maximum(y1[bi, top], y1[bi, rest])
                    iw = np.minimum(x2[bi, top], x2[bi, rest]) - np.maximum(x1[bi, top], x1[bi, rest])
                    inter = np.maximum(ih, 0) * np.maximum(iw, 0)
                    union = area[bi, top] + area[bi, rest] - inter
                    ok = (area[bi, top] > 0) & (area[bi, rest] > 0) & (union > 0)
                    iou = np.where(ok, inter / np.where(union > 0, union, 1), 0.0)
                    cand = rest[iou <= iou_thr]
    return np.array(selected, dtype=np.int64).reshape(-1, 3)


def axis_samples(xp, start, bin_size, pooled, grid, size, cdt):
    """Per output bin and sample along one axis: low/high indices and their bilinear weights."""
    pos = (start + np.arange(pooled).reshape(-1, 1) * bin_size
           + (np.arange(grid).reshape(1, -1) + 0.5) * bin_size / grid)  # (pooled, grid)
    outside = (pos < -1.0) | (pos > size)
    pos = np.maximum(pos, 0)
    low = np.floor(pos).astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    pos = np.where(edge, low, pos)
    frac = pos - low
    w_low = np.where(outside, 0, 1 - frac)
    w_high = np.where(outside, 0, frac)
    return (xp.asarray(low), xp.asarray(high), xp.asarray(w_low.astype(cdt)),
            xp.asarray(w_high.astype(cdt)))


@kernel("RoiAlign", since=(10, 16, 22), types={"T1": FLOATS, "T2": frozenset({"int64"})},
        capturable=HOST_ROUND_TRIP)
def RoiAlign(ctx, X, rois, batch_indices, *, coordinate_transformation_mode="output_half_pixel",
             mode="avg", output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """Bilinear-sampled average (or onnxruntime's max of weighted corners) over each ROI bin."""
    xp = ctx.xp
    n, c, h, w = X.shape
    cdt = compute_dtype(X.dtype)
    x = X.astype(cdt, copy=False)
    r = host(rois).astype(np.float64)
    bidx = host(batch_indices).astype(np.int64)
    if ctx.opset < 16:
        coordinate_transformation_mode = "output_half_pixel"
    half = coordinate_transformation_mode == "half_pixel"
    offset = 0.5 if half else 0.0
    oh, ow = int(output_height), int(output_width)
    out = xp.zeros((r.shape[0], c, oh, ow), dtype=cdt)
    for i in range(r.shape[0]):
        x1, y1, x2, y2 = (r[i] * spatial_scale - offset).tolist()
        roi_w, roi_h = x2 - x1, y2 - y1
        if not half:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / ow)
        if gh <= 0 or gw <= 0:
            continue
        ylo, yhi, wylo, wyhi = axis_samples(xp, y1, bin_h, oh, gh, h, cdt)
        xlo, xhi, wxlo, wxhi = axis_samples(xp, x1, bin_w, ow, gw, w, cdt)
        img = x[int(bidx[i])]
        terms = []
        for yi, wy in ((ylo, wylo), (yhi, wyhi)):
            rows = img[:, yi]  # (C, oh, gh, W)
            for xi, wx in ((xlo, wxlo), (xhi, wxhi)):
                v = rows[:, :, :, xi]  # (C, oh, gh, ow, gw)
                terms.append(v * (wy[:, :, None, None] * wx[None, None]))
        if mode == "max":
            best = terms[0]
            for t in terms[1:]:
                best = xp.maximum(best, t)
            out[i] = best.max(axis=(2, 4))
        else:
            out[i] = (terms[0] + terms[1] + terms[2] + terms[3]).sum(axis=(2, 4)) / max(gh * gw, 1)
    return out.astype(X.dtype, copy=False)


def round_half_away(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@kernel("MaxRoiPool", since=(1, 22), types={"T": FLOATS}, capturable=HOST_ROUND_TRIP,
        host_only="a Python loop per region of interest that reads box coordinates on the host")
def MaxRoiPool(ctx, X, rois, *, pooled_shape=None, spatial_scale=1.0):
    """Max over each of pooled_shape bins of every ROI (batch_id, x1, y1, x2, y2); empty bins give 0."""
    xp = ctx.xp
    n, c, h, w = X.shape
    ph, pw = (int(v) for v in pooled_shape)
    r = host(rois).astype(np.float64)
    out = xp.zeros((r.shape[0], c, ph, pw), dtype=X.dtype)
    for i in range(r.shape[0]):
        b = int(r[i, 0])
        x1, y1, x2, y2 = (round_half_away(v * spatial_scale) for v in r[i, 1:].tolist())
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bh, bw = roi_h / ph, roi_w / pw
        for py in range(ph):
            hs = min(max(math.floor(py * bh) + y1, 0), h)
            he = min(max(math.ceil((py + 1) * bh) + y1, 0), h)
            for px in range(pw):
                ws = min(max(math.floor(px * bw) + x1, 0), w)
                we = min(max(math.ceil((px + 1) * bw) + x1, 0), w)
                if he > hs and we > ws:
                    out[i, :, py, px] = X[b, :, hs:he, ws:we].max(axis=(1, 2))
    return out
