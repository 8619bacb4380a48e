"""Large arithmetic maps split over the run's threads (jit.split_ufunc, used by Add, Sub, Mul and
Div on the host): each part reads the operands' matching slices, broadcasting kept, and the
result is the whole ufunc's, bit for bit; in a session, against onnxruntime."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.cpu import jit
from ortgpu.providers.kernels import elementwise
from ortgpu.threads import BUDGET

SHAPES = [  # (a, b): the split axis is the first one long enough
    ((4, 6, 5), (4, 6, 5)),
    ((1, 6, 5, 7), (1, 6, 1, 1)),
    ((1, 6, 5, 7), (1,)),
    ((3, 1, 5), (1, 4, 5)),
    ((1, 1, 9, 8), (9, 1)),
    ((5,), (2, 5)),
]


@pytest.fixture
def many_threads(monkeypatch):
    """Splits even small maps over two threads."""
    monkeypatch.setattr(jit, "MIN_WORK_PER_THREAD", 8)
    monkeypatch.setattr(BUDGET, "kernel_threads", 2)


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("ufunc", [np.add, np.subtract, np.multiply, np.divide], ids=lambda u: u.__name__)
def test_split_equals_the_whole_ufunc(shapes, ufunc, many_threads):
    rng = np.random.default_rng(len(shapes[0]))
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    got = jit.split_ufunc(ufunc, a, b)
    want = ufunc(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_integers_wrap_as_in_one_call(many_threads):
    a = np.full((4, 8), 2 ** 31 - 1, np.int32)
    b = np.arange(32, dtype=np.int32).reshape(4, 8)
    np.testing.assert_array_equal(jit.split_ufunc(np.add, a, b), np.add(a, b))


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_large_maps_in_a_session_match_onnxruntime(op, many_threads, monkeypatch):
    monkeypatch.setattr(elementwise, "SPLIT_UFUNC_SIZE", 16)
    node = helper.make_node(op, ["a", "b"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 6, 5, 7]),
                                        helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 6, 1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((1, 6, 5, 7)).astype(np.float32),
            "b": rng.standard_normal((1, 6, 1, 1)).astype(np.float32) + 3}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
