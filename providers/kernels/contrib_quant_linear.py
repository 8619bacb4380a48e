"""QuantizeLinear and DequantizeLinear of onnxruntime's com.microsoft domain: the ai.onnx ops of
opset 10-13 with int16/uint16/int4/uint4 types and an optional `axis` (per tensor without it)."""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.cpu import jit, quant_compiled
from ortgpu.providers.kernels.quantize import COMPILED_INT_TYPES, broadcast_param, int_range, quantize
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
_INTS = frozenset({"int8", "uint8", "int16", "uint16", "int32", "int4", "uint4"})
_FLOATS = frozenset({"float32", "float16"})


def _param(xp, p, x, axis, op, name):
    if axis is None and p.size != 1:
        raise InvalidArgument(f"{op}: {name} must be a scalar without an axis attribute, got shape {tuple(p.shape)}")
    if axis is not None and p.ndim == 1 and p.size != x.shape[axis % x.ndim]:
        raise InvalidArgument(f"{op}: {name} has {p.size} values for axis {axis} of size {x.shape[axis % x.ndim]}")
    return broadcast_param(xp, p, x.shape, 1 if axis is None else axis, 0)


@kernel("QuantizeLinear", since=1, domain=MS, types={"*": _FLOATS | _INTS})
def QuantizeLinear(ctx, x, y_scale, y_zero_point=None, *, axis=None):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point); uint8 without a zero point."""
    xp = ctx.xp
    dtype = y_zero_point.dtype if y_zero_point is not None else np.dtype(np.uint8)
    if (xp is np and y_scale.size == 1 and x.dtype == np.float32 and dtype in COMPILED_INT_TYPES
            and (y_zero_point is None or y_zero_point.size == 1) and jit.enabled()
            and (axis is None or (y_scale.ndim == 0 and (y_zero_point is None or y_zero_point.ndim == 0)))):
        # per tensor to an 8/16-bit integer: one compiled pass
        p = ctx.prepared("parameters", (1, 2), (y_scale, y_zero_point), lambda: quant_compiled.parameters(
            y_scale.reshape(-1)[0], 0 if y_zero_point is None else y_zero_point.reshape(-1)[0], *int_range(dtype)))
        return quant_compiled.quantize_per_tensor(x, p, dtype)
    scale = _param(xp, y_scale, x, axis, "QuantizeLinear", "y_scale").astype(xp.float32)
    zp = None if y_zero_point is None else _param(xp, y_zero_point, x, axis, "QuantizeLinear", "y_zero_point")
    return quantize(xp, (x.astype(xp.float32) / scale).astype(xp.float32), dtype, zp)


@kernel("DequantizeLinear", since=1, domain=MS, types={"*": _FLOATS | _INTS})
def DequantizeLinear(ctx, x, x_scale, x_zero_point=None, *, axis=None):
    """y = (x - x_zero_point) * x_scale, in the scale's type."""
    xp = ctx.xp
    v = x.astype(xp.float32)
    if x_zero_point is not None:
        v = v - _param(xp, x_zero_point, x, axis, "DequantizeLinear", "x_zero_point").astype(xp.float32)
    return (v * _param(xp, x_scale, x, axis, "DequantizeLinear", "x_scale").astype(xp.float32)).astype(x_scale.dtype)
