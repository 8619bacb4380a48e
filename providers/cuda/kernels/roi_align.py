"""Raw CUDA launcher for RoiAlign (source: roi_align.cu): 4-D NCHW input of float16, float32
or float64, one thread per output element, no host loop over the regions.  Batch indices
out of range are refused as the shared kernel refuses them: a device flag read when the run
ends (providers/cuda/error_flags.py; at once when no provider runs the kernel), so no sync
per launch and the launch can be captured; other cases go to the shared kernel of
``providers/kernels/detection.py``.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.error_flags import flags_of
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import detection as shared
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.registry import kernel

SOURCE = "roi_align.cu"
UNIT = cu.declare(SOURCE, "all", [f"roi_align<{cu.CTYPE[dt]}>" for dt in cu.FLOAT_TYPES])


BATCH_MESSAGE = "RoiAlign: a batch index is outside [0, {dim})"


def run_roi_align(X, rois, batch_indices, *, half_pixel, use_max, out_h, out_w, sampling_ratio,
                  spatial_scale, flags=None, node: str = ""):
    """RoiAlign on the GPU, or None when not handled here."""
    if X.ndim != 4 or X.dtype not in cu.FLOAT_TYPES or rois.dtype != X.dtype or rois.ndim != 2 \
            or rois.shape[1] != 4 or batch_indices.ndim != 1 or batch_indices.shape[0] != rois.shape[0]:
        return None
    import cupy

    n, c, h, w = (int(d) for d in X.shape)
    nroi = int(rois.shape[0])
    batch = cupy.ascontiguousarray(batch_indices, dtype=np.int64)
    if nroi:
        bad = (batch < 0) | (batch >= n)
        flag = cupy.stack([bad.any().astype(np.int64), batch[cupy.argmax(bad)],
                           cupy.full((), n, dtype=np.int64)])   # device work only: no host copy
        if flags is not None:
            flags.defer(flag, node, BATCH_MESSAGE)
        else:
            found, _, _ = (int(v) for v in flag.get())
            if found:
                raise IndexError(BATCH_MESSAGE.format(dim=n))
    x = cupy.ascontiguousarray(X)
    boxes = cupy.ascontiguousarray(rois)
    out = cupy.empty((nroi, c, int(out_h), int(out_w)), dtype=X.dtype)
    if out.size:
        fn = cu.function(UNIT, f"roi_align<{cu.CTYPE[X.dtype]}>")
        cu.launch_elementwise(fn, out.size, (
            x, boxes, batch, out, np.int64(out.size), np.int64(n), np.int32(c), np.int32(h), np.int32(w),
            np.int32(out_h), np.int32(out_w), np.float64(spatial_scale), np.int32(half_pixel),
            np.int32(sampling_ratio), np.int32(use_max)))
    return out


@kernel("RoiAlign", since=(10, 16, 22), provider="cuda",
        types={"T1": FLOAT, "T2": frozenset({"int64"})}, capturable=True)
def RoiAlign(ctx, X, rois, batch_indices, *, coordinate_transformation_mode="output_half_pixel",
             mode="avg", output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """Bilinear-sampled average or max over each ROI bin (raw CUDA, one thread per output)."""
    if cu.on_device(ctx, X, rois, batch_indices):
        half = ctx.opset >= 16 and coordinate_transformation_mode == "half_pixel"
        out = run_roi_align(X, rois, batch_indices, half_pixel=half, use_max=mode == "max",
                            out_h=int(output_height), out_w=int(output_width),
                            sampling_ratio=int(sampling_ratio), spatial_scale=float(spatial_scale),
                            flags=flags_of(ctx), node=ctx.node_name)
        if out is not None:
            return out
    return shared.RoiAlign(ctx, X, rois, batch_indices,
                           coordinate_transformation_mode=coordinate_transformation_mode, mode=mode,
                           output_height=output_height, output_width=output_width,
                           sampling_ratio=sampling_ratio, spatial_scale=spatial_scale)
