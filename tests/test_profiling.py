"""Profiling: the trace has onnxruntime's format (compared with a real onnxruntime profile),
is valid and consistent, summaries equal the trace's numbers, the CLI writes its reports."""
from __future__ import annotations

import gc
import glob
import json
import os
import time
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortgpu
from ortgpu.profiling import format_table, summarize
from ortgpu.profiling.cost import flops
from ortgpu.profiling.summary import _self_times, kind_label

# Node args onnxruntime adds from its own arena and thread pool (absent in older releases);
# ortgpu has neither, so it writes the other args only.
ORT_INTERNAL_ARGS = {"thread_scheduling_stats", "mem_in_use_peak", "mem_arena_held", "mem_bytes_in_use",
                     "mem_requested_in_use_delta", "mem_arena_held_delta", "mem_in_use_delta",
                     "mem_bytes_requested_in_use"}
NODE_ARGS = {"op_name", "provider", "node_index", "input_type_shape", "output_type_shape",
             "activation_size", "parameter_size", "output_size"}


def _if_model() -> onnx.ModelProto:
    """Add (initializer), an unnamed Mul, ReduceSum, Greater, If with a named node per branch."""
    then_g = h.make_graph([h.make_node("Relu", ["a"], ["t"], name="then_relu")], "then", [],
                          [h.make_tensor_value_info("t", T.FLOAT, [2, 3])])
    else_g = h.make_graph([h.make_node("Neg", ["a"], ["e"], name="else_neg")], "else", [],
                          [h.make_tensor_value_info("e", T.FLOAT, [2, 3])])
    nodes = [h.make_node("Add", ["x", "b"], ["m"], name="add"),
             h.make_node("Mul", ["m", "m"], ["a"]),
             h.make_node("ReduceSum", ["a"], ["s"], name="rs", keepdims=0),
             h.make_node("Greater", ["s", "z"], ["c"], name="gt"),
             h.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 3])],
                     [h.make_tensor("b", T.FLOAT, [3], [1, 2, 3]), h.make_tensor("z", T.FLOAT, [], [0.0])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def _loop_model(trips: int = 3) -> onnx.ModelProto:
    body = h.make_graph([h.make_node("Add", ["v", "one"], ["v2"], name="body_add"),
                         h.make_node("Identity", ["c"], ["c2"], name="body_cond")], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
                         h.make_tensor_value_info("v", T.FLOAT, [2])],
                        [h.make_tensor_value_info("c2", T.BOOL, []), h.make_tensor_value_info("v2", T.FLOAT, [2])])
    g = h.make_graph([h.make_node("Loop", ["n", "", "x"], ["y"], name="loop", body=body)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])],
                     [h.make_tensor("n", T.INT64, [], [trips]), h.make_tensor("one", T.FLOAT, [], [1.0])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def _profile(model, tmp_path, runs=2, feed=None, providers=None, level=0, prefix="ortgpu"):
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / prefix)
    so.graph_optimization_level = level
    sess = ortgpu.InferenceSession(model, so, providers=providers)
    feed = feed if feed is not None else {"x": np.ones((2, 3), np.float32)}
    outs = [sess.run(None, feed) for _ in range(runs)]
    return sess, sess.end_profiling(), outs


def _onnxruntime_profile(model, tmp_path, runs=2):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "onnxruntime")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, {"x": np.ones((2, 3), np.float32)})
    return sess.end_profiling()


def _load(path):
    with open(path) as f:
        return json.load(f)


