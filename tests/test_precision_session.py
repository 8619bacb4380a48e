"""The session switch ``ortgpu.precision`` (fp32 | fp16 | bf16) and its op block list, and
float16/bfloat16 models run natively on the CPU provider with float32 accumulation."""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.errors import InvalidArgument
from ortgpu.precision import RUNTIME_OP_BLOCK_LIST, convert_model

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT


def _encoder_model():
    """A transformer-encoder-like block: MatMul+Add, LayerNormalization, Softmax attention-ish
    mixing, ReduceMean pooling, Gelu-by-Erf, Pow (runtime-blocked)."""
    rng = np.random.default_rng(0)
    d = 32
    inits = [numpy_helper.from_array((rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(d).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array(np.ones(d, np.float32), "g"),
             numpy_helper.from_array(np.zeros(d, np.float32), "beta"),
             numpy_helper.from_array(np.array([2.0], np.float32), "two"),
             numpy_helper.from_array(np.array([0.7071], np.float32), "rs2"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one"),
             numpy_helper.from_array(np.array([0.5], np.float32), "half"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="bias"),
             helper.make_node("LayerNormalization", ["h1", "g", "beta"], ["ln"], name="ln", axis=-1),
             helper.make_node("Mul", ["ln", "rs2"], ["e0"], name="g0"),
             helper.make_node("Erf", ["e0"], ["e1"], name="erf"),
             helper.make_node("Add", ["e1", "one"], ["e2"], name="g1"),
             helper.make_node("Mul", ["ln", "e2"], ["e3"], name="g2"),
             helper.make_node("Mul", ["e3", "half"], ["gelu"], name="g3"),
             helper.make_node("Softmax", ["gelu"], ["p"], name="softmax", axis=-1),
             helper.make_node("Pow", ["gelu", "two"], ["sq"], name="pow"),
             helper.make_node("ReduceMean", ["sq", "ax"], ["energy"], name="rm", keepdims=0),
             helper.make_node("ReduceSum", ["p", "ax"], ["pooled"], name="rs", keepdims=0)]
    g = helper.make_graph(nodes, "enc", [helper.make_tensor_value_info("x", F, ["n", 16, d])],
                          [helper.make_tensor_value_info("pooled", F, ["n", d]),
                           helper.make_tensor_value_info("energy", F, ["n", d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def _session(model, precision=None, block=None):
    so = ortgpu.SessionOptions()
    if precision is not None:
        so.add_session_config_entry("ortgpu.precision", precision)
    if block is not None:
        so.add_session_config_entry("ortgpu.precision.op_block_list", block)
    return ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _feed():
    return {"x": np.random.default_rng(1).standard_normal((3, 16, 32)).astype(np.float32)}


def _ort_run(model, feed):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


@pytest.mark.parametrize("precision,code,tol", [("fp16", TensorProto.FLOAT16, 1e-2), ("bf16", TensorProto.BFLOAT16, 6e-2)])
def test_switch_keeps_io_types_and_stays_close_to_float32(precision, code, tol):
    m = _encoder_model()
    ref = _ort_run(m, _feed())
    sess = _session(m, precision)
    assert [(a.name, a.type) for a in sess.get_inputs()] == [("x", "tensor(float)")]
    assert [a.type for a in sess.get_outputs()] == ["tensor(float)", "tensor(float)"]
    got = sess.run(None, _feed())
    assert all(g.dtype == np.float32 for g in got)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)
        assert not np.array_equal(g, r)  # it really ran narrow
    report = sess.get_precision_report()
    assert [(name, op) for name, op, _ in report.kept_float32] == [("pow", "Pow")]
    # The same conversion run by onnxruntime (an independent executor of the same graph).
    converted, _ = convert_model(m, code, keep_io_types=True, op_block_list=RUNTIME_OP_BLOCK_LIST)
    onnx.checker.check_model(converted, full_check=True)
    if code == TensorProto.FLOAT16:
        for g, o in zip(got, _ort_run(converted, _feed())):
            np.testing.assert_allclose(g, o, rtol=5e-3, atol=5e-3)


def test_default_is_float32_and_reports_nothing():
    m = _encoder_model()
    plain = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"])
    sess = _session(m, "fp32")
    assert sess.get_precision_report() is None and plain.get_precision_report() is None
    for a, b in zip(sess.run(None, _feed()), plain.run(None, _feed())):
        np.testing.assert_array_equal(a, b)


def test_op_block_list_entry_keeps_those_ops_float32():
    # A lone Softmax: kept in float32 behind the kept float32 I/O it is exactly the float32 result.
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=-1)], "g",
                          [helper.make_tensor_value_info("x", F, [4, 50])], [helper.make_tensor_value_info("y", F, [4, 50])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(2).standard_normal((4, 50)).astype(np.float32) * 3
    exact = _session(m).run(None, {"x": x})[0]
    narrow = _session(m, "fp16").run(None, {"x": x})[0]
    blocked = _session(m, "fp16", " Softmax , Gemm").run(None, {"x": x})[0]
    assert not np.array_equal(narrow, exact)
    np.testing.assert_allclose(narrow, exact, rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(blocked, exact)
    kept = _session(m, "fp16", "Softmax").get_precision_report().kept_float32
    assert kept == [("sm", "Softmax", "op type Softmax is in the op block list")]


@pytest.mark.parametrize("key,value,match", [
    ("ortgpu.precision", "fp8", r"'ortgpu.precision' must be one of fp32, fp16, bf16; got 'fp8'"),
    ("ortgpu.precision.op_block_list", "Softmax,NotAnOp", r"'ortgpu.precision.op_block_list'.*\['NotAnOp'\]"),
])
def test_bad_entries_are_refused(key, value, match):
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "fp16")
    so.add_session_config_entry(key, value)
    with pytest.raises(InvalidArgument, match=match):
        ortgpu.InferenceSession(_encoder_model(), so, providers=["CPUExecutionProvider"])


def test_add_initializer_override_is_narrowed_too():
    m = _encoder_model()
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "fp16")
    w = (np.eye(32) * 0.5).astype(np.float32)
    so.add_initializer("w1", w)
    got = ortgpu.InferenceSession(m, so, providers=["CPUExecutionProvider"]).run(None, _feed())
    for init in m.graph.initializer:
        if init.name == "w1":
            init.CopyFrom(numpy_helper.from_array(w, "w1"))
    ref = _ort_run(m, _feed())
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-2, atol=1e-2)


# --- native float16 / bfloat16 kernels on the CPU: float32 accumulation ---------------------------
def _single(op, x, attrs=None, extra=(), opset=18, out_shape=None):
    """Run one `op` node on x (and constant extra inputs) in x's own element type."""
    code = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(ml_dtypes.bfloat16): TensorProto.BFLOAT16}[x.dtype]
    names = ["x"] + [f"c{i}" for i in range(len(extra))]
    inits = [numpy_helper.from_array(e, f"c{i}") for i, e in enumerate(extra)]
    g = helper.make_graph([helper.make_node(op, names, ["y"], **(attrs or {}))], "g",
                          [helper.make_tensor_value_info("x", code, list(x.shape))],
                          [helper.make_tensor_value_info("y", code, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    (y,) = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.dtype == x.dtype
    return y


def _ulps(got, exact, dtype):
    """|got - exact| in units of the narrow type's spacing at exact."""
    spacing = np.abs(np.spacing(exact.astype(dtype))).astype(np.float64) if dtype == np.float16 else \
        np.abs(exact.astype(np.float64)) * 2.0 ** -7 + 1e-30
    return np.abs(got.astype(np.float64) - exact) / spacing


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_reductions_accumulate_in_float32(dtype):
    # 20000 values of 0.1: a float16 running sum stalls at 256 (its spacing there exceeds 0.1).
    x = np.full((2, 20000), 0.1, np.float32).astype(dtype)
    exact = x.astype(np.float64).sum(axis=1)
    for op in ("ReduceSum", "ReduceMean"):
        y = _single(op, x, {"keepdims": 0}, [np.array([1], np.int64)])
        want = exact if op == "ReduceSum" else exact / 20000
        assert _ulps(y, want, dtype).max() <= 1.0, op


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_matmul_gemm_accumulate_in_float32(dtype):
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 1.0, (4, 4096)).astype(np.float32).astype(dtype)
    b = rng.uniform(0.5, 1.0, (4096, 3)).astype(np.float32).astype(dtype)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    for op in ("MatMul", "Gemm"):
        y = _single(op, a, extra=[b])
        assert _ulps(y, exact, dtype).max() <= 1.0, op


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_softmax_and_layernorm_round_once(dtype):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 4000)) * 4).astype(np.float32).astype(dtype)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(-1, keepdims=True))
    assert _ulps(_single("Softmax", x, {"axis": -1}), e / e.sum(-1, keepdims=True), dtype).max() <= 1.0
    scale = np.ones(4000, np.float32).astype(dtype)
    ln = _single("LayerNormalization", x, {"axis": -1}, [scale], opset=17)
    exact = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    assert _ulps(ln, exact, dtype).max() <= 1.0


