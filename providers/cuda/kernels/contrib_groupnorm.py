"""Raw CUDA launchers for GroupNorm and SkipGroupNorm (com.microsoft, NHWC; source:
contrib_groupnorm.cu).

The kernel takes float32/float16 X of shape (N, H, W, C) with channels_last=1, gamma/beta of
shape (C,) in X's type or float32, a skip of shape (N, H, W, C), (N, 1, 1, C) or (N, C) and a
bias (C,) in X's type.  Statistics are float32, as ``providers/kernels/contrib_normalization.py``
computes them; that kernel handles every other case and raises the errors.

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import contrib_normalization as shared
from ortgpu.providers.registry import kernel

SOURCE = "contrib_groupnorm.cu"
F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
PAIRS = ((F32, F32), (F16, F16), (F16, F32))   # (X's type, gamma/beta's type)


def kernel_name(dt, gdt) -> str:
    return f"group_norm_nhwc<{cu.CTYPE[dt]}, {cu.CTYPE[gdt]}>"


UNITS = {dt: cu.declare(SOURCE, cu.CTYPE[dt], [kernel_name(dt, g) for d, g in PAIRS if d == dt])
         for dt in (F32, F16)}


def _skip_hw(X, skip):
    """Pixels of skip per image (H * W or 1), or None when its shape is not one the kernel reads."""
    n, h, w, c = X.shape
    if skip.shape == X.shape:
        return h * w
    if skip.shape in ((n, 1, 1, c), (n, c)):
        return 1
    return None


def run_group_norm(X, gamma, beta, skip, bias, *, epsilon, groups, activation, channels_last, want_sum):
    """(Y, sum or None) on the GPU, or None when the kernel does not take these inputs."""
    dt = X.dtype
    if dt not in UNITS or not channels_last or X.ndim != 4 or X.size == 0 or activation not in (0, 1):
        return None
    n, h, w, c = X.shape
    if groups <= 0 or c % groups or gamma.dtype != beta.dtype or (dt, gamma.dtype) not in PAIRS:
        return None
    if tuple(gamma.shape) != (c,) or tuple(beta.shape) != (c,):
        return None
    skip_hw = 0
    if skip is not None:
        skip_hw = _skip_hw(X, skip)
        if skip_hw is None or skip.dtype != dt:
            return None
    if bias is not None and (bias.dtype != dt or tuple(bias.shape) != (c,)):
        return None
    import cupy

    y = cupy.empty(X.shape, dtype=dt)
    total = cupy.empty(X.shape, dtype=dt) if want_sum else None
    count = h * w * (c // groups)
    threads = min(1024, 32 * math.ceil(min(count, 256) / 32))
    fn = cu.function(UNITS[dt], kernel_name(dt, gamma.dtype))
    opt = [None if a is None else cupy.ascontiguousarray(a) for a in (skip, bias)]
    fn((n * groups,), (threads, 1), (cupy.ascontiguousarray(X), opt[0], opt[1], cupy.ascontiguousarray(gamma),
                                     cupy.ascontiguousarray(beta), y, total, np.int64(h * w), np.int64(c),
                                     np.int64(groups), np.int64(max(skip_hw, 1)), np.float32(epsilon),
                                     np.int32(activation)))
    return y, total


@kernel("GroupNorm", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(), capturable=True)
def GroupNorm(ctx, X, gamma, beta, *, activation, epsilon=1e-5, groups, channels_last=1):
    """Group normalization of an NHWC input, then SiLU when activation=1 (raw CUDA)."""
    if cu.on_device(ctx, X, gamma, beta):
        res = run_group_norm(X, gamma, beta, None, None, epsilon=epsilon, groups=groups, activation=activation,
                             channels_last=channels_last, want_sum=False)
        if res is not None:
            return res[0]
    return shared.GroupNorm(ctx, X, gamma, beta, activation=activation, epsilon=epsilon, groups=groups,
                            channels_last=channels_last)


@kernel("SkipGroupNorm", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(),
        capturable=True)
def SkipGroupNorm(ctx, X, gamma, beta, skip, bias=None, *, activation, epsilon=1e-5, groups, channels_last=1):
    """GroupNorm of X + skip (+ bias); the second output is that sum (raw CUDA)."""
    if cu.on_device(ctx, X, gamma, beta, skip, bias):
        res = run_group_norm(X, gamma, beta, skip, bias, epsilon=epsilon, groups=groups, activation=activation,
                             channels_last=channels_last, want_sum=ctx.num_outputs > 1)
        if res is not None:
            y, total = res
            return (y, total) if ctx.num_outputs > 1 else y
    return shared.SkipGroupNorm(ctx, X, gamma, beta, skip, bias, activation=activation, epsilon=epsilon,
                                groups=groups, channels_last=channels_last)
