"""Host-side planning of the layout, index, resize, pooling and reduction launchers
(``providers/cuda/kernels/{copy,gather,resize,pool,reduce}.py``), checked against NumPy
and the shared kernels without a GPU.

Each test builds what a launcher hands its kernel (a collapsed copy plan, a reduction
view, an IndexedDims or PoolWindow struct, resize tables) and replays the kernel's index
arithmetic in NumPy, so a wrong stride, offset or table fails here; the kernels
themselves run in tests/test_cuda_math_kernels_emulated.py.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ortgpu.providers.cuda.kernels import copy as cu_copy
from ortgpu.providers.cuda.kernels import gather as cu_gather
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.cuda.kernels import pool as cu_pool
from ortgpu.providers.cuda.kernels import reduce as cu_reduce
from ortgpu.providers.cuda.kernels import resize as cu_resize
from ortgpu.providers.kernels import pool as shared_pool
from ortgpu.providers.kernels import resize as shared_resize
from ortgpu.providers.kernels.indexing import GatherND
from ortgpu.providers.registry import KernelContext


def _offsets(plan, operand):
    """Element offsets of ``operand`` at every position, as broadcast_offsets computes them."""
    linear = np.arange(plan.size, dtype=np.int64)
    if plan.steps is not None:
        return linear * plan.steps[operand]
    info = plan.struct()[0]
    off = np.zeros(plan.size, dtype=np.int64)
    for d in range(int(info["ndim"]) - 1, -1, -1):
        size = int(info["shape"][d])
        off += (linear % size) * int(info["stride"][operand][d])
        linear //= size
    return off


def _start(view, base):
    """Offset of ``view``'s first element in ``base``, in elements."""
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize


def _copy_through_plan(dst, dst_base, src, src_base):
    """Replay strided_copy: dst_base gets src_base's elements where the plan says."""
    plan = cu_copy.copy_plan(src.shape, cu_copy.view_strides(src), cu_copy.view_strides(dst))
    assert plan is not None
    flat = dst_base.reshape(-1)
    flat[_start(dst, dst_base) + _offsets(plan, 1)] = src_base.reshape(-1)[_start(src, src_base) + _offsets(plan, 0)]
    return plan


SOURCE_VIEWS = [
    ("transpose", (2, 3, 4), lambda a: a.transpose(2, 0, 1)),
    ("transpose-4d", (2, 3, 4, 5), lambda a: a.transpose(0, 3, 1, 2)),
    ("swap", (40, 33), lambda a: a.T),
    ("batched-swap", (3, 17, 20), lambda a: a.transpose(0, 2, 1)),
    ("slice-steps", (9, 8, 7), lambda a: a[1:8:3, ::-2, 2:]),
    ("reverse", (5, 6), lambda a: a[::-1, ::-1]),
    ("slice-then-transpose", (6, 7, 8), lambda a: a[:, 1:6].transpose(1, 2, 0)),
    ("size-one-dims", (1, 5, 1, 4), lambda a: a.transpose(3, 2, 1, 0)),
    ("column", (6, 5), lambda a: a[:, 3:4]),
]


@pytest.mark.parametrize("name, shape, make", SOURCE_VIEWS, ids=[v[0] for v in SOURCE_VIEWS])
def test_copy_plan_materializes_views(name, shape, make):
    base = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    src = make(base)
    dst = np.full(src.shape, -1, dtype=np.int32)
    _copy_through_plan(dst, dst, src, base)
    np.testing.assert_array_equal(dst, np.ascontiguousarray(src))


@pytest.mark.parametrize("axis", (0, 1, 2, -1))
def test_copy_plan_writes_concat_regions(axis):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 100, size=s).astype(np.int16) for s in ((2, 3, 4), (2, 3, 4))]
    shapes = [list(p.shape) for p in parts]
    shapes[1][axis] = 5
    parts[1] = rng.integers(0, 100, size=shapes[1]).astype(np.int16)
    axis = axis % 3
    parts[0] = parts[0].transpose(1, 0, 2).copy().transpose(1, 0, 2)   # a non-contiguous source
    shape = cu_copy.concat_shape(parts, axis)
    out = np.zeros(shape, dtype=np.int16)
    pos = 0
    for p in parts:
        region = out[(slice(None),) * axis + (slice(pos, pos + p.shape[axis]),)]
        _copy_through_plan(region, out, p, p.base if p.base is not None else p)
        pos += p.shape[axis]
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=axis))


