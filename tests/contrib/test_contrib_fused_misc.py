"""Contrib fused linear ops and tensor utilities against onnxruntime's CPU provider (NhwcConv,
CUDA-only in onnxruntime, against Transpose + Conv in ai.onnx ops)."""
import numpy as np
import pytest
from onnx import TensorProto

from support.harness import F16, F32, F64, I32, I64, Case, node, onnx_node, pick, rnd, run_family

ACTS = [("Relu", []), ("Sigmoid", []), ("Tanh", []), ("LeakyRelu", [0.1]), ("HardSigmoid", [0.3, 0.4]),
        ("Clip", [-0.5, 0.7])]


def gen_fused_conv(rng):
    n, c, m = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    hw = [int(v) for v in rng.integers(3, 7, size=2)]
    k = [int(v) for v in rng.integers(1, 4, size=2)]
    act, params = pick(rng, ACTS)
    feeds = {"X": rnd(rng, [n, c] + hw), "W": rnd(rng, [m, c] + k, scale=0.5)}
    inputs = ["X", "W"]
    if rng.random() < 0.6:
        feeds["B"] = rnd(rng, [m])
        inputs.append("B")
    pads = [int(v) for v in rng.integers(0, 2, size=4)]
    out_hw = [h + pads[i] + pads[i + 2] - kk + 1 for i, (h, kk) in enumerate(zip(hw, k))]
    if rng.random() < 0.4:
        if len(inputs) == 2:
            inputs.append("")
        feeds["Z"] = rnd(rng, [n, m] + out_hw)
        inputs.append("Z")
    return Case(node("FusedConv", inputs, ["Y"], activation=act, activation_params=params or None,
                     kernel_shape=k, pads=pads), feeds)


def gen_fused_gemm(rng):
    M, K, N = (int(v) for v in rng.integers(1, 8, size=3))
    ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    act, params = pick(rng, [a for a in ACTS if a[0] != "Clip"])
    feeds = {"A": rnd(rng, [K, M] if ta else [M, K]), "B": rnd(rng, [N, K] if tb else [K, N])}
    if rng.random() < 0.6:
        feeds["C"] = rnd(rng, pick(rng, [[N], [M, N], [1, N]]))
    attrs = dict(activation=act, transA=ta, transB=tb, alpha=float(rng.uniform(0.5, 1.5)),
                 beta=float(rng.uniform(0.5, 1.5)))
    if params:
        attrs["activation_alpha"] = params[0]
        if len(params) > 1:
            attrs["activation_beta"] = params[1]
    return Case(node("FusedGemm", list(feeds), ["Y"], **attrs), feeds)


def gen_fused_matmul(rng, op="FusedMatMul"):
    batch = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3)))]
    M, K, N = (int(v) for v in rng.integers(1, 6, size=3))
    ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    tba = int(op == "FusedMatMul" and bool(batch) and rng.random() < 0.3)
    tbb = int(op == "FusedMatMul" and bool(batch) and rng.random() < 0.3)

    def shape(rows, cols, t, tbatch):
        s = batch + ([cols, rows] if t else [rows, cols])
        return [s[-2]] + s[:-2] + [s[-1]] if tbatch else s

    feeds = {"A": rnd(rng, shape(M, K, ta, tba)), "B": rnd(rng, shape(K, N, tb, tbb))}
    attrs = dict(alpha=float(rng.uniform(0.5, 2.0)) if rng.random() < 0.5 else None, transA=ta, transB=tb)
    if op == "FusedMatMul":
        attrs.update(transBatchA=tba, transBatchB=tbb)
    return Case(node(op, ["A", "B"], ["Y"], **attrs), feeds)


