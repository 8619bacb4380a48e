"""Small convolutions gather their column matrix with one cached index (conv.py::_conv_small):
against onnxruntime over ranks, pads (windows wholly in the padding too), strides, dilations and
batch, and against the general im2col path (SMALL_CONV_COLUMNS = 0) in float64."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.kernels import conv

CASES = [  # x shape, w shape, pads, strides, dilations
    ((1, 129, 3), (128, 129, 3), [1, 1], [1], [1]),
    ((1, 64, 2), (64, 64, 3), [1, 1], [2], [1]),
    ((1, 64, 1), (128, 64, 3), [1, 1], [1], [1]),
    ((2, 3, 7, 9), (5, 3, 3, 2), [1, 0, 2, 1], [2, 1], [1, 2]),
    ((1, 2, 4, 4), (3, 2, 2, 2), [3, 3, 3, 3], [1, 1], [1, 1]),  # whole windows in the padding
    ((1, 4, 5, 6, 7), (2, 4, 3, 3, 3), [1, 1, 1, 0, 0, 0], [1, 2, 1], [1, 1, 2]),
    ((3, 2, 9), (4, 2, 4), [0, 2], [3], [2]),
]


def _model(xs, ws, pads, strides, dilations, elem=TensorProto.FLOAT):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    w = rng.standard_normal(ws).astype(dtype)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads, strides=strides, dilations=dilations)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, xs)],
                          [helper.make_tensor_value_info("y", elem, None)], [helper.make_tensor("w", elem, ws, w.ravel())])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_small_convolutions_match_onnxruntime(case, monkeypatch):
    calls = []
    real = conv._conv_small
    monkeypatch.setattr(conv, "_conv_small", lambda *a: calls.append(1) or real(*a))
    model = _model(*case)
    x = np.random.default_rng(7).standard_normal(case[0]).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert calls, "the small path did not run"
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_small_convolutions_in_float64_match_the_general_path(case, monkeypatch):
    model = _model(*case, elem=TensorProto.DOUBLE)
    x = np.random.default_rng(8).standard_normal(case[0])
    small = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    monkeypatch.setattr(conv, "SMALL_CONV_COLUMNS", 0)
    general = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(small, general, rtol=1e-12, atol=1e-12)
