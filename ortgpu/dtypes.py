"""Element types: ONNX TensorProto codes, NumPy dtypes (ml_dtypes for the small floats) and
onnxruntime's type strings such as ``tensor(float)`` and ``seq(tensor(int64))``."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

# onnxruntime's spelling of each element type inside ``tensor(...)``.
_ORT_NAMES = {
    TensorProto.FLOAT: "float", TensorProto.UINT8: "uint8", TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
    TensorProto.INT64: "int64", TensorProto.STRING: "string", TensorProto.BOOL: "bool",
    TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "double", TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64", TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128", TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT8E4M3FN: "float8e4m3fn", TensorProto.FLOAT8E4M3FNUZ: "float8e4m3fnuz",
    TensorProto.FLOAT8E5M2: "float8e5m2", TensorProto.FLOAT8E5M2FNUZ: "float8e5m2fnuz",
    TensorProto.UINT4: "uint4", TensorProto.INT4: "int4", TensorProto.FLOAT4E2M1: "float4e2m1",
    TensorProto.FLOAT8E8M0: "float8e8m0", TensorProto.UINT2: "uint2", TensorProto.INT2: "int2",
    TensorProto.FLOAT6E2M3: "float6e2m3", TensorProto.FLOAT6E3M2: "float6e3m2",
}

_NP_BY_CODE: dict[int, np.dtype] = {}
_CODE_BY_NP: dict[np.dtype, int] = {}
for _code in _ORT_NAMES:
    try:
        _dt = np.dtype(helper.tensor_dtype_to_np_dtype(_code))
    except Exception:  # an onnx build without this type
        continue
    _NP_BY_CODE[_code] = _dt
    if _code != TensorProto.STRING:
        _CODE_BY_NP.setdefault(_dt, _code)
_CODE_BY_NP[np.dtype(object)] = TensorProto.STRING
for _s in ("U", "S"):
    _CODE_BY_NP[np.dtype(_s)] = TensorProto.STRING


def np_dtype(code: int) -> np.dtype:
    """NumPy dtype of an ONNX element type code."""
    try:
        return _NP_BY_CODE[code]
    except KeyError:
        raise TypeError(f"unsupported ONNX element type {code}") from None


def onnx_code(dtype) -> int:
    """ONNX element type code of a NumPy dtype (str and bytes arrays are strings)."""
    dt = np.dtype(dtype)
    if dt.kind in "US":
        return TensorProto.STRING
    try:
        return _CODE_BY_NP[dt]
    except KeyError:
        raise TypeError(f"NumPy dtype {dt} has no ONNX element type") from None


def elem_name(code: int) -> str:
    return _ORT_NAMES.get(code, f"unknown({code})")


def tensor_type_str(code: int) -> str:
    return f"tensor({elem_name(code)})"


def type_str(tp) -> str:
    """onnxruntime's string for a TypeProto: tensor(float), seq(tensor(int64)), optional(...)."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return tensor_type_str(tp.tensor_type.elem_type)
    if which == "sparse_tensor_type":
        return f"sparse_tensor({elem_name(tp.sparse_tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({type_str(tp.sequence_type.elem_type)})"
    if which == "optional_type":
        return f"optional({type_str(tp.optional_type.elem_type)})"
    if which == "map_type":
        return f"map({elem_name(tp.map_type.key_type)},{type_str(tp.map_type.value_type)})"
    return "unknown"


def shape_of(tp) -> list | None:
    """NodeArg.shape of a TypeProto: ints, str for symbolic dims, None for an unknown dim."""
    which = tp.WhichOneof("value")
    if which == "optional_type" and tp.optional_type.elem_type.WhichOneof("value") == "tensor_type":
        return shape_of(tp.optional_type.elem_type)  # onnxruntime shows the wrapped tensor's shape
    if which != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return []  # onnxruntime reports a tensor of unknown rank (and a non-tensor) as []
    dims = []
    for d in tp.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims
