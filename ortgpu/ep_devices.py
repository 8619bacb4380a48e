"""Execution-provider devices (onnxruntime's auto-EP-selection API) and EP plugin libraries.

``get_ep_devices()`` lists the (provider, hardware device) pairs this machine can run: the CPU
provider on the host CPU, and the CUDA provider on each visible NVIDIA GPU when CuPy finds one.
onnxruntime's plugin EPs are native shared libraries built against its C API; ortgpu is written
in Python and cannot load them, so registering one raises NotImplemented with that reason.
"""
from __future__ import annotations

from ortgpu.device_info import OrtAllocatorType, OrtDeviceMemoryType, OrtDeviceVendorId, OrtMemoryInfo
from ortgpu.enums import OrtEnum
from ortgpu.errors import Fail, NotImplemented
from ortgpu.version import API_VERSION


class OrtHardwareDeviceType(OrtEnum):
    CPU = 0
    GPU = 1
    NPU = 2


class OrtExecutionProviderDevicePolicy(OrtEnum):
    DEFAULT = 0
    PREFER_CPU = 1
    PREFER_NPU = 2
    PREFER_GPU = 3
    MAX_PERFORMANCE = 4
    MAX_EFFICIENCY = 5
    MIN_OVERALL_POWER = 6


class OrtCompiledModelCompatibility(OrtEnum):
    EP_NOT_APPLICABLE = 0
    EP_SUPPORTED_OPTIMAL = 1
    EP_SUPPORTED_PREFER_RECOMPILATION = 2
    EP_UNSUPPORTED = 3


class OrtDeviceEpIncompatibilityReason(OrtEnum):
    NONE = 0
    DRIVER_INCOMPATIBLE = 1
    DEVICE_INCOMPATIBLE = 2
    MISSING_DEPENDENCY = 4
    UNKNOWN = -2147483648


_NOT_PLUGGABLE = ("ortgpu cannot load onnxruntime execution-provider plugin libraries: they are native code "
                  "built against onnxruntime's C API, and ortgpu runs its CPU and CUDA providers in Python")


class OrtHardwareDevice:
    """A piece of hardware: type, vendor name and PCI vendor id, device id, metadata."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("OrtHardwareDevice: No constructor defined! (get_hardware_devices() lists them)")

    @classmethod
    def _make(cls, dtype: OrtHardwareDeviceType, vendor: str, vendor_id: int, device_id: int, metadata: dict):
        obj = cls.__new__(cls)
        obj.type, obj.vendor, obj.vendor_id, obj.device_id = dtype, vendor, int(vendor_id), int(device_id)
        obj.metadata = dict(metadata)
        return obj

    def __repr__(self):
        return f"OrtHardwareDevice({self.type}, vendor='{self.vendor}', device_id={self.device_id})"


class OrtSyncStream:
    """A device stream handed out by ``OrtEpDevice.create_sync_stream`` (CUDA only here)."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("OrtSyncStream: No constructor defined! (OrtEpDevice.create_sync_stream() makes one)")

    @classmethod
    def _wrap(cls, stream):
        obj = cls.__new__(cls)
        obj._stream = stream
        return obj

    def get_handle(self) -> int:
        """The native stream handle (a cudaStream_t address)."""
        return int(self._stream.ptr)


class OrtEpDevice:
    """One execution provider on one hardware device."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("OrtEpDevice: No constructor defined! (get_ep_devices() lists them)")

    @classmethod
    def _make(cls, ep_name: str, device: OrtHardwareDevice):
        obj = cls.__new__(cls)
        obj.ep_name, obj.ep_vendor, obj.device = ep_name, "ortgpu", device
        obj.ep_metadata, obj.ep_options = {"version": API_VERSION}, {}
        return obj

    def memory_info(self, memory_type) -> OrtMemoryInfo | None:
        """The device's memory of `memory_type` (None for the CPU provider, as onnxruntime)."""
        if self.device.type == OrtHardwareDeviceType.CPU:
            return None
        memory_type = OrtDeviceMemoryType(int(memory_type))
        info = OrtMemoryInfo.create_v2("Cuda" if memory_type == OrtDeviceMemoryType.DEFAULT else "CudaPinned",
                                       1, int(OrtDeviceVendorId.NVIDIA), self.device.device_id, memory_type, 0,
                                       OrtAllocatorType.ORT_ARENA_ALLOCATOR)
        return info

    def create_sync_stream(self) -> OrtSyncStream:
        """A new stream on this device (CUDA); the CPU provider has none, as in onnxruntime."""
        if self.device.type == OrtHardwareDeviceType.CPU:
            raise RuntimeError("ep_device does not use DEFAULT memory of a non-CPU device.")
        import cupy  # noqa: PLC0415
        with cupy.cuda.Device(self.device.device_id):
            return OrtSyncStream._wrap(cupy.cuda.Stream(non_blocking=True))

    def __repr__(self):
        return f"OrtEpDevice(ep_name='{self.ep_name}', device={self.device!r})"


