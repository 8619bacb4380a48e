"""Gating and stream-mixing blocks of onnxruntime's com.microsoft domain that newer LLM exports
write (registered by onnxruntime 1.32's CPU provider): LinearAttentionGate (the decay and beta
of a gated-delta recurrence), EngramGate, HyperConnectionPreMix and HyperConnectionPostMix
(hyper-connection residual streams).

Each computes in float32 whatever the tensor type and rounds once at the end, as the schemas
specify.  Semantics are from the schemas' documentation in onnxruntime 1.32.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.kernels import activations
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_T16 = frozenset({"float32", "float16", "bfloat16"})
_F32 = frozenset({"float32"})


def _f32(xp, x):
    return x.astype(xp.float32)


def _softplus(xp, x):
    """log(1 + exp(x)) without overflow."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


declare_formals(MS, "LinearAttentionGate", ("T", "TF", "TF", "T"), ("T", "T"))


@kernel("LinearAttentionGate", since=1, domain=MS, types={"T": _T16, "TF": _F32})
def LinearAttentionGate(ctx, a, dt_bias, decay_scale, b=None):
    """decay = decay_scale * softplus(a + dt_bias); beta = sigmoid(b) when b is given; per head
    (the last axis, H)."""
    xp = ctx.xp
    heads = a.shape[-1]
    for name, v in (("dt_bias", dt_bias), ("decay_scale", decay_scale)):
        if v.size != heads:
            raise ValueError(f"LinearAttentionGate: input {name} has {v.size} values, expected one per head ({heads})")
    decay = (_f32(xp, decay_scale).reshape(-1) * _softplus(xp, _f32(xp, a) + _f32(xp, dt_bias).reshape(-1)))
    beta = None
    if b is not None:
        beta = activations._sigmoid(xp, _f32(xp, b)).astype(b.dtype)
    if ctx.num_outputs > 1 and ctx.output_present[1] and beta is None:
        raise ValueError("LinearAttentionGate: output beta needs input b")
    out = decay.astype(a.dtype)
    return (out, beta) if ctx.num_outputs > 1 else out


def _rms_norm(xp, x, scale, epsilon):
    """RMSNorm over the last axis times scale, (hc_mult, hidden) broadcast over (batch, seq)."""
    return x / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + np.float32(epsilon)) * _f32(xp, scale)


@kernel("EngramGate", since=1, domain=MS, types={"*": _T16})
def EngramGate(ctx, key, query, value, key_norm_scale, query_norm_scale, conv_norm_scale=None, *, epsilon=1e-5):
    """gate = sigmoid(sign(d) * sqrt(max(|d|, 1e-6))), d = <RMSNorm(key), RMSNorm(query)> / sqrt(H),
    per hyper-connection; output gate * value (B, S, hc, H); gated_value_normed its RMSNorm
    with conv_norm_scale.  The norm scales are (hc_mult, hidden)."""
    xp = ctx.xp
    if key.ndim != 4 or tuple(query.shape) != tuple(key.shape):
        raise ValueError(f"EngramGate: key and query must be (batch, seq, hc_mult, hidden) alike, got "
                         f"{tuple(key.shape)} and {tuple(query.shape)}")
    bsz, seq, _, hidden = key.shape
    if tuple(value.shape) != (bsz, seq, hidden):
        raise ValueError(f"EngramGate: input value has shape {tuple(value.shape)}, expected {(bsz, seq, hidden)}")
    for name, sc in (("key_norm_scale", key_norm_scale), ("query_norm_scale", query_norm_scale),
                     ("conv_norm_scale", conv_norm_scale)):
        if sc is not None and tuple(sc.shape) != tuple(key.shape[2:]):
            raise ValueError(f"EngramGate: input {name} has shape {tuple(sc.shape)}, expected (hc_mult, hidden) "
                             f"{tuple(key.shape[2:])}")
    k = _rms_norm(xp, _f32(xp, key), key_norm_scale, epsilon)
    q = _rms_norm(xp, _f32(xp, query), query_norm_scale, epsilon)
    dot = (k * q).sum(axis=-1) / np.float32(np.sqrt(hidden))
    gate = activations._sigmoid(xp, xp.sign(dot) * xp.sqrt(xp.maximum(xp.abs(dot), np.float32(1e-6))))
    out = gate[..., None] * _f32(xp, value)[:, :, None, :]
    if ctx.num_outputs < 2 or not ctx.output_present[1]:
        y = out.astype(key.dtype)
        return (y, None) if ctx.num_outputs > 1 else y
    if conv_norm_scale is None:
        raise ValueError("EngramGate: output gated_value_normed needs input conv_norm_scale")
    return out.astype(key.dtype), _rms_norm(xp, out, conv_norm_scale, epsilon).astype(key.dtype)


