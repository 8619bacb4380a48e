"""Exceptions with onnxruntime's names, codes and message shape.

onnxruntime raises ``[ONNXRuntimeError] : <code> : <STATUS> : <message>``; code that
catches ``onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument`` (or parses the
text) keeps working with these.
"""


class _OrtError(Exception):
    code = 1
    status = "FAIL"

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"[ONNXRuntimeError] : {self.code} : {self.status} : {message}")


class Fail(_OrtError):
    code, status = 1, "FAIL"


class InvalidArgument(_OrtError):
    code, status = 2, "INVALID_ARGUMENT"


class NoSuchFile(_OrtError):
    code, status = 3, "NO_SUCHFILE"


class NoModel(_OrtError):
    code, status = 4, "NO_MODEL"


class EngineError(_OrtError):
    code, status = 5, "ENGINE_ERROR"


class RuntimeException(_OrtError):
    code, status = 6, "RUNTIME_EXCEPTION"


class InvalidProtobuf(_OrtError):
    code, status = 7, "INVALID_PROTOBUF"


class ModelLoaded(_OrtError):
    code, status = 8, "MODEL_LOADED"


class NotImplemented(_OrtError):  # noqa: A001 - onnxruntime's name
    code, status = 9, "NOT_IMPLEMENTED"


class InvalidGraph(_OrtError):
    code, status = 10, "INVALID_GRAPH"


class EPFail(_OrtError):
    code, status = 11, "EP_FAIL"


class ModelLoadCanceled(_OrtError):
    code, status = 12, "MODEL_LOAD_CANCELED"


class ModelRequiresCompilation(_OrtError):
    code, status = 13, "MODEL_REQUIRES_COMPILATION"


class NotFound(_OrtError):
    code, status = 14, "NOT_FOUND"


class DeviceReset(_OrtError):
    """Raised by onnxruntime when a device was reset under a session; kept for `except` clauses."""
    code, status = 1, "FAIL"


__all__ = [
    "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
    "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail",
    "ModelLoadCanceled", "ModelRequiresCompilation", "NotFound", "DeviceReset",
]
