"""Attention family of onnxruntime's com.microsoft domain: Attention (BERT/GPT-2 with packed
QKV weights), MultiHeadAttention, GroupQueryAttention (KV cache with per-row lengths, rotary,
local window, softcap), RotaryEmbedding and MRotaryEmbedding (multimodal rotary).

Semantics from onnxruntime's ContribOperators.md: masked keys get ``mask_filter_value``
(default -10000) added to their scores in Attention and MultiHeadAttention, as onnxruntime does,
so a fully masked row is a uniform average rather than zeros; GroupQueryAttention leaves keys
outside a row's causal window out of its softmax.  float16 computes in float32; the
grouped-query product and the softmax are attention.py's.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.base import host_array
from ortgpu.providers.cpu import half_compiled, softmax_compiled
from ortgpu.providers.dtype_sets import FLOAT, INDEX
from ortgpu.providers.kernels.linalg import times_weight
from ortgpu.providers.kernels.attention import _grouped_matmul, _softmax_last, _split_heads
from ortgpu.providers.kernels.reduce import float_work_dtype
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_NEG = -np.inf


def _w(x, wdt):
    return None if x is None else (x if x.dtype == wdt else x.astype(wdt))


def _merge_heads(y):
    """(B, N, S, D) -> (B, S, N*D)."""
    b, n, s, d = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b, s, n * d)


def _scores(xp, q, k, scale, groups):
    """q k^T * scale, scaled in place on the product (a fresh array)."""
    scores = xp.asarray(_grouped_matmul(xp, q, k.transpose(0, 1, 3, 2), groups))
    scores *= q.dtype.type(scale)
    return scores


def _key_keep(xp, op, mask, b, s, t):
    """Which keys a key mask keeps, broadcastable to (B, 1, S, T), from onnxruntime's formats:
    (B) valid lengths, (2B) ends then starts, (B, T) or (B, S, T) with 0 for a masked key."""
    if mask is None:
        return None
    keys = xp.arange(t)
    if mask.ndim == 1 and mask.shape[0] in (b, 2 * b):
        ends = mask[:b].astype(np.int64).reshape(b, 1)
        keep = keys.reshape(1, t) < ends
        if mask.shape[0] == 2 * b:
            keep = keep & (keys.reshape(1, t) >= mask[b:].astype(np.int64).reshape(b, 1))
        return keep.reshape(b, 1, 1, t)
    if mask.ndim == 2 and mask.shape == (b, t):
        return (mask != 0).reshape(b, 1, 1, t)
    if mask.ndim == 3 and mask.shape == (b, s, t):
        return (mask != 0).reshape(b, 1, s, t)
    raise ValueError(f"{op}: mask of shape {tuple(mask.shape)} fits none of ({b},), ({2 * b},), "
                     f"({b}, {t}), ({b}, {s}, {t})")


def _mask_bias(xp, op, mask, unidirectional, b, s, t, filt, wdt):
    """The additive bias of the key mask and causality (queries are the last s of t positions):
    mask_filter_value where the mask drops a key, -inf (as onnxruntime) after the query; or None."""
    keep = _key_keep(xp, op, mask, b, s, t)
    bias = None if keep is None else xp.where(keep, wdt(0), wdt(filt))
    if unidirectional:
        later = xp.arange(t).reshape(1, t) > (xp.arange(s).reshape(s, 1) + (t - s))
        causal = xp.where(later, wdt(_NEG), wdt(0))
        bias = causal if bias is None else bias + causal
    return bias


def _attend(xp, q, k, v, bias, scale, groups=1, want_scores=True):
    """softmax(q k^T * scale + bias) v in the work dtype; returns (output, the scaled and biased
    scores, or None when not `want_scores`).  Without them, the scale and a bias of the scores'
    full width (a key mask (B, 1, 1, T), an attention bias (B|1, N|1, S|1, T)) go into the
    compiled softmax's own pass over the scores."""
    scores = xp.asarray(_grouped_matmul(xp, q, k.transpose(0, 1, 3, 2), groups))
    if not want_scores and half_compiled.takes(xp, scores, bias) and scores.dtype == np.float32 and (
            bias is None or _row_bias(bias, scores.shape)):
        if bias is not None and bias.ndim < 4:
            bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
        probs = softmax_compiled.softmax_rows(scores, 3, empty_zero=True, scale=scale, bias=bias)
        return _grouped_matmul(xp, probs, v, groups), None
    scores *= scores.dtype.type(scale)
    if bias is not None:
        if np.broadcast_shapes(scores.shape, bias.shape) == scores.shape:
            scores += bias   # fresh: in place
        else:
            scores = scores + bias
    if half_compiled.takes(xp, scores):   # compiled rows (softmax_compiled); scores are float32 here
        probs = softmax_compiled.softmax_rows(scores, scores.ndim - 1, empty_zero=True)
    else:
        probs = _softmax_last(xp, scores)
    return _grouped_matmul(xp, probs, v, groups), scores


