"""Descriptions of devices and memory: OrtDevice, OrtMemoryInfo and their enums.

These describe where a tensor lives in onnxruntime's terms (device type, vendor, id, memory
type).  ortgpu's values live on two device kinds, the CPU (NumPy) and CUDA (CuPy);
``device_kind_name`` maps a description onto one of them, so an OrtDevice or OrtMemoryInfo
can be used wherever ortgpu needs a device.  One OrtDevice class serves both of onnxruntime's
spellings: the Python wrapper (``OrtDevice.make("cuda", 0)``, ``device_type()``,
``device_mem_type()``) and the C-level class (``OrtDevice(OrtDevice.gpu(), OrtDevice.default_memory(),
vendor_id, device_id)``, ``mem_type()``, ``vendor_id()``).
"""
from __future__ import annotations

from ortgpu.enums import OrtEnum
from ortgpu.errors import InvalidArgument


class OrtMemType(OrtEnum):
    """Which memory of a device an allocator serves (onnxruntime's OrtMemType)."""
    CPU_INPUT = -2
    CPU_OUTPUT = -1
    CPU = -1
    DEFAULT = 0


class OrtAllocatorType(OrtEnum):
    INVALID = -1
    ORT_DEVICE_ALLOCATOR = 0
    ORT_ARENA_ALLOCATOR = 1


class OrtDeviceMemoryType(OrtEnum):
    DEFAULT = 0
    HOST_ACCESSIBLE = 5


class OrtDeviceVendorId(OrtEnum):
    """PCI vendor ids, as onnxruntime's ortdevice.h lists them."""
    NONE = 0x0000
    AMD = 0x1002
    NVIDIA = 0x10DE
    ARM = 0x13B5
    MICROSOFT = 0x1414
    HUAWEI = 0x19E5
    QUALCOMM = 0x5143
    INTEL = 0x8086


class OrtMemoryInfoDeviceType(OrtEnum):
    CPU = 0
    GPU = 1
    FPGA = 2
    NPU = 3


# onnxruntime's OrtDevice::DeviceType codes
_CPU, _GPU, _FPGA, _NPU, _DML = 0, 1, 2, 3, 4
# device names OrtDevice.make accepts: (device type, vendor id the name implies or None)
_NAMED = {"cpu": (_CPU, None), "cuda": (_GPU, OrtDeviceVendorId.NVIDIA), "gpu": (_GPU, None),
          "npu": (_NPU, None), "cann": (_NPU, OrtDeviceVendorId.HUAWEI),
          "dml": (_DML, OrtDeviceVendorId.MICROSOFT), "webgpu": (_GPU, OrtDeviceVendorId.NONE)}


def _int(what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"OrtDevice: {what} must be an int, not {type(value).__name__}")
    return int(value)


class OrtDevice:
    """A device: type (cpu 0, gpu 1, fpga 2, npu 3), memory type, vendor id and device id."""

    def __init__(self, *args):
        """``OrtDevice(device_type, mem_type, device_id)``, ``OrtDevice(device_type, mem_type,
        vendor_id, device_id)`` (onnxruntime's C-level constructors), or ``OrtDevice(other)``
        (its Python wrapper's, around a C-level device)."""
        if len(args) == 1 and isinstance(args[0], OrtDevice):
            other = args[0]
            args = (other._type, other._mem, other._vendor, other._id)
        if len(args) == 3:
            args = (args[0], args[1], 0, args[2])
        if len(args) != 4:
            raise TypeError(f"OrtDevice() takes (device_type, mem_type, [vendor_id,] device_id) or an "
                            f"OrtDevice, got {len(args)} arguments")
        self._type, self._mem, self._vendor, self._id = (
            _int(w, v) for w, v in zip(("device_type", "mem_type", "vendor_id", "device_id"), args))
        if self._type == _DML:  # onnxruntime's legacy DML type: a Microsoft GPU
            self._type, self._vendor = _GPU, int(OrtDeviceVendorId.MICROSOFT)

    # --- the C-level class's constants -------------------------------------------------------
    @staticmethod
    def cpu() -> int:
        return _CPU

    @staticmethod
    def gpu() -> int:
        return _GPU

    @staticmethod
    def cuda() -> int:
        return _GPU

    @staticmethod
    def webgpu() -> int:
        return _GPU

    @staticmethod
    def fpga() -> int:
        return _FPGA

    @staticmethod
    def npu() -> int:
        return _NPU

    @staticmethod
    def cann() -> int:
        return _NPU

    @staticmethod
    def dml() -> int:
        return _DML

    @staticmethod
    def default_memory() -> int:
        return int(OrtDeviceMemoryType.DEFAULT)

    # --- the Python wrapper's factory ----------------------------------------------------------
    @staticmethod
    def make(ort_device_name: str, device_id: int, vendor_id: int = -1) -> "OrtDevice":
        """The device called `ort_device_name` ('cpu', 'cuda', 'gpu', 'npu', ...) number
        `device_id`; 'cuda' implies NVIDIA's vendor id unless `vendor_id` says otherwise."""
        if ort_device_name not in _NAMED:
            raise Exception(f"Unsupported device type: {ort_device_name}")  # noqa: TRY002 - onnxruntime's type
        dtype, implied = _NAMED[ort_device_name]
        vendor = int(vendor_id) if vendor_id >= 0 else int(implied or 0)
        return OrtDevice(dtype, OrtDevice.default_memory(), vendor, _int("device_id", device_id))

    def _get_c_device(self) -> "OrtDevice":
        return self

    # --- queries (both spellings) --------------------------------------------------------------
    def device_id(self) -> int:
        return self._id

    def device_type(self) -> int:
        return self._type

    def mem_type(self) -> int:
        return self._mem

    def vendor_id(self) -> int:
        return self._vendor

    device_mem_type = mem_type
    device_vendor_id = vendor_id

    def __eq__(self, other):
        return isinstance(other, OrtDevice) and (self._type, self._mem, self._vendor, self._id) == (
            other._type, other._mem, other._vendor, other._id)

    def __hash__(self):
        return hash((self._type, self._mem, self._vendor, self._id))

    def __repr__(self):
        return (f"OrtDevice(device_type={self._type}, mem_type={self._mem}, vendor_id={self._vendor:#06x}, "
                f"device_id={self._id})")


