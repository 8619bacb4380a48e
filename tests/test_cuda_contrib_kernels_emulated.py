"""The CUDA provider's raw kernels for com.microsoft ops (providers/cuda/kernels/contrib_*.cu),
run on the CPU by the host emulator (``tests/support/cuda_emulator``) against the shared NumPy kernels
(providers/kernels/contrib_*.py, themselves tested against onnxruntime), with seeded random
inputs in float32 and float16.

Each case calls the registered ``provider="cuda"`` kernel with the emulator's ``cupy`` stand-in,
so the launcher takes its real CuPy path and the unchanged CUDA source runs thread by thread;
each case also checks which raw kernels were launched, so a silent fallback fails.  Nothing
here says anything about a real GPU: these kernels have never run on one.
"""
from __future__ import annotations

import numpy as np
import pytest

from support.cuda_checks import F16, F32, assert_close, random
from support.cuda_emulator import emulated_cuda  # noqa: F401  (the fixture)
from ortgpu.providers import registry
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.registry import KernelContext

MS = "com.microsoft"
HALF_FLOATS = (F32, F16)
# float16 results are rounded once from a float32 computation on both sides; reductions
# summed in another order can move a result by one float16 ulp.
TOL = {F32: {"rtol": 1e-4, "atol": 1e-5}, F16: {"rtol": 4e-3, "atol": 2e-3}}


def _ctx(xp, op, num_outputs=1):
    return KernelContext(xp, "cuda" if xp is not np else "cpu", op_type=op, opset=1,
                         num_outputs=num_outputs, output_present=(True,) * num_outputs)


def _host(v):
    if isinstance(v, tuple):
        return tuple(_host(x) for x in v)
    return v.get() if hasattr(v, "get") else np.asarray(v)


def run_both(emu, op, inputs, attrs=None, num_outputs=1):
    """(raw kernel's result on the emulator, shared NumPy kernel's result, kernels launched);
    the inputs the kernel declares as host inputs stay NumPy arrays, as the executor passes them."""
    k = registry.lookup(op, MS, 1, ("cuda",))
    fn = k.fn
    assert fn.__module__.startswith("ortgpu.providers.cuda.kernels.contrib_"), fn.__module__
    cp = emu.cupy
    dev = [x if x is None or i in k.host_inputs else cp.asarray(x) for i, x in enumerate(inputs)]
    first = len(emu.launches)
    got = _host(fn(_ctx(cp, op, num_outputs), *dev, **(attrs or {})))
    names = emu.names()[first:]
    shared = registry.lookup(op, MS, 1, (registry.SHARED,)).fn
    want = shared(_ctx(np, op, num_outputs), *inputs, **(attrs or {}))
    return got, want, names


