"""IOBinding, run_with_iobinding and run_with_ort_values: CPU semantics against onnxruntime 1.31,
and on the device double the proof that a run with device-resident inputs and outputs copies
nothing between host and device."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import model_builders as mb
import ortgpu
from support.device_double import FAKE_KIND, CheckedCPUExecutionProvider, FakeArray, FakeDeviceExecutionProvider
from ortgpu.errors import InvalidArgument

onnxruntime.set_default_logger_severity(3)
CPU = ["CPUExecutionProvider"]
F = TensorProto.FLOAT
X = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
Y = np.full((2, 3), 0.5, np.float32)


def _add_neg():
    """s = x + y, n = -s; x is [2, 3], y is ['N', 3]."""
    return mb.model([helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("Neg", ["s"], ["n"])],
                    [helper.make_tensor_value_info("x", F, [2, 3]), helper.make_tensor_value_info("y", F, ["N", 3])],
                    [helper.make_tensor_value_info("s", F, None), helper.make_tensor_value_info("n", F, None)])


@pytest.fixture(scope="module")
def pair():
    data = _add_neg().SerializeToString()
    return (onnxruntime.InferenceSession(data, providers=CPU), ortgpu.InferenceSession(data, providers=CPU))


def _bound(sess, outputs=("s", "n")):
    b = sess.io_binding()
    b.bind_cpu_input("x", X)
    b.bind_cpu_input("y", Y)
    for name in outputs:
        b.bind_output(name)
    return b


def _same_error(theirs_call, ours_call, builtin=RuntimeError, exact=True):
    with pytest.raises(builtin) as theirs:
        theirs_call()
    with pytest.raises(builtin) as ours:
        ours_call()
    if mb.ORT_IS_ORACLE and exact:
        assert str(ours.value) == str(theirs.value)
    return ours.value


# --- CPU semantics against onnxruntime ---------------------------------------------------------
def test_bound_run_returns_what_onnxruntime_returns(pair):
    results = []
    for sess in pair:
        b = _bound(sess)
        sess.run_with_iobinding(b)
        outs = b.get_outputs()
        assert [o.device_name() for o in outs] == ["cpu", "cpu"]
        results.append(([o.numpy() for o in outs], b.copy_outputs_to_cpu()))
    for a, b_ in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_array_equal(a, b_)
    np.testing.assert_array_equal(results[1][1][1], -(X + Y))


def test_no_outputs_before_the_first_run(pair):
    assert _bound(pair[1]).get_outputs() == [] and _bound(pair[1]).copy_outputs_to_cpu() == []


def test_outputs_come_in_binding_order_and_rebinding_keeps_the_place(pair):
    firsts = []
    for sess in pair:
        b = _bound(sess, ("n", "s"))
        b.bind_output("n")  # bound again: stays first
        sess.run_with_iobinding(b)
        firsts.append([float(o.numpy()[0, 0]) for o in b.get_outputs()])
    assert firsts[0] == firsts[1] == [-(X[0, 0] + Y[0, 0]), X[0, 0] + Y[0, 0]]


def test_a_bound_cpu_input_is_shared_not_copied(pair):
    seen = []
    for sess in pair:
        x = X.copy()
        b = _bound(sess, ("s",))
        b.bind_cpu_input("x", x)
        x[:] = 100  # after binding: the run sees it, as in onnxruntime
        sess.run_with_iobinding(b)
        seen.append(b.copy_outputs_to_cpu()[0])
    np.testing.assert_array_equal(seen[0], seen[1])
    np.testing.assert_array_equal(seen[1], 100 + Y)


def test_input_bound_by_address(pair):
    xx = np.full((2, 3), 5, np.float32)
    outs = []
    for sess in pair:
        b = _bound(sess, ("s",))
        b.bind_input("x", "cpu", 0, np.float32, [2, 3], xx.ctypes.data)
        sess.run_with_iobinding(b)
        outs.append(b.copy_outputs_to_cpu()[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1], xx + Y)


@pytest.mark.parametrize("how", ["pointer", "ortvalue"])
def test_preallocated_output_is_written_in_place(pair, how):
    for sess, ov_cls in zip(pair, (onnxruntime.OrtValue, ortgpu.OrtValue)):
        b = _bound(sess, ("s", "n"))
        if how == "pointer":
            out = np.zeros((2, 3), np.float32)
            b.bind_output("s", "cpu", 0, np.float32, [2, 3], out.ctypes.data)
            ptr = out.ctypes.data
        else:
            ov = ov_cls.ortvalue_from_shape_and_type([2, 3], np.float32)
            b.bind_ortvalue_output("s", ov)
            ptr, out = ov.data_ptr(), ov
        sess.run_with_iobinding(b)
        got = b.get_outputs()[0]
        assert got.data_ptr() == ptr
        np.testing.assert_array_equal(np.asarray(out), X + Y)
        sess.run_with_iobinding(b)  # runs again into the same memory
        assert b.get_outputs()[0].data_ptr() == ptr


@pytest.mark.parametrize("shape,dtype", [([3, 3], np.float32), ([2, 3], np.float64), ([6], np.float32)],
                         ids=["dims", "type", "rank"])
def test_a_preallocated_output_of_the_wrong_shape_or_type_is_refused(pair, shape, dtype):
    out = np.zeros(shape, dtype)
    bindings = []
    for sess in pair:
        b = _bound(sess, ())
        b.bind_output("s", "cpu", 0, dtype, shape, out.ctypes.data)
        bindings.append(b)
    err = _same_error(lambda: pair[0].run_with_iobinding(bindings[0]),
                      lambda: pair[1].run_with_iobinding(bindings[1]), exact=shape != [6])
    assert str(err).startswith("Error in execution: ")
    assert isinstance(err.__cause__, InvalidArgument) and "output" in str(err)


def test_binding_errors_match_onnxruntime(pair):
    theirs, ours = pair[0].io_binding(), pair[1].io_binding()
    _same_error(lambda: theirs.bind_cpu_input("zz", X), lambda: ours.bind_cpu_input("zz", X))
    _same_error(lambda: theirs.bind_input("zz", "cpu", 0, np.float32, [2, 3], X.ctypes.data),
                lambda: ours.bind_input("zz", "cpu", 0, np.float32, [2, 3], X.ctypes.data))
    _same_error(lambda: theirs.bind_output("s", "cpu", 0, None, [2, 3], X.ctypes.data),
                lambda: ours.bind_output("s", "cpu", 0, None, [2, 3], X.ctypes.data), ValueError)
    with pytest.raises(RuntimeError, match="Unable to create OrtValue"):
        ours.bind_cpu_input("x", [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="Unsupported device type: foo"):
        ours.bind_output("s", "foo")
    with pytest.raises(TypeError, match="OrtValue"):
        ours.bind_ortvalue_input("x", X)


@pytest.mark.parametrize("case", ["no_outputs", "unknown_output", "wrong_type", "wrong_dims", "graph_id"])
def test_run_errors_match_onnxruntime(pair, case):
    bindings = []
    for sess in pair:
        b = _bound(sess, () if case == "no_outputs" else ("s",))
        if case == "unknown_output":
            b.bind_output("zz")
        elif case == "wrong_type":
            b.bind_cpu_input("x", X.astype(np.float64))
        elif case == "wrong_dims":
            b.bind_cpu_input("x", np.ones((3, 3), np.float32))
        bindings.append(b)
    ro = [onnxruntime.RunOptions(), ortgpu.RunOptions()]
    if case == "graph_id":
        for r in ro:
            r.add_run_config_entry("gpu_graph_id", "abc")
    _same_error(lambda: pair[0].run_with_iobinding(bindings[0], ro[0]),
                lambda: pair[1].run_with_iobinding(bindings[1], ro[1]),
                ValueError if case == "graph_id" else RuntimeError)


def test_a_missing_input_names_it(pair):
    b = pair[1].io_binding()
    b.bind_cpu_input("x", X)
    b.bind_output("s")
    with pytest.raises(RuntimeError, match=r"Error in execution: Required inputs \(\['y'\]\)"):
        pair[1].run_with_iobinding(b)


def test_clearing_bindings(pair):
    for sess in pair:
        b = _bound(sess)
        sess.run_with_iobinding(b)
        b.clear_binding_outputs()
        b.bind_output("n")
        sess.run_with_iobinding(b)
        assert len(b.get_outputs()) == 1
        b.clear_binding_inputs()
        with pytest.raises(RuntimeError):
            sess.run_with_iobinding(b)
        b.synchronize_inputs()
        b.synchronize_outputs()


def test_a_binding_belongs_to_its_session(pair):
    other = ortgpu.InferenceSession(_add_neg().SerializeToString(), providers=CPU)
    with pytest.raises(ValueError, match="session that created it"):
        other.run_with_iobinding(_bound(pair[1]))
    with pytest.raises(TypeError):
        pair[1].run_with_iobinding(3)
    with pytest.raises(TypeError):
        pair[1].run_with_iobinding(_bound(pair[1]), 3)


# --- run_with_ort_values ------------------------------------------------------------------------
def test_run_with_ort_values_matches_onnxruntime(pair):
    outs = []
    for sess, cls in zip(pair, (onnxruntime.OrtValue, ortgpu.OrtValue)):
        res = sess.run_with_ort_values(["n"], {"x": cls.ortvalue_from_numpy(X), "y": cls.ortvalue_from_numpy(Y)})
        assert isinstance(res, list) and isinstance(res[0], cls)
        outs.append(res[0].numpy())
        assert [o.shape() for o in sess.run_with_ort_values(
            None, {"x": cls.ortvalue_from_numpy(X), "y": cls.ortvalue_from_numpy(Y)})] == [[2, 3], [2, 3]]
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("case", ["missing", "unknown_input", "unknown_output", "type", "dims"])
def test_run_with_ort_values_errors_match_onnxruntime(pair, case):
    def call(sess, cls):
        feed = {"x": cls.ortvalue_from_numpy(X), "y": cls.ortvalue_from_numpy(Y)}
        names = ["n"]
        if case == "missing":
            del feed["y"]
        elif case == "unknown_input":
            feed["q"] = feed["y"]
        elif case == "unknown_output":
            names = ["zz"]
        elif case == "type":
            feed["x"] = cls.ortvalue_from_numpy(X.astype(np.float64))
        elif case == "dims":
            feed["x"] = cls.ortvalue_from_numpy(np.ones((3, 3), np.float32))
        return sess.run_with_ort_values(names, feed)
    builtin = ValueError if case == "missing" else Exception
    err = _same_error(lambda: call(pair[0], onnxruntime.OrtValue), lambda: call(pair[1], ortgpu.OrtValue), builtin)
    if case != "missing":
        assert isinstance(err, InvalidArgument)
    with pytest.raises(TypeError, match="must be an OrtValue"):
        pair[1].run_with_ort_values(None, {"x": X, "y": Y})


# --- the device double: bound runs copy nothing ----------------------------------------------------
def _double_session(model):
    dev = FakeDeviceExecutionProvider()
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=[dev, CheckedCPUExecutionProvider()])
    return sess, dev


def _on_dev(a):
    return ortgpu.OrtValue.ortvalue_from_numpy(np.asarray(a), "fakedev")


def _plan_copies(sess):
    return [c.op_type for plan in sess._core.plans.values() for c in plan.partition.copies()]


def _weighted():
    """y = Relu(x @ W + b) * x[:, :1], all on the device; W and b are initializers."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "W")
    bias = numpy_helper.from_array(np.array([0.5, -1, 0, 2], np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, ["N", 3])],
                    [helper.make_tensor_value_info("y", F, None), helper.make_tensor_value_info("r", F, None)],
                    initializers=[w, bias])


