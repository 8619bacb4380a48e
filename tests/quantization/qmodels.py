"""Float models for the quantization tests, built with onnx.helper from seeded random weights:
an MLP, a ResNet-style CNN (conv/bn-folded residual blocks, pooling, Gemm head) and a BERT-shaped
encoder layer in plain ops; plus calibration readers and comparison helpers."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ortgpu.quantization.calibration import FeedListReader

F = TensorProto.FLOAT


def _w(rng, name, shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    scale = scale if scale is not None else 1.0 / np.sqrt(fan_in)
    return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits):
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=inits),
                          opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(m)
    return m


def mlp(seed=0, d_in=128, hidden=256, d_out=64):
    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w1"], ["h1"], name="mm1"), n("Add", ["h1", "b1"], ["h2"], name="add1"),
             n("Relu", ["h2"], ["h3"], name="relu"), n("MatMul", ["h3", "w2"], ["h4"], name="mm2"),
             n("Add", ["h4", "b2"], ["y"], name="add2")]
    inits = [_w(rng, "w1", (d_in, hidden)), _w(rng, "b1", (hidden,), 0.1), _w(rng, "w2", (hidden, d_out)),
             _w(rng, "b2", (d_out,), 0.1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", d_in])],
                  [helper.make_tensor_value_info("y", F, ["n", d_out])], inits)


def resnet_cnn(seed=0, width=32, classes=10):
    """Stem conv, two residual blocks (conv-relu-conv + skip), max/global pooling, Gemm head."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = [n("Conv", ["x", "stem_w", "stem_b"], ["s1"], pads=[1, 1, 1, 1], name="stem"),
             n("Relu", ["s1"], ["s2"], name="stem_relu"),
             n("MaxPool", ["s2"], ["p0"], kernel_shape=[2, 2], strides=[2, 2], name="pool")]
    inits = [_w(rng, "stem_w", (width, 3, 3, 3)), _w(rng, "stem_b", (width,), 0.1)]
    prev = "p0"
    for b in range(2):
        c1, c2 = f"b{b}c1", f"b{b}c2"
        nodes += [n("Conv", [prev, f"{c1}_w", f"{c1}_b"], [f"{c1}_y"], pads=[1, 1, 1, 1], name=c1),
                  n("Relu", [f"{c1}_y"], [f"{c1}_r"], name=f"{c1}_relu"),
                  n("Conv", [f"{c1}_r", f"{c2}_w", f"{c2}_b"], [f"{c2}_y"], pads=[1, 1, 1, 1], name=c2),
                  n("Add", [f"{c2}_y", prev], [f"b{b}_sum"], name=f"b{b}_add"),
                  n("Relu", [f"b{b}_sum"], [f"b{b}_out"], name=f"b{b}_relu")]
        inits += [_w(rng, f"{c1}_w", (width, width, 3, 3)), _w(rng, f"{c1}_b", (width,), 0.1),
                  _w(rng, f"{c2}_w", (width, width, 3, 3), 0.5 / np.sqrt(width * 9)), _w(rng, f"{c2}_b", (width,), 0.1)]
        prev = f"b{b}_out"
    nodes += [n("GlobalAveragePool", [prev], ["gap"], name="gap"), n("Flatten", ["gap"], ["flat"], name="flatten"),
              n("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1, name="fc")]
    inits += [_w(rng, "fc_w", (classes, width)), _w(rng, "fc_b", (classes,), 0.1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 3, 32, 32])],
                  [helper.make_tensor_value_info("logits", F, ["n", classes])], inits)


