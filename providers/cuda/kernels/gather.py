"""Raw CUDA launchers for Gather, GatherND and ScatterND (source: gather.cu).

Out-of-range indices: the kernels check every index as they use it and raise a flag on
the device.  Run by a provider, the launcher defers the flag to the provider's
``ErrorFlags`` (providers/cuda/error_flags.py), which reads all flags of the run in one
copy when the run ends and raises the shared kernels' IndexError naming the node: no sync
per launch, and the launches can be captured into a CUDA graph.  Called without a
provider (``flags=None``), the launcher reads its flag back at once.  So the raw launches
are capturable; a node they do not take (an empty output, an index type they lack) runs
the shared kernel, which reads indices on the host: a capture meeting one fails and the
graph id runs eagerly (ortgpu.graph_capture, one warning).

Duplicate indices in ScatterND (documented as onnxruntime documents its CUDA kernel):
without reduction, which of the duplicate updates lands is unspecified (the ONNX spec
leaves it so; the shared kernel keeps the last); with add/mul/max/min every update is
applied atomically in an unspecified order, so integer results and Max/Min are exact while
float Add/Mul may differ from the sequential order by rounding.

Handled: data of any 1, 2, 4 or 8-byte type (moved by width); Gather with int32 or int64
indices, GatherND and ScatterND with int64 indices (their only index type); ScatterND
reductions for float32, float16, float64, int32 and int64.  Everything else, and empty
outputs, go to the shared kernels of ``providers/kernels/indexing.py``.

Never run on a GPU yet: written, compile-checked and run on the host emulator only.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.base import host_array
from ortgpu.providers.cuda.error_flags import flags_of
from ortgpu.providers.cuda.kernels import copy as cu_copy
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import indexing as shared
from ortgpu.providers.kernels.shape_ops import norm_axis
from ortgpu.providers.dtype_sets import CUPY, CUPY_BF16, INDEX
from ortgpu.providers.registry import kernel

SOURCE = "gather.cu"
INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))    # Gather's; read by width at run time
REDUCE_TYPES = cu.FLOAT_TYPES + (np.dtype(np.int32), np.dtype(np.int64))
REDUCTIONS = {"add": 1, "mul": 2, "max": 3, "min": 4}   # ScatterReduction codes of gather.cu
OFFSET_TYPES = ("int", "long long")
INT31 = 2 ** 31 - 1

# struct IndexedDims { i64 k; i64 dim[8]; i64 stride[8]; }
INDEXED_DTYPE = np.dtype([("k", "<i8"), ("dim", "<i8", (cu.MAX_DIMS,)), ("stride", "<i8", (cu.MAX_DIMS,))])


def gather_name(width: int, offset: str) -> str:
    return f"gather_axis<{cu.WIDTH_CTYPE[width]}, {offset}>"


def gather_nd_name(width: int) -> str:
    return f"gather_nd<{cu.WIDTH_CTYPE[width]}>"


def assign_name(width: int) -> str:
    return f"scatter_nd_assign<{cu.WIDTH_CTYPE[width]}>"


def reduce_name(dtype) -> str:
    return f"scatter_nd_reduce<{cu.CTYPE[np.dtype(dtype)]}>"


def _gather_names():
    for w in cu.WIDTH_CTYPE:
        yield gather_nd_name(w)
        for offset in OFFSET_TYPES:
            yield gather_name(w, offset)


def _scatter_names():
    for w in cu.WIDTH_CTYPE:
        yield assign_name(w)
    for dt in REDUCE_TYPES:
        yield reduce_name(dt)


GATHER_UNIT = cu.declare(SOURCE, "gather", _gather_names())
SCATTER_UNIT = cu.declare(SOURCE, "scatter", _scatter_names())


# ---------------------------------------------------------------- host-side planning

def gather_split(shape, axis: int) -> tuple[int, int, int]:
    """(outer, axis_len, inner): Gather's view of data around ``axis``."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def indexed_dims(dims, tail: int) -> np.ndarray:
    """The IndexedDims struct for index tuples addressing ``dims`` (the k indexed dims) of a
    contiguous tensor whose dims after them hold ``tail`` elements."""
    info = np.zeros(1, INDEXED_DTYPE)
    info["k"] = len(dims)
    stride = tail
    for j in range(len(dims) - 1, -1, -1):
        info["dim"][0, j] = dims[j]
        info["stride"][0, j] = stride
        stride *= dims[j]
    return info


def _error_flag():
    import cupy
    return cupy.zeros(3, dtype=np.int64)


def report_flag(flag, flags, node: str) -> None:
    """Defer `flag` to the run's ErrorFlags, or (none) read it now."""
    if flags is not None:
        flags.defer(flag, node)
    else:
        raise_on_bad_index(flag)


def raise_on_bad_index(flag) -> None:
    """Raise the shared kernels' IndexError when a kernel flagged an out-of-range index
    (reads the flag back: waits for the kernel)."""
    found, index, dim = (int(v) for v in host_array(flag))
    if found:
        raise IndexError(f"index {index} is out of bounds for a dimension of size {dim}")


# ---------------------------------------------------------------- launches

def run_gather(data, indices, axis: int, flags=None, node: str = ""):
    """Gather on the GPU, or None when not handled here."""
    if data.ndim == 0 or not cu.movable(data.dtype) or indices.dtype not in INDEX_TYPES:
        return None
    import cupy

    axis = norm_axis(axis, data.ndim)
    outer, axis_len, inner = gather_split(data.shape, axis)
    out_shape = tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1:])
    n = math.prod(out_shape)
    if n == 0:
        return None   # nothing to move; the shared kernel still checks the indices
    x = cupy.ascontiguousarray(data)
    idx = cupy.ascontiguousarray(indices)
    out = cupy.empty(out_shape, dtype=data.dtype)
    flag = _error_flag()
    offset = "long long" if max(n, x.size) >= INT31 else "int"
    fn = cu.function(GATHER_UNIT, gather_name(data.itemsize, offset))
    cu.launch_elementwise(fn, n, (x, idx, out, np.int64(n), np.int64(axis_len), np.int64(idx.size),
                                  np.int64(inner), np.int32(idx.itemsize == 8), flag))
    report_flag(flag, flags, node)
    return out