def gen_nhwc_conv(rng):
    n, g = int(rng.integers(1, 3)), int(pick(rng, [1, 1, 2]))
    c, m = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    hw = [int(v) for v in rng.integers(3, 7, size=2)]
    k = [int(v) for v in rng.integers(1, 4, size=2)]
    strides = [int(v) for v in rng.integers(1, 3, size=2)]
    pads = [int(v) for v in rng.integers(0, 2, size=4)]
    feeds = {"X": rnd(rng, [n] + hw + [c]), "W": rnd(rng, [m] + k + [c // g])}
    inputs = ["X", "W"]
    if rng.random() < 0.5:
        feeds["B"] = rnd(rng, [m])
        inputs.append("B")
    attrs = dict(group=g, strides=strides, pads=pads)
    oracle = [onnx_node("Transpose", ["X"], ["xt"], perm=[0, 3, 1, 2]),
              onnx_node("Transpose", ["W"], ["wt"], perm=[0, 3, 1, 2]),
              onnx_node("Conv", ["xt", "wt"] + inputs[2:], ["yt"], **attrs),
              onnx_node("Transpose", ["yt"], ["Y"], perm=[0, 2, 3, 1])]
    return Case(node("NhwcConv", inputs, ["Y"], **attrs), feeds, oracle=oracle)


def gen_trilu(rng):
    shape = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 2)))] + \
        [int(v) for v in rng.integers(1, 7, size=2)]
    dt = pick(rng, [F32, F64, I64])
    feeds = {"X": rnd(rng, shape, dt)}
    if rng.random() < 0.6:
        feeds["k"] = np.array(int(rng.integers(-3, 4)), I64)
    return Case(node("Trilu", list(feeds), ["Y"], upper=int(rng.integers(0, 2))), feeds)


def gen_range(rng):
    dt = pick(rng, [F32, F64, I32, I64, np.int16])
    start = dt(rng.integers(-10, 10)) if np.dtype(dt).kind == "i" else dt(rng.uniform(-10, 10))
    delta = dt(pick(rng, [1, 2, 3, -1, -2])) if np.dtype(dt).kind == "i" else dt(pick(rng, [0.5, 1.5, -0.7]))
    limit = dt(start + delta * rng.integers(0, 12))
    feeds = {"start": np.array(start, dt), "limit": np.array(limit, dt)}
    if rng.random() < 0.7 or delta != 1:
        feeds["delta"] = np.array(delta, dt)
    return Case(node("Range", list(feeds), ["Y"]), feeds)


def gen_pad(rng):
    shape = [int(v) for v in rng.integers(1, 5, size=int(rng.integers(1, 4)))]
    mode = pick(rng, ["constant", "constant", "reflect", "edge"])
    lo = 0 if mode != "constant" else -1
    pads = [int(rng.integers(lo, 3)) for _ in range(2 * len(shape))]
    if mode == "reflect":
        pads = [min(p, shape[i % len(shape)] - 1) for i, p in enumerate(pads)]
    feeds = {"data": rnd(rng, shape)}
    consts = {"pads": np.array(pads, I64).reshape((1, -1) if rng.random() < 0.3 else -1)}
    inputs = ["data", "pads"]
    if mode == "constant" and rng.random() < 0.5:
        consts["value"] = np.array([rng.uniform(-2, 2)], F32)
        inputs.append("value")
    return Case(node("Pad", inputs, ["Y"], mode=mode), feeds, consts)


def gen_unique(rng):
    x = rng.integers(-4, 5, size=int(rng.integers(1, 20))).astype(F32)
    return Case(node("Unique", ["x"], ["y", "idx", "counts"]), {"x": x},
                out_types={"idx": TensorProto.INT64, "counts": TensorProto.INT64})


def gen_expand_dims(rng):
    shape = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 4)))]
    axis = int(rng.integers(-len(shape) - 1, len(shape) + 1))
    dt = pick(rng, [F32, I64, np.bool_])
    x = rnd(rng, shape, F32) > 0 if dt == np.bool_ else rnd(rng, shape, dt)
    return Case(node("ExpandDims", ["X", "axis"], ["Y"]), {"X": x, "axis": np.array(axis, I32)})


def gen_gather_nd(rng):
    shape = [int(v) for v in rng.integers(1, 5, size=int(rng.integers(1, 4)))]
    k = int(rng.integers(1, len(shape) + 1))
    lead = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3)))]
    idx = np.stack([rng.integers(0, shape[i], size=lead) for i in range(k)], axis=-1).astype(pick(rng, [I32, I64]))
    return Case(node("GatherND", ["data", "indices"], ["Y"]),
                {"data": rnd(rng, shape, pick(rng, [F32, I64])), "indices": idx})


