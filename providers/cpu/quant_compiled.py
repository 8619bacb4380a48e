"""Compiled bodies of the per-tensor 8-bit quantization steps (QuantizeLinear,
DynamicQuantizeLinear, QLinearAdd/QLinearMul): NumPy takes five to ten passes and as many
temporaries for what is one pass here, and on the small tensors of quantized models each NumPy
call costs more than the arithmetic (DynamicQuantizeLinear on 5x64 floats: about 30 us in
NumPy calls).

Each body computes exactly what the NumPy body computes, in the same float32 operations and
order (x / scale, rounded half to even, plus the zero point, clamped), so the two agree
bit for bit; a NaN becomes 0, as NumPy's cast gives on the x86 and ARM machines we run.
Arrays come in C-contiguous and flat, scalars as float32.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.jit import compiled, split_range


@compiled
def _min_max(x):
    """(min, max) of a float32 vector and 0, NaNs skipped (nanmin/nanmax extended to 0)."""
    lo = np.float32(0)
    hi = np.float32(0)
    for i in range(x.size):
        v = x[i]
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    return lo, hi


@compiled
def _quantize(lo, hi, x, scale, zero, qmin, qmax, y):
    """y[i] = clamp(rint(x[i] / scale) + zero, qmin, qmax) for i in lo..hi (float32 math)."""
    for i in range(lo, hi):
        q = np.rint(x[i] / scale) + zero
        if q != q:
            y[i] = 0
        elif q < qmin:
            y[i] = qmin
        elif q > qmax:
            y[i] = qmax
        else:
            y[i] = q


@compiled
def _add(lo, hi, a, sa, za, b, sb, zb, sc, zc, qmin, qmax, y):
    """QLinearAdd over equal-length vectors: quantize((a - za) * sa + (b - zb) * sb) by sc, zc."""
    for i in range(lo, hi):
        v = (np.float32(a[i]) - za) * sa + (np.float32(b[i]) - zb) * sb
        q = np.rint(v / sc) + zc
        if q != q:
            y[i] = 0
        elif q < qmin:
            y[i] = qmin
        elif q > qmax:
            y[i] = qmax
        else:
            y[i] = q


@compiled
def _mul(lo, hi, a, sa, za, b, sb, zb, sc, zc, qmin, qmax, y):
    """QLinearMul over equal-length vectors: quantize((a - za) * sa * ((b - zb) * sb)) by sc, zc."""
    for i in range(lo, hi):
        v = ((np.float32(a[i]) - za) * sa) * ((np.float32(b[i]) - zb) * sb)
        q = np.rint(v / sc) + zc
        if q != q:
            y[i] = 0
        elif q < qmin:
            y[i] = qmin
        elif q > qmax:
            y[i] = qmax
        else:
            y[i] = q


def min_max(x: np.ndarray) -> tuple:
    """(min(x, 0), max(x, 0)) of a float32 array as float32 scalars, NaNs skipped."""
    return _min_max(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))


def quantize_per_tensor(x: np.ndarray, scale, zero, dtype, qmin: int, qmax: int) -> np.ndarray:
    """clamp(rint(x / scale) + zero) as `dtype` (int8/uint8/int16/uint16), x float32, scale and
    zero float32 scalars."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    y = np.empty(flat.size, dtype)
    split_range(_quantize, flat.size, 8, flat, np.float32(scale), np.float32(zero),
                np.float32(qmin), np.float32(qmax), y)
    return y.reshape(x.shape)


def binary(op: str, a, sa, za, b, sb, zb, sc, zc, dtype, qmin: int, qmax: int) -> np.ndarray:
    """QLinearAdd ("add") or QLinearMul ("mul") of two same-shape 8-bit tensors, per-tensor
    float32 scales and zero points."""
    fa = np.ascontiguousarray(a).reshape(-1)
    fb = np.ascontiguousarray(b).reshape(-1)
    y = np.empty(fa.size, dtype)
    f32 = np.float32
    split_range(_add if op == "add" else _mul, fa.size, 12, fa, f32(sa), f32(za), fb, f32(sb), f32(zb),
                f32(sc), f32(zc), f32(qmin), f32(qmax), y)
    return y.reshape(a.shape)
