"""Named sets of element types that kernels declare (NumPy dtype names, ml_dtypes included).

A kernel registration says, per type constraint of its schema, which element types it runs:
``@kernel("Gather", since=13, types={"T": ALL, "Tind": INDEX})``.  The names here are the
vocabulary of those declarations and of the coverage table's element-type column.
"""
from __future__ import annotations

from onnx import TensorProto

from ortgpu.dtypes import np_dtype

BOOL = frozenset({"bool"})
SIGNED = frozenset({"int8", "int16", "int32", "int64"})
UNSIGNED = frozenset({"uint8", "uint16", "uint32", "uint64"})
INTEGER = SIGNED | UNSIGNED
INDEX = frozenset({"int32", "int64"})
FLOAT = frozenset({"float16", "float32", "float64"})
BFLOAT16 = frozenset({"bfloat16"})
FLOATS = FLOAT | BFLOAT16
NUMERIC = INTEGER | FLOATS
COMPLEX = frozenset({"complex64", "complex128"})
STRING = frozenset({"object"})   # ONNX strings are NumPy object arrays of str


def _all_element_types() -> frozenset:
    names = set()
    for code in TensorProto.DataType.values():
        if code:
            try:
                names.add(np_dtype(code).name)
            except TypeError:  # a type this onnx/ml_dtypes build has no dtype for
                pass
    return frozenset(names)


ALL = _all_element_types()   # every element type ONNX defines and NumPy (with ml_dtypes) holds
FLOAT8_E8M0 = frozenset({"float8_e8m0fnu"}) & ALL   # a scale type only (exponent bits, no sign)
FLOAT8 = frozenset(n for n in ALL if n.startswith("float8_")) - FLOAT8_E8M0   # e4m3fn(uz), e5m2(fnuz)
INT4 = frozenset({"int4", "uint4"}) & ALL
INT2 = frozenset({"int2", "uint2"}) & ALL
FLOAT4 = frozenset(n for n in ALL if n.startswith("float4_"))
FLOAT6 = frozenset(n for n in ALL if n.startswith("float6_"))
SUB_BYTE = INT4 | INT2 | FLOAT4 | FLOAT6   # packed below a byte in ONNX, one byte each in NumPy
NON_STRING = ALL - STRING
# ONNX's tensor types before IR 9 (no float8, no sub-byte): what most data-movement ops take.
STANDARD = NUMERIC | BOOL | COMPLEX | STRING
# What a CuPy array holds: a CUDA launcher (and a shared kernel on CuPy) runs no other type.
CUPY = BOOL | INTEGER | FLOAT | COMPLEX
# CuPy 14 also holds ml_dtypes.bfloat16 arrays: its ufuncs, casts, reductions and matmul take
# them; its ufunc.at, sorting (thrust) and cupyx.scipy.special do not.  A CUDA registration
# declares bfloat16 (with these, or FLOATS) only where its body handles it: moved as 16-bit
# words, or computed in float32 and cast back.
CUPY_BF16 = CUPY | BFLOAT16

# The names above, in the order the coverage table abbreviates declarations with them.
NAMED = {"ALL": ALL, "NON_STRING": NON_STRING, "STANDARD": STANDARD, "CUPY": CUPY,
         "NUMERIC": NUMERIC, "INTEGER": INTEGER, "FLOATS": FLOATS, "FLOAT": FLOAT,
         "SIGNED": SIGNED, "UNSIGNED": UNSIGNED, "INDEX": INDEX, "COMPLEX": COMPLEX,
         "FLOAT8": FLOAT8, "FLOAT8_E8M0": FLOAT8_E8M0, "SUB_BYTE": SUB_BYTE, "INT4": INT4,
         "INT2": INT2, "FLOAT4": FLOAT4, "FLOAT6": FLOAT6, "BFLOAT16": BFLOAT16, "BOOL": BOOL,
         "STRING": STRING}


def _union_text(types) -> tuple[list[str], list[str]]:
    """Named sets covering `types` (largest first) and the names left over."""
    rest, parts = set(types), []
    for name, members in NAMED.items():
        if members and members <= rest:
            parts.append(name)
            rest -= members
    return parts, sorted(rest)


def describe(types: frozenset) -> str:
    """A short text for a set: named sets joined by "+" where they cover it exactly, else
    the names, or a named set less named sets ("ALL-FLOAT6") where that is shorter."""
    parts, rest = _union_text(types)
    best = (len(parts) + len(rest), "+".join(parts + rest) or "-")
    for name, members in NAMED.items():
        if members > set(types):
            less, odd = _union_text(members - set(types))
            text = (1 + len(less), f"{name}-{'-'.join(less)}")
            if not odd and len(less) <= 2 and text < best:
                best = text
    return best[1]
