"""bfloat16 on the CUDA provider (issue 12, item 11).

CuPy 14 holds ``ml_dtypes.bfloat16`` arrays: its ufuncs, casts, reductions and matmul take
them; its ``ufunc.at``, sorting and ``cupyx.scipy.special`` do not (the device double refuses
those too).  The CUDA registrations whose bodies handle bfloat16 declare it: layout kernels
move it as 16-bit words, element-wise ops, softmax, layer norm and reductions fall back to the
shared kernels (which compute in float32), MatMul/Gemm run the float32 GEMM on float32 copies.
Oracle: onnxruntime's CPU result on the float32 model with the same (bfloat16-rounded) values.
"""
import ml_dtypes
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from support import model_builders as mb
from support.device_double import Bf16FakeDeviceExecutionProvider, CheckedCPUExecutionProvider, fake_xp

BF16 = np.dtype(ml_dtypes.bfloat16)
TOL = {"rtol": 2e-2, "atol": 2e-2}     # a few bfloat16 steps (8 significant bits)


def _bf16_model(elem):
    """MatMul + Add + Relu + Softmax + LayerNormalization on (2, 8) inputs, weights of `elem`."""
    rng = np.random.default_rng(11)
    dtype = BF16 if elem == TensorProto.BFLOAT16 else np.float32

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(BF16).astype(dtype), name)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["add"], name="add"),
             helper.make_node("Relu", ["add"], ["relu"], name="relu"),
             helper.make_node("Softmax", ["relu"], ["sm"], name="sm", axis=-1),
             helper.make_node("LayerNormalization", ["sm", "g", "beta"], ["y"], name="ln", axis=-1)]
    return mb.model(nodes, [helper.make_tensor_value_info("x", elem, [2, 8])],
                    [helper.make_tensor_value_info("y", elem, [2, 16])],
                    [init("w", (8, 16)), init("b", (16,)), init("g", (16,)), init("beta", (16,))], opset=17)


def _partition(model, cuda):
    from ortgpu.graph import from_proto
    from ortgpu.loading import prepare_model
    from ortgpu.partition import Placed, partition
    from ortgpu.providers.cpu import CPUExecutionProvider
    m, _ = prepare_model(model.SerializeToString())
    part = partition(from_proto(m.graph, {o.domain: o.version for o in m.opset_import}),
                     [cuda, CPUExecutionProvider()])
    return {it.node.op_type: it for it in part.items if isinstance(it, Placed)}


def test_a_bfloat16_model_is_placed_on_the_cuda_provider():
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider
    cuda = CUDAExecutionProvider(None, device_count=1)
    placed = _partition(_bf16_model(TensorProto.BFLOAT16), cuda)
    assert set(placed) == {"MatMul", "Add", "Relu", "Softmax", "LayerNormalization"}
    off = {op: it.provider.name for op, it in placed.items() if it.provider is not cuda}
    assert off == {}, f"bfloat16 nodes left the CUDA provider: {off}"
    assert all(it.kernel.provider == "cuda" for it in placed.values())
    assert cuda.holds(helper.make_tensor_type_proto(TensorProto.BFLOAT16, [2]))


def test_a_bfloat16_node_with_only_a_shared_kernel_stays_on_the_cpu():
    """ArgMax has no CUDA registration and its shared kernel is not among BF16_SHARED_OPS
    (shared kernels may call what CuPy lacks for bfloat16), so it goes to the CPU; a
    Reshape (a view) stays on the device."""
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider
    cuda = CUDAExecutionProvider(None, device_count=1)
    shape = numpy_helper.from_array(np.array([16], np.int64), "shape")
    model = mb.model([helper.make_node("Reshape", ["x", "shape"], ["r"]),
                      helper.make_node("ArgMax", ["r"], ["i"], keepdims=0)],
                     [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 8])],
                     [helper.make_tensor_value_info("i", TensorProto.INT64, [])], [shape], opset=17)
    placed = _partition(model, cuda)
    assert placed["Reshape"].provider is cuda and placed["ArgMax"].provider is not cuda


def test_a_bfloat16_model_runs_on_the_double_and_matches_float32():
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(BF16)
    double = Bf16FakeDeviceExecutionProvider()
    sess = ortgpu.InferenceSession(_bf16_model(TensorProto.BFLOAT16).SerializeToString(),
                                   providers=[double, CheckedCPUExecutionProvider()])
    got = sess.run(None, {"x": x})[0]
    assert got.dtype == BF16 and double.copies_from_host == 1 + 4 and double.copies_to_host == 1, \
        "every node ran on the device: x and the 4 weights uploaded, y downloaded, nothing else"
    ref = onnxruntime.InferenceSession(_bf16_model(TensorProto.FLOAT).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    want = ref.run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got.astype(np.float32), want, **TOL)