# --- format: the same as onnxruntime's -----------------------------------------------------------
def test_trace_has_onnxruntime_structure(tmp_path):
    model = _if_model()
    theirs_path = _onnxruntime_profile(model, tmp_path)
    _, ours_path, _ = _profile(model.SerializeToString(), tmp_path)
    theirs, ours = _load(theirs_path), _load(ours_path)

    for path in (theirs_path, ours_path):  # the layout: "[", one event per line, "]"
        lines = open(path).read().splitlines()
        assert lines[0] == "[" and lines[-1] == "]"
        assert all(line.startswith('{"cat" : ') for line in lines[1:-1])
    ours_head = [list(e)[:7] for e in ours]  # key order as onnxruntime writes it
    assert ours_head == [list(e)[:7] for e in theirs[:1]] * len(ours)
    assert {k for e in ours for k in e} == {k for e in theirs for k in e}
    assert {e["cat"] for e in ours} == {e["cat"] for e in theirs} == {"Session", "Node"}
    assert sorted(e["name"] for e in ours if e["cat"] == "Session") == \
        sorted(e["name"] for e in theirs if e["cat"] == "Session")
    assert {"model_loading_array", "session_initialization", "model_run"} <= {e["name"] for e in ours}

    def nodes(events):
        return {e["name"]: e["args"] for e in events if e["cat"] == "Node"}
    ours_nodes, theirs_nodes = nodes(ours), nodes(theirs)
    assert set(ours_nodes) == set(theirs_nodes) == {
        "add_kernel_time", "Mul_1_kernel_time", "rs_kernel_time", "gt_kernel_time", "if_kernel_time",
        "then_relu_kernel_time"}
    for name, args in ours_nodes.items():
        assert set(args) == set(theirs_nodes[name]) - ORT_INTERNAL_ARGS == NODE_ARGS, name
        assert args == {k: v for k, v in theirs_nodes[name].items() if k in NODE_ARGS}, name
    assert all(type(e[k]) is int for e in ours for k in ("pid", "tid", "dur", "ts"))


def test_trace_is_valid_and_consistent_with_wall_time(tmp_path):
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "p")
    path = tmp_path / "m.onnx"
    onnx.save(_if_model(), path)
    sess = ortgpu.InferenceSession(str(path), so)
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        sess.run(None, {"x": np.ones((2, 3), np.float32)})
        walls.append((time.perf_counter() - t0) * 1e6)
    events = _load(sess.end_profiling())
    assert all(e["ph"] == "X" and e["ts"] >= 0 and e["dur"] >= 0 for e in events)
    assert events[0]["name"] == "model_loading_uri" and events[1]["name"] == "session_initialization"
    runs = [e for e in events if e["name"] == "model_run"]
    nodes = [e for e in events if e["cat"] == "Node"]
    assert len(runs) == 3 and len(nodes) == 3 * 6
    for run, wall in zip(runs, walls):
        inside = [e for e in nodes if run["ts"] <= e["ts"] and e["ts"] + e["dur"] <= run["ts"] + run["dur"]]
        assert len(inside) == 6  # every node event lies inside its run's event
        top = [e for e in inside if e["name"] != "then_relu_kernel_time"]  # the If's body is inside it
        assert sum(e["dur"] for e in top) <= run["dur"] <= wall + 1


