"""Cast, CastLike and BitCast between every ONNX element type.

NumPy's ``astype`` (with ml_dtypes for the small types) does most conversions; the rest
is what the ONNX spec adds on top: float8 saturation, FLOAT8E8M0 rounding modes, and
strings, which are formatted and parsed the way onnxruntime does (``%.8g``, INF, NaN).
"""
from __future__ import annotations

import re

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ortgpu.dtypes import np_dtype
from ortgpu.providers.cpu import half_compiled
from ortgpu.providers.kernels.elementwise import as_array
from ortgpu.providers.dtype_sets import ALL, COMPLEX, FLOAT6, NON_STRING
from ortgpu.providers.registry import kernel

_STRING = np.dtype(object)
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
# Float8 types with an overflow rule chosen by `saturate` (inf or NaN when not saturating).
_FLOAT8 = {np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                 ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)}
# Small floats without inf or NaN: out-of-range values always clamp to the largest value.
_NO_INF = {np.dtype(t) for t in (ml_dtypes.float4_e2m1fn, ml_dtypes.float6_e2m3fn,
                                 ml_dtypes.float6_e3m2fn)}
# Integer types narrower than a byte (ml_dtypes stores one value per byte, in the low bits).
_SUBBYTE_INT = {np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2,
                                      ml_dtypes.uint2)}
_SUBBYTE_BITS = {np.dtype(ml_dtypes.int4): 4, np.dtype(ml_dtypes.uint4): 4,
                 np.dtype(ml_dtypes.float4_e2m1fn): 4, np.dtype(ml_dtypes.int2): 2,
                 np.dtype(ml_dtypes.uint2): 2}


def _is_integer(dt) -> bool:
    return dt.kind in "iu" or dt in _SUBBYTE_INT


def _host(x):
    """A NumPy view of ``x`` (CuPy arrays are copied to the host)."""
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)


def _contiguous(x):
    """``x`` in C order, keeping its shape (``ascontiguousarray`` makes 0-d arrays 1-d)."""
    return x if x.flags.c_contiguous else x.copy()


def _target_dtype(to) -> np.dtype:
    """The dtype of Cast's `to`: a TensorProto code, or a type name in opset 1 ("FLOAT")."""
    if isinstance(to, (str, bytes)):
        name = to.decode() if isinstance(to, bytes) else to
        to = TensorProto.DataType.Value(name.upper())
    return np_dtype(int(to))


def cast_array(xp, x, dt, saturate=1, round_mode="up"):
    """``x`` converted to dtype ``dt`` with ONNX Cast semantics."""
    dt = np.dtype(dt)
    src = x.dtype
    if src == dt:
        return x
    if dt == _STRING:
        return _to_strings(x)
    if src == _STRING:
        return _from_strings(xp, x, dt, saturate, round_mode)
    with np.errstate(all="ignore"):
        if half_compiled.compiled_pair(src, dt):   # float16 <-> float32: compiled bit arithmetic
            return half_compiled.convert(x, dt) if xp is np else as_array(xp, x.astype(dt), dt)
        if dt == _E8M0:
            return _to_e8m0(xp, x, saturate, round_mode)
        if dt in _FLOAT8 or dt in _NO_INF:
            f = x if src.kind == "f" else x.astype(np.float32)
            if saturate or dt in _NO_INF:
                limit = float(ml_dtypes.finfo(dt).max)
                f = xp.clip(f, -limit, limit)
            return as_array(xp, f.astype(dt), dt)
        if src.kind == "V" and dt == np.dtype(bool):   # the ml_dtypes floats compare as float32
            return as_array(xp, x.astype(np.float32) != 0, dt)
        try:
            return as_array(xp, x.astype(dt), dt)
        except TypeError:  # a pair ml_dtypes converts only through a wide type
            mid = np.int64 if _is_integer(src) else np.float32
            return as_array(xp, x.astype(mid).astype(dt), dt)


