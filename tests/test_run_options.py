"""RunOptions config entries (issue 18 item 1): the keys onnxruntime 1.32 honours, each checked
for its effect in ortgpu, and onnxruntime's acceptance and refusals as the oracle."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.errors import InvalidArgument
from ortgpu.memory import DeviceMemory, HostBackend
from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider

SHRINK = "memory.enable_memory_arena_shrinkage"


def _relu() -> bytes:
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


X = np.array([-1, 2], np.float32)


def _outcome(mod, session, key, value):
    """'ok', or (exception class name, message after onnxruntime's status prefix)."""
    ro = mod.RunOptions()
    try:
        ro.add_run_config_entry(key, value)
        session.run(None, {"x": X}, ro)
        return "ok"
    except Exception as e:  # noqa: BLE001 - the class and text are compared
        return type(e).__name__, str(e).split(" : ")[-1]


@pytest.mark.parametrize("cpu_arena", [True, False])
@pytest.mark.parametrize("value", ["", "cpu:0", "cpu", "cpu:", "cpu:00", "cpu:0;", "cpu:0;cpu:0", "cpu:0:1",
                                   "gpu:0", "cpu:1", "cpu:-1", "bogus", "CPU:0", ":0", ";", "cpu:abc",
                                   "gpu:x", "cpu: 0", "cpu:0 ", "cpu:0;bogus", "cpu:0;;cpu:0"])
def test_arena_shrinkage_list_is_accepted_and_refused_as_onnxruntime_does(value, cpu_arena):
    """On a CPU-only session: "cpu:0" names the CPU arena, there only while
    enable_cpu_mem_arena is on (ortgpu has none to shrink: NumPy frees memory itself), and
    no "gpu" arena exists."""
    outcomes = []
    for mod in (ort, ortgpu):
        so = mod.SessionOptions()
        so.enable_cpu_mem_arena = cpu_arena
        s = mod.InferenceSession(_relu(), so, providers=["CPUExecutionProvider"])
        outcomes.append(_outcome(mod, s, SHRINK, value))
    assert outcomes[1] == outcomes[0]


class ArenaDevice(FakeDeviceExecutionProvider):
    """The device double with an arena of its own (on a host backend) and counted stream
    synchronizations, as a CUDA provider has."""

    def __init__(self):
        super().__init__()
        self.memory = DeviceMemory(HostBackend(), name="double arena", initial_region=1 << 16)
        self.syncs = 0

    def synchronize(self):
        self.syncs += 1


def _device_session():
    dev = ArenaDevice()
    return dev, ortgpu.InferenceSession(_relu(), providers=[dev, CheckedCPUExecutionProvider()])


def _idle_region(dev: ArenaDevice) -> int:
    """Leave one entirely free region in the arena (a block taken and given back)."""
    dev.memory.arena.release(dev.memory.arena.allocate(1 << 20))
    return dev.memory.stats()["bytes_reserved"]


@pytest.mark.parametrize("value", ["gpu:0", "cpu:0;gpu:0", "gpu"])
def test_arena_shrinkage_returns_the_free_regions_of_the_device_arena_after_the_run(value):
    dev, s = _device_session()
    reserved = _idle_region(dev)
    assert reserved >= 1 << 20
    s.run(None, {"x": X})                                   # no entry: the region stays
    assert dev.memory.stats()["bytes_reserved"] == reserved
    ro = ortgpu.RunOptions()
    ro.add_run_config_entry(SHRINK, value)
    np.testing.assert_array_equal(s.run(None, {"x": X}, ro)[0], np.maximum(X, 0))
    st = dev.memory.stats()
    assert st["num_shrinks"] >= 1 and st["bytes_reserved"] == 0


def test_arena_shrinkage_of_another_device_id_is_refused_before_the_run():
    dev, s = _device_session()
    reserved = _idle_region(dev)
    ro = ortgpu.RunOptions()
    ro.add_run_config_entry(SHRINK, "gpu:1")
    with pytest.raises(InvalidArgument, match="memory arena shrink list: gpu:1"):
        s.run(None, {"x": X}, ro)
    assert dev.memory.stats()["bytes_reserved"] == reserved


@pytest.mark.parametrize("value, syncs", [(None, 1), ("0", 1), ("x", 1), ("1", 0)])
def test_disable_synchronize_execution_providers_skips_the_sync_after_a_device_run(value, syncs):
    """Only the value "1" disables it (onnxruntime compares with "1" too)."""
    dev, s = _device_session()
    ro = ortgpu.RunOptions()
    if value is not None:
        ro.add_run_config_entry("disable_synchronize_execution_providers", value)
    x = ortgpu.OrtValue.ortvalue_from_numpy(X, "fakedev")
    y = s.run_with_ort_values(None, {"x": x}, ro)[0]
    np.testing.assert_array_equal(y.numpy(), np.maximum(X, 0))
    assert dev.syncs == syncs


@pytest.mark.parametrize("value", ["0", "5", "-1", "007", "-0", "2147483647", "-2147483648", "2147483648",
                                   "-2147483649", "99999999999999999999", "abc", "1.5", "+1", " 1", "-"])
def test_gpu_graph_id_is_parsed_as_onnxruntime_parses_it(value):
    """A 32-bit decimal integer; anything else is InvalidArgument before the run, on any
    session (the id selects a captured CUDA graph: tests/test_cuda_graphs.py)."""
    outcomes = [_outcome(mod, mod.InferenceSession(_relu(), providers=["CPUExecutionProvider"]), "gpu_graph_id", value)
                for mod in (ort, ortgpu)]
    assert outcomes[1] == outcomes[0]


@pytest.mark.parametrize("key, value", [("qnn.htp_perf_mode", "burst"), ("qnn.htp_perf_mode_post_run", "default"),
                                        ("qnn.rpc_control_latency", "100"), ("qnn.lora_config", "/nonexistent"),
                                        ("external_device_graph_capture", "1"), ("totally.unknown", "x"),
                                        ("k" * 1024, "v" * 5000), ("k", "")])
def test_keys_that_do_not_apply_are_accepted_silently(key, value):
    outcomes = []
    for mod in (ort, ortgpu):
        s = mod.InferenceSession(_relu(), providers=["CPUExecutionProvider"])
        outcomes.append(_outcome(mod, s, key, value))
        ro = mod.RunOptions()
        ro.add_run_config_entry(key, value)
        assert ro.get_run_config_entry(key) == value
    assert outcomes == ["ok", "ok"]


@pytest.mark.parametrize("key", ["", "k" * 1025])
def test_an_empty_or_too_long_key_is_refused_when_added(key):
    for mod in (ort, ortgpu):
        with pytest.raises(RuntimeError, match="Config key is empty or longer than maximum length 1024"):
            mod.RunOptions().add_run_config_entry(key, "x")
        with pytest.raises(RuntimeError, match="Config key is empty or longer than maximum length 1024"):
            mod.SessionOptions().add_session_config_entry(key, "x")
