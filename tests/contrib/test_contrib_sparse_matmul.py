"""SparseToDenseMatMul (a sparse 2-D A, fed as a COO or CSR SparseTensor OrtValue, times a dense B)
against onnxruntime 1.32's CPU kernel through run_with_ort_values, over seeded random
configurations: the six element types, both formats, transA / transB, alpha, densities down to an
all-zero A (COO only: onnxruntime runs no all-zero CSR).  The graph declares symbolic dims:
onnxruntime's shape inference for this op ignores transA / transB and refuses transposed
operands of fixed shape.  onnxruntime applies alpha to float32 only; the kernel follows it, and
these cases check that too."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import helper

import ortgpu
from ortgpu.dtypes import onnx_code
from support.quant_oracle import MS, rng_for

N_CASES = 24
DTYPES = (np.float32, np.float64, np.int32, np.int64, np.uint32, np.uint64)
onnxruntime.set_default_logger_severity(3)


def _model(dtype, attrs):
    code = onnx_code(np.dtype(dtype))
    node = helper.make_node("SparseToDenseMatMul", ["A", "B"], ["Y"], domain=MS, **attrs)
    g = helper.make_graph([node], "sparse_matmul", [helper.make_sparse_tensor_value_info("A", code, ["a0", "a1"]),
                                                     helper.make_tensor_value_info("B", code, ["b0", "b1"])],
                          [helper.make_tensor_value_info("Y", code, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)], ir_version=9)
    return m.SerializeToString()


def _sparse_value(mod, dense, fmt):
    """A SparseTensor OrtValue of `mod` (onnxruntime or ortgpu) holding `dense`."""
    dev = mod.OrtDevice.make("cpu", 0)
    values = np.ascontiguousarray(dense[dense != 0])
    if fmt == "coo":
        idx = np.ascontiguousarray(np.argwhere(dense != 0).astype(np.int64))
        st = mod.SparseTensor.sparse_coo_from_numpy(list(dense.shape), values, idx, dev)
    else:
        inner = np.ascontiguousarray(np.nonzero(dense)[1].astype(np.int64))
        outer = np.concatenate([[0], np.cumsum((dense != 0).sum(1))]).astype(np.int64)
        st = mod.SparseTensor.sparse_csr_from_numpy(list(dense.shape), values, inner, outer, dev)
    return mod.OrtValue.ort_value_from_sparse_tensor(st)


def _case(i):
    rng = rng_for("SparseToDenseMatMul", i)
    dtype = DTYPES[i % len(DTYPES)]
    fmt = ("coo", "csr")[(i // 6) % 2]
    ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    m, k, n = (int(v) for v in rng.integers(1, 9, 3))
    a = rng.integers(-9, 10, (m, k)) if np.dtype(dtype).kind in "iu" else rng.normal(size=(m, k)) * 3
    density = [0.0, 0.2, 0.5, 1.0][int(rng.integers(0, 4))]
    a = np.where(rng.random((m, k)) < density, a, 0).astype(dtype)
    if fmt == "csr" and not a.any():   # onnxruntime can build no all-zero CSR its kernel accepts
        a.flat[0] = 1
    b = (rng.integers(-9, 10, (k, n)) if np.dtype(dtype).kind in "iu" else rng.normal(size=(k, n))).astype(dtype)
    attrs = {"transA": ta, "transB": tb}
    if rng.random() < 0.6:
        attrs["alpha"] = float(rng.choice([0.5, 2.0, -1.5]))
    return (a.T.copy() if ta else a), (b.T.copy() if tb else b), fmt, attrs


def _run(mod, model_bytes, a, b, fmt):
    sess = mod.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feeds = {"A": _sparse_value(mod, a, fmt), "B": mod.OrtValue.ortvalue_from_numpy(b)}
    return sess.run_with_ort_values(["Y"], feeds)[0].numpy()


@pytest.mark.parametrize("i", range(N_CASES))
def test_sparse_to_dense_matmul_matches_onnxruntime(i):
    a, b, fmt, attrs = _case(i)
    m = _model(a.dtype, attrs)
    want = _run(onnxruntime, m, a, b, fmt)
    got = _run(ortgpu, m, a, b, fmt)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if a.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{fmt} {attrs}")
    else:
        np.testing.assert_array_equal(got, want, err_msg=f"{fmt} {attrs}")


def test_sparse_to_dense_matmul_refuses_mismatched_operands():
    a = np.eye(3, dtype=np.float32)
    b = np.ones((4, 2), np.float32)
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.InvalidArgument, match="do not multiply"):
        _run(ortgpu, _model(np.float32, {}), a, b, "coo")
