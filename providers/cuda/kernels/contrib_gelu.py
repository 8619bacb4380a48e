"""Raw CUDA launchers for the GELU family of com.microsoft: Gelu, BiasGelu, FastGelu,
QuickGelu and BiasSplitGelu (source: contrib_gelu.cu).

The kernels take float32/float16 tensors (a contiguous copy is made of a strided view) with a
bias of shape (last axis,) in the same type; the bias is added in float32 and the result
rounded once, as onnxruntime's fused CUDA kernels do.  Other types and shapes go to
``providers/kernels/contrib_activations.py`` (which also raises the shape errors).

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import contrib_activations as shared
from ortgpu.providers.registry import kernel

SOURCE = "contrib_gelu.cu"
ERF, TANH, QUICK = 0, 1, 2


UNITS = cu.declare_templates(SOURCE, "gelu_bias", "bias_split_gelu")


def _bias_ok(x, bias) -> bool:
    return bias is None or (bias.dtype == x.dtype and x.ndim > 0 and tuple(bias.shape) == (x.shape[-1],))


def run_gelu(x, bias, kind: int, alpha: float = 1.0):
    """f(x + bias) on the GPU, or None when the kernel does not take these inputs."""
    if x.dtype not in UNITS or not _bias_ok(x, bias) or x.size == 0:
        return None
    import cupy

    dt = x.dtype
    src = cupy.ascontiguousarray(x)
    b = None if bias is None else cupy.ascontiguousarray(bias)
    y = cupy.empty(src.shape, dtype=dt)
    cols = x.shape[-1] if x.ndim else 1
    fn = cu.template_function(UNITS, dt, "gelu_bias")
    cu.launch_elementwise(fn, x.size, (src, b, y, np.int64(x.size), np.int64(cols), np.int32(kind),
                                       cu.compute_scalar(dt, alpha)))
    return y


def run_bias_split_gelu(x, bias):
    """left * Gelu(right) of x + bias split along the last axis, or None when not handled."""
    if x.dtype not in UNITS or x.ndim != 3 or x.shape[-1] % 2 or not _bias_ok(x, bias) or x.size == 0:
        return None
    import cupy

    dt = x.dtype
    half = x.shape[-1] // 2
    y = cupy.empty(x.shape[:-1] + (half,), dtype=dt)
    fn = cu.template_function(UNITS, dt, "bias_split_gelu")
    cu.launch_elementwise(fn, y.size, (cupy.ascontiguousarray(x), cupy.ascontiguousarray(bias), y,
                                       np.int64(y.size), np.int64(half)))
    return y


@kernel("Gelu", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(), capturable=True)
def Gelu(ctx, X):
    """x * Phi(x) with the error function (raw CUDA)."""
    y = run_gelu(X, None, ERF) if cu.on_device(ctx, X) else None
    return shared.Gelu(ctx, X) if y is None else y


@kernel("BiasGelu", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(), capturable=True)
def BiasGelu(ctx, A, B):
    """Erf GELU of A + B, B a bias over the last axis (raw CUDA)."""
    y = run_gelu(A, B, ERF) if cu.on_device(ctx, A, B) else None
    return shared.BiasGelu(ctx, A, B) if y is None else y


@kernel("FastGelu", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(), capturable=True)
def FastGelu(ctx, X, bias=None):
    """The tanh approximation of GELU of X (+ bias over the last axis) (raw CUDA)."""
    y = run_gelu(X, bias, TANH) if cu.on_device(ctx, X, bias) else None
    return shared.FastGelu(ctx, X, bias) if y is None else y


@kernel("QuickGelu", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(), capturable=True)
def QuickGelu(ctx, X, *, alpha=1.702):
    """x * sigmoid(alpha * x) (raw CUDA)."""
    y = run_gelu(X, None, QUICK, alpha) if cu.on_device(ctx, X) else None
    return shared.QuickGelu(ctx, X, alpha=alpha) if y is None else y


@kernel("BiasSplitGelu", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT}, host_inputs=(),
        capturable=True)
def BiasSplitGelu(ctx, X, bias):
    """(X + bias) split in halves along the last axis: left * Gelu(right) (raw CUDA)."""
    y = run_bias_split_gelu(X, bias) if cu.on_device(ctx, X, bias) else None
    return shared.BiasSplitGelu(ctx, X, bias) if y is None else y
