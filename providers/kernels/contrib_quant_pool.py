"""Spatial quantized ops of onnxruntime's com.microsoft domain: QLinearGlobalAveragePool,
QLinearAveragePool and the com.microsoft QLinearConv, each with an optional channels-last layout.

The pools average the dequantized input (the float AveragePool of pool.py, and on the CPU the
compiled bodies of cpu/pool_compiled.py, as the float pools) and requantize; the
convolution is ai.onnx QLinearConv's exact integer convolution (quantize.py).
"""
from __future__ import annotations

from ortgpu.errors import InvalidArgument
from ortgpu.providers.kernels.contrib_quant_elementwise import dequant, requant
from ortgpu.providers.cpu import pool_compiled
from ortgpu.providers.kernels.pool import AveragePool, compiled_here
from ortgpu.providers.kernels.quantize import QLinearConv as onnx_qlinear_conv
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
_Q8 = frozenset({"int8", "uint8", "float32"})


def to_channels_first(xp, x):
    """N, spatial..., C -> N, C, spatial..."""
    return xp.moveaxis(x, -1, 1)


def to_channels_last(xp, x):
    return xp.moveaxis(x, 1, -1)


@kernel("QLinearGlobalAveragePool", since=1, domain=MS, types={"*": _Q8})
def QLinearGlobalAveragePool(ctx, X, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last=0):
    """Mean over the spatial axes of the dequantized input, requantized; N and C are kept."""
    xp = ctx.xp
    if X.ndim < 3:
        raise InvalidArgument(f"QLinearGlobalAveragePool: input X needs rank >= 3, got shape {tuple(X.shape)}")
    axes = tuple(range(1, X.ndim - 1)) if channels_last else tuple(range(2, X.ndim))
    v = dequant(xp, X, x_scale, x_zero_point, "QLinearGlobalAveragePool")
    if compiled_here(xp) and not channels_last and v.size:  # (channels last: NumPy sums along C already)
        mean = pool_compiled.global_mean(v)
    else:
        mean = v.mean(axis=axes, keepdims=True)
    return requant(xp, mean, y_scale, y_zero_point, X, "QLinearGlobalAveragePool")


@kernel("QLinearAveragePool", since=1, domain=MS, types={"*": _Q8})
def QLinearAveragePool(ctx, X, x_scale, x_zero_point=None, y_scale=None, y_zero_point=None, *,
                       auto_pad="NOTSET", ceil_mode=0, channels_last=0, count_include_pad=0,
                       kernel_shape, pads=None, strides=None):
    """AveragePool of the dequantized input, requantized."""
    xp = ctx.xp
    v = dequant(xp, X, x_scale, x_zero_point, "QLinearAveragePool")
    if channels_last:
        v = to_channels_first(xp, v)
    y = AveragePool(ctx, v, auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                    kernel_shape=kernel_shape, pads=pads, strides=strides)
    if channels_last:
        y = to_channels_last(xp, y)
    return requant(xp, y, y_scale, y_zero_point, X, "QLinearAveragePool")


@kernel("QLinearConv", since=1, domain=MS, types={"*": _Q8 | {"int32"}})
def QLinearConv(ctx, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                auto_pad="NOTSET", channels_last=0, dilations=None, group=1, kernel_shape=None, pads=None,
                strides=None):
    """ai.onnx QLinearConv; with channels_last, x and y are N, spatial..., C (w stays M, C/group, k...)."""
    xp = ctx.xp
    if channels_last:
        x = to_channels_first(xp, x)
    y = onnx_qlinear_conv(ctx, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B,
                          auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                          pads=pads, strides=strides)
    return to_channels_last(xp, y) if channels_last else y