ONE_NODE = [
    ("Sub", 14, 2, {}), ("Mul", 14, 2, {}), ("Div", 14, 2, {}), ("Max", 13, 2, {}), ("Pow", 15, 2, {}),
    ("Sigmoid", 13, 1, {}), ("Tanh", 13, 1, {}), ("Erf", 13, 1, {}), ("Gelu", 20, 1, {}), ("Elu", 22, 1, {}),
    ("LeakyRelu", 16, 1, {}), ("HardSwish", 22, 1, {}), ("Softplus", 22, 1, {}), ("LogSoftmax", 13, 1, {}),
    ("Transpose", 13, 1, {"perm": [1, 0]}), ("Concat", 13, 2, {"axis": 0}),
    ("ReduceSum", 13, 1, {"keepdims": 0}), ("ReduceMax", 18, 1, {"keepdims": 1}),
    ("ReduceMean", 18, 1, {"keepdims": 1}),
]


@pytest.mark.parametrize("op, opset, n_inputs, attrs", ONE_NODE, ids=[c[0] for c in ONE_NODE])
def test_bfloat16_ops_the_cuda_provider_takes_run_on_the_double_as_in_float32(op, opset, n_inputs, attrs):
    """Each op is taken by the double where the CUDA provider takes it and runs the shared
    kernel its CUDA launcher falls back to on bfloat16, on arrays that refuse what CuPy 14
    refuses for bfloat16 (sorting, scipy.special, ufunc.at)."""
    rng = np.random.default_rng(5)
    xs = [np.abs(rng.standard_normal((3, 4))).astype(BF16) + BF16.type(0.5) for _ in range(n_inputs)]
    names = [f"x{i}" for i in range(n_inputs)]

    def model(elem):
        return mb.model([helper.make_node(op, names, ["y"], **attrs)],
                        [helper.make_tensor_value_info(n, elem, [3, 4]) for n in names],
                        [helper.make_tensor_value_info("y", elem, None)], opset=opset)
    double = Bf16FakeDeviceExecutionProvider()
    sess = ortgpu.InferenceSession(model(TensorProto.BFLOAT16).SerializeToString(),
                                   providers=[double, CheckedCPUExecutionProvider()])
    got = sess.run(None, dict(zip(names, xs)))[0]
    assert double.copies_from_host == n_inputs, f"{op} bfloat16 did not run on the device"
    want = onnxruntime.InferenceSession(model(TensorProto.FLOAT).SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(
        None, {n: x.astype(np.float32) for n, x in zip(names, xs)})[0]
    assert got.dtype == BF16
    np.testing.assert_allclose(got.astype(np.float32), want, **TOL)


def test_the_double_refuses_for_bfloat16_what_cupy_14_lacks():
    a = fake_xp.asarray(np.array([3, 1, 2], BF16))
    for call in (lambda: fake_xp.sort(a), lambda: fake_xp.argsort(a), lambda: a.argsort(),
                 lambda: fake_xp.scipy_special.erf(a),
                 lambda: fake_xp.add.at(a, fake_xp.asarray(np.array([0])), fake_xp.ones(1, dtype=BF16))):
        with pytest.raises(TypeError, match="bfloat16|does not support dtype"):
            call()
    assert (a + a).dtype == BF16 and fake_xp.tanh(a).dtype == BF16       # CuPy 14 has these loops
    np.testing.assert_array_equal(fake_xp.sort(a.astype(np.float32)).get(), [1, 2, 3])


def test_cuda_matmul_and_gemm_run_bfloat16_as_float32_gemms(monkeypatch):
    """The CUDA MatMul/Gemm kernels on bfloat16: float32 operands to the GEMM, one rounding to
    bfloat16 at the end (the GEMM is NumPy here, standing in for cuBLAS)."""
    from types import SimpleNamespace
    from ortgpu.providers.cuda import blas
    from ortgpu.providers.registry import KernelContext
    seen = []

    def fake_gemm(a3, b3, ta, tb, out3, alpha=1.0, beta=0.0, tf32=True):
        seen.append((a3.dtype, b3.dtype, out3.dtype))
        a = np.swapaxes(a3, -1, -2) if ta else a3
        b = np.swapaxes(b3, -1, -2) if tb else b3
        out3[...] = alpha * np.matmul(a, b) + beta * out3
        return out3
    monkeypatch.setattr(blas, "cublas_gemm", fake_gemm)
    monkeypatch.setattr(blas, "use_tf32", lambda ctx: False)
    ctx = KernelContext(np, "CUDAExecutionProvider", "g", "MatMul", 13, ep=SimpleNamespace())
    rng = np.random.default_rng(8)
    a, b, c = (rng.standard_normal(s).astype(BF16) for s in ((2, 3, 5), (5, 4), (4,)))
    got = blas.MatMul(ctx, a, b)
    want = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(BF16)
    assert got.dtype == BF16 and np.array_equal(got.astype(np.float32), want.astype(np.float32))
    got = blas.Gemm(ctx, a[0], b, c, alpha=0.5, beta=2.0)
    want = (0.5 * (a[0].astype(np.float32) @ b.astype(np.float32)) + 2.0 * c.astype(np.float32)).astype(BF16)
    assert got.dtype == BF16 and np.array_equal(got.astype(np.float32), want.astype(np.float32))
    assert seen and all(d == (np.float32,) * 3 for d in seen)


from support.cuda_emulator import emulated_cuda  # noqa: E402,F401  (the fixture)

EMULATED = [("Transpose", 13, 1, {"perm": (2, 0, 1)}, "strided_copy<unsigned short"),
            ("Concat", 13, 2, {"axis": 1}, "strided_copy<unsigned short"),
            ("Gather", 13, "idx", {"axis": 1}, "gather_axis<unsigned short"),
            ("Add", 14, 2, {}, None), ("Relu", 14, 1, {}, None), ("Softmax", 13, 1, {}, None),
            ("LayerNormalization", 17, "ln", {"axis": -1}, None), ("Cast", 19, 1, {"to": TensorProto.FLOAT}, None),
            ("ReduceSum", 13, 1, {"keepdims": 1}, None)]


@pytest.mark.parametrize("op, opset, inputs, attrs, raw", EMULATED, ids=[c[0] for c in EMULATED])
def test_cuda_launchers_take_bfloat16_on_the_emulator(emulated_cuda, op, opset, inputs, attrs, raw):
    """The CUDA launchers on bfloat16 device arrays (the host emulator's CuPy): layout kernels
    move 16-bit words (their raw kernel runs), the others hand over to the shared kernel,
    and the result equals the shared kernel's on the host."""
    from test_cuda_math_kernels_emulated import run_both
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4).astype(BF16) * BF16.type(0.25)
    if inputs == "idx":
        args = (x, np.array([2, 0, -1], np.int64))
    elif inputs == "ln":
        args = (x, np.ones(4, BF16), np.zeros(4, BF16))
    else:
        args = (x,) * inputs
    got, want, names = run_both(emulated_cuda, op, opset, args, attrs)
    got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    assert (bool(names) and all(n.startswith(raw) for n in names)) if raw else names == []


