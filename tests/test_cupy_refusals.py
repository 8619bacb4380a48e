"""What real CuPy refuses, refused by the device double too, and the kernels that now avoid it.

Issue 12: the double used to accept what CuPy 14.2 raises on, so these bugs ran green on the
CPU.  Each test here fails on the double as CuPy would fail on a GPU if the kernel regressed;
the oracle is onnxruntime's CPU provider.
"""
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from support import model_builders as mb
from support.device_double import FakeArray, FakeDeviceExecutionProvider, fake_xp
from support.device_double import providers as double_providers
import ortgpu

CPU = ["CPUExecutionProvider"]


# --- item 3: ufunc.at takes only CuPy's dtypes -------------------------------------------------
@pytest.mark.parametrize("ufunc,dtype", [("maximum", np.float16), ("minimum", np.int8),
                                         ("add", np.int16), ("add", np.bool_), ("maximum", np.uint8)])
def test_the_double_refuses_ufunc_at_on_dtypes_cupy_refuses(ufunc, dtype):
    a = fake_xp.zeros(4, dtype=dtype)
    with pytest.raises(TypeError, match="does not support dtype"):
        getattr(fake_xp, ufunc).at(a, fake_xp.asarray(np.array([0, 1])), fake_xp.ones(2, dtype=dtype))


def test_the_double_takes_ufunc_at_on_dtypes_cupy_takes():
    a = fake_xp.zeros(3, dtype=np.float16)
    fake_xp.add.at(a, fake_xp.asarray(np.array([0, 0, 2])), fake_xp.ones(3, dtype=np.float16))
    assert a.get().tolist() == [2.0, 0.0, 1.0]


def _scatter_elements(dtype, reduction):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1, reduction=reduction)
    return mb.model([node], [helper.make_tensor_value_info("x", elem, [2, 4]),
                             helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3]),
                             helper.make_tensor_value_info("u", elem, [2, 3])],
                    [helper.make_tensor_value_info("y", elem, [2, 4])], opset=18)


@pytest.mark.parametrize("reduction", ["add", "max", "min"])
@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.int16, np.uint8, np.uint16, np.int32,
                                   np.float32])
def test_scatter_elements_reductions_run_on_the_device_for_every_dtype(dtype, reduction):
    rng = np.random.default_rng(3)
    x = (rng.uniform(-50, 120, (2, 4)) if np.dtype(dtype).kind == "f" else
         rng.integers(0, 100, (2, 4))).astype(dtype)
    u = (rng.uniform(-50, 120, (2, 3)) if np.dtype(dtype).kind == "f" else
         rng.integers(0, 100, (2, 3))).astype(dtype)
    i = np.array([[0, 0, 3], [1, 2, 1]], np.int64)
    m = _scatter_elements(dtype, reduction)
    try:
        want = onnxruntime.InferenceSession(m.SerializeToString(), providers=CPU).run(None, {"x": x, "i": i, "u": u})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime lacks the type: compare with NumPy
        pytest.skip(f"onnxruntime has no kernel: {e}")
    dev = FakeDeviceExecutionProvider()
    sess = ortgpu.InferenceSession(m.SerializeToString(), providers=[dev, double_providers()[1]])
    got = sess.run(None, {"x": x, "i": i, "u": u})[0]
    assert dev.copies_from_host == 3  # the node ran on the double (the inputs went to the device)
    np.testing.assert_array_equal(got, want)


