"""Mixture of experts of onnxruntime's com.microsoft domain (MoE, and QMoE with uint8-packed
expert weights): each token goes through the top-k experts of its router, mixed by their routing
weights.

Routing weights are the softmax of router_probs over all experts; the top k are taken (ties to
the lower expert), renormalized to sum 1 when normalize_routing_weights=1.  An expert is
act(x W1^T + b1) W2^T + b2 with onnxruntime's weight layouts fc1 (E, inter, hidden) and fc2
(E, hidden, inter); gelu is the tanh form, as onnxruntime computes it.

QMoE routes as onnxruntime 1.32's CPU kernel does: the top k of the raw router logits (ties to
the higher expert index), weighted by the softmax of those k logits, whatever
normalize_routing_weights says; given router_weights, the weights are instead those entries
(renormalized over the k when normalize_routing_weights=1).  Expert weights are uint8 rows of
8- or 4-bit values (two per byte, low nibble first), dequantized as (q - zero_point) * scale with one scale per row, or per
block of block_size along the row; the zero point defaults to 2^(bits-1), given ones are packed
like the weights.  The products run in float32 on the dequantized weights.  (onnxruntime 1.32
quantizes the activations to int8 for 8-bit blocked weights, so its results there differ from
these by that rounding.)
"""
from __future__ import annotations

from ortgpu.errors import InvalidArgument, NotImplemented  # noqa: A004
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import activations
from ortgpu.providers.kernels.elementwise import work_dtype
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.contrib_quant_nbits import unpack_bits
from ortgpu.providers.registry import declare_formals, kernel

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


