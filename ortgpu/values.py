"""OrtValue: a tensor (or a sequence, map or optional) on a device, with onnxruntime's API.

An OrtValue wraps the array of its device kind (ortgpu.devices): a NumPy array on the CPU, a
CuPy array on CUDA.  A CPU OrtValue made from a C-contiguous NumPy array shares its memory
(as in onnxruntime); one on a device holds a copy.  ``from_dlpack`` and ``__dlpack__`` share
memory with torch, CuPy and NumPy without copying.  ``update_inplace`` copies new data into the
same memory, which is what bound inputs of a captured CUDA graph need.

Errors follow onnxruntime's Python layer: the builtin exception it raises (RuntimeError,
TypeError, ValueError) with its message, plus the expected and actual values where it gives
none.  Deliberate differences: ``update_inplace`` refuses data of another element type (onnxruntime
reinterprets the bytes), and bfloat16/float8 tensors (ml_dtypes) are accepted on the CPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ortgpu.devices import CapsuleProducer, DeviceKind, device_kind, kind_for_dlpack, kind_of
from ortgpu.dtypes import np_dtype, onnx_code, tensor_type_str, type_str

_NOT_TENSOR = "Only OrtValues that are Tensors are currently supported"
_FROM_NUMPY_ONLY = "Creation of OrtValues is currently only supported from non-string numpy arrays"


def element_dtype(element_type) -> np.dtype:
    """The NumPy dtype of an ``element_type`` as onnxruntime takes it: a NumPy type or dtype, a
    Python type (float is double), a dtype name, or an int ONNX TensorProto code (the way to ask
    for types NumPy lacks, e.g. ``TensorProto.BFLOAT16``).  Strings are refused."""
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, (bool, np.bool_)):
        try:
            dt = np_dtype(int(element_type))
        except TypeError:
            raise RuntimeError(f"tensor type {int(element_type)} is not supported") from None
    else:
        try:
            dt = np.dtype(element_type)
        except TypeError:
            raise RuntimeError(f"Not a valid numpy type: {element_type!r}") from None
    if dt.kind in "OUS":
        raise RuntimeError(_FROM_NUMPY_ONLY)
    try:
        onnx_code(dt)
    except TypeError:
        raise RuntimeError(f"Numpy_type {dt} can't be converted to MLDataType.") from None
    return dt


def tensor_shape(shape) -> tuple[int, ...]:
    """A shape argument as a tuple of non-negative ints, or TypeError / RuntimeError."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) and not isinstance(shape, np.ndarray):
        raise TypeError(f"shape must be a sequence of ints, not {type(shape).__name__}")
    dims = []
    for d in shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"shape must be a sequence of ints, got {list(shape)!r}")
        if d < 0:
            raise RuntimeError(f"Tensor shape.Size() must be >= 0: shape {list(shape)} has a negative dimension")
        dims.append(int(d))
    return tuple(dims)


def check_device_id(device_id) -> int:
    if isinstance(device_id, (bool, np.bool_)) or not isinstance(device_id, (int, np.integer)):
        raise TypeError(f"device_id must be an int, not {type(device_id).__name__}")
    if device_id < 0:
        raise ValueError(f"device_id must be >= 0, got {device_id}")
    return int(device_id)


def device_of(value) -> tuple[str, int]:
    """(device kind name, device id) where `value` lives: a tensor's device, a sequence's first
    element's, the CPU for empty sequences, maps and None."""
    if isinstance(value, list):
        return device_of(value[0]) if value else ("cpu", 0)
    kind = kind_of(value)
    if kind is None:
        return ("cpu", 0)
    return kind.name, kind.device_id(value)