def _pairs(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    return zip(got, want)


# ---------------------------------------------------------------- Skip(Simplified)LayerNormalization

# (input shape, skip shape, with beta, with bias)
SKIP_LN_CASES = [((2, 5, 64), (2, 5, 64), True, True), ((3, 7, 33), (7, 33), False, True),
                 ((1, 4, 40), (1, 4, 40), True, False), ((6, 1500), (6, 1500), True, True),
                 ((2, 3, 24), (1, 3, 24), False, False)]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("shape, skip_shape, with_beta, with_bias", SKIP_LN_CASES, ids=str)
@pytest.mark.parametrize("op", ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"])
def test_skip_layernorm(op, shape, skip_shape, with_beta, with_bias, dtype, emulated_cuda):
    rng = np.random.default_rng(101)
    h = shape[-1]
    x = random(rng, shape, dtype) + dtype.type(2)
    skip = random(rng, skip_shape, dtype)
    gamma = random(rng, (h,), dtype)
    beta = random(rng, (h,), dtype) if with_beta else None
    bias = random(rng, (h,), dtype) if with_bias else None
    inputs = (x, skip, gamma, beta, bias) if op == "SkipLayerNormalization" else (x, skip, gamma, bias)
    for num_outputs in (1, 4):
        got, want, names = run_both(emulated_cuda, op, inputs, {"epsilon": 1e-5}, num_outputs)
        for g, w in _pairs(got, want):
            assert_close(g, w, **TOL[dtype])
        assert names == [f"skip_layernorm_rows<{cu.CTYPE[dtype]}>"]


def test_skip_layernorm_falls_back_for_other_types(emulated_cuda):
    rng = np.random.default_rng(102)
    x = random(rng, (2, 3, 8), np.dtype(np.float64))
    got, want, names = run_both(emulated_cuda, "SkipLayerNormalization",
                                (x, x + 1, x[0, 0], None, None), {"epsilon": 1e-5})
    assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert names == []


# ---------------------------------------------------------------- the GELU family

# (op, shapes of the inputs, attributes, kernel)
GELU_CASES = [("Gelu", [(3, 5, 17)], {}, "gelu_bias"),
              ("BiasGelu", [(2, 7, 24), (24,)], {}, "gelu_bias"),
              ("FastGelu", [(4, 33)], {}, "gelu_bias"),
              ("FastGelu", [(2, 3, 40), (40,)], {}, "gelu_bias"),
              ("QuickGelu", [(5, 19)], {"alpha": 1.702}, "gelu_bias"),
              ("QuickGelu", [(2, 2, 8)], {"alpha": -0.5}, "gelu_bias"),
              ("BiasSplitGelu", [(2, 6, 32), (32,)], {}, "bias_split_gelu")]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("op, shapes, attrs, name", GELU_CASES, ids=str)
def test_gelu_family(op, shapes, attrs, name, dtype, emulated_cuda):
    rng = np.random.default_rng(201)
    inputs = [random(rng, s, dtype) for s in shapes]
    flat = inputs[0].reshape(-1)
    flat[:5] = [np.inf, -np.inf, np.nan, 0.0, -30.0]   # limits, NaN, and a far negative tail
    got, want, names = run_both(emulated_cuda, op, inputs, attrs)
    assert_close(got, want, **TOL[dtype])
    assert names == [f"{name}<{cu.CTYPE[dtype]}>"]


def test_gelu_on_a_strided_view_and_a_bias_of_another_shape(emulated_cuda):
    rng = np.random.default_rng(202)
    x = random(rng, (4, 6), F32)
    got, want, names = run_both(emulated_cuda, "Gelu", [x.T])          # copied, then the kernel
    assert_close(got, want, **TOL[F32])
    assert names == ["gelu_bias<float>"]
    with pytest.raises(ValueError, match="input 'B'"):                       # the shared kernel's error
        run_both(emulated_cuda, "BiasGelu", [x, random(rng, (4,), F32)])


# ---------------------------------------------------------------- RotaryEmbedding

# (input shape, num_heads, rotary_embedding_dim, position ids "full" or "offset")
ROTARY_CASES = [((2, 3, 32), 4, 0, "full"), ((2, 4, 3, 16), 0, 0, "full"), ((1, 5, 48), 3, 8, "offset"),
                ((2, 2, 4, 8), 0, 4, "offset"), ((3, 2, 20), 0, 0, "full")]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("shape, num_heads, rot, pos_kind", ROTARY_CASES, ids=str)
def test_rotary_embedding(shape, num_heads, rot, pos_kind, interleaved, dtype, emulated_cuda):
    rng = np.random.default_rng(301)
    b, s = (shape[0], shape[2]) if len(shape) == 4 else shape[:2]
    head = shape[3] if len(shape) == 4 else (shape[2] // num_heads if num_heads else 10)
    half = (rot or head) // 2
    max_pos = 12
    x = random(rng, shape, dtype)
    cos = random(rng, (max_pos, half), dtype, -1, 1)
    sin = random(rng, (max_pos, half), dtype, -1, 1)
    pos = (rng.integers(0, max_pos, size=(b, s)) if pos_kind == "full"
           else np.array([max_pos - s - 1]))
    attrs = {"interleaved": interleaved, "num_heads": num_heads, "rotary_embedding_dim": rot}
    got, want, names = run_both(emulated_cuda, "RotaryEmbedding", (x, pos.astype(np.int64), cos, sin), attrs)
    assert_close(got, want, **TOL[dtype])
    assert names == [f"rotary_embedding<{cu.CTYPE[dtype]}>"]


def test_rotary_positions_past_the_cache_raise(emulated_cuda):
    rng = np.random.default_rng(302)
    x, cos = random(rng, (1, 2, 8), F32), random(rng, (4, 4), F32)
    with pytest.raises(ValueError, match="positions reach 9"):
        run_both(emulated_cuda, "RotaryEmbedding", (x, np.array([[0, 9]], np.int64), cos, cos), {})


# ---------------------------------------------------------------- MatMulNBits

def _nbits_inputs(rng, dtype, rows, K, N, bits, block_size, zp_kind):
    """A, packed B, scales and zero points (None, packed uint8 or float) of a MatMulNBits node."""
    k_blocks = -(-K // block_size)
    blob = block_size * bits // 8
    A = random(rng, rows + (K,), dtype, -1, 1)
    B = rng.integers(0, 256, size=(N, k_blocks, blob), dtype=np.uint8)
    scales = random(rng, (N * k_blocks,), dtype, 0.01, 0.1)
    if zp_kind == "packed":
        zp = rng.integers(0, 256, size=(N, -(-k_blocks * bits // 8)), dtype=np.uint8).reshape(-1)
    elif zp_kind == "float":
        zp = random(rng, (N * k_blocks,), dtype, 0, 2 ** bits - 1)
    else:
        zp = None
    return A, B, scales, zp


# (rows of A, K, N, bits, block_size, zero points, with bias)
NBITS_CASES = [((1,), 64, 24, 4, 32, "none", False), ((1, 1), 100, 17, 4, 16, "packed", True),
               ((1,), 48, 9, 8, 16, "float", False), ((1,), 1100, 3, 4, 64, "packed", False),
               ((1,), 32, 5, 2, 16, "packed", True),
               ((3,), 64, 12, 4, 32, "packed", True), ((2, 3), 40, 7, 8, 32, "none", False),
               ((5,), 50, 6, 2, 16, "float", True)]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("rows, K, N, bits, block_size, zp_kind, with_bias", NBITS_CASES, ids=str)
def test_matmul_nbits(rows, K, N, bits, block_size, zp_kind, with_bias, dtype, emulated_cuda):
    rng = np.random.default_rng(401)
    A, B, scales, zp = _nbits_inputs(rng, dtype, rows, K, N, bits, block_size, zp_kind)
    bias = random(rng, (N,), dtype) if with_bias else None
    attrs = {"K": K, "N": N, "bits": bits, "block_size": block_size}
    got, want, names = run_both(emulated_cuda, "MatMulNBits", (A, B, scales, zp, None, bias), attrs)
    assert_close(got, want, **TOL[dtype])
    kernel_name = "nbits_gemv" if np.prod(rows) == 1 else "nbits_dequantize"
    assert names == [f"{kernel_name}<{cu.CTYPE[dtype]}>"]


def test_matmul_nbits_act_order_and_bad_inputs_go_to_the_shared_kernel(emulated_cuda):
    from ortgpu.errors import InvalidArgument

    rng = np.random.default_rng(402)
    A, B, scales, zp = _nbits_inputs(rng, F32, (2,), 64, 4, 4, 32, "none")
    g_idx = rng.integers(0, 2, size=64).astype(np.int32)
    attrs = {"K": 64, "N": 4, "bits": 4, "block_size": 32}
    got, want, names = run_both(emulated_cuda, "MatMulNBits", (A, B, scales, None, g_idx), attrs)
    assert_close(got, want, **TOL[F32])
    assert names == []
    with pytest.raises(InvalidArgument, match="attribute K is 65"):
        run_both(emulated_cuda, "MatMulNBits", (A, B, scales), dict(attrs, K=65))


# ---------------------------------------------------------------- GroupNorm, SkipGroupNorm

# (X shape NHWC, groups, activation, gamma/beta in float32, skip shape or None, with bias)
GROUPNORM_CASES = [((2, 3, 4, 8), 4, 1, False, None, False), ((1, 5, 5, 6), 3, 0, True, None, False),
                   ((2, 2, 3, 16), 2, 1, False, (2, 2, 3, 16), True), ((2, 4, 4, 8), 8, 0, True, (2, 8), False),
                   ((1, 2, 2, 12), 3, 1, False, (1, 1, 1, 12), True), ((1, 16, 20, 4), 1, 1, False, None, False)]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("shape, groups, activation, f32_params, skip_shape, with_bias", GROUPNORM_CASES, ids=str)
def test_group_norm(shape, groups, activation, f32_params, skip_shape, with_bias, dtype, emulated_cuda):
    rng = np.random.default_rng(501)
    c = shape[-1]
    pdt = F32 if f32_params else dtype
    x = random(rng, shape, dtype) + dtype.type(1)
    gamma, beta = random(rng, (c,), pdt), random(rng, (c,), pdt)
    attrs = {"groups": groups, "activation": activation, "epsilon": 1e-5}
    if skip_shape is None:
        op, inputs, outs = "GroupNorm", (x, gamma, beta), (1,)
    else:
        bias = random(rng, (c,), dtype) if with_bias else None
        op, inputs, outs = "SkipGroupNorm", (x, gamma, beta, random(rng, skip_shape, dtype), bias), (1, 2)
    for num_outputs in outs:
        got, want, names = run_both(emulated_cuda, op, inputs, attrs, num_outputs)
        for g, w in _pairs(got, want):
            assert_close(g, w, **TOL[dtype])
        assert names == [f"group_norm_nhwc<{cu.CTYPE[dtype]}, {cu.CTYPE[pdt]}>"]


def test_group_norm_errors_come_from_the_shared_kernel(emulated_cuda):
    rng = np.random.default_rng(502)
    x, p = random(rng, (1, 2, 2, 6), F32), random(rng, (6,), F32)
    with pytest.raises(ValueError, match="not divisible into groups=4"):
        run_both(emulated_cuda, "GroupNorm", (x, p, p), {"groups": 4, "activation": 0})


# ---------------------------------------------------------------- GroupQueryAttention

def _gqa_case(rng, dtype, *, b, s, n, n_kv, d, past, extra=0, packed=False, rotary=False):
    """Inputs of a GroupQueryAttention node: s new tokens after `past` cached ones per row (a
    list, one per batch row), a cache of max(past) + extra positions (none when past is None)."""
    q = random(rng, (b, s, n * d), dtype, -1, 1)
    k = random(rng, (b, s, n_kv * d), dtype, -1, 1)
    v = random(rng, (b, s, n_kv * d), dtype, -1, 1)
    if past is None:
        pk = pv = None
        lens = np.full(b, s)
    else:
        cap = max(past) + s + extra
        pk = random(rng, (b, n_kv, cap, d), dtype, -1, 1)
        pv = random(rng, (b, n_kv, cap, d), dtype, -1, 1)
        lens = np.asarray(past) + s
    seqlens = (lens - 1).astype(np.int32)
    total = np.array(int(lens.max()) if past is None else pk.shape[2], np.int32)
    cos = sin = None
    if rotary:
        cos = random(rng, (64, d // 2), dtype, -1, 1)
        sin = random(rng, (64, d // 2), dtype, -1, 1)
    if packed:
        return (np.concatenate([q, k, v], axis=-1), None, None, pk, pv, seqlens, total, cos, sin)
    return (q, k, v, pk, pv, seqlens, total, cos, sin)


# (batch, new tokens, heads, kv heads, head size, past lengths or None, packed, rotary, attributes)
GQA_CASES = [(2, 1, 4, 2, 16, [5, 3], False, False, {}),
             (1, 4, 4, 4, 8, None, False, False, {}),
             (2, 3, 6, 2, 8, None, True, True, {"rotary_interleaved": 1}),
             (2, 1, 4, 1, 16, [7, 2], False, True, {}),
             (1, 2, 2, 1, 8, [6], False, False, {"local_window_size": 3, "softcap": 2.0}),
             (2, 2, 4, 2, 8, [4, 4], True, False, {"scale": 0.3})]


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
@pytest.mark.parametrize("b, s, n, n_kv, d, past, packed, rotary, attrs", GQA_CASES, ids=str)
def test_group_query_attention(b, s, n, n_kv, d, past, packed, rotary, attrs, dtype, emulated_cuda):
    rng = np.random.default_rng(601)
    inputs = _gqa_case(rng, dtype, b=b, s=s, n=n, n_kv=n_kv, d=d, past=past, packed=packed, rotary=rotary)
    attrs = dict(attrs, num_heads=n, kv_num_heads=n_kv, do_rotary=int(rotary))
    got, want, names = run_both(emulated_cuda, "GroupQueryAttention", inputs, attrs, 3)
    for g, w in _pairs(got, want):
        assert_close(g, w, **TOL[dtype])
    ctype = cu.CTYPE[dtype]
    assert names == [f"rotary_embedding<{ctype}>"] * (2 * rotary) + [f"gqa_present<{ctype}>"] * 2 + \
        [f"gqa_attention_rows<{ctype}>"]


def test_group_query_attention_with_attention_bias_uses_the_shared_kernel(emulated_cuda):
    rng = np.random.default_rng(602)
    inputs = _gqa_case(rng, F32, b=1, s=1, n=2, n_kv=1, d=8, past=[3])
    bias = random(rng, (1, 1, 1, int(inputs[6])), F32)
    got, want, names = run_both(emulated_cuda, "GroupQueryAttention", inputs + (None, bias),
                                {"num_heads": 2, "kv_num_heads": 1}, 3)
    for g, w in _pairs(got, want):
        assert_close(g, w, **TOL[F32])
    assert names == []


# ---------------------------------------------------------------- placement

def _one_node_model(op, inputs, attrs):
    """A one-node com.microsoft model of ``op`` whose graph inputs are ``inputs`` (name -> array,
    None for an omitted optional input)."""
    from onnx import helper

    names = [n if a is not None else "" for n, a in inputs.items()]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], domain=MS, **attrs)], op,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in inputs.items() if a is not None],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(next(iter(inputs.values())).dtype),
                                       None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


@pytest.mark.parametrize("dtype", HALF_FLOATS, ids=str)
def test_the_cuda_provider_places_each_op_on_its_raw_kernel(dtype):
    """Through the partitioner (a CUDA provider told it has a device): each op with a raw kernel
    lands on the CUDA provider with the launcher of providers/cuda/kernels/contrib_*.py, so the
    registrations' declared types, host inputs and formals are ones the placement accepts."""
    from ortgpu.graph import from_proto
    from ortgpu.loading import prepare_model
    from ortgpu.partition import Placed, partition
    from ortgpu.providers.cpu import CPUExecutionProvider
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider

    rng = np.random.default_rng(701)
    x3, h = random(rng, (2, 3, 8), dtype), random(rng, (8,), dtype)
    nhwc, c = random(rng, (1, 2, 2, 4), dtype), random(rng, (4,), dtype)
    nbits = _nbits_inputs(rng, dtype, (1,), 32, 4, 4, 16, "packed")
    gqa = _gqa_case(rng, dtype, b=1, s=1, n=2, n_kv=1, d=8, past=[2], rotary=True)
    cases = {
        "SkipLayerNormalization": ({"x": x3, "skip": x3, "gamma": h, "beta": h}, {}),
        "SkipSimplifiedLayerNormalization": ({"x": x3, "skip": x3, "gamma": h}, {}),
        "Gelu": ({"x": x3}, {}), "BiasGelu": ({"x": x3, "b": h}, {}), "FastGelu": ({"x": x3, "b": h}, {}),
        "QuickGelu": ({"x": x3}, {}), "BiasSplitGelu": ({"x": x3, "b": h}, {}),
        "RotaryEmbedding": ({"x": x3, "pos": np.zeros((2, 3), np.int64), "cos": gqa[7], "sin": gqa[8]},
                            {"num_heads": 1}),
        "MatMulNBits": (dict(zip(("a", "b", "scales", "zp"), nbits)),
                        {"K": 32, "N": 4, "bits": 4, "block_size": 16}),
        "GroupNorm": ({"x": nhwc, "gamma": c, "beta": c}, {"groups": 2, "activation": 1}),
        "SkipGroupNorm": ({"x": nhwc, "gamma": c, "beta": c, "skip": nhwc}, {"groups": 2, "activation": 0}),
        "GroupQueryAttention": (dict(zip(("q", "k", "v", "pk", "pv", "seqlens", "total", "cos", "sin"), gqa)),
                                {"num_heads": 2, "kv_num_heads": 1, "do_rotary": 1}),
    }
    cuda = CUDAExecutionProvider(None, device_count=1)
    wrong = {}
    for op, (inputs, attrs) in cases.items():
        model, _ = prepare_model(_one_node_model(op, inputs, attrs).SerializeToString())
        opsets = {o.domain: o.version for o in model.opset_import}
        part = partition(from_proto(model.graph, opsets), [cuda, CPUExecutionProvider()])
        placed = [it for it in part.items if isinstance(it, Placed) and it.node.op_type == op]
        where = [(it.provider is cuda, getattr(it.kernel.fn, "__module__", "")) for it in placed]
        if where != [(True, f"ortgpu.providers.cuda.kernels.{_LAUNCHERS[op]}")]:
            wrong[op] = where
    assert wrong == {}


_LAUNCHERS = {"SkipLayerNormalization": "contrib_layernorm", "SkipSimplifiedLayerNormalization": "contrib_layernorm",
              "Gelu": "contrib_gelu", "BiasGelu": "contrib_gelu", "FastGelu": "contrib_gelu",
              "QuickGelu": "contrib_gelu", "BiasSplitGelu": "contrib_gelu", "RotaryEmbedding": "contrib_rotary",
              "MatMulNBits": "contrib_matmul_nbits", "GroupNorm": "contrib_groupnorm",
              "SkipGroupNorm": "contrib_groupnorm", "GroupQueryAttention": "contrib_gqa"}
