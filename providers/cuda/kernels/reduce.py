"""Raw CUDA launchers for the reductions ReduceSum, ReduceMean, ReduceMax, ReduceMin,
ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum and ReduceLogSumExp
(source: reduce.cu), in both forms (axes as an attribute, axes as an input with
noop_with_empty_axes).

The tensor is viewed as (outer, len, inner) with the reduced axes in the middle: size-1
axes are dropped and neighbouring axes of one kind merged, and when the reduced axes do
not form one run after that, the copy kernel first moves them last (a transposed copy).
inner == 1 with long rows runs one warp or block per row (``common.cuh``'s
row_allreduce); everything else one thread per output.  A full reduction to very few
outputs therefore uses few multiprocessors (no split of long rows across blocks yet).

Types: float32, float16 (accumulated in float32) and float64 for every op; int32 and int64
for all but ReduceLogSum and ReduceLogSumExp.  Other types, 0-d inputs, reductions over an
empty axis and noop_with_empty_axes with no axes go to ``providers/kernels/reduce.py``,
whose semantics the CUDA source follows.

Never run on a GPU yet: written, compile-checked and run on the host emulator only.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import copy as cu_copy
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import CUPY_BF16
from ortgpu.providers.kernels import reduce as shared
from ortgpu.providers.kernels.reduce import normalize_axes
from ortgpu.providers.registry import kernel

SOURCE = "reduce.cu"
# ReduceCode of reduce.cu
OPS = {"ReduceSum": 0, "ReduceMean": 1, "ReduceMax": 2, "ReduceMin": 3, "ReduceProd": 4, "ReduceL1": 5,
       "ReduceL2": 6, "ReduceSumSquare": 7, "ReduceLogSum": 8, "ReduceLogSumExp": 9}
FLOAT_ONLY = frozenset(("ReduceLogSum", "ReduceLogSumExp"))
TYPES = cu.FLOAT_TYPES + (np.dtype(np.int32), np.dtype(np.int64))
ROW_KERNEL_MIN_LEN = 32   # shorter rows: one thread per output does better than a warp


def rows_name(dtype) -> str:
    return f"reduce_rows<{cu.CTYPE[np.dtype(dtype)]}>"


def columns_name(dtype) -> str:
    return f"reduce_columns<{cu.CTYPE[np.dtype(dtype)]}>"


UNIT = cu.declare(SOURCE, "all", [f(dt) for dt in TYPES for f in (rows_name, columns_name)])


def handles_op(name: str, dtype) -> bool:
    """True when the kernels reduce ``dtype`` with ``name``."""
    dt = np.dtype(dtype)
    return dt in TYPES and (dt.kind == "f" or name not in FLOAT_ONLY)


# ---------------------------------------------------------------- host-side planning

def reduction_view(shape, axes) -> tuple[tuple[int, ...] | None, int, int, int]:
    """(perm, outer, len, inner) for reducing ``axes`` (normalized) of a contiguous ``shape``.

    perm is None when the data can be read in place as (outer, len, inner); otherwise it is
    the transpose (kept axes, then reduced axes) that makes it (outer, len, 1).  The kept
    axes keep their order either way, so the outputs come out in the reduced shape's order."""
    axes = set(axes)
    runs = []          # [reduced?, product] for runs of non-trivial dims of one kind
    for d, size in enumerate(shape):
        if size == 1:
            continue
        kind = d in axes
        if runs and runs[-1][0] == kind:
            runs[-1][1] *= size
        else:
            runs.append([kind, size])
    reduced_runs = [i for i, (kind, _) in enumerate(runs) if kind]
    length = math.prod(s for kind, s in runs if kind)
    if len(reduced_runs) <= 1:
        at = reduced_runs[0] if reduced_runs else len(runs)
        outer = math.prod(s for _, s in runs[:at])
        inner = math.prod(s for _, s in runs[at + 1:]) if reduced_runs else 1
        return None, outer, length, inner
    kept = [d for d in range(len(shape)) if d not in axes]
    perm = tuple(kept + sorted(axes))
    return perm, math.prod(shape[d] for d in kept), length, 1


def use_row_kernel(length: int, inner: int) -> bool:
    """The row kernel (a warp or block per output) for contiguous rows long enough to share."""
    return inner == 1 and length >= ROW_KERNEL_MIN_LEN


# ---------------------------------------------------------------- launch

def run_reduce(name: str, data, axes, keepdims, noop: bool = False):
    """Reduction ``name`` of ``data`` on the GPU, or None when not handled here."""
    if data.ndim == 0 or not handles_op(name, data.dtype):
        return None
    if axes is None or len(axes) == 0:
        if noop:
            return None
        axes = tuple(range(data.ndim))
    else:
        axes = normalize_axes(axes, data.ndim)
    if any(data.shape[a] == 0 for a in axes):
        return None
    import cupy

    dt = data.dtype
    out = cupy.empty(shared._reduced_shape(data.shape, axes, keepdims == 1), dtype=dt)
    if out.size == 0:
        return out
    perm, outer, length, inner = reduction_view(data.shape, axes)
    x = cu_copy.materialize(data if perm is None else data.transpose(perm))
    if x is None:
        return None
    code = np.int32(OPS[name])
    if use_row_kernel(length, inner):
        fn = cu.function(UNIT, rows_name(dt))
        grid, block = cu.row_launch_config(outer, length)
        fn(grid, block, (x, out, np.int64(outer), np.int64(length), code))
    else:
        fn = cu.function(UNIT, columns_name(dt))
        n = outer * inner
        cu.launch_elementwise(fn, n, (x, out, np.int64(n), np.int64(length), np.int64(inner), code))
    return out


# ---------------------------------------------------------------- registrations

def _register(name: str, attr_versions, input_versions):
    """Register the CUDA twins of shared.reduce's two forms of ``name``."""
    def with_axes_attribute(ctx, data, *, axes=None, keepdims=1):
        if cu.on_device(ctx, data):
            y = run_reduce(name, data, axes, keepdims)
            if y is not None:
                return y
        return shared.reduce(ctx, name, data, axes, keepdims)

    def with_axes_input(ctx, data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        ax = shared._axes_from_input(axes)
        if cu.on_device(ctx, data):
            y = run_reduce(name, data, ax, keepdims, noop_with_empty_axes == 1)
            if y is not None:
                return y
        return shared.reduce(ctx, name, data, ax, keepdims, noop_with_empty_axes == 1)

    for fn, how in ((with_axes_attribute, "axes as an attribute"), (with_axes_input, "axes as an input")):
        fn.__name__ = fn.__qualname__ = f"{name}_{fn.__name__}"
        fn.__doc__ = f"{name} with {how} (raw CUDA)."
    attr_types, input_types = shared.TYPES[name]
    kernel(name, since=attr_versions, provider="cuda", types={"T": attr_types & CUPY_BF16})(with_axes_attribute)
    kernel(name, since=input_versions, provider="cuda", types={"T": input_types & CUPY_BF16},
           host_inputs=(1,))(with_axes_input)


for _name, (_attr_versions, _input_versions) in shared.VERSIONS.items():   # the shared kernels' versions
    _register(_name, _attr_versions, _input_versions)