class OrtValue:
    """A value on a device, as onnxruntime's ``OrtValue``; build it with the factory methods."""

    def __init__(self, ortvalue, numpy_obj=None, session=None, *, type_proto=None):
        """Internal: `ortvalue` is a tensor of a known device kind, a list (a sequence of tensors),
        a dict (a map) or None (an optional without a value); `type_proto` (onnx TypeProto) names
        the type where the data cannot (None, an empty sequence)."""
        if not isinstance(ortvalue, (list, dict)) and ortvalue is not None and kind_of(ortvalue) is None \
                and not getattr(ortvalue, "_is_sparse_tensor", False):
            raise ValueError(f"OrtValue needs a tensor of a known device (NumPy, CuPy), a list, a dict "
                             f"or None, not {type(ortvalue).__name__}; use the factory methods")
        self._value = ortvalue
        self._numpy_obj = numpy_obj  # the source array stays alive while this value shares it
        self._session = session
        self._type_proto = type_proto

    def __repr__(self):
        if self.is_tensor():
            return f"OrtValue({self.data_type()}, shape={self.shape()}, device={self.device_name()})"
        return f"OrtValue({self._describe()})"

    def _describe(self) -> str:
        try:
            return self.data_type()
        except RuntimeError:
            return "empty optional"

    # onnxruntime's Python OrtValue wraps a C-level one (``_ortvalue``, ``_get_c_value()``);
    # ortgpu's is both, so code that reaches for the C-level object gets this one.
    @property
    def _ortvalue(self) -> "OrtValue":
        return self

    def _get_c_value(self) -> "OrtValue":
        return self

    # --- factories ---------------------------------------------------------------------------
    @classmethod
    def ortvalue_from_numpy(cls, numpy_obj, /, device_type="cpu", device_id=0, vendor_id=-1) -> "OrtValue":
        """A tensor from a NumPy array: on the CPU it shares the array's memory when the array is
        C-contiguous in native byte order (a copy otherwise); on a device it is a copy."""
        arr = _numpy_tensor(numpy_obj)
        device_type, device_id = _device_arg(device_type, device_id)
        kind = device_kind(device_type)
        device_id = check_device_id(device_id)
        if kind.name == "cpu":
            if not (arr.flags.c_contiguous and arr.dtype.isnative):
                arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
            return cls(arr, numpy_obj)
        _check_holds(kind, arr.dtype)
        return cls(kind.from_numpy(arr, device_id))

    @classmethod
    def ortvalue_from_numpy_with_onnx_type(cls, data, /, onnx_element_type: int) -> "OrtValue":
        """A CPU tensor over `data`'s memory, its bytes read as ONNX type `onnx_element_type`
        (same element size): how onnxruntime makes bfloat16 tensors from uint16 arrays."""
        arr = np.ascontiguousarray(_numpy_tensor(data))
        dt = element_dtype(int(onnx_element_type))
        if dt.itemsize != arr.dtype.itemsize:
            raise RuntimeError(f"ortvalue_from_numpy_with_onnx_type: {tensor_type_str(onnx_code(dt))} has "
                               f"{dt.itemsize}-byte elements, the array {arr.dtype} {arr.dtype.itemsize}-byte ones")
        return cls(arr.view(dt), data)

    @classmethod
    def ortvalue_from_shape_and_type(cls, shape, element_type, device_type: str = "cpu", device_id: int = 0,
                                     vendor_id=-1, memory_info=None) -> "OrtValue":
        """An uninitialized tensor of `shape` and `element_type` (see element_dtype) on a device."""
        if memory_info is not None:  # onnxruntime: the memory info's device wins over the arguments
            device_type, device_id = memory_info._ort_device(), 0
        device_type, device_id = _device_arg(device_type, device_id)
        dims = tensor_shape(shape)
        dt = element_dtype(element_type)
        kind = device_kind(device_type)
        _check_holds(kind, dt)
        return cls(kind.empty(dims, dt, check_device_id(device_id)))

    # onnxruntime's C-level factories (an OrtDevice or OrtMemoryInfo says where)
    @classmethod
    def ortvalue_from_shape_and_onnx_type(cls, shape, onnx_element_type: int, device) -> "OrtValue":
        return cls.ortvalue_from_shape_and_type(shape, int(onnx_element_type), device)

    @classmethod
    def ortvalue_from_shape_and_type_for_memory_info(cls, shape, element_type, memory_info) -> "OrtValue":
        return cls.ortvalue_from_shape_and_type(shape, element_type, memory_info=memory_info)

    @classmethod
    def ortvalue_from_shape_and_onnx_type_for_memory_info(cls, shape, onnx_element_type: int,
                                                          memory_info) -> "OrtValue":
        return cls.ortvalue_from_shape_and_type(shape, int(onnx_element_type), memory_info=memory_info)

    @classmethod
    def from_dlpack(cls, data, /) -> "OrtValue":
        """An OrtValue sharing the memory of a DLPack producer (torch, CuPy, NumPy, an OrtValue)
        or of a raw DLPack capsule.  Only C-contiguous tensors, as in onnxruntime."""
        if isinstance(data, OrtValue):
            return cls(data._tensor("from_dlpack"), data)
        source_is_bool = getattr(getattr(data, "dtype", None), "name", str(getattr(data, "dtype", ""))) in (
            "bool", "bool_", "torch.bool")
        producer = data if hasattr(data, "__dlpack__") else CapsuleProducer(data)
        code, _ = producer.__dlpack_device__()
        kind = kind_for_dlpack(int(code))
        arr = kind.from_dlpack(producer)
        if source_is_bool and arr.dtype == np.uint8:  # older DLPack producers send bool as uint8
            arr = arr.view(np.bool_)
        if not arr.flags.c_contiguous:
            raise RuntimeError(f"from_dlpack: the tensor is not contiguous (shape {list(arr.shape)}, strides "
                               f"{list(arr.strides)}); only contiguous tensors are supported, as in onnxruntime")
        return cls(arr, data)

    # --- queries -----------------------------------------------------------------------------
    def _tensor(self, what: str = "this operation"):
        if self.is_tensor():
            return self._value
        raise RuntimeError(f"{_NOT_TENSOR} ({what} on an OrtValue holding {self._describe()})")

    def _kind(self) -> DeviceKind:
        return kind_of(self._tensor())

    def data_ptr(self) -> int:
        """Address of the first element (0 for an empty tensor)."""
        arr = self._tensor("data_ptr")
        return kind_of(arr).data_ptr(arr)

    def device_name(self) -> str:
        """'cpu', 'cuda', ...: where the tensor's memory is."""
        return device_of(self._tensor("device_name"))[0]

    def _device(self) -> tuple[str, int]:
        return device_of(self._value)

    def shape(self) -> list[int]:
        if self.is_sparse_tensor():  # onnxruntime reports a sparse tensor's dense shape
            return [int(d) for d in self._value.dense_shape()]
        return list(self._tensor("shape").shape)

    def data_type(self) -> str:
        """onnxruntime's type string: 'tensor(float)', 'seq(tensor(int64))', ..."""
        v = self._value
        if self.is_tensor():
            return tensor_type_str(onnx_code(v.dtype))
        if self.is_sparse_tensor():
            return v.data_type()
        if isinstance(v, list) and v:
            return f"seq({tensor_type_str(onnx_code(v[0].dtype))})"
        if self._type_proto is not None:
            return type_str(self._type_proto)
        raise RuntimeError(f"{_NOT_TENSOR}: the type of this {'empty sequence' if isinstance(v, list) else 'value'} "
                           f"is unknown")

    def element_type(self) -> int:
        """The ONNX element type code of a tensor (of a sequence's tensors)."""
        v = self._value
        if self.is_tensor():
            return onnx_code(v.dtype)
        if isinstance(v, list) and v:
            return onnx_code(v[0].dtype)
        raise RuntimeError(f"{_NOT_TENSOR} (element_type on an OrtValue holding {self._describe()})")

    def tensor_size_in_bytes(self) -> int:
        return int(self._tensor("tensor_size_in_bytes").nbytes)

    def has_value(self) -> bool:
        return self._value is not None

    def is_tensor(self) -> bool:
        v = self._value
        return v is not None and not isinstance(v, (list, dict)) and not getattr(v, "_is_sparse_tensor", False)

    def is_sparse_tensor(self) -> bool:
        return getattr(self._value, "_is_sparse_tensor", False)

    @classmethod
    def ort_value_from_sparse_tensor(cls, sparse_tensor) -> "OrtValue":
        """An OrtValue holding a SparseTensor (ortgpu.sparse)."""
        if not getattr(sparse_tensor, "_is_sparse_tensor", False):
            raise TypeError(f"ort_value_from_sparse_tensor needs a SparseTensor, not {type(sparse_tensor).__name__}")
        return cls(sparse_tensor)

    def as_sparse_tensor(self):
        """The SparseTensor this OrtValue holds, or RuntimeError."""
        if not self.is_sparse_tensor():
            raise RuntimeError(f"This OrtValue does not contain a SparseTensor (it holds {self._describe()})")
        return self._value

    def is_tensor_sequence(self) -> bool:
        return isinstance(self._value, list)

    def numpy(self) -> np.ndarray:
        """The tensor as NumPy: the same memory on the CPU, a host copy from a device."""
        if not self.is_tensor():
            raise RuntimeError(f"Only OrtValues that are Tensors are convertible to Numpy objects "
                               f"(this one holds {self._describe()})")
        arr = self._value
        if isinstance(arr, np.ndarray):
            return arr.view()
        return kind_of(arr).to_numpy(arr)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.numpy()
        if copy is not None:
            return np.array(arr, dtype=dtype, copy=copy)
        return arr if dtype is None else np.asarray(arr, dtype=dtype)

    # --- DLPack ------------------------------------------------------------------------------
    def __dlpack__(self, *, stream=None, **kwargs):
        """A DLPack capsule over this tensor's memory (no copy); keep this OrtValue alive."""
        arr = self._tensor("__dlpack__")
        if not hasattr(arr, "__dlpack__"):
            raise BufferError(f"a {self.device_name()} tensor cannot be exported through DLPack")
        if stream is not None:
            kwargs["stream"] = stream
        return arr.__dlpack__(**kwargs)

    def to_dlpack(self):
        """onnxruntime's C-level name for ``__dlpack__()``."""
        return self.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        arr = self._tensor("__dlpack_device__")
        if hasattr(arr, "__dlpack_device__"):
            return tuple(arr.__dlpack_device__())
        kind = kind_of(arr)
        if kind.dlpack_code is None:
            raise BufferError(f"a {kind.name} tensor has no DLPack device")
        return kind.dlpack_code, kind.device_id(arr)

    # --- writing -----------------------------------------------------------------------------
    def update_inplace(self, data) -> None:
        """Copy `data` (a NumPy array or an OrtValue, same element type and element count) into
        this tensor's memory, whose address does not change; complete when it returns."""
        if isinstance(data, OrtValue):
            src = data._tensor("update_inplace")
        elif isinstance(data, np.ndarray):
            src = data
        else:
            raise TypeError("data must be a numpy.ndarray or an OrtValue.")
        dst = self._tensor("update_inplace")
        if src.size != dst.size:
            raise RuntimeError(f"The input size of numpy arrays does not match the size of the OrtValue. "
                               f"(OrtValue: {list(dst.shape)}, {dst.size} elements; data: {list(src.shape)}, "
                               f"{src.size} elements)")
        if src.dtype != dst.dtype:
            raise RuntimeError(f"update_inplace: the data is {_type_name(src.dtype)} but the OrtValue holds "
                               f"{_type_name(dst.dtype)}; convert it first")
        kind, src_kind = kind_of(dst), kind_of(src)
        if src_kind is not None and src_kind is not kind and not isinstance(src, np.ndarray):
            src = src_kind.to_numpy(src)  # between two devices: through the host
        kind.copy_into(dst, src)