def test_concat_shape_rejects_mismatches():
    a = np.zeros((2, 3), np.float32)
    assert cu_copy.concat_shape([a, np.zeros((2, 5), np.float32)], 1) == (2, 8)
    assert cu_copy.concat_shape([a, np.zeros((3, 3), np.float32)], 1) is None
    assert cu_copy.concat_shape([a, np.zeros((2, 3), np.float64)], 0) is None
    assert cu_copy.concat_shape([a, np.zeros((2, 3, 1), np.float32)], 0) is None


@pytest.mark.parametrize("shape, perm, tiled", [
    ((40, 33), (1, 0), (1, 40, 33)), ((3, 17, 20), (0, 2, 1), (3, 17, 20)),
    ((2, 3, 16, 24), (0, 1, 3, 2), (6, 16, 24)), ((4, 5, 32), (2, 0, 1), (1, 20, 32)),
    ((1, 64, 1, 48), (3, 2, 1, 0), (1, 64, 48)), ((40, 8), (1, 0), None), ((2, 3, 4), (1, 0, 2), None),
    ((16, 16, 16), (2, 1, 0), None), ((30, 30), (0, 1), None),
])
def test_tiled_swap_detection(shape, perm, tiled):
    x = np.arange(np.prod(shape)).reshape(shape)
    view = x.transpose(perm)
    out = np.empty(view.shape, x.dtype)
    plan = cu_copy.copy_plan(view.shape, cu_copy.view_strides(view), cu_copy.view_strides(out))
    got = cu_copy.tiled_swap(plan)
    assert got == tiled
    if got is not None:   # what transpose_tiles computes from (batch, rows, cols)
        b, r, c = got
        np.testing.assert_array_equal(x.reshape(b, r, c).transpose(0, 2, 1).reshape(-1), view.reshape(-1))


def test_tile_grid_covers_every_tile_at_most_once_per_block():
    assert cu_copy.tile_grid(1, 33, 64, sm_count=132) == 4
    assert cu_copy.tile_grid(1000, 512, 512, sm_count=132) == 8 * 132
    assert cu_copy.tile_grid(1, 1, 1, sm_count=1) == 1


# ---------------------------------------------------------------- reductions

REDUCE_CASES = [((2, 3, 4, 5), axes) for n in range(1, 5) for axes in itertools.combinations(range(4), n)]
REDUCE_CASES += [((1, 3, 1, 5), (0, 1)), ((2, 1, 4, 1), (1, 3)), ((3, 1, 2), (1,)), ((6,), (0,)),
                 ((2, 1, 3, 1, 4, 5), (0, 2, 5)), ((7, 1), (0, 1))]


@pytest.mark.parametrize("shape, axes", REDUCE_CASES, ids=str)
def test_reduction_view_matches_numpy(shape, axes):
    x = np.random.default_rng(1).integers(-50, 50, size=shape).astype(np.int64)
    perm, outer, length, inner = cu_reduce.reduction_view(shape, axes)
    moved = x if perm is None else x.transpose(perm)
    got = np.ascontiguousarray(moved).reshape(outer, length, inner).sum(axis=1)
    np.testing.assert_array_equal(got.reshape(-1), x.sum(axis=axes).reshape(-1))
    if perm is not None:   # moved only when the reduced axes are not one run
        assert len({a for a in axes if shape[a] != 1}) >= 2


def test_reduction_view_reads_in_place_when_it_can():
    assert cu_reduce.reduction_view((8, 16, 32), (2,)) == (None, 128, 32, 1)
    assert cu_reduce.reduction_view((8, 16, 32), (0,)) == (None, 1, 8, 512)
    assert cu_reduce.reduction_view((8, 1, 16, 32), (1, 2)) == (None, 8, 16, 32)
    assert cu_reduce.reduction_view((8, 16, 32), (0, 2))[0] == (1, 0, 2)
    assert cu_reduce.use_row_kernel(1000, 1) and not cu_reduce.use_row_kernel(1000, 2)
    assert not cu_reduce.use_row_kernel(8, 1)