def gen_grid_sample(rng):
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, w, ho, wo = (int(v) for v in rng.integers(2, 6, size=4))
    attrs = dict(mode=pick(rng, ["bilinear", "nearest", "bicubic"]),
                 padding_mode=pick(rng, ["zeros", "border", "reflection"]),
                 align_corners=int(rng.integers(0, 2)))
    grid = rng.uniform(-1.2, 1.2, size=(n, ho, wo, 2)).astype(F32)
    return Case(node("GridSample", ["X", "Grid"], ["Y"], **attrs), {"X": rnd(rng, [n, c, h, w]), "Grid": grid},
                atol=1e-4)


def gen_inverse(rng):
    k = int(rng.integers(1, 6))
    batch = [int(v) for v in rng.integers(1, 3, size=int(rng.integers(0, 3)))]
    dt = pick(rng, [F32, F64, F16])
    x = (rng.standard_normal(batch + [k, k]) + 3 * np.eye(k)).astype(dt)
    return Case(node("Inverse", ["X"], ["Y"]), {"X": x}, rtol=1e-2 if dt == F16 else 1e-4,
                atol=1e-2 if dt == F16 else 1e-5)


def gen_cdist(rng):
    m, n, k = (int(v) for v in rng.integers(1, 8, size=3))
    dt = pick(rng, [F32, F64])
    return Case(node("CDist", ["A", "B"], ["C"], metric=pick(rng, ["sqeuclidean", "euclidean"])),
                {"A": rnd(rng, [m, k], dt), "B": rnd(rng, [n, k], dt)}, rtol=1e-4, atol=1e-4)


def gen_murmur(rng):
    dt = pick(rng, [I32, np.uint32, I64, np.uint64, F32, F64, object])
    size = int(rng.integers(1, 10))
    if dt is object:
        words = ["", "a", "ab", "abc", "abcd", "hello world", "ünï", "0123456789"]
        x = np.array([pick(rng, words) for _ in range(size)], dtype=object)
    else:
        x = rnd(rng, [size], dt) if np.dtype(dt).kind == "f" else rng.integers(0, 1000, size=size).astype(dt)
    positive = int(rng.integers(0, 2))
    return Case(node("MurmurHash3", ["X"], ["Y"], positive=positive, seed=int(rng.integers(0, 2 ** 31))),
                {"X": x}, out_types={"Y": TensorProto.UINT32 if positive else TensorProto.INT32})


FAMILIES = {"FusedConv": gen_fused_conv, "FusedGemm": gen_fused_gemm, "FusedMatMul": gen_fused_matmul,
            "TransposeMatMul": lambda rng: gen_fused_matmul(rng, "TransposeMatMul"),
            "NhwcConv": gen_nhwc_conv, "Trilu": gen_trilu, "Range": gen_range, "Pad": gen_pad,
            "Unique": gen_unique, "ExpandDims": gen_expand_dims, "GatherND": gen_gather_nd,
            "GridSample": gen_grid_sample,
            "Inverse": gen_inverse, "CDist": gen_cdist, "MurmurHash3": gen_murmur}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    run_family(FAMILIES[name], name, count=20, minimum=10)


WORDS = ["", "a", "bb", "Hello", "wörld", "x1", "a,b", ";", "  ", "ccc dd", "é"]


def gen_tokenizer(rng):
    shape = [int(rng.integers(1, 4))] + ([int(rng.integers(1, 3))] if rng.random() < 0.3 else [])
    texts = [" ".join(pick(rng, WORDS) for _ in range(int(rng.integers(0, 4)))) for _ in range(int(np.prod(shape)))]
    x = np.array(texts, dtype=object).reshape(shape)
    attrs = dict(mark=int(rng.integers(0, 2)), pad_value=pick(rng, ["#", "<pad>"]),
                 mincharnum=int(pick(rng, [1, 1, 2])))
    mode = pick(rng, ["space", "multi", "chars", "tokenexp"])
    if mode == "space":
        attrs["separators"] = [" "]
    elif mode == "multi":
        attrs["separators"] = [" ", ",", ";"]
    elif mode == "chars":
        attrs["separators"] = [""]
        attrs["mincharnum"] = 1
    else:
        attrs["tokenexp"] = pick(rng, ["[a-zA-Z]+", "[a-z0-9]+", "\\w+"])
    return Case(node("Tokenizer", ["X"], ["Y"], **attrs), {"X": x})


