"""MatMulIntegerToFloat, DynamicQuantizeMatMul and QGemm against onnxruntime over seeded random
configurations (signedness, per-tensor / per-column scales and zero points, bias, transposes,
C, float or requantized output)."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 20


def _int(rng, shape, signed):
    return rng.integers(-128, 128, shape).astype(np.int8) if signed else \
        rng.integers(0, 256, shape).astype(np.uint8)


def _per_column(rng, n, per_col, make):
    return make((n,)) if per_col else make(())


@pytest.mark.parametrize("i", range(N_CASES))
def test_matmul_integer_to_float(i):
    rng = rng_for("MatMulIntegerToFloat", i)
    M, K, N = (int(v) for v in rng.integers(1, 9, 3))
    sa, sb, per_col = bool(i % 2), bool(i % 3 == 0), bool(i % 4 < 2)
    sb = sb or sa  # onnxruntime's CPU kernels take no int8 A with a uint8 B
    lead = tuple(int(v) for v in rng.integers(1, 3, int(rng.integers(0, 2))))
    A = _int(rng, lead + (M, K), sa)
    B = _int(rng, (K, N), sb)
    fdt = np.float16 if i % 5 == 4 else np.float32
    a_scale = np.asarray(rng.random() * 0.05 + 0.01, fdt)
    b_scale = _per_column(rng, N, per_col, lambda s: (rng.random(s) * 0.05 + 0.01).astype(fdt))
    consts = {"B": B, "a_scale": a_scale, "b_scale": b_scale}
    order = ["A", "B", "a_scale", "b_scale"]
    if i % 3 != 2:
        consts["a_zp"] = _int(rng, (), sa)
        consts["b_zp"] = _per_column(rng, N, per_col, lambda s: _int(rng, s, sb))
        order += ["a_zp", "b_zp"]
    if i % 2 == 0:
        consts["bias"] = rng.normal(size=N).astype(fdt)
        order += [""] * (6 - len(order)) + ["bias"]
    feeds = {"A": A}
    got, want = run_both(model("MatMulIntegerToFloat", order, feeds, consts), feeds)
    tol = 2e-3 if fdt == np.float16 else 1e-5
    assert_close(got, want, rtol=tol, atol=tol, what=f"case {i}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_dynamic_quantize_matmul(i):
    rng = rng_for("DynamicQuantizeMatMul", i)
    M, K, N = (int(v) for v in rng.integers(1, 9, 3))
    sb, per_col = bool(i % 2), bool(i % 4 < 2)
    A = (rng.normal(size=(int(rng.integers(1, 3)), M, K)) * 3 + (1.0 if i % 3 == 0 else 0.0)).astype(np.float32)
    consts = {"B": _int(rng, (K, N), sb),
              "b_scale": _per_column(rng, N, per_col, lambda s: (rng.random(s) * 0.05 + 0.01).astype(np.float32))}
    order = ["A", "B", "b_scale"]
    if i % 3 != 1:
        consts["b_zp"] = _per_column(rng, N, per_col, lambda s: _int(rng, s, sb))
        order.append("b_zp")
    if i % 2 == 0:
        consts["bias"] = rng.normal(size=N).astype(np.float32)
        order += [""] * (4 - len(order)) + ["bias"]
    feeds = {"A": A}
    got, want = run_both(model("DynamicQuantizeMatMul", order, feeds, consts), feeds)
    assert_close(got, want, rtol=1e-5, atol=1e-5, what=f"case {i}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_qgemm(i):
    rng = rng_for("QGemm", i)
    M, K, N = (int(v) for v in rng.integers(1, 9, 3))
    sa, sb, per_col = bool(i % 2), bool(i % 3 == 0), bool(i % 4 < 2)
    sb = sb or sa  # onnxruntime's CPU kernels take no int8 A with a uint8 B
    ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    A = _int(rng, (K, M) if ta else (M, K), sa)
    consts = {"a_scale": np.float32(0.02), "a_zp": _int(rng, (), sa), "B": _int(rng, (N, K) if tb else (K, N), sb),
              "b_scale": _per_column(rng, N, per_col, lambda s: (rng.random(s) * 0.05 + 0.01).astype(np.float32)),
              "b_zp": _per_column(rng, N, per_col, lambda s: _int(rng, s, sb))}
    order = ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp"]
    if i % 3 != 2:
        consts["C"] = rng.integers(-2000, 2000, (N,) if i % 2 else (M, N)).astype(np.int32)
        order.append("C")
    quantized = i % 2 == 0
    if quantized:
        consts["y_scale"] = np.float32(rng.random() * 0.5 + 0.1)
        consts["y_zp"] = _int(rng, (), sa)  # onnxruntime requantizes to A's type only
        order += [""] * (7 - len(order)) + ["y_scale", "y_zp"]
    attrs = dict(alpha=float(rng.choice([1.0, 0.5])), transA=ta, transB=tb)
    feeds = {"A": A}
    got, want = run_both(model("QGemm", order, feeds, consts, attrs=attrs), feeds)
    assert_close(got, want, rtol=1e-5, atol=1e-4, steps=1, what=f"case {i}: {attrs}")


@pytest.mark.parametrize("i", range(8))
def test_matmul_integer16(i):
    rng = rng_for("MatMulInteger16", i)
    M, K, N = (int(v) for v in rng.integers(1, 7, 3))
    # onnxruntime's CPU kernel takes int16 only
    A = rng.integers(-30000, 30000, (M, K)).astype(np.int16)
    B = rng.integers(-30000, 30000, (K, N)).astype(np.int16)
    feeds = {"A": A, "B": B}
    got, want = run_both(model("MatMulInteger16", ["A", "B"], feeds, {}), feeds)
    assert_close(got, want, what=f"case {i}")
