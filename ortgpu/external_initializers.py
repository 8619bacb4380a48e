"""Initializers whose data lives outside the model, supplied from memory
(``SessionOptions.add_external_initializers`` and ``add_external_initializers_from_files_in_memory``),
as onnxruntime replaces them.

A model saved with external data names a file for each large tensor; a program that already
holds the weights (or loads the model from bytes, where the file cannot be found) hands them
over instead.  As in onnxruntime, each name must be an initializer of the model stored as
external data, with the same element type and dimensions; its data then comes from the given
value and the file is never opened.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from ortgpu.dtypes import np_dtype
from ortgpu.errors import Fail


def as_host_array(value) -> np.ndarray:
    """An OrtValue's (or array's) data as a NumPy array on the host."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def apply(model: onnx.ModelProto, supplied: dict) -> None:
    """Replace the external data of the model's tensors named in `supplied` (name -> OrtValue
    or array) by that data, or Fail as onnxruntime does."""
    if not supplied:
        return
    tensors = {t.name: t for t in external_data_helper._get_all_tensors(model)}
    _read_files_in_memory(tensors.values(), getattr(supplied, "files", {}))
    for name, value in supplied.items():
        t = tensors.get(name)
        if t is None:
            raise Fail(f"Failed to find existing initializer with name {name} (add_external_initializers)")
        if t.data_location != onnx.TensorProto.EXTERNAL:
            raise Fail(f"Trying to replace non-external initializer with external data: '{name}' is stored "
                       f"inside the model; use SessionOptions.add_initializer to override it")
        array = as_host_array(value)
        want = np_dtype(t.data_type)
        if array.dtype != want:
            raise Fail(f"Replacement tensor's data type does not match: initializer '{name}' is {want}, "
                       f"the value given is {array.dtype}")
        if list(array.shape) != list(t.dims):
            raise Fail(f"Replacement tensor's dimensions do not match: initializer '{name}' has {list(t.dims)}, "
                       f"the value given {list(array.shape)}")
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))


def _read_files_in_memory(tensors, files: dict) -> None:
    """Fill the external tensors whose file was given from memory (offset and length as the
    tensor's external_data says), as onnxruntime's add_external_initializers_from_files_in_memory."""
    if not files:
        return
    for t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        data = files.get(info.get("location", ""))
        if data is None:
            continue
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else len(data) - offset
        if offset < 0 or offset + length > len(data):
            raise Fail(f"External data of tensor '{t.name}' (offset {offset}, length {length}) lies outside the "
                       f"{len(data)}-byte in-memory file '{info.get('location')}'")
        t.raw_data = data[offset:offset + length]
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