FAMILIES["Tokenizer"] = gen_tokenizer


def gen_conv_transpose_dynamic_pads(rng):
    n, c, m = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    hw = [int(v) for v in rng.integers(2, 5, size=2)]
    k = [int(v) for v in rng.integers(1, 4, size=2)]
    strides = [int(v) for v in rng.integers(1, 3, size=2)]
    feeds = {"X": rnd(rng, [n, c] + hw), "W": rnd(rng, [c, m] + k)}
    inputs = ["X", "W"]
    if rng.random() < 0.7:
        feeds["Pads"] = np.array([int(rng.integers(0, kk)) for kk in k * 2], I64)
        inputs.append("Pads")
    if rng.random() < 0.5:
        if len(inputs) == 2:
            inputs.append("")
        feeds["B"] = rnd(rng, [m])
        inputs.append("B")
    return Case(node("ConvTransposeWithDynamicPads", inputs, ["Y"], strides=strides), feeds)


def gen_unfold(rng):
    shape = [int(v) for v in rng.integers(1, 7, size=int(rng.integers(1, 4)))]
    dim = int(rng.integers(-len(shape), len(shape)))
    size = int(rng.integers(1, shape[dim] + 1))
    attrs = dict(size=size, step=int(rng.integers(1, 4)))
    if rng.random() < 0.7:
        attrs["dim"] = dim
    else:
        size = min(size, shape[-1])
        attrs["size"] = size
    return Case(node("UnfoldTensor", ["X"], ["Y"], **attrs), {"X": rnd(rng, shape, pick(rng, [F32, I64]))})


def gen_ngram(rng):
    b, s, v = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(2, 6))
    return Case(node("NGramRepeatBlock", ["input_ids", "scores"], ["Y"], ngram_size=int(rng.integers(1, 4))),
                {"input_ids": rng.integers(0, v, size=(b, s)).astype(I64), "scores": rnd(rng, [b, v])},
                out_types={"Y": TensorProto.FLOAT})


def gen_sample_op(rng):
    return Case(node("SampleOp", ["X"], ["Y"]), {"X": rnd(rng, [int(v) for v in rng.integers(1, 4, size=2)])})


FAMILIES.update({"ConvTransposeWithDynamicPads": gen_conv_transpose_dynamic_pads, "UnfoldTensor": gen_unfold,
                 "NGramRepeatBlock": gen_ngram, "SampleOp": gen_sample_op})


def gen_moe(rng):
    tokens, hidden, inter, experts = (int(v) for v in (rng.integers(1, 8), pick(rng, [4, 8]), pick(rng, [4, 6, 8]),
                                                         rng.integers(2, 6)))
    k = int(rng.integers(1, min(experts, 3) + 1))
    three_d = rng.random() < 0.4
    x = rnd(rng, [1, tokens, hidden] if three_d else [tokens, hidden])
    feeds = {"input": x, "router_probs": rnd(rng, [tokens, experts], scale=2.0)}
    consts = {"fc1": rnd(rng, [experts, inter, hidden], scale=0.5)}
    inputs = ["input", "router_probs", "fc1"]

    def optional(name, shape, p):
        if rng.random() < p:
            consts[name] = rnd(rng, shape, scale=0.5)
            inputs.append(name)
        else:
            inputs.append("")

    optional("fc1_bias", [experts, inter], 0.5)
    consts["fc2"] = rnd(rng, [experts, hidden, inter], scale=0.5)
    inputs.append("fc2")
    optional("fc2_bias", [experts, hidden], 0.5)
    while inputs[-1] == "":   # (no fc3: onnxruntime's CPU MoE has none)
        inputs.pop()
    attrs = dict(k=k, activation_type=pick(rng, ["relu", "gelu", "silu", "identity"]),
                 normalize_routing_weights=int(rng.integers(0, 2)))
    return Case(node("MoE", inputs, ["Y"], **attrs), feeds, consts, atol=1e-4)


FAMILIES["MoE"] = gen_moe


