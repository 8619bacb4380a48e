"""``ortgpu::Attention``: multi-head self-attention with its Q/K/V projection, as the
optimizer's AttentionFusion creates it from the MatMul/Reshape/Transpose/Softmax graph that
exporters write (BERT, GPT-2 with a KV cache, ViT).

Inputs: ``input`` (B, S, Hin); ``weight`` (Hin, 3*Hd), the Q, K and V projections side by
side; ``bias`` (3*Hd) optional; ``attention_bias`` optional, added to the scaled scores
and broadcast to (B, N, S, T); ``past_key``/``past_value`` (B, N, P, D) optional.
Attributes: ``num_heads`` N (D = Hd / N) and ``scale``, the factor of the scores.
Outputs: ``output`` (B, S, Hd) and, optionally, ``present_key``/``present_value``
(B, N, P + S, D): the past with this step's keys and values appended (T = P + S).

    qkv = input @ weight + bias;  q, k, v = split(qkv) viewed as (B, N, S, D)
    k, v = concat(past, k / v);  probs = softmax(q k^T * scale + attention_bias)
    output = probs @ v, heads merged back into (B, S, Hd)

Every step rounds to the input's dtype as the unfused graph does (float16 included).
"""
from __future__ import annotations

from ortgpu.providers.cpu import half_compiled, softmax_compiled
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.kernels import linalg
from ortgpu.providers.kernels.fused import DOMAIN, one_output
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.reduce import float_work_dtype
from ortgpu.providers.registry import kernel


def attention_geometry(input_shape, weight_shape, bias_shape, num_heads: int,
                       past_shape=None) -> tuple[int, int, int, int]:
    """(B, S, N, D) of an Attention call; ValueError naming the input that does not fit."""
    if len(input_shape) != 3:
        raise ValueError(f"Attention: input must be (batch, sequence, hidden), got shape {tuple(input_shape)}")
    if len(weight_shape) != 2 or weight_shape[0] != input_shape[2] or weight_shape[1] % 3:
        raise ValueError(f"Attention: weight must be ({input_shape[2]}, 3 * hidden), got shape "
                         f"{tuple(weight_shape)}")
    hidden = weight_shape[1] // 3
    if num_heads <= 0 or hidden % num_heads:
        raise ValueError(f"Attention: hidden size {hidden} is not divisible by num_heads={num_heads}")
    if bias_shape is not None and tuple(bias_shape) != (3 * hidden,):
        raise ValueError(f"Attention: bias must have shape ({3 * hidden},), got {tuple(bias_shape)}")
    b, s = input_shape[0], input_shape[1]
    d = hidden // num_heads
    if past_shape is not None and (len(past_shape) != 4 or tuple(past_shape[:2]) != (b, num_heads)
                                   or past_shape[3] != d):
        raise ValueError(f"Attention: past_key/past_value must be ({b}, {num_heads}, past, {d}), got "
                         f"shape {tuple(past_shape)}")
    return b, s, num_heads, d


def split_heads(qkv, b, s, n, d):
    """(B, S, 3*N*D) -> q, k, v views of shape (B, N, S, D)."""
    heads = qkv.reshape(b, s, 3, n, d)
    return tuple(heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def with_past(xp, past, new):
    """The present keys or values: `past` (B, N, P, D) with `new` appended on the sequence axis."""
    return xp.ascontiguousarray(new) if past is None else xp.concatenate([past, new], axis=2)


@kernel("Attention", since=1, domain=DOMAIN, types={"*": FLOATS})
def Attention(ctx, input, weight, bias=None, attention_bias=None, past_key=None, past_value=None, *,
              num_heads=1, scale=1.0):
    """Multi-head self-attention with the Q/K/V projection and an optional KV cache."""
    xp = ctx.xp
    if (past_key is None) != (past_value is None):
        raise ValueError("Attention: past_key and past_value must be given together")
    b, s, n, d = attention_geometry(input.shape, weight.shape, None if bias is None else bias.shape,
                                    num_heads, None if past_key is None else past_key.shape)
    one = one_output(ctx)
    dt = input.dtype
    qkv = linalg.MatMul(one, input, weight)
    if bias is not None:
        qkv = (qkv + bias).astype(dt, copy=False)
    q, k, v = split_heads(qkv, b, s, n, d)
    present_key = with_past(xp, past_key, k)
    present_value = with_past(xp, past_value, v)
    scores = linalg.MatMul(one, q, present_key.transpose(0, 1, 3, 2))
    scores = (scores * dt.type(scale)).astype(dt, copy=False)
    if attention_bias is not None:
        scores = (scores + attention_bias).astype(dt, copy=False)
    if half_compiled.takes(xp, scores):   # compiled rows (softmax_compiled)
        probs = half_compiled.convert(softmax_compiled.softmax_rows(half_compiled.widen(scores), 3), dt)
    else:
        probs = softmax(xp, scores.astype(float_work_dtype(dt), copy=False), (3,)).astype(dt, copy=False)
    out = linalg.MatMul(one, probs, present_value)
    out = xp.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(b, s, n * d)
    return (out, present_key, present_value)[:max(ctx.num_outputs, 1)]
