"""The run core: a run stops when its RunOptions says terminate (also in the middle of a run,
also inside loops), and what a run returns never shares memory with the caller's feeds or
the model's constants."""
import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from support.device_double import FakeDeviceExecutionProvider
from support.observed_cpu import ObservedCPU
from ortgpu.providers.cpu import CPUExecutionProvider


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _counting_loop(iterations_note):
    """A Loop adding 1 per iteration to v (trip count M)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["v", "one"], ["v_out"]), helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []), _f("v", [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _f("v_out", [1])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    return _model([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)],
                  [helper.make_tensor_value_info("M", TensorProto.INT64, []), _f("v0", [1])], [_f("v", [1])])


class _SetsTerminate(ObservedCPU):
    """The CPU, whose Tanh kernel sets the run's terminate flag (from inside the run) after
    `after` calls, and counts every kernel call."""

    def __init__(self, run_options, after):
        super().__init__()
        self.run_options, self.after, self.calls = run_options, after, 0

    def observe(self, op_type):
        self.calls += 1
        if self.calls == self.after:
            self.run_options.terminate = True


def test_terminate_set_during_a_run_stops_it_before_the_next_node():
    nodes = [helper.make_node("Tanh", [f"x{i}"], [f"x{i + 1}"]) for i in range(50)]
    model = _model(nodes, [_f("x0", [4])], [_f("x50", [4])])
    ro = ortgpu.RunOptions()
    prov = _SetsTerminate(ro, after=10)
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ortgpu.InferenceSession(model, so, providers=[prov])
    with pytest.raises(ortgpu.Fail, match="terminate flag"):
        sess.run(None, {"x0": np.zeros(4, np.float32)}, ro)
    assert prov.calls == 10  # the 11th node never ran
    ro.terminate = False  # the session stays usable
    prov.after = -1
    (y,) = sess.run(None, {"x0": np.zeros(4, np.float32)}, ro)
    assert y.shape == (4,)


@pytest.mark.parametrize("device", ["cpu", "double"])
def test_terminate_from_another_thread_stops_a_long_loop(device):
    providers = [FakeDeviceExecutionProvider(), CPUExecutionProvider()] if device == "double" else None
    sess = ortgpu.InferenceSession(_counting_loop(None), providers=providers)
    ro = ortgpu.RunOptions()
    outcome = {}

    def run():
        try:
            outcome["value"] = sess.run(None, {"M": np.array(3_000_000, np.int64),
                                               "v0": np.zeros(1, np.float32)}, ro)
        except ortgpu.Fail as e:
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(0.3)
    ro.terminate = True
    worker.join(60)
    assert not worker.is_alive()
    assert "error" in outcome and "terminate flag" in str(outcome["error"]), outcome.get("value")


def test_terminate_on_one_threads_run_options_stops_only_that_threads_runs():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    sess = ortgpu.InferenceSession(_model([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Neg", ["h"], ["y"])],
                                          [_f("x", [2, 3])], [_f("y", [2, 3])]))
    want = -np.maximum(x, 0)
    results = {}

    def worker(k):
        ro = ortgpu.RunOptions()
        done, stopped = 0, 0
        for i in range(200):
            if k == 0 and i == 100:
                ro.terminate = True
            try:
                (y,) = sess.run(None, {"x": x}, ro)
                np.testing.assert_array_equal(y, want)
                done += 1
            except ortgpu.Fail:
                stopped += 1
        results[k] = (done, stopped)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results[0] == (100, 100)
    assert all(results[k] == (200, 0) for k in range(1, 8))


@pytest.mark.parametrize("op,extra,shape", [("Identity", [], [2, 3]), ("Reshape", ["s"], [2, 3]),
                                            ("Transpose", [], [2, 3]), ("Squeeze", [], [1, 6]),
                                            ("Flatten", [], [2, 3])])
def test_outputs_do_not_share_memory_with_feeds(op, extra, shape):
    inits = [numpy_helper.from_array(np.array([3, 2], np.int64), "s")] if extra else []
    sess = ortgpu.InferenceSession(_model([helper.make_node(op, ["x"] + extra, ["y"])], [_f("x", shape)],
                                          [_f("y", None)], inits))
    x = np.arange(6, dtype=np.float32).reshape(shape)
    (y,) = sess.run(None, {"x": x})
    y += 100
    np.testing.assert_array_equal(x, np.arange(6, dtype=np.float32).reshape(shape))


def test_outputs_backed_by_constants_are_private_and_writable():
    c = numpy_helper.from_array(np.ones(3, np.float32), "c")
    nodes = [helper.make_node("Identity", ["c"], ["y"]),
             helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.full(2, 7, np.float32)))]
    sess = ortgpu.InferenceSession(_model(nodes, [], [_f("y", [3]), _f("k", [2])], [c]))
    y, k = sess.run(None, {})
    y += 1
    k += 1
    y2, k2 = sess.run(None, {})
    np.testing.assert_array_equal(y2, np.ones(3, np.float32))
    np.testing.assert_array_equal(k2, np.full(2, 7, np.float32))


def test_an_output_that_is_a_fresh_result_is_not_copied():
    sess = ortgpu.InferenceSession(_model([helper.make_node("Relu", ["x"], ["y"])], [_f("x", [3])], [_f("y", [3])]))
    core = sess._core
    y = np.ones(3, np.float32)
    assert core._unshared([y], [np.zeros(3, np.float32)])[0] is y


def test_a_feed_checked_once_passes_again_and_a_wrong_one_is_still_refused():
    """Feeds of a type and shape accepted before skip their checks; a different one is checked."""
    import onnxruntime
    m = _model([helper.make_node("Mul", ["x", "x"], ["y"])], [_f("x", ["n", 3])], [_f("y", ["n", 3])])
    sess = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"])
    oracle = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(2):
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], oracle.run(None, {"x": x})[0])
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.InvalidArgument, match="data type"):
        sess.run(None, {"x": x.astype(np.float64)})
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.InvalidArgument, match="index: 1"):
        sess.run(None, {"x": np.zeros((2, 4), np.float32)})
    x3 = np.ones((3, 3), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x3})[0], oracle.run(None, {"x": x3})[0])
    (y,) = sess.run(None, {"x": x})
    assert not np.shares_memory(y, x) and y.flags.writeable
