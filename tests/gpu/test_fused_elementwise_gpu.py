"""Generated FusedElementwise kernels and NhwcConv on a GPU (`-m gpu`; skipped without one).

* every program of tests/fused_programs.py, for flat, scalar, broadcast, strided and empty
  inputs: the generated kernel (it must really run: no fallback) against the shared kernel
  on NumPy;
* a session: the program is compiled while the session is created, the fused node runs on
  CUDA, outputs equal the CPU session's;
* NhwcConv through cuDNN's frontend (when installed) with ``prefer_nhwc=1``.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from support.fused_programs import PROGRAMS, sample_inputs
from gpu_support import cpu_session, gpu_marks
from ortgpu.providers.kernels import fused_elementwise as fe
from ortgpu.providers.registry import KernelContext

pytestmark = gpu_marks()

# shapes per input (x, y, mask) and whether x is passed as a transposed (strided) view
CASES = {
    "flat": ([(64, 257), (64, 257), (64, 257)], False),
    "scalar": ([(1000,), (), (1000,)], False),
    "broadcast": ([(4, 1, 33), (7, 33), (4, 7, 1)], False),
    "strided": ([(33, 12), (12, 33), (1, 33)], True),
    "empty": ([(0, 5), (5,), (1, 5)], False),
}
RTOL = {"float16": 1e-2, "float32": 2e-5, "float64": 1e-12}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_kernel_equals_the_shared_kernel(name, case):
    import cupy
    from ortgpu.providers.cuda.kernels import fused_elementwise as gen
    program = PROGRAMS[name]
    shapes, strided = CASES[case]
    host = sample_inputs(program, shapes[:len(program.inputs)], seed=3)
    if strided:
        host[0] = np.ascontiguousarray(host[0]).T  # a (12, 33) view with swapped strides
    dev = [cupy.asarray(np.ascontiguousarray(x.T)).T if strided and k == 0 else cupy.asarray(x)
           for k, x in enumerate(host)]
    got = gen.run_fused(program.text(), dev)
    assert got is not None, "the generated kernel did not take the inputs"
    want = fe.evaluate(KernelContext(np, "CPUExecutionProvider", name), program, host)
    got = got.get()
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype == bool:
        np.testing.assert_array_equal(got, want)
    else:
        tol = RTOL[program.dtype]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def _gelu_model():
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"]),
             helper.make_node("Div", ["a", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["f"]),
             helper.make_node("Mul", ["a", "f"], ["g"]),
             helper.make_node("Mul", ["g", "half"], ["y"])]
    inits = [numpy_helper.from_array(np.linspace(-1, 1, 64).astype(np.float32), "bias"),
             numpy_helper.from_array(np.float32(1.4142135), "sqrt2"),
             numpy_helper.from_array(np.float32(1.0), "one"), numpy_helper.from_array(np.float32(0.5), "half")]
    g = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_session_compiles_the_program_at_creation_and_runs_it_on_cuda():
    from gpu_support import cuda_session
    from ortgpu.providers.cuda.kernels import fused_elementwise as gen
    model = _gelu_model().SerializeToString()
    sess = cuda_session(model)
    placed = [(op, prov) for _, op, prov in sess.get_provider_assignment() if not op.startswith("Memcpy")]
    assert placed == [("FusedElementwise", "CUDAExecutionProvider")]
    program = sess._core.plan.graph.nodes[0].attrs["program"]
    assert any(key[1] == program for key in gen._modules), "not compiled at session creation"
    x = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], cpu_session(model).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)


def test_nhwc_conv_runs_on_cudnn():
    from gpu_support import CPU, CUDA
    import ortgpu
    from ortgpu.providers.cuda import cudnn
    if not cudnn.frontend_installed():
        pytest.skip("nvidia-cudnn-frontend is not installed")
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float16), "W1"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.2).astype(np.float16), "B1"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float16), "W2")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Conv", ["r", "W2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=2),
             helper.make_node("Sigmoid", ["c2"], ["y"])]
    g = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 8, 20, 24])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    sess = ortgpu.InferenceSession(model, providers=[(CUDA, {"prefer_nhwc": "1"}), CPU])
    ops = [op for _, op, prov in sess.get_provider_assignment() if prov == CUDA]
    assert ops.count("NhwcConv") == 2 and ops.count("Transpose") == 2, ops
    x = rng.standard_normal((2, 8, 20, 24)).astype(np.float16)
    got = sess.run(None, {"x": x})[0]
    assert any(k[-1] is True and v is not cudnn._UNSUPPORTED for k, v in cudnn._PLANS.items()), \
        "cuDNN did not take the channels-last convolution"
    want = cpu_session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-2, atol=1e-2)
