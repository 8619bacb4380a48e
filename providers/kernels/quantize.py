"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
QLinearMatMul, ConvInteger's quantized sibling QLinearConv.

Integer products run on floating-point BLAS, which is exact as long as every partial sum is
an integer the float type represents: with |a - a_zp| <= A and |b - b_zp| <= B, a dot product
of length K stays below K * A * B, exact in float32 when K * A * B <= 2**24 and in float64
when K * A * B <= 2**53.  For 8-bit operands (A, B <= 255, so A * B <= 65025) that is
K <= 258 for float32 and K <= 2**53 / 65025 (about 1.4e11) for float64; int8 weights with a
zero point of 0 (B <= 128) next to uint8 activations give K <= 514 for float32.
:func:`exact_matmul` splits K into float32-exact slices summed in float64 (float32 BLAS is
about twice as fast as float64 and 5-100x NumPy's integer matmul, which has no BLAS), and
falls back to int64 arithmetic past the float64 bound.  Requantization multiplies by a
float32 scale and rounds half to even.
"""
from __future__ import annotations

import functools

import ml_dtypes
import numpy as np

from ortgpu.dtypes import np_dtype
from ortgpu.providers.kernels.conv import conv_float
from ortgpu.providers.dtype_sets import BFLOAT16, FLOAT8, FLOAT8_E8M0, INT4, SUB_BYTE
from ortgpu.providers.cpu import jit, quant_compiled
from ortgpu.providers.registry import kernel

# the integer types the compiled per-tensor quantization writes
COMPILED_INT_TYPES = frozenset({np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16)})

def int_range(dtype):
    """(min, max) of an integer element type, the 2- and 4-bit ones included."""
    return _int_range(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _int_range(dt):
    # cached per dtype: np.iinfo is a Python object built per call (~2 us, a dozen calls a node)
    if dt.kind in "iu":
        info = np.iinfo(dt)
    else:
        info = ml_dtypes.iinfo(dt)
    return int(info.min), int(info.max)


def is_int(dtype):
    return _is_int(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _is_int(dt):
    if dt.kind in "iu":
        return True
    try:
        ml_dtypes.iinfo(dt)
        return True
    except (ValueError, TypeError):
        return False


def broadcast_param(xp, p, x_shape, axis, block_size):
    """A scale or zero point shaped to broadcast against x: per tensor, per axis, or blocked."""
    if p.ndim == 0 or p.size == 1 and (p.ndim <= 1):
        return p.reshape(())
    rank = len(x_shape)
    axis = axis % rank
    if block_size:
        rep = xp.repeat(p, int(block_size), axis=axis)
        sl = [slice(None)] * rank
        sl[axis] = slice(0, x_shape[axis])
        return rep[tuple(sl)]
    if p.ndim == 1:
        return p.reshape((-1,) + (1,) * (rank - 1 - axis))
    return p


def saturate_float(xp, v, dtype, saturate):
    """float32 values cast to a small float type; saturate clamps to its finite range."""
    dt = np.dtype(dtype)
    if saturate:
        big = float(ml_dtypes.finfo(dt).max)
        v = xp.clip(v, -big, big)  # infinities too (onnxruntime does so for the fnuz types as well)
    return v.astype(dt)


def quantize(xp, v, dtype, zp, saturate=1):
    """Float values (already divided by the scale) rounded, shifted by zp and stored as dtype."""
    if is_int(dtype):
        lo, hi = int_range(dtype)
        q = xp.rint(v)
        if zp is not None:
            q = q + zp.astype(np.float32, copy=False)
        if isinstance(q, xp.ndarray) and q.ndim:   # fresh: clamp in place (xp.clip's wrapper costs more)
            xp.maximum(q, lo, out=q)
            xp.minimum(q, hi, out=q)
            return q.astype(dtype)
        return xp.clip(q, lo, hi).astype(dtype)
    if zp is not None:
        v = v + zp.astype(np.float32)
    return saturate_float(xp, v, dtype, saturate)


@kernel("QuantizeLinear", since=(10, 13, 19, 21, 23, 24, 25, 28),
        types={"T1": BFLOAT16 | frozenset({"float16", "float32", "int32"}),
               "T2": FLOAT8 | FLOAT8_E8M0 | INT4 | BFLOAT16
                     | frozenset({"float16", "float32", "int16", "int32", "int8", "uint16", "uint8"}),
               "T3": FLOAT8 | SUB_BYTE | frozenset({"int16", "int8", "uint16", "uint8"})})
def QuantizeLinear(ctx, x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
                   precision=0, saturate=1):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point), per tensor, per axis or blocked."""
    xp = ctx.xp
    if y_zero_point is not None:
        out_dt = y_zero_point.dtype
    elif output_dtype:
        out_dt = np_dtype(output_dtype)
    else:
        out_dt = ctx.output_dtype(0) or np.dtype(np.uint8)
    work = np_dtype(precision) if precision else np.float32
    if (xp is np and y_scale.size == 1 and (y_zero_point is None or y_zero_point.size == 1) and work == np.float32
            and x.dtype == np.float32 and out_dt in COMPILED_INT_TYPES and jit.enabled()):
        # per tensor, to an 8/16-bit integer type: one compiled pass
        p = ctx.prepared(("parameters", out_dt), (1, 2), (y_scale, y_zero_point), lambda: quant_compiled.parameters(
            y_scale.reshape(-1)[0], 0 if y_zero_point is None else y_zero_point.reshape(-1)[0], *int_range(out_dt)))
        return quant_compiled.quantize_per_tensor(x, p, out_dt)
    scale = broadcast_param(xp, y_scale.astype(work), x.shape, axis, block_size)
    v = (x.astype(work) / scale).astype(np.float32)
    zp = None
    if y_zero_point is not None:
        zp = broadcast_param(xp, y_zero_point, x.shape, axis, block_size)
    return quantize(xp, v, out_dt, zp, saturate)


@kernel("DequantizeLinear", since=(10, 13, 19, 21, 23, 24, 25, 28),
        types={"T": frozenset({"int32", "int8", "uint8"}),
               "T1": FLOAT8 | SUB_BYTE | frozenset({"int16", "int32", "int8", "uint16", "uint8"}),
               "T2": FLOAT8_E8M0 | BFLOAT16 | frozenset({"float16", "float32"}),
               "T3": BFLOAT16 | frozenset({"float16", "float32"})})
def DequantizeLinear(ctx, x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """y = (x - x_zero_point) * x_scale, per tensor, per axis or blocked; y has the scale's type."""
    xp = ctx.xp
    if output_dtype:
        out_dt = np_dtype(output_dtype)
    elif ctx.opset >= 19:
        out_dt = x_scale.dtype
    else:
        out_dt = np.dtype(np.float32)
    v = x.astype(np.float32)
    if x_zero_point is not None:
        v = v - broadcast_param(xp, x_zero_point, x.shape, axis, block_size).astype(np.float32)
    scale = broadcast_param(xp, x_scale, x.shape, axis, block_size).astype(np.float32)
    return (v * scale).astype(out_dt)


@kernel("DynamicQuantizeLinear", since=11,
        types={"T1": frozenset({"float32"}), "T2": frozenset({"uint8"})})
def DynamicQuantizeLinear(ctx, x):
    """uint8 quantization with scale and zero point chosen from the range of x (extended to 0)."""
    if ctx.xp is np:
        return dynamic_quantize(x)
    return _dynamic_quantize_xp(ctx.xp, x)


def dynamic_quantize(x):
    """DynamicQuantizeLinear on the host: (y, scale, zero point), compiled when numba is on
    (two passes: the range, then the quantization), else the NumPy body."""
    if not (jit.enabled() and x.size):
        return _dynamic_quantize_xp(np, x)
    lo, hi = quant_compiled.min_max(x)
    lo, hi = np.float32(lo), np.float32(hi)
    scale = (hi - lo) / np.float32(255)
    if scale == 0:  # an all-zero input: scale 1, as onnxruntime
        scale = np.float32(1)
    zp = np.uint8(min(max(np.rint(-lo / scale), 0), 255))
    y = quant_compiled.quantize_per_tensor(x, quant_compiled.parameters(scale, zp, 0, 255), np.uint8)
    return y, np.asarray(scale, dtype=np.float32), np.asarray(zp)


def _dynamic_quantize_xp(xp, x):
    """DynamicQuantizeLinear in NumPy or CuPy calls (several passes)."""
    xf = x.astype(np.float32)
    # fmin/fmax: an all-NaN input has the range [0, 0] (scale 1, zero point 0), as onnxruntime
    lo = xp.fmin(xp.nanmin(xf), np.float32(0)) if xf.size else np.float32(0)
    hi = xp.fmax(xp.nanmax(xf), np.float32(0)) if xf.size else np.float32(0)
    scale = xp.asarray((hi - lo) / np.float32(255), dtype=np.float32)
    scale = xp.where(scale == 0, np.float32(1), scale)  # an all-zero input: scale 1, as onnxruntime
    zp = xp.clip(xp.rint(-lo / scale), 0, 255).astype(np.uint8)
    y = xp.clip(xp.rint(xf / scale) + zp.astype(np.float32), 0, 255).astype(np.uint8)
    return y, scale.reshape(()), xp.asarray(zp).reshape(())


def row_zero_point(zp, a):
    """A's zero point as a per-row column (M, 1) when given as an M-vector."""
    if zp.ndim == 1 and zp.size > 1 and a.ndim >= 2:
        return zp.reshape(-1, 1)
    return zp


FLOAT32_EXACT = 2 ** 24   # integers up to this magnitude are exact in float32
FLOAT64_EXACT = 2 ** 53   # ... and in float64


def shifted_bound(dtype, zp) -> int:
    """The largest |q - zp| an integer of `dtype` can reach with zero point(s) `zp` (from the
    type's range, so no pass over the data)."""
    lo, hi = int_range(dtype)
    if zp is None or zp.size == 0:
        return max(-lo, hi)
    if not isinstance(zp, np.ndarray):   # a device array: no host round trip, assume the worst
        return hi - lo
    if zp.size == 1:
        z = int(zp.item())
        return max(hi - z, z - lo)
    z = zp.astype(np.int64)
    return int(max(hi - z.min(), z.max() - lo))


def exact_slice(bound_product: int, k: int) -> tuple[type, int]:
    """(float type, K slice length) for an exact dot product of length `k` whose terms are at
    most `bound_product` in magnitude: float32 in slices of 2**24 // bound_product when one slice
    is enough or float32 slices beat float64 (a few), float64 in slices of 2**53 // bound_product
    otherwise (one slice for any real model)."""
    bound_product = max(1, bound_product)
    k32 = FLOAT32_EXACT // bound_product
    if k32 >= 1 and -(-k // k32) <= 4:
        return np.float32, k32
    return np.float64, max(1, FLOAT64_EXACT // bound_product)


def exact_matmul(xp, af, bf, bound_product: int):
    """af @ bf for integer-valued float arrays whose products are at most `bound_product` in
    magnitude: exact, as float32 (one float32-exact slice of K) or float64 (float32 slices
    summed in float64, or one float64 product); int64 arithmetic (an int64 result) past
    float64's range."""
    k = af.shape[-1]
    dt, step = exact_slice(bound_product, k)
    af = af.astype(dt, copy=False)
    bf = bf.astype(dt, copy=False)
    if step >= k:
        return xp.matmul(af, bf)
    if dt == np.float64:   # K * bound past 2**53: no float type is exact
        return xp.matmul(af.astype(np.int64), bf.astype(np.int64))
    acc = None
    for s in range(0, k, step):
        part = xp.matmul(af[..., s:s + step], bf[..., s:s + step, :]).astype(np.float64)
        acc = part if acc is None else acc + part
    return acc


def shifted(x, zp, dt):
    """x - zp as float type dt (zp broadcasting; None: x as it is)."""
    xf = x.astype(dt)
    if zp is not None:
        xf -= zp.astype(dt)
    return xf


def int_matmul(xp, a, a_zp, b, b_zp, prepare_b=None):
    """(a - a_zp) @ (b - b_zp), exact (an integer-valued float32 or float64 array, int64 past
    float64's range, which 8-bit operands never reach): the float
    type and K slicing come from the operands' ranges (:func:`exact_matmul`).

    `prepare_b(tag, make)`, when given, is the kernel's ``ctx.prepared`` over its raw B and
    b_zero_point inputs: b - b_zp (per float type) and its bound are then made once per session
    when they are constants."""
    integers = is_int(a.dtype) and is_int(b.dtype)   # (float8 operands: float64 as they are)
    if integers:
        b_bound = (prepare_b("b bound", lambda: shifted_bound(b.dtype, b_zp)) if prepare_b is not None
                   else shifted_bound(b.dtype, b_zp))
        bound = shifted_bound(a.dtype, a_zp) * b_bound
        dt = exact_slice(bound, a.shape[-1])[0]
    else:
        bound, dt = 0, np.float64
    af = shifted(a, None if a_zp is None else row_zero_point(a_zp, a), dt)
    bf = prepare_b(("b", dt), lambda: shifted(b, b_zp, dt)) if prepare_b is not None else shifted(b, b_zp, dt)
    return exact_matmul(xp, af, bf, bound) if integers else xp.matmul(af, bf)


@kernel("MatMulInteger", since=10,
        types={"T1": frozenset({"int8", "uint8"}),
               "T2": frozenset({"int8", "uint8"}),
               "T3": frozenset({"int32"})})
def MatMulInteger(ctx, A, B, a_zero_point=None, b_zero_point=None):
    """Integer matmul of zero-point-shifted inputs, int32 result (per-row / per-column zero points)."""
    acc = int_matmul(ctx.xp, A, a_zero_point, B, b_zero_point,
                     lambda tag, make: ctx.prepared(tag, (1, 3), (B, b_zero_point), make))
    return acc.astype(np.int32)


@kernel("QLinearMatMul", since=(10, 21),
        types={"T1": FLOAT8 | frozenset({"int8", "uint8"}),
               "T2": FLOAT8 | frozenset({"int8", "uint8"}),
               "T3": FLOAT8 | frozenset({"int8", "uint8"}),
               "TS": BFLOAT16 | frozenset({"float16", "float32"})})
def QLinearMatMul(ctx, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Quantized matmul: requantize the integer product by a_scale * b_scale / y_scale."""
    xp = ctx.xp
    acc = int_matmul(xp, a, a_zero_point, b, b_zero_point,
                     lambda tag, make: ctx.prepared(tag, (3, 5), (b, b_zero_point), make))
    work = requant_type(a.dtype, b.dtype, a.shape[-1])

    def multiplier():
        a_s = row_zero_point(a_scale, a).astype(np.float32)
        return (a_s * b_scale.astype(np.float32) / y_scale.astype(np.float32)).astype(work)
    mult = ctx.prepared(("multiplier", work, a.ndim >= 2), (1, 4, 6), (a_scale, b_scale, y_scale), multiplier)
    return quantize(xp, acc.astype(work, copy=False) * mult, y_zero_point.dtype, y_zero_point)


def requant_type(a_dtype, b_dtype, k: int):
    """The float type QLinearMatMul requantizes in: float32 when every int32 sum is exact in it
    whatever the zero points (K * range(a) * range(b) <= 2**24: K <= 258 for 8-bit types), else
    float64.  From types and K only, so the CUDA kernel (quant_gemm_int8.cu) decides alike
    without reading the zero points."""
    if not (is_int(a_dtype) and is_int(b_dtype)):
        return np.float64
    (alo, ahi), (blo, bhi) = int_range(a_dtype), int_range(b_dtype)
    return np.float32 if k * (ahi - alo) * (bhi - blo) <= FLOAT32_EXACT else np.float64


def shifted_weight(w, w_zp, dt):
    """A convolution weight less its zero point (one, or one per output channel), as dt."""
    wf = w.astype(dt)
    if w_zp is not None:
        wzp = w_zp.astype(dt)
        wf -= wzp.reshape((-1,) + (1,) * (w.ndim - 1)) if wzp.ndim == 1 and wzp.size > 1 else wzp.reshape(())
    return wf


def int_conv(ctx, x, x_zp, w, w_zp, auto_pad, dilations, group, kernel_shape, pads, strides, prepare_w=None):
    """The convolution of (x - x_zp) and (w - w_zp) (w_zp per output channel or one), exact: in
    float32 when each output's dot product (K = input channels per group x kernel size) stays
    within 2**24, else float64 (exact to K <= 2**53 / 65025 for 8-bit operands).
    `prepare_w(tag, make)` (the kernel's ``ctx.prepared`` over its raw w and w_zero_point),
    when given, keeps w - w_zp and its bound for the session when they are constants."""
    k = int(np.prod(w.shape[1:]))
    w_bound = (prepare_w("w bound", lambda: shifted_bound(w.dtype, w_zp)) if prepare_w is not None
               else shifted_bound(w.dtype, w_zp))
    bound = shifted_bound(x.dtype, x_zp) * w_bound
    dt = np.float32 if k * bound <= FLOAT32_EXACT else np.float64
    xf = shifted(x, x_zp, dt)   # padding then adds exact zeros
    wf = (prepare_w(("w", dt), lambda: shifted_weight(w, w_zp, dt)) if prepare_w is not None
          else shifted_weight(w, w_zp, dt))
    return conv_float(ctx, xf, wf, None, auto_pad, dilations, group, kernel_shape, pads, strides)


@kernel("QLinearConv", since=10,
        types={"T1": frozenset({"int8", "uint8"}),
               "T2": frozenset({"int8", "uint8"}),
               "T3": frozenset({"int8", "uint8"}),
               "T4": frozenset({"int32"})})
def QLinearConv(ctx, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                strides=None):
    """Quantized convolution: exact integer conv (+ int32 bias), requantized per output channel.
    The weight less its zero point, the bias and the requantization multiplier are made once
    per session when their inputs are initializers (KernelContext.prepared)."""
    xp = ctx.xp
    nd = x.ndim - 2
    acc = int_conv(ctx, x, x_zero_point, w, w_zero_point, auto_pad, dilations, group, kernel_shape, pads,
                   strides, lambda tag, make: ctx.prepared(tag, (3, 5), (w, w_zero_point), make))
    big = False
    if B is not None:
        b32, b64, b_max = ctx.prepared(("bias", nd), (8,), (B,), lambda: _conv_bias(B, nd))
        k = int(np.prod(w.shape[1:]))
        big = b_max is None or b_max + k * shifted_bound(x.dtype, x_zero_point) * shifted_bound(
            w.dtype, w_zero_point) > FLOAT32_EXACT
    if (xp is np and acc.dtype == np.float32 and not big and acc.ndim >= 3 and y_zero_point.size == 1
            and y_zero_point.dtype in COMPILED_INT_TYPES and jit.enabled()):
        # bias, multiplier and rounding in one compiled pass (the same float32 operations)
        bias, mult, p = ctx.prepared(("requantize", acc.shape[1]), (1, 4, 6, 7, 8),
                                     (x_scale, w_scale, y_scale, y_zero_point, B),
                                     lambda: _requantize_parameters(x_scale, w_scale, y_scale, y_zero_point, B,
                                                                    acc.shape[1]))
        return quant_compiled.requantize_channels(acc, bias, mult, p, y_zero_point.dtype)
    if B is not None:
        if acc.dtype == np.float32 and not big:
            acc += b32
        else:
            acc = acc.astype(np.float64) + b64
    mult = ctx.prepared(("multiplier", nd, acc.dtype), (1, 4, 6), (x_scale, w_scale, y_scale),
                        lambda: _conv_multiplier(x_scale, w_scale, y_scale, nd, acc.dtype))
    acc *= mult   # requantize in the accumulator's type (float32 as onnxruntime's)
    return quantize(xp, acc, y_zero_point.dtype, y_zero_point)


def _requantize_parameters(x_scale, w_scale, y_scale, y_zero_point, B, m):
    """(bias, multiplier, (zero, qmin, qmax)) of QLinearConv's compiled requantization, float32,
    bias and multiplier one per output channel (M = m)."""
    bias = np.zeros(m, np.float32) if B is None else B.reshape(-1).astype(np.float32)
    mult = np.broadcast_to(_conv_multiplier(x_scale, w_scale, y_scale, 0, np.float32).reshape(-1), (m,))
    return bias, np.ascontiguousarray(mult), quant_compiled.parameters(y_zero_point.reshape(-1)[0],
                                                                      *int_range(y_zero_point.dtype))


def _conv_bias(B, nd):
    """(float32, float64, max |B|) of an int32 conv bias shaped to broadcast over (N, M, ...);
    max None for a device array (no host round trip: then float64 is used)."""
    b = B.reshape((1, -1) + (1,) * nd)
    b_max = int(np.abs(B.astype(np.int64)).max(initial=0)) if isinstance(B, np.ndarray) else None
    return b.astype(np.float32), b.astype(np.float64), b_max


def _conv_multiplier(x_scale, w_scale, y_scale, nd, dtype):
    """x_scale * w_scale / y_scale per output channel (or one), shaped for (N, M, ...), as dtype."""
    ws = w_scale.astype(np.float32)
    if ws.ndim == 1:
        ws = ws.reshape((-1,) + (1,) * nd)
    return (x_scale.astype(np.float32) * ws / y_scale.astype(np.float32)).astype(dtype)
