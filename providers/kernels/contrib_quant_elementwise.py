"""Per-tensor quantized element-wise ops of onnxruntime's com.microsoft domain (QOperator format):
QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearWhere and
QLinearConcat.

Each dequantizes its inputs to float32, computes, and requantizes with round-half-to-even and
saturation to the output zero point's type.  onnxruntime computes some of these through lookup
tables or fixed-point steps, so its results may differ from these by one quantization step.

On 8-bit inputs the one-input ops (and QLinearConcat's requantization) run as a 256-entry
lookup table made by the same float32 body, so results are unchanged: one take per run, the
table kept for the session when the scales and zero points are initializers.  QLinearAdd and
QLinearMul of same-shape tensors run a compiled body (providers/cpu/quant_compiled.py) that
does the same float32 operations in one pass.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.cpu import jit, quant_compiled
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.quantize import int_range, quantize
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
_Q8 = frozenset({"int8", "uint8", "float32"})
_BYTES = frozenset({np.dtype(np.int8), np.dtype(np.uint8)})
_LUT_MIN_SIZE = 1024   # without a kept table, one is made for inputs of at least this many values


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


def _binary_parameters(A, params):
    """The compiled body's parameter vector (scales, zero points, clamp range) of a per-tensor
    QLinearAdd/QLinearMul to an 8-bit type, or None when a parameter holds more than one value
    or the output is not 8-bit (the NumPy body then runs, and names a wrong parameter)."""
    if any(p is not None and p.size != 1 for p in params):
        return None
    zc = params[-1]
    dtype = zc.dtype if zc is not None else A.dtype
    if dtype not in _BYTES:
        return None
    return quant_compiled.parameters(*(0 if p is None else p.reshape(-1)[0] for p in params), *int_range(dtype))


def _compiled_binary(ctx, op, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point):
    """QLinearAdd / QLinearMul of same-shape 8-bit host tensors in one compiled pass, or None
    when the case is not that one (the NumPy body runs)."""
    if not (ctx.xp is np and A.shape == B.shape and A.dtype in _BYTES and B.dtype in _BYTES and jit.enabled()):
        return None
    params = (A_scale, A_zero_point, B_scale, B_zero_point, C_scale, C_zero_point)
    p = ctx.prepared(("parameters", A.dtype), (1, 2, 4, 5, 6, 7), params, lambda: _binary_parameters(A, params))
    if p is None:
        return None
    return quant_compiled.binary(op, A, B, p, C_zero_point.dtype if C_zero_point is not None else A.dtype)


def _lookup(ctx, X, at, params, body, tag="table"):
    """body(X) for an 8-bit X as a 256-entry table of body over every byte value, indexed by
    X's bytes (identical results: the table is the same element-wise body); kept for the
    session under `tag` when the parameters at input positions `at` are constants.  None when X is not
    8-bit or is small and the table could not be kept."""
    if X.dtype not in _BYTES:
        return None
    xp = ctx.xp
    if X.size < _LUT_MIN_SIZE and not all(ctx.is_constant(i) for i in at):
        return None
    table = ctx.prepared((tag, X.dtype), at, params,
                         lambda: body(xp.arange(256, dtype=xp.uint8).view(X.dtype)))
    return xp.take(table, X.view(xp.uint8))


@kernel("QLinearAdd", since=1, domain=MS, types={"*": _Q8})
def QLinearAdd(ctx, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) + dequantize(B)), broadcasting."""
    xp = ctx.xp
    y = _compiled_binary(ctx, "add", A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point)
    if y is not None:
        return y
    v = dequant(xp, A, A_scale, A_zero_point, "QLinearAdd") + dequant(xp, B, B_scale, B_zero_point, "QLinearAdd")
    return requant(xp, v, C_scale, C_zero_point, A, "QLinearAdd")


@kernel("QLinearMul", since=1, domain=MS, types={"*": _Q8})
def QLinearMul(ctx, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """C = quantize(dequantize(A) * dequantize(B)), broadcasting."""
    xp = ctx.xp
    y = _compiled_binary(ctx, "mul", A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point)
    if y is not None:
        return y
    v = dequant(xp, A, A_scale, A_zero_point, "QLinearMul") * dequant(xp, B, B_scale, B_zero_point, "QLinearMul")
    return requant(xp, v, C_scale, C_zero_point, A, "QLinearMul")


@kernel("QLinearSigmoid", since=1, domain=MS, types={"*": _Q8})
def QLinearSigmoid(ctx, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None):
    """Y = quantize(sigmoid(dequantize(X)))."""
    xp = ctx.xp

    def body(x):
        v = dequant(xp, x, X_scale, X_zero_point, "QLinearSigmoid")
        return requant(xp, 1 / (1 + xp.exp(-v)), Y_scale, Y_zero_point, x, "QLinearSigmoid")
    y = _lookup(ctx, X, (1, 2, 3, 4), (X_scale, X_zero_point, Y_scale, Y_zero_point), body)
    return body(X) if y is None else y


@kernel("QLinearLeakyRelu", since=1, domain=MS, types={"*": _Q8})
def QLinearLeakyRelu(ctx, X, X_scale, X_zero_point, Y_scale, Y_zero_point=None, *, alpha=0.01):
    """Y = quantize(leaky_relu(dequantize(X), alpha))."""
    xp = ctx.xp

    def body(x):
        v = dequant(xp, x, X_scale, X_zero_point, "QLinearLeakyRelu")
        return requant(xp, xp.where(v >= 0, v, v * np.float32(alpha)), Y_scale, Y_zero_point, x, "QLinearLeakyRelu")
    y = _lookup(ctx, X, (1, 2, 3, 4), (X_scale, X_zero_point, Y_scale, Y_zero_point), body)
    return body(X) if y is None else y


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

        def body(v, s=s, z=z):
            return requant(xp, dequant(xp, v, s, z, "QLinearConcat"), ys, yz, v, "QLinearConcat")
        part = _lookup(ctx, x, (0, 1, 3 + k, 4 + k), (Y_scale, Y_zero_point, s, z), body, ("table", k))
        parts.append(body(x) if part is None else part)
    return xp.concatenate(parts, axis=axis)
