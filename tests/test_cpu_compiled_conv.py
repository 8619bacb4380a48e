"""The compiled depthwise convolution (providers/cpu/conv_compiled.py) against onnxruntime and
against ortgpu's own NumPy body (ORTGPU_JIT=0), on the shapes and options depthwise models use."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.cpu import jit
from ortgpu.threads import BUDGET, available_cores

pytestmark = pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or ORTGPU_JIT=0")

CASES = [  # (x shape, depth multiplier, kernel, strides, dilations, pads)
    ((1, 8, 12, 20), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 6, 9, 11), 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
    ((1, 4, 13, 17), 2, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((1, 5, 10, 10), 1, (3, 3), (1, 2), (2, 2), (2, 1, 0, 2)),
    ((3, 3, 7, 8), 3, (1, 3), (2, 1), (1, 1), (0, 1, 0, 1)),
    ((2, 6, 11, 14), 2, (3, 3), (2, 3), (1, 2), (1, 2, 0, 1)),  # stride 3 over 3 column phases
]


def depthwise_model(shape, mult, kernel, strides, dilations, pads, elem=TensorProto.FLOAT):
    c = shape[1]
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal((c * mult, 1) + kernel).astype(dtype)
    b = rng.standard_normal(c * mult).astype(dtype)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=c, kernel_shape=list(kernel),
                            strides=list(strides), dilations=list(dilations), pads=list(pads))
    g = helper.make_graph([node], "depthwise", [helper.make_tensor_value_info("x", elem, shape)],
                          [helper.make_tensor_value_info("y", elem, None)],
                          [helper.make_tensor("w", elem, w.shape, w.ravel()),
                           helper.make_tensor("b", elem, b.shape, b.ravel())])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def run(model, x):
    return ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-m{c[1]}-s{c[3]}-d{c[4]}")
def test_compiled_depthwise_matches_onnxruntime_and_the_numpy_body(case, monkeypatch):
    model = depthwise_model(*case)
    x = np.random.default_rng(1).standard_normal(case[0]).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    assert not jit.enabled()
    np.testing.assert_allclose(run(model, x), got, rtol=1e-5, atol=1e-5)


def test_compiled_depthwise_in_float64(monkeypatch):
    """onnxruntime's CPU Conv takes no float64: the oracle is the float32 model on onnxruntime
    (loosely) and ortgpu's NumPy body in float64 (tightly)."""
    model = depthwise_model(*CASES[1], elem=TensorProto.DOUBLE)
    x = np.random.default_rng(2).standard_normal(CASES[1][0])
    got = run(model, x)
    assert got.dtype == np.float64
    want32 = ort.InferenceSession(depthwise_model(*CASES[1]), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want32, rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    np.testing.assert_allclose(run(model, x), got, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(available_cores() < 2, reason="one core: nothing to split over")
def test_work_split_over_threads_gives_the_one_thread_result(monkeypatch):
    """Planes split over two threads write the same values as one thread writing them all."""
    model = depthwise_model((2, 64, 40, 40), 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2))
    x = np.random.default_rng(3).standard_normal((2, 64, 40, 40)).astype(np.float32)
    monkeypatch.setattr(jit, "MIN_WORK_PER_THREAD", 100_000)  # split this size: the point is the result
    calls = []
    real = jit.split_range

    def spy(body, items, work, *args):
        if body.__name__.startswith("_depthwise"):  # not the bias pass after it
            calls.append(min(BUDGET.kernel_threads, items, int(items * work // jit.MIN_WORK_PER_THREAD) or 1))
        return real(body, items, work, *args)

    monkeypatch.setattr("ortgpu.providers.cpu.conv_compiled.split_range", spy)
    sessions = []
    for threads in (1, 2):
        so = ortgpu.SessionOptions()
        so.intra_op_num_threads = threads
        sessions.append(ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]))
    one, two = (s.run(None, {"x": x})[0] for s in sessions)
    np.testing.assert_array_equal(one, two)
    assert calls == [1, 2]


def test_the_switch_is_read_on_every_call(monkeypatch):
    """ORTGPU_JIT is read from the environment each time (tests and users switch it at run time)."""
    monkeypatch.setenv("ORTGPU_JIT", "0")
    assert not jit.enabled()
    monkeypatch.setenv("ORTGPU_JIT", "1")
    assert jit.enabled()
    monkeypatch.delenv("ORTGPU_JIT")
    assert jit.enabled()