def test_a_bound_run_with_device_inputs_and_outputs_makes_no_host_copy():
    model = _weighted()
    sess, dev = _double_session(model)
    ref = onnxruntime.InferenceSession(model.SerializeToString(), providers=CPU)
    init_copies = dev.copies_from_host  # W and b went to the device once, when the session was made
    assert init_copies == 2
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    b = sess.io_binding()
    b.bind_ortvalue_input("x", _on_dev(x))
    b.bind_output("y", "fakedev")
    out = ortgpu.OrtValue.ortvalue_from_shape_and_type([5, 4], np.float32, "fakedev")
    b.bind_ortvalue_output("r", out)
    ptr = out.data_ptr()
    for _ in range(2):
        sess.run_with_iobinding(b)
    assert (dev.copies_from_host, dev.copies_to_host) == (init_copies, 0)  # nothing per run
    assert _plan_copies(sess) == []  # no MemcpyFromHost / MemcpyToHost step in the plan it ran
    y, r = b.get_outputs()
    assert isinstance(y._value, FakeArray) and y.device_name() == "fakedev"
    assert r is out and out.data_ptr() == ptr
    want = ref.run(None, {"x": x})
    np.testing.assert_allclose(y.numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), want[1], rtol=1e-6)
    assert len(sess._core.plans) == 1  # compiled once for this device signature, reused


