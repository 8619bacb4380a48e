"""Exact integer products on floating-point BLAS (providers/kernels/quantize.py): the float type
and K slicing chosen from the operands' ranges give the same int32 results as integer matmul
(NumPy int64, the oracle), at and past the float32 bound, with per-row / per-column zero points,
and the int64 fallback past float64's range; the integer convolution matches onnxruntime's
ConvInteger."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from ortgpu.providers.kernels import quantize as qk
from ortgpu.providers.registry import KernelContext


def _extreme(rng, shape, dtype):
    """Integers of `dtype` mostly at the ends of its range (the largest products), some random."""
    lo, hi = qk.int_range(dtype)
    v = rng.choice([lo, hi], size=shape)
    mask = rng.random(shape) < 0.3
    v[mask] = rng.integers(lo, hi + 1, size=int(mask.sum()))
    return v.astype(dtype)


def _oracle(a, a_zp, b, b_zp):
    ai = a.astype(np.int64) - (0 if a_zp is None else qk.row_zero_point(a_zp, a).astype(np.int64))
    bi = b.astype(np.int64) - (0 if b_zp is None else b_zp.astype(np.int64))
    return np.matmul(ai, bi)


def test_the_stated_bounds():
    assert qk.FLOAT32_EXACT // (255 * 255) == 258              # uint8 with any zero point x uint8
    assert qk.FLOAT32_EXACT // (255 * 128) == 514              # uint8 x int8 with zero point 0
    assert qk.FLOAT64_EXACT // 65025 == 138_519_019_680        # float64: K <= 2**53 / 65025
    assert qk.exact_slice(65025, 258) == (np.float32, 258)
    assert qk.exact_slice(65025, 259)[0] == np.float32          # two float32 slices
    assert qk.exact_slice(65025, 5000)[0] == np.float64         # too many slices: float64 at once
    assert qk.shifted_bound(np.uint8, np.array(0, np.uint8)) == 255
    assert qk.shifted_bound(np.uint8, np.array(128, np.uint8)) == 128
    assert qk.shifted_bound(np.int8, None) == 128
    assert qk.shifted_bound(np.int8, np.array([-3, 5], np.int8)) == 133


@pytest.mark.parametrize("k", [1, 257, 258, 259, 514, 515, 1031, 5000])
@pytest.mark.parametrize("types", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
def test_int_matmul_is_exact(k, types):
    rng = np.random.default_rng(k)
    a = _extreme(rng, (7, k), types[0])
    b = _extreme(rng, (k, 5), types[1])
    a_zp = np.array(rng.integers(*qk.int_range(types[0])), types[0])
    b_zp = np.array(0, types[1])
    got = qk.int_matmul(np, a, a_zp, b, b_zp)
    assert got.dtype in (np.float32, np.float64)
    np.testing.assert_array_equal(got.astype(np.int64), _oracle(a, a_zp, b, b_zp))


def test_float32_when_it_fits_and_float64_when_it_does_not():
    rng = np.random.default_rng(0)
    small = qk.int_matmul(np, _extreme(rng, (3, 200), np.uint8), None, _extreme(rng, (200, 4), np.int8), None)
    assert small.dtype == np.float32
    big = qk.int_matmul(np, _extreme(rng, (3, 4000), np.uint8), np.array(3, np.uint8),
                        _extreme(rng, (4000, 4), np.uint8), np.array(250, np.uint8))
    assert big.dtype == np.float64


def test_per_row_and_per_column_zero_points_and_batches():
    rng = np.random.default_rng(1)
    a = _extreme(rng, (2, 6, 700), np.uint8)
    b = _extreme(rng, (2, 700, 9), np.int8)
    a_zp = rng.integers(0, 256, 6).astype(np.uint8)
    b_zp = rng.integers(-128, 128, 9).astype(np.int8)
    got = qk.int_matmul(np, a[0], a_zp, b[0], b_zp)
    np.testing.assert_array_equal(got.astype(np.int64), _oracle(a[0], a_zp, b[0], b_zp))
    got = qk.int_matmul(np, a, np.array(17, np.uint8), b, b_zp)
    np.testing.assert_array_equal(got.astype(np.int64), _oracle(a, np.array(17, np.uint8), b, b_zp))


def test_past_float64_falls_back_to_int64():
    """Terms of 2**52 summed 16 times pass 2**53: float64 would round, int64 stays exact."""
    rng = np.random.default_rng(2)
    a = rng.integers(2 ** 25, 2 ** 26, (3, 16)).astype(np.float64) + 1
    b = rng.integers(2 ** 25, 2 ** 26, (16, 2)).astype(np.float64) + 1
    want = np.matmul(a.astype(np.int64), b.astype(np.int64))
    assert not np.array_equal(np.matmul(a, b).astype(np.int64), want)   # the naive float64 product rounds
    got = qk.exact_matmul(np, a, b, 2 ** 52)
    np.testing.assert_array_equal(got.astype(np.int64), want)


def test_matmul_integer_kernel_returns_exact_int32():
    from ortgpu.providers.kernels.quantize import MatMulInteger
    rng = np.random.default_rng(3)
    a, b = _extreme(rng, (4, 1500), np.uint8), _extreme(rng, (1500, 3), np.uint8)
    from ortgpu.providers.registry import KernelContext
    ctx = KernelContext(np, "CPUExecutionProvider", op_type="MatMulInteger", opset=10)
    got = MatMulInteger(ctx, a, b, np.array(0, np.uint8), np.array(255, np.uint8))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _oracle(a, np.array(0, np.uint8), b, np.array(255, np.uint8)))


@pytest.mark.parametrize("channels,kernel", [(4, 3), (64, 3), (300, 1)])
def test_int_conv_matches_onnxruntime_conv_integer(channels, kernel):
    """K = channels x kernel**2 times the largest term (200 x 248) spans float32 (36, 300) and float64 (576) accumulation."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(channels)
    x = _extreme(rng, (2, channels, 6, 5), np.uint8)
    w = _extreme(rng, (3, channels, kernel, kernel), np.uint8)
    x_zp, w_zp = np.array(200, np.uint8), np.array(7, np.uint8)
    pads = [kernel // 2] * 4
    model = helper.make_model(helper.make_graph(
        [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=pads)], "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape),
         helper.make_tensor_value_info("w", TensorProto.UINT8, w.shape),
         helper.make_tensor_value_info("xz", TensorProto.UINT8, []),
         helper.make_tensor_value_info("wz", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)]), opset_imports=[helper.make_opsetid("", 13)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "w": w, "xz": x_zp, "wz": w_zp})[0]
    ctx = KernelContext(np, "CPUExecutionProvider")
    got = qk.int_conv(ctx, x, x_zp, w, w_zp, "NOTSET", None, 1, None, pads, None)
    assert got.dtype == (np.float32 if channels * kernel * kernel * 200 * 248 <= 2 ** 24 else np.float64)
    np.testing.assert_array_equal(got.astype(np.int64), want)
