"""Raw CUDA launcher for GroupQueryAttention with a KV cache (com.microsoft; source:
contrib_gqa.cu, rotary from contrib_rotary.cu).

The raw path takes float32/float16 query/key/value (separate or packed), a past KV cache of the
same type (or none), optional rotary (cos/sin caches of that type), softcap and a local window,
and up to three outputs (output, present_key, present_value).  The host reads seqlens_k and
total_sequence_length (host inputs, as the shared kernel), uploads the per-row past and valid
lengths, then three kinds of launches run: rotary on Q and K, the present caches, and one
block per query row for scores, softmax and the weighted sum.  Attention bias, head sinks,
smooth softmax, the QK output, quantized caches, rows that would see no key and every invalid
input go to ``providers/kernels/contrib_attention.py``, whose semantics the kernels follow
and which raises the errors.

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.base import host_array
from ortgpu.providers.cuda.kernels import contrib_rotary
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import contrib_attention as shared
from ortgpu.providers.registry import kernel

SOURCE = "contrib_gqa.cu"


UNITS = cu.declare_templates(SOURCE, "gqa_present", "gqa_attention_rows")


def _row_lengths(seqlens_k, total_sequence_length, b, s, past_key):
    """(pasts, lens) per batch row as the shared kernel derives them, or None when invalid."""
    lens = np.asarray(host_array(seqlens_k)).astype(np.int64).reshape(-1) + 1
    total = int(np.asarray(host_array(total_sequence_length)).reshape(-1)[0])
    if lens.shape[0] != b:
        return None
    first_prompt = past_key is None or (s == total and s > 1)
    pasts = np.zeros(b, np.int64) if first_prompt else lens - s
    if (pasts < 0).any():
        return None
    return pasts, lens, total


def _every_row_sees_a_key(pasts, lens, s, window) -> bool:
    pos = pasts.reshape(-1, 1) + np.arange(s).reshape(1, s)
    hi = np.minimum(pos, lens.reshape(-1, 1) - 1)
    lo = np.maximum(pos - window + 1, 0) if window >= 0 else np.zeros_like(pos)
    return bool((lo <= hi).all())


def _rotate(x, pos, cos_cache, sin_cache, interleaved, heads):
    """x (B, S, heads*D) rotated by the rotary kernel, or None."""
    return contrib_rotary.run_rotary(x, pos, cos_cache, sin_cache, interleaved, heads, 0)


def run_gqa(cupy, query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache,
            sin_cache, position_ids, *, num_heads, kv_num_heads, do_rotary, rotary_interleaved, scale,
            softcap, local_window_size):
    """(output, present_key, present_value) on the GPU, or None when not handled here."""
    dt = query.dtype
    if dt not in UNITS or query.ndim != 3 or num_heads <= 0 or kv_num_heads <= 0 or num_heads % kv_num_heads:
        return None
    if any(t is not None and t.dtype != dt for t in (key, value, past_key, past_value)):
        return None
    if (key is None) != (value is None) or (past_key is None) != (past_value is None):
        return None
    try:
        q, k, v = shared._gqa_split("GroupQueryAttention", query, key, value, num_heads, kv_num_heads)
    except ValueError:
        return None
    b, s, _, d = q.shape
    if s == 0 or d == 0 or k.shape[:2] != (b, s) or v.shape[:2] != (b, s):
        return None
    if past_key is not None and (past_key.ndim != 4 or past_key.shape[:2] != (b, kv_num_heads)
                                 or past_key.shape[3] != d or past_value.shape != past_key.shape):
        return None
    lengths = _row_lengths(seqlens_k, total_sequence_length, b, s, past_key)
    if lengths is None:
        return None
    pasts, lens, total = lengths
    past_len = 0 if past_key is None else past_key.shape[2]
    present_len = max(past_len, total)
    if (lens > present_len).any() or (pasts > past_len).any() or (pasts + s > present_len).any():
        return None
    if not _every_row_sees_a_key(pasts, lens, s, local_window_size):
        return None
    q = cupy.ascontiguousarray(q.reshape(b, s, num_heads * d))
    k = cupy.ascontiguousarray(k.reshape(b, s, kv_num_heads * d))
    if do_rotary:
        if cos_cache is None or sin_cache is None:
            return None
        if position_ids is None:
            pos = cupy.asarray(pasts.reshape(b, 1) + np.arange(s).reshape(1, s))
        else:
            try:
                pos = cupy.ascontiguousarray(cupy.broadcast_to(position_ids, (b, s)))
            except ValueError:
                return None
        q = _rotate(q, pos, cos_cache, sin_cache, rotary_interleaved, num_heads)
        k = None if q is None else _rotate(k, pos, cos_cache, sin_cache, rotary_interleaved, kv_num_heads)
        if q is None or k is None:
            return None
    d_pasts, d_lens = cupy.asarray(pasts), cupy.asarray(lens)
    presents = []
    for past, new in ((past_key, k), (past_value, cupy.ascontiguousarray(v))):
        present = cupy.empty((b, kv_num_heads, present_len, d), dtype=dt)
        src = None if past is None or past_len == 0 else cupy.ascontiguousarray(past)
        cu.launch_elementwise(cu.template_function(UNITS, dt, "gqa_present"), present.size,
                              (src, new, d_pasts, present, np.int64(b), np.int64(kv_num_heads),
                               np.int64(present_len), np.int64(d), np.int64(past_len), np.int64(s)))
        presents.append(present)
    rows = b * num_heads * s
    scores = cupy.empty((rows, present_len), dtype=cupy.float32)
    y = cupy.empty((b, s, num_heads * d), dtype=dt)
    threads = min(256, 32 * math.ceil(max(min(present_len, d), 1) / 32))
    fn = cu.template_function(UNITS, dt, "gqa_attention_rows")
    fn((rows,), (threads, 1), (q, presents[0], presents[1], d_pasts, d_lens, scores, y, np.int64(s),
                               np.int64(num_heads), np.int64(kv_num_heads), np.int64(d), np.int64(present_len),
                               np.float32(scale if scale else 1.0 / math.sqrt(d)), np.float32(softcap),
                               np.int64(local_window_size)))
    return y, presents[0], presents[1]


@kernel("GroupQueryAttention", since=1, domain=cu.MS_DOMAIN, provider="cuda", types=shared.GQA_TYPES,
        host_inputs=shared.GQA_HOST_INPUTS, capturable=False)
def GroupQueryAttention(ctx, query, key=None, value=None, past_key=None, past_value=None, seqlens_k=None,
                        total_sequence_length=None, cos_cache=None, sin_cache=None, position_ids=None,
                        attention_bias=None, head_sink=None, k_scale=None, v_scale=None, *, num_heads,
                        kv_num_heads, do_rotary=0, rotary_interleaved=0, scale=0.0, softcap=0.0,
                        local_window_size=-1, smooth_softmax=0, qk_output=0, k_quant_type="NONE",
                        v_quant_type="NONE", kv_cache_bit_width=0):
    """Grouped-query attention over a KV cache (raw CUDA for the common case)."""
    plain = (attention_bias is None and head_sink is None and not smooth_softmax and ctx.num_outputs <= 3
             and k_scale is None and v_scale is None and k_quant_type == "NONE" and v_quant_type == "NONE"
             and seqlens_k is not None and total_sequence_length is not None)
    if plain and cu.on_device(ctx, query, key, value, past_key, past_value, cos_cache, sin_cache, position_ids):
        import cupy

        res = run_gqa(cupy, query, key, value, past_key, past_value, seqlens_k, total_sequence_length,
                      cos_cache, sin_cache, position_ids, num_heads=num_heads, kv_num_heads=kv_num_heads,
                      do_rotary=do_rotary, rotary_interleaved=rotary_interleaved, scale=scale,
                      softcap=softcap, local_window_size=local_window_size)
        if res is not None:
            return res[:max(ctx.num_outputs, 1)]
    return shared.GroupQueryAttention(
        ctx, query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache,
        position_ids, attention_bias, head_sink, k_scale, v_scale, num_heads=num_heads,
        kv_num_heads=kv_num_heads, do_rotary=do_rotary, rotary_interleaved=rotary_interleaved, scale=scale,
        softcap=softcap, local_window_size=local_window_size, smooth_softmax=smooth_softmax,
        qk_output=qk_output, k_quant_type=k_quant_type, v_quant_type=v_quant_type,
        kv_cache_bit_width=kv_cache_bit_width)