def _row_bias(bias, shape) -> bool:
    """Whether an attention bias broadcasts to scores of `shape` (B, N, S, T) with its full last
    axis: what the compiled softmax adds row by row."""
    if bias.ndim > 4 or bias.shape[-1] != shape[3]:
        return False
    lead = (1,) * (4 - bias.ndim) + tuple(bias.shape[:-1])
    return all(d in (1, s) for d, s in zip(lead, shape[:3]))


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


# ---------------------------------------------------------------------------- Attention

declare_formals(MS, "Attention", ("T", "T", "T", "M", "T", "T", "M"), ("T", "T"))


@kernel("Attention", since=1, domain=MS, types={"T": FLOAT, "M": INDEX})
def Attention(ctx, input, weights, bias=None, mask_index=None, past=None, attention_bias=None,
              past_sequence_length=None, *, num_heads, qkv_hidden_sizes=None, unidirectional=0,
              mask_filter_value=-10000.0, scale=0.0, do_rotary=0, past_present_share_buffer=0,
              rotary_embedding_dim=0):
    """Self-attention with the Q, K, V projections in one weight (Hin, Hq + Hk + Hv); past and
    present stack key and value: (2, B, N, P, D)."""
    xp = ctx.xp
    op = "Attention"
    if do_rotary or past_present_share_buffer:
        raise NotImplementedError(f"{op}: do_rotary and past_present_share_buffer are not supported")
    if input.ndim != 3 or weights.ndim != 2 or weights.shape[0] != input.shape[2]:
        raise ValueError(f"{op}: input must be (B, S, Hin) and weights (Hin, 3 * H), got "
                         f"{tuple(input.shape)} and {tuple(weights.shape)}")
    sizes = list(qkv_hidden_sizes) if qkv_hidden_sizes else [weights.shape[1] // 3] * 3
    if sum(sizes) != weights.shape[1] or sizes[0] != sizes[1] or any(h % num_heads for h in sizes):
        raise ValueError(f"{op}: qkv hidden sizes {sizes} do not fit weights {tuple(weights.shape)} "
                         f"and num_heads={num_heads}")
    if bias is not None and tuple(bias.shape) != (weights.shape[1],):
        raise ValueError(f"{op}: bias must have shape ({weights.shape[1]},), got {tuple(bias.shape)}")
    wdt = float_work_dtype(input.dtype)
    b, s, _ = input.shape
    qkv = xp.asarray(times_weight(ctx, _w(input, wdt), weights, _w(weights, wdt), 1))   # one GEMM over B*S rows
    if bias is not None:
        qkv += _w(bias, wdt)
    q = _split_heads(qkv[..., :sizes[0]], num_heads)
    k = _split_heads(qkv[..., sizes[0]:sizes[0] + sizes[1]], num_heads)
    v = _split_heads(qkv[..., sizes[0] + sizes[1]:], num_heads)
    if past is not None:
        if past.ndim != 5 or past.shape[0] != 2 or past.shape[1:3] != (b, num_heads):
            raise ValueError(f"{op}: past must be (2, {b}, {num_heads}, P, D), got {tuple(past.shape)}")
        k = xp.concatenate([_w(past[0], wdt), k], axis=2)
        v = xp.concatenate([_w(past[1], wdt), v], axis=2)
    t = k.shape[2]
    dt = np.dtype(wdt).type
    bias_all = _mask_bias(xp, op, mask_index, unidirectional, b, s, t, mask_filter_value, dt)
    if attention_bias is not None:
        bias_all = _add(bias_all, _w(attention_bias, wdt))
    scale = float(scale) if scale else 1.0 / np.sqrt(sizes[0] // num_heads)
    y, _ = _attend(xp, q, k, v, bias_all, scale, want_scores=False)
    out = _merge_heads(y).astype(input.dtype, copy=False)
    if ctx.num_outputs > 1:
        return out, xp.stack([k, v]).astype(input.dtype, copy=False)
    return out


# ------------------------------------------------------------------- MultiHeadAttention

declare_formals(MS, "MultiHeadAttention", ("T", "T", "T", "T", "M", "T", "T", "T", "M", "M"),
                ("T", "T", "T", "QK"))


def _mha_inputs(xp, op, query, key, value, bias, n, wdt):
    """q (B, N, S, D), k and v (B, N, L, D) from the layouts MultiHeadAttention accepts, and
    whether k/v came already split into heads (then the past is not concatenated)."""
    if query.ndim == 5:  # packed QKV (B, S, N, 3, D)
        if key is not None or value is not None:
            raise ValueError(f"{op}: packed QKV query (5-D) takes no key or value")
        qkv = _w(query, wdt)
        q, k, v = (qkv[:, :, :, i].transpose(0, 2, 1, 3) for i in range(3))
        return q, k, v, False
    q = _w(query, wdt)
    if bias is not None:
        q = q + _w(bias[:q.shape[-1]], wdt)
    if key is not None and key.ndim == 5:  # packed KV (B, L, N, 2, D)
        kv = _w(key, wdt)
        return _split_heads(q, n), kv[:, :, :, 0].transpose(0, 2, 1, 3), kv[:, :, :, 1].transpose(0, 2, 1, 3), False
    if key is None or value is None:
        raise ValueError(f"{op}: key and value are required unless the query packs them")
    if key.ndim == 4:  # already (B, N, L, D): cross attention with projected keys
        return _split_heads(q, n), _w(key, wdt), _w(value, wdt), True
    k, v = _w(key, wdt), _w(value, wdt)
    if bias is not None:
        hk = k.shape[-1]
        k = k + _w(bias[q.shape[-1]:q.shape[-1] + hk], wdt)
        v = v + _w(bias[q.shape[-1] + hk:], wdt)
    return _split_heads(q, n), _split_heads(k, n), _split_heads(v, n), False


@kernel("MultiHeadAttention", since=1, domain=MS, types={"T": FLOAT, "M": INDEX, "QK": FLOAT})
def MultiHeadAttention(ctx, query, key=None, value=None, bias=None, key_padding_mask=None,
                       attention_bias=None, past_key=None, past_value=None, past_sequence_length=None,
                       cache_indirection=None, *, num_heads, mask_filter_value=-10000.0, scale=0.0,
                       unidirectional=0):
    """Attention over projected Q, K, V (separate, packed, or K/V already split into heads),
    with an optional past appended to K/V; outputs output, present_key, present_value."""
    xp = ctx.xp
    op = "MultiHeadAttention"
    if cache_indirection is not None:
        raise NotImplementedError(f"{op}: cache_indirection (beam search) is not supported")
    wdt = float_work_dtype(query.dtype)
    q, k, v, bnsh = _mha_inputs(xp, op, query, key, value, bias, num_heads, wdt)
    if past_key is not None and past_value is not None and not bnsh:
        k = xp.concatenate([_w(past_key, wdt), k], axis=2)
        v = xp.concatenate([_w(past_value, wdt), v], axis=2)
    b, _, s, d = q.shape
    t = k.shape[2]
    dt = np.dtype(wdt).type
    bias_all = _mask_bias(xp, op, key_padding_mask, unidirectional, b, s, t, mask_filter_value, dt)
    if attention_bias is not None:
        bias_all = _add(bias_all, _w(attention_bias, wdt))
    scale = float(scale) if scale else 1.0 / np.sqrt(d)
    y, scores = _attend(xp, q, k, v, bias_all, scale, want_scores=ctx.num_outputs > 3)
    outs = [_merge_heads(y).astype(query.dtype), k.astype(query.dtype), v.astype(query.dtype)]
    if ctx.num_outputs > 3:
        outs.append(scores.astype(query.dtype))
    return tuple(outs[:ctx.num_outputs]) if ctx.num_outputs > 1 else outs[0]


# ---------------------------------------------------------------------- rotary helpers

def rotate(xp, x, cos, sin, interleaved, rotary_dim=0):
    """Rotate the first rotary_dim features of x (B, S, N, D) by cos/sin (B, S, rd/2)."""
    d = x.shape[-1]
    rd = rotary_dim or 2 * cos.shape[-1]
    half = rd // 2
    if cos.shape[-1] != half:
        raise ValueError(f"rotary: cos/sin caches have {cos.shape[-1]} columns, expected {half}")
    c, s_ = cos[:, :, None], sin[:, :, None]
    rot = x[..., :rd]
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else (rot[..., :half], rot[..., half:])
    real, imag = c * x1 - s_ * x2, s_ * x1 + c * x2
    rotated = xp.stack([real, imag], axis=-1).reshape(rot.shape) if interleaved else \
        xp.concatenate([real, imag], axis=-1)
    return xp.concatenate([rotated, x[..., rd:]], axis=-1) if rd < d else rotated


def _heads_last(op: str, input, num_heads: int, default_head_size: int):
    """(batch, sequence, x as batch x sequence x heads x head size) of a rotary input given as
    batch x heads x sequence x head size, or as batch x sequence x hidden split into
    `num_heads` heads (0: heads of `default_head_size`, the rotary cache's width)."""
    if input.ndim == 4:
        b, _, s, _ = input.shape
        return b, s, input.transpose(0, 2, 1, 3)
    if input.ndim == 3:
        b, s, h = input.shape
        d = (h // num_heads) if num_heads else default_head_size
        if h % d:
            raise ValueError(f"{op}: hidden size {h} is not a multiple of the head size {d}")
        return b, s, input.reshape(b, s, h // d, d)
    raise ValueError(f"{op}: input must be 3-D or 4-D, got shape {tuple(input.shape)}")


def _cache_rows(op, cache, pos):
    if bool((pos < 0).any()) or bool((pos >= cache.shape[0]).any()):
        raise ValueError(f"{op}: positions reach {int(pos.max())}, beyond the {cache.shape[0]} rows "
                         f"of cos_cache/sin_cache")
    return cache[pos]


declare_formals(MS, "RotaryEmbedding", ("T", "M", "T", "T"), ("T",))


@kernel("RotaryEmbedding", since=1, domain=MS, types={"T": FLOAT, "M": frozenset({"int64"})})
def RotaryEmbedding(ctx, input, position_ids, cos_cache, sin_cache, *, interleaved=0, num_heads=0,
                    rotary_embedding_dim=0, scale=1.0, is_packed_batching=0):
    """Rotary position embedding of (B, S, H) or (B, N, S, D) input; position_ids is (B, S) or
    one start offset (positions offset + 0..S-1)."""
    xp = ctx.xp
    op = "RotaryEmbedding"
    if is_packed_batching:
        raise NotImplementedError(f"{op}: is_packed_batching is not supported")
    wdt = float_work_dtype(input.dtype)
    b, s, x = _heads_last(op, input, num_heads, 2 * cos_cache.shape[1])
    pos = position_ids.astype(np.int64)
    if pos.size == 1:
        pos = pos.reshape(1, 1) + xp.arange(s).reshape(1, s)
    pos = xp.broadcast_to(pos, (b, s))
    cos = _w(_cache_rows(op, cos_cache, pos), wdt)
    sin = _w(_cache_rows(op, sin_cache, pos), wdt)
    y = rotate(xp, _w(x, wdt), cos, sin, interleaved, rotary_embedding_dim).astype(input.dtype)
    return y.transpose(0, 2, 1, 3) if input.ndim == 4 else y.reshape(input.shape)


def _mrope_table(xp, op, cache, pos, section, layout):
    """(B, S, half) cos or sin rows for M-RoPE: pos (3, B, S) holds the temporal, height and width
    positions; layout 0 takes section[0] columns from the temporal rows, then section[1] from the
    height rows, then section[2] from the width rows; layout 1 starts from the temporal rows and
    overwrites column 1 + 3j (j < section[1]) from the height rows, 2 + 3j (j < section[2]) from
    the width rows."""
    rows = [_cache_rows(op, cache, pos[i]) for i in range(3)]
    half = cache.shape[1]
    if layout == 0:
        bounds = np.cumsum([0] + list(section))
        return xp.concatenate([rows[i][..., bounds[i]:bounds[i + 1]] for i in range(3)], axis=-1)
    table = rows[0].copy()
    for stream, offset in ((1, 1), (2, 2)):
        cols = np.arange(offset, min(3 * section[stream], half), 3)
        cols = cols[cols < half]
        table[..., cols] = rows[stream][..., cols]
    return table


declare_formals(MS, "MRotaryEmbedding", ("T", "M", "T", "T"), ("T",))


@kernel("MRotaryEmbedding", since=1, domain=MS, types={"T": frozenset({"float32", "float16"}),
                                                         "M": frozenset({"int64"})})
def MRotaryEmbedding(ctx, input, position_ids, cos_cache, sin_cache, *, mrope_section, interleaved=0, num_heads=0,
                     rotary_embedding_dim=0, mrope_layout=0, scale=1.0, is_packed_batching=0):
    """Multimodal rotary embedding (Qwen2-VL and later): RotaryEmbedding whose per-token cos/sin
    row is assembled from three position streams (temporal, height, width; position_ids
    (3, B, S)) by mrope_section and mrope_layout."""
    xp = ctx.xp
    op = "MRotaryEmbedding"
    if is_packed_batching:
        raise NotImplementedError(f"{op}: is_packed_batching is not supported")
    section = [int(v) for v in mrope_section]
    half = cos_cache.shape[1]
    if len(section) != 3 or min(section) < 0 or sum(section) != half:
        raise ValueError(f"{op}: mrope_section {section} must be 3 non-negative sizes summing to the cache "
                         f"width {half}")
    if mrope_layout not in (0, 1):
        raise ValueError(f"{op}: mrope_layout must be 0 or 1, got {mrope_layout}")
    b, s, x = _heads_last(op, input, num_heads, 2 * half)
    pos = position_ids.astype(np.int64)
    if tuple(pos.shape) != (3, b, s):
        raise ValueError(f"{op}: position_ids has shape {tuple(pos.shape)}, expected (3, {b}, {s})")
    wdt = np.float32
    cos = _w(_mrope_table(xp, op, cos_cache, pos, section, mrope_layout), wdt)
    sin = _w(_mrope_table(xp, op, sin_cache, pos, section, mrope_layout), wdt)
    y = rotate(xp, _w(x, wdt), cos, sin, interleaved, rotary_embedding_dim).astype(input.dtype)
    return y.transpose(0, 2, 1, 3) if input.ndim == 4 else y.reshape(input.shape)


# ------------------------------------------------------------------- GroupQueryAttention

declare_formals(MS, "GroupQueryAttention",
                ("T", "T", "T", "T_CACHE", "T_CACHE", "M", "M", "T", "T", "P", "T", "T", "S", "S"),
                ("T", "T_CACHE", "T_CACHE", "T"))


def _gqa_split(op, query, key, value, n, n_kv):
    """q (B, S, N, D), k and v (B, S, Nkv, D) from separate or packed (key absent) inputs."""
    b, s, h = query.shape
    if key is None:
        d = h // (n + 2 * n_kv)
        if d * (n + 2 * n_kv) != h:
            raise ValueError(f"{op}: packed query width {h} is not (num_heads + 2 * kv_num_heads) * D")
        q = query[..., :n * d]
        k = query[..., n * d:(n + n_kv) * d]
        v = query[..., (n + n_kv) * d:]
    else:
        q, k, v = query, key, value
    d = q.shape[-1] // n
    if q.shape[-1] % n or k.shape[-1] != n_kv * d or v.shape[-1] != n_kv * d:
        raise ValueError(f"{op}: query width {q.shape[-1]}, key {k.shape[-1]}, value {v.shape[-1]} do not "
                         f"fit num_heads={n} and kv_num_heads={n_kv}")
    return q.reshape(b, s, n, d), k.reshape(b, s, n_kv, d), v.reshape(b, s, n_kv, d)


# GroupQueryAttention's declaration, shared by its CUDA launcher: element types per constraint,
# and seqlens_k / total_sequence_length read on the host
GQA_TYPES = {"T": FLOAT, "T_CACHE": FLOAT, "M": frozenset({"int32"}), "P": frozenset({"int64"}),
             "S": frozenset({"float32"})}
GQA_HOST_INPUTS = (5, 6)


@kernel("GroupQueryAttention", since=1, domain=MS, types=GQA_TYPES, host_inputs=GQA_HOST_INPUTS,
        capturable=False)
def GroupQueryAttention(ctx, query, key=None, value=None, past_key=None, past_value=None, seqlens_k=None,
                        total_sequence_length=None, cos_cache=None, sin_cache=None, position_ids=None,
                        attention_bias=None, head_sink=None, k_scale=None, v_scale=None, *, num_heads,
                        kv_num_heads, do_rotary=0, rotary_interleaved=0, scale=0.0, softcap=0.0,
                        local_window_size=-1, smooth_softmax=0, qk_output=0, k_quant_type="NONE",
                        v_quant_type="NONE", kv_cache_bit_width=0):
    """Grouped-query attention over a KV cache of (B, Nkv, P, D): row b holds seqlens_k[b] + 1
    valid positions after this step; the S new keys/values go right after its past, queries are
    causal within that window (and local_window_size back), rotary applied to Q and K first."""
    xp = ctx.xp
    op = "GroupQueryAttention"
    if k_scale is not None or v_scale is not None or k_quant_type != "NONE" or v_quant_type != "NONE":
        raise NotImplementedError(f"{op}: quantized KV cache is not supported")
    if seqlens_k is None or total_sequence_length is None:
        raise ValueError(f"{op}: inputs 'seqlens_k' and 'total_sequence_length' are required")
    if num_heads % kv_num_heads:
        raise ValueError(f"{op}: num_heads={num_heads} is not a multiple of kv_num_heads={kv_num_heads}")
    wdt = float_work_dtype(query.dtype)
    dt = np.dtype(wdt).type
    q, k, v = _gqa_split(op, query, key, value, num_heads, kv_num_heads)
    b, s, _, d = q.shape
    lens = host_array(seqlens_k).astype(np.int64).reshape(-1) + 1          # valid keys per row
    total = int(host_array(total_sequence_length).reshape(-1)[0])
    if lens.shape[0] != b:
        raise ValueError(f"{op}: seqlens_k has {lens.shape[0]} entries for a batch of {b}")
    first_prompt = past_key is None or (s == total and s > 1)
    pasts = np.zeros(b, np.int64) if first_prompt else lens - s               # past length per row
    if bool((pasts < 0).any()):
        raise ValueError(f"{op}: seqlens_k + 1 ({lens.tolist()}) is shorter than the {s} new tokens")
    q, k, v = _w(q, wdt), _w(k, wdt), _w(v, wdt)
    if do_rotary:
        if cos_cache is None or sin_cache is None:
            raise ValueError(f"{op}: do_rotary=1 needs cos_cache and sin_cache")
        if position_ids is not None:
            pos = xp.broadcast_to(position_ids.astype(np.int64), (b, s))
        else:
            pos = xp.asarray(pasts).reshape(b, 1) + xp.arange(s).reshape(1, s)
        cos = _w(_cache_rows(op, cos_cache, pos), wdt)
        sin = _w(_cache_rows(op, sin_cache, pos), wdt)
        q = rotate(xp, q, cos, sin, rotary_interleaved)
        k = rotate(xp, k, cos, sin, rotary_interleaved)
    past_len = 0 if past_key is None else past_key.shape[2]
    present_len = max(past_len, total)
    cache_dt = query.dtype if past_key is None else past_key.dtype
    present_k = xp.zeros((b, kv_num_heads, present_len, d), dtype=wdt)
    present_v = xp.zeros((b, kv_num_heads, present_len, d), dtype=wdt)
    for i in range(b):
        p = int(pasts[i])
        if p:
            present_k[i, :, :p] = _w(past_key[i, :, :p], wdt)
            present_v[i, :, :p] = _w(past_value[i, :, :p], wdt)
        present_k[i, :, p:p + s] = k[i].transpose(1, 0, 2)
        present_v[i, :, p:p + s] = v[i].transpose(1, 0, 2)
    # which keys each query sees: j < lens[b], j <= past + i, and within the local window
    qpos = xp.asarray(pasts).reshape(b, 1, 1) + xp.arange(s).reshape(1, s, 1)
    keys = xp.arange(present_len).reshape(1, 1, present_len)
    keep = (keys <= qpos) & (keys < xp.asarray(lens).reshape(b, 1, 1))
    if local_window_size >= 0:
        keep = keep & (keys > qpos - local_window_size)
    qh = q.transpose(0, 2, 1, 3)
    scale = float(scale) if scale else 1.0 / np.sqrt(d)
    groups = num_heads // kv_num_heads
    scores = _scores(xp, qh, present_k, scale, groups)
    if softcap > 0:
        scores = xp.tanh(scores / dt(softcap)) * dt(softcap)
    if attention_bias is not None:   # (B|1, N|1, S, total): keys past total are masked anyway
        ab = _w(attention_bias, wdt)[..., :present_len]
        if ab.shape[-1] < present_len:
            ab = xp.concatenate([ab, xp.zeros(ab.shape[:-1] + (present_len - ab.shape[-1],), wdt)], axis=-1)
        scores = scores + ab
    raw_scores = scores
    scores = xp.where(keep[:, None], scores, dt(_NEG))
    if smooth_softmax or head_sink is not None:
        sink = xp.zeros((1, num_heads, 1, 1), wdt) if head_sink is None else \
            _w(head_sink, wdt).reshape(1, num_heads, 1, 1)
        m = xp.maximum(scores.max(axis=-1, keepdims=True), sink)
        e = xp.exp(scores - m)
        probs = e / (e.sum(axis=-1, keepdims=True) + xp.exp(sink - m))
    else:
        probs = _softmax_last(xp, scores)
    y = _grouped_matmul(xp, probs, present_v, groups)
    outs = [_merge_heads(y).astype(query.dtype), present_k.astype(cache_dt), present_v.astype(cache_dt)]
    if ctx.num_outputs > 3:   # qk_output 1: the scores before the softmax (0 for keys outside
        if qk_output not in (1, 2):   # the window, as onnxruntime writes them), 2: the probabilities
            raise ValueError(f"{op}: the output_qk output needs qk_output 1 or 2, got {qk_output}")
        qk = xp.where(keep[:, None], raw_scores, dt(0)) if qk_output == 1 else probs
        outs.append(qk[..., :total].astype(query.dtype))
    return tuple(outs[:max(ctx.num_outputs, 1)])


# ---------------------------------------------------------- DecoderMaskedMultiHeadAttention

declare_formals(MS, "DecoderMaskedMultiHeadAttention",
                ("T", "T", "T", "M", "T", "T", "T", "M", "M", "M", "T"), ("T", "T", "T", "QK"))


def _gather_beams(xp, cache, indirection, beam, length):
    """cache (B*beam, N, M, D) read along the beams that cache_indirection (B, beam, M) names
    for the first `length` positions: (B*beam, N, length, D)."""
    rows = cache.shape[0]
    src = (xp.arange(rows) // beam * beam).reshape(rows, 1) + \
        indirection.reshape(rows, -1)[:, :length].astype(np.int64)
    pos = xp.arange(length).reshape(1, length)
    return cache[src, :, pos].transpose(0, 2, 1, 3)


@kernel("DecoderMaskedMultiHeadAttention", since=1, domain=MS,
        types={"T": FLOAT, "M": frozenset({"int32"}), "QK": FLOAT}, host_inputs=(7, 8), capturable=False)
def DecoderMaskedMultiHeadAttention(ctx, query, key=None, value=None, mask_index=None, attention_bias=None,
                                    past_key=None, past_value=None, past_sequence_length=None,
                                    beam_width=None, cache_indirection=None, bias=None, *, num_heads,
                                    past_present_share_buffer=0, mask_filter_value=-10000.0, scale=0.0,
                                    do_rotary=0, rotary_interleaved=0, output_qk=0):
    """One decoding step: the new token's key/value are written into the shared cache (B, N,
    max_len, D) at past_sequence_length, and the query attends to positions 0..past (along the
    beams cache_indirection names); with 4-D key/value, cross attention to them as given."""
    xp = ctx.xp
    op = "DecoderMaskedMultiHeadAttention"
    if do_rotary:
        raise NotImplementedError(f"{op}: do_rotary is not supported")
    wdt = float_work_dtype(query.dtype)
    dt = np.dtype(wdt).type
    b = query.shape[0]
    beam = 1 if beam_width is None else int(host_array(beam_width).reshape(-1)[0])
    cross = key is not None and key.ndim == 4
    if cross:
        q = _split_heads(_w(query, wdt) + (0 if bias is None else _w(bias[:query.shape[-1]], wdt)), num_heads)
        k, v = _w(key, wdt), _w(value, wdt)
    else:
        if not past_present_share_buffer:
            raise ValueError(f"{op}: self attention needs past_present_share_buffer=1")
        if past_key is None or past_value is None or past_sequence_length is None:
            raise ValueError(f"{op}: self attention needs past_key, past_value and past_sequence_length")
        if key is None:  # packed QKV
            qkv = _w(query, wdt) if bias is None else _w(query, wdt) + _w(bias, wdt)
            h = qkv.shape[-1] // 3
            qx, kx, vx = qkv[..., :h], qkv[..., h:2 * h], qkv[..., 2 * h:]
        else:
            qx, kx, vx = _w(query, wdt), _w(key, wdt), _w(value, wdt)
            if bias is not None:
                hq, hk = qx.shape[-1], kx.shape[-1]
                qx, kx, vx = qx + _w(bias[:hq], wdt), kx + _w(bias[hq:hq + hk], wdt), vx + _w(bias[hq + hk:], wdt)
        q = _split_heads(qx, num_heads)
        p = int(host_array(past_sequence_length).reshape(-1)[0])
        if p >= past_key.shape[2]:
            raise ValueError(f"{op}: past_sequence_length {p} leaves no room in a cache of {past_key.shape[2]}")
        present_k = _w(past_key, wdt).copy()
        present_v = _w(past_value, wdt).copy()
        present_k[:, :, p] = _split_heads(kx, num_heads)[:, :, 0]
        present_v[:, :, p] = _split_heads(vx, num_heads)[:, :, 0]
        if cache_indirection is not None and beam > 1:
            k = _gather_beams(xp, present_k, cache_indirection, beam, p + 1)
            v = _gather_beams(xp, present_v, cache_indirection, beam, p + 1)
            k[:, :, p], v[:, :, p] = present_k[:, :, p], present_v[:, :, p]
        else:
            k, v = present_k[:, :, :p + 1], present_v[:, :, :p + 1]
    t = k.shape[2]
    d = q.shape[-1]
    scores = _scores(xp, q, k, float(scale) if scale else 1.0 / np.sqrt(d), 1)
    if mask_index is not None:
        keep = (mask_index[:, :t] != 0).reshape(b, 1, 1, t)
        scores = scores + xp.where(keep, dt(0), dt(mask_filter_value))
    if attention_bias is not None:
        ab = _w(attention_bias, wdt)[..., :t]
        if not cross and beam > 1 and ab.shape[0] == b // beam != b:  # one row per beam group
            ab = xp.repeat(ab, beam, axis=0)
        scores = scores + ab
    probs = _softmax_last(xp, scores)
    out = _merge_heads(_grouped_matmul(xp, probs, v, 1)).astype(query.dtype)
    if cross:
        outs = [out, None, None]
    else:
        outs = [out, present_k.astype(past_key.dtype), present_v.astype(past_value.dtype)]
    if ctx.num_outputs > 3:
        outs.append(scores.astype(np.float32))
    return tuple(outs[:ctx.num_outputs]) if ctx.num_outputs > 1 else out


# ---------------------------------------------------------------------------- SparseAttention

declare_formals(MS, "SparseAttention", ("T", "T", "T", "T", "T", "M", "M", "M", "M", "T", "T"), ("T", "T", "T"))


def _block_keep(xp, rows_ptr, cols, num_heads, qpos, keys, block):
    """(B, N, S, T) whether each query position may read each key under the block-sparse
    layouts (CSR rows_ptr / cols per layout; head h uses layout h % num_layouts)."""
    layouts, n_rows = rows_ptr.shape[0], rows_ptr.shape[1] - 1
    dense = np.zeros((layouts, n_rows, n_rows), bool)
    for lay in range(layouts):
        for r in range(n_rows):
            c = cols[lay, rows_ptr[lay, r]:rows_ptr[lay, r + 1]]
            dense[lay, r, c[(c >= 0) & (c < n_rows)]] = True
    per_head = xp.asarray(dense[np.arange(num_heads) % layouts])          # (N, R, R)
    qb = xp.minimum(qpos // block, n_rows - 1)                             # (B, S, 1)
    kb = xp.minimum(keys // block, n_rows - 1)                             # (1, 1, T)
    return per_head[:, qb, kb].transpose(1, 0, 2, 3)                      # (B, N, S, T)


@kernel("SparseAttention", since=1, domain=MS, types={"T": FLOAT, "M": frozenset({"int32"})},
        host_inputs=(5, 6, 7, 8), capturable=False)
def SparseAttention(ctx, query, key=None, value=None, past_key=None, past_value=None, block_row_indices=None,
                    block_col_indices=None, total_sequence_length=None, key_total_sequence_lengths=None,
                    cos_cache=None, sin_cache=None, *, num_heads, kv_num_heads, sparse_block_size, scale=0.0,
                    do_rotary=0, rotary_interleaved=0):
    """Grouped-query attention over a shared KV buffer (B, Nkv, max_len, D), causal, where a
    query reads a key only if their blocks of sparse_block_size positions are linked in the
    head's layout; row b holds key_total_sequence_lengths[b] keys after this step."""
    xp = ctx.xp
    op = "SparseAttention"
    if past_key is None or past_value is None or block_row_indices is None or block_col_indices is None \
            or key_total_sequence_lengths is None:
        raise ValueError(f"{op}: past_key, past_value, block_row_indices, block_col_indices and "
                         f"key_total_sequence_lengths are required")
    wdt = float_work_dtype(query.dtype)
    dt = np.dtype(wdt).type
    q, k, v = _gqa_split(op, query, key, value, num_heads, kv_num_heads)
    b, s, _, d = q.shape
    totals = host_array(key_total_sequence_lengths).astype(np.int64).reshape(-1)
    pasts = totals - s
    max_len = past_key.shape[2]
    if totals.shape[0] != b or bool((pasts < 0).any()) or bool((totals > max_len).any()):
        raise ValueError(f"{op}: key_total_sequence_lengths {totals.tolist()} must lie in [{s}, {max_len}] "
                         f"for a batch of {b}")
    q, k, v = _w(q, wdt), _w(k, wdt), _w(v, wdt)
    if do_rotary:
        pos = xp.asarray(pasts).reshape(b, 1) + xp.arange(s).reshape(1, s)
        cos = _w(_cache_rows(op, cos_cache, pos), wdt)
        sin = _w(_cache_rows(op, sin_cache, pos), wdt)
        q = rotate(xp, q, cos, sin, rotary_interleaved)
        k = rotate(xp, k, cos, sin, rotary_interleaved)
    present_k = _w(past_key, wdt).copy()
    present_v = _w(past_value, wdt).copy()
    for i in range(b):
        p = int(pasts[i])
        present_k[i, :, p:p + s] = k[i].transpose(1, 0, 2)
        present_v[i, :, p:p + s] = v[i].transpose(1, 0, 2)
    qpos = xp.asarray(pasts).reshape(b, 1, 1) + xp.arange(s).reshape(1, s, 1)
    keys = xp.arange(max_len).reshape(1, 1, max_len)
    keep = (keys <= qpos) & (keys < xp.asarray(totals).reshape(b, 1, 1))
    keep = keep[:, None] & _block_keep(xp, host_array(block_row_indices), host_array(block_col_indices),
                                       num_heads, qpos, keys, int(sparse_block_size))
    groups = num_heads // kv_num_heads
    scores = _scores(xp, q.transpose(0, 2, 1, 3), present_k, float(scale) if scale else 1.0 / np.sqrt(d), groups)
    probs = _softmax_last(xp, xp.where(keep, scores, dt(_NEG)))
    y = _grouped_matmul(xp, probs, present_v, groups)
    return (_merge_heads(y).astype(query.dtype), present_k.astype(past_key.dtype),
            present_v.astype(past_value.dtype))
