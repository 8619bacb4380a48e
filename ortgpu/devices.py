"""Device kinds: what OrtValue and IOBinding need to know about the arrays of one device.

A *device kind* is named as onnxruntime names devices (``"cpu"``, ``"cuda"``) and equals the
``device`` attribute of the execution provider whose arrays it describes, so a value's kind
tells the partitioner where the value already is.  A kind makes empty arrays, copies host
arrays onto its device and back, copies into an existing array (the address stays), wraps a
raw address, imports DLPack tensors and reports data pointers.  The CPU kind (NumPy) lives
here; the CUDA kind (CuPy) in ``ortgpu.providers.cuda.arrays``; tests register the device
double's kind.  ``kind_of(array)`` finds the kind of an array by asking each kind in turn.
"""
from __future__ import annotations

import ctypes

import numpy as np

# DLPack's DLDeviceType codes
DLPACK_CPU = 1
DLPACK_CUDA = 2


class DeviceKind:
    """The arrays of one device.  Subclasses implement every method; all copies into or out of
    the device are complete when the method returns (onnxruntime's update_inplace and
    ortvalue_from_numpy are synchronous too)."""

    name = "?"
    dlpack_code: int | None = None

    def owns(self, array) -> bool:
        """Whether `array` is one of this kind's arrays."""
        raise NotImplementedError

    def device_id(self, array) -> int:
        return 0

    def holds(self, dtype) -> bool:
        """Whether this device's arrays can have NumPy dtype `dtype`."""
        return True

    def empty(self, shape, dtype, device_id: int):
        raise NotImplementedError

    def from_numpy(self, array: np.ndarray, device_id: int):
        """A copy of host `array` on device `device_id`."""
        raise NotImplementedError

    def to_numpy(self, array) -> np.ndarray:
        """A host copy of `array` (the array itself on the CPU)."""
        raise NotImplementedError

    def copy_into(self, dst, src, wait: bool = True) -> None:
        """Copy `src` (a host array or an array of this kind, same dtype and element count) into
        `dst`, whose address does not change; with `wait`, complete when it returns (else
        queued on the current stream)."""
        raise NotImplementedError

    def data_ptr(self, array) -> int:
        raise NotImplementedError

    def from_pointer(self, ptr: int, shape, dtype, device_id: int):
        """An array over memory the caller owns at address `ptr` (C order)."""
        raise NotImplementedError

    def from_dlpack(self, obj):
        """An array sharing the memory of a DLPack producer `obj` of this device."""
        raise NotImplementedError

    def synchronize(self, device_id: int) -> None:
        """Wait for all work queued on the device."""


class CPUKind(DeviceKind):
    """Host memory: NumPy arrays."""

    name = "cpu"
    dlpack_code = DLPACK_CPU

    def owns(self, array) -> bool:
        return isinstance(array, np.ndarray)

    def empty(self, shape, dtype, device_id: int):
        return np.empty(shape, dtype)

    def from_numpy(self, array, device_id: int):
        return np.array(array, copy=True)

    def to_numpy(self, array):
        return array

    def copy_into(self, dst, src, wait: bool = True) -> None:
        np.copyto(dst, np.asarray(src).reshape(dst.shape), casting="no")

    def data_ptr(self, array) -> int:
        return int(array.ctypes.data) if array.size else 0

    def from_pointer(self, ptr, shape, dtype, device_id):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            return np.empty(shape, dtype)
        if not ptr:
            raise ValueError("buffer_ptr is 0 (a null address) for a non-empty tensor")
        buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(int(ptr))
        return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)

    def from_dlpack(self, obj):
        return np.from_dlpack(obj)


_KINDS: dict[str, DeviceKind] = {"cpu": CPUKind()}
_LAZY = {"cuda": "ortgpu.providers.cuda.arrays"}  # modules that register a kind on import


def register_device_kind(kind: DeviceKind) -> None:
    """Make `kind` known by its name (a later registration of the same name replaces it)."""
    _KINDS[kind.name] = kind


def device_kind(name: str) -> DeviceKind:
    """The kind called `name` ('cpu', 'cuda', ...), or ValueError with onnxruntime's text."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None and name in _LAZY:
        import importlib  # noqa: PLC0415
        importlib.import_module(_LAZY[name])
        kind = _KINDS.get(name)
    if kind is None:
        raise ValueError(f"Unsupported device type: {name} (known: {', '.join(sorted(set(_KINDS) | set(_LAZY)))})")
    return kind


def kind_of(array) -> DeviceKind | None:
    """The kind whose array `array` is, or None (not a tensor of any known device)."""
    for kind in list(_KINDS.values()):
        if kind.owns(array):
            return kind
    if type(array).__module__.split(".")[0] == "cupy" and "cuda" not in _KINDS:
        return device_kind("cuda")
    return None


def kind_for_dlpack(code: int) -> DeviceKind:
    for kind in list(_KINDS.values()):
        if kind.dlpack_code == code:
            return kind
    if code == DLPACK_CUDA:
        return device_kind("cuda")
    raise RuntimeError(f"from_dlpack: DLPack device type {code} is not supported "
                       f"(supported: {DLPACK_CPU} = CPU, {DLPACK_CUDA} = CUDA)")


# --- raw DLPack capsules -----------------------------------------------------------------------
_LEGACY, _VERSIONED = b"dltensor", b"dltensor_versioned"
# Offset of DLTensor.device inside the managed struct: after `void* data` in DLManagedTensor;
# after version, manager_ctx, deleter, flags and `data` in DLManagedTensorVersioned.
_DEVICE_OFFSET = {_LEGACY: 8, _VERSIONED: 40}


def capsule_device(capsule) -> tuple[int, int]:
    """(DLPack device type, device id) of an unconsumed DLPack capsule, or TypeError."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype, get_ptr.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    if type(capsule).__name__ != "PyCapsule":
        raise TypeError("from_dlpack expected a valid DLPack capsule named 'dltensor'")
    name = get_name(capsule)
    if name not in _DEVICE_OFFSET:
        raise TypeError(f"from_dlpack expected a valid DLPack capsule named 'dltensor', got "
                        f"{name!r} (a capsule can be consumed once)")
    ptr = get_ptr(capsule, name) + _DEVICE_OFFSET[name]
    return ctypes.c_int32.from_address(ptr).value, ctypes.c_int32.from_address(ptr + 4).value


class CapsuleProducer:
    """A raw capsule dressed as a DLPack producer, so that np.from_dlpack / cupy.from_dlpack
    (which want ``__dlpack__`` and ``__dlpack_device__``) accept it."""

    def __init__(self, capsule):
        self._capsule = capsule
        self._device = capsule_device(capsule)

    def __dlpack__(self, **_):
        return self._capsule

    def __dlpack_device__(self):
        return self._device
