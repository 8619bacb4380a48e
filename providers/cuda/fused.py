"""The CUDA provider's kernels of the ortgpu-domain fused ops (except Attention, in
attention.py): cuBLAS / cuDNN for the GEMM and the convolution, the raw CUDA kernels of
``kernels/`` for activations and layer normalization.

* FusedConv: Conv on cuDNN (``cudnn.conv_cudnn``, im2col on CuPy without the frontend),
  the residual Z added, then the activation's raw kernel;
* FusedGemm: Gemm on cuBLAS (``blas.Gemm``), then the activation's raw kernel;
* Gelu / FastGelu / BiasGelu: the bias Add (CuPy), then the raw GeluErf / GeluTanh kernel;
* LayerNormalization (ortgpu) and SkipLayerNormalization: the sums (CuPy), then the raw
  layernorm_rows kernel.

Whatever a raw kernel does not take (dtypes, bound types) runs the shared kernel of
``providers/kernels/fused.py``, so results never depend on the path.  Only
:func:`activation_launch` (which raw kernel computes an activation) is tested on the CPU;
the rest was written without a GPU and HAS NEVER RUN.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda import blas
from ortgpu.providers.cuda.cudnn import conv_cudnn
from ortgpu.providers.cuda.kernels import activations as raw_act
from ortgpu.providers.cuda.kernels import layernorm as raw_ln
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import fused as shared
from ortgpu.providers.dtype_sets import FLOAT, INDEX
from ortgpu.providers.registry import KernelContext, kernel

DOMAIN = shared.DOMAIN


def activation_launch(activation: str, params) -> tuple:
    """The raw kernel computing an activation: ("unary", op, p0, p1) for activations.cu's
    unary_flat, or ("clip", lo, hi) for clip_flat with None for an open bound."""
    p = shared.check_activation(activation, params)
    if activation == "Clip":
        return ("clip", None if p[0] == -math.inf else p[0], None if p[1] == math.inf else p[1])
    if activation == "LeakyRelu":
        return ("unary", activation, p[0], 0.0)
    if activation == "HardSigmoid":
        return ("unary", activation, p[0], p[1])
    return ("unary", activation, 0.0, 0.0)


def activate(ctx, y, activation: str, params):
    """The activation of y by its raw kernel when it takes y, else by the shared one."""
    if cu.on_device(ctx, y):
        plan = activation_launch(activation, params)
        if plan[0] == "unary":
            out = raw_act.run_unary(plan[1], y, plan[2], plan[3])
        else:
            as_dt = lambda v: None if v is None else np.asarray(v, np.float64).astype(y.dtype)  # noqa: E731
            out = raw_act.run_clip(y, lo_value=as_dt(plan[1]), hi_value=as_dt(plan[2]))
        if out is not None:
            return out
    return shared.apply_activation(ctx, y, activation, params)


@kernel("FusedConv", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def FusedConv(ctx, X, W, B=None, Z=None, *, activation="Relu", activation_params=None, auto_pad="NOTSET",
              dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Conv on cuDNN, plus Z (CuPy, in place), then the activation (raw CUDA)."""
    y = conv_cudnn(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
    if Z is not None:
        if y.shape == Z.shape and y.dtype == Z.dtype and cu.on_device(ctx, y, Z):
            y += Z
        else:
            y = (y + Z).astype(y.dtype, copy=False)
    return activate(ctx, y, activation, activation_params)


@kernel("FusedGemm", since=1, domain=DOMAIN, provider="cuda",
        types={"*": FLOAT | INDEX | frozenset({"uint32", "uint64"})})
def FusedGemm(ctx, A, B, C=None, *, activation="Relu", activation_params=None, alpha=1.0, beta=1.0,
              transA=0, transB=0):
    """Gemm on cuBLAS, then the activation (raw CUDA)."""
    y = blas.Gemm(ctx, A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)
    return activate(ctx, y, activation, activation_params)


def _gelu(ctx, x, bias, op, fallback):
    if cu.on_device(ctx, x, bias):
        s = x if bias is None else (x + bias).astype(x.dtype, copy=False)
        out = raw_act.run_unary(op, s)
        if out is not None:
            return out
    return fallback()


@kernel("Gelu", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def Gelu(ctx, X):
    """Gelu, erf form (raw CUDA)."""
    return _gelu(ctx, X, None, "GeluErf", lambda: shared.Gelu(ctx, X))


@kernel("FastGelu", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def FastGelu(ctx, X, bias=None):
    """Gelu, tanh form, of X (+ bias) (raw CUDA)."""
    return _gelu(ctx, X, bias, "GeluTanh", lambda: shared.FastGelu(ctx, X, bias))


@kernel("BiasGelu", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def BiasGelu(ctx, A, B):
    """Gelu (erf form) of A + B (raw CUDA)."""
    return _gelu(ctx, A, B, "GeluErf", lambda: shared.BiasGelu(ctx, A, B))


@kernel("LayerNormalization", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def LayerNormalization(ctx, X, Scale, B=None, *, axis=-1, epsilon=1e-5):
    """ai.onnx LayerNormalization-17's first output (raw CUDA), for models of older opsets."""
    return raw_ln.LayerNormalization(shared.one_output(ctx), X, Scale, B, axis=axis, epsilon=epsilon)


@kernel("SkipLayerNormalization", since=1, domain=DOMAIN, provider="cuda", types={"*": FLOAT})
def SkipLayerNormalization(ctx, input, skip, gamma, beta=None, bias=None, *, epsilon=1e-5):
    """(input + bias) + skip, then layer normalization over the last axis (raw CUDA)."""
    if cu.on_device(ctx, input, skip, gamma, beta, bias):
        s = input if bias is None else (input + bias).astype(input.dtype, copy=False)
        s = (s + skip).astype(input.dtype, copy=False)
        res = raw_ln.run_layernorm(s, gamma, beta, s.ndim - 1, epsilon, False, False) if s.ndim else None
        if res is not None:
            return (res[0], s) if ctx.num_outputs > 1 else res[0]
    return shared.SkipLayerNormalization(ctx, input, skip, gamma, beta, bias, epsilon=epsilon)


# ----------------------------------------------------------------------------- onnxruntime's names
# The optimizer writes onnxruntime's com.microsoft ops where onnxruntime has one; the kernels
# above serve them too (unless a dedicated CUDA kernel of that op was registered first).
MS = shared.MS_DOMAIN


def FusedGemmMS(ctx, A, B, C=None, *, activation="Relu", activation_alpha=None, activation_beta=None,
                activation_gamma=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    """com.microsoft FusedGemm: Gemm on cuBLAS, then the activation (parameters activation_alpha / _beta)."""
    return FusedGemm(ctx, A, B, C, activation=activation,
                     activation_params=shared.gemm_activation_params(activation, activation_alpha, activation_beta),
                     alpha=alpha, beta=beta, transA=transA, transB=transB)


def SkipLayerNormalizationMS(ctx, input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """com.microsoft SkipLayerNormalization (outputs: output, mean, inv_std_var, the sum): the raw
    kernel above when mean and inv_std_var are not asked for, else the shared contrib kernel."""
    from ortgpu.providers.kernels import contrib_normalization  # noqa: PLC0415
    if any(ctx.output_present[1:3]):
        return contrib_normalization.SkipLayerNormalization(ctx, input, skip, gamma, beta, bias, epsilon=epsilon)
    two = KernelContext(ctx.xp, ctx.provider, ctx.node_name, ctx.op_type, ctx.opset, 2, (True, True),
                        ctx.input_types, ctx.output_types[:1] + ctx.output_types[3:4], ctx.ep)
    y, s = SkipLayerNormalization(two, input, skip, gamma, beta, bias, epsilon=epsilon)
    return y if ctx.num_outputs == 1 else (y, None, None, s)[:ctx.num_outputs]


for _op, _fn, _types in (("FusedConv", FusedConv, {"*": FLOAT}), ("FusedGemm", FusedGemmMS, {"*": FLOAT}),
                         ("Gelu", Gelu, {"*": FLOAT}), ("FastGelu", FastGelu, {"*": FLOAT}),
                         ("BiasGelu", BiasGelu, {"*": FLOAT}),
                         ("SkipLayerNormalization", SkipLayerNormalizationMS, {"*": FLOAT})):
    shared.register_unless_taken(_op, MS, "cuda", _types, _fn)
