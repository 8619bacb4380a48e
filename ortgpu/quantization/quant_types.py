"""The enums users pass (same names and values as onnxruntime.quantization) and the arithmetic
that turns a float range into a scale and zero point for each quantized type."""
from __future__ import annotations

from enum import Enum

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ortgpu.errors import InvalidArgument


class QuantFormat(Enum):
    QOperator = 0
    QDQ = 1

    @staticmethod
    def from_string(text):
        return QuantFormat[text]


class QuantType(Enum):
    QInt8 = 0
    QUInt8 = 1
    QFLOAT8E4M3FN = 2
    QInt16 = 3
    QUInt16 = 4
    QInt4 = 5
    QUInt4 = 6

    @staticmethod
    def from_string(text):
        return QuantType[text]

    @property
    def tensor_type(self) -> int:
        return _ONNX_TYPE[self]


class CalibrationMethod(Enum):
    MinMax = 0
    Entropy = 1
    Percentile = 2
    Distribution = 3


_ONNX_TYPE = {QuantType.QInt8: TensorProto.INT8, QuantType.QUInt8: TensorProto.UINT8,
              QuantType.QInt16: TensorProto.INT16, QuantType.QUInt16: TensorProto.UINT16,
              QuantType.QInt4: TensorProto.INT4, QuantType.QUInt4: TensorProto.UINT4,
              QuantType.QFLOAT8E4M3FN: TensorProto.FLOAT8E4M3FN}
_NUMPY = {QuantType.QInt8: np.int8, QuantType.QUInt8: np.uint8, QuantType.QInt16: np.int16,
          QuantType.QUInt16: np.uint16, QuantType.QInt4: ml_dtypes.int4, QuantType.QUInt4: ml_dtypes.uint4,
          QuantType.QFLOAT8E4M3FN: ml_dtypes.float8_e4m3fn}
_BITS = {QuantType.QInt8: 8, QuantType.QUInt8: 8, QuantType.QInt16: 16, QuantType.QUInt16: 16,
         QuantType.QInt4: 4, QuantType.QUInt4: 4}
FP8_MAX = 448.0


def as_quant_type(value) -> QuantType:
    """Accept a QuantType, onnxruntime's own QuantType (same member names) or a name string."""
    if isinstance(value, QuantType):
        return value
    name = getattr(value, "name", value)
    if isinstance(name, str) and name in QuantType.__members__:
        return QuantType[name]
    raise InvalidArgument(f"quant type: expected one of {list(QuantType.__members__)}, got {value!r}")


def numpy_dtype(qt: QuantType):
    return _NUMPY[qt]


def is_signed(qt: QuantType) -> bool:
    return qt in (QuantType.QInt8, QuantType.QInt16, QuantType.QInt4, QuantType.QFLOAT8E4M3FN)


def qrange(qt: QuantType, reduce_range: bool = False, symmetric: bool = False) -> tuple[int, int]:
    """Integer range used for the scale. reduce_range halves it (one bit kept free, for int8
    CPUs without VNNI); a symmetric 8- or 16-bit signed range drops the lowest value so zero is
    centred exactly; 4-bit types keep their full range either way (onnxruntime's choices)."""
    bits = _BITS[qt]
    if is_signed(qt):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if reduce_range:
            return (lo // 2, hi // 2) if bits == 4 else (lo // 2, -(lo // 2))
        return (-hi, hi) if symmetric and bits in (8, 16) else (lo, hi)
    return 0, ((1 << bits) - 1) >> (1 if reduce_range else 0)


def scale_zero_point(rmin, rmax, qt: QuantType, symmetric=False, reduce_range=False):
    """Scale and zero point (arrays, broadcast over channels) that map [rmin, rmax], widened to
    include 0, onto the type's range; zero is always exactly representable."""
    rmin = np.minimum(np.asarray(rmin, np.float64), 0.0)
    rmax = np.maximum(np.asarray(rmax, np.float64), 0.0)
    if qt == QuantType.QFLOAT8E4M3FN:
        amax = np.maximum(np.abs(rmin), np.abs(rmax))
        scale = np.where(amax > 0, amax / FP8_MAX, 1.0).astype(np.float32)
        return scale, np.zeros(scale.shape, ml_dtypes.float8_e4m3fn)
    qmin, qmax = qrange(qt, reduce_range, symmetric)
    if symmetric:
        amax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax = -amax, amax
    scale = (rmax - rmin) / (qmax - qmin)
    tiny = scale < np.finfo(np.float32).tiny
    scale = np.where(tiny, 1.0, scale).astype(np.float32)
    if symmetric:
        zp = np.full(scale.shape, np.rint(qmin + (qmax - qmin) / 2) + 0.0, np.float64)
    else:
        zp = np.clip(np.round(qmin - rmin / scale.astype(np.float64)), qmin, qmax)
    zp = np.where(tiny, 0 if is_signed(qt) else zp, zp)
    return scale, zp.astype(_NUMPY[qt])


def _along(axis, ndim: int, scale, zp):
    """Scale and zero point as float32, a per-channel pair (1-D with an axis) shaped to
    broadcast along `axis` of an array of `ndim` dimensions."""
    scale = np.asarray(scale, np.float32)
    zp_f = np.asarray(zp).astype(np.float32)
    if axis is not None and scale.ndim == 1:
        shape = [1] * ndim
        shape[axis] = -1
        scale, zp_f = scale.reshape(shape), zp_f.reshape(shape)
    return scale, zp_f


def quantize_array(x, scale, zp, qt: QuantType, axis=None):
    """Round half to even and saturate, as QuantizeLinear does."""
    x = np.asarray(x, np.float32)
    scale, zp_f = _along(axis, x.ndim, scale, zp)
    if qt == QuantType.QFLOAT8E4M3FN:
        return np.clip(x / scale, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    lo, hi = qrange(qt)
    q = np.clip(np.rint(x / scale) + zp_f, lo, hi)
    return q.astype(_NUMPY[qt])


def dequantize_array(q, scale, zp, axis=None):
    q = np.asarray(q).astype(np.float32)
    scale, zp_f = _along(axis, q.ndim, scale, zp)
    return (q - zp_f) * scale
