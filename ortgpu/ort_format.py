"""onnxruntime's own ``.ort`` model format (a FlatBuffer with file identifier "ORTM").

onnxruntime's minimal builds load models converted by
``python -m onnxruntime.tools.convert_onnx_models_to_ort``.  The format is a serialization of
onnxruntime's optimized in-memory graph, not ONNX, and ortgpu reads ONNX only; onnxruntime
ships no converter from .ort back to .onnx, so the way back is the .onnx file the .ort file was
made from.  ``refuse_ort_format`` recognizes the format and says that, instead of a protobuf
parse error.
"""
from __future__ import annotations

from ortgpu.errors import InvalidProtobuf

ORT_FILE_IDENTIFIER = b"ORTM"  # FlatBuffers put the 4-byte file identifier after the root offset


def is_ort_format(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == ORT_FILE_IDENTIFIER


def refuse_ort_format(data: bytes, path: str | None) -> None:
    """Raise InvalidProtobuf naming the ORT format and the way back, when `data` is one."""
    if not is_ort_format(data):
        return
    where = f"Load model from {path} failed: " if path else "Failed to load model: "
    raise InvalidProtobuf(
        f"{where}this is an ORT format model (onnxruntime's .ort FlatBuffer, file identifier 'ORTM'), "
        f"not ONNX. ortgpu runs ONNX models only: load the .onnx model it was converted from (with "
        f"`python -m onnxruntime.tools.convert_onnx_models_to_ort model.onnx`, the .onnx file is the "
        f"input); onnxruntime has no converter from .ort back to .onnx.")