def run_gather_nd(data, indices, batch_dims: int, flags=None, node: str = ""):
    """GatherND on the GPU, or None when not handled here."""
    if (not cu.movable(data.dtype) or indices.dtype != np.int64 or indices.ndim == 0
            or not 0 <= batch_dims < min(data.ndim, indices.ndim)):
        return None
    b, k = batch_dims, indices.shape[-1]
    if not 1 <= k <= data.ndim - b or k > cu.MAX_DIMS or tuple(data.shape[:b]) != tuple(indices.shape[:b]):
        return None
    import cupy

    out_shape = tuple(data.shape[:b]) + tuple(indices.shape[b:-1]) + tuple(data.shape[b + k:])
    n = math.prod(out_shape)
    if n == 0:
        return None
    slice_ = math.prod(data.shape[b + k:])
    dims = data.shape[b:b + k]
    x = cupy.ascontiguousarray(data)
    idx = cupy.ascontiguousarray(indices)
    out = cupy.empty(out_shape, dtype=data.dtype)
    flag = _error_flag()
    fn = cu.function(GATHER_UNIT, gather_nd_name(data.itemsize))
    cu.launch_elementwise(fn, n, (x, idx, out, np.int64(n), np.int64(math.prod(indices.shape[b:-1])),
                                  np.int64(slice_), np.int64(math.prod(dims) * slice_),
                                  indexed_dims(dims, slice_), flag))
    report_flag(flag, flags, node)
    return out


def run_scatter_nd(data, indices, updates, reduction: str, flags=None, node: str = ""):
    """ScatterND on the GPU, or None when not handled here."""
    dt = data.dtype
    if updates.dtype != dt or indices.dtype != np.int64 or indices.ndim == 0:
        return None
    if reduction == "none" and not cu.movable(dt):
        return None
    if reduction != "none" and (reduction not in REDUCTIONS or dt not in REDUCE_TYPES):
        return None
    k = indices.shape[-1]
    if not 1 <= k <= data.ndim or k > cu.MAX_DIMS:
        return None
    if tuple(updates.shape) != tuple(indices.shape[:-1]) + tuple(data.shape[k:]):
        return None
    import cupy

    count, slice_ = math.prod(indices.shape[:-1]), math.prod(data.shape[k:])
    n = count * slice_
    if n == 0 and indices.size:
        return None    # the shared kernel still checks the indices
    out = cupy.empty(data.shape, dtype=dt)
    if not cu_copy.copy_into(out, data):
        return None
    if n == 0:
        return out
    idx = cupy.ascontiguousarray(indices)
    upd = cupy.ascontiguousarray(updates)
    flag = _error_flag()
    dims = indexed_dims(data.shape[:k], slice_)
    if reduction == "none":
        fn = cu.function(SCATTER_UNIT, assign_name(dt.itemsize))
        args = (out, idx, upd, np.int64(n), np.int64(slice_), dims, flag)
    else:
        fn = cu.function(SCATTER_UNIT, reduce_name(dt))
        args = (out, idx, upd, np.int64(n), np.int64(slice_), dims, np.int32(REDUCTIONS[reduction]), flag)
    cu.launch_elementwise(fn, n, args)
    report_flag(flag, flags, node)
    return out


# ---------------------------------------------------------------- registrations

@kernel("Gather", since=(1, 11, 13), provider="cuda", types={"T": CUPY_BF16, "Tind": INDEX},
        capturable=True)
def Gather(ctx, data, indices, *, axis=0):
    """Take slices of `data` along `axis` at `indices` (raw CUDA; indices checked on the device)."""
    if cu.on_device(ctx, data, indices):
        out = run_gather(data, indices, axis, flags_of(ctx), ctx.node_name)
        if out is not None:
            return out
    return shared.Gather(ctx, data, indices, axis=axis)


@kernel("GatherND", since=11, provider="cuda", types={"T": CUPY}, capturable=True)
def GatherND_11(ctx, data, indices):
    """Gather slices addressed by the last dim of `indices` (raw CUDA)."""
    return GatherND(ctx, data, indices, batch_dims=0)


@kernel("GatherND", since=(12, 13), provider="cuda", types={"T": CUPY_BF16}, capturable=True)
def GatherND(ctx, data, indices, *, batch_dims=0):
    """Gather slices addressed by the last dim of `indices` after batch_dims shared dims (raw CUDA)."""
    if cu.on_device(ctx, data, indices):
        out = run_gather_nd(data, indices, batch_dims, flags_of(ctx), ctx.node_name)
        if out is not None:
            return out
    return shared.GatherND(ctx, data, indices, batch_dims=batch_dims)


@kernel("ScatterND", since=(11, 13, 16, 18), provider="cuda", types={"T": CUPY_BF16}, capturable=True)
def ScatterND(ctx, data, indices, updates, *, reduction="none"):
    """Copy of `data` with the addressed slices replaced or reduced (raw CUDA, atomic reductions)."""
    if cu.on_device(ctx, data, indices, updates):
        out = run_scatter_nd(data, indices, updates, reduction, flags_of(ctx), ctx.node_name)
        if out is not None:
            return out
    return shared.ScatterND(ctx, data, indices, updates, reduction=reduction)
