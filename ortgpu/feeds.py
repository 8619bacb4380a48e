"""Feeds that onnxruntime accepts in forms other than the one the kernels take.

String tensors: the kernels take NumPy object arrays of ``str``.  A feed of ``bytes`` (an object
array holding bytes, or a NumPy ``S`` array) is decoded as UTF-8; other objects become their
``str()``, as onnxruntime converts them.  Sequences: onnxruntime checks each element's element
type only, not the shape the graph declares for the elements.
"""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu.errors import InvalidArgument


def as_string_array(name: str, value: np.ndarray) -> np.ndarray:
    """`value` (a U, S or object array fed for a string input) as an object array of str."""
    if value.dtype.kind == "U":
        return value.astype(object)
    flat = value.ravel().tolist() if value.dtype.kind in "SO" else None
    if flat is None:
        return value  # a numeric array: the type check that follows refuses it
    if value.dtype.kind == "O" and all(type(v) is str for v in flat):
        return value  # the usual case: nothing to convert
    out = []
    for i, v in enumerate(flat):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (bytes, bytearray, np.bytes_)):
            try:
                out.append(bytes(v).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InvalidArgument(f"Input '{name}': element {i} is bytes that are not valid UTF-8 "
                                      f"({e.reason} at byte {e.start}); a string tensor holds UTF-8 text") from None
        else:
            out.append(str(v))
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr.reshape(value.shape)


def sequence_element_type(tp: onnx.TypeProto) -> onnx.TypeProto:
    """The type each element of a sequence feed is checked against: the declared element type
    without its shape (onnxruntime runs elements of any shape where the ops allow it)."""
    elem = tp.sequence_type.elem_type
    if elem.WhichOneof("value") != "tensor_type" or not elem.tensor_type.HasField("shape"):
        return elem
    loose = onnx.TypeProto()
    loose.CopyFrom(elem)
    loose.tensor_type.ClearField("shape")
    return loose
