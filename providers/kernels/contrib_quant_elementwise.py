"""Per-tensor quantized element-wise ops of onnxruntime's com.microsoft domain (QOperator format):
QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearWhere and
QLinearConcat.

Each dequantizes its inputs to float32, computes, and requantizes with round-half-to-even and
saturation to the output zero point's type.  onnxruntime computes some of these through lookup
tables or fixed-point steps, so its results may differ from these by one quantization step.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.quantize import quantize
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
_Q8 = frozenset({"int8", "uint8", "float32"})


def _scalar(xp, p, name, op):
    if p is not None and p.size != 1:
        raise InvalidArgument(f"{op}: {name} must be a scalar (per-tensor quantization), got shape {tuple(p.shape)}")
    return None if p is None else p.reshape(())


def dequant(xp, x, scale, zero_point, op="", names=("scale", "zero_point")):
    """(x - zero_point) * scale in float32, per tensor."""
    v = x.astype(xp.float32)
    zp = _scalar(xp, zero_point, names[1], op)
    if zp is not None:
        v = v - zp.astype(xp.float32)
    return v * _scalar(xp, scale, names[0], op).astype(xp.float32)


def requant(xp, v, scale, zero_point, like, op=""):
    """float32 values quantized per tensor to the zero point's type (or `like`'s when absent)."""
    zp = _scalar(xp, zero_point, "zero point", op)
    dtype = zp.dtype if zp is not None else like.dtype
    return quantize(xp, v / _scalar(xp, scale, "scale", op).astype(xp.float32), dtype, zp)


@kernel("QLinearAdd", since=1, domain=MS, types={"*": _Q8})
def QLinearAdd(ctx, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) + dequantize(B)), broadcasting."""
    xp = ctx.xp
    v = dequant(xp, A, A_scale, A_zero_point, "QLinearAdd") + dequant(xp, B, B_scale, B_zero_point, "QLinearAdd")
    return requant(xp, v, C_scale, C_zero_point, A, "QLinearAdd")


@kernel("QLinearMul", since=1, domain=MS, types={"*": _Q8})
def QLinearMul(ctx, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) * dequantize(B)), broadcasting."""
    xp = ctx.xp
    v = dequant(xp, A, A_scale, A_zero_point, "QLinearMul") * dequant(xp, B, B_scale, B_zero_point, "QLinearMul")
    return requant(xp, v, C_scale, C_zero_point, A, "QLinearMul")


@kernel("QLinearSigmoid", since=1, domain=MS, types={"*": _Q8})
def QLinearSigmoid(ctx, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    """Y = quantize(sigmoid(dequantize(X)))."""
    xp = ctx.xp
    v = dequant(xp, X, X_scale, X_zero_point, "QLinearSigmoid")
    return requant(xp, 1 / (1 + xp.exp(-v)), Y_scale, Y_zero_point, X, "QLinearSigmoid")


@kernel("QLinearLeakyRelu", since=1, domain=MS, types={"*": _Q8})
def QLinearLeakyRelu(ctx, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None, *, alpha=0.01):
    """Y = quantize(leaky_relu(dequantize(X), alpha))."""
    xp = ctx.xp
    v = dequant(xp, X, X_scale, X_zero_point, "QLinearLeakyRelu")
    return requant(xp, xp.where(v >= 0, v, v * np.float32(alpha)), Y_scale, Y_zero_point, X, "QLinearLeakyRelu")


@kernel("QLinearSoftmax", since=1, domain=MS, types={"*": _Q8})
def QLinearSoftmax(ctx, X, X_scale, x_zero_point, y_scale, y_zero_point, *, axis=-1, opset):
    """Softmax of the dequantized input, requantized.  `opset` is the Softmax version it stands
    for: before 13 the axes from `axis` on are flattened into one."""
    xp = ctx.xp
    v = dequant(xp, X, X_scale, x_zero_point, "QLinearSoftmax")
    ax = axis % max(X.ndim, 1)
    axes = tuple(range(ax, X.ndim)) if opset < 13 else (ax,)
    return requant(xp, softmax(xp, v, axes), y_scale, y_zero_point, X, "QLinearSoftmax")


@kernel("QLinearWhere", since=1, domain=MS, types={"*": _Q8 | {"bool"}})
def QLinearWhere(ctx, condition, X, x_scale, x_zero_point, Y, y_scale, y_zero_point, z_scale, z_zero_point):
    """Z = X where condition else Y, both requantized to Z's scale and zero point."""
    xp = ctx.xp
    v = xp.where(condition, dequant(xp, X, x_scale, x_zero_point, "QLinearWhere"),
                 dequant(xp, Y, y_scale, y_zero_point, "QLinearWhere"))
    return requant(xp, v, z_scale, z_zero_point, X, "QLinearWhere")


@kernel("QLinearConcat", since=1, domain=MS, types={"*": _Q8})
def QLinearConcat(ctx, Y_scale, Y_zero_point, *inputs, axis):
    """Concatenate (tensor, scale, zero point) triples along `axis`, each requantized to Y's
    parameters (exact for a tensor already in them: the rounding undoes the float error)."""
    xp = ctx.xp
    if len(inputs) % 3 or not inputs:
        raise InvalidArgument(f"QLinearConcat: inputs after Y_scale, Y_zero_point come in (tensor, scale, zero point) "
                         f"triples; got {len(inputs)}")
    ys, yz = _scalar(xp, Y_scale, "Y_scale", "QLinearConcat"), _scalar(xp, Y_zero_point, "Y_zero_point", "QLinearConcat")
    parts = []
    for k in range(0, len(inputs), 3):
        x, s, z = inputs[k:k + 3]
        if x.dtype != yz.dtype:
            raise InvalidArgument(f"QLinearConcat: input {k // 3} has type {x.dtype}, Y_zero_point {yz.dtype}")
        parts.append(requant(xp, dequant(xp, x, s, z, "QLinearConcat"), ys, yz, x, "QLinearConcat"))
    return xp.concatenate(parts, axis=axis)
