"""The CUDA provider's layout, index, resize, pooling and reduction kernels (copy.cu,
gather.cu, resize.cu, pool.cu, reduce.cu), run on the CPU by the host emulator
(``tests/support/cuda_emulator``), against the shared NumPy kernels.

As in ``test_cuda_math_kernels_emulated.py``: each case calls the registered ``provider="cuda"`` kernel
with the emulator's ``cupy`` stand-in, so the launcher's real CuPy path and the unchanged
CUDA source run; every case checks which kernels were launched, so a silent fallback to
the shared kernel fails, and cases the launchers leave to the shared kernel check that no
raw kernel ran.  Tolerances are ``cuda_checks.tolerance``'s; moves are exact.

What this cannot show: anything about the GPU itself (memory model, warp scheduling,
speed); the GPU tier does.
"""
from __future__ import annotations

import numpy as np
import pytest

from support.cuda_checks import F16, F32, F64, FLOATS, I32, I64, assert_close, random, tolerance
from support.cuda_emulator import emulated_cuda  # noqa: F401  (the fixture)
from test_cuda_math_kernels_emulated import device_view, run_both, run_cuda, run_shared

U8, I8, I16, BOOL = np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.bool_)
MOVED = (F32, F16, F64, I64, I32, I16, U8, BOOL)   # one of each width, and the kinds


