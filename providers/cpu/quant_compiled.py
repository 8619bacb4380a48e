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

from ortgpu.providers.cpu.jit import compiled, helper, split_range


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


# Rounding half to even as float32 arithmetic: adding and taking away 1.5 * 2**23 leaves
# |v| < 2**22 rounded to an integer by the FPU's own round-to-nearest-even, exactly rint(v); a
# larger |v| stays far outside every 8- and 16-bit range and clamps alike.  Unlike np.rint
# (a libm call per element here) it vectorises: 0.8 against 7.7 ns an element measured.
_ROUNDER = np.float32(12582912.0)


@helper()
def _clamped(q, qmin, qmax):
    """A rounded float32 q clamped to [qmin, qmax] as int32, NaN as 0 (inlined in each body)."""
    q = qmin if q < qmin else q
    q = qmax if q > qmax else q
    return np.int32(np.float32(0) if q != q else q)


@compiled
def _quantize(lo, hi, x, p, y):
    """y[i] = clamp(rint(x[i] / scale) + zero, qmin, qmax) for i in lo..hi (float32 math), with
    p = (scale, zero, qmin, qmax)."""
    big = _ROUNDER
    scale, zero, qmin, qmax = p[0], p[1], p[2], p[3]
    for i in range(lo, hi):
        q = ((x[i] / scale + big) - big) + zero
        y[i] = _clamped(q, qmin, qmax)


@compiled
def _add(lo, hi, a, b, p, y):
    """QLinearAdd over equal-length vectors: quantize((a - za) * sa + (b - zb) * sb) by sc, zc,
    with p = (sa, za, sb, zb, sc, zc, qmin, qmax)."""
    big = _ROUNDER
    sa, za, sb, zb, sc, zc, qmin, qmax = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    for i in range(lo, hi):
        v = (np.float32(a[i]) - za) * sa + (np.float32(b[i]) - zb) * sb
        q = ((v / sc + big) - big) + zc
        y[i] = _clamped(q, qmin, qmax)


@compiled
def _mul(lo, hi, a, b, p, y):
    """QLinearMul over equal-length vectors: quantize((a - za) * sa * ((b - zb) * sb)) by sc, zc,
    with p as in _add."""
    big = _ROUNDER
    sa, za, sb, zb, sc, zc, qmin, qmax = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    for i in range(lo, hi):
        v = ((np.float32(a[i]) - za) * sa) * ((np.float32(b[i]) - zb) * sb)
        q = ((v / sc + big) - big) + zc
        y[i] = _clamped(q, qmin, qmax)


@compiled
def _requantize_rows(lo, hi, acc, bias, mult, p, y):
    """Rows lo..hi of y (N * M, S) = clamp(rint((acc + bias[c]) * mult[c]) + zero), c = row % M,
    with p = (zero, qmin, qmax): a convolution's int32-exact float32 sums requantized per
    output channel."""
    m = bias.size
    big = _ROUNDER
    zero, qmin, qmax = p[0], p[1], p[2]
    for r in range(lo, hi):
        c = r % m
        add = bias[c]
        scale = mult[c]
        row = acc[r]
        out = y[r]
        for j in range(row.size):
            q = ((((row[j] + add) * scale) + big) - big) + zero
            out[j] = _clamped(q, qmin, qmax)


def requantize_channels(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, p: np.ndarray, dtype) -> np.ndarray:
    """clamp(rint((acc + bias) * mult) + zero) as `dtype`, per output channel (axis 1) of a
    float32 (N, M, ...) accumulator; bias and mult float32 (M,), p = parameters(zero, qmin, qmax)."""
    rows = acc.shape[0] * acc.shape[1]
    a = np.ascontiguousarray(acc).reshape(rows, -1)
    y = np.empty(a.shape, dtype)
    split_range(_requantize_rows, rows, a.shape[1] * 4, a, bias, mult, p, y)
    return y.reshape(acc.shape)


def min_max(x: np.ndarray) -> tuple:
    """(min(x, 0), max(x, 0)) of a float32 array as float32 scalars, NaNs skipped."""
    return _min_max(np.ascontiguousarray(x, dtype=np.float32).reshape(-1))


def parameters(*values) -> np.ndarray:
    """Scales, zero points and the clamp range of a body, as the float32 vector it reads."""
    return np.array(values, dtype=np.float32)


def quantize_per_tensor(x: np.ndarray, p: np.ndarray, dtype) -> np.ndarray:
    """clamp(rint(x / scale) + zero, qmin, qmax) as `dtype` (int8/uint8/int16/uint16), x float32,
    p = parameters(scale, zero, qmin, qmax)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    y = np.empty(flat.size, dtype)
    split_range(_quantize, flat.size, 4, flat, p, y)
    return y.reshape(x.shape)


def binary(op: str, a, b, p: np.ndarray, dtype) -> np.ndarray:
    """QLinearAdd ("add") or QLinearMul ("mul") of two same-shape 8-bit tensors, with
    p = parameters(sa, za, sb, zb, sc, zc, qmin, qmax)."""
    fa = np.ascontiguousarray(a).reshape(-1)
    fb = np.ascontiguousarray(b).reshape(-1)
    y = np.empty(fa.size, dtype)
    split_range(_add if op == "add" else _mul, fa.size, 6, fa, fb, p, y)
    return y.reshape(a.shape)
