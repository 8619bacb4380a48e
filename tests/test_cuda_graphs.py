"""CUDA graphs on the CPU: when runs warm up, capture and replay (per gpu_graph_id), the fixed
buffers a captured graph reads and writes, and the models refused at session creation.  The
device is the double of tests/support/device_double.py with a fake capture backend whose "graph"
re-runs the captured plan into the captured output buffers, as a replay writes into fixed
addresses; the real backend (CuPy) is exercised by tests/gpu/test_gpu_graphs.py."""
from __future__ import annotations

import logging

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import model_builders as mb
import ortgpu

from support.device_double import CheckedCPUExecutionProvider, FakeArray, FakeDeviceExecutionProvider, capturing
from ortgpu.errors import Fail, InvalidArgument
from ortgpu.providers.cuda import CUDAExecutionProvider
from ortgpu.graph_capture import SKIP, WARMUP_RUNS, GraphRunner, graph_id_of

F = TensorProto.FLOAT
CPU = ["CPUExecutionProvider"]


class FakeGraph:
    """What a capture recorded: re-running `fn` and writing its results into the outputs
    returned at capture time (whose "addresses" stay fixed)."""

    def __init__(self, fn, outputs):
        self.fn, self.outputs = fn, outputs

    def replay(self):
        for dst, src in zip(self.outputs, self.fn()):
            if isinstance(dst, FakeArray):
                np.copyto(dst._a, src._a)
            elif isinstance(dst, np.ndarray):
                np.copyto(dst, src)


class FakeGraphBackend:
    """The capture backend interface of ortgpu.providers.cuda.graphs on the device double; it
    logs what the runner asks of it."""

    def __init__(self):
        self.log: list[str] = []

    def stage(self, value):
        self.log.append("stage")
        return value.copy()

    def copy_into(self, dst, src):
        self.log.append("copy_into")
        np.copyto(dst._a, (src._a if isinstance(src, FakeArray) else src).reshape(dst.shape))

    def capture(self, fn):
        self.log.append("capture")
        with capturing():  # what CuPy refuses inside a capture, the double refuses too
            outputs = fn()  # the double computes while "capturing"; CUDA only records
        return FakeGraph(fn, outputs), outputs, None

    def launch(self, graph):
        self.log.append("launch")
        graph.replay()


class GraphDouble(FakeDeviceExecutionProvider):
    """The device double with enable_cuda_graph on."""

    graph_capture_enabled = True

    def __init__(self):
        super().__init__()
        self.backend = FakeGraphBackend()

    def graph_backend(self):
        return self.backend


def _session(model, so=None):
    dev = GraphDouble()
    return ortgpu.InferenceSession(model.SerializeToString(), so,
                                   providers=[dev, CheckedCPUExecutionProvider()]), dev


