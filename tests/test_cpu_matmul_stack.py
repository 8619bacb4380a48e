"""MatMul of a stack of matrices by one 2-D weight runs as one GEMM over the stacked rows
(providers/kernels/linalg.py::_matmul); its results must still be onnxruntime's."""
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import ortgpu


def _matmul_model(a_shape, b_shape, elem=TensorProto.FLOAT):
    g = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], "mm",
                          [helper.make_tensor_value_info("A", elem, a_shape),
                           helper.make_tensor_value_info("B", elem, b_shape)],
                          [helper.make_tensor_value_info("Y", elem, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@pytest.mark.parametrize("a_shape,b_shape", [
    ((4, 32, 24), (24, 16)),        # batch x tokens x hidden by a projection
    ((2, 3, 5, 7), (7, 6)),         # 4-D stack
    ((3, 1, 8), (8, 2)),            # one row per matrix
    ((0, 4, 8), (8, 3)),            # empty stack
    ((3, 4, 8), (1, 8, 3)),         # both stacked: the general matmul
    ((8,), (8, 3)),                 # 1-D operand
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_matmul_matches_onnxruntime(a_shape, b_shape, dtype):
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    model = _matmul_model(a_shape, b_shape, elem)
    rng = np.random.default_rng(0)
    feed = {"A": rng.standard_normal(a_shape).astype(dtype), "B": rng.standard_normal(b_shape).astype(dtype)}
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    want = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_stacked_matmul_of_a_transposed_view_is_the_general_product():
    """A non-contiguous stack (a kernel may hand on a view) is not reshaped: same product."""
    from ortgpu.providers.kernels.linalg import _matmul
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 4, 3)).astype(np.float32).transpose(1, 0, 2)   # (4, 5, 3), strided
    b = rng.standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_allclose(_matmul(np, a, b), np.einsum("bij,jk->bik", a, b), rtol=1e-5, atol=1e-6)


def _weight_model(a_shape, w, overridable=False):
    """Y = A @ W with W an initializer (also a graph input when `overridable`: a feed may replace it)."""
    inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)]
    if overridable:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.shape)))
    g = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm", inputs,
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                          [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel())])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


@pytest.mark.parametrize("a_shape", [(3, 10, 48), (1, 48), (48,), (32, 48), (33, 48), (2, 0, 48)])
def test_few_rows_times_a_constant_weight_match_onnxruntime(a_shape, monkeypatch):
    """Up to FEW_ROWS rows times a constant weight run as weight^T @ rows^T on the kept
    transposed weight (linalg.py::_few_rows_times_weight); more rows, or none, take the GEMM."""
    from ortgpu.providers.kernels import linalg
    calls = []
    real = linalg._few_rows_times_weight
    monkeypatch.setattr(linalg, "_few_rows_times_weight", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(3)
    w = rng.standard_normal((48, 20)).astype(np.float32)
    a = rng.standard_normal(a_shape).astype(np.float32)
    model = _weight_model(list(a_shape), w)
    sess = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    want = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    for _ in range(2):  # the second run serves the kept transposed weight
        got = sess.run(None, {"A": a})[0]
        assert got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    rows = int(np.prod(a_shape[:-1]))
    assert bool(calls) == (0 < rows <= linalg.FEW_ROWS)


def test_a_weight_a_feed_may_replace_is_never_kept():
    rng = np.random.default_rng(4)
    w, w2 = (rng.standard_normal((16, 8)).astype(np.float32) for _ in range(2))
    a = rng.standard_normal((2, 16)).astype(np.float32)
    model = _weight_model([2, 16], w, overridable=True)
    sess = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    for feed in ({"A": a}, {"A": a, "W": w2}, {"A": a}):
        np.testing.assert_allclose(sess.run(None, feed)[0], ref.run(None, feed)[0], rtol=1e-5, atol=1e-5)
