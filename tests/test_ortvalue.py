"""OrtValue on CPU values against onnxruntime 1.31: factories, queries, update_inplace, DLPack
(NumPy and torch CPU tensors), errors; OrtValues on the device double; run() with OrtValue feeds."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from support import model_builders as mb
import ortgpu
from support.device_double import FAKE_KIND, FakeArray


def _torch():
    return pytest.importorskip("torch")  # not in the test extra: its tests skip without it

ORT, OG = onnxruntime.OrtValue, ortgpu.OrtValue
DTYPES = [np.float32, np.float16, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
          np.uint16, np.uint32, np.uint64, np.bool_]


def _raises_like(call_ort, call_og, builtin):
    """Both raise `builtin` (or a subclass); ortgpu's message starts with onnxruntime's."""
    with pytest.raises(builtin) as theirs:
        call_ort()
    with pytest.raises(builtin) as ours:
        call_og()
    if mb.ORT_IS_ORACLE:
        assert str(ours.value).startswith(str(theirs.value).strip()), (str(ours.value), str(theirs.value))
    return ours.value


# --- factories and queries ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_from_numpy_on_the_cpu_reports_what_onnxruntime_reports_and_shares_memory(dtype):
    a = (np.arange(12) % 3).astype(dtype).reshape(3, 4)
    theirs, ours = ORT.ortvalue_from_numpy(a), OG.ortvalue_from_numpy(a)
    for q in ("device_name", "shape", "data_type", "element_type", "is_tensor", "has_value",
              "is_tensor_sequence", "tensor_size_in_bytes", "data_ptr"):
        assert getattr(ours, q)() == getattr(theirs, q)(), q
    assert ours.data_ptr() == a.ctypes.data
    assert np.shares_memory(ours.numpy(), a)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(np.asarray(ours), a)


def test_a_non_contiguous_array_is_copied_as_onnxruntime_copies_it():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    theirs, ours = ORT.ortvalue_from_numpy(a.T), OG.ortvalue_from_numpy(a.T)
    assert not np.shares_memory(ours.numpy(), a) and not np.shares_memory(theirs.numpy(), a)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours.shape() == theirs.shape() == [3, 2]


def test_big_endian_arrays_are_read_by_value():
    a = np.arange(4, dtype=">f4")
    np.testing.assert_array_equal(OG.ortvalue_from_numpy(a).numpy(), np.arange(4, dtype=np.float32))


@pytest.mark.parametrize("bad", [[1.0, 2.0], np.array(["a", "bc"]), np.array(["a"], dtype=object),
                                 np.float32(3.0)], ids=["list", "unicode", "object", "scalar"])
def test_from_numpy_refuses_what_onnxruntime_refuses(bad):
    _raises_like(lambda: ORT.ortvalue_from_numpy(bad), lambda: OG.ortvalue_from_numpy(bad), RuntimeError)


def test_an_unknown_device_type_is_refused_with_onnxruntime_text():
    a = np.zeros(2, np.float32)
    with pytest.raises(Exception) as theirs:
        ORT.ortvalue_from_numpy(a, "foo")
    with pytest.raises(ValueError) as ours:
        OG.ortvalue_from_numpy(a, "foo")
    assert str(ours.value).startswith(str(theirs.value))
    with pytest.raises(ValueError, match="Unsupported device type: CPU"):
        OG.ortvalue_from_numpy(a, "CPU")  # onnxruntime's names are lower case


@pytest.mark.parametrize("element_type", [np.int64, np.dtype("float16"), "float32", TensorProto.FLOAT,
                                          TensorProto.BFLOAT16, TensorProto.INT8, np.bool_, bool, float, int],
                         ids=str)
def test_shape_and_type_accepts_onnxruntime_element_types(element_type):
    theirs = ORT.ortvalue_from_shape_and_type([2, 3], element_type)
    ours = OG.ortvalue_from_shape_and_type([2, 3], element_type)
    assert ours.data_type() == theirs.data_type()
    assert ours.shape() == theirs.shape() == [2, 3]
    assert ours.element_type() == theirs.element_type()
    assert ours.device_name() == "cpu"


@pytest.mark.parametrize("shape,element_type,builtin", [
    ([2], 99, RuntimeError), ([2], "xx", RuntimeError), ([2], np.str_, RuntimeError),
    ([2], object, RuntimeError), ([2.5], np.float32, TypeError), (2, np.float32, TypeError)],
    ids=["code99", "name", "str", "object", "float_dim", "int_shape"])
def test_shape_and_type_refusals_match_onnxruntime_types(shape, element_type, builtin):
    with pytest.raises(builtin):
        ORT.ortvalue_from_shape_and_type(shape, element_type)
    with pytest.raises(builtin):
        OG.ortvalue_from_shape_and_type(shape, element_type)


def test_a_negative_dimension_is_a_runtime_error_naming_the_shape():
    with pytest.raises(RuntimeError):
        ORT.ortvalue_from_shape_and_type([-1], np.float32)
    with pytest.raises(RuntimeError, match=r"\[-1\]"):
        OG.ortvalue_from_shape_and_type([-1], np.float32)


def test_empty_and_scalar_tensors():
    for a in (np.zeros((0, 3), np.float32), np.array(3.0, np.float32)):
        theirs, ours = ORT.ortvalue_from_numpy(a), OG.ortvalue_from_numpy(a)
        assert ours.shape() == theirs.shape()
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert OG.ortvalue_from_numpy(np.zeros((0, 3), np.float32)).data_ptr() == 0 == \
        ORT.ortvalue_from_numpy(np.zeros((0, 3), np.float32)).data_ptr()


def test_bfloat16_from_uint16_bits_with_an_onnx_type():
    bits = np.array([0x3F80, 0x4000, 0xC040], dtype=np.uint16)  # 1, 2, -3 in bfloat16
    ours = OG.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.BFLOAT16)
    theirs = ORT.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.BFLOAT16)
    assert ours.data_type() == theirs.data_type() == "tensor(bfloat16)"
    np.testing.assert_array_equal(ours.numpy().astype(np.float32), bits.view(ml_dtypes.bfloat16).astype(np.float32))
    assert ours.data_ptr() == bits.ctypes.data  # no copy
    with pytest.raises(RuntimeError, match="element"):
        OG.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.FLOAT)  # 4-byte elements over 2-byte ones


# --- update_inplace -----------------------------------------------------------------------------
def test_update_inplace_writes_into_the_same_memory():
    theirs = ORT.ortvalue_from_shape_and_type([2, 3], np.float32)
    ours = OG.ortvalue_from_shape_and_type([2, 3], np.float32)
    ptr = ours.data_ptr()
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    theirs.update_inplace(data)
    ours.update_inplace(data)
    assert ours.data_ptr() == ptr
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    ours.update_inplace(np.ones((3, 2), np.float32))  # same element count, other shape: accepted, as there
    theirs.update_inplace(np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    src = OG.ortvalue_from_numpy(np.full((2, 3), 7, np.float32))
    ours.update_inplace(src)
    np.testing.assert_array_equal(ours.numpy(), np.full((2, 3), 7, np.float32))


def test_update_inplace_refusals():
    theirs = ORT.ortvalue_from_shape_and_type([2, 3], np.float32)
    ours = OG.ortvalue_from_shape_and_type([2, 3], np.float32)
    small = np.ones((2, 2), np.float32)
    err = _raises_like(lambda: theirs.update_inplace(small), lambda: ours.update_inplace(small), RuntimeError)
    assert "[2, 3]" in str(err) and "4 elements" in str(err)
    _raises_like(lambda: theirs.update_inplace([1, 2, 3]), lambda: ours.update_inplace([1, 2, 3]), TypeError)
    # a deliberate difference: onnxruntime copies the bytes of another element type, ortgpu refuses
    with pytest.raises(RuntimeError, match=r"tensor\(double\).*tensor\(float\)"):
        ours.update_inplace(np.ones((2, 3), np.float64))


# --- DLPack ---------------------------------------------------------------------------------------
def test_dlpack_export_shares_memory_with_numpy_and_torch():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    ours, theirs = OG.ortvalue_from_numpy(a), ORT.ortvalue_from_numpy(a)
    assert ours.__dlpack_device__() == tuple(theirs.__dlpack_device__()) == (1, 0)
    b = np.from_dlpack(ours)
    assert np.shares_memory(a, b)
    t = _torch().from_dlpack(ours)
    assert t.data_ptr() == a.ctypes.data
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("make", [
    lambda: _torch().arange(6, dtype=_torch().float32).reshape(2, 3),
    lambda: _torch().tensor([[True, False, True]]),
    lambda: np.arange(5, dtype=np.int64)], ids=["torch_float", "torch_bool", "numpy"])
def test_from_dlpack_imports_without_a_copy(make):
    src = make()
    ours = OG.from_dlpack(src)
    is_torch = not isinstance(src, np.ndarray)
    host = src.numpy() if is_torch else src
    ptr = src.data_ptr() if is_torch else src.ctypes.data
    assert ours.data_ptr() == ptr and ours.device_name() == "cpu"
    assert ours.numpy().dtype == host.dtype
    np.testing.assert_array_equal(ours.numpy(), host)
    if host.dtype != np.bool_:  # this onnxruntime build refuses DLPack's bool code
        assert ours.data_type() == ORT.from_dlpack(make()).data_type()


def test_from_dlpack_of_a_raw_capsule():
    a = np.arange(3.0)
    assert OG.from_dlpack(a.__dlpack__()).data_ptr() == a.ctypes.data
    again = OG.from_dlpack(OG.ortvalue_from_numpy(a))
    assert again.data_ptr() == a.ctypes.data
    torch = _torch()
    t = torch.arange(4, dtype=torch.float32)
    ours = OG.from_dlpack(torch.utils.dlpack.to_dlpack(t))
    assert ours.data_ptr() == t.data_ptr()
    np.testing.assert_array_equal(ours.numpy(), t.numpy())


def test_from_dlpack_refusals():
    _raises_like(lambda: ORT.from_dlpack(3), lambda: OG.from_dlpack(3), TypeError)
    nc = np.arange(6.0).reshape(2, 3).T
    with pytest.raises(RuntimeError, match="contiguous"):
        ORT.from_dlpack(nc)
    with pytest.raises(RuntimeError, match="contiguous"):
        OG.from_dlpack(nc)


# --- non-tensor values (from runs) ---------------------------------------------------------------
def _seq_model():
    return mb.model([helper.make_node("SequenceConstruct", ["x", "x"], ["sq"]),
                     helper.make_node("Identity", ["x"], ["y"])],
                    [helper.make_tensor_value_info("x", mb.FLOAT, [2])],
                    [helper.make_tensor_sequence_value_info("sq", mb.FLOAT, None),
                     helper.make_tensor_value_info("y", mb.FLOAT, None)])


def test_sequence_values_answer_like_onnxruntime():
    data = _seq_model().SerializeToString()
    x = np.arange(2, dtype=np.float32)
    theirs = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run_with_ort_values(
        None, {"x": ORT.ortvalue_from_numpy(x)})[0]
    ours = ortgpu.InferenceSession(data, providers=["CPUExecutionProvider"]).run_with_ort_values(
        None, {"x": OG.ortvalue_from_numpy(x)})[0]
    for q in ("is_tensor", "is_tensor_sequence", "has_value", "data_type", "element_type"):
        assert getattr(ours, q)() == getattr(theirs, q)(), q
    for q in ("numpy", "shape", "data_ptr", "device_name"):
        with pytest.raises(RuntimeError):
            getattr(theirs, q)()
        with pytest.raises(RuntimeError, match="seq"):
            getattr(ours, q)()


def test_run_takes_ortvalue_feeds_as_onnxruntime_does():
    data = mb.identity(shape=[2, 3]).SerializeToString()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    theirs = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"x": ORT.ortvalue_from_numpy(x)})
    ours = ortgpu.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"x": OG.ortvalue_from_numpy(x)})
    np.testing.assert_array_equal(ours[0], theirs[0])


# --- other devices --------------------------------------------------------------------------------
def test_ortvalues_on_the_device_double():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = OG.ortvalue_from_numpy(a, "fakedev")
    assert isinstance(v._value, FakeArray) and v.device_name() == "fakedev"
    assert v.shape() == [2, 3] and v.data_type() == "tensor(float)"
    assert not np.shares_memory(v._value._a, a)  # a device value is a copy
    ptr = v.data_ptr()
    v.update_inplace(a * 2)
    assert v.data_ptr() == ptr
    downloads = FAKE_KIND.downloads
    np.testing.assert_array_equal(v.numpy(), a * 2)
    assert FAKE_KIND.downloads == downloads + 1  # numpy() of a device value copies to the host
    w = OG.ortvalue_from_shape_and_type([2, 3], np.float32, "fakedev")
    w.update_inplace(v)  # device to device
    np.testing.assert_array_equal(w.numpy(), a * 2)
    with pytest.raises(RuntimeError, match="cannot hold tensor\\(float8e4m3fn\\)"):
        OG.ortvalue_from_shape_and_type([2], TensorProto.FLOAT8E4M3FN, "fakedev")
    # CuPy 14 (and so the double) holds bfloat16
    assert OG.ortvalue_from_shape_and_type([2], TensorProto.BFLOAT16, "fakedev").shape() == [2]


def test_cuda_values_need_cupy():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: the GPU tier tests cuda OrtValues")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="CuPy"):
        OG.ortvalue_from_numpy(np.zeros(2, np.float32), "cuda")


def test_module_exports_match_onnxruntime():
    for name in ("OrtValue", "IOBinding", "SessionIOBinding"):
        assert hasattr(onnxruntime, name) and hasattr(ortgpu, name)
    sess = ortgpu.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
    assert isinstance(sess.io_binding(), ortgpu.IOBinding)
    assert isinstance(sess.io_binding()._iobinding, ortgpu.SessionIOBinding)
    v = sess.create_ortvalue_from_shape_and_type([2], np.int32, "cpu")
    assert v.data_type() == "tensor(int32)"


def test_the_cuda_kind_recognizes_cupy_arrays_without_importing_cupy():
    from ortgpu.devices import device_kind, kind_of
    cuda = device_kind("cuda")
    fake_cupy_array = type("ndarray", (), {"__module__": "cupy._core.core", "__cuda_array_interface__": {}})()
    assert cuda.owns(fake_cupy_array) and kind_of(fake_cupy_array) is cuda
    assert not cuda.owns(np.zeros(2)) and kind_of(np.zeros(2)).name == "cpu"
    assert cuda.holds(np.float16) and cuda.holds(ml_dtypes.bfloat16)        # CuPy 14 holds bfloat16
    assert not cuda.holds(ml_dtypes.float8_e4m3fn)
