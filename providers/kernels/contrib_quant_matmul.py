"""Integer matrix products of onnxruntime's com.microsoft domain that end in float (or requantized)
values: MatMulIntegerToFloat, DynamicQuantizeMatMul and QGemm.

The integer products are exact (float32 or float64 BLAS by the operands' ranges: quantize.int_matmul); the scales
are applied in float32 afterwards, as onnxruntime's kernels do.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument, NotImplemented  # noqa: A004
from ortgpu.providers.kernels.quantize import DynamicQuantizeLinear, int_matmul, quantize
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
_INT8 = frozenset({"int8", "uint8"})


def _column_param(xp, p, n, name, op):
    """A scale or zero point that is a scalar or one value per output column."""
    if p.size not in (1, n):
        raise InvalidArgument(f"{op}: {name} has {p.size} values, expected 1 or {n} (one per column of B)")
    return p.reshape(()) if p.size == 1 else p.reshape(-1)


def scaled_product(ctx, A, a_zp, a_scale, B, b_zp, b_scale, bias, op, at):
    """(A - a_zp) @ (B - b_zp) * a_scale * b_scale (+ bias), in float32.  `at` holds the input
    positions of B, b_zp, b_scale and bias: what derives from them alone (B - b_zp as float,
    the column scales, the float bias) is made once per session when they are initializers."""
    xp = ctx.xp
    n = B.shape[-1]
    i_b, i_bzp, i_bs, i_bias = at
    acc = int_matmul(xp, A, None if a_zp is None else a_zp.reshape(()), B,
                     None if b_zp is None else _column_param(xp, b_zp, n, "b_zero_point", op),
                     lambda tag, make: ctx.prepared(tag, (i_b, i_bzp), (B, b_zp), make))
    b_s = ctx.prepared("b scale", (i_bs,), (b_scale,),
                       lambda: _column_param(xp, b_scale.astype(xp.float32), n, "b_scale", op))
    y = acc.astype(xp.float32)
    y *= a_scale.astype(xp.float32).reshape(()) * b_s
    if bias is not None:
        y += ctx.prepared("bias", (i_bias,), (bias,), lambda: bias.astype(xp.float32))
    return y


@kernel("MatMulIntegerToFloat", since=1, domain=MS, types={"*": _INT8 | {"float32", "float16"}})
def MatMulIntegerToFloat(ctx, A, B, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
    """Y = (A - a_zero_point) @ (B - b_zero_point) * a_scale * b_scale + bias, in the scales' type."""
    if a_scale.size != 1 or (a_zero_point is not None and a_zero_point.size != 1):
        raise NotImplemented("MatMulIntegerToFloat: a_scale and a_zero_point must be scalars "
                                  f"(got {a_scale.size} and {None if a_zero_point is None else a_zero_point.size} values)")
    y = scaled_product(ctx, A, a_zero_point, a_scale, B, b_zero_point, b_scale, bias, "MatMulIntegerToFloat",
                       (1, 5, 3, 6))
    return y.astype(a_scale.dtype)


@kernel("DynamicQuantizeMatMul", since=1, domain=MS, types={"*": _INT8 | {"float32"}})
def DynamicQuantizeMatMul(ctx, A, B, b_scale, b_zero_point=None, bias=None):
    """A is quantized to uint8 from its own range (DynamicQuantizeLinear), then multiplied with the
    quantized B as MatMulIntegerToFloat does."""
    qa, a_scale, a_zp = DynamicQuantizeLinear(ctx, A)
    return scaled_product(ctx, qa, a_zp, a_scale, B, b_zero_point, b_scale, bias, "DynamicQuantizeMatMul",
                          (1, 3, 2, 4))


@kernel("QGemm", since=1, domain=MS, types={"*": _INT8 | {"float32", "int32"}})
def QGemm(ctx, A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None,
          *, alpha=1.0, transA=0, transB=0):
    """alpha * (A' - a_zp) @ (B' - b_zp) * a_scale * b_scale (+ C, an int32 in the same scale), as float,
    or requantized by y_scale / y_zero_point when they are given.  B' - b_zp, C as float and the
    output scale are made once per session when their inputs are initializers."""
    xp = ctx.xp
    a = A.T if transA else A
    b = B.T if transB else B
    n = b.shape[1]
    b_zp = None if b_zero_point is None else _column_param(xp, b_zero_point, n, "b_zero_point", "QGemm")
    acc = int_matmul(xp, a, a_zero_point.reshape(()), b, b_zp,
                     lambda tag, make: ctx.prepared(tag, (3, 5), (B, b_zero_point), make))
    if C is not None:
        acc = acc + ctx.prepared("C", (6,), (C,), lambda: C.astype(np.float64))
    scale = ctx.prepared("scale", (1, 4), (a_scale, b_scale), lambda: (
        np.float32(alpha) * a_scale.astype(xp.float32).reshape(()) *
        _column_param(xp, b_scale.astype(xp.float32), n, "b_scale", "QGemm")))
    y = acc.astype(xp.float32) * scale
    if y_scale is None:
        return y
    if y_zero_point is None:
        raise InvalidArgument("QGemm: y_scale is given without y_zero_point (needed for the output type)")
    return quantize(xp, y / y_scale.astype(xp.float32).reshape(()), y_zero_point.dtype, y_zero_point.reshape(()))


@kernel("MatMulInteger16", since=1, domain=MS, types={"*": frozenset({"int16", "uint16", "int32", "uint32"})})
def MatMulInteger16(ctx, A, B):
    """numpy.matmul of 16-bit integers, accumulated in 32 bits (int32, or uint32 when both are unsigned)."""
    xp = ctx.xp
    out = xp.uint32 if A.dtype == xp.uint16 and B.dtype == xp.uint16 else xp.int32
    return xp.matmul(A.astype(xp.int64), B.astype(xp.int64)).astype(out)