def _qmoe_weights(xp, name, w, scales, zero_points, *, bits, block, rows, cols):
    """float32 (E, rows, cols) from QMoE's packed uint8 (E, rows, cols * bits / 8)."""
    per = 8 // bits
    n_exp = w.shape[0]
    if w.ndim != 3 or w.shape[1] != rows or w.shape[2] * per != cols:
        raise InvalidArgument(f"QMoE: input {name}_experts_weights has shape {tuple(w.shape)}, expected "
                              f"({n_exp}, {rows}, {cols // per})")
    n_groups = cols // block if block else 1
    want = (n_exp, rows, n_groups) if block else (n_exp, rows)
    if tuple(scales.shape) != want:
        raise InvalidArgument(f"QMoE: input {name}_scales has shape {tuple(scales.shape)}, expected {want}")
    q = unpack_bits(xp, w, bits, cols).astype(xp.float32)
    s = scales.astype(xp.float32).reshape(n_exp, rows, n_groups)
    if zero_points is not None:
        want_zp = n_exp * rows * -(-n_groups // per) if block else n_exp * -(-rows // per)
        if zero_points.size != want_zp:
            raise InvalidArgument(f"QMoE: input {name}_zero_points has {zero_points.size} bytes, expected {want_zp}")
    if zero_points is None:
        z = xp.full(s.shape, float(1 << (bits - 1)), xp.float32)
    else:
        if block:   # (E, rows, groups / per): packed along each row's groups
            z = unpack_bits(xp, zero_points.reshape(n_exp, rows, -1), bits, n_groups)
        else:       # (E, rows / per): one per row, packed along the rows
            z = unpack_bits(xp, zero_points.reshape(n_exp, -1), bits, rows)[..., None]
        z = z.astype(xp.float32)
    group = block if block else cols
    q = q.reshape(n_exp, rows, n_groups, group)
    return ((q - z[..., None]) * s[..., None]).reshape(n_exp, rows, cols)


def _qmoe_activation(xp, name, h, inter, fusion, alpha, beta, limit):
    """Expert activation; swiglu takes gate and linear halves of h (interleaved or concatenated)."""
    if name != "swiglu":
        if name == "relu":
            return xp.maximum(h, 0)
        if name == "gelu":   # the tanh form, as onnxruntime computes it
            return 0.5 * h * (1.0 + xp.tanh(0.7978845608 * (h + 0.044715 * h * h * h)))
        if name == "silu":
            return h * activations._sigmoid(xp, h)
        if name == "identity":
            return h
        raise InvalidArgument(f"QMoE: activation_type '{name}' is not one of relu, gelu, silu, swiglu, identity")
    if fusion == 1:
        gate, linear = h[:, 0::2], h[:, 1::2]
    elif fusion == 2:
        gate, linear = h[:, :inter], h[:, inter:]
    else:
        raise NotImplemented("QMoE: swiglu with separate fc3 weights (swiglu_fusion=0) is not supported")
    if limit is not None:
        gate = xp.minimum(gate, limit)
        linear = xp.clip(linear, -limit, limit)
    return gate * activations._sigmoid(xp, alpha * gate) * (linear + beta)


def _top_k_routes(xp, logits, k):
    """(experts, weights) per token: the k largest logits (ties to the higher expert index) and
    the softmax over those k."""
    n_exp = logits.shape[1]
    rev = xp.argsort(-logits[:, ::-1], axis=1, kind="stable")[:, :k]
    top = (n_exp - 1) - rev
    chosen = xp.take_along_axis(logits, top, axis=1)
    e = xp.exp(chosen - chosen.max(axis=1, keepdims=True))
    return top, e / e.sum(axis=1, keepdims=True)


declare_formals(MS, "QMoE", ("T", "T", "T1", "T2", "T", "T1", "T2", "T", "T1", "T2", "T", "T1", "T1", "T1", "T",
                            "T4", "T4", "T4", "T4", "T2", "T2"), ("T",))
_HALF_FLOAT = frozenset({"float32", "float16"})


@kernel("QMoE", since=1, domain=MS,
        types={"T": _HALF_FLOAT, "T1": frozenset({"uint8"}), "T2": _HALF_FLOAT, "T4": frozenset({"float32"})})
def QMoE(ctx, input, router_probs, fc1_experts_weights, fc1_scales, fc1_experts_bias=None,
         fc2_experts_weights=None, fc2_scales=None, fc2_experts_bias=None, fc3_experts_weights=None,
         fc3_scales=None, fc3_experts_bias=None, fc1_zero_points=None, fc2_zero_points=None,
         fc3_zero_points=None, router_weights=None, *fp_scales, activation_type="relu", k=1,
         normalize_routing_weights=0, use_sparse_mixer=0, expert_weight_bits=4, block_size=0, swiglu_fusion=0,
         activation_alpha=1.0, activation_beta=0.0, swiglu_limit=None, quant_type="int", weights_prepacked=-1,
         accuracy_level=0, swiglu_limit_after_activation=0, fc1_expert_weight_bits=None,
         fc2_expert_weight_bits=None, fc3_expert_weight_bits=None):
    """sum over the token's top-k experts of weight * (act(x W1^T + b1) W2^T + b2), W1 and W2
    dequantized from their packed uint8 rows; router_weights, when given, supplies the mixing
    weights of the experts router_probs selects.  Integer quantization only (quant_type 'int');
    accuracy_level only lets onnxruntime use int8 activations, this kernel stays in float32."""
    xp = ctx.xp
    if fc3_experts_weights is not None or fc3_scales is not None or fc3_experts_bias is not None:
        raise NotImplemented("QMoE: fc3 (a separate gate projection) is not supported, as on onnxruntime's CPU")
    if use_sparse_mixer:
        raise NotImplemented("QMoE: use_sparse_mixer=1 is not supported")
    if quant_type != "int" or any(x is not None for x in fp_scales):
        raise NotImplemented(f"QMoE: quant_type '{quant_type}' and the global / activation scale inputs of the FP4 "
                             f"and FP8 modes are not supported (integer quantization only)")
    if weights_prepacked == 1:
        raise NotImplemented("QMoE: execution-provider prepacked expert weights (weights_prepacked=1) are not supported")
    bits1 = expert_weight_bits if fc1_expert_weight_bits is None else fc1_expert_weight_bits
    bits2 = expert_weight_bits if fc2_expert_weight_bits is None else fc2_expert_weight_bits
    if bits1 not in (4, 8) or bits2 not in (4, 8):
        raise InvalidArgument(f"QMoE: expert weight bits must be 4 or 8, got fc1 {bits1}, fc2 {bits2}")
    if bits1 != bits2 or swiglu_limit_after_activation:
        raise NotImplemented("QMoE: mixed fc1/fc2 bit widths and swiglu_limit_after_activation are not supported "
                             "(onnxruntime 1.32 runs neither on its CPU provider)")
    if fc2_experts_weights is None or fc2_scales is None:
        raise InvalidArgument("QMoE: inputs 'fc2_experts_weights' and 'fc2_scales' are required")
    hidden = input.shape[-1]
    x = input.reshape(-1, hidden).astype(xp.float32)
    n_exp = fc1_experts_weights.shape[0]
    logits = router_probs.reshape(-1, router_probs.shape[-1]).astype(xp.float32)
    if logits.shape != (x.shape[0], n_exp):
        raise InvalidArgument(f"QMoE: input router_probs has shape {tuple(router_probs.shape)}, expected "
                              f"({x.shape[0]}, {n_exp}) for {x.shape[0]} tokens and {n_exp} experts")
    if not 1 <= k <= n_exp:
        raise InvalidArgument(f"QMoE: k={k} must be in [1, {n_exp}]")
    inter = fc2_experts_weights.shape[-1] * (8 // bits2)
    fused = 2 if activation_type == "swiglu" else 1
    if block_size and (hidden % block_size or inter % block_size):
        raise InvalidArgument(f"QMoE: block_size {block_size} must divide hidden_size {hidden} and "
                              f"inter_size {inter}")
    w1 = _qmoe_weights(xp, "fc1", fc1_experts_weights, fc1_scales, fc1_zero_points, bits=bits1,
                       block=block_size, rows=fused * inter, cols=hidden)
    w2 = _qmoe_weights(xp, "fc2", fc2_experts_weights, fc2_scales, fc2_zero_points, bits=bits2,
                       block=block_size, rows=hidden, cols=inter)
    top, weights = _top_k_routes(xp, logits, k)
    if router_weights is not None:
        mix = router_weights.reshape(-1, router_weights.shape[-1]).astype(xp.float32)
        if mix.shape != logits.shape:
            raise InvalidArgument(f"QMoE: input router_weights has shape {tuple(router_weights.shape)}, expected "
                                  f"{tuple(logits.shape)} like router_probs")
        weights = xp.take_along_axis(mix, top, axis=1)
        if normalize_routing_weights:
            weights = weights / weights.sum(axis=1, keepdims=True)
    limit = None if swiglu_limit is None else float(swiglu_limit)
    out = xp.zeros_like(x)
    for e in range(n_exp):
        rows, slot = xp.nonzero(top == e)
        if rows.size == 0:
            continue
        h = x[rows] @ w1[e].T
        if fc1_experts_bias is not None:
            h = h + fc1_experts_bias[e].astype(xp.float32)
        h = _qmoe_activation(xp, activation_type, h, inter, swiglu_fusion, activation_alpha, activation_beta, limit)
        y = h @ w2[e].T
        if fc2_experts_bias is not None:
            y = y + fc2_experts_bias[e].astype(xp.float32)
        out[rows] += weights[rows, slot][:, None] * y
    return out.reshape(input.shape).astype(input.dtype)


declare_formals(MS, "MoEGroupRouter", ("T", "TF", "T"), ("T", "TF", "TF"))


@kernel("MoEGroupRouter", since=1, domain=MS, types={"T": frozenset({"float32", "float16", "bfloat16"}),
                                                       "TF": frozenset({"float32"})})
def MoEGroupRouter(ctx, logits, expert_bias, projection_weight=None, *, top_k, n_group=1, topk_group=1,
                   group_topk=2, router_sentinel=-10000.0):
    """Group-limited sigmoid routing (DeepSeek-V3 noaux_tc): s = sigmoid(logits); groups ranked by
    the sum of their group_topk largest s + expert_bias, the topk_group best kept; within them the
    top_k experts by s + expert_bias get log(max(s, 1e-20)), the others router_sentinel
    (router_probs).  Or, full-score outputs: selection_scores = s + expert_bias and
    router_weights = s, float32, with logits optionally projected by projection_weight first."""
    xp = ctx.xp
    op = "MoEGroupRouter"
    n_exp = expert_bias.size
    present = list(ctx.output_present) + [False] * (3 - len(ctx.output_present))
    if projection_weight is not None:
        if logits.ndim != 2 or tuple(projection_weight.shape) != (n_exp, logits.shape[1]):
            raise ValueError(f"{op}: projection_weight {tuple(projection_weight.shape)} must be (num_experts={n_exp}, "
                             f"width) for activations {tuple(logits.shape)}")
        z = logits.astype(xp.float32) @ projection_weight.astype(xp.float32).T
    else:
        if logits.shape[-1] != n_exp:
            raise ValueError(f"{op}: logits {tuple(logits.shape)} must end in num_experts={n_exp} (expert_bias)")
        z = logits.reshape(-1, n_exp).astype(xp.float32)
    s = activations._sigmoid(xp, z)
    biased = s + expert_bias.astype(xp.float32).reshape(1, -1)
    if present[1] or present[2]:
        if present[0]:
            raise ValueError(f"{op}: router_probs cannot be combined with the full-score outputs")
        if n_group != 1 or topk_group != 1:
            raise ValueError(f"{op}: full-score outputs need n_group = topk_group = 1")
        return (None, biased, s)[:max(ctx.num_outputs, 1)]
    if projection_weight is not None:
        raise ValueError(f"{op}: projection_weight needs the full-score outputs")
    if n_group < 1 or n_exp % n_group or not 1 <= topk_group <= n_group:
        raise ValueError(f"{op}: n_group={n_group} must divide num_experts={n_exp} and topk_group={topk_group} "
                         f"lie in [1, n_group]")
    per_group = n_exp // n_group
    if not 1 <= top_k <= topk_group * per_group:
        raise ValueError(f"{op}: top_k={top_k} must lie in [1, {topk_group * per_group}]")
    tokens = biased.shape[0]
    grouped = biased.reshape(tokens, n_group, per_group)
    g_k = min(max(group_topk, 1), per_group)
    group_score = -xp.sort(-grouped, axis=2)[:, :, :g_k].sum(axis=2)
    keep = xp.argsort(-group_score, axis=1, kind="stable")[:, :topk_group]
    allowed = xp.zeros((tokens, n_group), bool)
    xp.put_along_axis(allowed, keep, True, axis=1)
    masked = xp.where(xp.repeat(allowed, per_group, axis=1), biased, -xp.inf)
    chosen = xp.argsort(-masked, axis=1, kind="stable")[:, :top_k]
    out = xp.full((tokens, n_exp), router_sentinel, xp.float32)
    xp.put_along_axis(out, chosen, xp.take_along_axis(xp.log(xp.maximum(s, 1e-20)), chosen, axis=1), axis=1)
    probs = out.astype(logits.dtype)
    return probs if ctx.num_outputs == 1 else (probs, None, None)[:ctx.num_outputs]