def _mlp():
    """y = Relu(x * W + b); x is ['N', 3] (the batch is free).  Element-wise only: a MatMul on
    the double runs the shared kernel (cupy.matmul on a GPU), which cannot be captured
    (test_a_capture_that_fails_at_run_time_falls_back_to_eager_runs_with_one_warning)."""
    w = numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "W")
    b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3], np.float32), "b")
    nodes = [helper.make_node("Mul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, ["N", 3])],
                    [helper.make_tensor_value_info("y", F, None)], initializers=[w, b])


def _matmul_mlp():
    """y = Relu(x @ W + b): a GEMM through CuPy's cuBLAS wrappers on the double."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "W")
    b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3, 0.0], np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, ["N", 3])],
                    [helper.make_tensor_value_info("y", F, None)], initializers=[w, b])


@pytest.fixture(scope="module")
def reference():
    sess = onnxruntime.InferenceSession(_mlp().SerializeToString(), providers=CPU)
    return lambda x: sess.run(None, {"x": x})[0]


def _run_options(graph_id):
    ro = ortgpu.RunOptions()
    if graph_id is not None:
        ro.add_run_config_entry("gpu_graph_id", str(graph_id))
    return ro


# --- gpu_graph_id and the decisions -------------------------------------------------------------
@pytest.mark.parametrize("entry,want", [(None, 0), ("", 0), ("3", 3), ("-1", -1), ("0", 0)])
def test_graph_id_of_run_options(entry, want):
    ro = ortgpu.RunOptions()
    if entry is not None:
        ro.add_run_config_entry("gpu_graph_id", entry)
    assert graph_id_of(ro) == want
    assert graph_id_of(None) == 0


@pytest.mark.parametrize("entry", ["abc", "1.5", " 3", "-2"])
def test_a_graph_id_that_is_not_an_integer_is_refused_as_by_onnxruntime(entry):
    data = mb.identity().SerializeToString()
    x = np.ones((2, 3), np.float32)
    outcomes = []
    for rt in (onnxruntime, ortgpu):
        sess = rt.InferenceSession(data, providers=CPU)
        ro = rt.RunOptions()
        ro.add_run_config_entry("gpu_graph_id", entry)
        b = sess.io_binding()
        b.bind_cpu_input("x", x)
        b.bind_output("y")
        got = []
        for call in (lambda: sess.run(None, {"x": x}, ro),
                     lambda: sess.run_with_ort_values(None, {"x": rt.OrtValue.ortvalue_from_numpy(x)}, ro),
                     lambda: sess.run_with_iobinding(b, ro)):
            try:
                call()
                got.append("ok")
            except Exception as e:  # noqa: BLE001 - the outcome is what is compared
                got.append(f"{type(e).__name__}: {e}")
        outcomes.append(got)
    assert outcomes[1] == outcomes[0]


class _CountingPlan:
    input_names = ["x"]

    def __init__(self):
        self.runs = 0

    def run(self, inputs):
        self.runs += 1
        return [inputs[0]]


def test_warm_up_then_capture_then_replay_per_graph_id():
    prov = GraphDouble()
    runner = GraphRunner(_CountingPlan(), prov, prov.backend)
    x = prov.from_host(np.ones(2, np.float32))
    seen = []
    for graph_id in (0, 0, 0, 0, 5, 5, 5, 5, 0, SKIP, SKIP):
        seen.append(runner.action(graph_id))
        runner.run(graph_id, [x])
    assert seen == ["warmup"] * WARMUP_RUNS + ["capture", "replay"] + ["warmup"] * WARMUP_RUNS + \
        ["capture", "replay", "replay", "skip", "skip"]
    assert sorted(runner.captured) == [0, 5]
    runner.release(0)
    assert runner.action(0) == "warmup" and runner.action(5) == "replay"


# --- sessions with graphs -------------------------------------------------------------------------
def test_bound_runs_capture_once_and_replay_with_updated_inputs(reference):
    sess, dev = _session(_mlp())
    rng = np.random.default_rng(1)
    x = ortgpu.OrtValue.ortvalue_from_numpy(rng.standard_normal((4, 3)).astype(np.float32), "fakedev")
    y = ortgpu.OrtValue.ortvalue_from_shape_and_type([4, 3], np.float32, "fakedev")
    b = sess.io_binding()
    b.bind_ortvalue_input("x", x)
    b.bind_ortvalue_output("y", y)
    ptr = y.data_ptr()
    copies = (dev.copies_from_host, dev.copies_to_host)
    for i in range(6):
        data = rng.standard_normal((4, 3)).astype(np.float32)
        x.update_inplace(data)
        sess.run_with_iobinding(b)
        np.testing.assert_allclose(y.numpy(), reference(data), rtol=1e-5, atol=1e-6)
        assert y.data_ptr() == ptr and b.get_outputs()[0] is y
    log = dev.backend.log
    assert log.count("capture") == 1 and log.index("capture") > 0
    assert log.count("launch") == 6 - WARMUP_RUNS  # the capturing run launches once, then each replay
    assert log.count("copy_into") == 6 - WARMUP_RUNS - 1  # replays copy the bound input into the graph's
    assert (dev.copies_from_host, dev.copies_to_host) == copies  # device in, device out: no host copy


def test_unallocated_device_outputs_are_fresh_copies_of_the_graph_buffers(reference):
    sess, dev = _session(_mlp())
    x = ortgpu.OrtValue.ortvalue_from_numpy(np.ones((2, 3), np.float32), "fakedev")
    b = sess.io_binding()
    b.bind_ortvalue_input("x", x)
    b.bind_output("y", "fakedev")
    kept = []
    for i in range(WARMUP_RUNS + 3):
        x.update_inplace(np.full((2, 3), i, np.float32))
        sess.run_with_iobinding(b)
        kept.append((i, b.get_outputs()[0]))
    for i, out in kept:  # a later replay did not overwrite what an earlier run returned
        np.testing.assert_allclose(out.numpy(), reference(np.full((2, 3), i, np.float32)), rtol=1e-5)


def test_several_graph_ids_hold_several_shapes(reference):
    sess, dev = _session(_mlp())
    shapes = {1: (2, 3), 2: (5, 3)}
    values = {g: ortgpu.OrtValue.ortvalue_from_numpy(np.zeros(s, np.float32), "fakedev") for g, s in shapes.items()}
    bindings = {}
    for g, v in values.items():
        bindings[g] = b = sess.io_binding()
        b.bind_ortvalue_input("x", v)
        b.bind_output("y", "fakedev")
    rng = np.random.default_rng(2)
    for _ in range(WARMUP_RUNS + 2):
        for g in (1, 2):
            data = rng.standard_normal(shapes[g]).astype(np.float32)
            values[g].update_inplace(data)
            sess.run_with_iobinding(bindings[g], _run_options(g))
            np.testing.assert_allclose(bindings[g].get_outputs()[0].numpy(), reference(data), rtol=1e-5, atol=1e-6)
    assert sorted(sess._core.graphs.captured) == [1, 2]
    with pytest.raises(RuntimeError, match="CUDA graph 1 was captured with input 'x' as float32 of shape "
                                           r"\[2, 3\]; this run gives float32 of shape \[5, 3\]") as e:
        sess.run_with_iobinding(bindings[2], _run_options(1))
    assert isinstance(e.value.__cause__, InvalidArgument)
    sess.release_captured_graph(1)
    sess.run_with_iobinding(bindings[2], _run_options(1))  # id 1 starts over (a warm-up)
    assert sorted(sess._core.graphs.captured) == [2]


def test_graph_id_minus_one_never_captures(reference):
    sess, dev = _session(_mlp())
    x = np.ones((3, 3), np.float32)
    for _ in range(WARMUP_RUNS + 3):
        out = sess.run(None, {"x": x}, _run_options(-1))[0]
    assert "capture" not in dev.backend.log
    np.testing.assert_allclose(out, reference(x), rtol=1e-5)


def test_run_with_host_feeds_replays_too(reference):
    sess, dev = _session(_mlp())
    for i in range(WARMUP_RUNS + 3):
        x = np.full((2, 3), i - 1.5, np.float32)
        out = sess.run(None, {"x": x})[0]
        assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(out, reference(x), rtol=1e-5)
    assert dev.backend.log.count("capture") == 1 and dev.backend.log.count("launch") == 3


def test_a_capture_that_fails_at_run_time_falls_back_to_eager_runs_with_one_warning(caplog):
    # the shared MatMul calls cupy.matmul, whose cuBLAS wrapper resets the stream: refused while
    # capturing (on the double as by CuPy).  The capture run and every later run still answer.
    sess, dev = _session(_matmul_mlp())
    want = onnxruntime.InferenceSession(_matmul_mlp().SerializeToString(), providers=CPU)
    with caplog.at_level(logging.WARNING, logger="ortgpu"):
        for i in range(WARMUP_RUNS + 4):
            x = np.full((2, 3), i - 2.5, np.float32)
            np.testing.assert_allclose(sess.run(None, {"x": x})[0], want.run(None, {"x": x})[0], rtol=1e-5)
    failed = [r for r in caplog.records if "capture failed" in r.getMessage()]
    assert len(failed) == 1 and "cuBLAS" in failed[0].getMessage()
    assert dev.backend.log.count("capture") == 1 and "launch" not in dev.backend.log
    assert sess._core.graphs.action(0) == "eager"
    sess.release_captured_graph(0)  # releasing the id forgets the failure: it may try again
    assert sess._core.graphs.action(0) == "warmup"


def test_the_double_refuses_host_copies_and_cublas_while_capturing():
    from support.device_double import StreamCaptureUnsupported, fake_xp
    a = fake_xp.ones((2, 2), dtype=np.float32)
    with capturing():
        (a + 1).sum()  # device work records fine
        for read in (lambda: a.get(), lambda: float(a[0, 0]), lambda: bool(a.any()), lambda: int(a[0, 0]),
                     lambda: fake_xp.asarray(np.ones(2)), lambda: a.__setitem__(0, np.zeros(2, np.float32)),
                     lambda: FakeDeviceExecutionProvider().from_host(np.ones(2))):
            with pytest.raises(StreamCaptureUnsupported, match="capturing"):
                read()
        for gemm in (lambda: a @ a, lambda: fake_xp.matmul(a, a), lambda: fake_xp.einsum("ij,jk->ik", a, a),
                     lambda: fake_xp.dot(a, a), lambda: fake_xp.tensordot(a, a, 1)):
            with pytest.raises(NotImplementedError, match="cuBLAS"):
                gemm()
    assert float((a @ a)[0, 0]) == 2.0 and a.get().shape == (2, 2)  # outside a capture: fine


# --- models that cannot be captured ---------------------------------------------------------------
def _if_model():
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [2])])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, [2])])
    return mb.model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
                    [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", F, [2])],
                    [helper.make_tensor_value_info("y", F, [2])])


def _string_cast_model():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Cast", ["r"], ["s"], to=TensorProto.STRING),
             helper.make_node("Cast", ["s"], ["f"], to=F), helper.make_node("Neg", ["f"], ["y"])]
    return mb.model(nodes, [helper.make_tensor_value_info("x", F, [4])], [helper.make_tensor_value_info("y", F, [4])])


def _nonzero_model():
    return mb.model([helper.make_node("NonZero", ["x"], ["y"])], [helper.make_tensor_value_info("x", F, [4])],
                    [helper.make_tensor_value_info("y", TensorProto.INT64, None)])


def _sequence_input_model():
    return mb.model([helper.make_node("SequenceLength", ["s"], ["n"])],
                    [helper.make_tensor_sequence_value_info("s", F, None)],
                    [helper.make_tensor_value_info("n", TensorProto.INT64, [])])


PREFIX = "This session cannot use the CUDA Graph feature as requested by the user"


@pytest.mark.parametrize("make,reason", [
    (_if_model, "as the model has control flow nodes which can't be supported by CUDA Graphs."),
    (_string_cast_model, " as all compute graph nodes have not been partitioned to the CUDA EP."),
    (_nonzero_model, "as the model has nodes whose output shape depends on the input data"),
    (_sequence_input_model, "as input 's' is not a tensor"),
], ids=["control_flow", "cpu_node", "data_dependent", "sequence_input"])
def test_models_that_cannot_be_captured_are_refused_at_creation(make, reason):
    with pytest.raises(Fail) as e:
        _session(make())
    assert str(e.value).startswith(f"[ONNXRuntimeError] : 1 : FAIL : {PREFIX} {reason}"), str(e.value)
    # the same model without graphs is fine
    ortgpu.InferenceSession(make().SerializeToString(),
                            providers=[FakeDeviceExecutionProvider(), CheckedCPUExecutionProvider()])


def test_the_cuda_provider_refuses_before_touching_the_device():
    cuda = CUDAExecutionProvider({"enable_cuda_graph": "1"}, device_count=None)
    assert cuda.graph_capture_enabled
    with pytest.raises(Fail, match="control flow nodes"):
        ortgpu.InferenceSession(_if_model().SerializeToString(), providers=[cuda, "CPUExecutionProvider"])
    assert not CUDAExecutionProvider(device_count=None).graph_capture_enabled


def test_shape_computations_on_the_cpu_are_allowed_with_a_warning(caplog):
    # y = Reshape(x, Concat(Shape(x)[0], [-1])): Shape/Gather/Concat stay on the CPU (no copies)
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    model = mb.model(nodes, [helper.make_tensor_value_info("x", F, [2, 3, 4])],
                     [helper.make_tensor_value_info("y", F, None)], initializers=inits)
    so = ortgpu.SessionOptions()   # unoptimized: the basic passes would fold the Shape chain away
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    with caplog.at_level(logging.WARNING, logger="ortgpu"):
        sess, dev = _session(model, so)
    assert "shape massaging nodes that will execute on CPU" in caplog.text
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 12
    for _ in range(WARMUP_RUNS + 2):
        out = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, np.maximum(x.reshape(2, -1), 0))
    assert dev.backend.log.count("capture") == 1


# --- the CuPy backend's control flow, against a stub CuPy ------------------------------------------
class _StubStream:
    def __init__(self, ptr=1234):
        self.ptr, self.calls = ptr, []

    def begin_capture(self):
        self.calls.append("begin")

    def end_capture(self):
        self.calls.append("end")
        return _StubGraph(self)

    def wait_event(self, event):
        self.calls.append(("wait", event))

    def record(self):
        self.calls.append("record")
        return "event"


class _StubGraph:
    def __init__(self, stream):
        self.stream, self.launched_on = stream, []

    def launch(self, stream=None):
        self.launched_on.append(stream)


class _StubCuda:
    """cupy.cuda as far as CupyGraphBackend uses it: a memory pool and using_allocator."""

    def __init__(self):
        self.allocator_stack = []

    class MemoryPool:
        def malloc(self, size):
            raise AssertionError("not called by the stub kernels")

    def using_allocator(self, allocator):
        import contextlib
        stub = self

        @contextlib.contextmanager
        def scope():
            stub.allocator_stack.append(allocator)
            try:
                yield
            finally:
                stub.allocator_stack.pop()
        return scope()


@pytest.fixture
def stub_cupy(monkeypatch):
    import sys
    import types
    mod = types.ModuleType("cupy")
    mod.cuda = _StubCuda()
    mod.copyto = lambda dst, src: dst.__setitem__(Ellipsis, src)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    from ortgpu.providers.cuda import blas
    mod.bound_streams = []
    monkeypatch.setattr(blas, "bind_current_stream", lambda stream: mod.bound_streams.append(
        (stream, list(stream.calls))))
    return mod


class _StreamProvider:
    def __init__(self, stream):
        self.stream = stream


def test_cupy_backend_captures_with_a_private_pool(stub_cupy):
    from ortgpu.providers.cuda.graphs import CupyGraphBackend
    stream = _StubStream()
    backend = CupyGraphBackend(_StreamProvider(stream))
    seen = []

    def record():
        seen.append(list(stub_cupy.cuda.allocator_stack))
        return ["out"]
    graph, outputs, pool = backend.capture(record)
    assert stream.calls == ["begin", "end"] and outputs == ["out"]
    assert stub_cupy.bound_streams == [(stream, [])]  # cuBLAS bound to the stream before the capture began
    assert len(seen[0]) == 1 and seen[0][0].__self__ is pool  # allocations came from the graph's own pool
    assert stub_cupy.cuda.allocator_stack == []  # and only while capturing
    backend.launch(graph)
    assert graph.graph.launched_on == [stream]


def test_cupy_backend_ends_a_failed_capture_and_refuses_the_legacy_stream(stub_cupy):
    from ortgpu.providers.cuda.graphs import CupyGraphBackend
    stream = _StubStream()
    backend = CupyGraphBackend(_StreamProvider(stream))

    def broken():
        raise RuntimeError("cudaErrorStreamCaptureUnsupported")
    with pytest.raises(RuntimeError, match="CaptureUnsupported"):
        backend.capture(broken)
    assert stream.calls == ["begin", "end"]  # the stream is usable again
    for legacy in (0, 1):  # the null stream and cudaStreamLegacy: CuPy refuses to capture on either
        with pytest.raises(Fail, match="legacy default stream"):
            CupyGraphBackend(_StreamProvider(_StubStream(ptr=legacy))).capture(lambda: [])


def test_cupy_backend_copies_host_and_device_inputs_into_the_fixed_buffers(stub_cupy):
    from ortgpu.providers.cuda.graphs import CupyGraphBackend
    stream = _StubStream()
    backend = CupyGraphBackend(_StreamProvider(stream))

    class Dst:
        shape = (2, 2)

        def __init__(self):
            self.got = None

        def set(self, host, stream=None):
            self.got = (host.copy(), stream)

        def __setitem__(self, key, value):
            self.got = (value, "device")
    d = Dst()
    backend.copy_into(d, np.arange(4, dtype=np.float32))  # from the host: reshaped, on the session stream
    assert d.got[0].shape == (2, 2) and d.got[1] is stream

    class Src:
        def reshape(self, shape):
            return ("reshaped", shape)
    backend.copy_into(d, Src())
    assert d.got == (("reshaped", (2, 2)), "device")
