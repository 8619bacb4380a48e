"""Mixture of experts of onnxruntime's com.microsoft domain (MoE): each token goes through the
top-k experts of its router, mixed by their routing weights.

Routing weights are the softmax of router_probs over all experts; the top k are taken (ties to
the lower expert), renormalized to sum 1 when normalize_routing_weights=1.  An expert is
act(x W1^T + b1) W2^T + b2 with onnxruntime's weight layouts fc1 (E, inter, hidden) and fc2
(E, hidden, inter); gelu is the tanh form, as onnxruntime computes it.
"""
from __future__ import annotations

from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import activations
from ortgpu.providers.kernels.elementwise import work_dtype
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.registry import kernel

MS = "com.microsoft"


def _activation(ctx, name, y):
    xp = ctx.xp
    if name == "relu":
        return xp.maximum(y, 0)
    if name == "gelu":
        return activations.Gelu(ctx, y, approximate="tanh")   # onnxruntime: the tanh form
    if name == "silu":
        return y * activations._sigmoid(xp, y)
    if name == "identity":
        return y
    raise NotImplementedError(f"MoE: activation_type '{name}' is not supported (relu, gelu, silu, identity)")


@kernel("MoE", since=1, domain=MS, types={"*": FLOAT})
def MoE(ctx, input, router_probs, fc1_experts_weights, fc1_experts_bias=None, fc2_experts_weights=None,
        fc2_experts_bias=None, fc3_experts_weights=None, fc3_experts_bias=None, *, activation_type="relu",
        k=1, normalize_routing_weights=0, use_sparse_mixer=0, swiglu_fusion=0, activation_alpha=1.0,
        activation_beta=0.0, swiglu_limit=0.0):
    """sum over the token's top-k experts of weight * expert(token)."""
    xp = ctx.xp
    if use_sparse_mixer or swiglu_fusion or fc3_experts_weights is not None:
        raise NotImplementedError("MoE: use_sparse_mixer, swiglu_fusion and fc3 are not supported "
                                  "(onnxruntime's CPU MoE has no fc3 either)")
    if fc2_experts_weights is None:
        raise ValueError("MoE: input 'fc2_experts_weights' is required")
    hidden = input.shape[-1]
    x = input.reshape(-1, hidden)
    n_exp = router_probs.shape[-1]
    if router_probs.reshape(-1, n_exp).shape[0] != x.shape[0] or fc1_experts_weights.shape[0] != n_exp:
        raise ValueError(f"MoE: router_probs {tuple(router_probs.shape)} and fc1_experts_weights "
                         f"{tuple(fc1_experts_weights.shape)} do not fit {x.shape[0]} tokens of {n_exp} experts")
    if not 1 <= k <= n_exp:
        raise ValueError(f"MoE: k={k} must be in [1, {n_exp}]")
    dt = work_dtype(input.dtype, widen_half=True)
    x = x.astype(dt)
    probs = softmax(xp, router_probs.reshape(-1, n_exp).astype(dt), (1,))
    top = xp.argsort(-probs, axis=1, kind="stable")[:, :k]
    weights = xp.take_along_axis(probs, top, axis=1)
    if normalize_routing_weights:
        weights = weights / weights.sum(axis=1, keepdims=True)
    out = xp.zeros_like(x)
    for e in range(n_exp):
        rows, slot = xp.nonzero(top == e)
        if rows.size == 0:
            continue
        xe = x[rows]
        h = xe @ fc1_experts_weights[e].astype(dt).T
        if fc1_experts_bias is not None:
            h = h + fc1_experts_bias[e].astype(dt)
        h = _activation(ctx, activation_type, h)
        y = h @ fc2_experts_weights[e].astype(dt).T
        if fc2_experts_bias is not None:
            y = y + fc2_experts_bias[e].astype(dt)
        out[rows] += weights[rows, slot][:, None] * y   # a token picks an expert at most once
    return out.reshape(input.shape).astype(input.dtype)
