"""NGramHashMapping and VarlenNGramHashMapping (packed requests) of onnxruntime's com.microsoft
domain (Engram n-gram embeddings, registered by onnxruntime 1.32's CPU provider): for each n in
2..max_ngram_size, the token ids of the last n positions, each times its multiplier, xor-ed
together, modulo each head's vocabulary size.

The history before the current chunk comes from past_ids (right-aligned), else pad_id (or
eos_token_id when given); reset_on_eos replaces every history position at or before the latest
EOS before the current token with eos_token_id; segment_ids replace positions of earlier segments
of the chunk with the same fill as the sequence start.  Products wrap in the id type and the
modulo is floored (non-negative), as onnxruntime computes them.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import NotImplemented  # noqa: A004
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_IDS = frozenset({"int32", "int64"})

declare_formals(MS, "NGramHashMapping", ("M", "M", "M", "M", "M", "M", "S"), ("M", "M"))


def _history(op, input_ids, past_ids, width, fill):
    b = input_ids.shape[0]
    if past_ids is None:
        return np.concatenate([np.full((b, width), fill, input_ids.dtype), input_ids], axis=1)
    if tuple(past_ids.shape) != (b, width):
        raise ValueError(f"{op}: input past_ids has shape {tuple(past_ids.shape)}, expected {(b, width)}")
    return np.concatenate([past_ids.astype(input_ids.dtype), input_ids], axis=1)


def _ngram_hashes(op, input_ids, past_ids, segment_ids, mult, sizes, offsets, eos, fill, reset_on_eos,
                  n_head_per_ngram, max_ngram_size):
    """(hash ids (B, S, heads), present ids (B, max_ngram_size - 1)) of (B, S) ids."""
    dt = input_ids.dtype
    width = max_ngram_size - 1
    heads = width * n_head_per_ngram
    raw = _history(op, input_ids, past_ids, width, fill)
    b, s = input_ids.shape
    cur = np.arange(s) + width                        # current positions in the history
    shifted = [raw[:, cur - j] for j in range(max_ngram_size)]
    if reset_on_eos and eos is not None:
        is_eos = raw == eos
        last = np.where(is_eos, np.arange(raw.shape[1])[None], -1)
        last = np.maximum.accumulate(last, axis=1)     # latest EOS at or before each position
        before = last[:, cur - 1]                      # latest EOS strictly before the current token
        for j in range(1, max_ngram_size):
            shifted[j] = np.where((cur - j)[None] <= before, eos, shifted[j])
    if segment_ids is not None:
        seg = np.asarray(segment_ids)
        if tuple(seg.shape) != (b, s):
            raise ValueError(f"{op}: input segment_ids has shape {tuple(seg.shape)}, expected {(b, s)}")
        starts = np.concatenate([np.zeros((b, 1), bool), seg[:, 1:] != seg[:, :-1]], axis=1)
        start_pos = np.maximum.accumulate(np.where(starts, np.arange(s)[None] + width, -1), axis=1)
        for j in range(1, max_ngram_size):
            shifted[j] = np.where((cur - j)[None] < start_pos, fill, shifted[j])
    out = np.empty((b, s, heads), dt)
    with np.errstate(over="ignore"):
        for n in range(2, max_ngram_size + 1):
            mix = np.zeros((b, s), dt)
            for j in range(n):
                mix ^= shifted[j] * dt.type(mult[j])
            for h in range(n_head_per_ngram):
                col = (n - 2) * n_head_per_ngram + h
                v = mix % dt.type(sizes[col])
                out[:, :, col] = v if offsets is None else v + offsets[col]
    return out, raw[:, raw.shape[1] - width:]


def _ngram_params(op, multipliers, vocab_sizes, head_offsets, eos_token_id, dt, pad_id, n_head_per_ngram,
                  max_ngram_size):
    if max_ngram_size < 2 or n_head_per_ngram < 1:
        raise ValueError(f"{op}: max_ngram_size must be >= 2 and n_head_per_ngram >= 1")
    heads = (max_ngram_size - 1) * n_head_per_ngram
    mult = np.asarray(multipliers).reshape(-1)
    sizes = np.asarray(vocab_sizes).reshape(-1)
    if mult.size < max_ngram_size:
        raise ValueError(f"{op}: multipliers has {mult.size} values, expected at least max_ngram_size={max_ngram_size}")
    if sizes.size != heads or (sizes <= 0).any():
        raise ValueError(f"{op}: vocab_sizes must hold {heads} positive sizes, got {sizes.tolist()}")
    offsets = None if head_offsets is None else np.asarray(head_offsets).reshape(-1).astype(dt)
    eos = None if eos_token_id is None else dt.type(np.asarray(eos_token_id).reshape(-1)[0])
    fill = dt.type(pad_id) if eos is None else eos
    return mult, sizes, offsets, eos, fill


@kernel("NGramHashMapping", since=1, domain=MS, provider="cpu", types={"M": _IDS, "S": frozenset({"int32"})},
        host_inputs=(0, 1, 2, 3, 4, 5, 6))
def NGramHashMapping(ctx, input_ids, multipliers, vocab_sizes, past_ids=None, head_offsets=None, eos_token_id=None,
                     segment_ids=None, *, pad_id, n_head_per_ngram, max_ngram_size, reset_on_eos=0):
    """hash_ids (B, S, (max_ngram_size - 1) * n_head_per_ngram), heads of n = 2 first; present_ids
    the last max_ngram_size - 1 ids for the next call."""
    op = "NGramHashMapping"
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"{op}: input_ids must be (batch, seq), got {tuple(ids.shape)}")
    mult, sizes, offsets, eos, fill = _ngram_params(op, multipliers, vocab_sizes, head_offsets, eos_token_id,
                                                    ids.dtype, pad_id, n_head_per_ngram, max_ngram_size)
    out, present = _ngram_hashes(op, ids, past_ids, segment_ids, mult, sizes, offsets, eos, fill, reset_on_eos,
                                 n_head_per_ngram, max_ngram_size)
    return (out, present) if ctx.num_outputs > 1 else out


def packed_ranges(op, cumulative_sequence_length, total):
    """[(start, end)] of each request from the (batch + 1) prefix sums, checked."""
    cu = [int(v) for v in np.asarray(cumulative_sequence_length).reshape(-1)]
    if len(cu) < 2 or cu[0] != 0 or cu[-1] != total or any(b <= a for a, b in zip(cu, cu[1:])):
        raise ValueError(f"{op}: cumulative_sequence_length {cu} must rise strictly from 0 to the {total} "
                         f"packed tokens")
    return list(zip(cu, cu[1:]))


declare_formals(MS, "VarlenNGramHashMapping", ("M", "M", "M", "S", "M", "M", "M", "S", "S", "S"),
                ("M", "M", "S", "M"))


@kernel("VarlenNGramHashMapping", since=1, domain=MS, provider="cpu", types={"M": _IDS, "S": frozenset({"int32"})},
        host_inputs=tuple(range(10)))
def VarlenNGramHashMapping(ctx, input_ids, multipliers, vocab_sizes, cumulative_sequence_length, past_ids=None,
                           head_offsets=None, eos_token_id=None, segment_ids=None, past_segment_ids=None,
                           capture_count=None, *, pad_id, n_head_per_ngram, max_ngram_size, reset_on_eos=0,
                           state_update_capacity=0):
    """NGramHashMapping over packed requests (total_tokens,): each request hashes its own tokens
    after its own past_ids row, never its neighbours'."""
    op = "VarlenNGramHashMapping"
    if state_update_capacity or capture_count is not None or past_segment_ids is not None:
        raise NotImplemented(f"{op}: compact state updates and past_segment_ids are not supported")
    if any(ctx.output_present[2:]):
        raise NotImplemented(f"{op}: the present_segment_ids and state_update outputs are not supported")
    ids = np.asarray(input_ids)
    if ids.ndim != 1:
        raise ValueError(f"{op}: input_ids must be 1-D (total_tokens), got {tuple(ids.shape)}")
    mult, sizes, offsets, eos, fill = _ngram_params(op, multipliers, vocab_sizes, head_offsets, eos_token_id,
                                                    ids.dtype, pad_id, n_head_per_ngram, max_ngram_size)
    ranges = packed_ranges(op, cumulative_sequence_length, ids.shape[0])
    width = max_ngram_size - 1
    if past_ids is not None and tuple(past_ids.shape) != (len(ranges), width):
        raise ValueError(f"{op}: input past_ids has shape {tuple(past_ids.shape)}, expected {(len(ranges), width)}")
    out = np.empty((ids.shape[0], width * n_head_per_ngram), ids.dtype)
    present = np.empty((len(ranges), width), ids.dtype)
    for r, (a, b) in enumerate(ranges):
        seg = None if segment_ids is None else np.asarray(segment_ids)[None, a:b]
        past = None if past_ids is None else np.asarray(past_ids)[r:r + 1]
        h, p = _ngram_hashes(op, ids[None, a:b], past, seg, mult, sizes, offsets, eos, fill, reset_on_eos,
                             n_head_per_ngram, max_ngram_size)
        out[a:b], present[r] = h[0], p[0]
    if ctx.num_outputs == 1:
        return out
    return (out, present) + (None,) * (ctx.num_outputs - 2)