def _grouped(op, x, num_branches):
    """x as (..., C, H): grouped already, or its flat last axis split into num_branches."""
    if num_branches:
        if x.shape[-1] % num_branches:
            raise ValueError(f"{op}: the last axis of streams {tuple(x.shape)} is not a multiple of "
                             f"num_branches={num_branches}")
        return x.reshape(x.shape[:-1] + (num_branches, x.shape[-1] // num_branches))
    if x.ndim < 2:
        raise ValueError(f"{op}: streams {tuple(x.shape)} must be (..., C, H) without num_branches")
    return x


def _per_branch(op, name, m, lead, c, h, flat_ok):
    """A mixing weight as (..., C, H or 1): (..., C), (..., C, 1), (..., C, H) or (..., C * H)."""
    shape = tuple(m.shape)
    if shape == lead + (c,):
        return m[..., None]
    if shape in (lead + (c, 1), lead + (c, h)):
        return m
    if flat_ok and shape == lead + (c * h,):
        return m.reshape(lead + (c, h))
    raise ValueError(f"{op}: input {name} has shape {shape}, expected {lead + (c,)}, {lead + (c, 1)} or "
                     f"{lead + (c, h)}" + (f" or {lead + (c * h,)}" if flat_ok else ""))


declare_formals(MS, "HyperConnectionPreMix", ("T", "M"), ("T",))


@kernel("HyperConnectionPreMix", since=1, domain=MS, types={"T": _T16, "M": _T16})
def HyperConnectionPreMix(ctx, streams, pre_mix, *, reduction_scale=1.0, num_branches=0):
    """Y[..., h] = reduction_scale * sum_c streams[..., c, h] * pre_mix[..., c, h]."""
    xp = ctx.xp
    x = _grouped("HyperConnectionPreMix", streams, num_branches)
    c, h = x.shape[-2:]
    w = _per_branch("HyperConnectionPreMix", "pre_mix", pre_mix, tuple(x.shape[:-2]), c, h, flat_ok=True)
    y = np.float32(reduction_scale) * (_f32(xp, x) * _f32(xp, w)).sum(axis=-2)
    return y.astype(streams.dtype)


declare_formals(MS, "HyperConnectionPostMix", ("T", "T", "M", "M"), ("T",))


@kernel("HyperConnectionPostMix", since=1, domain=MS, types={"T": _T16, "M": _T16})
def HyperConnectionPostMix(ctx, streams, block_output, post_mix, stream_mix=None, *, num_branches=0):
    """Y[..., k, h] = sum_c stream_mix[..., c, k] * streams[..., c, h] + post_mix[..., k, h] *
    block_output[..., h]; stream_mix defaults to the identity.  Y has the streams' shape."""
    xp = ctx.xp
    op = "HyperConnectionPostMix"
    x = _f32(xp, _grouped(op, streams, num_branches))
    lead, (c, h) = tuple(x.shape[:-2]), x.shape[-2:]
    if tuple(block_output.shape) != lead + (h,):
        raise ValueError(f"{op}: input block_output has shape {tuple(block_output.shape)}, expected {lead + (h,)}")
    w = _per_branch(op, "post_mix", post_mix, lead, c, h, flat_ok=False)
    if stream_mix is not None:
        if tuple(stream_mix.shape) != lead + (c, c):
            raise ValueError(f"{op}: input stream_mix has shape {tuple(stream_mix.shape)}, expected {lead + (c, c)}")
        x = xp.matmul(xp.swapaxes(_f32(xp, stream_mix), -1, -2), x)
    y = x + _f32(xp, w) * _f32(xp, block_output)[..., None, :]
    return y.reshape(streams.shape).astype(streams.dtype)
