"""execution_mode = ORT_PARALLEL: independent branches run at the same time (seen from inside
the kernels, no timing) and a parallel run returns what a sequential one does, bit for bit."""
import os
import threading

import numpy as np
import onnx.backend.test as suite
import pytest
from onnx import TensorProto, helper

import ortgpu
from support.observed_cpu import ObservedCPU


def _options(parallel: bool, threads: int = 4):
    so = ortgpu.SessionOptions()
    so.intra_op_num_threads = 1  # the same BLAS threads in both modes: bit-identical sums
    if parallel:
        so.execution_mode = ortgpu.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = threads
    return so


def _branches(n: int = 4):
    """x -> n independent MatMul+Tanh branches -> Concat."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for b in range(n):
        inits.append(helper.make_tensor(f"w{b}", TensorProto.FLOAT, [16, 16],
                                        rng.standard_normal(256).astype(np.float32)))
        nodes += [helper.make_node("MatMul", ["x", f"w{b}"], [f"m{b}"], name=f"mm{b}"),
                  helper.make_node("Tanh", [f"m{b}"], [f"t{b}"], name=f"tanh{b}")]
    nodes.append(helper.make_node("Concat", [f"t{b}" for b in range(n)], ["y"], axis=1, name="cat"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16 * n])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class _MeetingTanh(ObservedCPU):
    """The CPU, whose Tanh kernels wait for each other at a barrier: runs only if `parties`
    of them are in progress at the same time (a sequential run breaks the barrier)."""
    observed = ("Tanh",)

    def __init__(self, parties):
        super().__init__()
        self.barrier, self.threads = threading.Barrier(parties, timeout=20), set()

    def observe(self, op_type):
        self.barrier.wait()
        self.threads.add(threading.get_ident())


def test_independent_branches_run_at_the_same_time():
    prov = _MeetingTanh(4)
    sess = ortgpu.InferenceSession(_branches(4), _options(True, 4), providers=[prov])
    x = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    assert len(prov.threads) == 4  # the four Tanh met: four threads at once
    (want,) = ortgpu.InferenceSession(_branches(4), _options(False), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})
    np.testing.assert_array_equal(y, want)


def test_sequential_mode_runs_one_step_at_a_time():
    prov = _MeetingTanh(2)
    prov.barrier = threading.Barrier(2, timeout=0.5)
    sess = ortgpu.InferenceSession(_branches(2), _options(False), providers=[prov])
    with pytest.raises(Exception, match="BrokenBarrierError"):
        sess.run(None, {"x": np.zeros((8, 16), np.float32)})


@pytest.mark.parametrize("name", ["inception_v1", "squeezenet"])
def test_parallel_runs_of_a_cnn_equal_sequential_ones_and_onnxruntime(name):
    import onnxruntime
    path = os.path.join(os.path.dirname(suite.__file__), "data", "light", f"light_{name}.onnx")
    par = ortgpu.InferenceSession(path, _options(True, 3), providers=["CPUExecutionProvider"])
    seq = ortgpu.InferenceSession(path, _options(False), providers=["CPUExecutionProvider"])
    feed = {par.get_inputs()[0].name: np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)}
    got = par.run(None, feed)
    for a, b in zip(got, seq.run(None, feed)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got, par.run(None, feed)):  # and again: nothing of one run stays in the next
        np.testing.assert_array_equal(a, b)
    oracle = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got[0], oracle.run(None, feed)[0], rtol=1e-3, atol=1e-4)


def test_an_error_in_one_branch_names_its_node_and_the_session_runs_again():
    nodes = [helper.make_node("Reshape", ["x", "bad"], ["r"], name="broken"),
             helper.make_node("Relu", ["x"], ["a"], name="fine"),
             helper.make_node("Add", ["r", "a"], ["y"], name="join")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                       helper.make_tensor_value_info("bad", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    sess = ortgpu.InferenceSession(m, _options(True, 2), providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with pytest.raises(Exception, match="Name:'broken'"):
        sess.run(None, {"x": x, "bad": np.array([4, 4], np.int64)})
    (y,) = sess.run(None, {"x": x, "bad": np.array([2, 3], np.int64)})
    np.testing.assert_array_equal(y, x + np.maximum(x, 0))


class _TerminatingTanh(ObservedCPU):
    """The CPU, whose Tanh kernels set the run's terminate flag (as another thread would)."""
    observed = ("Tanh", "Concat")

    def __init__(self, run_options):
        super().__init__()
        self.run_options, self.concats = run_options, 0

    def observe(self, op_type):
        if op_type == "Tanh":
            self.run_options.terminate = True
        else:
            self.concats += 1


def test_a_parallel_run_terminated_in_the_middle_fails_and_starts_no_more_steps():
    ro = ortgpu.RunOptions()
    prov = _TerminatingTanh(ro)
    sess = ortgpu.InferenceSession(_branches(2), _options(True, 2), providers=[prov])
    with pytest.raises(Exception, match="terminate flag"):
        sess.run(None, {"x": np.zeros((8, 16), np.float32)}, ro)
    assert prov.concats == 0


def _branches_with_subgraphs():
    """Two branches that run subgraphs side by side: a Loop summing x over 3 iterations (its
    body reads the outer `w`) and an If choosing Tanh or Neg of x, then an Add of both."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["acc_in", "w"], ["m"]),
         helper.make_node("Add", ["m", "x"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4, 4])])
    then = helper.make_graph([helper.make_node("Tanh", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 4])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "else", [],
                              [helper.make_tensor_value_info("n", TensorProto.FLOAT, [4, 4])])
    w = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32) / 4
    g = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["looped"], body=body, name="loop"),
         helper.make_node("If", ["c"], ["chosen"], then_branch=then, else_branch=other, name="if"),
         helper.make_node("Add", ["looped", "chosen"], ["y"], name="add")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor("trips", TensorProto.INT64, [], [3]),
         helper.make_tensor("w", TensorProto.FLOAT, [4, 4], w.ravel())])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("cond", [True, False])
def test_parallel_runs_with_loop_and_if_branches_equal_sequential_ones_and_onnxruntime(cond):
    import onnxruntime
    model = _branches_with_subgraphs()
    feed = {"x": np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32),
            "c": np.array(cond)}
    par = ortgpu.InferenceSession(model, _options(True, 2), providers=["CPUExecutionProvider"])
    seq = ortgpu.InferenceSession(model, _options(False), providers=["CPUExecutionProvider"])
    (got,) = par.run(None, feed)
    np.testing.assert_array_equal(got, seq.run(None, feed)[0])
    np.testing.assert_array_equal(got, par.run(None, feed)[0])
    (want,) = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
