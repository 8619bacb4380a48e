"""ortgpu: a GPU-first ONNX inference runtime with onnxruntime's Python API.

``import ortgpu as ort`` and existing onnxruntime code runs unchanged.
"""
from ortgpu.errors import (EPFail, Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoModel,
                           NoSuchFile, NotImplemented, RuntimeException)
from ortgpu.options import (ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions,
                            SessionOptions)
from ortgpu.providers_select import get_all_providers, get_available_providers, get_device
from ortgpu.session import InferenceSession, ModelMetadata, NodeArg
from ortgpu.values import OrtValue
from ortgpu.custom_ops import CustomOp, CustomOpDef, custom_op
from ortgpu.iobinding import IOBinding, SessionIOBinding
from ortgpu import kernels_loader as _kernels_loader  # noqa: F401  (registers every kernel)

__version__ = "0.1.0"

__all__ = [
    "InferenceSession", "SessionOptions", "RunOptions", "NodeArg", "ModelMetadata",
    "OrtValue", "IOBinding", "SessionIOBinding",
    "GraphOptimizationLevel", "ExecutionMode", "ExecutionOrder",
    "get_available_providers", "get_all_providers", "get_device", "__version__",
    "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf", "InvalidGraph",
    "NotImplemented", "RuntimeException", "EPFail",
    "CustomOp", "CustomOpDef", "custom_op",
]