def device_kind_name(device: OrtDevice) -> str:
    """ortgpu's device kind ('cpu' or 'cuda') for an OrtDevice, or InvalidArgument."""
    if device.device_type() == _CPU or device.mem_type() == OrtDeviceMemoryType.HOST_ACCESSIBLE:
        return "cpu"
    if device.device_type() == _GPU and device.vendor_id() in (0, OrtDeviceVendorId.NVIDIA):
        return "cuda"
    raise InvalidArgument(f"{device!r} is not a device ortgpu runs on: it has CPU memory and NVIDIA "
                          f"GPUs through CUDA")


# allocator names onnxruntime uses for OrtMemoryInfo, by the device they describe
_CPU_NAMES = {"Cpu", "CUDA_CPU", "CudaPinned", "CpuPinned"}
_CUDA_NAMES = {"Cuda", "CUDA"}


def _enum_arg(enum_cls, what: str, value):
    try:
        return enum_cls(int(value))
    except (TypeError, ValueError):
        raise TypeError(f"OrtMemoryInfo: {what} must be a {enum_cls.__name__}, got {value!r}") from None


class OrtMemoryInfo:
    """An allocator's description: name ('Cpu', 'Cuda', 'CudaPinned'), allocator type,
    device id, memory type; ``create_v2`` builds one from a device type and vendor."""

    def __init__(self, name: str, allocator_type, device_id: int, mem_type):
        if not isinstance(name, str):
            raise TypeError(f"OrtMemoryInfo: name must be a str, not {type(name).__name__}")
        self._name = name
        self._allocator_type = _enum_arg(OrtAllocatorType, "allocator_type", allocator_type)
        self._mem_type = _enum_arg(OrtMemType, "mem_type", mem_type)
        device_id = _int("device_id", device_id)
        if name in _CUDA_NAMES and self._mem_type == OrtMemType.DEFAULT:
            self._device = OrtDevice(_GPU, OrtDeviceMemoryType.DEFAULT, OrtDeviceVendorId.NVIDIA, device_id)
        elif name in _CUDA_NAMES or name in ("CudaPinned", "CUDA_CPU"):
            self._device = OrtDevice(_GPU, OrtDeviceMemoryType.HOST_ACCESSIBLE, OrtDeviceVendorId.NVIDIA, device_id)
        else:
            self._device = OrtDevice(_CPU, OrtDeviceMemoryType.DEFAULT, 0, device_id)
        self._alignment = 0

    @staticmethod
    def create_v2(name: str, device_type, vendor_id: int, device_id: int, device_mem_type, alignment: int,
                  allocator_type) -> "OrtMemoryInfo":
        """An OrtMemoryInfo from a device type, vendor, id and device memory type."""
        dtype = _enum_arg(OrtMemoryInfoDeviceType, "device_type", device_type)
        mem = _enum_arg(OrtDeviceMemoryType, "device_mem_type", device_mem_type)
        info = OrtMemoryInfo(name, allocator_type, device_id, OrtMemType.DEFAULT)
        info._device = OrtDevice(int(dtype), int(mem), _int("vendor_id", vendor_id), _int("device_id", device_id))
        info._alignment = _int("alignment", alignment)
        return info

    @property
    def name(self) -> str:
        return self._name

    @property
    def device_id(self) -> int:
        return self._device.device_id()

    @property
    def mem_type(self) -> OrtMemType:
        return self._mem_type

    @property
    def allocator_type(self) -> OrtAllocatorType:
        return self._allocator_type

    @property
    def device_mem_type(self) -> OrtDeviceMemoryType:
        return OrtDeviceMemoryType(self._device.mem_type())

    @property
    def device_vendor_id(self) -> int:
        return self._device.vendor_id()

    def _ort_device(self) -> OrtDevice:
        return self._device

    def __repr__(self):
        return (f"OrtMemoryInfo(name='{self._name}', {self._allocator_type}, device_id={self.device_id}, "
                f"{self._mem_type}, {self._device!r})")


__all__ = ["OrtDevice", "OrtMemoryInfo", "OrtMemType", "OrtAllocatorType", "OrtDeviceMemoryType",
           "OrtDeviceVendorId", "OrtMemoryInfoDeviceType", "device_kind_name"]
