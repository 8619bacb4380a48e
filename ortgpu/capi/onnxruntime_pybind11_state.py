"""Mirror of ``onnxruntime.capi.onnxruntime_pybind11_state``, onnxruntime's C module.

onnxruntime's Python classes wrap the C module's; ortgpu has one implementation of each, so
the names here are the same objects as ``ortgpu``'s (an ``except`` clause, an ``isinstance``
check or a ``C.OrtValueVector()`` written against the C module keeps working).
"""
from ortgpu.errors import *  # noqa: F401,F403
from ortgpu.errors import __all__ as _errors

from ortgpu.allocators import (ArenaExtendStrategy, OrtArenaCfg, create_and_register_allocator,
                               create_and_register_allocator_v2, kNextPowerOfTwo, kSameAsRequested)
from ortgpu.ep_assignment import OrtEpAssignedNode, OrtEpAssignedSubgraph
from ortgpu.compile_api import (ModelCompiler, OrtCompileApiFlags,
                                OrtEpContextData, OrtEpContextDataBuffer, OrtExternalInitializerInfo)
from ortgpu.device_info import (OrtAllocatorType, OrtDevice, OrtDeviceMemoryType, OrtMemoryInfo,
                                OrtMemoryInfoDeviceType, OrtMemType)
from ortgpu.ep_devices import (OrtCompiledModelCompatibility, OrtDeviceEpIncompatibilityReason, OrtEpDevice,
                               OrtExecutionProviderDevicePolicy, OrtHardwareDevice, OrtHardwareDeviceType,
                               OrtSyncStream, get_compatibility_info_from_model,
                               get_compatibility_info_from_model_bytes, get_ep_devices,
                               get_hardware_device_ep_incompatibility_details, get_hardware_devices,
                               get_model_compatibility_for_ep_devices, get_registered_ep_kernel_defs,
                               register_execution_provider_library, unregister_execution_provider_library)
from ortgpu.iobinding import SessionIOBinding
from ortgpu.kernel_catalog import get_all_operator_schema, get_all_opkernel_def, opkernel, schemadef
from ortgpu.logger import (set_default_logger_callback, set_default_logger_severity,
                           set_default_logger_verbosity)
from ortgpu.lora import AdapterFormat, LoraAdapter
from ortgpu.model_package import (ModelPackage, ModelPackageComponentContext, ModelPackageContext,
                                  ModelPackageOptions, ModelPackageWriteMode)
from ortgpu.native_libs import has_collective_ops
from ortgpu.options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from ortgpu.providers_select import get_all_providers, get_available_providers, get_device
from ortgpu.quantization_kernels import (pack_fp4_weights_for_cuda_moe_gemm, quantize_matmul_2bits,
                                         quantize_matmul_4bits, quantize_matmul_8bits, quantize_matmul_bnb4,
                                         quantize_qdq_matmul_2bits, quantize_qdq_matmul_4bits)
from ortgpu.random_seed import set_seed
from ortgpu.session import InferenceSession, ModelMetadata, NodeArg
from ortgpu.sparse import SparseBlockSparseView, SparseCooView, SparseCsrView, SparseTensor, OrtSparseFormat
from ortgpu.telemetry import disable_telemetry_events, enable_telemetry_events
from ortgpu.threads import set_global_thread_pool_sizes
from ortgpu.value_vector import OrtValueVector, copy_tensors
from ortgpu.values import OrtValue
from ortgpu.version import get_build_info, get_version_string


class SessionObjectInitializer:
    """onnxruntime's default-arguments holder for its C-level InferenceSession (empty there too)."""


def get_session_initializer() -> SessionObjectInitializer:
    return SessionObjectInitializer()


def get_default_session_options() -> SessionOptions:
    """A new SessionOptions with onnxruntime's defaults."""
    return SessionOptions()


__all__ = [n for n in dir() if not n.startswith("_")] + list(_errors)
