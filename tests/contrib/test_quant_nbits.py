"""MatMulNBits and GatherBlockQuantized against onnxruntime, over seeded random configurations:
bit widths, block sizes, K not a multiple of the block, packed / float / absent zero points,
g_idx, bias, accuracy levels, float16 inputs; tables of uint8 (packed), int4 and uint4."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 24


def _pack(values, bits):
    """Pack small unsigned ints along the last axis into bytes, low bits first."""
    per = 8 // bits
    pad = (-values.shape[-1]) % per
    v = np.concatenate([values, np.zeros(values.shape[:-1] + (pad,), values.dtype)], axis=-1)
    v = v.reshape(values.shape[:-1] + (-1, per)).astype(np.uint16)
    return (v << (np.arange(per) * bits)).sum(axis=-1).astype(np.uint8)


def _nbits_case(i):
    rng = rng_for("MatMulNBits", i)
    bits = [4, 8, 2, 4][i % 4]
    block = int(rng.choice([16, 32, 64]))
    K = int(rng.integers(1, 4)) * block - int(rng.choice([0, 0, 5]))
    N = int(rng.integers(3, 12))
    kb = -(-K // block)
    q = rng.integers(0, 1 << bits, (N, kb, block)).astype(np.uint8)
    B = _pack(q, bits)
    dtype = np.float16 if i % 5 == 4 else np.float32
    scales = (rng.random((N, kb)) * 0.1 + 0.01).astype(dtype)
    zp_kind = ["none", "packed", "float", "packed"][(i // 4) % 4]
    zp = None
    if zp_kind == "packed":
        zp = _pack(rng.integers(0, 1 << bits, (N, kb)).astype(np.uint8), bits)
    elif zp_kind == "float" and bits != 8:  # onnxruntime refuses 8-bit weights with float zero points
        zp = (rng.random((N, kb)) * (1 << bits)).astype(dtype)
    g_idx = None
    if i % 6 == 5 and bits == 4:
        g_idx = rng.permutation(np.arange(K) // block).astype(np.int32)
    bias = rng.normal(size=N).astype(dtype) if rng.random() < 0.5 else None
    A = rng.normal(size=tuple(rng.integers(1, 4, int(rng.integers(1, 3)))) + (K,)).astype(dtype)
    level = int(rng.choice([0, 1, 4]))
    order = ["A", "B", "scales", "zp" if zp is not None else "", "g_idx" if g_idx is not None else "",
             "bias" if bias is not None else ""]
    while order[-1] == "":
        order.pop()
    consts = {"B": B, "scales": scales}
    consts.update({k: v for k, v in (("zp", zp), ("g_idx", g_idx), ("bias", bias)) if v is not None})
    attrs = dict(K=K, N=N, bits=bits, block_size=block, accuracy_level=level)
    return order, {"A": A}, consts, attrs, dtype, level


@pytest.mark.parametrize("i", range(N_CASES))
def test_matmul_nbits(i):
    order, feeds, consts, attrs, dtype, level = _nbits_case(i)
    got, want = run_both(model("MatMulNBits", order, feeds, consts, attrs=attrs), feeds)
    scale = float(np.abs(want[0].astype(np.float32)).max()) + 1e-3
    # accuracy_level 4 lets onnxruntime quantize A to int8 per block; float16 rounds its output
    tol = 2e-2 if level == 4 else (2e-3 if dtype == np.float16 else 1e-5)
    assert_close(got, want, rtol=tol, atol=tol * scale, what=f"case {i}: {attrs}")


def test_matmul_nbits_refuses_wrong_k():
    order, feeds, consts, attrs, _, _ = _nbits_case(0)
    import ortgpu
    from ortgpu.errors import InvalidArgument
    bad = dict(attrs, K=attrs["K"] + 1)
    sess = ortgpu.InferenceSession(model("MatMulNBits", order, feeds, consts, attrs=bad),
                                   providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidArgument, match=r"input A has \d+ features.*attribute K is"):
        sess.run(None, feeds)


def _gather_case(i):
    rng = rng_for("GatherBlockQuantized", i)
    kind = ["uint8", "int4", "uint4", "uint8"][i % 4]
    block = int(rng.choice([16, 32]))
    rows, cols = int(rng.integers(3, 9)), block * int(rng.integers(1, 4))
    n_blocks = cols // block
    dtype = np.float16 if i % 3 == 2 else np.float32
    scales = (rng.random((rows, n_blocks)) * 0.2 + 0.01).astype(dtype)
    attrs = dict(block_size=block, gather_axis=0, quantize_axis=1)
    zp = None
    if kind == "uint8":
        bits = 4 if i % 8 < 4 else 8
        attrs["bits"] = bits
        values = rng.integers(0, 1 << bits, (rows, cols)).astype(np.uint8)
        data = _pack(values, bits) if bits < 8 else values
        if rng.random() < 0.6:
            zvals = rng.integers(0, 1 << bits, (rows, n_blocks)).astype(np.uint8)
            zp = _pack(zvals, bits) if bits < 8 else zvals
    else:
        dt = ml_dtypes.int4 if kind == "int4" else ml_dtypes.uint4
        lo, hi = (-8, 8) if kind == "int4" else (0, 16)
        data = rng.integers(lo, hi, (rows, cols)).astype(dt)
        if rng.random() < 0.6:
            zp = rng.integers(lo, hi, (rows, n_blocks)).astype(dt)
    idx_dtype = np.int64 if i % 2 else np.int32
    indices = rng.integers(-rows, rows, tuple(rng.integers(1, 4, int(rng.integers(1, 3))))).astype(idx_dtype)
    return data, indices, scales, zp, attrs, kind


@pytest.mark.parametrize("i", range(N_CASES))
def test_gather_block_quantized(i):
    data, indices, scales, zp, attrs, kind = _gather_case(i)
    consts = {"data": data, "scales": scales}
    order = ["data", "indices", "scales"]
    if zp is not None:
        consts["zp"] = zp
        order.append("zp")
    feeds = {"indices": indices}
    got, want = run_both(model("GatherBlockQuantized", order, feeds, consts, attrs=attrs), feeds)
    assert_close(got, want, rtol=1e-3 if scales.dtype == np.float16 else 1e-6, atol=1e-6,
                 what=f"case {i} ({kind}): {attrs}")


@pytest.mark.parametrize("i", range(12))
def test_matmul_bnb4(i):
    rng = rng_for("MatMulBnb4", i)
    block = int(rng.choice([16, 32, 64]))
    K, N = int(rng.integers(1, 5)) * 16 + int(rng.choice([0, 3])), int(rng.integers(2, 9))
    n = N * K
    B = rng.integers(0, 256, (n + 1) // 2).astype(np.uint8)
    dtype = np.float16 if i % 4 == 3 else np.float32
    absmax = (rng.random(-(-n // block)) + 0.1).astype(dtype)
    trans = 1  # transB=0 is refused (see the kernel)
    A = rng.normal(size=(int(rng.integers(1, 4)), K if trans else N)).astype(dtype)
    attrs = dict(K=K, N=N, block_size=block, quant_type=int(i % 2), transB=trans)
    feeds = {"A": A}
    got, want = run_both(model("MatMulBnb4", ["A", "B", "absmax"], feeds, {"B": B, "absmax": absmax}, attrs=attrs),
                         feeds)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    assert_close(got, want, rtol=tol, atol=tol * float(np.abs(want[0]).max() + 1), what=f"case {i}: {attrs}")


@pytest.mark.parametrize("i", range(8))
def test_gather_block_quantized_float8(i):
    rng = rng_for("GatherBlockQuantizedF8", i)
    dt = [ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2][i % 2]
    rows, block = int(rng.integers(2, 7)), 16
    cols = block * int(rng.integers(1, 4))
    data = (rng.normal(size=(rows, cols)) * 4).astype(dt)
    whole_axis = i % 4 >= 2  # block_size 0: one scale per row
    scales = (rng.random((rows, 1 if whole_axis else cols // block)) + 0.1).astype(np.float32)
    if i % 3 == 2:  # one scale row shared by every row
        scales = scales[:1]
    attrs = dict(block_size=0 if whole_axis else block, gather_axis=0, quantize_axis=1)
    feeds = {"indices": rng.integers(-rows, rows, (3,)).astype(np.int64)}
    m = model("GatherBlockQuantized", ["data", "indices", "scales"], feeds, {"data": data, "scales": scales},
              attrs=attrs)
    got, want = run_both(m, feeds)
    assert_close(got, want, rtol=1e-6, atol=1e-6, what=f"case {i}: {dt} {attrs} scales {scales.shape}")
