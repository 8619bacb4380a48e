"""CUDA graphs on a real GPU (`-m gpu`): warm-up, capture and replay through IO binding with
update_inplace, several gpu_graph_id values for several shapes, gpu_graph_id=-1, run() with
host feeds, and results equal to the CPU provider's.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import gpu_support as gs
from support import model_builders as mb
import ortgpu
from ortgpu.graph_capture import WARMUP_RUNS

pytestmark = gs.gpu_marks()
F = TensorProto.FLOAT
TOL = dict(rtol=1e-4, atol=1e-5)


def _convnet():
    """y = Softmax(Flatten(GlobalAveragePool(Relu(Conv(x, W) + b)))); x is ['N', 3, 8, 8]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) / 3, "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Softmax", ["f"], ["y"], axis=1)]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, ["N", 3, 8, 8])],
                    [helper.make_tensor_value_info("y", F, None)], initializers=[w, b])


@pytest.fixture(scope="module")
def model_bytes():
    return _convnet().SerializeToString()


def _graph_session(data):
    options = dict(gs.CUDA_OPTIONS, enable_cuda_graph="1")
    return ortgpu.InferenceSession(data, providers=[(gs.CUDA, options), gs.CPU])


def _ro(graph_id):
    ro = ortgpu.RunOptions()
    ro.add_run_config_entry("gpu_graph_id", str(graph_id))
    return ro


def _x(batch, seed):
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)


def test_capture_then_replay_with_update_inplace(model_bytes):
    sess, cpu = _graph_session(model_bytes), gs.cpu_session(model_bytes)
    x = ortgpu.OrtValue.ortvalue_from_numpy(_x(2, 0), "cuda")
    y = ortgpu.OrtValue.ortvalue_from_shape_and_type([2, 4], np.float32, "cuda")
    b = sess.io_binding()
    b.bind_ortvalue_input("x", x)
    b.bind_ortvalue_output("y", y)
    ptr = y.data_ptr()
    for i in range(WARMUP_RUNS + 4):
        data = _x(2, i + 1)
        x.update_inplace(data)
        sess.run_with_iobinding(b)
        np.testing.assert_allclose(y.numpy(), cpu.run(None, {"x": data})[0], **TOL)
        assert y.data_ptr() == ptr
    assert list(sess._core.graphs.captured) == [0]


def test_several_graph_ids_for_several_batches(model_bytes):
    sess, cpu = _graph_session(model_bytes), gs.cpu_session(model_bytes)
    batches = {1: 1, 2: 4}
    inputs = {g: ortgpu.OrtValue.ortvalue_from_numpy(_x(n, 0), "cuda") for g, n in batches.items()}
    bindings = {}
    for g, v in inputs.items():
        bindings[g] = b = sess.io_binding()
        b.bind_ortvalue_input("x", v)
        b.bind_output("y", "cuda")
    for i in range(WARMUP_RUNS + 3):
        for g, n in batches.items():
            data = _x(n, 10 * i + g)
            inputs[g].update_inplace(data)
            sess.run_with_iobinding(bindings[g], _ro(g))
            np.testing.assert_allclose(bindings[g].copy_outputs_to_cpu()[0], cpu.run(None, {"x": data})[0], **TOL)
    assert sorted(sess._core.graphs.captured) == [1, 2]
    with pytest.raises(RuntimeError, match="CUDA graph 1 was captured"):
        sess.run_with_iobinding(bindings[2], _ro(1))
    sess.release_captured_graph(1)
    assert sorted(sess._core.graphs.captured) == [2]


def test_graph_id_minus_one_and_run_with_host_feeds(model_bytes):
    sess, cpu = _graph_session(model_bytes), gs.cpu_session(model_bytes)
    for i in range(WARMUP_RUNS + 2):
        data = _x(3, i)
        np.testing.assert_allclose(sess.run(None, {"x": data}, _ro(-1))[0], cpu.run(None, {"x": data})[0], **TOL)
    assert not sess._core.graphs.captured
    for i in range(WARMUP_RUNS + 2):
        data = _x(3, 100 + i)
        np.testing.assert_allclose(sess.run(None, {"x": data})[0], cpu.run(None, {"x": data})[0], **TOL)
    assert list(sess._core.graphs.captured) == [0]


def test_unallocated_outputs_are_not_overwritten_by_later_replays(model_bytes):
    sess, cpu = _graph_session(model_bytes), gs.cpu_session(model_bytes)
    x = ortgpu.OrtValue.ortvalue_from_numpy(_x(2, 0), "cuda")
    b = sess.io_binding()
    b.bind_ortvalue_input("x", x)
    b.bind_output("y", "cuda")
    kept = []
    for i in range(WARMUP_RUNS + 3):
        data = _x(2, 50 + i)
        x.update_inplace(data)
        sess.run_with_iobinding(b)
        kept.append((data, b.get_outputs()[0]))
    for data, out in kept:
        np.testing.assert_allclose(out.numpy(), cpu.run(None, {"x": data})[0], **TOL)
