"""Block-quantized weights of onnxruntime's com.microsoft domain: MatMulNBits (2/4/8-bit packed
weights times a float input, as LLM exports write them), GatherBlockQuantized (an embedding
table stored the same way), MatMulBnb4 (FP4/NF4 codes) and MatMulFpQ4 (MLAS's older int4 blob,
scales and zero points inline).

A block holds `block_size` consecutive values along the quantized axis with one scale and one
zero point; packed bytes keep their first value in the low bits.  The weights are dequantized
to float32 and multiplied (or gathered) there, so no precision is lost beyond the quantization.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument, NotImplemented  # noqa: A004
from ortgpu.providers.dtype_sets import FLOAT8, INDEX
from ortgpu.providers.kernels.linalg import _matmul
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_FLOATS = frozenset({"float32", "float16", "bfloat16"})


_SHIFTS = {b: np.arange(8 // b, dtype=np.uint8) * np.uint8(b) for b in (1, 2, 4)}   # low bits first


def unpack_bits(xp, packed, bits, count):
    """uint8 bytes [..., n] -> their `bits`-wide fields [..., count] (low bits first)."""
    if bits == 8:
        return packed[..., :count]
    per_byte = 8 // bits
    shifts = _SHIFTS[bits] if xp is np else xp.asarray(_SHIFTS[bits])
    fields = (packed[..., None] >> shifts) & xp.uint8((1 << bits) - 1)
    return fields.reshape(packed.shape[:-1] + (packed.shape[-1] * per_byte,))[..., :count]


def _check_bits(op, bits):
    if bits not in (2, 4, 8):
        raise InvalidArgument(f"{op}: attribute bits must be 2, 4 or 8, got {bits}")


def _dequantized_weight(xp, B, scales, zero_points, g_idx, *, K, N, bits, block_size):
    """The float32 [N, K] weight of a MatMulNBits node."""
    k_blocks = -(-K // block_size)
    blob = block_size * bits // 8
    if B.size != N * k_blocks * blob:
        raise InvalidArgument(f"MatMulNBits: input B has shape {tuple(B.shape)}, expected ({N}, {k_blocks}, {blob}) "
                         f"for K={K}, N={N}, bits={bits}, block_size={block_size}")
    q = unpack_bits(xp, B.reshape(N, k_blocks, blob), bits, block_size)   # (N, k_blocks, block_size)
    s = scales.reshape(N, k_blocks).astype(xp.float32)
    if zero_points is None or (g_idx is not None and zero_points.dtype == np.uint8):
        # onnxruntime 1.32 reads no packed zero points when g_idx is given: the default applies
        z = xp.float32(1 << (bits - 1))
    elif zero_points.dtype == np.uint8:
        z = unpack_bits(xp, zero_points.reshape(N, -1), bits, k_blocks).astype(xp.float32)
    else:  # unpacked zero points in the scales' float type
        z = zero_points.reshape(N, k_blocks).astype(xp.float32)
    if g_idx is not None:  # act-order: the block of each k is listed
        g = g_idx.reshape(-1)[:K].astype(xp.int64)
        q = q.reshape(N, -1)[:, :K].astype(xp.float32)
        return (q - (z if z.ndim == 0 else z[:, g])) * s[:, g]
    # one parameter per block: broadcast over the block's axis rather than repeating them
    w = q.astype(xp.float32)
    w -= z if z.ndim == 0 else z[:, :, None]
    w *= s[:, :, None]
    return w.reshape(N, -1)[:, :K]


@kernel("MatMulNBits", since=1, domain=MS, types={"*": _FLOATS | {"uint8", "int32"}})
def MatMulNBits(ctx, A, B, scales, zero_points=None, g_idx=None, bias=None, *, K, N, bits=4,
                block_size, accuracy_level=0, weight_prepacked=0):
    """Y = A @ dequantize(B).T (+ bias): B holds N rows of K `bits`-wide values in blocks along K.

    accuracy_level only lets onnxruntime compute in lower precision; this kernel computes in
    float32 at every level."""
    xp = ctx.xp
    _check_bits("MatMulNBits", bits)
    if weight_prepacked:
        raise NotImplemented("MatMulNBits: weights prepacked for a CUDA layout (weight_prepacked="
                                  f"{weight_prepacked}) are not supported")
    if block_size < 16 or block_size & (block_size - 1):
        raise InvalidArgument(f"MatMulNBits: block_size must be a power of 2 and >= 16, got {block_size}")
    if A.shape[-1] != K:
        raise InvalidArgument(f"MatMulNBits: input A has {A.shape[-1]} features in its last axis, attribute K is {K}")
    out_shape = A.shape[:-1] + (N,)
    if B.size == 0:  # an omitted projection: zeros, or the bias
        y = xp.zeros(out_shape, xp.float32)
    else:
        # the float32 weight, transposed to [K, N] and contiguous for BLAS: made once per
        # session when B, scales, zero_points and g_idx are initializers
        wt = ctx.prepared("weight", (1, 2, 3, 4), (B, scales, zero_points, g_idx), lambda: xp.ascontiguousarray(
            _dequantized_weight(xp, B, scales, zero_points, g_idx, K=K, N=N, bits=bits, block_size=block_size).T))
        y = _matmul(xp, A.astype(xp.float32, copy=False), wt)
    if bias is not None:
        y += ctx.prepared("bias", (5,), (bias,), lambda: bias.astype(xp.float32, copy=False))
    return y.astype(A.dtype, copy=False)


def _dequantize_blocks(xp, q, scales, zero_points, axis, block_size):
    """(q - zero_point) * scale, float32, with one parameter per block along `axis`
    (block_size 0: the whole axis); other axes of size 1 in the parameters broadcast."""
    n = q.shape[axis]

    def spread(p):
        if block_size and p.shape[axis] != 1:
            p = xp.repeat(p, block_size, axis=axis)
            p = xp.take(p, xp.arange(n), axis=axis)
        return p.astype(xp.float32)

    v = q.astype(xp.float32)
    if zero_points is not None:
        v = v - spread(zero_points)
    return v * spread(scales)


@kernel("GatherBlockQuantized", since=1, domain=MS,
        types={"*": _FLOATS | INDEX | FLOAT8 | {"uint8", "int4", "uint4", "float4_e2m1fn"}})
def GatherBlockQuantized(ctx, data, indices, scales, zero_points=None, *, bits=4, block_size=128,
                         gather_axis=0, quantize_axis=1):
    """Gather along gather_axis from a block-quantized table, dequantized to the scales' type;
    an index out of range gives zeros (not an error, as onnxruntime)."""
    xp = ctx.xp
    r = data.ndim
    values = data.size * (8 // bits if data.dtype == np.uint8 and bits < 8 else 1)
    if (xp is np and ctx.is_constant(0) and ctx.is_constant(2) and ctx.is_constant(3)
            and ctx.would_keep("table", values * scales.dtype.itemsize)):
        # a constant table: dequantized whole once per session (the session's budget allowing;
        # past it the rows are gathered first and only they dequantized, per run), then each
        # run is one take; indices in range are the common case, checked in two reductions
        # (a negative or out-of-range index takes the general path below)
        table = ctx.prepared("table", (0, 2, 3), (data, scales, zero_points), lambda: _dequantized_table(
            xp, data, scales, zero_points, bits=bits, block_size=block_size, quantize_axis=quantize_axis))
        ga = gather_axis % r
        flat = indices.reshape(-1)
        if flat.size and int(flat.min()) >= 0 and int(flat.max()) < table.shape[ga]:
            out = xp.take(table, flat, axis=ga)
            return out.reshape(out.shape[:ga] + tuple(indices.shape) + out.shape[ga + 1:])
    return _gather_quantized(xp, data, indices, scales, zero_points, bits=bits, block_size=block_size,
                             gather_axis=gather_axis, quantize_axis=quantize_axis)


def _dequantized_table(xp, data, scales, zero_points, *, bits, block_size, quantize_axis):
    """The whole table of a GatherBlockQuantized node, dequantized to the scales' type."""
    everything = xp.arange(data.shape[0], dtype=xp.int64)
    return _gather_quantized(xp, data, everything, scales, zero_points, bits=bits, block_size=block_size,
                             gather_axis=0, quantize_axis=quantize_axis)