def test_bfloat16_scatter_reductions_widen_where_cupy_has_no_ufunc_at():
    """CuPy's ufunc.at has no bfloat16 (the double refuses it): ScatterND/ScatterElements with a
    reduction on bfloat16 go through float32 on the device and match onnxruntime in float32."""
    data = np.arange(8, dtype=np.float32).reshape(4, 2).astype(BF16)
    idx = np.array([[1], [1], [3]], np.int64)
    upd = np.array([[1, 2], [3, 4], [5, 6]], np.float32).astype(BF16)

    def model(elem):
        return mb.model([helper.make_node("ScatterND", ["d", "i", "u"], ["y"], reduction="add")],
                        [helper.make_tensor_value_info("d", elem, [4, 2]),
                         helper.make_tensor_value_info("i", TensorProto.INT64, [3, 1]),
                         helper.make_tensor_value_info("u", elem, [3, 2])],
                        [helper.make_tensor_value_info("y", elem, None)], opset=18)
    double = Bf16FakeDeviceExecutionProvider()
    got = ortgpu.InferenceSession(model(TensorProto.BFLOAT16).SerializeToString(),
                                  providers=[double, CheckedCPUExecutionProvider()]).run(
        None, {"d": data, "i": idx, "u": upd})[0]
    assert double.copies_from_host == 3
    want = onnxruntime.InferenceSession(model(TensorProto.FLOAT).SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(
        None, {"d": data.astype(np.float32), "i": idx, "u": upd.astype(np.float32)})[0]
    np.testing.assert_array_equal(got.astype(np.float32), want)
