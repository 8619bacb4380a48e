"""GELU family and bias adds of onnxruntime's com.microsoft domain: Gelu, FastGelu, BiasGelu,
QuickGelu, BiasAdd and BiasSplitGelu; ScaledSiLU and GatedAdd.

The formulas are the ai.onnx activation kernels (activations.py): the erf GELU, the tanh GELU,
x * sigmoid(alpha * x); float16 runs in float32 and rounds once at the end.  BiasAdd and
BiasSplitGelu exist only on onnxruntime's CUDA provider (Stable Diffusion's UNet); their
semantics are from its ContribOperators.md.  ScaledSiLU and GatedAdd round to the tensor type
after each step, as their schemas specify.
"""
from __future__ import annotations

from ortgpu.providers.cpu import half_compiled
from ortgpu.providers.cpu.gelu_compiled import gelu as compiled_gelu
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import activations
from ortgpu.providers.kernels.elementwise import compute_in
from ortgpu.errors import NotImplemented  # noqa: A004
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"


def _check_bias(op, name, bias, x):
    """A bias must match the last axis of x."""
    if bias.ndim != 1 or bias.shape[0] != x.shape[-1]:
        raise ValueError(f"{op}: input '{name}' must have shape ({x.shape[-1]},) (the last axis of "
                         f"the input), got {tuple(bias.shape)}")


def _compiled(X, bias, approximate):
    """GELU of X (+ bias) by the compiled body (gelu_compiled), float16 widened and rounded once."""
    y = compiled_gelu(half_compiled.widen(X), half_compiled.widen(bias), approximate)
    return half_compiled.convert(y, X.dtype)


@kernel("Gelu", since=1, domain=MS, types={"*": FLOAT})
def Gelu(ctx, X):
    """x * Phi(x) with the error function."""
    return activations.Gelu(ctx, X, approximate="none")


@kernel("FastGelu", since=1, domain=MS, types={"*": FLOAT})
def FastGelu(ctx, X, bias=None):
    """The tanh approximation of GELU of X (+ bias over the last axis)."""
    xp = ctx.xp
    if bias is None:
        return activations.Gelu(ctx, X, approximate="tanh")
    _check_bias("FastGelu", "bias", bias, X)
    if half_compiled.takes(xp, X, bias):
        return _compiled(X, bias, "tanh")
    # one pass in the work dtype: float16 is widened once and rounded once
    return compute_in(ctx, lambda a, b: activations.gelu_tanh(xp, a + b), X, bias, widen_half=True)


@kernel("BiasGelu", since=1, domain=MS, types={"*": FLOAT})
def BiasGelu(ctx, A, B):
    """Erf GELU of A + B, B a bias over the last axis."""
    _check_bias("BiasGelu", "B", B, A)
    xp = ctx.xp
    if half_compiled.takes(xp, A, B):
        return _compiled(A, B, "none")
    return compute_in(ctx, lambda a, b: activations.gelu_erf(xp, a + b), A, B, widen_half=True)


@kernel("QuickGelu", since=1, domain=MS, types={"*": FLOAT})
def QuickGelu(ctx, X, *, alpha=1.702):
    """x * sigmoid(alpha * x), the GELU approximation of CLIP-style models."""
    return activations.Swish(ctx, X, alpha=alpha)


@kernel("BiasAdd", since=1, domain=MS, types={"*": FLOAT})
def BiasAdd(ctx, X, bias, skip):
    """X + bias + skip for X and skip of shape (N, S, C), bias of shape (C,)."""
    if X.ndim != 3 or skip.shape != X.shape:
        raise ValueError(f"BiasAdd: input 'X' must be 3-D and 'skip' of the same shape, got "
                         f"{tuple(X.shape)} and {tuple(skip.shape)}")
    _check_bias("BiasAdd", "bias", bias, X)
    return compute_in(ctx, lambda a, b, s: a + b + s, X, bias, skip, widen_half=True)


@kernel("BiasSplitGelu", since=1, domain=MS, types={"*": FLOAT})
def BiasSplitGelu(ctx, X, bias):
    """(X + bias) split in two halves along the last axis: left * Gelu(right)."""
    if X.ndim != 3 or X.shape[-1] % 2:
        raise ValueError(f"BiasSplitGelu: input 'X' must be (N, S, D) with D even, got {tuple(X.shape)}")
    _check_bias("BiasSplitGelu", "bias", bias, X)
    half = X.shape[-1] // 2

    def fn(a, b):
        s = a + b
        left, right = s[..., :half], s[..., half:]
        return left * activations.Gelu(ctx, right, approximate="none")

    return compute_in(ctx, fn, X, bias, widen_half=True)


_T16 = frozenset({"float32", "float16", "bfloat16"})
declare_formals(MS, "ScaledSiLU", ("T", "M"), ("T",))


@kernel("ScaledSiLU", since=1, domain=MS, types={"T": _T16, "M": _T16}, host_inputs=(1,))
def ScaledSiLU(ctx, X, scale=None, *, alpha=1.0):
    """z = T(s * x), y = T(z * T(sigmoid(z))), s the scalar input scale when given, else alpha."""
    xp = ctx.xp
    if scale is not None and scale.size != 1:
        raise ValueError(f"ScaledSiLU: input scale must be a scalar, got shape {tuple(scale.shape)}")
    s = xp.float32(float(scale.reshape(-1)[0]) if scale is not None else alpha)
    z = (X.astype(xp.float32) * s).astype(X.dtype).astype(xp.float32)
    sig = activations._sigmoid(xp, z).astype(X.dtype).astype(xp.float32)
    return (z * sig).astype(X.dtype)


@kernel("GatedAdd", since=1, domain=MS, types={"*": _T16})
def GatedAdd(ctx, X, Y, gate, gate_weight=None):
    """X + T(Y * gate), gate (..., 1) per row (plain mode).  The projected mode (gate_weight
    given) exists only on onnxruntime's CUDA provider for bfloat16, and is refused here."""
    xp = ctx.xp
    if gate_weight is not None:
        raise NotImplemented("GatedAdd: the projected mode (input gate_weight) is not supported on the CPU, "
                             "as on onnxruntime's CPU provider")
    if tuple(Y.shape) != tuple(X.shape):
        raise ValueError(f"GatedAdd: input Y has shape {tuple(Y.shape)}, expected X's {tuple(X.shape)}")
    if tuple(gate.shape) != tuple(X.shape[:-1]) + (1,):
        raise ValueError(f"GatedAdd: input gate has shape {tuple(gate.shape)}, expected "
                         f"{tuple(X.shape[:-1]) + (1,)}")
    prod = (Y.astype(xp.float32) * gate.astype(xp.float32)).astype(X.dtype)
    return (X.astype(xp.float32) + prod.astype(xp.float32)).astype(X.dtype)
