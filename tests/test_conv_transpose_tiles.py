"""ConvTranspose whose windows tile the output (strides equal to the kernel, no dilation: the
2x2 stride-2 upsampling of detectors) writes each window as its own tile instead of
scatter-adding: compiled for 2-D on the host (conv_compiled.tiles_2d, bias added on the way),
strided assignment otherwise.  Against onnxruntime over ranks, groups, bias, pads (crop),
output_padding (the general path), batch, float64, and with ORTGPU_JIT=0."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu

CASES = [  # x shape, w shape, group, kernel, attributes
    ((1, 4, 6, 7), (4, 3, 2, 2), 1, dict()),
    ((2, 6, 5, 4), (6, 2, 3, 3), 2, dict()),
    ((1, 4, 6, 7), (4, 1, 2, 2), 1, dict(pads=[1, 0, 0, 1])),
    ((1, 3, 5, 6), (3, 2, 2, 3), 1, dict()),                       # kernel 2x3, strides 2x3
    ((1, 3, 5, 6), (3, 2, 2, 2), 1, dict(output_padding=[1, 1])),  # a larger output: general path
    ((1, 3, 9), (3, 2, 4), 1, dict()),                              # 1-D
    ((1, 2, 3, 4, 5), (2, 3, 2, 2, 2), 1, dict()),                  # 3-D
]


def _model(xs, ws, group, attrs, bias=True, elem=TensorProto.FLOAT):
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    kernel = list(ws[2:])
    inits = [helper.make_tensor("w", elem, ws, rng.standard_normal(ws).astype(dtype).ravel())]
    inputs = ["x", "w"]
    if bias:
        m = ws[1] * group
        inits.append(helper.make_tensor("b", elem, [m], rng.standard_normal(m).astype(dtype).ravel()))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], group=group, kernel_shape=kernel, strides=kernel, **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, xs)],
                          [helper.make_tensor_value_info("y", elem, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[1])) + "".join(c[3]))
@pytest.mark.parametrize("bias", [True, False])
def test_tiled_conv_transpose_matches_onnxruntime(case, bias, jit, monkeypatch):
    monkeypatch.setenv("ORTGPU_JIT", jit)
    xs, ws, group, attrs = case
    model = _model(xs, ws, group, attrs, bias)
    x = np.random.default_rng(1).standard_normal(xs).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_float64():
    """(onnxruntime's CPU provider has no float64 ConvTranspose: onnx's reference evaluator is the oracle)"""
    from onnx.reference import ReferenceEvaluator
    xs, ws, group, attrs = CASES[3]   # (the evaluator mishandles groups)
    model = _model(xs, ws, group, attrs, elem=TensorProto.DOUBLE)
    x = np.random.default_rng(2).standard_normal(xs)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
