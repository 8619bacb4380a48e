"""The compiled quantization bodies (providers/cpu/quant_compiled.py) and the 256-entry tables of
the one-input 8-bit ops, against onnxruntime and bit for bit against ortgpu's own NumPy bodies
(ORTGPU_JIT=0): QuantizeLinear, DynamicQuantizeLinear, QLinearAdd/Mul, QLinearConv's requantization,
QLinearSigmoid/LeakyRelu/Concat with constant and with fed scales.  Inputs include halfway values
(x / scale = k + 0.5, where rounding half to even matters), values far outside the range, NaN."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from support.quant_oracle import assert_close, model

import ortgpu
from ortgpu.providers.cpu import jit

pytestmark = pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or ORTGPU_JIT=0")

CPU = ["CPUExecutionProvider"]


def _ort(model_bytes, feeds):
    import onnxruntime as ort
    return ort.InferenceSession(model_bytes, providers=CPU).run(None, feeds)


def _mine(model_bytes, feeds, monkeypatch, jit_on):
    monkeypatch.setenv("ORTGPU_JIT", "1" if jit_on else "0")
    return ortgpu.InferenceSession(model_bytes, providers=CPU).run(None, feeds)


def _compare(model_bytes, feeds, monkeypatch, steps=0, oracle=True):
    """Compiled == NumPy body exactly; both within `steps` of onnxruntime (when it is the oracle)."""
    got = _mine(model_bytes, feeds, monkeypatch, True)
    numpy_body = _mine(model_bytes, feeds, monkeypatch, False)
    for g, n in zip(got, numpy_body):
        assert g.dtype == n.dtype
        np.testing.assert_array_equal(g, n)
    if oracle:
        assert_close(got, _ort(model_bytes, feeds), steps=steps)
    return got


def _floats(rng, shape, scale):
    """Normal values, with a quarter of them exactly halfway between two quantization steps and
    a few far outside any 8-bit range."""
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(60 * scale)
    flat = x.reshape(-1)
    half = rng.random(flat.size) < 0.25
    flat[half] = (np.round(flat[half] / scale) + np.float32(0.5)) * scale
    flat[:3] = [1e9, -1e9, 3e5 * scale]
    return x


@pytest.mark.parametrize("zp_type", [np.uint8, np.int8, np.uint16, np.int16, None])
def test_quantize_linear_per_tensor(zp_type, monkeypatch):
    rng = np.random.default_rng(1)
    scale = np.float32(0.125)  # a power of two: x / scale is exact, so halfway values stay halfway
    x = _floats(rng, (3, 5, 7), scale)
    consts = {"s": np.array(scale)}
    order = ["x", "s"]
    if zp_type is not None:
        info = np.iinfo(zp_type)
        consts["z"] = np.array(rng.integers(info.min // 2, info.max // 2 + 1), zp_type)
        order.append("z")
    m = model("QuantizeLinear", order, {"x": x}, consts, domain="", opset=21)
    _compare(m, {"x": x}, monkeypatch)


def test_dynamic_quantize_linear(monkeypatch):
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    g = helper.make_graph([node], "dql", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info(n, t, None) for n, t in
                           (("y", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10).SerializeToString()
    rng = np.random.default_rng(2)
    cases = [rng.standard_normal((4, 33)).astype(np.float32) * 3,
             np.abs(rng.standard_normal(100)).astype(np.float32),           # all positive: zero point 0
             -np.abs(rng.standard_normal(100)).astype(np.float32),          # all negative: zero point 255
             np.zeros(7, np.float32),                                          # scale 1
             np.array([np.nan, 1.0, -2.0, 3.0], np.float32),
             np.array([np.nan, np.nan], np.float32),
             np.round(rng.standard_normal(300) * 10).astype(np.float32) / 2]   # many halfway values
    for x in cases:
        _compare(m, {"x": x}, monkeypatch, steps=1)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_add_mul_same_shape(op, dtype, monkeypatch):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max + 1, (2, 8, 9)).astype(dtype)
    b = rng.integers(info.min, info.max + 1, (2, 8, 9)).astype(dtype)
    consts = {"sa": np.array(0.05, np.float32), "za": np.array(3, dtype), "sb": np.array(0.02, np.float32),
              "zb": np.array(-4 if dtype == np.int8 else 200, dtype), "sc": np.array(0.07, np.float32),
              "zc": np.array(5, dtype)}
    m = model(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], {"a": a, "b": b}, consts)
    _compare(m, {"a": a, "b": b}, monkeypatch, steps=1)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qlinear_conv_requantization(per_channel, with_bias, monkeypatch):
    rng = np.random.default_rng(4 + 2 * per_channel + with_bias)
    x = rng.integers(0, 256, (2, 3, 9, 8)).astype(np.uint8)
    w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)
    ws = (rng.random(5) * 0.01 + 0.001).astype(np.float32) if per_channel else np.array(0.004, np.float32)
    consts = {"xs": np.array(0.03, np.float32), "xz": np.array(120, np.uint8), "w": w, "ws": ws,
              "wz": np.zeros(ws.shape, np.int8), "ys": np.array(0.2, np.float32), "yz": np.array(100, np.uint8)}
    order = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if with_bias:
        consts["B"] = rng.integers(-3000, 3000, 5).astype(np.int32)
        order.append("B")
    m = model("QLinearConv", order, {"x": x}, consts, domain="", opset=21, attrs={"pads": [1, 1, 1, 1]})
    _compare(m, {"x": x}, monkeypatch, steps=1)


def _unary(op, attrs, fed):
    """A one-input QLinear op whose scales and zero points are initializers, or fed (`fed`)."""
    params = {"xs": np.array(0.04, np.float32), "xz": np.array(130, np.uint8),
              "ys": np.array(1 / 255 if op == "QLinearSigmoid" else 0.05, np.float32), "yz": np.array(10, np.uint8)}
    x = np.random.default_rng(5).integers(0, 256, (4, 300)).astype(np.uint8)   # 1200 values: a table even when fed
    feeds = {"x": x, **(params if fed else {})}
    return model(op, ["x", "xs", "xz", "ys", "yz"], feeds, {} if fed else params, attrs=attrs), feeds


@pytest.mark.parametrize("fed", [False, True])
@pytest.mark.parametrize("op,attrs", [("QLinearSigmoid", {}), ("QLinearLeakyRelu", {"alpha": 0.1})])
def test_one_input_ops_by_table(op, attrs, fed, monkeypatch):
    m, feeds = _unary(op, attrs, fed)
    _compare(m, feeds, monkeypatch, steps=1)
    if not fed:  # the table is kept for the session
        s = ortgpu.InferenceSession(m, providers=CPU)
        s.run(None, feeds)
        assert any(tag[0] == "table" for tag in s._core.plan.steps[0].ctx._forms)


def test_qlinear_concat_by_tables(monkeypatch):
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, (2, 3, 4)).astype(np.int8)
    b = rng.integers(-128, 128, (2, 5, 4)).astype(np.int8)
    consts = {"ys": np.array(0.05, np.float32), "yz": np.array(-3, np.int8),
              "as": np.array(0.05, np.float32), "az": np.array(-3, np.int8),     # Y's own parameters
              "bs": np.array(0.11, np.float32), "bz": np.array(7, np.int8)}
    m = model("QLinearConcat", ["ys", "yz", "a", "as", "az", "b", "bs", "bz"], {"a": a, "b": b}, consts,
              attrs={"axis": 1})
    got = _compare(m, {"a": a, "b": b}, monkeypatch, steps=1)
    np.testing.assert_array_equal(got[0][:, :3], a)   # requantized to its own parameters: unchanged


@pytest.mark.parametrize("zp_type", [np.uint8, np.int8, np.int16, np.uint16, None])
def test_com_microsoft_quantize_linear_per_tensor(zp_type, monkeypatch):
    rng = np.random.default_rng(7)
    scale = np.float32(0.25)
    x = _floats(rng, (4, 6), scale)
    consts = {"s": np.array(scale)}
    order = ["x", "s"]
    if zp_type is not None:
        consts["z"] = np.array(3, zp_type)
        order.append("z")
    _compare(model("QuantizeLinear", order, {"x": x}, consts), {"x": x}, monkeypatch)
