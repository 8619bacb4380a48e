"""OrtValue and IOBinding on a real GPU (`-m gpu`): CuPy arrays and torch CUDA tensors bound
without copies, preallocated CUDA outputs, run_with_ort_values with CUDA inputs, and the count of host<->device copies a bound run makes (none).

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import gpu_support as gs
from support import model_builders as mb
import ortgpu

pytestmark = gs.gpu_marks()
F = TensorProto.FLOAT


def _mlp(batch="N"):
    """y = Relu(x @ W + b), z = y * 2; x is [batch, 16]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    two = numpy_helper.from_array(np.array(2, np.float32), "two")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Mul", ["y", "two"], ["z"])]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, [batch, 16])],
                    [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("z", F, None)],
                    initializers=[w, b, two])


@pytest.fixture(scope="module")
def sessions():
    data = _mlp().SerializeToString()
    return gs.cuda_session(data), gs.cpu_session(data)


def _cuda_provider(sess):
    return next(p for p in sess._providers if p.name == gs.CUDA)


class _CopyCounter:
    """Counts the CUDA provider's host<->device copies (every Memcpy step goes through them)."""

    def __init__(self, provider, monkeypatch):
        self.from_host = self.to_host = 0
        up, down = provider.from_host, provider.to_host

        def counted_up(v):
            self.from_host += 1
            return up(v)

        def counted_down(v):
            self.to_host += 1
            return down(v)
        monkeypatch.setattr(provider, "from_host", counted_up)
        monkeypatch.setattr(provider, "to_host", counted_down)


def _x(batch=4, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)


def test_cuda_ortvalue_round_trip_and_update_inplace():
    import cupy
    a = _x()
    v = ortgpu.OrtValue.ortvalue_from_numpy(a, "cuda", 0)
    assert v.device_name() == "cuda" and isinstance(v._value, cupy.ndarray)
    assert v.data_ptr() == v._value.data.ptr
    np.testing.assert_array_equal(v.numpy(), a)
    ptr = v.data_ptr()
    v.update_inplace(a * 3)
    assert v.data_ptr() == ptr
    np.testing.assert_array_equal(v.numpy(), a * 3)
    w = ortgpu.OrtValue.ortvalue_from_shape_and_type(a.shape, np.float32, "cuda", 0)
    w.update_inplace(v)  # device to device
    np.testing.assert_array_equal(w.numpy(), a * 3)
    assert v.__dlpack_device__() == (2, 0)


def test_cupy_arrays_bound_by_pointer_make_no_host_copy(sessions, monkeypatch):
    import cupy
    cuda, cpu = sessions
    x = _x()
    ref = cpu.run(None, {"x": x})
    xd = cupy.asarray(x)
    yd = cupy.empty((4, 8), cupy.float32)
    counter = _CopyCounter(_cuda_provider(cuda), monkeypatch)
    b = cuda.io_binding()
    b.bind_input("x", "cuda", 0, np.float32, list(xd.shape), xd.data.ptr)
    b.bind_output("y", "cuda", 0, np.float32, [4, 8], yd.data.ptr)
    b.bind_output("z", "cuda")
    cupy.cuda.get_current_stream().synchronize()
    cuda.run_with_iobinding(b)
    assert (counter.from_host, counter.to_host) == (0, 0)
    y, z = b.get_outputs()
    assert y.data_ptr() == yd.data.ptr and z.device_name() == "cuda"
    np.testing.assert_allclose(cupy.asnumpy(yd), ref[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(z.numpy(), ref[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.copy_outputs_to_cpu()[1], ref[1], rtol=1e-4, atol=1e-5)


def test_cupy_array_through_dlpack(sessions):
    import cupy
    cuda, cpu = sessions
    x = _x(batch=3)
    xd = cupy.asarray(x)
    v = ortgpu.OrtValue.from_dlpack(xd)
    assert v.data_ptr() == xd.data.ptr  # shared, not copied
    res = cuda.run_with_ort_values(["z"], {"x": v})
    assert res[0].device_name() == "cpu"  # onnxruntime's fetches come back to the CPU
    np.testing.assert_allclose(res[0].numpy(), cpu.run(["z"], {"x": x})[0], rtol=1e-4, atol=1e-5)
    b = cuda.io_binding()
    b.bind_ortvalue_input("x", v)
    b.bind_output("z", "cuda")
    cuda.run_with_iobinding(b)
    out = b.get_outputs()[0]
    back = cupy.from_dlpack(out)
    assert back.data.ptr == out.data_ptr()


def test_torch_cuda_tensors_in_and_out(sessions):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    cuda, cpu = sessions
    x = _x(batch=5)
    xt = torch.from_numpy(x).cuda()
    yt = torch.empty((5, 8), device="cuda", dtype=torch.float32)
    b = cuda.io_binding()
    b.bind_ortvalue_input("x", ortgpu.OrtValue.from_dlpack(xt))
    b.bind_output("y", "cuda", 0, np.float32, [5, 8], yt.data_ptr())
    b.bind_output("z", "cuda")
    torch.cuda.synchronize()  # xt was made on torch's stream
    b.synchronize_inputs()
    cuda.run_with_iobinding(b)
    b.synchronize_outputs()
    ref = cpu.run(None, {"x": x})
    np.testing.assert_allclose(yt.cpu().numpy(), ref[0], rtol=1e-4, atol=1e-5)
    zt = torch.from_dlpack(b.get_outputs()[1])
    assert zt.device.type == "cuda"
    np.testing.assert_allclose(zt.cpu().numpy(), ref[1], rtol=1e-4, atol=1e-5)
    b.bind_input("x", "cuda", 0, np.float32, [5, 16], xt.data_ptr())  # by address too
    cuda.run_with_iobinding(b)
    np.testing.assert_allclose(yt.cpu().numpy(), ref[0], rtol=1e-4, atol=1e-5)


def test_cpu_bindings_on_a_cuda_session_copy_once_each_way(sessions, monkeypatch):
    cuda, cpu = sessions
    x = _x()
    counter = _CopyCounter(_cuda_provider(cuda), monkeypatch)
    b = cuda.io_binding()
    b.bind_cpu_input("x", x)
    b.bind_output("z")
    cuda.run_with_iobinding(b)
    assert (counter.from_host, counter.to_host) == (1, 1)
    np.testing.assert_allclose(b.copy_outputs_to_cpu()[0], cpu.run(["z"], {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_preallocated_cuda_output_of_the_wrong_shape_is_refused(sessions):
    cuda, _ = sessions
    b = cuda.io_binding()
    b.bind_ortvalue_input("x", ortgpu.OrtValue.ortvalue_from_numpy(_x(), "cuda"))
    b.bind_ortvalue_output("y", ortgpu.OrtValue.ortvalue_from_shape_and_type([4, 9], np.float32, "cuda"))
    with pytest.raises(RuntimeError, match="Got invalid dimensions for output: y"):
        cuda.run_with_iobinding(b)