def test_reduce_types_per_op():
    assert cu_reduce.handles_op("ReduceLogSumExp", np.float16)
    assert not cu_reduce.handles_op("ReduceLogSumExp", np.int64)
    assert cu_reduce.handles_op("ReduceProd", np.int32)
    assert not cu_reduce.handles_op("ReduceMax", np.bool_)
    assert not cu_reduce.handles_op("ReduceSum", np.uint8)


# ---------------------------------------------------------------- gathers and scatters

@pytest.mark.parametrize("shape, axis", [((5, 4, 3), 0), ((5, 4, 3), 1), ((5, 4, 3), 2), ((7,), 0)])
def test_gather_split_matches_take(shape, axis):
    rng = np.random.default_rng(2)
    data = rng.standard_normal(shape).astype(np.float32)
    idx = rng.integers(-shape[axis], shape[axis], size=(2, 3))
    outer, n, inner = cu_gather.gather_split(shape, axis)
    wrapped = np.where(idx < 0, idx + n, idx).reshape(-1)
    got = data.reshape(outer, n, inner)[:, wrapped, :]
    np.testing.assert_array_equal(got.reshape(-1), np.take(data, idx, axis=axis).reshape(-1))


def test_indexed_dims_struct_layout():
    # struct IndexedDims { i64 k; i64 dim[8]; i64 stride[8]; }
    assert cu_gather.INDEXED_DTYPE.itemsize == 8 * (1 + 2 * cu.MAX_DIMS)
    info = cu_gather.indexed_dims((4, 5, 6), 7)[0]
    assert int(info["k"]) == 3
    assert list(info["dim"][:3]) == [4, 5, 6] and list(info["stride"][:3]) == [210, 42, 7]
    source = (cu.KERNEL_DIR / "gather.cu").read_text()
    assert "i64 dim[ORTGPU_MAX_DIMS];" in source and "i64 stride[ORTGPU_MAX_DIMS];" in source


@pytest.mark.parametrize("data_shape, idx_shape, batch_dims", [
    ((4, 5, 6), (3, 2), 0), ((4, 5, 6), (2, 2, 3), 0), ((4, 5, 6), (4, 1), 1), ((2, 3, 4, 5), (2, 3, 2, 1), 2),
    ((6,), (4, 1), 0),
])
def test_gather_nd_offsets_match_the_shared_kernel(data_shape, idx_shape, batch_dims):
    rng = np.random.default_rng(3)
    data = rng.standard_normal(data_shape).astype(np.float32)
    k = idx_shape[-1]
    dims = data_shape[batch_dims:batch_dims + k]
    idx = np.stack([rng.integers(-d, d, size=idx_shape[:-1]) for d in dims], axis=-1).astype(np.int64)
    slice_ = int(np.prod(data_shape[batch_dims + k:]))
    info = cu_gather.indexed_dims(dims, slice_)[0]
    rows = idx.reshape(-1, k)
    count = int(np.prod(idx_shape[batch_dims:-1]))
    batch_stride = int(np.prod(dims)) * slice_
    got = []
    for r, tup in enumerate(rows):   # gather_nd: the tuple's offset, then the slice
        off = sum((v + d if v < 0 else v) * int(s) for v, d, s in zip(tup, info["dim"], info["stride"]))
        start = (r // count) * batch_stride + off
        got.append(data.reshape(-1)[start:start + slice_])
    want = GatherND(KernelContext(np, "cpu"), data, idx, batch_dims=batch_dims)
    np.testing.assert_array_equal(np.concatenate(got), want.reshape(-1))


def test_bad_index_flag_raises_the_shared_error():
    cu_gather.raise_on_bad_index(np.zeros(3, np.int64))
    with pytest.raises(IndexError, match="index -9 is out of bounds for a dimension of size 4"):
        cu_gather.raise_on_bad_index(np.array([1, -9, 4], np.int64))


# ---------------------------------------------------------------- pooling

POOL_CASES = [
    dict(kernel_shape=[3, 3]), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 3], strides=[2, 1], pads=[0, 1, 1, 0], ceil_mode=1),
    dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[3, 3], strides=[3, 3], ceil_mode=1, pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3], strides=[2], pads=[1, 1]),
]


