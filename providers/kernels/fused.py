"""Kernels of the fused ops of the ``ortgpu`` domain (shared: NumPy and CuPy).  The optimizer
writes onnxruntime's com.microsoft ops where onnxruntime has one (their kernels are
contrib_*.py's); these serve the fusions onnxruntime has no op for and models saved before.  Each computes exactly what the subgraph it replaces computes, step by step in the
same precision (a float16 intermediate is rounded where the unfused graph rounds it), so a
fusion changes results by float rounding at most.

* ``FusedConv(X, W, B?, Z?)``: Conv, plus Z (a residual, broadcast as Add does), then
  ``activation`` with ``activation_params``;
* ``FusedGemm(A, B, C?)``: Gemm, then the activation;
* ``FusedBatchNormalization(X, scale, B, mean, var)``: BatchNormalization with the given
  statistics, then the activation (DenseNet's BatchNormalization + Relu after each Concat);
* ``Gelu(X)`` (erf form) and ``FastGelu(X, bias?)`` (tanh form): for models below opset 20,
  which has no ai.onnx Gelu;
* ``BiasGelu(A, B)``: Gelu(A + B), B a bias over the last axis;
* ``LayerNormalization(X, Scale, B?)``: for models below opset 17;
* ``SkipLayerNormalization(input, skip, gamma, beta?, bias?)``: LayerNormalization over the
  last axis of input + skip (+ bias); a second output gives that sum.

Activations (names and parameters as the ONNX ops): Relu, LeakyRelu [alpha], Sigmoid,
Tanh, HardSigmoid [alpha, beta], HardSwish, Clip [min, max] (+-inf for an open bound).
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.kernels import activations, elementwise, linalg, normalization
from ortgpu.providers.kernels.conv import compiled_epilogue, conv_float
from ortgpu.providers.dtype_sets import FLOATS, INDEX
from ortgpu.providers.registry import KernelContext, kernel

DOMAIN = "ortgpu"
MS_DOMAIN = "com.microsoft"   # onnxruntime's names of these ops, which the optimizer writes


def register_unless_taken(op_type: str, domain: str, provider: str, types: dict, fn, since: int = 1):
    """Register `fn` as the `provider` kernel of ``domain::op_type`` unless a kernel holds that
    slot already: a provider's fast kernels of the ortgpu-domain fused ops also serve
    onnxruntime's com.microsoft names of them, but a dedicated kernel registered earlier (a
    module imported before) keeps its place."""
    from ortgpu.providers.registry import registered  # noqa: PLC0415
    if any((k.op_type, k.domain, k.since, k.provider) == (op_type, domain, since, provider) for k in registered()):
        return fn
    return kernel(op_type, since, domain=domain, provider=provider, types=types)(fn)


def gemm_activation_params(activation: str, activation_alpha=None, activation_beta=None) -> list[float]:
    """onnxruntime FusedGemm's activation_alpha / activation_beta as the activation_params of
    these kernels (LeakyRelu [alpha], HardSigmoid [alpha, beta]; the ops' defaults when absent)."""
    if activation == "LeakyRelu":
        return [0.01 if activation_alpha is None else float(activation_alpha)]
    if activation == "HardSigmoid":
        return [0.2 if activation_alpha is None else float(activation_alpha),
                0.5 if activation_beta is None else float(activation_beta)]
    return []


def _clip(ctx, y, params):
    xp = ctx.xp
    lo, hi = (float(v) for v in params)
    return elementwise.Clip(ctx, y, None if lo == -np.inf else xp.asarray(lo),
                            None if hi == np.inf else xp.asarray(hi))


# name -> (number of parameters, fn(ctx, y, params)); the unfused ops' own kernels
ACTIVATIONS = {
    "Relu": (0, lambda ctx, y, p: activations.Relu(ctx, y)),
    "LeakyRelu": (1, lambda ctx, y, p: activations.LeakyRelu(ctx, y, alpha=p[0])),
    "Sigmoid": (0, lambda ctx, y, p: activations.Sigmoid(ctx, y)),
    "Tanh": (0, lambda ctx, y, p: activations.Tanh(ctx, y)),
    "HardSigmoid": (2, lambda ctx, y, p: activations.HardSigmoid(ctx, y, alpha=p[0], beta=p[1])),
    "HardSwish": (0, lambda ctx, y, p: activations.HardSwish(ctx, y)),
    "Clip": (2, _clip),
}


def check_activation(activation: str, params) -> list[float]:
    """The parameters of a known activation as floats; ValueError naming what is wrong."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{activation}' (known: {sorted(ACTIVATIONS)})")
    params = [float(p) for p in (params or ())]
    want = ACTIVATIONS[activation][0]
    if len(params) != want:
        raise ValueError(f"activation '{activation}' takes {want} activation_params, got {len(params)}")
    return params


def apply_activation(ctx, y, activation: str, params):
    """`activation` of y, computed by that op's own kernel."""
    params = check_activation(activation, params)
    return ACTIVATIONS[activation][1](ctx, y, params)


@kernel("FusedConv", since=1, domain=DOMAIN, types={"*": FLOATS})
def FusedConv(ctx, X, W, B=None, Z=None, *, activation="Relu", activation_params=None, auto_pad="NOTSET",
              dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Conv (im2col + GEMM), plus Z when given, followed by an activation (bias, Z and the
    activation in one compiled pass over the output where ``compiled_epilogue`` allows)."""
    if compiled_epilogue(ctx.xp, X, activation) and (Z is None or Z.dtype == X.dtype):
        params = check_activation(activation, activation_params)
        return conv_float(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides,
                          epilogue=(Z, activation, params))
    y = conv_float(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
    if Z is not None:
        y = _add(ctx, y, Z)
    return apply_activation(ctx, y, activation, activation_params)


@kernel("FusedBatchNormalization", since=1, domain=DOMAIN, types={"*": FLOATS})
def FusedBatchNormalization(ctx, X, scale, B, input_mean, input_var, *, activation="Relu", activation_params=None,
                            epsilon=1e-5, momentum=0.9, is_test=0, spatial=1, consumed_inputs=None):
    """BatchNormalization with the given statistics (inference), then an activation: a Relu is
    applied in the same compiled pass over the output, any other by its own kernel."""
    params = check_activation(activation, activation_params)
    relu = activation == "Relu"
    y = normalization.batch_norm_inference(ctx.xp, X, scale, B, input_mean, input_var, epsilon, relu)
    return y if relu else ACTIVATIONS[activation][1](ctx, y, params)


@kernel("FusedGemm", since=1, domain=DOMAIN,
        types={"*": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def FusedGemm(ctx, A, B, C=None, *, activation="Relu", activation_params=None, alpha=1.0, beta=1.0,
              transA=0, transB=0):
    """Gemm followed by an activation."""
    y = linalg.Gemm(ctx, A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB)
    return apply_activation(ctx, y, activation, activation_params)


@kernel("Gelu", since=1, domain=DOMAIN, types={"*": FLOATS})
def Gelu(ctx, X):
    """X * Phi(X) with the error function (ai.onnx Gelu-20, approximate='none')."""
    return activations.Gelu(ctx, X, approximate="none")


@kernel("FastGelu", since=1, domain=DOMAIN, types={"*": FLOATS})
def FastGelu(ctx, X, bias=None):
    """The tanh approximation of Gelu (ai.onnx Gelu-20, approximate='tanh') of X (+ bias)."""
    return activations.Gelu(ctx, X if bias is None else _add(ctx, X, bias), approximate="tanh")


@kernel("BiasGelu", since=1, domain=DOMAIN, types={"*": FLOATS})
def BiasGelu(ctx, A, B):
    """Gelu (erf form) of A + B."""
    return activations.Gelu(ctx, _add(ctx, A, B), approximate="none")


def _add(ctx, a, b):
    """a + b in a's dtype, as the unfused Add computes it."""
    return elementwise.as_array(ctx.xp, a + b, a.dtype)


@kernel("LayerNormalization", since=1, domain=DOMAIN, types={"*": FLOATS})
def LayerNormalization(ctx, X, Scale, B=None, *, axis=-1, epsilon=1e-5):
    """ai.onnx LayerNormalization-17 (output Y only), for models of older opsets."""
    return normalization.LayerNormalization(ctx, X, Scale, B, axis=axis, epsilon=epsilon)


def _check_params(hidden, gamma, beta, bias):
    for name, p in (("gamma", gamma), ("beta", beta), ("bias", bias)):
        if p is not None and tuple(p.shape) != (hidden,):
            raise ValueError(f"SkipLayerNormalization: {name} has shape {tuple(p.shape)}, "
                             f"expected ({hidden},) (the last axis of input + skip)")


@kernel("SkipLayerNormalization", since=1, domain=DOMAIN, types={"*": FLOATS})
def SkipLayerNormalization(ctx, input, skip, gamma, beta=None, bias=None, *, epsilon=1e-5):
    """LayerNormalization over the last axis of input (+ bias) + skip (broadcast as Add does);
    outputs the normalized value and (optionally) the sum, added as (input + bias) + skip."""
    s = input if bias is None else _add(ctx, input, bias)
    s = _add(ctx, s, skip)
    if s.ndim == 0:
        raise ValueError("SkipLayerNormalization: input + skip must have at least one axis")
    _check_params(s.shape[-1], gamma, beta, bias)
    y = normalization.LayerNormalization(one_output(ctx), s, gamma, beta, axis=-1, epsilon=epsilon)
    return (y, s) if ctx.num_outputs > 1 else y


def one_output(ctx) -> KernelContext:
    """`ctx` as seen by a kernel called for its first output only."""
    return KernelContext(ctx.xp, ctx.provider, ctx.node_name, ctx.op_type, ctx.opset, 1, (True,),
                         ctx.input_types[:1], ctx.output_types[:1], ctx.ep)