def _gather_quantized(xp, data, indices, scales, zero_points, *, bits, block_size, gather_axis, quantize_axis):
    """GatherBlockQuantized computed from the quantized table (the rows gathered first when the
    gather and quantize axes differ)."""
    r = data.ndim
    ga, qa = gather_axis % r, quantize_axis % r
    is_float = data.dtype.name in FLOAT8 or data.dtype.name.startswith("float4")
    if is_float and zero_points is not None:
        raise InvalidArgument("GatherBlockQuantized: a float8/float4 table takes no zero_points")
    if data.dtype == np.uint8:
        _check_bits("GatherBlockQuantized", bits)
        if bits < 8:
            data = unpack_bits(xp, data, bits, data.shape[-1] * 8 // bits)
            if zero_points is not None:
                zero_points = unpack_bits(xp, zero_points, bits, scales.shape[-1])
        if zero_points is None:
            zero_points = xp.full((1,) * r, 1 << (bits - 1), dtype=xp.int32)
    if not is_float and zero_points is not None:
        zero_points = zero_points.astype(xp.int32)
    size = data.shape[ga]
    idx = indices.astype(xp.int64)
    valid = (idx >= -size) & (idx < size)
    flat = xp.where(valid, xp.where(idx < 0, idx + size, idx), 0).reshape(-1)
    if ga != qa:  # gather the quantized rows first, then dequantize only those
        rows = xp.take(data.astype(xp.float32) if is_float else data, flat, axis=ga)

        def pick(p):
            return p if p is None or p.shape[ga] == 1 else xp.take(p, flat, axis=ga)
        out = _dequantize_blocks(xp, rows, pick(scales), pick(zero_points), qa, block_size)
    else:
        table = _dequantize_blocks(xp, data.astype(xp.float32) if is_float else data, scales, zero_points,
                                   qa, block_size)
        out = xp.take(table, flat, axis=ga)
    keep = valid.reshape((1,) * ga + (-1,) + (1,) * (r - ga - 1))
    out = xp.where(keep, out, 0)
    out = out.reshape(out.shape[:ga] + tuple(indices.shape) + out.shape[ga + 1:])
    return out.astype(scales.dtype)


# bitsandbytes' 4-bit code books (QLoRA): FP4 and NormalFloat4, indexed by the 4-bit code.
_BNB4_TABLES = {
    0: (0.0, 0.0052083333, 0.6666667, 1.0, 0.33333334, 0.5, 0.16666667, 0.25,
        -0.0, -0.0052083333, -0.6666667, -1.0, -0.33333334, -0.5, -0.16666667, -0.25),
    1: (-1.0, -0.6961928, -0.52507305, -0.3949175, -0.28444138, -0.18477343, -0.091050036, 0.0,
        0.0795803, 0.1609302, 0.2461123, 0.33791524, 0.44070983, 0.562617, 0.72295684, 1.0),
}


@kernel("MatMulBnb4", since=1, domain=MS, types={"*": _FLOATS | {"uint8"}})
def MatMulBnb4(ctx, A, B, absmax, *, K, N, block_size, quant_type, transB=1, training_mode=0):
    """A @ W.T for W [N, K] stored as 4-bit FP4 / NF4 codes (two per byte, the first in the high
    bits) scaled by one absmax per block of the flattened W.  transB=0 (a training-time form whose
    onnxruntime CPU results we could not reproduce) is refused."""
    xp = ctx.xp
    if not transB:
        raise NotImplemented("MatMulBnb4 with transB=0 is not supported")
    if quant_type not in _BNB4_TABLES:
        raise InvalidArgument(f"MatMulBnb4: quant_type must be 0 (FP4) or 1 (NF4), got {quant_type}")
    n = N * K
    if B.size != (n + 1) // 2:
        raise InvalidArgument(f"MatMulBnb4: input B has {B.size} bytes, expected {(n + 1) // 2} for N={N}, K={K}")
    flat = B.reshape(-1)
    codes = xp.stack([flat >> 4, flat & 0x0F], axis=-1).reshape(-1)[:n].astype(xp.int64)
    table = xp.asarray(_BNB4_TABLES[quant_type], dtype=xp.float32)
    scale = xp.repeat(absmax.reshape(-1).astype(xp.float32), block_size)[:n]
    w = (table[codes] * scale).reshape(N, K)
    y = xp.matmul(A.astype(xp.float32), w.T)
    return y.astype(A.dtype)


# MatMulFpQ4's blob (MLAS's int4 block format): for each of the N columns of B [K, N], for each
# block of 32 values down the column: a float32 scale, then (type BlkQ4Zp8 only) a uint8 zero
# point, then 16 bytes whose byte l holds value l in its low nibble and value l + 16 in its high.
# onnxruntime 1.32 reads blk_quant_type 0 as BlkQ4Sym (zero point 8) and every other value,
# the spec's 2 (blocks of 64) included, as BlkQ4Zp8; this kernel does the same.
_FPQ4_BLOCK = 32


def _fpq4_weight(xp, blob, K, N, with_zero_point):
    """The float32 B [K, N] of a MatMulFpQ4 blob."""
    k_blocks = -(-K // _FPQ4_BLOCK)
    head = 5 if with_zero_point else 4
    size = head + _FPQ4_BLOCK // 2
    if blob.size != N * k_blocks * size:
        raise InvalidArgument(f"MatMulFpQ4: input B has {blob.size} bytes, expected {N * k_blocks * size} "
                              f"({N} columns x {k_blocks} blocks x {size} bytes) for B_shape ({K}, {N}) and "
                              f"{'BlkQ4Zp8' if with_zero_point else 'BlkQ4Sym'}")
    b = blob.reshape(N, k_blocks, size)
    scale = xp.ascontiguousarray(b[..., :4]).view(xp.float32)[..., 0]
    zero = b[..., 4].astype(xp.float32) if with_zero_point else xp.full((N, k_blocks), 8.0, xp.float32)
    data = b[..., head:]
    q = xp.concatenate([data & 0x0F, data >> 4], axis=-1).astype(xp.float32)   # [N, k_blocks, 32]
    w = (q - zero[..., None]) * scale[..., None]
    return w.reshape(N, k_blocks * _FPQ4_BLOCK)[:, :K].T


declare_formals(MS, "MatMulFpQ4", ("T1", "T2", "T3"), ("T1",))


@kernel("MatMulFpQ4", since=1, domain=MS, host_inputs=(2,),
        types={"T1": frozenset({"float32"}), "T2": frozenset({"uint8"}), "T3": frozenset({"int64"})})
def MatMulFpQ4(ctx, A, B, B_shape, *, blk_quant_type=1):
    """A @ B with B [K, N] (from B_shape) dequantized from MLAS's int4 blob; A broadcasts as
    in MatMul (its batch axes lead, B is one matrix)."""
    xp = ctx.xp
    shape = [int(v) for v in np.asarray(B_shape).reshape(-1)]
    if len(shape) != 2:
        raise InvalidArgument(f"MatMulFpQ4: input B_shape must hold 2 dims (K, N), got {shape}")
    if B.ndim != 1:
        raise InvalidArgument(f"MatMulFpQ4: input B must be a 1-D blob, got shape {tuple(B.shape)}")
    K, N = shape
    if A.ndim < 1 or A.shape[-1] != K:
        raise InvalidArgument(f"MatMulFpQ4: input A {tuple(A.shape)} does not fit B_shape ({K}, {N}): "
                              f"its last axis must be {K}")
    w = _fpq4_weight(xp, B, K, N, with_zero_point=blk_quant_type != 0)
    return xp.matmul(A, w.astype(A.dtype))
