"""Raw CUDA launchers for the ops that move a tensor into a new layout: Transpose, Concat,
Split and Slice (source: copy.cu).

One strided-copy kernel serves all four.  Transpose, Split and Slice ask the shared kernels
of ``providers/kernels/shape_ops.py`` for their result, which on CuPy is a view (so the
checks, clamping and error messages are the shared ones), and write the view into a new
contiguous array, as onnxruntime materializes these outputs; a view that is contiguous
already is returned as it is (no copy to make).  Concat writes each input into its region
of the output.  A copy that collapses to a batched swap of the last two dims (the usual
Transpose) goes through a tiled shared-memory kernel.

Element types: anything of 1, 2, 4 or 8 bytes (moved by width); more than 8 dims after
collapsing, and other types, go to the shared kernels.

Never run on a GPU yet: written, compile-checked and run on the host emulator only.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import shape_ops as shared
from ortgpu.providers.kernels.shape_ops import norm_axis
from ortgpu.providers.dtype_sets import CUPY, CUPY_BF16, FLOAT, INDEX
from ortgpu.providers.registry import kernel

SOURCE = "copy.cu"
INDEX_TYPES = ("int", "long long")
TILE = 32
TILE_BLOCK = (32, 8)          # threads of a transpose_tiles block
MIN_TILED_SIDE = 16           # narrower matrices waste most of a 32 x 32 tile: strided copy


def flat_name(width: int) -> str:
    return f"copy_flat<{cu.WIDTH_CTYPE[width]}>"


def strided_name(width: int, index: str) -> str:
    return f"strided_copy<{cu.WIDTH_CTYPE[width]}, {index}>"


def tiles_name(width: int) -> str:
    return f"transpose_tiles<{cu.WIDTH_CTYPE[width]}>"


def _names():
    for w in cu.WIDTH_CTYPE:
        yield flat_name(w)
        yield tiles_name(w)
        for index in INDEX_TYPES:
            yield strided_name(w, index)


UNIT = cu.declare(SOURCE, "all", _names())


# ---------------------------------------------------------------- host-side planning

def copy_plan(shape, src_strides, dst_strides) -> cu.BroadcastPlan | None:
    """How the strided copy walks ``shape``: operand 0 reads the source, operand 1 writes
    the destination (element strides of each); None beyond MAX_DIMS collapsed dims."""
    return cu.plan_broadcast(shape, [(shape, src_strides), (shape, dst_strides)])


def tiled_swap(plan: cu.BroadcastPlan) -> tuple[int, int, int] | None:
    """(batch, rows, cols) when ``plan`` copies a contiguous (batch, rows, cols) source into a
    contiguous (batch, cols, rows) destination, both sides at least MIN_TILED_SIDE; else None.

    The plan walks the destination's shape (batch, cols, rows): the source steps 1 along
    cols and `cols` along rows, the destination the other way round."""
    shape, (src, dst) = plan.shape, plan.strides
    if len(shape) not in (2, 3) or plan.steps is not None:
        return None
    c, r = shape[-2:]
    if src[-2:] != (1, c) or dst[-2:] != (r, 1):
        return None
    if len(shape) == 3 and not (src[0] == dst[0] == r * c):
        return None
    if min(r, c) < MIN_TILED_SIDE:
        return None
    return (shape[0] if len(shape) == 3 else 1), r, c


def tile_grid(batch: int, rows: int, cols: int, sm_count: int) -> int:
    """Blocks of a transpose_tiles launch: one per tile, at most 8 per multiprocessor."""
    tiles = batch * math.ceil(rows / TILE) * math.ceil(cols / TILE)
    return max(1, min(tiles, 8 * sm_count))


def view_strides(a) -> tuple[int, ...]:
    """The element strides of an array or view (CuPy reports bytes)."""
    return cu.element_strides(a.shape, a.strides, a.itemsize)


# ---------------------------------------------------------------- launches

def copy_into(dst, src) -> bool:
    """Write ``src`` into the view ``dst`` (same shape and dtype) on the GPU; False when the
    copy is not handled here (element type, or too many dims after collapsing)."""
    if dst.shape != src.shape or dst.dtype != src.dtype or not cu.movable(src.dtype):
        return False
    plan = copy_plan(tuple(src.shape), view_strides(src), view_strides(dst))
    if plan is None:
        return False
    if plan.size == 0:
        return True
    import cupy

    width = src.itemsize
    if plan.steps == (1, 1):
        fn = cu.function(UNIT, flat_name(width))
        cu.launch_elementwise(fn, plan.size, (src, dst, np.int64(plan.size)))
        return True
    swap = tiled_swap(plan)
    if swap is not None:
        batch, rows, cols = swap
        fn = cu.function(UNIT, tiles_name(width))
        grid = tile_grid(batch, rows, cols, cu.sm_count(cupy.cuda.runtime.getDevice()))
        fn((grid,), TILE_BLOCK, (src, dst, np.int64(batch), np.int64(rows), np.int64(cols)))
        return True
    fn = cu.function(UNIT, strided_name(width, cu.index_ctype(plan)))
    cu.launch_elementwise(fn, plan.size, (src, dst, np.int64(plan.size), plan.struct()))
    return True


def materialize(x):
    """``x`` as a C-contiguous array: ``x`` itself when it is one, else a new array written
    by the copy kernel, or None when the copy is not handled here."""
    if x.flags.c_contiguous:
        return x
    import cupy

    out = cupy.empty(x.shape, dtype=x.dtype)
    return out if copy_into(out, x) else None


def concat_shape(inputs, axis: int) -> tuple[int, ...] | None:
    """The output shape of concatenating ``inputs`` along ``axis`` (already normalized), or
    None when they do not match (one dtype, one rank, equal dims off the axis): the shared
    kernel then reports the error."""
    first = inputs[0]
    shape = list(first.shape)
    total = 0
    for x in inputs:
        if x.dtype != first.dtype or x.ndim != first.ndim:
            return None
        if any(a != b for d, (a, b) in enumerate(zip(x.shape, first.shape)) if d != axis):
            return None
        total += x.shape[axis]
    shape[axis] = total
    return tuple(shape)


def run_concat(inputs, axis: int):
    """The inputs joined along ``axis`` on the GPU (one strided copy per input), or None."""
    x0 = inputs[0]
    if x0.ndim == 0 or not cu.movable(x0.dtype):
        return None
    axis = norm_axis(axis, x0.ndim)
    shape = concat_shape(inputs, axis)
    if shape is None:
        return None
    import cupy

    out = cupy.empty(shape, dtype=x0.dtype)
    lead = (slice(None),) * axis
    pos = 0
    for x in inputs:
        n = x.shape[axis]
        if n and not copy_into(out[lead + (slice(pos, pos + n),)], x):
            return None
        pos += n
    return out


# ---------------------------------------------------------------- registrations

def _materialized(ctx, result, inputs):
    """The shared kernel's result with every non-contiguous view written contiguously when
    the inputs live on the GPU (one view, or a tuple of them); a view the copy kernel does
    not handle stays the view the shared kernel returned."""
    if not cu.on_device(ctx, *inputs):
        return result

    def one(v):
        out = materialize(v)
        return v if out is None else out
    return tuple(one(v) for v in result) if isinstance(result, tuple) else one(result)


@kernel("Transpose", since=(1, 13, 21, 23, 24, 25), provider="cuda", types={"T": CUPY_BF16})
def Transpose(ctx, data, *, perm=None):
    """Permute the dims by `perm` (reversed when absent), written contiguously (raw CUDA)."""
    return _materialized(ctx, shared.Transpose(ctx, data, perm=perm), (data,))


@kernel("Concat", since=(1, 4, 11, 13), provider="cuda", types={"T": CUPY_BF16})
def Concat(ctx, *inputs, axis=1):
    """Join the inputs along `axis` (raw CUDA: one strided copy per input)."""
    if len(inputs) > 1 and cu.on_device(ctx, *inputs):
        out = run_concat(inputs, axis)
        if out is not None:
            return out
    return shared.Concat(ctx, *inputs, axis=axis)


@kernel("Split", since=1, provider="cuda", types={"T": FLOAT}, host_inputs=(1,))
def Split_1(ctx, input, split_input=None, *, axis=0, **attrs):
    """Split along `axis` by the `split` attribute or the second input (raw CUDA copies)."""
    return _materialized(ctx, shared.Split_1(ctx, input, split_input, axis=axis, **attrs), (input,))


@kernel("Split", since=(2, 11), provider="cuda", types={"T": CUPY})
def Split_2(ctx, input, *, split=None, axis=0):
    """Split along `axis` by the `split` attribute, else equally (raw CUDA copies)."""
    return _materialized(ctx, shared.Split_2(ctx, input, split=split, axis=axis), (input,))


@kernel("Split", since=13, provider="cuda", types={"T": CUPY_BF16}, host_inputs=(1,))
def Split_13(ctx, input, split=None, *, axis=0):
    """Split along `axis` by the `split` input, else equally (raw CUDA copies)."""
    return _materialized(ctx, shared.Split_13(ctx, input, split, axis=axis), (input,))


@kernel("Split", since=18, provider="cuda", types={"T": CUPY_BF16}, host_inputs=(1,))
def Split(ctx, input, split=None, *, axis=0, num_outputs=None):
    """Split by the `split` input, else into num_outputs parts (raw CUDA copies)."""
    return _materialized(ctx, shared.Split(ctx, input, split, axis=axis, num_outputs=num_outputs),
                         (input,))


@kernel("Slice", since=1, provider="cuda", types={"T": CUPY})
def Slice_1(ctx, data, *, starts, ends, axes=None):
    """Slice with the starts/ends/axes attributes, written contiguously (raw CUDA)."""
    return _materialized(ctx, shared.Slice_1(ctx, data, starts=starts, ends=ends, axes=axes), (data,))


@kernel("Slice", since=(10, 11, 13), provider="cuda", types={"T": CUPY_BF16, "Tind": INDEX},
        host_inputs=(1, 2, 3, 4))
def Slice(ctx, data, starts, ends, axes=None, steps=None):
    """Slice with starts/ends/axes/steps inputs, written contiguously (raw CUDA)."""
    return _materialized(ctx, shared.Slice(ctx, data, starts, ends, axes, steps), (data,))