def test_subgraph_nodes_of_every_loop_iteration(tmp_path):
    _, path, outs = _profile(_loop_model(3).SerializeToString(), tmp_path, runs=1,
                             feed={"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(outs[0][0], [3, 3])
    names = [e["name"] for e in _load(path) if e["cat"] == "Node"]
    assert names.count("body_add_kernel_time") == 3 and names.count("loop_kernel_time") == 1
    body = next(e for e in _load(path) if e["name"] == "body_add_kernel_time")["args"]
    assert body["input_type_shape"] == [{"float": [2]}, {"float": []}] and body["activation_size"] == "12"


def test_end_profiling_and_start_time(tmp_path):
    before = time.time_ns()
    sess, path, _ = _profile(_if_model().SerializeToString(), tmp_path, prefix="pre")
    assert os.path.basename(path).startswith("pre_") and path.endswith(".json") and os.path.exists(path)
    assert before <= sess.get_profiling_start_time_ns() <= time.time_ns()
    assert sess.end_profiling() == ""  # ended: nothing more to write
    sess.run(None, {"x": np.ones((2, 3), np.float32)})  # runs on, unprofiled
    plain = ortgpu.InferenceSession(_if_model().SerializeToString())
    assert plain.end_profiling() == "" and plain.get_profiling_start_time_ns() == 0


def test_trace_written_when_session_is_collected(tmp_path):
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "gc")
    sess = ortgpu.InferenceSession(_if_model().SerializeToString(), so)
    sess.run(None, {"x": np.ones((2, 3), np.float32)})
    del sess
    gc.collect()
    (path,) = glob.glob(str(tmp_path / "gc_*.json"))
    assert any(e["name"] == "model_run" for e in _load(path))


def test_profiled_run_gives_the_same_results_and_names_a_failing_node(tmp_path):
    plain = ortgpu.InferenceSession(_if_model().SerializeToString())
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    _, _, outs = _profile(_if_model().SerializeToString(), tmp_path, feed={"x": x}, runs=1)
    np.testing.assert_array_equal(outs[0][0], plain.run(None, {"x": x})[0])
    g = h.make_graph([h.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     [h.make_tensor("s", T.INT64, [1], [7])])
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "bad")
    sess = ortgpu.InferenceSession(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString(), so)
    with pytest.raises(ortgpu.RuntimeException, match="Name:'bad_reshape'"):
        sess.run(None, {"x": np.ones((2, 3), np.float32)})
    json.load(open(sess.end_profiling()))  # a failed run still leaves a valid trace


# --- summaries -------------------------------------------------------------------------------
def test_summary_numbers_equal_the_trace(tmp_path):
    _, path, _ = _profile(_loop_model(4).SerializeToString(), tmp_path, runs=3,
                          feed={"x": np.zeros(2, np.float32)})
    events = _load(path)
    s = summarize(path)
    nodes = [e for e in events if e["cat"] == "Node"]
    runs = [e for e in events if e["name"] == "model_run"]
    assert s.runs == 3 and s.run_us == [e["dur"] for e in runs]
    own = _self_times(nodes)
    assert s.node_us == pytest.approx(sum(own))
    # the loop's self time plus its body's events equals the loop events' durations
    loop_dur = sum(e["dur"] for e in nodes if e["name"] == "loop_kernel_time")
    assert s.node_us == pytest.approx(loop_dur)
    for o in s.ops:
        assert o.host_us == pytest.approx(sum(t for e, t in zip(nodes, own) if e["args"]["op_name"] == o.op_type))
    assert {o.op_type: o.calls for o in s.ops} == {"Loop": 3, "Add": 12, "Identity": 12}
    assert sum(o.share for o in s.ops) == pytest.approx(1.0)
    assert s.kinds["cpu"] == pytest.approx(s.node_us) and s.kinds["gpu"] == s.kinds["copy"] == 0
    add = next(r for r in s.nodes if r.op_type == "Add")
    assert add.flops == 12 * 2 and add.bytes == 12 * (8 + 4 + 8)
    warm = summarize(path, skip_runs=1)
    assert warm.runs == 2 and warm.skipped_runs == 1
    assert {o.op_type: o.calls for o in warm.ops} == {"Loop": 2, "Add": 8, "Identity": 8}
    text = format_table(s)
    assert "Loop" in text and "time per op type" in text


def test_summary_reads_an_onnxruntime_trace(tmp_path):
    s = summarize(_onnxruntime_profile(_if_model(), tmp_path))
    assert s.runs == 2 and {o.op_type for o in s.ops} == {"Add", "Mul", "ReduceSum", "Greater", "If", "Relu"}


def test_flop_estimates():
    assert flops("MatMul", [[2, 3, 4], [4, 5]], [[2, 3, 5]]) == 2 * 30 * 4
    assert flops("Gemm", [[4, 8], [8, 16]], [[4, 16]]) == 2 * 64 * 8
    assert flops("Gemm", [[8, 4], [8, 16]], [[4, 16]]) == 2 * 64 * 8  # transA
    assert flops("Conv", [[1, 8, 10, 10], [16, 4, 3, 3]], [[1, 16, 8, 8]]) == 2 * 16 * 64 * 4 * 9
    assert flops("LSTM", [[7, 1, 16], [1, 128, 16], [1, 128, 32]], [[7, 1, 1, 32]]) == 2 * 7 * 128 * (16 + 32)
    assert flops("Relu", [[5]], [[5]]) == 5 and flops("Reshape", [[5], [1]], [[5]]) == 0


# --- devices: copies, device timing hook, telemetry notes ------------------------------------------
class _FakeProbe:
    """Device timing of the double: the host clock, a fixed 5 us per step."""

    stream_id = 7

    def begin(self, name):
        return time.perf_counter_ns()

    def end(self, token):
        return token

    def resolve(self, token):
        return token, 5000


def test_device_steps_copies_and_probe(tmp_path):
    from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider
    dev = FakeDeviceExecutionProvider()
    dev.profiling_probe = _FakeProbe
    _, path, outs = _profile(_if_model().SerializeToString(), tmp_path,
                             providers=[dev, CheckedCPUExecutionProvider()])
    events = _load(path)
    nodes = [e for e in events if e["cat"] == "Node"]
    copies = [e for e in nodes if e["args"]["op_name"].startswith("Memcpy")]
    assert {e["args"]["op_name"] for e in copies} >= {"MemcpyFromHost", "MemcpyToHost"}
    assert all(e["args"]["provider"] == dev.name for e in copies)
    kernels = [e for e in events if e["cat"] == "Kernel"]
    assert len(kernels) == len(nodes) and all(e["dur"] == 5 and e["tid"] == 7 for e in kernels)
    assert {e["args"]["parent_name"] for e in kernels} == {e["name"] for e in nodes}
    s = summarize(path)
    assert s.kinds["copy"] > 0 and s.kinds["gpu"] > 0
    assert s.device_us == 5 * len(nodes)
    assert kind_label(s, "cpu") == "cpu-fallback"  # CPU nodes of a device session are fallbacks
    assert any("not an NVIDIA GPU provider" in n for n in s.notes)
    assert "device time (CUDA events)" in format_table(s)


def test_missing_nvml_is_a_note_not_an_error(monkeypatch):
    from ortgpu.profiling import telemetry

    class FakeCuda:
        name, device, device_id = "CUDAExecutionProvider", "cuda", 0

    def no_nvml():
        raise ImportError("No module named 'pynvml'")
    monkeypatch.setattr(telemetry, "_load_nvml", no_nvml)
    sampler, note = telemetry.open_sampler([FakeCuda()])
    assert sampler is None and "nvidia-ml-py" in note

    class BrokenNvml:
        @staticmethod
        def nvmlInit():
            raise RuntimeError("NVML Shared Library Not Found")
    monkeypatch.setattr(telemetry, "_load_nvml", lambda: BrokenNvml)
    sampler, note = telemetry.open_sampler([FakeCuda()])
    assert sampler is None and "NVML failed" in note
    assert telemetry.open_sampler([ortgpu.providers.cpu.CPUExecutionProvider()]) == (None, None)


class _FakeNvml:
    """Just the NVML calls the sampler makes, with values that change per sample."""
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    calls = 0
    shut = False

    @classmethod
    def nvmlInit(cls): pass

    @classmethod
    def nvmlShutdown(cls): cls.shut = True

    @classmethod
    def nvmlDeviceGetHandleByIndex(cls, i): return ("handle", i)

    @classmethod
    def nvmlDeviceGetName(cls, h): return b"Fake H100"

    @classmethod
    def nvmlSystemGetDriverVersion(cls): return "580.00"

    @classmethod
    def nvmlDeviceGetUtilizationRates(cls, h):
        cls.calls += 1
        return types.SimpleNamespace(gpu=10 * (cls.calls % 2), memory=5)

    @classmethod
    def nvmlDeviceGetMemoryInfo(cls, h):
        return types.SimpleNamespace(used=3 << 30, total=80 << 30)

    @classmethod
    def nvmlDeviceGetPowerUsage(cls, h): return 250_000

    @classmethod
    def nvmlDeviceGetClockInfo(cls, h, which): return 1980 if which == cls.NVML_CLOCK_SM else 2619

    @classmethod
    def nvmlDeviceGetTemperature(cls, h, which): return 40


def test_nvml_samples_become_counter_events_and_summary_lines(monkeypatch, tmp_path):
    from ortgpu.profiling import telemetry
    from ortgpu.profiling import recorder

    class FakeCuda:
        name, device, device_id = "CUDAExecutionProvider", "cuda", 0

    monkeypatch.setattr(telemetry, "_load_nvml", lambda: _FakeNvml)
    monkeypatch.setattr(recorder, "open_sampler",
                        lambda providers: telemetry.open_sampler(providers, interval_s=0.001))
    rec = recorder.Recorder(str(tmp_path / "nvml"))
    rec.attach([FakeCuda()])
    deadline = time.time() + 5
    while len(rec.sampler.samples) < 3 and time.time() < deadline:
        time.sleep(0.01)
    path = rec.finish()
    assert _FakeNvml.shut
    events = _load(path)
    counters = [e for e in events if e["ph"] == "C" and e["cat"] == "Telemetry"]
    assert len(counters) >= 3
    assert set(counters[0]["args"]) == set(telemetry.NvmlSampler.FIELDS)
    assert {e["args"]["gpu_util_pct"] for e in counters} <= {0, 10}
    assert counters[0]["args"]["mem_used_mib"] == 3072 and counters[0]["args"]["power_w"] == 250.0
    s = summarize(path)
    assert s.gpu == {"device": "Fake H100", "device_index": 0, "driver": "580.00", "mem_total_mib": 81920}
    assert s.telemetry["mem_clock_mhz"] == (2619.0, 2619.0)
    mean, mx = s.telemetry["gpu_util_pct"]
    assert 0 <= mean <= 10 and mx in (0.0, 10.0)
    table = format_table(s)
    assert "gpu: device Fake H100, device_index 0, driver 580.00, mem_total_mib 81920" in table
    assert "telemetry sm_clock_mhz: mean 1980.0, max 1980.0" in table


# --- command line -------------------------------------------------------------------------------
def test_cli_profile_writes_trace_and_self_contained_report(tmp_path, capsys):
    from ortgpu.cli import main
    model = tmp_path / "ifm.onnx"
    onnx.save(_if_model(), model)
    assert main(["profile", str(model), "--runs", "2", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "time per op type" in printed and "host time by kind" in printed
    (trace,) = glob.glob(str(tmp_path / "out" / "ifm_profile_*.json"))
    (report,) = glob.glob(str(tmp_path / "out" / "ifm_profile_*.html"))
    assert len([e for e in _load(trace) if e["name"] == "model_run"]) == 3  # warm-up + 2
    page = open(report).read()
    assert "<svg" in page and "<script>" in page and "then_relu" in page
    for external in ("src=", "href=", "http://", "https://", "@import"):
        assert external not in page


# --- GPU (-m gpu): CUDA events and NVML on a real device ---------------------------------------
def _has_cuda() -> bool:
    try:
        return "CUDAExecutionProvider" in ortgpu.get_available_providers()
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="CUDAExecutionProvider is not available")
def test_cuda_profile_has_device_times(tmp_path):  # NOT YET RUN ON A GPU
    _, path, _ = _profile(_if_model().SerializeToString(), tmp_path,
                          providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    events = _load(path)
    nodes = [e for e in events if e["cat"] == "Node"]
    kernels = [e for e in events if e["cat"] == "Kernel"]
    on_gpu = [e for e in nodes if e["args"]["provider"] == "CUDAExecutionProvider"]
    assert on_gpu and {e["args"]["parent_name"] for e in kernels} >= {e["name"] for e in on_gpu}
    assert any(e["args"]["op_name"] == "MemcpyFromHost" for e in nodes)
    s = summarize(path)
    assert s.device_us is not None and s.kinds["gpu"] > 0 and s.kinds["copy"] > 0
    # telemetry: samples where nvidia-ml-py is installed, else a note saying so
    assert s.telemetry or any("telemetry" in n for n in s.notes)