def bert_layer(seed=0, hidden=128, heads=4, ffn=512, seq=16):
    """One post-norm encoder layer: Q/K/V MatMuls, scaled-dot-product softmax attention, output
    projection, residual + LayerNormalization, GELU-free FFN (Relu), residual + LayerNormalization."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    d = hidden // heads
    inits = [_w(rng, nm, (hidden, hidden)) for nm in ("wq", "wk", "wv", "wo")]
    inits += [_w(rng, nm, (hidden,), 0.05) for nm in ("bq", "bk", "bv", "bo")]
    inits += [_w(rng, "w1", (hidden, ffn)), _w(rng, "bf1", (ffn,), 0.05), _w(rng, "w2", (ffn, hidden)),
              _w(rng, "bf2", (hidden,), 0.05),
              numpy_helper.from_array(np.ones(hidden, np.float32), "g1"), numpy_helper.from_array(np.zeros(hidden, np.float32), "be1"),
              numpy_helper.from_array(np.ones(hidden, np.float32), "g2"), numpy_helper.from_array(np.zeros(hidden, np.float32), "be2"),
              numpy_helper.from_array(np.array([0, 0, heads, d], np.int64), "split_shape"),
              numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "merge_shape"),
              numpy_helper.from_array(np.array(1 / np.sqrt(d), np.float32), "inv_sqrt_d")]
    nodes = []
    for p in "qkv":
        nodes += [n("MatMul", ["x", f"w{p}"], [f"{p}0"], name=f"mm_{p}"), n("Add", [f"{p}0", f"b{p}"], [f"{p}1"], name=f"add_{p}"),
                  n("Reshape", [f"{p}1", "split_shape"], [f"{p}2"], name=f"reshape_{p}"),
                  n("Transpose", [f"{p}2"], [f"{p}3"], perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3], name=f"tr_{p}")]
    nodes += [n("MatMul", ["q3", "k3"], ["sc0"], name="mm_qk"), n("Mul", ["sc0", "inv_sqrt_d"], ["sc1"], name="scale"),
              n("Softmax", ["sc1"], ["pr"], axis=-1, name="softmax"), n("MatMul", ["pr", "v3"], ["ctx0"], name="mm_pv"),
              n("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3], name="tr_ctx"),
              n("Reshape", ["ctx1", "merge_shape"], ["ctx2"], name="reshape_ctx"),
              n("MatMul", ["ctx2", "wo"], ["o0"], name="mm_o"), n("Add", ["o0", "bo"], ["o1"], name="add_o"),
              n("Add", ["o1", "x"], ["r1"], name="res1"),
              n("LayerNormalization", ["r1", "g1", "be1"], ["ln1"], axis=-1, name="ln1"),
              n("MatMul", ["ln1", "w1"], ["f0"], name="mm_f1"), n("Add", ["f0", "bf1"], ["f1"], name="add_f1"),
              n("Relu", ["f1"], ["f2"], name="relu_f"), n("MatMul", ["f2", "w2"], ["f3"], name="mm_f2"),
              n("Add", ["f3", "bf2"], ["f4"], name="add_f2"), n("Add", ["f4", "ln1"], ["r2"], name="res2"),
              n("LayerNormalization", ["r2", "g2", "be2"], ["y"], axis=-1, name="ln2")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["b", seq, hidden])],
                  [helper.make_tensor_value_info("y", F, ["b", seq, hidden])], inits)


class Reader(FeedListReader):
    """Seeded calibration feeds usable by both tools (ortgpu's and onnxruntime's readers only
    need get_next)."""

    def __init__(self, name, shape, batches=4, seed=1):
        rng = np.random.default_rng(seed)
        super().__init__([{name: rng.normal(size=shape).astype(np.float32)} for _ in range(batches)])


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


class TokenReader(Reader):
    """Token-id feeds (ids below vocab, full attention mask, zero token types)."""

    def __init__(self, names, shape, vocab, batches=4, seed=1):
        rng = np.random.default_rng(seed)
        fill = {"attention_mask": 1, "token_type_ids": 0}
        self.feeds = [{n: (np.full(shape, fill[n]) if n in fill else rng.integers(0, vocab, shape)).astype(np.int64)
                       for n in names} for _ in range(batches)]
        self.i = 0


def gpt2_block(seed=0, hidden=64, heads=4, ffn=256, seq=16, vocab=96):
    """A GPT-2-shaped decoder (opset 20): pre-norm LayerNormalization, one Gemm making Q, K and V
    (on the [b*seq, hidden] view, as GPT-2's Conv1D exports), causal self-attention (future
    positions pushed down by 30 before Softmax: far below any score, yet a range the activation
    quantizers can still cover), output projection and residual, pre-norm
    MLP with tanh Gelu, residual, final LayerNormalization and a MatMul LM head to `vocab` logits.
    The input is the embedded sequence [b, seq, hidden]. The causal mask is an added constant
    (0 on and below the diagonal, -30 above), as older GPT-2 exports write it: with a Where there,
    onnxruntime 1.32's QOperator writer fails on its own output (QLinearWhere leaves an unknown
    tensor), so a Where mask would keep the QOperator comparison from running."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    d = hidden // heads
    const = lambda name, a: numpy_helper.from_array(np.asarray(a), name)
    inits = [_w(rng, "w_qkv", (hidden, 3 * hidden)), _w(rng, "b_qkv", (3 * hidden,), 0.05),
             _w(rng, "w_o", (hidden, hidden)), _w(rng, "b_o", (hidden,), 0.05),
             _w(rng, "w_fc", (hidden, ffn)), _w(rng, "b_fc", (ffn,), 0.05),
             _w(rng, "w_proj", (ffn, hidden)), _w(rng, "b_proj", (hidden,), 0.05),
             _w(rng, "w_lm", (hidden, vocab))]
    for ln in ("ln1", "ln2", "lnf"):
        inits += [const(f"{ln}_g", (1 + 0.1 * rng.normal(size=hidden)).astype(np.float32)),
                  const(f"{ln}_b", (0.05 * rng.normal(size=hidden)).astype(np.float32))]
    inits += [const("flat_shape", np.array([-1, hidden], np.int64)),
              const("qkv_shape", np.array([-1, seq, 3, heads, d], np.int64)),
              const("merge_shape", np.array([0, 0, hidden], np.int64)),
              const("causal", np.triu(np.full((seq, seq), -30.0, np.float32), 1)),
              const("inv_sqrt_d", np.array(1 / np.sqrt(d), np.float32))]
    nodes = [n("LayerNormalization", ["x", "ln1_g", "ln1_b"], ["h_ln1"], axis=-1, name="ln1"),
             n("Reshape", ["h_ln1", "flat_shape"], ["h_flat"], name="flatten"),
             n("Gemm", ["h_flat", "w_qkv", "b_qkv"], ["qkv_flat"], name="gemm_qkv"),
             n("Reshape", ["qkv_flat", "qkv_shape"], ["qkv5"], name="split_heads"),
             n("Transpose", ["qkv5"], ["qkv_t"], perm=[2, 0, 3, 1, 4], name="tr_qkv"),
             n("Split", ["qkv_t"], ["q1", "k1", "v1"], axis=0, num_outputs=3, name="split_qkv")]
    for p in "qkv":
        nodes.append(n("Squeeze", [f"{p}1", "axis0"], [f"{p}2"], name=f"squeeze_{p}"))
    inits.append(const("axis0", np.array([0], np.int64)))
    nodes += [n("Transpose", ["k2"], ["kT"], perm=[0, 1, 3, 2], name="tr_k"),
              n("MatMul", ["q2", "kT"], ["sc0"], name="mm_qk"), n("Mul", ["sc0", "inv_sqrt_d"], ["sc1"], name="scale"),
              n("Add", ["sc1", "causal"], ["sc2"], name="causal_mask"),
              n("Softmax", ["sc2"], ["pr"], axis=-1, name="softmax"), n("MatMul", ["pr", "v2"], ["ctx0"], name="mm_pv"),
              n("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3], name="tr_ctx"),
              n("Reshape", ["ctx1", "merge_shape"], ["ctx2"], name="merge_heads"),
              n("MatMul", ["ctx2", "w_o"], ["o0"], name="mm_o"), n("Add", ["o0", "b_o"], ["o1"], name="add_o"),
              n("Add", ["o1", "x"], ["r1"], name="res1"),
              n("LayerNormalization", ["r1", "ln2_g", "ln2_b"], ["h_ln2"], axis=-1, name="ln2"),
              n("MatMul", ["h_ln2", "w_fc"], ["f0"], name="mm_fc"), n("Add", ["f0", "b_fc"], ["f1"], name="add_fc"),
              n("Gelu", ["f1"], ["f2"], approximate="tanh", name="gelu"),
              n("MatMul", ["f2", "w_proj"], ["f3"], name="mm_proj"), n("Add", ["f3", "b_proj"], ["f4"], name="add_proj"),
              n("Add", ["f4", "r1"], ["r2"], name="res2"),
              n("LayerNormalization", ["r2", "lnf_g", "lnf_b"], ["h_f"], axis=-1, name="ln_f"),
              n("MatMul", ["h_f", "w_lm"], ["logits"], name="lm_head")]
    m = helper.make_model(helper.make_graph(nodes, "gpt2", [helper.make_tensor_value_info("x", F, ["b", seq, hidden])],
                                            [helper.make_tensor_value_info("logits", F, ["b", seq, vocab])], inits),
                          opset_imports=[helper.make_opsetid("", 20)], ir_version=9)
    onnx.checker.check_model(m, full_check=True)
    return m
