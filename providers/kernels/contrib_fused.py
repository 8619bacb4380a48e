"""Fused linear ops of onnxruntime's com.microsoft domain: FusedConv, FusedGemm, FusedMatMul,
TransposeMatMul, NhwcConv, NhwcMaxPool and ConvTransposeWithDynamicPads.

FusedConv and FusedGemm are the ortgpu-domain fused kernels (fused.py) under onnxruntime's
names and attributes (FusedGemm names its activation's parameters activation_alpha / _beta);
FusedMatMul is alpha * op(A) @ op(B), where op may move A's (B's) first axis behind the batch
axes (transBatchA/B) and swap the last two; NhwcConv is Conv on channels-last input and
weights (M, kH, kW, C/group), as onnxruntime's NhwcConv fusion writes them; NhwcMaxPool is
MaxPool on channels-last int8/uint8 input (what onnxruntime's QDQ layout transformer writes).
"""
from __future__ import annotations

from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import fused
from ortgpu.providers.kernels import conv, pool
from ortgpu.providers.kernels.conv import conv_float
from ortgpu.providers.kernels.elementwise import work_dtype
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"


@kernel("FusedConv", since=1, domain=MS, types={"*": FLOAT})
def FusedConv(ctx, X, W, B=None, Z=None, *, activation="Relu", activation_params=None, auto_pad="NOTSET",
              dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Conv (+ Z) followed by an activation (Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid, Clip, ...)."""
    return fused.FusedConv(ctx, X, W, B, Z, activation=activation, activation_params=activation_params,
                           auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                           pads=pads, strides=strides)


# FusedGemm's activation_alpha / activation_beta as the activation_params the fused kernels take
_GEMM_PARAMS = {"LeakyRelu": ("activation_alpha",), "HardSigmoid": ("activation_alpha", "activation_beta")}


@kernel("FusedGemm", since=1, domain=MS, types={"*": FLOAT})
def FusedGemm(ctx, A, B, C=None, *, activation="Relu", activation_alpha=None, activation_beta=None,
              activation_gamma=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Gemm followed by an activation whose parameters are activation_alpha / activation_beta."""
    given = {"activation_alpha": activation_alpha, "activation_beta": activation_beta}
    defaults = {"LeakyRelu": (0.01,), "HardSigmoid": (0.2, 0.5)}
    names = _GEMM_PARAMS.get(activation, ())
    params = [given[n] if given[n] is not None else d for n, d in zip(names, defaults.get(activation, ()))]
    return fused.FusedGemm(ctx, A, B, C, activation=activation, activation_params=params, alpha=alpha,
                           beta=beta, transA=transA, transB=transB)


def _operand(x, trans, trans_batch):
    """x as FusedMatMul uses it: its first axis moved behind the batch axes, last two swapped."""
    if x.ndim < 2:
        return x
    perm = list(range(x.ndim))
    if trans_batch and x.ndim > 2:
        perm = perm[1:-1] + [0, perm[-1]]
    if trans:
        perm[-1], perm[-2] = perm[-2], perm[-1]
    return x.transpose(perm)


@kernel("FusedMatMul", since=1, domain=MS, types={"*": FLOAT})
def FusedMatMul(ctx, A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """alpha * op(A) @ op(B) with numpy.matmul broadcasting."""
    xp = ctx.xp
    dt = work_dtype(A.dtype)
    a = _operand(A.astype(dt, copy=False), transA, transBatchA)
    b = _operand(B.astype(dt, copy=False), transB, transBatchB)
    y = xp.matmul(a, b)
    if alpha != 1.0:
        y = y * dt.type(alpha)
    return xp.asarray(y).astype(A.dtype, copy=False)


@kernel("TransposeMatMul", since=1, domain=MS, types={"*": FLOAT})
def TransposeMatMul(ctx, A, B, *, alpha=1.0, transA=0, transB=0):
    """alpha * op(A) @ op(B), op a swap of the last two axes (the older name of FusedMatMul)."""
    return FusedMatMul(ctx, A, B, alpha=alpha, transA=transA, transB=transB)


@kernel("NhwcConv", since=1, domain=MS, types={"*": FLOAT})
def NhwcConv(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
             strides=None):
    """Conv of channels-last X (N, D1.., C) with W (M, k1.., C/group); output channels-last."""
    if X.ndim < 3 or W.ndim != X.ndim:
        raise ValueError(f"NhwcConv: X and W must have the same rank >= 3, got {tuple(X.shape)} and "
                         f"{tuple(W.shape)}")
    to_first = (0, X.ndim - 1) + tuple(range(1, X.ndim - 1))
    y = conv_float(ctx, X.transpose(to_first), W.transpose(to_first), B, auto_pad, dilations, group,
                   kernel_shape, pads, strides)
    return ctx.xp.ascontiguousarray(y.transpose((0,) + tuple(range(2, y.ndim)) + (1,)))


@kernel("NhwcMaxPool", since=1, domain=MS, types={"*": frozenset({"int8", "uint8"})})
def NhwcMaxPool(ctx, x, *, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None,
                strides=None):
    """Max over the spatial windows of channels-last x (N, D1.., C); output channels-last."""
    xp = ctx.xp
    if x.ndim < 3:
        raise ValueError(f"NhwcMaxPool: input x must be (N, spatial.., C), got shape {tuple(x.shape)}")
    if len(kernel_shape) != x.ndim - 2:
        raise ValueError(f"NhwcMaxPool: kernel_shape {list(kernel_shape)} must have one entry per spatial "
                         f"axis of x {tuple(x.shape)}")
    geom = pool.pool_geometry(x.shape[1:-1], kernel_shape, strides, dilations, auto_pad, pads, ceil_mode)
    first = x.transpose((0, x.ndim - 1) + tuple(range(1, x.ndim - 1)))
    xpad = pool.padded(xp, first, geom, pool.lowest(x.dtype))
    best = None
    for _, sl in pool.window_slices(geom):
        best = xpad[sl].copy() if best is None else xp.maximum(best, xpad[sl])
    return xp.ascontiguousarray(best.transpose((0,) + tuple(range(2, best.ndim)) + (1,)))


declare_formals(MS, "ConvTransposeWithDynamicPads", ("T", "T", "P", "T"), ("T",))


@kernel("ConvTransposeWithDynamicPads", since=1, domain=MS, types={"T": FLOAT, "P": frozenset({"int64"})},
        host_inputs=(2,))
def ConvTransposeWithDynamicPads(ctx, X, W, Pads=None, B=None, *, auto_pad="NOTSET", dilations=None, group=1,
                                 kernel_shape=None, output_padding=None, pads=None, strides=None):
    """ConvTranspose whose pads come from the Pads input (begins then ends) when given."""
    if Pads is not None:
        pads = [int(v) for v in Pads.reshape(-1).tolist()]
    return conv.ConvTranspose(ctx, X, W, B, auto_pad=auto_pad, dilations=dilations, group=group,
                              kernel_shape=kernel_shape, output_padding=output_padding, pads=pads,
                              strides=strides)