def _to_e8m0(xp, x, saturate, round_mode):
    """Power-of-two scale type: keep the float32 exponent, round the mantissa by
    `round_mode` (up / down / nearest); sign is ignored, NaN gives the NaN code 0xFF."""
    f = x.astype(np.float32) if x.dtype != np.float32 else x
    bits = _contiguous(f).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.int32)
    mantissa = bits & 0x7FFFFF
    special = exponent == 0xFF
    if round_mode == "up":
        exponent = exponent + (mantissa != 0)
    elif round_mode == "nearest":   # halfway (1.5 * 2**e) rounds up, except for subnormals
        exponent = exponent + ((mantissa > 0x400000) | ((mantissa == 0x400000) & (exponent > 0)))
    elif round_mode != "down":
        raise ValueError(f"Cast: round_mode must be 'up', 'down' or 'nearest', got {round_mode!r}")
    if saturate:
        code = xp.where(special, xp.where(xp.isnan(f), 0xFF, 0xFE), xp.minimum(exponent, 0xFE))
    else:
        code = xp.where(special | (exponent > 0xFE) | (f == 0), 0xFF, exponent)
    return code.astype(np.uint8).view(_E8M0)


def _format_number(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "INF" if v > 0 else "-INF"
    return "%.8g" % v


def _to_strings(x):
    """Numbers as onnxruntime prints them: integers exactly, floats with %.8g, bool as 1/0."""
    x = _host(x)   # strings live on the host
    if x.dtype == np.dtype(bool):
        flat = ["1" if v else "0" for v in x.ravel().tolist()]
    elif _is_integer(x.dtype):
        wide = np.uint64 if x.dtype.kind == "u" or x.dtype.name.startswith("uint") else np.int64
        flat = [str(v) for v in x.astype(wide).ravel().tolist()]
    else:
        f = x if x.dtype.kind == "f" else x.astype(np.float32)
        flat = [_format_number(v) for v in f.ravel().tolist()]
    out = np.empty(x.shape, dtype=object)
    out.ravel()[:] = flat if flat else []
    return out


# Strings become numbers the way onnxruntime reads them, with C++'s std::stod (floats),
# std::stoll (signed integers) and std::stoull (unsigned integers and bool): leading C
# whitespace is skipped, the longest valid prefix is read and the rest ignored ("1.5abc" is
# 1.5, "12abc" is 12, "0x1A" is 26 as a float but 0 as an integer); no number at all is an
# error, and so is a value out of range (a float beyond double's range or below its smallest
# normal, an integer beyond 64 bits).  Narrower targets then wrap or round as C++ casts do.
_C_SPACE = " \t\n\v\f\r"
_FLOAT_PREFIX = re.compile(
    r"[+-]?(?:(?P<hex>0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    r"|(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
    r"|(?P<inf>inf(?:inity)?)|(?P<nan>nan(?:\([0-9a-z_]*\))?))", re.IGNORECASE)
_INT_PREFIX = re.compile(r"[+-]?[0-9]+")
_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)


def _parse_float(s: str) -> float:
    """std::stod: the longest float prefix (decimal, hex, inf, nan); ValueError as C++ throws."""
    m = _FLOAT_PREFIX.match(s.lstrip(_C_SPACE))
    if m is None:
        raise ValueError(f"Cast: string {s!r} does not start with a number (stod)")
    text = m.group(0)
    if m.group("nan"):
        return float("nan")
    if m.group("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    try:
        v = float.fromhex(text) if m.group("hex") else float(text)
    except OverflowError:
        v = float("inf")
    digits = m.group("hex")[2:] if m.group("hex") else m.group("dec")
    mantissa = re.split("[pP]" if m.group("hex") else "[eE]", digits)[0]
    underflow = v == 0 and any(c not in "0." for c in mantissa)
    if v in (float("inf"), float("-inf")) or underflow or 0 < abs(v) < _SMALLEST_NORMAL:
        raise ValueError(f"Cast: string {s!r} is out of the range of a double (stod)")
    return v


def _parse_int(s: str, unsigned: bool) -> int:
    """std::stoll (signed) or std::stoull (unsigned: a '-' wraps modulo 2**64), as an int."""
    m = _INT_PREFIX.match(s.lstrip(_C_SPACE))
    fn = "stoull" if unsigned else "stoll"
    if m is None:
        raise ValueError(f"Cast: string {s!r} does not start with an integer ({fn})")
    v = int(m.group(0))
    if unsigned:
        if abs(v) >= 1 << 64:
            raise ValueError(f"Cast: string {s!r} is out of the range of a 64-bit unsigned integer ({fn})")
        return v % (1 << 64)
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"Cast: string {s!r} is out of the range of a 64-bit integer ({fn})")
    return v


def _is_unsigned(dt) -> bool:
    return dt.kind == "u" or dt.name.startswith("uint")


def _from_strings(xp, x, dt, saturate, round_mode):
    """Parse strings as onnxruntime does (see _parse_float, _parse_int), then cast to `dt`."""
    strs = [v.decode() if isinstance(v, bytes) else str(v) for v in _host(x).ravel().tolist()]
    if dt == np.dtype(bool):   # onnxruntime reads bool with stoull: "2" is true, "0.5" false
        out = np.array([_parse_int(s, True) != 0 for s in strs], dtype=bool)
    elif _is_integer(dt):
        unsigned = _is_unsigned(dt)
        out = np.array([_parse_int(s, unsigned) % (1 << 64) for s in strs], dtype=np.uint64)
        if not unsigned:   # two's complement wrap
            out = out.view(np.int64)
    else:
        out = np.array([_parse_float(s) for s in strs], dtype=np.float64)
    out = out.reshape(np.shape(x))
    return cast_array(np, out, dt, saturate, round_mode) if xp is np else \
        xp.asarray(cast_array(np, out, dt, saturate, round_mode))


@kernel("Cast", since=(1, 6, 9, 13, 19, 21, 23, 24, 25, 28),
        types={"T1": ALL - COMPLEX, "T2": ALL - COMPLEX})
def Cast(ctx, input, *, to, saturate=1, round_mode="up"):
    """Convert to element type `to`; `saturate` clamps float8 overflow, `round_mode` rounds to E8M0."""
    return cast_array(ctx.xp, input, _target_dtype(to), saturate, round_mode)


@kernel("CastLike", since=(15, 19, 21, 23, 24, 25),
        types={"T1": ALL - (COMPLEX | FLOAT6), "T2": ALL - (COMPLEX | FLOAT6)})
def CastLike(ctx, input, target_type, *, saturate=1, round_mode="up"):
    """Convert to the element type of `target_type` (its values are not read)."""
    return cast_array(ctx.xp, input, target_type.dtype, saturate, round_mode)


@kernel("BitCast", since=26, types={"T1": NON_STRING - FLOAT6, "T2": NON_STRING - FLOAT6})
def BitCast(ctx, input, *, to):
    """Reinterpret the bits of each element as type `to` (same bit width)."""
    xp = ctx.xp
    dt = _target_dtype(to)
    x = _contiguous(input)
    if x.dtype in _SUBBYTE_BITS or dt in _SUBBYTE_BITS:
        width_in = _SUBBYTE_BITS.get(x.dtype, x.dtype.itemsize * 8)
        width_out = _SUBBYTE_BITS.get(dt, dt.itemsize * 8)
        if width_in != width_out:
            raise ValueError(f"BitCast: {x.dtype} and {dt} differ in bit width")
        return (x.view(np.uint8) & ((1 << width_in) - 1)).astype(np.uint8).view(dt)
    if x.dtype.itemsize != dt.itemsize:
        raise ValueError(f"BitCast: {x.dtype} ({x.dtype.itemsize * 8} bits) and {dt} "
                         f"({dt.itemsize * 8} bits) differ in bit width")
    return x.view(dt)
