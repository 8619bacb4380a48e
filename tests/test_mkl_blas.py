"""Products by a constant weight through MKL's packed GEMM (providers/cpu/mkl_blas.py), where the
``mkl`` extra is installed: the same results as NumPy and onnxruntime, the weight packed once per
row count, fed weights left to NumPy, bit-identical results for any thread count, and the run's
thread share applied to MKL.  Skipped without MKL (the default install)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.providers.cpu import mkl_blas

pytestmark = pytest.mark.skipif(mkl_blas.library() is None, reason="MKL (the mkl extra) is not installed")


@pytest.mark.parametrize("m,k,n", [(30, 384, 1536), (1, 1024, 1024), (7, 33, 65), (128, 32, 96)])
def test_packed_products_match_numpy(m, k, n):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    packed = mkl_blas.PackedWeight(b, m)
    assert packed.nbytes >= a.itemsize * k * n   # counted in the session's prepared-form budget
    y = mkl_blas.times_packed(a, packed)
    np.testing.assert_allclose(y, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-4)
    strided = np.asfortranarray(a)   # any layout of the rows
    np.testing.assert_array_equal(mkl_blas.times_packed(strided, mkl_blas.PackedWeight(b, m)), y)
    with pytest.raises(ValueError, match=f"packed for {m} rows"):
        mkl_blas.times_packed(np.ones((m + 1, k), np.float32), mkl_blas.PackedWeight(b, m))


def _model(k, n, fed_weight=False):
    rng = np.random.default_rng(k * n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w2 = rng.standard_normal((n, k)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])]
    inits = [numpy_helper.from_array(w2, "w2")]
    if fed_weight:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [k, n]))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    g = helper.make_graph(nodes, "mlp", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString(), w


@pytest.mark.parametrize("use_mkl", ["1", "0"])
def test_matmul_by_a_constant_weight_matches_onnxruntime_as_the_rows_change(use_mkl, monkeypatch):
    monkeypatch.setenv("ORTGPU_MKL", use_mkl)
    made = []
    real = mkl_blas.PackedWeight
    monkeypatch.setattr(mkl_blas, "PackedWeight", lambda b, rows: made.append(rows) or real(b, rows))
    model, _ = _model(384, 1536)
    sess = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (3, 3, 5, 3):
        x = rng.standard_normal((batch, 10, 384)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-3)
    # packed once per weight and row count, again when the rows change (30 -> 50 -> 30)
    assert made == ([30, 30, 50, 50, 30, 30] if use_mkl == "1" else [])


def test_a_fed_weight_is_not_packed(monkeypatch):
    packed = []
    real = mkl_blas.PackedWeight
    monkeypatch.setattr(mkl_blas, "PackedWeight", lambda b, rows: packed.append(b.shape) or real(b, rows))
    model, w = _model(384, 1536, fed_weight=True)
    x = np.random.default_rng(1).standard_normal((3, 10, 384)).astype(np.float32)
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x, "w": w})[0]
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x, "w": w})[0]
    np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-3)
    assert packed == [(1536, 384)]   # the constant second weight only


def test_results_do_not_depend_on_the_thread_count_and_the_share_reaches_mkl(monkeypatch):
    """MKL runs with the run's share of the cores (intra_op_num_threads bounds it), and its
    conditional-reproducibility mode gives the same bits on one thread as on all of them
    (1536-long sums, which MKL splits by thread count otherwise)."""
    import ctypes
    get = mkl_blas.library().MKL_Get_Max_Threads
    get.restype = ctypes.c_int
    seen = []
    real = mkl_blas.times_packed
    monkeypatch.setattr(mkl_blas, "times_packed", lambda a, w: seen.append(get()) or real(a, w))
    model, _ = _model(1536, 384)
    x = np.random.default_rng(2).standard_normal((3, 10, 1536)).astype(np.float32)
    outs = []
    for threads in (1, 0):
        so = ortgpu.SessionOptions()
        so.intra_op_num_threads = threads
        outs.append(ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])
    assert seen[0] == 1   # the first session's MatMul ran on one MKL thread
    np.testing.assert_array_equal(outs[0], outs[1])