def gen_crop_and_resize(rng):
    n, c, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(2, 7)), int(rng.integers(2, 7))
    r = int(rng.integers(1, 4))
    rois = rng.uniform(-0.2, 1.2, size=(r, 4)).astype(F32)
    feeds = {"X": rnd(rng, [n, c, h, w]), "rois": rois,
             "batch_indices": rng.integers(0, n, size=r).astype(I32),
             "crop_size": np.array([int(rng.integers(1, 5)), int(rng.integers(1, 5))], I32)}
    attrs = dict(mode=pick(rng, ["bilinear", "nearest"]), extrapolation_value=float(pick(rng, [0.0, -1.5])))
    return Case(node("CropAndResize", list(feeds), ["Y"], **attrs), feeds, atol=1e-5)


FAMILIES["CropAndResize"] = gen_crop_and_resize


def gen_dtw(rng):
    m, n = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    x = rng.random((m, n)).astype(F32)
    if rng.random() < 0.3:   # ties: values from a few levels
        x = np.round(x * 2).astype(F32)
    if rng.random() < 0.3:
        x = x[None]
    return Case(node("DynamicTimeWarping", ["input"], ["Y"]), {"input": x}, out_types={"Y": TensorProto.INT32})


FAMILIES["DynamicTimeWarping"] = gen_dtw


def gen_maxpool_with_mask(rng):
    nd = int(pick(rng, [1, 2, 2, 3]))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    spatial = [int(v) for v in rng.integers(2, 6, size=nd)]
    k = [int(rng.integers(1, s + 1)) for s in spatial]
    attrs = dict(kernel_shape=k, strides=[int(v) for v in rng.integers(1, 3, size=nd)])
    if rng.random() < 0.4:
        attrs["pads"] = [int(rng.integers(0, kk)) for kk in k * 2]
    mask = (rng.random([1, 1] + spatial) < 0.75).astype(I32)
    return Case(node("MaxpoolWithMask", ["X", "M"], ["Y"], **attrs),
                {"X": rnd(rng, [n, c] + spatial), "M": mask})


FAMILIES["MaxpoolWithMask"] = gen_maxpool_with_mask


def gen_word_conv(rng):
    words, chars, vocab, e, f, k = (int(v) for v in (rng.integers(1, 5), rng.integers(2, 8), rng.integers(3, 12),
                                                     rng.integers(1, 5), rng.integers(1, 6), rng.integers(1, 4)))
    seq = rng.integers(1, vocab, size=(words, chars)).astype(I32)
    for w in range(words):   # words end in padding (id 0)
        seq[w, int(rng.integers(1, chars + 1)):] = 0
    consts = {"W": rnd(rng, [f, 1, k, e]), "B": rnd(rng, [f]), "C": rnd(rng, [vocab, e])}
    return Case(node("WordConvEmbedding", ["Sequence", "W", "B", "C"], ["Y"]), {"Sequence": seq}, consts,
                out_types={"Y": TensorProto.FLOAT})


FAMILIES["WordConvEmbedding"] = gen_word_conv


def gen_bifurcation(rng):
    vocab = int(rng.integers(2, 6))
    src = rng.integers(0, vocab, size=int(rng.integers(1, 10))).astype(I64)
    cur = rng.integers(0, vocab, size=int(rng.integers(1, 6))).astype(I64)
    if rng.random() < 0.5:   # end cur with a piece of src so n-grams match
        a = int(rng.integers(0, src.size))
        cur = np.concatenate([cur, src[a:a + int(rng.integers(1, 4))]])
    prev = int(rng.integers(0, src.size + 1))
    feeds = {"src_tokens": src, "cur_tokens": cur, "prev_suffix_match_idx": np.array(prev, I64)}
    if rng.random() < 0.6:
        pred = np.concatenate([src[prev:], [int(rng.integers(0, vocab))]]).astype(I64)
        if pred.size > 1 and rng.random() < 0.6:
            pred[int(rng.integers(0, pred.size)):] = rng.integers(0, vocab)
        feeds["pred_tokens"] = pred
    lo = int(rng.integers(1, 3))
    return Case(node("BifurcationDetector", list(feeds), ["tokens", "suffix_match_idx"], min_ngram_size=lo,
                     max_ngram_size=lo + int(rng.integers(0, 3))), feeds)


FAMILIES["BifurcationDetector"] = gen_bifurcation