def assert_same(got, want):
    """Outputs (one or a tuple) equal in shape, dtype and every element."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=0, atol=0)


def launched(names, *prefixes):
    """True when every kernel launched starts with one of ``prefixes`` and one did run."""
    return bool(names) and all(n.startswith(prefixes) for n in names)


# ---------------------------------------------------------------- Transpose

TRANSPOSES = [((40, 33), (1, 0), "transpose_tiles"), ((3, 35, 70), (0, 2, 1), "transpose_tiles"),
              ((2, 3, 4, 5), (0, 3, 1, 2), "strided_copy"), ((4, 5, 6), (2, 1, 0), "strided_copy"),
              ((1, 17, 1, 20), (3, 1, 2, 0), "transpose_tiles"), ((6, 7), None, "strided_copy"),
              ((2, 1, 2, 1, 2, 1, 2, 1, 2, 3), tuple(range(9, -1, -1)), "strided_copy")]


@pytest.mark.parametrize("dtype", MOVED, ids=str)
@pytest.mark.parametrize("shape, perm, kernel", TRANSPOSES, ids=str)
def test_transpose(emulated_cuda, shape, perm, kernel, dtype):
    x = random(np.random.default_rng(0), shape, dtype)
    got, want, names = run_both(emulated_cuda, "Transpose", 13, (x,), {"perm": perm})
    assert_same(got, want)
    assert launched(names, kernel)


def test_transpose_of_a_view_and_of_nothing(emulated_cuda):
    cp = emulated_cuda.cupy
    x = random(np.random.default_rng(1), (6, 40, 20), F32)
    view = device_view(cp, x, "reversed")[1:5]
    got, names = run_cuda(emulated_cuda, "Transpose", 13, (view,), {"perm": (2, 0, 1)})
    np.testing.assert_array_equal(got, x[1:5].transpose(2, 0, 1))
    assert launched(names, "strided_copy")
    got, names = run_cuda(emulated_cuda, "Transpose", 13, (x[:0],), {"perm": (1, 0, 2)})
    assert got.shape == (40, 0, 20) and not names
    got, names = run_cuda(emulated_cuda, "Transpose", 13, (x[0, 0],), {})   # 1-D: the input itself
    np.testing.assert_array_equal(got, x[0, 0])
    assert not names


# ---------------------------------------------------------------- Concat, Split, Slice

@pytest.mark.parametrize("dtype", (F32, F16, I64, U8, BOOL), ids=str)
@pytest.mark.parametrize("axis", (0, 1, -1))
def test_concat(emulated_cuda, axis, dtype):
    rng = np.random.default_rng(2)
    shapes = [[3, 4, 5], [3, 4, 5], [3, 4, 5]]
    for k, n in zip((0, 1, 2), (2, 0, 6)):
        shapes[k][axis] = n
    parts = [random(rng, s, dtype) for s in shapes]
    got, want, names = run_both(emulated_cuda, "Concat", 13, parts, {"axis": axis})
    assert_same(got, want)
    assert launched(names, "copy_flat", "strided_copy") and len(names) == 2   # the empty part moves nothing


def test_concat_of_views_and_mismatches(emulated_cuda):
    cp = emulated_cuda.cupy
    rng = np.random.default_rng(3)
    a, b = random(rng, (4, 3), F64), random(rng, (4, 5), F64)
    got, names = run_cuda(emulated_cuda, "Concat", 4, (device_view(cp, a, "transposed"),
                                                     device_view(cp, b, "strided")), {"axis": 1})
    np.testing.assert_array_equal(got, np.concatenate([a, b], axis=1))
    assert launched(names, "strided_copy")
    with pytest.raises(ValueError):   # shapes that do not join: the shared kernel's error
        run_cuda(emulated_cuda, "Concat", 13, (a, random(rng, (3, 3), F64)), {"axis": 1})


SPLITS = [(1, {"axis": 1, "split": [1, 3]}, ()), (2, {"axis": 2, "split": [2, 3]}, ()),
          (13, {"axis": 0}, (np.array([1, 1]),)), (13, {"axis": -1}, ()),
          (18, {"axis": 1, "num_outputs": 3}, ()), (18, {"axis": 2}, (np.array([4, 1]),))]


@pytest.mark.parametrize("dtype", (F32, F16, I8), ids=str)
@pytest.mark.parametrize("opset, attrs, extra", SPLITS, ids=str)
def test_split(emulated_cuda, opset, attrs, extra, dtype):
    x = random(np.random.default_rng(4), (2, 4, 5), dtype)
    if opset == 13 and not extra:
        x = x[..., :4]   # equal parts
    outputs = 3 if attrs.get("num_outputs") == 3 else 2
    split_attr = attrs.pop("split", None) if opset == 1 else None
    if split_attr is not None:
        extra = (np.array(split_attr),)
    got, want, names = run_both(emulated_cuda, "Split", opset, (x,) + extra, attrs, num_outputs=outputs)
    assert_same(got, want)
    if attrs["axis"] != 0:   # parts along the first axis are contiguous views: nothing to copy
        assert launched(names, "strided_copy")
    for part in got:
        assert part.flags.c_contiguous


SLICES = [((10, 8), [2, 1], [9, 7], [0, 1], [3, 2]), ((10, 8), [-1, 7], [-11, 0], [0, 1], [-2, -3]),
          ((4, 5, 6), [1], [100], [2], None), ((4, 5, 6), [0, -3], [3, 5], [-1, 0], [1, 1]),
          ((7,), [5], [2], [0], [-1]), ((4, 5), [3], [1], [0], [1])]


@pytest.mark.parametrize("dtype", (F32, F64, I16, BOOL), ids=str)
@pytest.mark.parametrize("shape, starts, ends, axes, steps", SLICES, ids=str)
def test_slice(emulated_cuda, shape, starts, ends, axes, steps, dtype):
    x = random(np.random.default_rng(5), shape, dtype)
    inputs = (x, np.array(starts), np.array(ends), np.array(axes), None if steps is None else np.array(steps))
    got, want, names = run_both(emulated_cuda, "Slice", 13, inputs)
    assert_same(got, want)
    assert got.flags.c_contiguous
    if got.size and not want.flags.c_contiguous:
        assert launched(names, "strided_copy", "copy_flat")


def test_slice_opset_1(emulated_cuda):
    x = random(np.random.default_rng(6), (5, 6, 7), F16)
    got, want, names = run_both(emulated_cuda, "Slice", 1, (x,), {"starts": [1, 2], "ends": [4, -1], "axes": [1, 2]})
    assert_same(got, want)
    assert launched(names, "strided_copy")


# ---------------------------------------------------------------- Gather, GatherND, ScatterND

@pytest.mark.parametrize("index_dtype", (I32, I64), ids=str)
@pytest.mark.parametrize("dtype", MOVED, ids=str)
@pytest.mark.parametrize("axis", (0, 1, -1))
def test_gather(emulated_cuda, axis, dtype, index_dtype):
    rng = np.random.default_rng(7)
    x = random(rng, (5, 6, 7), dtype)
    n = x.shape[axis]
    idx = rng.integers(-n, n, size=(2, 3)).astype(index_dtype)
    got, want, names = run_both(emulated_cuda, "Gather", 13, (x, idx), {"axis": axis})
    assert_same(got, want)
    assert launched(names, "gather_axis")


def test_gather_scalar_index_and_views(emulated_cuda):
    cp = emulated_cuda.cupy
    x = random(np.random.default_rng(8), (4, 9), F32)
    got, want, names = run_both(emulated_cuda, "Gather", 11, (x, np.array(-2, np.int64)), {"axis": 1})
    assert_same(got, want)
    assert got.shape == (4,) and launched(names, "gather_axis")
    got, names = run_cuda(emulated_cuda, "Gather", 13, (device_view(cp, x, "transposed"),
                                                         cp.asarray(np.array([3, 0]))), {"axis": 0})
    np.testing.assert_array_equal(got, x[[3, 0]])


@pytest.mark.parametrize("op, opset, inputs, attrs", [
    ("Gather", 13, (np.zeros((3, 4), np.float32), np.array([0, 4])), {"axis": 1}),
    ("Gather", 13, (np.zeros((3, 4), np.float32), np.array([-4, -5], np.int32)), {"axis": 0}),
    ("GatherND", 13, (np.zeros((3, 4), np.float32), np.array([[1, 4]])), {}),
    ("GatherND", 13, (np.zeros((2, 3, 4), np.float32), np.array([[-4], [0]])), {"batch_dims": 1}),
    ("ScatterND", 18, (np.zeros((3, 4), np.float32), np.array([[3]]), np.ones((1, 4), np.float32)), {}),
    ("ScatterND", 18, (np.zeros((3, 4), np.int64), np.array([[0, -5]]), np.ones(1, np.int64)),
     {"reduction": "add"}),
], ids=["gather", "gather-negative", "gathernd", "gathernd-batch", "scatternd", "scatternd-add"])
def test_out_of_range_indices_raise_like_the_shared_kernel(emulated_cuda, op, opset, inputs, attrs):
    with pytest.raises(IndexError) as shared_error:
        run_shared(op, opset, inputs, attrs)
    with pytest.raises(IndexError, match="out of bounds") as cuda_error:
        run_cuda(emulated_cuda, op, opset, inputs, attrs)
    assert emulated_cuda.names(), "the raw kernel did not run"
    assert str(cuda_error.value).split(" is out")[0] in str(shared_error.value) or op == "GatherND"


GATHER_ND = [((4, 5, 6), (3, 2), 0), ((4, 5, 6), (2, 2, 3), 0), ((4, 5, 6), (4, 1), 1),
             ((2, 3, 4, 5), (2, 3, 2, 1), 2), ((6,), (4, 1), 0)]


@pytest.mark.parametrize("dtype", (F32, F16, I64, U8), ids=str)
@pytest.mark.parametrize("data_shape, idx_shape, batch_dims", GATHER_ND, ids=str)
def test_gather_nd(emulated_cuda, data_shape, idx_shape, batch_dims, dtype):
    rng = np.random.default_rng(9)
    x = random(rng, data_shape, dtype)
    k = idx_shape[-1]
    dims = data_shape[batch_dims:batch_dims + k]
    idx = np.zeros(idx_shape, np.int64)
    for j, d in enumerate(dims):
        idx[..., j] = rng.integers(-d, d, size=idx_shape[:-1])
    got, want, names = run_both(emulated_cuda, "GatherND", 13 if batch_dims else 11, (x, idx),
                                {"batch_dims": batch_dims} if batch_dims else {})
    assert_same(got, want)
    assert launched(names, "gather_nd")


def test_gather_nd_empty_tuples_are_the_shared_kernels_error(emulated_cuda):
    x = random(np.random.default_rng(9), (3, 4), F32)
    with pytest.raises(ValueError):
        run_shared("GatherND", 11, (x, np.zeros((2, 0), np.int64)))
    with pytest.raises(ValueError):
        run_cuda(emulated_cuda, "GatherND", 11, (x, np.zeros((2, 0), np.int64)))
    assert not emulated_cuda.names()


SCATTER_TYPES = (F32, F16, F64, I32, I64)


@pytest.mark.parametrize("dtype", SCATTER_TYPES, ids=str)
@pytest.mark.parametrize("reduction", ("none", "add", "mul", "max", "min"))
def test_scatter_nd(emulated_cuda, reduction, dtype):
    rng = np.random.default_rng(10)
    x = random(rng, (5, 4, 3), dtype, -2, 2)
    # row tuples (k = 2); with a reduction some repeat, so updates meet at one place
    tuples = [[1, 2], [-1, 0], [3, 3], [0, -4]] + ([[1, 2], [-4, 2], [1, 2]] if reduction != "none" else [])
    idx = np.array(tuples, np.int64)
    upd = random(rng, (len(tuples), 3), dtype, -2, 2)
    got, want, names = run_both(emulated_cuda, "ScatterND", 18, (x, idx, upd), {"reduction": reduction})
    exact = reduction in ("none", "max", "min") or dtype.kind == "i"
    assert_close(got, want, **tolerance(dtype, "exact" if exact else "math"))
    kernel = "scatter_nd_assign" if reduction == "none" else "scatter_nd_reduce"
    assert names[-1].startswith(kernel) and launched(names, "copy_flat", kernel)


def test_scatter_nd_full_tuples_and_views(emulated_cuda):
    cp = emulated_cuda.cupy
    rng = np.random.default_rng(11)
    x = random(rng, (4, 6), F32)
    idx = np.array([[0, 5], [3, 0], [2, 2]], np.int64)        # k == rank: single elements
    upd = random(rng, (3,), F32)
    got, want, names = run_both(emulated_cuda, "ScatterND", 16, (x, idx, upd), {"reduction": "mul"})
    assert_close(got, want, **tolerance(F32))
    got, names = run_cuda(emulated_cuda, "ScatterND", 13, (device_view(cp, x, "transposed"), idx, upd))
    want = x.copy()
    want[idx[:, 0], idx[:, 1]] = upd
    np.testing.assert_array_equal(got, want)
    assert names == ["strided_copy<unsigned int, int>", "scatter_nd_assign<unsigned int>"]


def test_scatter_nd_nan_and_integer_wrap(emulated_cuda):
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    idx = np.array([[0], [0]], np.int64)
    upd = np.array([[np.nan, 5.0], [0.5, -1.0]], np.float32)
    for reduction in ("max", "min"):
        got, want, _ = run_both(emulated_cuda, "ScatterND", 18, (x, idx, upd), {"reduction": reduction})
        assert_close(got, want, rtol=0, atol=0)
    big = np.array([[2 ** 30, 7]], np.int32)
    got, want, _ = run_both(emulated_cuda, "ScatterND", 18, (big, np.array([[0], [0]]), np.array([[2 ** 30, 1]] * 2, np.int32)),
                            {"reduction": "add"})
    assert_same(got, want)


# ---------------------------------------------------------------- Resize and Upsample

RESIZES = [
    # (mode, coordinate_transformation_mode, nearest_mode, scales or sizes)
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2.0, 3.0]),
    ("nearest", "asymmetric", "floor", [1, 1, 0.5, 0.7]),
    ("nearest", "align_corners", "round_prefer_ceil", [1, 1, 1.5, 1.0]),
    ("nearest", "tf_half_pixel_for_nn", "ceil", [1, 1, 1.7, 2.3]),
    ("nearest", "half_pixel", "round_prefer_floor", ("sizes", [2, 3, 7, 3])),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 2.0, 0.6]),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", [1, 1, 0.5, 1.5]),
    ("linear", "align_corners", "round_prefer_floor", [1, 1, 1.3, 1.0]),
    ("linear", "asymmetric", "round_prefer_floor", ("sizes", [2, 3, 3, 9])),
    ("cubic", "half_pixel", "round_prefer_floor", [1, 1, 1.5, 0.75]),
]


def _resize_inputs(x, spec):
    if isinstance(spec, tuple):
        return (x, None, None, np.array(spec[1], np.int64))
    return (x, None, np.array(spec, np.float32))


@pytest.mark.parametrize("dtype", FLOATS + (U8,), ids=str)
@pytest.mark.parametrize("mode, ctm, nearest_mode, spec", RESIZES, ids=str)
def test_resize(emulated_cuda, mode, ctm, nearest_mode, spec, dtype):
    x = random(np.random.default_rng(12), (2, 3, 5, 6), dtype)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest_mode}
    got, want, names = run_both(emulated_cuda, "Resize", 13, _resize_inputs(x, spec), attrs)
    if dtype.kind == "u" and mode != "nearest":   # integer interpolation: the shared kernel
        assert_same(got, want)
        assert not names
        return
    assert_close(got, want, **tolerance(dtype, "exact" if mode == "nearest" else "math"))
    assert launched(names, "resize_nearest" if mode == "nearest" else "resize_taps")


@pytest.mark.parametrize("mode", ("nearest", "linear"))
def test_resize_tf_crop_and_resize_fills_outside(emulated_cuda, mode):
    x = random(np.random.default_rng(13), (1, 2, 5, 6), F32)
    roi = np.array([0, 0, -0.2, 0.1, 1, 1, 1.2, 0.9], np.float32)
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -3.5}
    got, want, names = run_both(emulated_cuda, "Resize", 11, (x, roi, np.array([1, 1, 1.6, 1.4], np.float32)), attrs)
    assert_close(got, want, **tolerance(F32))
    assert (got == -3.5).any() and launched(names, "resize_")


def test_resize_18_antialias_axes_and_policy(emulated_cuda):
    rng = np.random.default_rng(14)
    x = random(rng, (1, 2, 9, 12), F32)
    cases = [({"mode": "linear", "antialias": 1}, (x, None, np.array([1, 1, 0.5, 0.4], np.float32))),
             ({"mode": "cubic", "antialias": 1, "exclude_outside": 1}, (x, None, np.array([1, 1, 0.6, 0.5], np.float32))),
             ({"mode": "linear", "axes": [2, 3]}, (x, None, np.array([1.5, 0.5], np.float32))),
             ({"mode": "nearest", "axes": [-1], "keep_aspect_ratio_policy": "not_larger"},
              (x, None, None, np.array([5], np.int64))),
             ({"mode": "linear", "axes": [3, 2], "keep_aspect_ratio_policy": "not_smaller"},
              (x, None, None, np.array([7, 4], np.int64)))]
    for attrs, inputs in cases:
        got, want, names = run_both(emulated_cuda, "Resize", 19, inputs, attrs)
        assert_close(got, want, **tolerance(F32))
        assert launched(names, "resize_"), attrs


def test_resize_1d_10_upsample_and_fallbacks(emulated_cuda):
    rng = np.random.default_rng(15)
    x3 = random(rng, (2, 3, 7), F32)
    got, want, names = run_both(emulated_cuda, "Resize", 13, (x3, None, np.array([1, 1, 2.5], np.float32)),
                                {"mode": "linear"})
    assert_close(got, want, **tolerance(F32))
    assert launched(names, "resize_taps")
    x = random(rng, (1, 2, 4, 5), F16)
    for op, opset, inputs, attrs in [("Resize", 10, (x, np.array([1, 1, 0.6, 2.2], np.float32)), {}),
                                     ("Upsample", 9, (x, np.array([1, 1, 2, 3], np.float32)), {"mode": "linear"}),
                                     ("Upsample", 7, (x,), {"scales": [1.0, 1.0, 3.0, 2.0]})]:
        got, want, names = run_both(emulated_cuda, op, opset, inputs, attrs)
        assert_close(got, want, **tolerance(F16, "exact" if attrs.get("mode", "nearest") == "nearest" else "math"))
        assert launched(names, "resize_")
    got, want, names = run_both(emulated_cuda, "Resize", 13, (x, None, np.array([1, 2, 1, 1], np.float32)), {})
    assert_same(got, want)
    assert not names   # the channel axis grows: the shared kernel


# ---------------------------------------------------------------- pooling

POOLS = [{"kernel_shape": [3, 3]}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 1, 0], "ceil_mode": 1},
         {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 2, 2, 2]},
         {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
         {"kernel_shape": [2, 2], "strides": [3, 3], "auto_pad": "SAME_LOWER"},
         {"kernel_shape": [3, 3], "strides": [3, 3], "ceil_mode": 1, "pads": [1, 1, 1, 1]},
         {"kernel_shape": [4, 4], "auto_pad": "VALID", "strides": [2, 3]},
         {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}]


@pytest.mark.parametrize("attrs", POOLS, ids=str)
@pytest.mark.parametrize("op, extra", [("MaxPool", {}), ("AveragePool", {}), ("AveragePool", {"count_include_pad": 1})],
                         ids=("max", "average", "average-include-pad"))
def test_pool(emulated_cuda, op, extra, attrs):
    nd = len(attrs["kernel_shape"])
    x = random(np.random.default_rng(16), (2, 3) + ((9, 10) if nd == 2 else (11,)), F32)
    got, want, names = run_both(emulated_cuda, op, 22 if op == "MaxPool" else 19, (x,), {**attrs, **extra})
    assert_close(got, want, **tolerance(F32))
    assert launched(names, "pool2d")


@pytest.mark.parametrize("dtype", (F16, F64, I8, U8), ids=str)
@pytest.mark.parametrize("op", ("MaxPool", "AveragePool"))
def test_pool_types(emulated_cuda, op, dtype):
    x = random(np.random.default_rng(17), (1, 2, 7, 8), dtype)
    if dtype.kind == "f":
        x[0, 0, 1, 1] = np.nan
        x[0, 1, 2, 3] = -np.inf
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    got, want, names = run_both(emulated_cuda, op, 12 if op == "MaxPool" else 11, (x,), attrs)
    assert_close(got, want, **tolerance(dtype, "exact" if op == "MaxPool" else "math"))
    assert launched(names, "pool2d") == (op == "MaxPool" or dtype.kind == "f")


def test_maxpool_with_indices_and_3d_go_to_the_shared_kernel(emulated_cuda):
    x = random(np.random.default_rng(18), (1, 2, 6, 6), F32)
    got, want, names = run_both(emulated_cuda, "MaxPool", 12, (x,), {"kernel_shape": [2, 2]}, num_outputs=2)
    assert_same(got, want)
    assert not names
    x3 = random(np.random.default_rng(19), (1, 2, 4, 4, 4), F32)
    got, want, names = run_both(emulated_cuda, "AveragePool", 19, (x3,), {"kernel_shape": [2, 2, 2]})
    assert_close(got, want, **tolerance(F32))
    assert not names


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", ((2, 3, 5, 7), (2, 3, 40), (1, 2, 1, 1)), ids=str)
@pytest.mark.parametrize("op", ("GlobalAveragePool", "GlobalMaxPool"))
def test_global_pools(emulated_cuda, op, shape, dtype):
    x = random(np.random.default_rng(20), shape, dtype)
    got, want, names = run_both(emulated_cuda, op, 22, (x,))
    assert_close(got, want, **tolerance(dtype, "exact" if op == "GlobalMaxPool" else "math"))
    assert launched(names, "reduce_")


# ---------------------------------------------------------------- reductions

REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
AXES = [((3, 4, 50), [2], "reduce_rows"), ((3, 4, 5), [-1], "reduce_columns"), ((6, 5, 4), [0], "reduce_columns"),
        ((3, 4, 5), [1], "reduce_columns"), ((8, 4, 5, 6), [0, 2], "reduce_rows"), ((2, 40, 3), None, "reduce_rows"),
        ((4, 1, 6), [1], "reduce_columns"), ((2, 3, 4, 5), [1, 2], "reduce_columns")]


def _reduce_input(rng, op, shape, dtype):
    if op == "ReduceProd":
        return random(rng, shape, dtype, 0.8, 1.25) if dtype.kind == "f" else random(rng, shape, dtype, -0.04, 0.04)
    if op == "ReduceLogSum":
        return random(rng, shape, dtype, 0.1, 2.0)
    return random(rng, shape, dtype, -2, 2)


@pytest.mark.parametrize("dtype", (F32, F16, F64, I32, I64), ids=str)
@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_ops(emulated_cuda, op, dtype):
    rng = np.random.default_rng(21)
    for shape, axes, kernel in AXES:
        x = _reduce_input(rng, op, shape, dtype)
        for keepdims in (0, 1):
            attrs = {"keepdims": keepdims} if axes is None else {"axes": axes, "keepdims": keepdims}
            got, want, names = run_both(emulated_cuda, op, 13 if op != "ReduceSum" else 11, (x,), attrs)
            if dtype.kind == "i" and op in ("ReduceLogSum", "ReduceLogSumExp"):
                assert_same(got, want)
                assert not names
                continue
            assert_close(got, want, **tolerance(dtype))
            assert names and names[-1].startswith(kernel), (shape, axes, names)


@pytest.mark.parametrize("op, opset", [("ReduceSum", 13), ("ReduceMean", 18), ("ReduceMax", 20),
                                       ("ReduceLogSumExp", 18), ("ReduceL2", 18)])
def test_reduce_axes_input_and_noop(emulated_cuda, op, opset):
    x = random(np.random.default_rng(22), (3, 4, 5), F32)
    for axes, noop in ((np.array([0, -1]), 0), (np.array([], np.int64), 0), (None, 0), (np.array([], np.int64), 1)):
        got, want, names = run_both(emulated_cuda, op, opset, (x, axes), {"keepdims": 0, "noop_with_empty_axes": noop})
        assert_close(got, want, **tolerance(F32))
        assert bool(names) == (noop == 0)   # nothing to reduce: the shared kernel's element-wise result


def test_reduce_long_rows_nan_inf_and_wrap(emulated_cuda):
    rng = np.random.default_rng(23)
    x = random(rng, (3, 1500), F32)      # longer than 1024: one block per row
    x[1, 7] = np.nan
    x[2, :] = -np.inf
    for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceLogSumExp"):
        got, want, names = run_both(emulated_cuda, op, 13, (x,), {"axes": [1]})
        assert_close(got, want, **tolerance(F32))
        assert names == ["reduce_rows<float>"]
    big = np.full((2, 40), 2 ** 62, np.int64)   # the sum wraps, as in NumPy
    got, want, names = run_both(emulated_cuda, "ReduceSum", 13, (big, np.array([1])), {})
    assert_same(got, want)
    assert names == ["reduce_rows<long long>"]


def test_reduce_empty_axis_and_strided_input(emulated_cuda):
    cp = emulated_cuda.cupy
    x = random(np.random.default_rng(24), (4, 0, 3), F32)
    got, want, names = run_both(emulated_cuda, "ReduceSum", 13, (x, np.array([1])), {})
    assert_same(got, want)
    assert not names   # a reduction over an empty axis: the shared kernel's identity
    y = random(np.random.default_rng(25), (6, 5), F64)
    got, names = run_cuda(emulated_cuda, "ReduceMean", 13, (device_view(cp, y, "strided"),), {"axes": [0]})
    np.testing.assert_allclose(got, y.mean(axis=0, keepdims=True), rtol=1e-12)
    assert names == ["strided_copy<unsigned long long, int>", "reduce_columns<double>"]


# ---------------------------------------------------------------- Resize tables uploaded once

@pytest.mark.parametrize("mode, scales, kernel", [
    ("nearest", [1, 1, 2.0, 0.5], "resize_nearest"), ("linear", [1, 1, 1.5, 0.7], "resize_taps"),
    ("linear", [1, 2, 1, 1], None),   # the channel axis grows: the shared kernel, same uploads
])
def test_resize_uploads_its_tables_once_per_session(emulated_cuda, monkeypatch, mode, scales, kernel):
    """Issue 12 item 2 (Resize): the index/weight tables go to the device once per content
    through the provider's DeviceTables, so a warmed-up launch copies nothing from the host
    and Resize can run inside a CUDA-graph capture (declared capturable)."""
    from types import SimpleNamespace
    from ortgpu.providers import registry
    from ortgpu.providers.cuda.device_tables import DeviceTables
    from ortgpu.providers.registry import KernelContext
    cp = emulated_cuda.cupy
    fn = registry.lookup("Resize", "", 13, ("cuda",)).fn
    assert registry.lookup("Resize", "", 13, ("cuda",)).capturable
    ep = SimpleNamespace(device_tables=DeviceTables(), error_flags=None)
    x = random(np.random.default_rng(16), (1, 2, 5, 6), F32)
    dev_x = cp.asarray(x)
    uploads = []
    real = cp.asarray
    monkeypatch.setattr(cp, "asarray", lambda a, *k, **kw: uploads.append(type(a)) or real(a, *k, **kw))
    ctx = KernelContext(cp, "CUDAExecutionProvider", "r", "Resize", 13, ep=ep)
    first = fn(ctx, dev_x, None, np.array(scales, np.float32), mode=mode)
    first_uploads, first_launches = len(uploads), len(emulated_cuda.launches)
    assert first_uploads >= (1 if kernel else 0) and ep.device_tables.uploads == first_uploads
    second = fn(ctx, dev_x, None, np.array(scales, np.float32), mode=mode)
    assert len(uploads) == first_uploads, f"a warmed-up Resize copied from the host: {uploads[first_uploads:]}"
    want = run_shared("Resize", 13, (x, None, np.array(scales, np.float32)), {"mode": mode})
    for got in (first, second):
        assert_close(got.get(), want, **tolerance(F32, "exact" if mode == "nearest" else "math"))
    names = [launch.name for launch in emulated_cuda.launches[:first_launches]]
    assert launched(names, kernel) if kernel else not names


def test_device_tables_are_keyed_by_content_and_bounded():
    from ortgpu.providers.cuda.device_tables import CachedUploads, DeviceTables
    from support.device_double import fake_xp
    tables = DeviceTables(max_entries=2)
    a = tables.upload(fake_xp, np.arange(4))
    assert tables.upload(fake_xp, np.arange(4)) is a and tables.uploads == 1
    assert tables.upload(fake_xp, np.arange(4), np.float32) is not a     # another dtype: another table
    tables.upload(fake_xp, np.arange(5))
    assert len(tables) == 2 and tables.uploads == 3                       # full: uploaded, not kept
    xp = CachedUploads(fake_xp, tables)
    assert xp.asarray(np.arange(4)) is a and xp.asarray(a) is not None and tables.uploads == 3
    assert xp.asarray(2.5, dtype=np.float32).get() == 2.5 and tables.uploads == 4
