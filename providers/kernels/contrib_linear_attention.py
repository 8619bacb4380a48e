"""Recurrent-state blocks of onnxruntime's com.microsoft domain that Gated DeltaNet / Mamba-style
exports (Qwen3.5 and the like) write, as onnxruntime 1.32's CPU provider registers them:
LinearAttention (the linear / gated / delta / gated-delta recurrences over packed (B, T, H*D)
heads with a (B, H_kv, D_k, D_v) state), CausalConvWithState (a causal depthwise 1-D
convolution that carries its last (k - 1) * dilation positions from call to call),
VarlenCausalConvWithState (the same over token-major packed requests) and GatedDeltaNet (the
delta-rule recurrence over token-major, possibly ragged requests with fused gate activations and
a V-major float32 state).

Both compute in float32 and round once at the end.  Semantics are from the schemas' documentation
in onnxruntime 1.32; attributes that only select onnxruntime's chunked / compact-update
implementations and change no value (chunk_size) are accepted, the others that change the
layout of state updates are refused with NotImplemented.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import NotImplemented  # noqa: A004
from ortgpu.providers.kernels import activations
from ortgpu.providers.kernels.contrib_ngram import packed_ranges
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_T16 = frozenset({"float32", "float16", "bfloat16"})
_RULES = ("linear", "gated", "delta", "gated_delta")


def _heads(op, name, x, heads, size=None):
    """(B, T, H*D) -> (B, T, H, D) float32, D checked against size when given."""
    if x.ndim != 3 or x.shape[-1] % heads:
        raise ValueError(f"{op}: input {name} must be (batch, seq, {heads} * head_size), got {tuple(x.shape)}")
    d = x.shape[-1] // heads
    if size is not None and d != size:
        raise ValueError(f"{op}: input {name} has head size {d}, expected {size}")
    return x.reshape(x.shape[:2] + (heads, d)).astype(np.float32)


def _per_head(op, name, x, shape, dk):
    """decay / beta (B, T, H) -> (B, T, H, 1); decay may also be per key dim (B, T, H*Dk) -> (B, T, H, Dk)."""
    b, t, h = shape
    if x.shape == (b, t, h):
        return x.astype(np.float32)[..., None]
    if name == "decay" and x.shape == (b, t, h * dk):
        return x.astype(np.float32).reshape(b, t, h, dk)
    want = f"({b}, {t}, {h})" + (f" or ({b}, {t}, {h * dk})" if name == "decay" else "")
    raise ValueError(f"{op}: input {name} has shape {tuple(x.shape)}, expected {want}")


declare_formals(MS, "LinearAttention", ("T", "T", "T", "S", "T", "T"), ("T", "S"))


@kernel("LinearAttention", since=1, domain=MS, types={"T": _T16, "S": _T16})
def LinearAttention(ctx, query, key, value, past_state=None, decay=None, beta=None, *, q_num_heads,
                    kv_num_heads, update_rule="gated_delta", scale=0.0, chunk_size=64, state_window=0):
    """Token by token: S = exp(g) S (gated rules); S += k (x) v (linear, gated) or
    S += beta k (x) (v - S^T k) (delta rules); o = scale q^T S, each query head reading the state
    of its key/value head (q_num_heads / kv_num_heads query heads share one)."""
    xp = ctx.xp
    op = "LinearAttention"
    if update_rule not in _RULES:
        raise ValueError(f"{op}: update_rule must be one of {', '.join(_RULES)}, got '{update_rule}'")
    if state_window:
        raise NotImplemented(f"{op}: state_window={state_window} is not supported")
    if q_num_heads % kv_num_heads:
        raise ValueError(f"{op}: q_num_heads {q_num_heads} must be a multiple of kv_num_heads {kv_num_heads}")
    q = _heads(op, "query", query, q_num_heads)
    dk = q.shape[-1]
    k = _heads(op, "key", key, kv_num_heads, dk)
    v = _heads(op, "value", value, kv_num_heads)
    b, t, h, dv = v.shape
    if k.shape[:2] != (b, t) or q.shape[:2] != (b, t):
        raise ValueError(f"{op}: query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                         f"must share batch and sequence")
    if past_state is None:
        state = xp.zeros((b, h, dk, dv), xp.float32)
    elif tuple(past_state.shape) != (b, h, dk, dv):
        raise ValueError(f"{op}: input past_state has shape {tuple(past_state.shape)}, expected {(b, h, dk, dv)}")
    else:
        state = past_state.astype(xp.float32)
    gated, delta = "gated" in update_rule, "delta" in update_rule
    if gated and decay is None:
        raise ValueError(f"{op}: update_rule '{update_rule}' needs input decay")
    if delta and beta is None:
        raise ValueError(f"{op}: update_rule '{update_rule}' needs input beta")
    g = _per_head(op, "decay", decay, (b, t, h), dk) if gated else None
    bt = _per_head(op, "beta", beta, (b, t, h), dk) if delta else None
    sc = np.float32(scale if scale else 1.0 / np.sqrt(dk))
    group = q_num_heads // kv_num_heads
    out = xp.zeros((b, t, h, group, dv), xp.float32)
    for i in range(t):
        if gated:
            state = state * xp.exp(g[:, i])[..., None]
        kt, vt = k[:, i], v[:, i]
        if delta:
            pred = xp.einsum("bhkv,bhk->bhv", state, kt)
            state = state + bt[:, i][..., None] * kt[..., None] * (vt - pred)[:, :, None, :]
        else:
            state = state + kt[..., None] * vt[:, :, None, :]
        out[:, i] = sc * xp.einsum("bhgk,bhkv->bhgv", q[:, i].reshape(b, h, group, dk), state)
    y = out.reshape(b, t, q_num_heads * dv).astype(query.dtype)
    s_dtype = past_state.dtype if past_state is not None else query.dtype
    return (y, state.astype(s_dtype)) if ctx.num_outputs > 1 else y


def _causal_conv(xp, x, weight, bias, past, dilation, activation):
    """(output, present state), float32, of x (B, C, L) after past (B, C, keep)."""
    chans, taps = weight.shape[0], weight.shape[2]
    seq = x.shape[2]
    keep = (taps - 1) * dilation
    full = xp.concatenate([past.astype(xp.float32), x.astype(xp.float32)], axis=2)
    w = weight.reshape(chans, taps).astype(xp.float32)
    y = xp.zeros(x.shape, xp.float32)
    for j in range(taps):
        start = j * dilation
        y = y + w[None, :, j, None] * full[:, :, start:start + seq]
    if bias is not None:
        y = y + bias.astype(xp.float32).reshape(1, chans, 1)
    if activation != "none":
        y = y * activations._sigmoid(xp, y)
    return y, full[:, :, full.shape[2] - keep:]


@kernel("CausalConvWithState", since=1, domain=MS, types={"*": _T16})
def CausalConvWithState(ctx, input, weight, bias=None, past_state=None, *, ndim=1, dilation=1, activation="none",
                        channels_last=0, state_channels_last=-1, state_update_capacity=0, state_window=0,
                        state_length=0, input_channel_offset=0, input_channels=0):
    """Depthwise causal 1-D convolution: out[c, t] = bias[c] + sum_j w[c, j] x[c, t - (k-1-j) * dilation]
    over the past state followed by the input; present_state the last (k-1) * dilation positions;
    activation silu / swish optional.  channels_last=1: activations and state are
    (batch, seq, channel axes...) instead of (batch, channels, seq)."""
    xp = ctx.xp
    op = "CausalConvWithState"
    if ndim != 1:
        raise NotImplemented(f"{op}: ndim={ndim} is not supported (1-D only)")
    if state_update_capacity or state_window or state_length or input_channel_offset or input_channels:
        raise NotImplemented(f"{op}: the state-update / windowed-state / channel-slice attributes are not supported")
    if state_channels_last not in (-1, channels_last):
        raise NotImplemented(f"{op}: state_channels_last={state_channels_last} different from channels_last "
                             f"is not supported")
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"{op}: activation must be none, silu or swish, got '{activation}'")
    if channels_last:
        bsz, seq = input.shape[:2]
        chan_shape = tuple(input.shape[2:])
        x = input.reshape(bsz, seq, -1).transpose(0, 2, 1)
    else:
        if input.ndim != 3:
            raise ValueError(f"{op}: input must be (batch, channels, seq), got {tuple(input.shape)}")
        x = input
    bsz, chans, seq = x.shape
    if weight.ndim != 3 or weight.shape[:2] != (chans, 1):
        raise ValueError(f"{op}: weight must be ({chans}, 1, k), got {tuple(weight.shape)}")
    taps = weight.shape[2]
    keep = (taps - 1) * dilation
    if past_state is None:
        past = xp.zeros((bsz, chans, keep), xp.float32)
    else:
        past = past_state.reshape(bsz, keep, -1).transpose(0, 2, 1) if channels_last else past_state
        if tuple(past.shape) != (bsz, chans, keep):
            raise ValueError(f"{op}: input past_state has shape {tuple(past_state.shape)}, expected "
                             f"{(bsz, keep) + chan_shape if channels_last else (bsz, chans, keep)}")
    y, present = _causal_conv(xp, x, weight, bias, past, dilation, activation)
    if channels_last:
        y = y.transpose(0, 2, 1).reshape((bsz, seq) + chan_shape)
        present = present.transpose(0, 2, 1).reshape((bsz, keep) + chan_shape)
    y, present = y.astype(input.dtype), present.astype(input.dtype)
    if ctx.num_outputs == 1:
        return y
    return (y, present) + (None,) * (ctx.num_outputs - 2)


declare_formals(MS, "VarlenCausalConvWithState", ("T", "T", "M", "T", "T", "M", "T", "T"), ("T", "T", "T"))


@kernel("VarlenCausalConvWithState", since=1, domain=MS, types={"T": _T16, "M": frozenset({"int32"})},
        host_inputs=(2, 5))
def VarlenCausalConvWithState(ctx, input, weight, cumulative_sequence_length, bias=None, initial_state=None,
                              capture_count=None, kernel_delta=None, previous_mask=None, *, dilation=1,
                              activation="none", state_update_capacity=0, delta_offset=0, group_size=1):
    """CausalConvWithState over packed requests: input (total_tokens, channels), request r owns
    rows [cu[r], cu[r + 1]) and continues from initial_state[r] (B, C, (k-1) * dilation)."""
    xp = ctx.xp
    op = "VarlenCausalConvWithState"
    if state_update_capacity or capture_count is not None or kernel_delta is not None or previous_mask is not None:
        raise NotImplemented(f"{op}: compact state updates and the dynamic kernel deltas are not supported")
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"{op}: activation must be none, silu or swish, got '{activation}'")
    if input.ndim != 2:
        raise ValueError(f"{op}: input must be (total_tokens, channels), got {tuple(input.shape)}")
    chans = input.shape[1]
    if weight.ndim != 3 or weight.shape[:2] != (chans, 1):
        raise ValueError(f"{op}: weight must be ({chans}, 1, k), got {tuple(weight.shape)}")
    ranges = packed_ranges(op, cumulative_sequence_length, input.shape[0])
    keep = (weight.shape[2] - 1) * dilation
    if initial_state is None or tuple(initial_state.shape) != (len(ranges), chans, keep):
        got = None if initial_state is None else tuple(initial_state.shape)
        raise ValueError(f"{op}: input initial_state is required with shape {(len(ranges), chans, keep)}, got {got}")
    out = xp.zeros(input.shape, xp.float32)
    final = xp.zeros(initial_state.shape, xp.float32)
    for r, (a, b) in enumerate(ranges):
        y, present = _causal_conv(xp, input[a:b].T[None], weight, bias, initial_state[r:r + 1], dilation, activation)
        out[a:b] = y[0].T
        final[r] = present[0]
    y, final = out.astype(input.dtype), final.astype(input.dtype)
    if ctx.num_outputs == 1:
        return y
    return (y, final) + (None,) * (ctx.num_outputs - 2)


declare_formals(MS, "GatedDeltaNet", ("T", "T", "T", "TI", "TG", "TG", "TS", "TS", "TS", "TI", "TI"),
                ("T", "TS", "TS"))
_GATES = {"none": "none", "softplus": "softplus", "qwen": "softplus", "sigmoid": "sigmoid", "kda": "sigmoid"}


def _gdn_split(op, query, key, value, initial_state):
    """(q (N, Hq, Dk), k (N, Hq, Dk), v (N, Hv, Dv), leading token shape) from separate inputs or
    packed QKV (key and value absent; head counts from initial_state)."""
    if key is None:
        if initial_state is None:
            raise ValueError(f"{op}: packed QKV (key and value absent) needs initial_state for the head counts")
        _, hv, dv, dk = initial_state.shape
        width = query.shape[-1]
        hq2 = width - hv * dv
        if hq2 <= 0 or hq2 % (2 * dk):
            raise ValueError(f"{op}: packed QKV width {width} does not fit value heads {hv}x{dv} and key size {dk}")
        hq = hq2 // (2 * dk)
        flat = query.reshape(-1, width)
        q = flat[:, :hq * dk].reshape(-1, hq, dk)
        k = flat[:, hq * dk:2 * hq * dk].reshape(-1, hq, dk)
        v = flat[:, 2 * hq * dk:].reshape(-1, hv, dv)
        return q, k, v, tuple(query.shape[:-1])
    if query.ndim == 4:
        lead = tuple(query.shape[:2])
    elif query.ndim == 3:
        lead = tuple(query.shape[:1])
    else:
        raise ValueError(f"{op}: query must be (tokens, heads, head_size) or (batch, seq, heads, head_size), "
                         f"got {tuple(query.shape)}")
    q = query.reshape((-1,) + tuple(query.shape[-2:]))
    k = key.reshape((-1,) + tuple(key.shape[-2:]))
    v = value.reshape((-1,) + tuple(value.shape[-2:]))
    if k.shape != q.shape or v.shape[0] != q.shape[0] or v.shape[1] % q.shape[1]:
        raise ValueError(f"{op}: query {tuple(query.shape)}, key {tuple(key.shape)} and value {tuple(value.shape)} "
                         f"must share tokens, key heads = query heads, value heads a multiple of them")
    return q, k, v, lead


def _gdn_gate(xp, op, decay, a_log, dt_bias, gate, lower, hv, dk):
    """Effective log decay g (N, Hv, 1 or Dk), float32."""
    d = decay.astype(xp.float32)
    per_dim = d.shape[-1] == dk and d.ndim >= 3 and d.shape[-2] == hv
    d = d.reshape(-1, hv, dk if per_dim else 1)
    if gate == "none":
        return d
    if a_log is None or dt_bias is None:
        raise ValueError(f"{op}: gate_activation needs inputs a_log and dt_bias")
    bias = dt_bias.astype(xp.float32).reshape(hv, -1)
    x = d + bias[None]
    a = xp.exp(a_log.astype(xp.float32).reshape(1, hv, 1))
    if gate == "softplus":
        return -a * (xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x))))
    return np.float32(lower) * activations._sigmoid(xp, a * x)


@kernel("GatedDeltaNet", since=1, domain=MS,
        types={"T": _T16, "TG": _T16, "TS": frozenset({"float32"}), "TI": frozenset({"int32"})},
        host_inputs=(3, 9, 10))
def GatedDeltaNet(ctx, query, key=None, value=None, cu_seqlens=None, decay=None, beta=None, initial_state=None,
                  a_log=None, dt_bias=None, capture_count=None, state_update_active=None, *,
                  update_rule="gated_delta", scale=0.0, qk_l2_norm=0, gate_activation="none",
                  beta_activation="none", gate_lower_bound=-5.0, chunk_size=64, state_update_capacity=0):
    """Token-major gated delta network: per request (cu_seqlens, else uniform over initial_state's
    batch), per value head, S = exp(g) S + k (beta (v - exp(g) S^T k))^T, o = scale S^T q, with
    the state kept V-major (B, Hv, Dv, Dk) in float32."""
    xp = ctx.xp
    op = "GatedDeltaNet"
    if state_update_capacity or capture_count is not None:
        raise NotImplemented(f"{op}: compact state updates (state_update_capacity) are not supported")
    if update_rule not in _RULES:
        raise ValueError(f"{op}: update_rule must be one of {', '.join(_RULES)}, got '{update_rule}'")
    if gate_activation not in _GATES or beta_activation not in ("none", "sigmoid"):
        raise ValueError(f"{op}: gate_activation '{gate_activation}' or beta_activation '{beta_activation}' unknown")
    q, k, v, lead = _gdn_split(op, query, key, value, initial_state)
    n, hq, dk = q.shape
    hv, dv = v.shape[1:]
    q, k, v = q.astype(xp.float32), k.astype(xp.float32), v.astype(xp.float32)
    if qk_l2_norm:
        q = q / xp.sqrt(xp.maximum((q * q).sum(-1, keepdims=True), np.float32(1e-12)))
        k = k / xp.sqrt(xp.maximum((k * k).sum(-1, keepdims=True), np.float32(1e-12)))
    rep = hv // hq
    q, k = xp.repeat(q, rep, axis=1), xp.repeat(k, rep, axis=1)
    gated, delta = "gated" in update_rule, "delta" in update_rule
    g = _gdn_gate(xp, op, decay, a_log, dt_bias, _GATES[gate_activation], gate_lower_bound, hv, dk) if gated else None
    bt = None
    if delta:
        if beta is None:
            raise ValueError(f"{op}: update_rule '{update_rule}' needs input beta")
        bt = beta.astype(xp.float32).reshape(n, hv)
        if beta_activation == "sigmoid":
            bt = activations._sigmoid(xp, bt)
    if cu_seqlens is not None:
        ranges = packed_ranges(op, cu_seqlens, n)
    else:
        if initial_state is None:
            raise ValueError(f"{op}: without cu_seqlens, initial_state is required for the batch size")
        batch = initial_state.shape[0]
        if n % batch:
            raise ValueError(f"{op}: {n} tokens do not split evenly over batch {batch}")
        ranges = [(i * (n // batch), (i + 1) * (n // batch)) for i in range(batch)]
    if initial_state is not None and tuple(initial_state.shape) != (len(ranges), hv, dv, dk):
        raise ValueError(f"{op}: input initial_state has shape {tuple(initial_state.shape)}, expected "
                         f"{(len(ranges), hv, dv, dk)}")
    sc = np.float32(scale if scale else 1.0 / np.sqrt(dk))
    out = xp.zeros((n, hv, dv), xp.float32)
    final = xp.zeros((len(ranges), hv, dv, dk), xp.float32)
    for r, (a, b) in enumerate(ranges):
        state = xp.zeros((hv, dk, dv), xp.float32) if initial_state is None else \
            initial_state[r].astype(xp.float32).transpose(0, 2, 1)
        for t in range(a, b):
            if gated:
                state = state * xp.exp(g[t])[..., None]
            if delta:
                pred = xp.einsum("hkv,hk->hv", state, k[t])
                state = state + k[t][..., None] * (bt[t][:, None] * (v[t] - pred))[:, None, :]
            else:
                state = state + k[t][..., None] * v[t][:, None, :]
            out[t] = sc * xp.einsum("hkv,hk->hv", state, q[t])
        final[r] = state.transpose(0, 2, 1)
    y = out.reshape(lead + (hv, dv)).astype(query.dtype)
    if ctx.num_outputs == 1:
        return y
    return (y, final) + (None,) * (ctx.num_outputs - 2)
