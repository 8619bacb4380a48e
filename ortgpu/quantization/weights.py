"""Weight quantization shared by the writers: per-tensor or per-channel scales for a constant,
and int32 biases whose scale is the input scale times the weight scale."""
from __future__ import annotations

import numpy as np

from ortgpu.quantization.quant_types import QuantType, quantize_array, scale_zero_point

# Output-channel axis of each op's weight, for per-channel quantization.
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1, "Gemm": None}


def channel_axis(node, w: np.ndarray, extra: dict) -> int:
    custom = extra.get("QDQOpTypePerChannelSupportToAxis", {})
    if node.op_type in custom:
        return int(custom[node.op_type]) % w.ndim
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return WEIGHT_AXIS.get(node.op_type, 0) % w.ndim


def quantize_weight(w: np.ndarray, qt: QuantType, symmetric: bool, reduce_range: bool, axis=None):
    """(quantized, scale, zero_point); scale/zp are scalars, or vectors along axis."""
    if axis is None:
        scale, zp = scale_zero_point(w.min(), w.max(), qt, symmetric, reduce_range)
        return quantize_array(w, scale, zp, qt), scale, zp
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale, zp = scale_zero_point(w.min(axis=other), w.max(axis=other), qt, symmetric, reduce_range)
    return quantize_array(w, scale, zp, qt, axis), scale, zp


def quantize_bias(b: np.ndarray, x_scale, w_scale):
    """int32 bias at scale x_scale * w_scale (zero point 0), the scale the integer accumulator has."""
    scale = (np.asarray(x_scale, np.float64) * np.asarray(w_scale, np.float64)).astype(np.float32)
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(b.astype(np.float64) / scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    return q, scale