def test_host_bindings_on_a_device_session_copy_once_each_way():
    sess, dev = _double_session(_weighted())
    before = dev.copies_from_host
    b = sess.io_binding()
    b.bind_cpu_input("x", np.ones((2, 3), np.float32))
    b.bind_output("y")  # to the CPU
    b.bind_output("r", "fakedev")
    sess.run_with_iobinding(b)
    assert (dev.copies_from_host - before, dev.copies_to_host) == (1, 1)
    assert sorted(_plan_copies(sess)) == ["MemcpyFromHost", "MemcpyToHost"]
    assert [o.device_name() for o in b.get_outputs()] == ["cpu", "fakedev"]


def test_run_with_ort_values_reads_device_inputs_in_place_and_returns_cpu_values():
    model = _weighted()
    sess, dev = _double_session(model)
    before = dev.copies_from_host
    x = np.ones((2, 3), np.float32)
    res = sess.run_with_ort_values(None, {"x": _on_dev(x)})
    assert [r.device_name() for r in res] == ["cpu", "cpu"]  # as onnxruntime returns its fetches
    assert (dev.copies_from_host - before, dev.copies_to_host) == (0, 2)  # the input stays, each output once
    ref = onnxruntime.InferenceSession(model.SerializeToString(), providers=CPU).run(None, {"x": x})
    for a, b in zip(res, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)


