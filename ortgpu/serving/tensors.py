"""Tensor types and checks shared by every front end (KServe REST/gRPC, Ray Serve, Ray Data).

Protocol datatypes (FP32, INT64, BYTES, ...) against ONNX type strings, and the request checks:
each input is present, known, of the model's datatype and of a shape the model accepts, with
onnxruntime's wording for the messages. Checks run before a request is queued, so a bad request
fails alone and never a batch it would have joined.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadRequest

_ONNX_TO_PROTOCOL = {
    "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64", "tensor(bfloat16)": "BF16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}
_PROTOCOL_TO_ONNX = {v: k for k, v in _ONNX_TO_PROTOCOL.items()}
_NUMPY = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT8": np.int8, "INT16": np.int16,
          "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
          "UINT64": np.uint64, "BOOL": np.bool_, "BYTES": np.object_}


def protocol_datatype(onnx_type: str) -> str:
    """``tensor(float)`` -> ``FP32``; raises BadRequest for types the protocol cannot carry."""
    try:
        return _ONNX_TO_PROTOCOL[onnx_type]
    except KeyError:
        raise BadRequest(f"ONNX type {onnx_type} has no Open Inference Protocol datatype") from None


def onnx_type(datatype: str) -> str:
    """``FP32`` -> ``tensor(float)`` (for messages in onnxruntime's wording)."""
    return _PROTOCOL_TO_ONNX.get(datatype, datatype)


def numpy_dtype(datatype: str):
    """The NumPy dtype of a protocol datatype (BYTES -> object)."""
    try:
        return np.dtype(_NUMPY[datatype])
    except KeyError:
        raise BadRequest(f"unknown datatype {datatype!r}: expected one of {sorted(_NUMPY)}") from None


def datatype_of(array: np.ndarray) -> str:
    """Protocol datatype of a NumPy array."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, t in _NUMPY.items():
        if array.dtype == np.dtype(t):
            return name
    raise BadRequest(f"NumPy dtype {array.dtype} has no Open Inference Protocol datatype")


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as the server publishes it: shape with -1 for free dimensions, the batch
    dimension included when the model is batched."""
    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def dims_of(node_arg) -> tuple[int, ...]:
    """A session NodeArg's shape with -1 for symbolic or unknown dimensions."""
    shape = node_arg.shape or []
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def check_request(inputs: dict[str, tuple[str, tuple[int, ...]]], expected: list[TensorInfo],
                  max_batch_size: int) -> int:
    """Check a request's (datatype, shape) per input name against the model; return its batch size
    (1 for an unbatched model). Raises BadRequest naming the input, the expected and the actual."""
    names = [t.name for t in expected]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise BadRequest(f"Required inputs ({missing}) are missing from input feed ({list(inputs)}).")
    unknown = [n for n in inputs if n not in names]
    if unknown:
        raise BadRequest(f"Invalid input name: {unknown[0]}; the model's inputs are {names}")
    batch = None
    for info in expected:
        datatype, shape = inputs[info.name]
        if datatype != info.datatype:
            raise BadRequest(f"Unexpected input data type for input: {info.name}. Actual: "
                             f"({onnx_type(datatype)}) [{datatype}] , expected: ({onnx_type(info.datatype)}) "
                             f"[{info.datatype}]")
        _check_shape(info, tuple(shape))
        if max_batch_size > 0:
            if batch is not None and shape[0] != batch:
                raise BadRequest(f"input {info.name}: batch size {shape[0]} differs from the other inputs' {batch}")
            batch = shape[0]
    if max_batch_size > 0:
        if not 1 <= batch <= max_batch_size:
            raise BadRequest(f"inference request batch-size must be <= {max_batch_size} and >= 1, got {batch}")
        return batch
    return 1


def _check_shape(info: TensorInfo, shape: tuple[int, ...]) -> None:
    if len(shape) != len(info.shape):
        raise BadRequest(f"Invalid rank for input: {info.name} Got: {len(shape)} Expected: {len(info.shape)} "
                         f"Please fix either the inputs/outputs or the model. (expected shape "
                         f"{list(info.shape)}, got {list(shape)})")
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {info.name}: negative dimension in shape {list(shape)}")
    bad = [(i, got, want) for i, (got, want) in enumerate(zip(shape, info.shape)) if want >= 0 and got != want]
    if bad:
        detail = "".join(f" index: {i} Got: {got} Expected: {want}\n" for i, got, want in bad)
        raise BadRequest(f"Got invalid dimensions for input: {info.name} for the following indices\n{detail}"
                         " Please fix either the inputs or the model.")


def to_array(name: str, datatype: str, shape: tuple[int, ...], data, raw: bytes | None) -> np.ndarray:
    """Build the NumPy array of one input from JSON data or raw bytes; BadRequest when the amount
    of data does not match the shape (named, with both counts)."""
    dtype = numpy_dtype(datatype)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if raw is not None and datatype != "BYTES":
        if len(raw) != count * dtype.itemsize:
            raise BadRequest(f"input {name}: {len(raw)} bytes of binary data, expected {count * dtype.itemsize} "
                             f"for shape {list(shape)} of {datatype}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    try:
        array = np.asarray(data, dtype=dtype) if datatype != "BYTES" else _bytes_array(data)
    except (TypeError, ValueError, OverflowError) as e:
        raise BadRequest(f"input {name}: data cannot be read as {datatype}: {e}") from None
    if array.size != count:
        raise BadRequest(f"input {name}: {array.size} elements of data, expected {count} for shape {list(shape)}")
    return array.reshape(shape)


def _bytes_array(data) -> np.ndarray:
    flat = np.asarray(data, dtype=object).reshape(-1)
    return np.array([v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v) for v in flat],
                    dtype=object)