def _device_arg(device_type, device_id) -> tuple[str, int]:
    """(device kind name, id) from a name and id, or from an OrtDevice (onnxruntime's C-level form)."""
    if not isinstance(device_type, str) and hasattr(device_type, "device_type"):
        from ortgpu.device_info import device_kind_name  # noqa: PLC0415
        return device_kind_name(device_type), device_type.device_id()
    return device_type, device_id


def _type_name(dtype) -> str:
    try:
        return tensor_type_str(onnx_code(dtype))
    except TypeError:
        return str(dtype)


def _numpy_tensor(obj) -> np.ndarray:
    """A NumPy array that can back an OrtValue, or onnxruntime's RuntimeError."""
    if not isinstance(obj, np.ndarray) or obj.dtype.kind in "OUS":
        got = f"a {obj.dtype} array" if isinstance(obj, np.ndarray) else f"a {type(obj).__name__}"
        raise RuntimeError(f"{_FROM_NUMPY_ONLY} (got {got})")
    try:
        onnx_code(obj.dtype.newbyteorder("="))
    except TypeError:
        raise RuntimeError(f"{_FROM_NUMPY_ONLY}: NumPy dtype {obj.dtype} has no ONNX element type") from None
    return obj


def _check_holds(kind: DeviceKind, dtype: np.dtype) -> None:
    if not kind.holds(dtype):
        raise RuntimeError(f"a '{kind.name}' OrtValue cannot hold {_type_name(dtype)} (NumPy {dtype})")


__all__ = ["OrtValue", "element_dtype", "tensor_shape", "device_of"]