def test_only_the_edges_that_cross_devices_are_copied():
    # Relu (device) -> Unique (host-only kernel) -> Neg (device): inputs and outputs bound on the device
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["u"], sorted=1),
             helper.make_node("Neg", ["u"], ["y"])]
    model = mb.model(nodes, [helper.make_tensor_value_info("x", F, [6])], [helper.make_tensor_value_info("y", F, None)])
    sess, dev = _double_session(model)
    x = np.array([3, -1, 2, 3, 0, 2], np.float32)
    b = sess.io_binding()
    b.bind_ortvalue_input("x", _on_dev(x))
    b.bind_output("y", "fakedev")
    sess.run_with_iobinding(b)
    assert (dev.copies_from_host, dev.copies_to_host) == (1, 1)  # r to the host, u back; x and y not
    np.testing.assert_array_equal(b.get_outputs()[0].numpy(), -np.unique(np.maximum(x, 0)))


def test_a_device_value_needs_a_provider_on_that_device():
    sess = ortgpu.InferenceSession(_weighted().SerializeToString(), providers=CPU)
    b = sess.io_binding()
    b.bind_ortvalue_input("x", _on_dev(np.ones((2, 3), np.float32)))
    b.bind_output("y")
    with pytest.raises(RuntimeError, match="input 'x' is on device 'fakedev'") as e:
        sess.run_with_iobinding(b)
    assert isinstance(e.value.__cause__, InvalidArgument)
    # an output bound to a device no provider runs on stays on the CPU (onnxruntime's behaviour
    # for bind_output(name, "cuda") on a CPU-only session: test_bind_output_to_cuda_without_gpu)
    b.bind_cpu_input("x", np.ones((2, 3), np.float32))
    b.bind_output("y", "fakedev")
    sess.run_with_iobinding(b)
    assert b.get_outputs()[0].device_name() == "cpu"


def test_pointer_bindings_on_the_device():
    sess, dev = _double_session(_weighted())
    x = _on_dev(np.ones((2, 3), np.float32))
    out = ortgpu.OrtValue.ortvalue_from_shape_and_type([2, 4], np.float32, "fakedev")
    b = sess.io_binding()
    b.bind_input("x", "fakedev", 0, np.float32, [2, 3], x.data_ptr())
    b.bind_output("y", "fakedev", 0, np.float32, [2, 4], out.data_ptr())
    downloads = FAKE_KIND.downloads
    sess.run_with_iobinding(b)
    assert dev.copies_to_host == 0 and FAKE_KIND.downloads == downloads
    ref = onnxruntime.InferenceSession(_weighted().SerializeToString(), providers=CPU).run(
        ["y"], {"x": np.ones((2, 3), np.float32)})[0]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
