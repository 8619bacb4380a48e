"""ortgpu: a GPU-first ONNX inference runtime with onnxruntime's Python API.

``import ortgpu as ort`` and existing onnxruntime code runs unchanged.  ``__version__`` is the
onnxruntime API version ortgpu follows; ortgpu's own release is ``__ortgpu_version__``.
"""
import contextlib  # noqa: F401  (onnxruntime's top-level module exposes it)

from ortgpu.errors import (EPFail, Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoModel,
                           NoSuchFile, NotImplemented, RuntimeException)
from ortgpu.version import (API_VERSION as __version__, ORTGPU_VERSION as __ortgpu_version__,
                            cuda_version, get_build_info, get_version_string, package_name,
                            print_debug_info, version)
from ortgpu.logger import (set_default_logger_callback, set_default_logger_severity,
                           set_default_logger_verbosity)
from ortgpu.telemetry import disable_telemetry_events, enable_telemetry_events
from ortgpu.random_seed import set_seed
from ortgpu.options import (ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions,
                            SessionOptions)
from ortgpu.providers_select import get_all_providers, get_available_providers, get_device
from ortgpu.session import InferenceSession, ModelMetadata, NodeArg
from ortgpu.values import OrtValue
from ortgpu.value_vector import copy_tensors
from ortgpu.custom_ops import CustomOp, CustomOpDef, custom_op
from ortgpu.iobinding import IOBinding, SessionIOBinding
from ortgpu.device_info import (OrtAllocatorType, OrtDevice, OrtDeviceMemoryType, OrtDeviceVendorId,
                                OrtMemoryInfo, OrtMemoryInfoDeviceType, OrtMemType)
from ortgpu.allocators import (OrtArenaCfg, create_and_register_allocator,
                               create_and_register_allocator_v2)
from ortgpu.sparse import OrtSparseFormat, SparseTensor
from ortgpu.ep_devices import (OrtEpDevice, OrtExecutionProviderDevicePolicy, OrtHardwareDevice,
                               OrtHardwareDeviceType, OrtSyncStream, get_ep_devices,
                               register_execution_provider_library,
                               unregister_execution_provider_library)
from ortgpu.ep_assignment import OrtEpAssignedNode, OrtEpAssignedSubgraph
from ortgpu.compile_api import (ModelCompiler, OrtCompileApiFlags, OrtEpContextData, OrtEpContextDataBuffer,
                                OrtExternalInitializerInfo)
from ortgpu.model_package import (ModelPackage, ModelPackageComponentContext, ModelPackageContext,
                                  ModelPackageOptions, ModelPackageWriteMode)
from ortgpu.lora import AdapterFormat, LoraAdapter
from ortgpu.native_libs import has_collective_ops, preload_dlls
from ortgpu.threads import set_global_thread_pool_sizes
from ortgpu import capi  # noqa: F401
from ortgpu.capi import onnxruntime_validation  # noqa: F401
from ortgpu import kernels_loader as _kernels_loader  # noqa: F401  (registers every kernel)

import_capi_exception = None  # onnxruntime: the ImportError of its C module, None when it loaded

__all__ = [
    "InferenceSession", "SessionOptions", "RunOptions", "NodeArg", "ModelMetadata",
    "OrtValue", "IOBinding", "SessionIOBinding",
    "GraphOptimizationLevel", "ExecutionMode", "ExecutionOrder",
    "get_available_providers", "get_all_providers", "get_device", "set_global_thread_pool_sizes",
    "__version__", "__ortgpu_version__",
    "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf", "InvalidGraph",
    "NotImplemented", "RuntimeException", "EPFail",
    "get_version_string", "get_build_info", "print_debug_info", "version", "package_name", "cuda_version",
    "set_default_logger_severity", "set_default_logger_verbosity", "set_default_logger_callback",
    "disable_telemetry_events", "enable_telemetry_events", "set_seed", "copy_tensors",
    "OrtDevice", "OrtMemoryInfo", "OrtMemType", "OrtAllocatorType", "OrtDeviceMemoryType", "OrtDeviceVendorId",
    "OrtMemoryInfoDeviceType", "OrtArenaCfg", "create_and_register_allocator", "create_and_register_allocator_v2",
    "SparseTensor", "OrtSparseFormat", "OrtEpDevice", "OrtHardwareDevice", "OrtHardwareDeviceType",
    "OrtExecutionProviderDevicePolicy", "OrtSyncStream", "get_ep_devices", "register_execution_provider_library",
    "unregister_execution_provider_library", "ModelCompiler", "OrtCompileApiFlags", "OrtEpAssignedNode",
    "OrtEpAssignedSubgraph", "OrtEpContextData", "OrtEpContextDataBuffer", "OrtExternalInitializerInfo",
    "ModelPackage", "ModelPackageComponentContext", "ModelPackageContext", "ModelPackageOptions",
    "ModelPackageWriteMode", "AdapterFormat", "LoraAdapter", "has_collective_ops", "preload_dlls",
    "set_global_thread_pool_sizes", "import_capi_exception",
    "CustomOp", "CustomOpDef", "custom_op",
]