def _pool_by_struct(x, geom, kind):
    """pool2d's arithmetic over every output position, read from the PoolWindow struct."""
    w = cu_pool.window_struct(geom)[0]
    nd = x.ndim - 2
    planes = x.reshape((-1,) + ((1,) if nd == 1 else ()) + x.shape[2:]).astype(np.float64)
    in_h, in_w = planes.shape[1:]
    out_h, out_w = (1, geom.out[0]) if nd == 1 else geom.out
    oy = np.arange(out_h)[:, None, None, None]
    ox = np.arange(out_w)[None, :, None, None]
    ky = np.arange(w["kernel"][0])[None, None, :, None]
    kx = np.arange(w["kernel"][1])[None, None, None, :]
    iy = oy * w["stride"][0] - w["begin"][0] + ky * w["dilation"][0]
    ix = ox * w["stride"][1] - w["begin"][1] + kx * w["dilation"][1]
    inside = (iy >= 0) & (iy < in_h) & (ix >= 0) & (ix < in_w)
    vals = planes[:, np.clip(iy, 0, in_h - 1), np.clip(ix, 0, in_w - 1)]
    if kind == "max":
        out = np.where(inside, vals, -np.inf).max(axis=(-2, -1))
    else:
        counted = inside
        if kind == "average_include_pad":
            counted = ((iy >= -w["begin"][0]) & (iy < in_h + w["end"][0])
                       & (ix >= -w["begin"][1]) & (ix < in_w + w["end"][1]))
        out = np.where(inside, vals, 0).sum(axis=(-2, -1)) / np.maximum(counted.sum(axis=(-2, -1)), 1)
    return out.reshape(x.shape[:2] + tuple(geom.out)).astype(x.dtype)


@pytest.mark.parametrize("attrs", POOL_CASES, ids=str)
@pytest.mark.parametrize("kind", ("max", "average", "average_include_pad"))
def test_pool_window_struct_reproduces_the_shared_pools(attrs, kind):
    nd = len(attrs["kernel_shape"])
    x = np.random.default_rng(4).standard_normal((2, 3) + (9, 10)[:nd] if nd == 2 else (2, 3, 11)).astype(np.float32)
    a = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "pads": None, "strides": None, **attrs}
    geom = shared_pool.pool_geometry(x.shape[2:], a["kernel_shape"], a["strides"], a["dilations"], a["auto_pad"],
                                     a["pads"], a["ceil_mode"])
    ctx = KernelContext(np, "cpu", num_outputs=1, output_present=(True,))
    if kind == "max":
        want = shared_pool.MaxPool(ctx, x, **a)
    else:
        want = shared_pool.AveragePool(ctx, x, count_include_pad=int(kind == "average_include_pad"), **a)
    np.testing.assert_allclose(_pool_by_struct(x, geom, kind), want, rtol=1e-6, atol=1e-6)


def test_pool_window_struct_declines_what_the_kernel_lacks():
    geom3 = shared_pool.pool_geometry((4, 4, 4), [2, 2, 2], None, None, "NOTSET", None, 0)
    assert cu_pool.window_struct(geom3) is None
    crop = shared_pool.pool_geometry((6, 6), [2, 2], None, None, "NOTSET", [-1, 0, 0, 0], 0)
    assert cu_pool.window_struct(crop) is None
    assert cu_pool.WINDOW_DTYPE.itemsize == 8 * 10


# ---------------------------------------------------------------- resize

def _resize_by_tables(x, plan, p):
    """resize_nearest / resize_taps from kernel_table, as the kernels read the tables."""
    params = tuple(sorted(p.items()))
    (yi, yw), (xi, xw) = (cu_resize.kernel_table(params, plan.identity[a], plan.out_shape[a], x.shape[a],
                                                 plan.scales[a], plan.roi_lo[a], plan.roi_hi[a])
                          for a in (x.ndim - 2, x.ndim - 1))
    planes = x.reshape(-1, *x.shape[-2:])
    if yw is None:
        out = planes[:, np.clip(yi[:, 0], 0, None)][:, :, np.clip(xi[:, 0], 0, None)]
        fill = np.asarray(p["extrapolation_value"]).astype(x.dtype)
    else:
        g = planes.astype(np.float64)[:, yi[:, :, None, None], xi[None, None, :, :]]   # (P, oh, yt, ow, xt)
        out = np.einsum("pyawb,ya,wb->pyw", g, yw, xw).astype(x.dtype)
        fill = np.float64(p["extrapolation_value"]).astype(x.dtype)
    outside = (yi[:, 0] < 0)[:, None] | (xi[:, 0] < 0)[None, :]
    out = np.where(outside[None], fill, out)
    return out.reshape(plan.out_shape)


