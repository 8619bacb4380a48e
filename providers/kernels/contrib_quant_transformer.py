"""Quantized transformer blocks of onnxruntime's com.microsoft domain, as its dynamic quantization
writes them after fusion: QAttention (int8 QKV projection + multi-head self-attention) and
QEmbedLayerNormalization (int8 embedding tables + layer normalization).

The integer projection is exact; attention and normalization run in float32.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument, NotImplemented  # noqa: A004
from ortgpu.providers.kernels.contrib_quant_elementwise import dequant
from ortgpu.providers.kernels.quantize import int_matmul
from ortgpu.providers.registry import kernel

MS = "com.microsoft"


def key_mask(xp, mask_index, batch, q_len, total, past):
    """True where a query may look at a key, [batch or 1, q_len or 1, total], from the mask_index
    forms of onnxruntime's Attention: key lengths (B), end/start pairs (2B), a 0/1 mask (B, T)
    or (B, S, T)."""
    keys = xp.arange(total)
    if mask_index is None:
        return xp.ones((1, 1, total), dtype=bool)
    m = mask_index
    if m.ndim == 1 and m.shape[0] == batch:
        return (keys[None, :] < m[:, None].astype(xp.int64))[:, None, :]
    if m.ndim == 1 and m.shape[0] == 2 * batch:
        end, start = m[:batch].astype(xp.int64), m[batch:].astype(xp.int64)
        return ((keys[None, :] < end[:, None]) & (keys[None, :] >= start[:, None]))[:, None, :]
    if m.ndim == 2 and m.shape == (batch, total):
        return (m != 0)[:, None, :]
    if m.ndim == 3 and m.shape == (batch, q_len, total):
        return m != 0
    raise InvalidArgument(f"attention mask_index of shape {tuple(m.shape)} is not one of (batch={batch}), "
                     f"(2*batch), (batch, total={total}), (batch, sequence={q_len}, total)")


def multi_head_attention(xp, q, k, v, num_heads, *, allowed, causal, past=None, scale=None,
                         mask_filter_value=-10000.0):
    """Self-attention over [B, S, hidden] projections; returns the [B, S, hidden] output and the
    present key/value state (2, B, heads, past + S, head_size)."""
    b, s, hidden = q.shape
    hd = hidden // num_heads

    def heads(t):
        return t.reshape(b, t.shape[1], num_heads, -1).transpose(0, 2, 1, 3)

    qh, kh, vh = heads(q), heads(k), heads(v)
    if past is not None:
        kh = xp.concatenate([past[0].astype(xp.float32), kh], axis=2)
        vh = xp.concatenate([past[1].astype(xp.float32), vh], axis=2)
    total = kh.shape[2]
    p = total - s
    scores = (qh @ kh.transpose(0, 1, 3, 2)) * np.float32(scale if scale else 1.0 / np.sqrt(hd))
    # each reason to mask adds mask_filter_value once (so a row masked everywhere still prefers
    # the keys masked for one reason only, as in onnxruntime)
    bias = xp.where(allowed, np.float32(0), np.float32(mask_filter_value))
    if causal:
        future = xp.arange(total)[None, None, :] > xp.arange(s)[None, :, None] + p
        bias = bias + xp.where(future, np.float32(mask_filter_value), np.float32(0))
    scores = scores + bias[:, None, :, :]
    scores = scores - scores.max(axis=-1, keepdims=True)
    w = xp.exp(scores)
    w = w / w.sum(axis=-1, keepdims=True)
    out = (w @ vh).transpose(0, 2, 1, 3).reshape(b, s, -1)
    return out, xp.stack([kh, vh])


@kernel("QAttention", since=1, domain=MS, types={"*": frozenset({"int8", "uint8", "float32", "int32"})})
def QAttention(ctx, input, weight, bias, input_scale, weight_scale, mask_index=None, input_zero_point=None,
               weight_zero_point=None, past=None, *, num_heads, unidirectional=0, scale=0.0,
               mask_filter_value=-10000.0, do_rotary=0, past_present_share_buffer=0):
    """Attention whose QKV projection is (input - zp) @ (weight - zp) * input_scale * weight_scale + bias."""
    xp = ctx.xp
    if do_rotary or past_present_share_buffer:
        raise NotImplemented("QAttention: do_rotary and past_present_share_buffer are not supported")
    n3 = weight.shape[1]
    if n3 % 3 or (n3 // 3) % num_heads:
        raise InvalidArgument(f"QAttention: weight has {n3} columns, expected 3 * hidden_size with hidden_size "
                         f"divisible by num_heads={num_heads}")
    wzp = None if weight_zero_point is None else (weight_zero_point.reshape(()) if weight_zero_point.size == 1
                                                   else weight_zero_point.reshape(-1))
    # weight - zero point as float, the weight scales and the bias: once per session when constant
    acc = int_matmul(xp, input, None if input_zero_point is None else input_zero_point.reshape(()), weight, wzp,
                     lambda tag, make: ctx.prepared(tag, (1, 7), (weight, weight_zero_point), make))
    ws = ctx.prepared("weight scale", (4,), (weight_scale,), lambda: _per_column(xp, weight_scale))
    b = ctx.prepared("bias", (2,), (bias,), lambda: bias.astype(xp.float32))
    qkv = acc.astype(xp.float32) * (input_scale.astype(xp.float32).reshape(()) * ws) + b
    h = n3 // 3
    b, s = input.shape[0], input.shape[1]
    total = s + (0 if past is None else past.shape[3])
    allowed = key_mask(xp, mask_index, b, s, total, total - s)
    out, present = multi_head_attention(xp, qkv[..., :h], qkv[..., h:2 * h], qkv[..., 2 * h:], num_heads,
                                        allowed=allowed, causal=bool(unidirectional), past=past, scale=scale,
                                        mask_filter_value=mask_filter_value)
    return out.astype(xp.float32), present.astype(xp.float32)


def _per_column(xp, scale):
    """A float32 scale that is one value, or one per column."""
    ws = scale.astype(xp.float32)
    return ws.reshape(()) if ws.size == 1 else ws.reshape(-1)


@kernel("QEmbedLayerNormalization", since=1, domain=MS,
        types={"*": frozenset({"int8", "uint8", "float32", "int32"})}, capturable=False)  # checks ids on the host
def QEmbedLayerNormalization(ctx, input_ids, segment_ids, word_embedding_quant, position_embedding_quant,
                             segment_embedding, gamma_quant, beta_quant, mask=None, word_embedding_scale=None,
                             position_embedding_scale=None, segment_embedding_scale=None, gamma_scale=None,
                             beta_scale=None, word_embedding_zero_point=None, position_embedding_zero_point=None,
                             segment_embedding_zero_point=None, gamma_zero_point=None, beta_zero_point=None, *,
                             epsilon=1e-12):
    """LayerNorm(word[ids] + position[0..S) (+ segment[segment_ids])) from dequantized tables, and
    the number of unmasked tokens per sequence (int32; zeros without a mask).  The tables are
    dequantized once per session when they are initializers."""
    xp = ctx.xp
    op = "QEmbedLayerNormalization"
    b, s = input_ids.shape
    tables = (word_embedding_quant, position_embedding_quant, segment_embedding, gamma_quant, beta_quant)
    scales = (word_embedding_scale, position_embedding_scale, segment_embedding_scale, gamma_scale, beta_scale)
    zeros = (word_embedding_zero_point, position_embedding_zero_point, segment_embedding_zero_point,
             gamma_zero_point, beta_zero_point)
    word, pos, seg, gamma, beta = ctx.prepared(
        "tables", (2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), tables + scales + zeros,
        lambda: tuple(None if t is None else dequant(xp, t, sc, z, op) for t, sc, z in zip(tables, scales, zeros)))
    _check_ids(xp, input_ids, word.shape[0], "input_ids")
    if s > pos.shape[0]:
        raise InvalidArgument(f"{op}: sequence length {s} exceeds the {pos.shape[0]} position embeddings")
    x = word[input_ids.astype(xp.int64)] + pos[None, :s]
    if segment_ids is not None:
        _check_ids(xp, segment_ids, seg.shape[0], "segment_ids")
        x = x + seg[segment_ids.astype(xp.int64)]
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / xp.sqrt(var + np.float32(epsilon)) * gamma + beta
    count = (mask != 0).sum(axis=1) if mask is not None else xp.zeros(b)
    return y.astype(xp.float32), count.astype(xp.int32)


def _check_ids(xp, ids, rows, name):
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= rows):
        raise InvalidArgument(f"QEmbedLayerNormalization: {name} must be in [0, {rows}), "
                         f"got values in [{int(ids.min())}, {int(ids.max())}]")
