"""``onnxruntime.capi.onnxruntime_inference_collection``: where onnxruntime defines its Python
classes; the same objects as ``ortgpu``'s, plus its argument helpers."""
from ortgpu.device_info import OrtDevice, OrtDeviceVendorId, device_kind_name  # noqa: F401
from ortgpu.iobinding import IOBinding  # noqa: F401
from ortgpu.providers_select import check_and_normalize_provider_args  # noqa: F401
from ortgpu.session import InferenceSession  # noqa: F401
from ortgpu.sparse import SparseTensor  # noqa: F401
from ortgpu.value_vector import copy_tensors  # noqa: F401
from ortgpu.values import OrtValue  # noqa: F401


def get_ort_device_type(device_type: str) -> int:
    """onnxruntime's device-type code for a device name ('cpu', 'cuda', 'gpu', 'npu', ...)."""
    return OrtDevice.make(device_type, 0).device_type()