RESIZE_CASES = [
    ("nearest", "half_pixel", "round_prefer_floor", None, [1, 1, 2.0, 3.0]),
    ("nearest", "asymmetric", "floor", None, [1, 1, 0.5, 0.7]),
    ("nearest", "align_corners", "round_prefer_ceil", None, [1, 1, 1.5, 1.0]),
    ("nearest", "tf_half_pixel_for_nn", "ceil", None, [1, 1, 1.7, 2.3]),
    ("linear", "half_pixel", "round_prefer_floor", None, [1, 1, 2.0, 0.6]),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", None, [1, 1, 0.5, 1.5]),
    ("linear", "align_corners", "round_prefer_floor", None, [1, 1, 1.3, 1.0]),
    ("linear", "tf_crop_and_resize", "round_prefer_floor", [0, 0, 0.2, -0.1, 1, 1, 0.9, 1.3], [1, 1, 1.6, 1.4]),
    ("nearest", "tf_crop_and_resize", "round_prefer_floor", [0, 0, -0.2, 0.1, 1, 1, 1.2, 0.8], [1, 1, 1.6, 1.4]),
    ("cubic", "half_pixel", "round_prefer_floor", None, [1, 1, 1.5, 0.75]),
]


@pytest.mark.parametrize("mode, ctm, nearest_mode, roi, scales", RESIZE_CASES, ids=[f"{c[0]}-{c[1]}" for c in RESIZE_CASES])
def test_resize_tables_reproduce_the_shared_resize(mode, ctm, nearest_mode, roi, scales):
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 6)).astype(np.float32)
    p = shared_resize._params(mode, ctm, nearest_mode, extrapolation_value=-7.0)
    roi_a = None if roi is None else np.array(roi, np.float32)
    sc = np.array(scales, np.float32)
    plan = shared_resize.resize_plan(x.shape, roi_a, sc, None, p)
    assert cu_resize.handles(plan, x.shape, x.dtype, p)
    want = shared_resize.Resize_11(KernelContext(np, "cpu"), x, roi_a, sc, coordinate_transformation_mode=ctm,
                                   mode=mode, nearest_mode=nearest_mode, extrapolation_value=-7.0)
    np.testing.assert_allclose(_resize_by_tables(x, plan, p), want, rtol=1e-5, atol=1e-5)


def test_resize_handles_only_the_last_two_axes():
    shape = (2, 3, 4, 5)
    p = shared_resize._params("linear")
    plan = shared_resize.resize_plan(shape, None, np.array([1, 2, 1, 1], np.float32), None, p)
    assert not cu_resize.handles(plan, shape, np.float32, p)
    plan = shared_resize.resize_plan(shape, None, np.array([1, 1, 1, 2], np.float32), None, p)
    assert cu_resize.handles(plan, shape, np.float32, p)
    assert not cu_resize.handles(plan, shape, np.int32, p)
    nearest = shared_resize._params("nearest")
    assert cu_resize.handles(plan, shape, np.int32, nearest)
    same = shared_resize.resize_plan(shape, None, np.ones(4, np.float32), None, p)
    assert not cu_resize.handles(same, shape, np.float32, p)   # nothing to do: the shared kernel returns X
    crop = shared_resize._params("linear", "tf_crop_and_resize")
    roi = np.array([0, 0.5, 0, 0, 1, 1, 1, 1], np.float32)   # axis 1 cropped: not a leading identity
    plan = shared_resize.resize_plan(shape, roi, np.array([1, 1, 1, 2], np.float32), None, crop)
    assert not cu_resize.handles(plan, shape, np.float32, crop)
