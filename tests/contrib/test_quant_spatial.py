"""QLinearGlobalAveragePool, QLinearAveragePool, com.microsoft QLinearConv and com.microsoft
QuantizeLinear / DequantizeLinear against onnxruntime over seeded random configurations
(layouts, kernels, strides, pads, ceil mode, per-axis parameters, 16-bit and 4-bit types)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 16


def _q(rng, shape, signed):
    return rng.integers(-128, 128, shape).astype(np.int8) if signed else rng.integers(0, 256, shape).astype(np.uint8)


def _params(rng, signed, prefix):
    return {f"{prefix}_scale": np.float32(rng.random() * 0.1 + 0.005), f"{prefix}_zp": _q(rng, (), signed)}


@pytest.mark.parametrize("i", range(N_CASES))
def test_global_average_pool(i):
    rng = rng_for("QLinearGlobalAveragePool", i)
    signed, last = bool(i % 2), int(i % 4 >= 2)
    shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(3, 5))))
    X = _q(rng, shape, signed)
    consts = {**_params(rng, signed, "x"), **_params(rng, signed, "y")}
    feeds = {"X": X}
    m = model("QLinearGlobalAveragePool", ["X", "x_scale", "x_zp", "y_scale", "y_zp"], feeds, consts,
              attrs={"channels_last": last})
    got, want = run_both(m, feeds)
    assert_close(got, want, steps=1, what=f"case {i}: shape {shape} channels_last {last}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_average_pool(i):
    rng = rng_for("QLinearAveragePool", i)
    signed, last = bool(i % 2), int(i % 4 >= 2)
    nd = 2 if i % 3 else 1
    spatial = tuple(int(v) for v in rng.integers(3, 9, nd))
    C = int(rng.integers(1, 4))
    shape = (int(rng.integers(1, 3)),) + ((spatial + (C,)) if last else ((C,) + spatial))
    kernel = [int(rng.integers(1, min(s, 3) + 1)) for s in spatial]
    attrs = {"kernel_shape": kernel, "strides": [int(rng.integers(1, 3)) for _ in spatial],
             "channels_last": last, "count_include_pad": int(rng.integers(0, 2)), "ceil_mode": int(i % 5 == 0)}
    if rng.random() < 0.5:
        attrs["pads"] = [int(rng.integers(0, k)) for k in kernel] * 2
    X = _q(rng, shape, signed)
    consts = {**_params(rng, signed, "x"), **_params(rng, signed, "y")}
    feeds = {"X": X}
    got, want = run_both(model("QLinearAveragePool", ["X", "x_scale", "x_zp", "y_scale", "y_zp"], feeds, consts,
                               attrs=attrs), feeds)
    assert_close(got, want, steps=1, what=f"case {i}: {attrs} shape {shape}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_qlinear_conv_microsoft(i):
    rng = rng_for("QLinearConvMS", i)
    signed = bool(i % 2)
    last = int(i % 4 >= 2)
    group = 1 if i % 3 else 2
    C, M = 2 * int(rng.integers(1, 3)), 2 * int(rng.integers(1, 3))
    H, W = (int(v) for v in rng.integers(4, 8, 2))
    k = int(rng.integers(1, 4))
    x = _q(rng, (1, H, W, C) if last else (1, C, H, W), signed)
    per_channel = i % 5 < 2
    w = rng.integers(-127, 128, (M, C // group, k, k)).astype(np.int8)
    consts = {**_params(rng, signed, "x"), "w": w,
              "w_scale": (rng.random(M) * 0.05 + 0.01).astype(np.float32) if per_channel else np.float32(0.02),
              "w_zp": np.zeros(M, np.int8) if per_channel else np.int8(0), **_params(rng, signed, "y")}
    order = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp"]
    if i % 2 == 0:
        consts["B"] = rng.integers(-500, 500, M).astype(np.int32)
        order.append("B")
    attrs = {"group": group, "strides": [int(rng.integers(1, 3))] * 2, "pads": [k // 2] * 4, "channels_last": last,
             "kernel_shape": [k, k]}
    feeds = {"x": x}
    got, want = run_both(model("QLinearConv", order, feeds, consts, attrs=attrs), feeds)
    assert_close(got, want, steps=1, what=f"case {i}: {attrs}")


_Q_TYPES = [np.int8, np.uint8, np.int16, np.uint16, ml_dtypes.int4, ml_dtypes.uint4]


@pytest.mark.parametrize("i", range(N_CASES))
def test_quantize_dequantize_microsoft(i):
    rng = rng_for("QuantizeLinearMS", i)
    qt = _Q_TYPES[i % len(_Q_TYPES)]
    lo, hi = int(ml_dtypes.iinfo(qt).min), int(ml_dtypes.iinfo(qt).max)
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 4))))
    per_axis = i % 3 == 0
    axis = int(rng.integers(-len(shape), len(shape))) if per_axis else None
    pshape = (shape[axis],) if per_axis else ()
    ft = np.float16 if i % 4 == 3 else np.float32
    scale = (rng.random(pshape) * 0.5 + 0.05).astype(ft)
    zp = rng.integers(lo, hi + 1, pshape).astype(qt)
    attrs = {"axis": axis} if per_axis else {}
    x = (rng.normal(size=shape) * 4).astype(ft)
    feeds = {"x": x}
    sub_byte = qt in (ml_dtypes.int4, ml_dtypes.uint4)  # onnxruntime's binding cannot return these
    if sub_byte:
        got, want = run_both(_quantize_dequantize(x, scale, zp, attrs), feeds)
    else:
        got, want = run_both(model("QuantizeLinear", ["x", "s", "z"], feeds, {"s": scale, "z": zp}, attrs=attrs),
                             feeds)
    assert_close(got, want, steps=0, rtol=1e-6, atol=1e-6, what=f"QuantizeLinear case {i}: {qt} axis {axis}")
    q = rng.integers(lo, hi + 1, shape).astype(qt)
    feeds, consts = ({}, {"q": q, "s": scale, "z": zp}) if sub_byte else ({"q": q}, {"s": scale, "z": zp})
    got, want = run_both(model("DequantizeLinear", ["q", "s", "z"], feeds, consts, attrs=attrs), feeds)
    assert_close(got, want, rtol=1e-3 if ft == np.float16 else 1e-6, atol=1e-6, what=f"DequantizeLinear case {i}")


def _quantize_dequantize(x, scale, zp, attrs):
    """QuantizeLinear then DequantizeLinear (com.microsoft), to observe a 4-bit quantization."""
    from onnx import helper, numpy_helper

    from support.quant_oracle import MS
    from ortgpu.dtypes import onnx_code
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], domain=MS, **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], domain=MS, **attrs)]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", onnx_code(x.dtype), list(x.shape))],
                          [helper.make_value_info("y", helper.TypeProto())],
                          initializer=[numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                             ir_version=10).SerializeToString()