# --- item 1: cuBLAS through a binding that sets the stream only outside a capture -------------
class _StubCublas:
    """libcublas as ctypes sees it: records each call with its plain argument values."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, [getattr(a, "value", a) for a in args]))
            return 0
        return call


class _StubRuntime:
    def __init__(self):
        self.capturing = set()

    def streamIsCapturing(self, ptr):  # noqa: N802 - CuPy's name
        return ptr in self.capturing


def test_cublas_binding_sets_the_stream_outside_a_capture_only():
    from ortgpu.providers.cuda.blas import CublasBinding, cublas_args
    lib, rt = _StubCublas(), _StubRuntime()
    b = CublasBinding(lib, rt)
    a3, b3 = np.zeros((1, 2, 3), np.float32), np.zeros((1, 3, 4), np.float32)
    g = cublas_args(a3, b3, False, False)
    b.gemm_strided_batched(11, 77, g, 1000, 2000, 3000, np.float32, 1.0, 0.0, tf32=False)
    assert [c[0] for c in lib.calls] == ["cublasSetStream_v2", "cublasGemmStridedBatchedEx"]
    assert lib.calls[0][1] == [11, 77]
    args = lib.calls[1][1]
    # column-major C^T = B^T A^T: B first (m = N = 4, n = M = 2, k = 3), fp32 compute without TF32
    assert args[:6] == [11, 0, 0, 4, 2, 3] and args[7] == 2000 and args[11] == 1000 and args[16] == 3000
    assert args[8] == args[12] == args[17] == 0  # CUDA_R_32F everywhere
    assert args[-3:] == [1, 68, -1]
    lib.calls.clear()
    rt.capturing.add(77)
    b.bind_stream(11, 77)  # what the graph backend does just before begin_capture
    lib.calls.clear()
    b.gemm_strided_batched(11, 77, g, 1000, 2000, 3000, np.float16, 1.0, 0.0, tf32=True)
    assert [c[0] for c in lib.calls] == ["cublasGemmStridedBatchedEx"]  # no stream call while capturing
    assert lib.calls[0][1][-3:] == [1, 68, 99]  # fp16 data, fp32 accumulation, tensor-op algo


def test_cublas_binding_raises_on_a_failed_status():
    from ortgpu.errors import Fail
    from ortgpu.providers.cuda.blas import CublasBinding

    class Failing(_StubCublas):
        def __getattr__(self, name):
            return lambda *a: 14  # CUBLAS_STATUS_INTERNAL_ERROR
    with pytest.raises(Fail, match="cublasSetStream_v2 failed with cublasStatus_t 14"):
        CublasBinding(Failing(), _StubRuntime()).bind_stream(1, 2)


# --- items 4 and 12: a cuDNN that imports but cannot make a handle falls back, said once -------
class _NoLibCudnn:
    """nvidia-cudnn-frontend installed, libcudnn.so.9 missing: create_handle raises."""
    calls = 0

    def create_handle(self):
        _NoLibCudnn.calls += 1
        raise RuntimeError("libcudnn.so.9: cannot open shared object file")


class _DeviceXp:
    """fake_xp with the cupy.cuda.Device the cuDNN path asks for."""

    def __getattr__(self, name):
        return getattr(fake_xp, name)

    class cuda:  # noqa: N801 - cupy's name
        class Device:
            id = 0


def test_conv_falls_back_to_the_shared_kernel_when_cudnn_cannot_make_a_handle(monkeypatch, caplog):
    import logging
    import sys
    from ortgpu.providers.cuda import cudnn as cu_dnn
    from ortgpu.providers.kernels.conv import conv_float
    from ortgpu.providers.registry import KernelContext
    monkeypatch.setitem(sys.modules, "cudnn", _NoLibCudnn())
    monkeypatch.setattr(cu_dnn, "_NOTED", set())
    monkeypatch.setattr(cu_dnn, "_HANDLES", __import__("threading").local())
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    ctx = KernelContext(_DeviceXp(), "CUDAExecutionProvider", "n", "Conv", 11)
    want = conv_float(KernelContext(np, "CPUExecutionProvider", "n", "Conv", 11), x, w, None, "NOTSET",
                      None, 1, None, [1, 1, 1, 1], None)
    with caplog.at_level(logging.WARNING, logger="ortgpu"):
        for _ in range(2):
            got = cu_dnn.conv_cudnn(ctx, fake_xp.asarray(x), fake_xp.asarray(w), None, "NOTSET", None, 1, None,
                                    [1, 1, 1, 1], None)
            np.testing.assert_allclose(got.get(), want, rtol=1e-5, atol=1e-5)
    noted = [r for r in caplog.records if "cuDNN not used" in r.getMessage()]
    assert len(noted) == 1 and "libcudnn.so.9" in noted[0].getMessage()  # said once, with the reason


# --- items 2 and 9: index error flags read once per run, not once per launch -------------------
from support.cuda_emulator import emulated_cuda  # noqa: E402,F401  (the fixture)


class _FlagsEp:
    """The part of the CUDA provider a launcher asks for: its ErrorFlags."""

    def __init__(self):
        from ortgpu.providers.cuda.error_flags import ErrorFlags
        self.error_flags = ErrorFlags()


def test_gather_defers_its_index_flag_to_the_run_and_the_run_raises_once(emulated_cuda, monkeypatch):
    from ortgpu.providers import registry
    from ortgpu.providers.registry import KernelContext
    cp = emulated_cuda.cupy
    ep = _FlagsEp()
    fn = registry.lookup("Gather", "", 13, ("cuda",)).fn
    ctx = KernelContext(cp, "CUDAExecutionProvider", "embed", "Gather", 13, ep=ep)
    data = cp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    reads = []
    real_get = type(data).get
    monkeypatch.setattr(type(data), "get", lambda self, *a, **k: reads.append(1) or real_get(self, *a, **k))
    good = fn(ctx, data, cp.asarray(np.array([2, 0], np.int64)), axis=0)
    bad = fn(ctx, data, cp.asarray(np.array([1, 7], np.int64)), axis=0)   # no raise, no read at launch
    assert reads == [] and good.shape == (2, 4) and bad.shape == (2, 4)
    assert len(ep.error_flags._pending()) == 2
    with pytest.raises(IndexError, match=r"index 7 is out of bounds for a dimension of size 3 \(node 'embed'\)"):
        ep.error_flags.check_pending(cp)
    assert reads == [1]                      # every flag of the run in one copy
    ep.error_flags.check_pending(cp)         # taken: the next run starts clean
    fn(ctx, data, cp.asarray(np.array([2, -3], np.int64)), axis=0)
    ep.error_flags.check_pending(cp)         # in range: nothing raised
    np.testing.assert_array_equal(good.get(), np.arange(12, dtype=np.float32).reshape(3, 4)[[2, 0]])


def test_the_graph_backend_keeps_the_flags_of_a_capture_and_checks_them_after_each_replay(monkeypatch):
    import sys
    import types
    from ortgpu.providers.cuda import blas
    from ortgpu.providers.cuda.error_flags import ErrorFlags
    from ortgpu.providers.cuda.graphs import CupyGraphBackend
    import contextlib
    mod = types.ModuleType("cupy")
    mod.cuda = types.SimpleNamespace(MemoryPool=lambda: types.SimpleNamespace(malloc=None),
                                     using_allocator=lambda a: contextlib.nullcontext())
    monkeypatch.setitem(sys.modules, "cupy", mod)
    monkeypatch.setattr(blas, "bind_current_stream", lambda stream: None)

    class Stream:
        ptr = 5
        def begin_capture(self): pass
        def end_capture(self): return types.SimpleNamespace(launch=lambda stream=None: None)
    ep = types.SimpleNamespace(stream=Stream(), error_flags=ErrorFlags())
    flag = fake_xp.asarray(np.array([1, 9, 4], np.int64))  # the kernel's write, as a replay refills it
    backend = CupyGraphBackend(ep)
    captured, _, _ = backend.capture(lambda: ep.error_flags.defer(flag, "g") or ["y"])
    assert ep.error_flags._pending() == [] and len(captured.flags) == 1  # kept with the graph
    backend.launch(captured)
    with pytest.raises(IndexError, match="index 9 .* size 4 \\(node 'g'\\)"):
        ep.error_flags.check_pending(fake_xp)
    backend.launch(captured)
    assert len(ep.error_flags._pending()) == 1  # each replay is checked again


# --- items 14 and 15: what a bare GPU image lacks ---------------------------------------------
def test_nvtx_ranges_prefer_cupys_binding_then_the_nvtx_package(monkeypatch):
    import sys
    import types
    from ortgpu.profiling import device
    calls = []
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.ModuleType("cupy.cuda")
    cupy.cuda.nvtx = types.SimpleNamespace(available=True, RangePush=lambda n: calls.append(("push", n)),
                                           RangePop=lambda: calls.append("pop"))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nvtx", cupy.cuda.nvtx)
    monkeypatch.setitem(sys.modules, "nvtx", None)   # the package is absent
    ranges = device.nvtx_ranges()
    ranges.push_range("Conv_0")
    ranges.pop_range()
    assert calls == [("push", "Conv_0"), "pop"]
    for name in ("cupy", "cupy.cuda", "cupy.cuda.nvtx"):  # no CuPy and no nvtx package: no ranges
        monkeypatch.setitem(sys.modules, name, None)
    assert device.nvtx_ranges() is None


def test_git_commit_without_git_is_empty_not_an_error(monkeypatch):
    import subprocess
    sys_path = __import__("sys").path
    sys_path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "benchmarks"))
    try:
        import common
    finally:
        sys_path.pop(0)

    def no_git(*a, **k):
        raise FileNotFoundError(2, "No such file or directory: 'git'")
    monkeypatch.setattr(subprocess, "run", no_git)
    assert common.git_commit() == ""


def test_the_transformer_export_falls_back_from_torchscript_to_dynamo():
    from support.transformer_models import export_with_fallbacks
    seen = []

    def newer_torch(model, args, path, dynamo=True, **kw):
        seen.append((dynamo, sorted(kw)))
        if not dynamo:
            raise RuntimeError("the TorchScript-based ONNX exporter was removed")
    assert export_with_fallbacks(newer_torch, None, (), "m.onnx", opset_version=17, dynamic_axes={},
                                 do_constant_folding=True) == "dynamo"
    assert seen[-1] == (True, ["dynamic_axes", "opset_version"])

    def older_torch(model, args, path, opset_version=None, dynamic_axes=None, do_constant_folding=True):
        seen.append("old")
    assert export_with_fallbacks(older_torch, None, (), "m.onnx", opset_version=17, dynamic_axes={},
                                 do_constant_folding=True) == "default"

    def broken(model, args, path, dynamo=True, **kw):
        raise ValueError(f"cannot export (dynamo={dynamo})")
    with pytest.raises(ValueError, match="dynamo=True") as e:
        export_with_fallbacks(broken, None, (), "m.onnx")
    assert "dynamo=False" in str(e.value.__cause__)


# --- item 6: the download's packing copy runs on the download's stream ------------------------
def test_download_packs_on_the_stream_it_copies_on(monkeypatch):
    import sys
    import types
    from ortgpu.memory import staging
    current = ["legacy"]

    class Stream:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.prev = current[0]
            current[0] = self.name

        def __exit__(self, *exc):
            current[0] = self.prev

        def synchronize(self):
            pass
    packed_on = []

    class Arr:
        nbytes = 8
        def get(self, stream=None):
            return ("host", stream.name)
    cupy = types.ModuleType("cupy")
    cupy.ascontiguousarray = lambda a: packed_on.append(current[0]) or Arr()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert staging.download(None, object(), Stream("session")) == ("host", "session")
    assert packed_on == ["session"] and current == ["legacy"]


# --- item 16: the TF32 switch of cupy.matmul is process-wide: runs with other settings wait ----
def test_tf32_setting_is_never_changed_under_a_running_session():
    import threading
    import time
    from ortgpu.providers.cuda.provider import _Tf32Setting

    class Linalg:
        value = 1
        def get_compute_type(self, dt): return self.value
        def set_compute_type(self, dt, v): self.value = v
    linalg, setting = Linalg(), _Tf32Setting()
    seen = []
    a_in, a_out = threading.Event(), threading.Event()

    def run_a():
        with setting.scope(linalg, 7):
            a_in.set()
            a_out.wait(5)
            seen.append(("a", linalg.value))

    def run_b():
        a_in.wait(5)
        with setting.scope(linalg, 1):
            seen.append(("b", linalg.value))
    ta, tb = threading.Thread(target=run_a), threading.Thread(target=run_b)
    ta.start(), tb.start()
    a_in.wait(5)
    time.sleep(0.05)
    assert seen == [] and linalg.value == 7   # b waits while a runs with TF32
    a_out.set()
    ta.join(5), tb.join(5)
    assert seen == [("a", 7), ("b", 1)] and linalg.value == 1  # restored by the last run out
    with setting.scope(linalg, 7):
        with setting.scope(linalg, 1):          # nested on one thread: keeps the outer setting
            assert linalg.value == 7
    assert linalg.value == 1


def test_cudnn_plans_are_per_thread_as_their_handles(monkeypatch):
    import sys
    import threading
    import types
    from ortgpu.providers.cuda import cudnn as cu_dnn
    from ortgpu.providers.cuda.options import parse_cuda_options
    monkeypatch.setitem(sys.modules, "cudnn", types.SimpleNamespace(create_handle=lambda: object()))
    monkeypatch.setattr(cu_dnn, "_HANDLES", threading.local())
    monkeypatch.setattr(cu_dnn, "_PLANS", {})

    class Plan:
        def __init__(self, cudnn, handle, *a, **k):
            self.handle = handle
    monkeypatch.setattr(cu_dnn, "_ConvPlan", Plan)
    geom = cu_dnn.conv_geometry((1, 2, 5, 5), (3, 2, 3, 3), "NOTSET", None, None, [1, 1, 1, 1], None)
    x = np.zeros((1, 2, 5, 5), np.float32)
    config = parse_cuda_options({}, None)
    got = []

    def plan():
        p1, _, h1 = cu_dnn._plan_for(_DeviceXp(), x, x, geom, config)
        p2, _, h2 = cu_dnn._plan_for(_DeviceXp(), x, x, geom, config)
        got.append((p1, h1, p1 is p2 and h1 is h2))
    plan()
    t = threading.Thread(target=plan)
    t.start(), t.join(5)
    (pa, ha, same_a), (pb, hb, same_b) = got
    assert same_a and same_b                                # one thread reuses its plan
    assert pa is not pb and ha is not hb and pa.handle is ha and pb.handle is hb  # never another thread's


# --- item 8: NVML sampling survives a failing query; the device is found by PCI bus id ---------
def test_nvml_sampler_keeps_sampling_past_a_failing_query_and_finds_the_device_by_bus_id():
    import types
    from ortgpu.profiling.telemetry import NvmlSampler

    class Nvml:
        NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
        by = []
        def nvmlDeviceGetHandleByPciBusId(self, bus): self.by.append(("bus", bus)); return "h"
        def nvmlDeviceGetHandleByIndex(self, i): self.by.append(("index", i)); return "h"
        def nvmlDeviceGetName(self, h): return b"GPU"
        def nvmlSystemGetDriverVersion(self): return "1"
        def nvmlDeviceGetUtilizationRates(self, h): return types.SimpleNamespace(gpu=7, memory=3)
        def nvmlDeviceGetMemoryInfo(self, h): return types.SimpleNamespace(used=1 << 20, total=2 << 20)
        def nvmlDeviceGetPowerUsage(self, h): raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        def nvmlDeviceGetClockInfo(self, h, w): return 1000
        def nvmlDeviceGetTemperature(self, h, w): return 50
        def nvmlShutdown(self): pass
    nv = Nvml()
    s = NvmlSampler(nv, 1, interval_s=0.001, pci_bus_id="0000:3B:00.0")
    assert nv.by == [("bus", "0000:3B:00.0")]   # not NVML's index 1, which CUDA_VISIBLE_DEVICES may remap
    s.start()
    import time
    deadline = time.time() + 5
    while len(s.samples) < 3 and time.time() < deadline:
        time.sleep(0.005)
    samples = s.stop()
    assert len(samples) >= 3 and "power_w" not in samples[-1][1] and samples[-1][1]["gpu_util_pct"] == 7
    NvmlSampler(nv, 2)
    assert nv.by[-1] == ("index", 2)            # no bus id known: the index


def test_roi_align_defers_its_batch_index_check_to_the_run(emulated_cuda):
    from ortgpu.providers import registry
    from ortgpu.providers.registry import KernelContext
    cp = emulated_cuda.cupy
    ep = _FlagsEp()
    fn = registry.lookup("RoiAlign", "", 16, ("cuda",)).fn
    ctx = KernelContext(cp, "CUDAExecutionProvider", "roi", "RoiAlign", 16, ep=ep)
    x = cp.asarray(np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4))
    rois = cp.asarray(np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32))
    fn(ctx, x, rois, cp.asarray(np.array([1, 0], np.int64)))
    ep.error_flags.check_pending(cp)                       # in range
    fn(ctx, x, rois, cp.asarray(np.array([0, 2], np.int64)))  # no raise at launch
    with pytest.raises(IndexError, match=r"RoiAlign: a batch index is outside \[0, 2\) \(node 'roi'\)"):
        ep.error_flags.check_pending(cp)


# --- item 2/9 (shared index kernels): the range check is a device flag, read when the run ends --
@pytest.mark.parametrize("op,opset,make_args,attrs", [
    ("Gather", 13, lambda d, i: (d, i), {"axis": 1}),
    ("GatherElements", 13, lambda d, i: (d, i), {"axis": 1}),
    ("ScatterElements", 18, lambda d, i: (d, i, d[:, :2] * 0 + 1), {"axis": 1, "reduction": "add"}),
    ("GatherND", 13, lambda d, i: (d, i[:, :1].reshape(3, 1)), {}),
])
def test_shared_index_kernels_defer_their_range_check_on_the_device(op, opset, make_args, attrs):
    """On a provider with error flags, the shared index kernels read nothing on the host (they
    run inside a capture window of the double, where a host read raises) and the run's one
    flag check raises the shared kernels' IndexError, naming the node; in-range negative
    indices give the CPU result."""
    from support.device_double import capturing
    from ortgpu.providers import registry
    from ortgpu.providers.registry import KernelContext
    fn = registry.lookup(op, "", opset, (registry.SHARED,)).fn
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    ok = np.array([[-1, 0], [2, -4], [1, 1]], np.int64)
    bad = ok.copy()
    bad[1, 0] = 5 if op != "GatherND" else -4
    bad[0, 0] = 4 if op != "GatherND" else 3
    data = fake_xp.asarray(host)
    ep = _FlagsEp()
    ctx = KernelContext(fake_xp, "FakeDeviceExecutionProvider", "n1", op, opset, ep=ep)
    ok_args, bad_args = make_args(data, fake_xp.asarray(ok)), make_args(data, fake_xp.asarray(bad))
    with capturing():
        got = fn(ctx, *ok_args, **attrs)
        fn(ctx, *bad_args, **attrs)     # no raise, no host read
    want = fn(KernelContext(np, "CPUExecutionProvider", "n1", op, opset), *make_args(host, ok), **attrs)
    np.testing.assert_array_equal(got.get(), want)
    assert len(ep.error_flags._pending()) >= 2
    with pytest.raises(IndexError, match=r"index (4|3) is out of bounds for a dimension of size (4|3) \(node 'n1'\)"):
        ep.error_flags.check_pending(fake_xp)
    with pytest.raises(IndexError):   # the host path raises at once, as before
        fn(KernelContext(np, "CPUExecutionProvider", "n1", op, opset), *make_args(host, bad), **attrs)
