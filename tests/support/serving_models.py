"""Small models for the serving tests and benchmarks/bench_serving.py, built with onnx.helper
(random weights, fixed seeds), and a writer for Triton-layout repositories.

- ``mlp``: x FP32 [N,4] -> probs FP32 [N,3] (Softmax of a Gemm+Relu+Gemm), label INT64 [N].
- ``add_int``: a, b INT64 [N,2] -> sum INT64 [N,2] (a second model with integer tensors).
- ``scale``: x FP32 [N,2] -> y = x * factor (versions differ by factor).
- ``cnn``: images FP32 [N,3,32,32] -> logits FP32 [N,10] (two Conv+Relu, GlobalAveragePool, Gemm).
- ``bert_like``: input_ids, attention_mask INT64 [N,S] -> last_hidden_state FP32 [N,S,H],
  pooled FP32 [N,H] (embeddings, LayerNormalization, one masked multi-head self-attention layer
  and a GELU feed-forward block: BERT's structure at a small width).
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
OPSET, IR = 21, 10


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR
    onnx.checker.check_model(m)
    return m


def _w(rng, name, *shape, scale=0.2):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _c(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def mlp(seed=0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"], axis=1),
             helper.make_node("ArgMax", ["z"], ["label"], axis=1, keepdims=0)]
    inits = [_w(rng, "w1", 4, 8), _w(rng, "b1", 8), _w(rng, "w2", 8, 3), _w(rng, "b2", 3)]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 4])],
                  [helper.make_tensor_value_info("probs", FLOAT, ["N", 3]),
                   helper.make_tensor_value_info("label", INT64, ["N"])], inits)


def add_int() -> onnx.ModelProto:
    return _model([helper.make_node("Add", ["a", "b"], ["sum"])],
                  [helper.make_tensor_value_info(n, INT64, ["N", 2]) for n in ("a", "b")],
                  [helper.make_tensor_value_info("sum", INT64, ["N", 2])], [])


def scale(factor: float) -> onnx.ModelProto:
    return _model([helper.make_node("Mul", ["x", "f"], ["y"])], [helper.make_tensor_value_info("x", FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("y", FLOAT, ["N", 2])],
                  [numpy_helper.from_array(np.array([factor], np.float32), "f")])


def cnn(seed=1, size=32) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["images", "k1", "c1"], ["a1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("Conv", ["r1", "k2", "c2"], ["a2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"])]
    inits = [_w(rng, "k1", 16, 3, 3, 3), _w(rng, "c1", 16), _w(rng, "k2", 32, 16, 3, 3, scale=0.1), _w(rng, "c2", 32),
             _w(rng, "wf", 32, 10), _w(rng, "bf", 10)]
    return _model(nodes, [helper.make_tensor_value_info("images", FLOAT, ["N", 3, size, size])],
                  [helper.make_tensor_value_info("logits", FLOAT, ["N", 10])], inits)


def bert_like(seed=2, vocab=1000, seq=32, hidden=64, heads=4, ffn=256) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    hd = hidden // heads
    n = helper.make_node
    nodes = [
        n("Gather", ["word_emb", "input_ids"], ["we"]), n("Add", ["we", "pos_emb"], ["emb"]),
        n("LayerNormalization", ["emb", "ln0_g", "ln0_b"], ["x0"], axis=-1, epsilon=1e-12),
        # attention mask -> additive bias [N,1,1,S]
        n("Cast", ["attention_mask"], ["mf"], to=FLOAT), n("Sub", ["one", "mf"], ["inv"]),
        n("Mul", ["inv", "neg_big"], ["bias2"]), n("Unsqueeze", ["bias2", "axes12"], ["bias"]),
    ]
    for p in ("q", "k", "v"):
        nodes += [n("MatMul", ["x0", f"w{p}"], [f"{p}0"]), n("Add", [f"{p}0", f"b{p}"], [f"{p}1"]),
                  n("Reshape", [f"{p}1", "heads_shape"], [f"{p}2"]),
                  n("Transpose", [f"{p}2"], [f"{p}h"], perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3])]
    nodes += [
        n("MatMul", ["qh", "kh"], ["s0"]), n("Mul", ["s0", "inv_sqrt"], ["s1"]), n("Add", ["s1", "bias"], ["s2"]),
        n("Softmax", ["s2"], ["p"], axis=-1), n("MatMul", ["p", "vh"], ["ctx0"]),
        n("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3]), n("Reshape", ["ctx1", "merge_shape"], ["ctx"]),
        n("MatMul", ["ctx", "wo"], ["o0"]), n("Add", ["o0", "bo"], ["o1"]), n("Add", ["o1", "x0"], ["o2"]),
        n("LayerNormalization", ["o2", "ln1_g", "ln1_b"], ["x1"], axis=-1, epsilon=1e-12),
        n("MatMul", ["x1", "wi"], ["f0"]), n("Add", ["f0", "bi"], ["f1"]), n("Gelu", ["f1"], ["f2"]),
        n("MatMul", ["f2", "wf"], ["f3"]), n("Add", ["f3", "bff"], ["f4"]), n("Add", ["f4", "x1"], ["f5"]),
        n("LayerNormalization", ["f5", "ln2_g", "ln2_b"], ["last_hidden_state"], axis=-1, epsilon=1e-12),
        n("Gather", ["last_hidden_state", "zero"], ["cls"], axis=1),
        n("Gemm", ["cls", "wp", "bp"], ["pool0"]), n("Tanh", ["pool0"], ["pooled"]),
    ]
    ones, zeros = np.ones(hidden, np.float32), np.zeros(hidden, np.float32)
    inits = [_w(rng, "word_emb", vocab, hidden), _w(rng, "pos_emb", seq, hidden),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(-10000.0, np.float32), "neg_big"),
             numpy_helper.from_array(np.array(1.0 / np.sqrt(hd), np.float32), "inv_sqrt"),
             _c("axes12", [1, 2]), _c("heads_shape", [0, 0, heads, hd]), _c("merge_shape", [0, 0, hidden]),
             _c("zero", 0)]
    for name in ("ln0", "ln1", "ln2"):
        inits += [numpy_helper.from_array(ones, f"{name}_g"), numpy_helper.from_array(zeros, f"{name}_b")]
    for p in ("q", "k", "v", "o"):
        inits += [_w(rng, f"w{p}", hidden, hidden, scale=0.1), _w(rng, f"b{p}", hidden, scale=0.02)]
    inits += [_w(rng, "wi", hidden, ffn, scale=0.1), _w(rng, "bi", ffn, scale=0.02),
              _w(rng, "wf", ffn, hidden, scale=0.1), _w(rng, "bff", hidden, scale=0.02),
              _w(rng, "wp", hidden, hidden, scale=0.1), _w(rng, "bp", hidden, scale=0.02)]
    ids = [helper.make_tensor_value_info(nm, INT64, ["N", seq]) for nm in ("input_ids", "attention_mask")]
    return _model(nodes, ids, [helper.make_tensor_value_info("last_hidden_state", FLOAT, ["N", seq, hidden]),
                               helper.make_tensor_value_info("pooled", FLOAT, ["N", hidden])], inits)


def bert_inputs(batch: int, seq=32, vocab=1000, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - 1 - rng.integers(0, seq // 2):] = 0
    return {"input_ids": ids, "attention_mask": mask}


def batching_config(max_batch_size=8, delay_us=20000, max_queue_size=0, instances=1, preferred=()) -> str:
    """config.pbtxt text with dynamic batching on."""
    queue = f" default_queue_policy {{ max_queue_size: {max_queue_size} }}" if max_queue_size else ""
    pref = "".join(f" preferred_batch_size: {p}" for p in preferred)
    return (f"max_batch_size: {max_batch_size}\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us}{pref}{queue} }}\n"
            f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n")


def write_model(root: str, name: str, model: onnx.ModelProto | bytes, version: int = 1,
                config: str | None = None) -> str:
    """Write REPOSITORY/name/version/model.onnx (and config.pbtxt); returns the model file."""
    folder = os.path.join(root, name, str(version))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(model if isinstance(model, bytes) else model.SerializeToString())
    if config is not None:
        with open(os.path.join(root, name, "config.pbtxt"), "w", encoding="utf-8") as f:
            f.write(config)
    return path
