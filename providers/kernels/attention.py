"""Transformer ops: Attention, FlexAttention, RotaryEmbedding, LinearAttention,
CausalConvWithState and SwiGLU.

float16 / bfloat16 inputs are computed in float32 and cast back at the end; grouped-query
attention never copies K/V per query head: Q is viewed as (B, H_kv, group, S_q, D) instead.
"""
import numpy as np

from ortgpu.providers.dtype_sets import BFLOAT16, BOOL, FLOATS, NUMERIC
from ortgpu.providers.registry import kernel

_PRECISION_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def _work_dtype(*arrays):
    """float64 when any input is float64, else float32."""
    return np.float64 if any(a is not None and a.dtype == np.float64 for a in arrays) else np.float32


def _softmax_last(xp, x):
    """Softmax over the last axis; a row of all -inf gives zeros rather than NaN."""
    m = x.max(axis=-1, keepdims=True)
    m = xp.where((m == -np.inf), 0, m)
    e = x - m                 # fresh: exponent and division in place (one temporary, not three)
    xp.exp(e, out=e)
    s = e.sum(axis=-1, keepdims=True)
    e /= xp.where(s == 0, 1, s)
    return e


def _grouped_matmul(xp, a, b, groups):
    """a (B, Hq, M, K) @ b (B, Hkv, K, N) where query head h uses kv head h // groups."""
    if groups == 1:
        return xp.matmul(a, b)
    B, Hq, M, Kd = a.shape
    out = xp.matmul(a.reshape(B, Hq // groups, groups, M, Kd), b[:, :, None])
    return out.reshape(B, Hq, M, out.shape[-1])


def _split_heads(x, heads):
    """(B, S, H*D) -> (B, H, S, D)."""
    B, S, HD = x.shape
    if HD % heads:
        raise ValueError(f"hidden size {HD} is not divisible by the {heads} heads")
    return x.reshape(B, S, heads, HD // heads).transpose(0, 2, 1, 3)


def _band_bias(xp, sq, skv, offset, lo, hi, dt):
    """0 where offset + i - lo <= j <= offset + i + hi (None = unbounded), else -inf.

    offset is an int, or an int array (B,) giving a (B, 1, sq, skv) result.
    """
    i = xp.arange(sq).reshape(sq, 1)
    j = xp.arange(skv).reshape(1, skv)
    if not isinstance(offset, int):
        i = i + offset.reshape(-1, 1, 1, 1)
    else:
        i = i + offset
    ok = None
    if lo is not None:
        ok = j >= i - lo
    if hi is not None:
        ok = (j <= i + hi) if ok is None else ok & (j <= i + hi)
    return xp.where(ok, dt(0), dt(-np.inf))


def _attention_bias(xp, attn_mask, sq, skv, batch, dt, *, is_causal, offset, nonpad,
                    left, right):
    """The additive bias (broadcastable to (B, H, sq, skv)) from mask, causality, window, padding."""
    bias = None

    def add(t):
        nonlocal bias
        bias = t if bias is None else bias + t

    if attn_mask is not None:
        pad = skv - attn_mask.shape[-1]
        if attn_mask.dtype == np.bool_:
            m = xp.where(attn_mask, dt(0), dt(-np.inf))
        else:
            m = attn_mask.astype(dt)
        if pad > 0:
            fill = xp.full(m.shape[:-1] + (pad,), -np.inf, dtype=dt)
            m = xp.concatenate([m, fill], axis=-1)
        elif pad < 0:
            raise ValueError(f"attn_mask covers {attn_mask.shape[-1]} keys, more than the {skv} keys")
        add(m)
    if is_causal:
        add(_band_bias(xp, sq, skv, offset, None, 0, dt))
    if left >= 0 or right >= 0:
        add(_band_bias(xp, sq, skv, offset, left if left >= 0 else None,
                       right if right >= 0 else None, dt))
    if nonpad is not None:
        keep = xp.arange(skv).reshape(1, skv) < nonpad.reshape(-1, 1)
        add(xp.where(keep, dt(0), dt(-np.inf)).reshape(batch, 1, 1, skv))
    return bias


def _attention(ctx, Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen, *, is_causal,
               kv_num_heads, q_num_heads, qk_matmul_output_mode, scale, softcap, softmax_precision,
               left_window_size=-1, right_window_size=-1):
    xp = ctx.xp
    if (past_key is None) != (past_value is None):
        raise ValueError("Attention: past_key and past_value must be given together")
    if nonpad_kv_seqlen is not None and past_key is not None:
        raise ValueError("Attention: nonpad_kv_seqlen cannot be combined with past_key / past_value")
    rank3 = Q.ndim == 3
    if rank3:
        if not q_num_heads or not kv_num_heads:
            raise ValueError("Attention: 3-D inputs need the q_num_heads and kv_num_heads attributes")
        Q4, K4, V4 = _split_heads(Q, q_num_heads), _split_heads(K, kv_num_heads), _split_heads(V, kv_num_heads)
    elif Q.ndim == 4:
        Q4, K4, V4 = Q, K, V
    else:
        raise ValueError(f"Attention: Q must be 3-D or 4-D, got shape {Q.shape}")
    present_key = K4 if past_key is None else xp.concatenate([past_key, K4], axis=2)
    present_value = V4 if past_value is None else xp.concatenate([past_value, V4], axis=2)

    B, Hq, Sq, D = Q4.shape
    Hkv, Skv = present_key.shape[1], present_key.shape[2]
    if Hq % Hkv or present_value.shape[1] != Hkv:
        raise ValueError(f"Attention: {Hq} query heads cannot share {Hkv} key/value heads")
    groups = Hq // Hkv
    wdt = _work_dtype(Q, K, V)
    if softmax_precision is not None and _PRECISION_DTYPES.get(softmax_precision) == np.float64:
        wdt = np.float64
    dt = np.dtype(wdt).type
    scale = 1.0 / np.sqrt(D) if scale is None else float(scale)

    q = Q4.astype(wdt)
    k = present_key.astype(wdt)
    v = present_value.astype(wdt)
    scores = _grouped_matmul(xp, q, k.transpose(0, 1, 3, 2), groups) * dt(scale)
    raw_scores = scores
    if softcap > 0:
        scores = xp.tanh(scores / dt(softcap)) * dt(softcap)

    if past_key is not None:
        offset = int(past_key.shape[2])
    elif nonpad_kv_seqlen is not None:
        offset = nonpad_kv_seqlen.astype(np.int64) - Sq
    else:
        offset = 0
    bias = _attention_bias(xp, attn_mask, Sq, Skv, B, dt, is_causal=is_causal, offset=offset,
                           nonpad=nonpad_kv_seqlen, left=left_window_size, right=right_window_size)
    logits = scores if bias is None else scores + bias
    probs = _softmax_last(xp, logits)
    if bias is not None:  # a row with no attendable key yields zeros, decided on the bias alone
        dead = bias.max(axis=-1, keepdims=True) == -np.inf
        probs = xp.where(dead, dt(0), probs)

    y = _grouped_matmul(xp, probs, v, groups)
    if rank3:
        y = y.transpose(0, 2, 1, 3).reshape(B, Sq, -1)
    outs = [y.astype(Q.dtype), present_key, present_value]
    if ctx.num_outputs > 3:
        if qk_matmul_output_mode == 3:
            qk = probs
        elif qk_matmul_output_mode == 2:
            qk = logits
        elif qk_matmul_output_mode == 1:
            qk = scores
        elif qk_matmul_output_mode == 0:
            qk = raw_scores
        else:
            raise ValueError(f"Attention: unknown qk_matmul_output_mode {qk_matmul_output_mode}")
        outs.append(xp.broadcast_to(qk, (B, Hq, Sq, Skv)).astype(Q.dtype))
    return tuple(outs[:max(ctx.num_outputs, 1)])


@kernel("Attention", since=23, types={"T1": FLOATS, "T2": FLOATS, "U": NUMERIC | BOOL})
def Attention_23(ctx, Q, K, V, attn_mask=None, past_key=None, past_value=None, *, is_causal=0,
                 kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None,
                 softcap=0.0, softmax_precision=None):
    """Scaled dot-product attention with masks, causality (offset by the past), GQA and softcap."""
    return _attention(ctx, Q, K, V, attn_mask, past_key, past_value, None, is_causal=is_causal,
                      kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                      qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                      softmax_precision=softmax_precision)


@kernel("Attention", since=(24, 25), types={"T1": FLOATS, "T2": FLOATS, "U": NUMERIC | BOOL})
def Attention(ctx, Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
              is_causal=0, kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None,
              softcap=0.0, softmax_precision=None, left_window_size=-1, right_window_size=-1):
    """Attention-24/25: adds nonpad_kv_seqlen (external KV cache) and, in 25, sliding windows."""
    return _attention(ctx, Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen,
                      is_causal=is_causal, kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                      qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                      softmax_precision=softmax_precision, left_window_size=left_window_size,
                      right_window_size=right_window_size)


@kernel("FlexAttention", since=1, domain="ai.onnx.preview", types={"T1": FLOATS})
def FlexAttention(ctx, Q, K, V, *, prob_mod=None, score_mod=None, softmax_precision=None, scale=None):
    """Attention on 4-D inputs whose scores / probabilities pass through optional subgraphs."""
    xp = ctx.xp
    if Q.ndim != 4 or K.ndim != 4 or V.ndim != 4:
        raise ValueError(f"FlexAttention: Q, K, V must be 4-D, got {Q.shape}, {K.shape}, {V.shape}")
    Hq, Hkv = Q.shape[1], K.shape[1]
    if Hq % Hkv or V.shape[1] != Hkv:
        raise ValueError(f"FlexAttention: {Hq} query heads cannot share {Hkv} key/value heads")
    if softmax_precision is not None:
        if softmax_precision not in _PRECISION_DTYPES:
            raise ValueError(f"FlexAttention: unsupported softmax_precision {softmax_precision}")
        cdt = _PRECISION_DTYPES[softmax_precision]
    else:
        cdt = np.float64 if Q.dtype == np.float64 else np.float32
    scale = 1.0 / np.sqrt(Q.shape[-1]) if scale is None else float(scale)
    wdt = np.float64 if cdt == np.float64 else np.float32
    scores = _grouped_matmul(xp, Q.astype(wdt), K.astype(wdt).transpose(0, 1, 3, 2), Hq // Hkv)
    scores = (scores * wdt(scale)).astype(cdt)
    if score_mod is not None:
        scores = xp.asarray(score_mod(scores)[0]).astype(cdt)
    probs = _softmax_last(xp, scores.astype(wdt)).astype(cdt)
    if prob_mod is not None:
        probs = xp.asarray(prob_mod(probs)[0]).astype(cdt)
    y = _grouped_matmul(xp, probs.astype(wdt), V.astype(wdt), Hq // Hkv)
    return y.astype(V.dtype)


@kernel("RotaryEmbedding", since=23,
        types={"T": BFLOAT16 | frozenset({"float16", "float32"}), "M": frozenset({"int64"})})
def RotaryEmbedding(ctx, X, cos_cache, sin_cache, position_ids=None, *, interleaved=0, num_heads=0,
                    rotary_embedding_dim=0):
    """Rotate the first rotary_embedding_dim features of each head by position-dependent angles."""
    xp = ctx.xp
    wdt = _work_dtype(X)
    if X.ndim == 4:          # (B, H, S, D): heads before sequence
        x = X
    elif X.ndim == 3:        # (B, S, H*D): view as (B, S, H, D)
        if not num_heads:
            raise ValueError("RotaryEmbedding: 3-D input needs the num_heads attribute")
        B, S, HD = X.shape
        x = X.reshape(B, S, num_heads, HD // num_heads)
    else:
        raise ValueError(f"RotaryEmbedding: input must be 3-D or 4-D, got shape {X.shape}")
    D = x.shape[-1]
    rd = rotary_embedding_dim or D
    half = rd // 2
    if position_ids is not None:
        cos, sin = cos_cache[position_ids], sin_cache[position_ids]   # (B, S, rd/2)
    else:
        cos, sin = cos_cache, sin_cache
    if cos.shape[-1] != half or sin.shape[-1] != half:
        raise ValueError(f"RotaryEmbedding: cos/sin caches have {cos.shape[-1]} columns, "
                         f"expected rotary_embedding_dim / 2 = {half}")
    # Broadcast (B, S, rd/2) against the head axis.
    cos = cos.astype(wdt)[:, None] if X.ndim == 4 else cos.astype(wdt)[:, :, None]
    sin = sin.astype(wdt)[:, None] if X.ndim == 4 else sin.astype(wdt)[:, :, None]
    rot = x[..., :rd].astype(wdt)
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., :half], rot[..., half:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rotated = xp.stack([real, imag], axis=-1).reshape(rot.shape)
    else:
        rotated = xp.concatenate([real, imag], axis=-1)
    out = xp.concatenate([rotated.astype(X.dtype), x[..., rd:]], axis=-1) if rd < D else rotated.astype(X.dtype)
    return out.reshape(X.shape)


@kernel("LinearAttention", since=27,
        types={"T": BFLOAT16 | frozenset({"float16", "float32"}),
               "S": BFLOAT16 | frozenset({"float16", "float32"})})
def LinearAttention(ctx, query, key, value, past_state=None, decay=None, beta=None, *, chunk_size=64,
                    kv_num_heads=None, q_num_heads=None, scale=0.0, update_rule="gated_delta"):
    """Recurrent linear attention (linear / gated / delta / gated_delta), one token at a time."""
    xp = ctx.xp
    if update_rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ValueError(f"LinearAttention: unknown update_rule '{update_rule}'")
    if not q_num_heads or not kv_num_heads or q_num_heads % kv_num_heads:
        raise ValueError(f"LinearAttention: q_num_heads ({q_num_heads}) must be a positive multiple "
                         f"of kv_num_heads ({kv_num_heads})")
    gated = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    if gated != (decay is not None):
        raise ValueError(f"LinearAttention: update_rule '{update_rule}' "
                         f"{'needs' if gated else 'takes no'} decay input")
    if delta != (beta is not None):
        raise ValueError(f"LinearAttention: update_rule '{update_rule}' "
                         f"{'needs' if delta else 'takes no'} beta input")
    wdt = np.float32
    B, T, _ = query.shape
    Hq, Hkv = q_num_heads, kv_num_heads
    G = Hq // Hkv
    q = _split_heads(query, Hq).astype(wdt)    # (B, Hq, T, dk)
    k = _split_heads(key, Hkv).astype(wdt)     # (B, Hkv, T, dk)
    v = _split_heads(value, Hkv).astype(wdt)   # (B, Hkv, T, dv)
    dk, dv = k.shape[-1], v.shape[-1]
    if gated:
        if decay.shape[-1] == Hkv:
            g = decay.reshape(B, T, Hkv, 1).transpose(0, 2, 1, 3)
        elif decay.shape[-1] == Hkv * dk:
            g = _split_heads(decay, Hkv)
        else:
            raise ValueError(f"LinearAttention: decay's last axis must be {Hkv} or {Hkv * dk}, "
                             f"got {decay.shape[-1]}")
        g = xp.exp(g.astype(wdt))             # (B, Hkv, T, 1 | dk)
    if delta:
        if beta.shape[-1] not in (Hkv, 1):
            raise ValueError(f"LinearAttention: beta's last axis must be {Hkv} or 1, got {beta.shape[-1]}")
        bt = beta.reshape(B, T, beta.shape[-1], 1).transpose(0, 2, 1, 3).astype(wdt)
    if past_state is not None:
        if past_state.shape != (B, Hkv, dk, dv):
            raise ValueError(f"LinearAttention: past_state shape {past_state.shape}, "
                             f"expected {(B, Hkv, dk, dv)}")
        state = past_state.astype(wdt)
    else:
        state = xp.zeros((B, Hkv, dk, dv), dtype=wdt)
    scale = float(scale) if scale else 1.0 / np.sqrt(dk)
    q = q.reshape(B, Hkv, G, T, dk)
    out = xp.empty((B, Hkv, G, T, dv), dtype=wdt)
    for t in range(T):
        if gated:
            state = state * g[:, :, t, :, None]
        kt, vt = k[:, :, t], v[:, :, t]
        if delta:
            recalled = xp.matmul(kt[:, :, None, :], state)[:, :, 0]   # S^T k: (B, Hkv, dv)
            vt = bt[:, :, t] * (vt - recalled)
        state = state + kt[..., :, None] * vt[..., None, :]
        out[:, :, :, t] = xp.matmul(q[:, :, :, t], state) * wdt(scale)
    out = out.reshape(B, Hq, T, dv).transpose(0, 2, 1, 3).reshape(B, T, Hq * dv)
    state_dtype = past_state.dtype if past_state is not None else query.dtype
    return out.astype(query.dtype), state.astype(state_dtype)


@kernel("CausalConvWithState", since=27, types={"T": BFLOAT16 | frozenset({"float16", "float32"})})
def CausalConvWithState(ctx, input, weight, bias=None, past_state=None, *, activation="none"):
    """Depthwise causal 1-D convolution over (B, C, L), carrying the last k-1 inputs as state."""
    xp = ctx.xp
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"CausalConvWithState: unknown activation '{activation}'")
    B, C, L = input.shape
    ksz = weight.shape[2]
    if past_state is None:
        past_state = xp.zeros((B, C, ksz - 1), dtype=input.dtype)
    padded = xp.concatenate([past_state.astype(input.dtype), input], axis=2)
    wdt = _work_dtype(input)
    w = weight.reshape(C, ksz).astype(wdt)
    x = padded.astype(wdt)
    out = xp.zeros((B, C, L), dtype=wdt) if bias is None else xp.broadcast_to(
        bias.astype(wdt)[None, :, None], (B, C, L)).copy()
    for j in range(ksz):
        out += w[None, :, j:j + 1] * x[:, :, j:j + L]
    if activation != "none":
        out = out.astype(input.dtype).astype(wdt)
        out = out / (1 + xp.exp(-out))
    present = padded[:, :, padded.shape[2] - (ksz - 1):]
    return out.astype(input.dtype), present


@kernel("SwiGLU", since=28, types={"T": FLOATS})
def SwiGLU(ctx, A, B, *, alpha=1.0):
    """Swish(A) * B, with Swish(a) = a * sigmoid(alpha * a); no broadcasting."""
    xp = ctx.xp
    if A.shape != B.shape:
        raise ValueError(f"SwiGLU: A and B must have the same shape, got {A.shape} and {B.shape}")
    wdt = _work_dtype(A)
    a = A.astype(wdt)
    return (a / (1 + xp.exp(-wdt(alpha) * a)) * B.astype(wdt)).astype(A.dtype)