# --- on a device: the partitioner with the CuPy-like device double (tests/support/device_double.py) -------
def test_fp16_session_runs_its_float16_nodes_on_the_device():
    from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "fp16")
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC  # keep the nodes (no fusion)
    dev = ortgpu.InferenceSession(_encoder_model(), so, providers=[FakeDeviceExecutionProvider(),
                                                                   CheckedCPUExecutionProvider()])
    placed = {name: prov for name, _, prov in dev.get_provider_assignment()}
    assert placed["mm"] == placed["softmax"] == placed["ln"] == "FakeDeviceExecutionProvider"
    cpu = _session(_encoder_model(), "fp16").run(None, _feed())
    for a, b in zip(dev.run(None, _feed()), cpu):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_bf16_session_on_a_device_warns_that_bfloat16_stays_on_the_cpu():
    from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "bf16")
    with pytest.warns(RuntimeWarning, match="bfloat16 nodes run on the CPU"):
        sess = ortgpu.InferenceSession(_encoder_model(), so, providers=[FakeDeviceExecutionProvider(),
                                                                        CheckedCPUExecutionProvider()])
    placed = {name: prov for name, _, prov in sess.get_provider_assignment()}
    assert placed["mm"] == "CPUExecutionProvider"
    ref = _ort_run(_encoder_model(), _feed())
    for a, b in zip(sess.run(None, _feed()), ref):
        np.testing.assert_allclose(a, b, rtol=6e-2, atol=6e-2)