def _cpu_vendor() -> tuple[str, int]:
    """The host CPU's vendor name and PCI vendor id, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read(4096)
    except OSError:
        text = ""
    if "GenuineIntel" in text:
        return "Intel", int(OrtDeviceVendorId.INTEL)
    if "AuthenticAMD" in text:
        return "AMD", 0x1022
    return "", 0


def _gpus() -> list[OrtHardwareDevice]:
    try:
        from ortgpu.providers.cuda.provider import cuda_available, cuda_device_count  # noqa: PLC0415
        if not cuda_available():
            return []
        count = cuda_device_count()
    except Exception:  # noqa: BLE001 - no CuPy or no driver: no GPU to list
        return []
    return [OrtHardwareDevice._make(OrtHardwareDeviceType.GPU, "NVIDIA", int(OrtDeviceVendorId.NVIDIA), i, {})
            for i in range(count)]


def get_hardware_devices() -> list[OrtHardwareDevice]:
    """The host CPU, then each NVIDIA GPU CuPy sees."""
    vendor, vendor_id = _cpu_vendor()
    return [OrtHardwareDevice._make(OrtHardwareDeviceType.CPU, vendor, vendor_id, 0, {}), *_gpus()]


def get_ep_devices() -> list[OrtEpDevice]:
    """(provider, device) pairs: CPUExecutionProvider on the CPU, CUDAExecutionProvider per GPU."""
    out = []
    for hw in get_hardware_devices():
        out.append(OrtEpDevice._make("CPUExecutionProvider" if hw.type == OrtHardwareDeviceType.CPU
                                     else "CUDAExecutionProvider", hw))
    return out


def get_hardware_device_ep_incompatibility_details(ep_name: str, hardware_device: OrtHardwareDevice) -> dict:
    """Why `ep_name` cannot run on `hardware_device` ({'reasons_bitmask': 0, ...} when it can)."""
    pairs = {(e.ep_name, e.device.type, e.device.device_id) for e in get_ep_devices()}
    ok = (ep_name, hardware_device.type, hardware_device.device_id) in pairs
    reason = OrtDeviceEpIncompatibilityReason.NONE if ok else OrtDeviceEpIncompatibilityReason.DEVICE_INCOMPATIBLE
    return {"reasons_bitmask": int(reason), "notes": None if ok else f"{ep_name} does not run on {hardware_device!r}",
            "error_code": 0}


def get_model_compatibility_for_ep_devices(ep_devices, compatibility_info: str) -> OrtCompiledModelCompatibility:
    """Compiled-model compatibility: ortgpu compiles no EP contexts, so none applies."""
    return OrtCompiledModelCompatibility.EP_NOT_APPLICABLE


def get_compatibility_info_from_model(model_path: str, ep_type: str):
    """The EP compatibility string a compiled model stores for `ep_type`: None (ortgpu compiles none)."""
    return None


def get_compatibility_info_from_model_bytes(model_bytes, ep_type: str):
    return None


def register_execution_provider_library(registration_name: str, path: str) -> None:
    raise NotImplemented(f"register_execution_provider_library('{registration_name}', '{path}'): {_NOT_PLUGGABLE}")


def unregister_execution_provider_library(registration_name: str) -> None:
    raise Fail(f"Execution provider library: {registration_name} was not registered. ({_NOT_PLUGGABLE})")


def get_registered_ep_kernel_defs(ep_name: str) -> list:
    """Kernel definitions of a plugin EP: ortgpu has no plugin EPs."""
    raise NotImplemented(f"get_registered_ep_kernel_defs('{ep_name}'): {_NOT_PLUGGABLE}")


__all__ = ["OrtHardwareDevice", "OrtHardwareDeviceType", "OrtEpDevice", "OrtSyncStream",
           "OrtExecutionProviderDevicePolicy", "OrtCompiledModelCompatibility", "OrtDeviceEpIncompatibilityReason",
           "get_ep_devices", "get_hardware_devices", "register_execution_provider_library",
           "unregister_execution_provider_library", "get_hardware_device_ep_incompatibility_details",
           "get_model_compatibility_for_ep_devices", "get_compatibility_info_from_model",
           "get_compatibility_info_from_model_bytes", "get_registered_ep_kernel_defs"]
