"""Devices, memory descriptions, allocator registration, OrtValueVector, copy_tensors,
SparseTensor, EP devices, and the parts of onnxruntime's API ortgpu refuses, against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime
import onnxruntime.capi.onnxruntime_pybind11_state as ort_state
import pytest

import ortgpu
import ortgpu.capi.onnxruntime_pybind11_state as ortgpu_state
from support.device_double import FAKE_KIND  # noqa: F401  (registers the "fakedev" device kind)
from ortgpu import allocators
from ortgpu.devices import CapsuleProducer
from ortgpu.errors import NotImplemented as OrtNotImplemented


def _device_fields(d):
    return d.device_type(), d.device_id(), d.device_mem_type(), d.device_vendor_id()


@pytest.mark.parametrize("name, device_id", [("cpu", 0), ("cuda", 0), ("cuda", 1), ("gpu", 0), ("npu", 0),
                                             ("dml", 0), ("cann", 0), ("webgpu", 0)])
def test_ortdevice_make_like_onnxruntime(name, device_id):
    assert _device_fields(ortgpu.OrtDevice.make(name, device_id)) == _device_fields(
        onnxruntime.OrtDevice.make(name, device_id))


def test_ortdevice_c_level_like_onnxruntime():
    for fn in ("cpu", "gpu", "cuda", "npu", "fpga", "dml", "cann", "webgpu", "default_memory"):
        assert getattr(ortgpu_state.OrtDevice, fn)() == getattr(ort_state.OrtDevice, fn)(), fn
    for args in [(1, 0, 0x10DE, 2), (0, 0, 0)]:
        ref, got = ort_state.OrtDevice(*args), ortgpu_state.OrtDevice(*args)
        assert (got.device_type(), got.mem_type(), got.vendor_id(), got.device_id()) == (
            ref.device_type(), ref.mem_type(), ref.vendor_id(), ref.device_id())
    with pytest.raises(Exception, match="Unsupported device type: foo"):
        onnxruntime.OrtDevice.make("foo", 0)
    with pytest.raises(Exception, match="Unsupported device type: foo"):
        ortgpu.OrtDevice.make("foo", 0)


@pytest.mark.parametrize("name, mem", [("Cpu", "DEFAULT"), ("Cuda", "DEFAULT"), ("Cpu", "CPU_OUTPUT")])
def test_memory_info_like_onnxruntime(name, mem):
    def fields(mod):
        mi = mod.OrtMemoryInfo(name, mod.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, getattr(mod.OrtMemType, mem))
        return (mi.name, mi.device_id, int(mi.mem_type), int(mi.allocator_type), int(mi.device_mem_type))
    assert fields(ortgpu) == fields(onnxruntime)


def test_memory_info_places_values():
    mi = ortgpu.OrtMemoryInfo("Cpu", ortgpu.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 0, ortgpu.OrtMemType.DEFAULT)
    v = ortgpu.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, memory_info=mi)
    assert v.device_name() == "cpu" and v.shape() == [2, 3]


@pytest.mark.parametrize("args", [(0, -1, -1, -1), (1 << 20, 1, 4096, 128), ({"max_mem": 16, "arena_extend_strategy": 1},),
                                  ({"initial_growth_chunk_size_bytes": 8, "max_power_of_two_extend_bytes": 64},)])
def test_arena_cfg_like_onnxruntime(args):
    keys = ("max_mem", "arena_extend_strategy", "initial_chunk_size_bytes", "max_dead_bytes_per_chunk",
            "initial_growth_chunk_size_bytes", "max_power_of_two_extend_bytes")
    ref, got = onnxruntime.OrtArenaCfg(*args), ortgpu.OrtArenaCfg(*args)
    assert [getattr(got, k) for k in keys] == [getattr(ref, k) for k in keys]


def test_arena_cfg_bad_key_like_onnxruntime():
    with pytest.raises(RuntimeError, match="Invalid OrtArenaCfg option: foo"):
        onnxruntime.OrtArenaCfg({"foo": 1})
    with pytest.raises(RuntimeError, match="Invalid OrtArenaCfg option: foo"):
        ortgpu.OrtArenaCfg({"foo": 1})


def test_allocator_registration_like_onnxruntime():
    allocators._clear_for_tests()
    try:
        for mod in (onnxruntime, ortgpu):
            cpu = mod.OrtMemoryInfo("Cpu", mod.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, mod.OrtMemType.DEFAULT)
            assert mod.create_and_register_allocator(cpu, mod.OrtArenaCfg(0, -1, -1, -1)) is None
            assert mod.create_and_register_allocator(cpu, mod.OrtArenaCfg(0, -1, -1, -1)) is None  # again: accepted
            cuda = mod.OrtMemoryInfo("Cuda", mod.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, mod.OrtMemType.DEFAULT)
            with pytest.raises(RuntimeError, match="Only CPU devices are supported"):
                mod.create_and_register_allocator(cuda, mod.OrtArenaCfg(0, -1, -1, -1))
        cuda = ortgpu.OrtMemoryInfo("Cuda", ortgpu.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ortgpu.OrtMemType.DEFAULT)
        ortgpu.create_and_register_allocator_v2("CUDAExecutionProvider", cuda, {}, ortgpu.OrtArenaCfg(1 << 30, 1, -1, -1))
        assert allocators.arena_options(0) == {"gpu_mem_limit": str(1 << 30), "arena_extend_strategy": "kSameAsRequested"}
        assert allocators.arena_options(1) == {}
        assert set(allocators.registered()) == {("cpu", 0), ("cuda", 0)}
        with pytest.raises(RuntimeError, match="not one ortgpu runs"):
            ortgpu.create_and_register_allocator_v2("DmlExecutionProvider", cuda, {}, ortgpu.OrtArenaCfg(0, -1, -1, -1))
    finally:
        allocators._clear_for_tests()


def test_ortvalue_vector_like_onnxruntime():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2], np.int64)
    ref = ort_state.OrtValueVector()
    got = ortgpu_state.OrtValueVector()
    for arr in (a, b):
        ref.push_back(onnxruntime.OrtValue.ortvalue_from_numpy(arr)._ortvalue)
        got.push_back(ortgpu.OrtValue.ortvalue_from_numpy(arr))
    assert len(got) == len(ref) == 2
    assert [got.element_type_at(i) for i in range(2)] == [ref.element_type_at(i) for i in range(2)]
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g.numpy(), r.numpy())
    with pytest.raises(IndexError):
        ref[2]
    with pytest.raises(IndexError):
        got[2]
    got.push_back(np.arange(3, dtype=np.uint8), True)  # a DLPack producer, read as bool
    assert got[2].data_type() == "tensor(bool)"
    arrays = got.to_dlpacks(lambda capsule: np.from_dlpack(CapsuleProducer(capsule)))  # capsules, as torch takes them
    assert [t.shape for t in arrays[:2]] == [(2, 3), (2,)]


def test_copy_tensors_between_devices():
    src = ortgpu.OrtValue.ortvalue_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    on_dev = ortgpu.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, "fakedev")
    back = ortgpu.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32, "cpu")
    dev_ptr, back_ptr = on_dev.data_ptr(), back.data_ptr()
    ortgpu.copy_tensors([src], [on_dev])
    ortgpu.copy_tensors([on_dev], [back])
    np.testing.assert_array_equal(back.numpy(), src.numpy())
    assert (on_dev.data_ptr(), back.data_ptr()) == (dev_ptr, back_ptr)  # copied into, not replaced
    with pytest.raises(RuntimeError, match="same length"):
        ortgpu.copy_tensors([src], [])
    with pytest.raises(RuntimeError, match="element type and element count must match"):
        ortgpu.copy_tensors([src], [ortgpu.OrtValue.ortvalue_from_numpy(np.zeros(6, np.int32))])


def _sparse_pair(mod, fmt):
    cpu = mod.OrtDevice.make("cpu", 0)
    values = np.array([1.0, 2.0, 3.0], np.float32)
    if fmt == "coo":
        return mod.SparseTensor.sparse_coo_from_numpy([3, 3], values, np.array([1, 5, 7], np.int64), cpu)
    return mod.SparseTensor.sparse_csr_from_numpy([2, 3], values, np.array([0, 2, 1], np.int64),
                                                  np.array([0, 2, 3], np.int64), cpu)


@pytest.mark.parametrize("fmt", ["coo", "csr"])
def test_sparse_tensor_like_onnxruntime(fmt):
    ref, got = _sparse_pair(onnxruntime, fmt), _sparse_pair(ortgpu, fmt)
    assert int(got.format()) == int(ref.format())
    np.testing.assert_array_equal(got.dense_shape(), ref.dense_shape())
    assert got.data_type() == ref.data_type() == "sparse_tensor(float)"
    assert got.device_name() == ref.device_name() == "cpu"
    np.testing.assert_array_equal(got.values(), ref.values())
    if fmt == "coo":
        np.testing.assert_array_equal(got.as_coo_view().indices(), ref.as_coo_view().indices())
        wrong = "as_csrc_view"
    else:
        np.testing.assert_array_equal(got.as_csrc_view().inner(), ref.as_csrc_view().inner())
        np.testing.assert_array_equal(got.as_csrc_view().outer(), ref.as_csrc_view().outer())
        wrong = "as_coo_view"
    with pytest.raises(RuntimeError, match="does not contain"):
        getattr(ref, wrong)()
    with pytest.raises(RuntimeError, match="does not contain"):
        getattr(got, wrong)()
    rv, gv = onnxruntime.OrtValue.ort_value_from_sparse_tensor(ref), ortgpu.OrtValue.ort_value_from_sparse_tensor(got)
    assert (gv.is_sparse_tensor(), gv.is_tensor(), gv.data_type(), gv.shape()) == (
        rv.is_sparse_tensor(), rv.is_tensor(), rv.data_type(), list(rv.shape()))
    np.testing.assert_array_equal(gv.as_sparse_tensor().values(), rv.as_sparse_tensor().values())


def test_sparse_tensor_checks_and_dense_form():
    cpu = ortgpu.OrtDevice.make("cpu", 0)
    with pytest.raises(RuntimeError, match="Index size"):
        ortgpu.SparseTensor.sparse_coo_from_numpy([3, 3], np.ones(3, np.float32), np.array([1, 5], np.int64), cpu)
    with pytest.raises(RuntimeError, match="Index size"):
        onnxruntime.SparseTensor.sparse_coo_from_numpy([3, 3], np.ones(3, np.float32), np.array([1, 5], np.int64),
                                                       onnxruntime.OrtDevice.make("cpu", 0))
    dense = _sparse_pair(ortgpu, "csr").to_dense()
    np.testing.assert_array_equal(dense, [[1, 0, 2], [0, 3, 0]])
    np.testing.assert_array_equal(_sparse_pair(ortgpu, "coo").to_dense().ravel()[[1, 5, 7]], [1, 2, 3])


def test_ep_devices_like_onnxruntime():
    ref, got = onnxruntime.get_ep_devices(), ortgpu.get_ep_devices()
    assert ref[0].ep_name == got[0].ep_name == "CPUExecutionProvider"
    assert int(got[0].device.type) == int(ref[0].device.type) == 0
    assert got[0].memory_info(ortgpu.OrtDeviceMemoryType.DEFAULT) is None
    assert ref[0].memory_info(onnxruntime.OrtDeviceMemoryType.DEFAULT) is None
    names = {e.ep_name for e in got}
    assert names <= set(ortgpu.get_available_providers())
    details = ortgpu_state.get_hardware_device_ep_incompatibility_details("CPUExecutionProvider", got[0].device)
    assert details == ort_state.get_hardware_device_ep_incompatibility_details("CPUExecutionProvider", ref[0].device)


def test_small_module_functions_like_onnxruntime():
    for mod in (onnxruntime, ortgpu):
        assert mod.disable_telemetry_events() is None and mod.enable_telemetry_events() is None
        assert mod.has_collective_ops() is False
        assert mod.preload_dlls() is None
    # (onnxruntime's set_global_thread_pool_sizes is not called here: it switches the whole process to
    # a global pool, after which onnxruntime refuses sessions with use_per_session_threads=True)
    assert ortgpu.set_global_thread_pool_sizes(2, 1) is None
    with pytest.raises(RuntimeError, match=">= 0"):
        ortgpu.set_global_thread_pool_sizes(-1, 0)
    assert int(ortgpu_state.get_model_compatibility_for_ep_devices(ortgpu.get_ep_devices(), "x")) == int(
        ort_state.get_model_compatibility_for_ep_devices(onnxruntime.get_ep_devices(), "x"))


@pytest.mark.parametrize("call", [
    lambda: ortgpu.ModelCompiler(ortgpu.SessionOptions(), "m.onnx"),
    lambda: ortgpu.LoraAdapter(),
    lambda: ortgpu.AdapterFormat.read_adapter("a.onnx_adapter"),
    lambda: ortgpu.ModelPackage(),
    lambda: ortgpu.ModelPackageOptions(),
    lambda: ortgpu.ModelPackageContext(),
    lambda: ortgpu.register_execution_provider_library("ep", "libep.so"),
    lambda: ortgpu_state.get_registered_ep_kernel_defs("ep"),
    lambda: ortgpu_state.quantize_matmul_4bits(),
    lambda: ortgpu_state.pack_fp4_weights_for_cuda_moe_gemm(),
], ids=["ModelCompiler", "LoraAdapter", "AdapterFormat", "ModelPackage", "ModelPackageOptions",
        "ModelPackageContext", "register_ep_library", "ep_kernel_defs", "quantize_matmul_4bits", "pack_fp4"])
def test_what_cannot_apply_is_refused_with_a_reason(call):
    with pytest.raises(OrtNotImplemented, match="NOT_IMPLEMENTED : .{40,}"):
        call()


def test_unregistering_an_unknown_library_fails_like_onnxruntime():
    with pytest.raises(ort_state.Fail, match="was not registered"):
        onnxruntime.unregister_execution_provider_library("nope")
    with pytest.raises(ortgpu_state.Fail, match="was not registered"):
        ortgpu.unregister_execution_provider_library("nope")


def test_registered_cuda_allocator_maps_to_the_cuda_arena_options():
    from ortgpu.providers.cuda.options import parse_cuda_options
    from ortgpu.providers_select import apply_env_allocators
    allocators._clear_for_tests()
    try:
        cuda = ortgpu.OrtMemoryInfo("Cuda", ortgpu.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ortgpu.OrtMemType.DEFAULT)
        ortgpu.create_and_register_allocator_v2("CUDAExecutionProvider", cuda, {}, ortgpu.OrtArenaCfg(1 << 28, 1, -1, -1))
        pairs = [("CUDAExecutionProvider", {}), ("CUDAExecutionProvider", {"device_id": "1"}),
                 ("CPUExecutionProvider", {})]
        so = ortgpu.SessionOptions()
        assert apply_env_allocators(pairs, so) == pairs  # only with session.use_env_allocators=1
        so.add_session_config_entry("session.use_env_allocators", "1")
        got = apply_env_allocators(pairs + [("CUDAExecutionProvider", {"gpu_mem_limit": "5"})], so)
        assert got[0] == ("CUDAExecutionProvider", {"gpu_mem_limit": str(1 << 28),
                                                    "arena_extend_strategy": "kSameAsRequested"})
        assert got[1] == pairs[1] and got[2] == pairs[2]  # no allocator for device 1; the CPU has no arena
        assert got[3][1]["gpu_mem_limit"] == "5"  # the caller's own option wins
        config = parse_cuda_options(got[0][1], None)  # options the CUDA provider accepts
        assert config.gpu_mem_limit == 1 << 28 and config.arena_extend_strategy == "kSameAsRequested"
    finally:
        allocators._clear_for_tests()
