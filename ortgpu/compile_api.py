"""onnxruntime's model-compilation API (EP context models): ModelCompiler and its types.

onnxruntime compiles the parts of a model an EP can take into "EP context" nodes holding the
EP's own binary (a TensorRT engine, a QNN context, ...), saved with the model.  ortgpu's CUDA
provider produces no such binaries (it runs kernels from Python and CuPy), so a compiler cannot
be built; the information types exist so that code importing them keeps working.
"""
from __future__ import annotations

from ortgpu.enums import OrtEnum
from ortgpu.errors import NotImplemented

_WHY = ("ortgpu's providers compile no EP context binaries (these are native engines of onnxruntime's "
        "plugin EPs such as TensorRT or QNN); run the original ONNX model with InferenceSession instead, "
        "and use SessionOptions.optimized_model_filepath to save the optimized graph")


class OrtCompileApiFlags(OrtEnum):
    NONE = 0
    ERROR_IF_NO_NODES_COMPILED = 1
    ERROR_IF_OUTPUT_FILE_EXISTS = 2


class ModelCompiler:
    """Refused on construction (see the module docstring for why)."""

    def __init__(self, *args, **kwargs):
        raise NotImplemented(f"ModelCompiler: {_WHY}")


class _NoConstructor:
    """An information object onnxruntime hands out and never lets Python construct."""

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__}: No constructor defined! ({_WHY})")


class OrtEpContextData(_NoConstructor):
    """EP context data passed to a ModelCompiler write function (never produced by ortgpu)."""


class OrtEpContextDataBuffer(_NoConstructor):
    """A buffer of EP context data (never produced by ortgpu)."""


class OrtExternalInitializerInfo(_NoConstructor):
    """Where an initializer's data lives in an external file (handed to EP callbacks)."""
