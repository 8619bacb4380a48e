"""Softmax family and normalizations: Softmax, LogSoftmax, Hardmax, BatchNormalization,
LayerNormalization, GroupNormalization, InstanceNormalization, LpNormalization, LRN,
RMSNormalization, MeanVarianceNormalization.

Statistics are computed in float32 for float16/bfloat16 inputs (float64 stays float64)
and the results cast back to the input's element type.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu import half_compiled, jit, norm_compiled, softmax_compiled
from ortgpu.providers.cpu.batchnorm_compiled import scale_shift
from ortgpu.providers.kernels.reduce import float_work_dtype, normalize_axes
from ortgpu.providers.dtype_sets import BFLOAT16, FLOATS
from ortgpu.providers.registry import kernel


def _as(x, dt):
    return x if x.dtype == dt else x.astype(dt)


def _work(x):
    return _as(x, float_work_dtype(x.dtype))


def _softmax_axes(ctx, ndim, axis):
    """Opset < 13 coerces the input to 2-D at `axis` (so all trailing axes); 13+ is one axis."""
    if ndim == 0:
        return ()
    a = normalize_axes([axis], ndim)[0]
    return (a,) if ctx.opset >= 13 else tuple(range(a, ndim))


def softmax(xp, x, axes):
    """Numerically stable softmax of a float array over `axes` (computed in x's dtype); the
    exponent and the division reuse the shifted array (one temporary, not three)."""
    e = x - xp.max(x, axis=axes, keepdims=True)
    xp.exp(e, out=e)
    e /= xp.sum(e, axis=axes, keepdims=True)
    return e


def log_softmax(xp, x, axes):
    """Numerically stable log-softmax of a float array over `axes`."""
    s = x - xp.max(x, axis=axes, keepdims=True)
    s -= xp.log(xp.sum(xp.exp(s), axis=axes, keepdims=True))
    return s


@kernel("Softmax", since=(1, 11, 13), types={"T": FLOATS})
def Softmax(ctx, input, *, axis=-1):
    """exp(x) / sum(exp(x)) over `axis` (opset < 13: over all axes from `axis` on, default 1)."""
    axes = _softmax_axes(ctx, input.ndim, axis)
    if not axes:
        return ctx.xp.ones_like(input)
    if input.size == 0:   # an empty reduced axis has no maximum; the result is empty too
        return ctx.xp.empty_like(input)
    if axes[-1] == input.ndim - 1 and half_compiled.takes(ctx.xp, input):   # trailing axes: compiled rows
        y = softmax_compiled.softmax_rows(half_compiled.widen(input), axes[0])
        return half_compiled.convert(y, input.dtype)
    return _as(softmax(ctx.xp, _work(input), axes), input.dtype)


@kernel("LogSoftmax", since=(1, 11, 13), types={"T": FLOATS})
def LogSoftmax(ctx, input, *, axis=-1):
    """log(softmax(x)) over `axis`, computed stably (opset < 13: 2-D coercion at `axis`)."""
    axes = _softmax_axes(ctx, input.ndim, axis)
    if not axes:
        return ctx.xp.zeros_like(input)
    if input.size == 0:
        return ctx.xp.empty_like(input)
    return _as(log_softmax(ctx.xp, _work(input), axes), input.dtype)


@kernel("Hardmax", since=(1, 11, 13), types={"T": FLOATS})
def Hardmax(ctx, input, *, axis=-1):
    """1 at the first maximum along `axis`, 0 elsewhere (opset < 13: over the 2-D coercion)."""
    xp = ctx.xp
    axes = _softmax_axes(ctx, input.ndim, axis)
    if not axes or input.size == 0:
        return xp.ones_like(input) if not axes else xp.zeros_like(input)
    shape = input.shape
    lead = int(np.prod(shape[:axes[0]]))
    x = _work(input)
    if len(axes) > 1 or ctx.opset < 13:  # flatten the trailing axes into one
        x = x.reshape(lead, -1)
        ax = 1
    else:
        ax = axes[0]
    idx = xp.expand_dims(xp.argmax(x, axis=ax), ax)
    pos_shape = [1] * x.ndim
    pos_shape[ax] = x.shape[ax]
    pos = xp.arange(x.shape[ax]).reshape(pos_shape)
    return (pos == idx).astype(input.dtype).reshape(shape)


def _channel_shape(p, ndim):
    """A per-channel parameter of shape (C,) viewed as (C, 1, ..., 1) for an (N, C, ...) input."""
    return p.reshape((-1,) + (1,) * (ndim - 2)) if p.ndim == 1 else p


def batch_norm_inference(xp, X, scale, B, mean, var, epsilon, relu: bool = False):
    """BatchNormalization of X (N, C, ...) with the given statistics, x * inv + shift per
    channel computed in X's work dtype and returned in X's; then Relu when `relu`
    (FusedBatchNormalization), in the same pass where it is compiled (rounding to X's dtype
    keeps the sign, so Relu before or after it gives the same values)."""
    wdt = float_work_dtype(X.dtype)
    x = _as(X, wdt)
    sc, b, mean, var = (_channel_shape(_as(p, wdt), X.ndim) for p in (scale, B, mean, var))
    inv = sc / xp.sqrt(var + wdt.type(epsilon))
    shift = b - mean * inv
    per_channel = X.ndim >= 2 and X.size and inv.size == shift.size == X.shape[1]
    if xp is np and per_channel and jit.enabled():
        return _as(scale_shift(x, inv, shift, relu), X.dtype)  # one compiled pass, no temporary
    y = _as(x * inv + shift, X.dtype)
    return xp.maximum(y, y.dtype.type(0), out=y) if relu else y


@kernel("BatchNormalization", since=(1, 6, 7, 9, 14, 15),
        types={"T": FLOATS, "U": FLOATS, "T1": FLOATS, "T2": FLOATS})
def BatchNormalization(ctx, X, scale, B, input_mean, input_var, *, epsilon=1e-5, momentum=0.9,
                       training_mode=0, is_test=0, spatial=1, consumed_inputs=None):
    """Inference normalizes with the given statistics; training mode (training_mode=1 from 14,
    extra outputs before) uses the batch statistics and returns the updated running ones."""
    xp = ctx.xp
    training = bool(training_mode) if ctx.opset >= 14 else (ctx.num_outputs > 1 and not is_test)
    if not training:
        return batch_norm_inference(xp, X, scale, B, input_mean, input_var, epsilon)
    wdt = float_work_dtype(X.dtype)
    x = _as(X, wdt)
    nd = X.ndim
    sc, b = _channel_shape(_as(scale, wdt), nd), _channel_shape(_as(B, wdt), nd)
    mean, var = _channel_shape(_as(input_mean, wdt), nd), _channel_shape(_as(input_var, wdt), nd)
    axes = (0,) + tuple(range(2, nd)) if (spatial or ctx.opset >= 9) else (0,)
    bmean = xp.mean(x, axis=axes, keepdims=True)
    bvar = xp.mean(xp.square(x - bmean), axis=axes, keepdims=True)
    y = (x - bmean) / xp.sqrt(bvar + wdt.type(epsilon)) * sc + b
    stat_dtype = input_mean.dtype
    new_mean = mean * wdt.type(momentum) + bmean.reshape(mean.shape) * wdt.type(1 - momentum)
    new_var = var * wdt.type(momentum) + bvar.reshape(var.shape) * wdt.type(1 - momentum)
    outs = [_as(y, X.dtype), _as(new_mean.reshape(input_mean.shape), stat_dtype),
            _as(new_var.reshape(input_var.shape), stat_dtype)]
    if ctx.num_outputs > 3:  # saved_mean / saved_var of the old training outputs
        outs += [_as(bmean.reshape(input_mean.shape), stat_dtype),
                 _as(bvar.reshape(input_var.shape), stat_dtype)]
    return tuple(outs[:ctx.num_outputs])


@kernel("InstanceNormalization", since=(1, 6, 22), types={"T": FLOATS})
def InstanceNormalization(ctx, input, scale, B, *, epsilon=1e-5, consumed_inputs=None):
    """(x - mean) / sqrt(var + epsilon) * scale + B, statistics per sample and channel."""
    xp = ctx.xp
    x = _work(input)
    axes = tuple(range(2, input.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    wdt = x.dtype
    y = d / xp.sqrt(var + wdt.type(epsilon))
    y = y * _channel_shape(_as(scale, wdt), input.ndim) + _channel_shape(_as(B, wdt), input.ndim)
    return _as(y, input.dtype)


def _stats_dtype(ctx, i, X, stash_type):
    dt = ctx.output_dtype(i)
    if dt is not None:
        return dt
    return np.dtype(np.float32) if stash_type == 1 else X.dtype


def _layer_norm(xp, x, axes, scale, bias, epsilon):
    """(y, mean, inv_std) of x (in its work dtype) over `axes`, NumPy / CuPy arrays."""
    wdt = x.dtype
    mean = xp.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    inv = 1.0 / xp.sqrt(var + wdt.type(epsilon))
    y = d * inv
    y *= _as(scale, wdt)
    if bias is not None:
        y += _as(bias, wdt)
    return y, mean, inv


@kernel("LayerNormalization", since=17, types={"T": FLOATS, "U": BFLOAT16 | frozenset({"float32"})})
def LayerNormalization(ctx, X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Normalize over the axes from `axis` on; outputs Y and (optionally) Mean and InvStdDev,
    which keep the normalized axes as size 1."""
    xp = ctx.xp
    a = normalize_axes([axis], X.ndim)[0]
    if norm_compiled.compiled_rows(xp, X, a, Scale, B):   # one compiled pass per row
        y, mean, inv = norm_compiled.norm_rows(X, a, Scale, B, epsilon)
    else:
        y, mean, inv = _layer_norm(xp, _work(X), tuple(range(a, X.ndim)), Scale, B, epsilon)
    y = half_compiled.convert(y, X.dtype)
    if ctx.num_outputs == 1:
        return y
    outs = (y, _as(mean, _stats_dtype(ctx, 1, X, stash_type)), _as(inv, _stats_dtype(ctx, 2, X, stash_type)))
    return outs[:ctx.num_outputs]


@kernel("RMSNormalization", since=23, types={"T": FLOATS, "V": FLOATS})
def RMSNormalization(ctx, X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """X / sqrt(mean(X^2 over the axes from `axis` on) + epsilon) * scale."""
    xp = ctx.xp
    x = _work(X)
    wdt = x.dtype
    a = normalize_axes([axis], X.ndim)[0]
    axes = tuple(range(a, X.ndim))
    ms = xp.mean(x * x, axis=axes, keepdims=True)
    y = x / xp.sqrt(ms + wdt.type(epsilon))
    y *= _as(scale, wdt)
    return _as(y, X.dtype)


@kernel("GroupNormalization", since=(18, 21), types={"T": FLOATS})
def GroupNormalization(ctx, X, scale, bias, *, num_groups, epsilon=1e-5, stash_type=1):
    """Normalize each of `num_groups` channel groups per sample; scale/bias are per group
    (shape G) at opset 18 and per channel (shape C) from 21."""
    xp = ctx.xp
    x = _work(X)
    wdt = x.dtype
    n, c = X.shape[0], X.shape[1]
    g = int(num_groups)
    if c % g:
        raise ValueError(f"GroupNormalization: {c} channels are not divisible into {g} groups")
    grouped = x.reshape(n, g, -1)
    mean = xp.mean(grouped, axis=2, keepdims=True)
    d = grouped - mean
    var = xp.mean(d * d, axis=2, keepdims=True)
    y = d / xp.sqrt(var + wdt.type(epsilon))
    if ctx.opset < 21:
        y = y * _as(scale, wdt).reshape(1, g, 1) + _as(bias, wdt).reshape(1, g, 1)
        return _as(y.reshape(X.shape), X.dtype)
    y = y.reshape(X.shape)
    y = y * _channel_shape(_as(scale, wdt), X.ndim) + _channel_shape(_as(bias, wdt), X.ndim)
    return _as(y, X.dtype)


@kernel("LpNormalization", since=(1, 22), types={"T": FLOATS})
def LpNormalization(ctx, input, *, axis=-1, p=2):
    """x / ||x||_p along `axis` (p is 1 or 2); a zero norm gives 0."""
    xp = ctx.xp
    x = _work(input)
    if p == 1:
        norm = xp.sum(xp.abs(x), axis=axis, keepdims=True)
    elif p == 2:
        norm = xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
    else:
        raise ValueError(f"LpNormalization: p must be 1 or 2, got {p}")
    safe = xp.where(norm == 0, xp.ones_like(norm), norm)
    y = xp.where(norm == 0, xp.zeros_like(x), x / safe)
    return _as(y, input.dtype)


@kernel("LRN", since=(1, 13), types={"T": FLOATS})
def LRN(ctx, X, *, size, alpha=1e-4, beta=0.75, bias=1.0):
    """Local response normalization across channels: x / (bias + alpha/size * sum x^2)^beta,
    the window [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    xp = ctx.xp
    x = _work(X)
    wdt = x.dtype
    c = X.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pad = [(0, 0)] * X.ndim
    pad[1] = (before, after)
    sq = xp.pad(x * x, pad)
    total = xp.zeros_like(x)
    for k in range(size):  # `size` is small: one shifted slice per window position
        total += sq[:, k:k + c]
    y = x / (wdt.type(bias) + wdt.type(alpha / size) * total) ** wdt.type(beta)
    return _as(y, X.dtype)


@kernel("MeanVarianceNormalization", since=(9, 13), types={"T": FLOATS})
def MeanVarianceNormalization(ctx, X, *, axes=(0, 2, 3)):
    """(X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9) over `axes`, as the ONNX function body."""
    xp = ctx.xp
    x = _work(X)
    ax = normalize_axes(axes, X.ndim)
    mean = xp.mean(x, axis=ax, keepdims=True)
    var = xp.mean(x * x, axis=ax, keepdims=True) - mean * mean
    y = (x - mean) / (xp.sqrt(var) + x.dtype.type(1e-9))
    return _as(y, X.dtype)
