"""WhisperBeamSearch (model_type 2: an encoder subgraph run once, then a decoder subgraph per
token) against onnxruntime 1.32's CPU kernel, over seeded random configurations: batch, beams,
returned sequences, max / min length, decoder_input_ids given or the start token, length and
repetition penalties, no-repeat n-grams, early stopping, vocabulary masks, 1-2 layers, a decoder
with and without the encoder_hidden_states input.

The subgraphs are tiny random-weight Whisper-shaped graphs written with onnx.helper: the encoder
maps audio features (B, feature_size, frames) to hidden states and cross-attention caches, and
the start tokens to self-attention caches and the first logits; the decoder attends over its
self cache (grown by one token per step) and the cross caches.  As in the decoders onnxruntime's
Whisper export writes, the decoder does not read encoder_hidden_states: onnxruntime 1.32 feeds
that input a buffer of the right shape without copying the hidden states into it (its contents
are undefined), while ortgpu feeds the hidden states.

Sequences must be equal; scores within 1e-4 (float32 sums of log probabilities)."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto as TP, helper, numpy_helper

import ortgpu
from support.quant_oracle import MS, rng_for

V, H, N, D, FEAT, FRAMES = 12, 8, 2, 4, 5, 6
EOS, PAD, START = 1, 0, 2
N_CASES = 24
onnxruntime.set_default_logger_severity(3)


def _w(rng, name, shape, scale=0.8):
    return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)


def _heads(src, dst, w, nodes):
    """dst = (src @ w) split into heads: (B, N, S, D)."""
    nodes += [helper.make_node("MatMul", [src, w], [dst + "_mm"]),
              helper.make_node("Reshape", [dst + "_mm", "shape_bsnd"], [dst + "_r"]),
              helper.make_node("Transpose", [dst + "_r"], [dst], perm=[0, 2, 1, 3])]


def _attend(q, k, v, out, nodes):
    nodes += [helper.make_node("Transpose", [k], [out + "_kt"], perm=[0, 1, 3, 2]),
              helper.make_node("MatMul", [q, out + "_kt"], [out + "_s"]),
              helper.make_node("Mul", [out + "_s", "inv_sqrt_d"], [out + "_ss"]),
              helper.make_node("Softmax", [out + "_ss"], [out + "_p"], axis=-1),
              helper.make_node("MatMul", [out + "_p", v], [out])]


def _weights(seed, layers):
    rng = np.random.default_rng(seed)
    inits = [_w(rng, "emb", (V, H)), _w(rng, "wout", (H, V), 1.5), _w(rng, "wq", (H, H)),
             numpy_helper.from_array(np.array([0, 0, N, D], np.int64), "shape_bsnd"),
             numpy_helper.from_array(np.array([0, 0, H], np.int64), "shape_bsh"),
             numpy_helper.from_array(np.array(1 / np.sqrt(D), np.float32), "inv_sqrt_d")]
    for i in range(layers):
        inits += [_w(rng, f"wk_s{i}", (H, H)), _w(rng, f"wv_s{i}", (H, H))]
    return inits, rng


def _cache_info(prefix, kind, layers, seq):
    return [helper.make_tensor_value_info(f"{prefix}_{kv}_{kind}_{i}", TP.FLOAT, ["B", N, seq, D])
            for i in range(layers) for kv in ("key", "value")]


def encoder_graph(seed, layers):
    inits, rng = _weights(seed, layers)
    inits += [_w(rng, "we", (FEAT, H))] + [_w(rng, f"w{kv}_c{i}", (H, H)) for i in range(layers) for kv in "kv"]
    nodes = [helper.make_node("Transpose", ["encoder_input_ids"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["xt", "we"], ["eh"]),
             helper.make_node("Tanh", ["eh"], ["encoder_hidden_states"]),
             helper.make_node("Gather", ["emb", "decoder_input_ids"], ["demb"])]
    for i in range(layers):
        _heads("demb", f"present_key_self_{i}", f"wk_s{i}", nodes)
        _heads("demb", f"present_value_self_{i}", f"wv_s{i}", nodes)
        _heads("encoder_hidden_states", f"present_key_cross_{i}", f"wk_c{i}", nodes)
        _heads("encoder_hidden_states", f"present_value_cross_{i}", f"wv_c{i}", nodes)
    nodes += [helper.make_node("ReduceMean", ["demb"], ["dmean"], axes=[1], keepdims=1),
              helper.make_node("ReduceMean", ["encoder_hidden_states"], ["emean"], axes=[1], keepdims=1),
              helper.make_node("Add", ["dmean", "emean"], ["hsum"]),
              helper.make_node("MatMul", ["hsum", "wout"], ["logits"])]
    ins = [helper.make_tensor_value_info("encoder_input_ids", TP.FLOAT, ["B", FEAT, FRAMES]),
           helper.make_tensor_value_info("decoder_input_ids", TP.INT32, ["B", "L"])]
    outs = [helper.make_tensor_value_info("logits", TP.FLOAT, ["B", 1, V]),
            helper.make_tensor_value_info("encoder_hidden_states", TP.FLOAT, ["B", FRAMES, H])]
    outs += _cache_info("present", "self", layers, "L") + _cache_info("present", "cross", layers, FRAMES)
    return helper.make_graph(nodes, "encoder", ins, outs, initializer=inits)


def decoder_graph(seed, layers, with_hidden):
    inits, _ = _weights(seed, layers)
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["x"])]
    _heads("x", "q", "wq", nodes)
    ctx = []
    for i in range(layers):
        _heads("x", f"k_new{i}", f"wk_s{i}", nodes)
        _heads("x", f"v_new{i}", f"wv_s{i}", nodes)
        nodes += [helper.make_node("Concat", [f"past_key_self_{i}", f"k_new{i}"], [f"present_key_self_{i}"], axis=2),
                  helper.make_node("Concat", [f"past_value_self_{i}", f"v_new{i}"], [f"present_value_self_{i}"], axis=2)]
        _attend("q", f"present_key_self_{i}", f"present_value_self_{i}", f"ctx_self{i}", nodes)
        _attend("q", f"past_key_cross_{i}", f"past_value_cross_{i}", f"ctx_cross{i}", nodes)
        ctx += [f"ctx_self{i}", f"ctx_cross{i}"]
    nodes += [helper.make_node("Sum", ctx, ["ctx"]),
              helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctx_t", "shape_bsh"], ["ctx_h"]),
              helper.make_node("Add", ["x", "ctx_h"], ["h"]),
              helper.make_node("MatMul", ["h", "wout"], ["logits"])]
    ins = [helper.make_tensor_value_info("input_ids", TP.INT32, ["B", 1])]
    if with_hidden:
        ins.append(helper.make_tensor_value_info("encoder_hidden_states", TP.FLOAT, ["B", FRAMES, H]))
    ins += _cache_info("past", "self", layers, "P") + _cache_info("past", "cross", layers, FRAMES)
    outs = [helper.make_tensor_value_info("logits", TP.FLOAT, ["B", 1, V])] + _cache_info("present", "self", layers, "P1")
    return helper.make_graph(nodes, "decoder", ins, outs, initializer=inits)


SCALARS = [("max_length", TP.INT32, np.int32), ("min_length", TP.INT32, np.int32), ("num_beams", TP.INT32, np.int32),
           ("num_return_sequences", TP.INT32, np.int32), ("length_penalty", TP.FLOAT, np.float32),
           ("repetition_penalty", TP.FLOAT, np.float32)]


def _case(i):
    rng = rng_for("WhisperBeamSearch", i)
    layers = 1 + i % 2
    with_hidden = i % 3 != 2
    b = int(rng.integers(1, 4))
    beams = int(rng.integers(1, 5))
    start = None
    if i % 2 == 0:
        start = np.concatenate([np.full((b, 1), START), rng.integers(3, V, (b, int(rng.integers(0, 3))))], 1)
    init_len = 1 if start is None else start.shape[1]
    values = {"max_length": init_len + int(rng.integers(2, 7)), "min_length": int(rng.integers(0, 4)),
              "num_beams": beams, "num_return_sequences": int(rng.integers(1, beams + 1)),
              "length_penalty": float(rng.choice([1.0, 0.6, 1.4])),
              "repetition_penalty": float(rng.choice([1.0, 1.0, 1.5]))}
    feeds = {"input_ids": rng.normal(size=(b, FEAT, FRAMES)).astype(np.float32)}
    for name, _, dt in SCALARS:
        feeds[name] = np.array([values[name]], dt)
    names = ["input_ids"] + [n for n, _, _ in SCALARS] + ["", "", "", ""]
    ins = [helper.make_tensor_value_info("input_ids", TP.FLOAT, ["b", FEAT, FRAMES])]
    ins += [helper.make_tensor_value_info(n, t, [1]) for n, t, _ in SCALARS]
    if rng.random() < 0.3:
        mask = (rng.random(V) < 0.85).astype(np.int32)
        mask[[EOS, PAD, START]] = 1
        feeds["vocab_mask"], names[7] = mask, "vocab_mask"
        ins.append(helper.make_tensor_value_info("vocab_mask", TP.INT32, [V]))
    if start is not None:
        feeds["decoder_input_ids"], names[10] = start.astype(np.int32), "decoder_input_ids"
        ins.append(helper.make_tensor_value_info("decoder_input_ids", TP.INT32, ["b", "l"]))
    while names[-1] == "":
        names.pop()
    attrs = dict(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=START, model_type=2,
                 encoder=encoder_graph(100 + i, layers), decoder=decoder_graph(100 + i, layers, with_hidden),
                 no_repeat_ngram_size=int(rng.choice([0, 0, 2])), early_stopping=int(rng.integers(0, 2)))
    node = helper.make_node("WhisperBeamSearch", names, ["sequences", "sequences_scores"], domain=MS, **attrs)
    outs = [helper.make_tensor_value_info("sequences", TP.INT32, None),
            helper.make_tensor_value_info("sequences_scores", TP.FLOAT, None)]
    g = helper.make_graph([node], "whisper", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)], ir_version=9)
    return m.SerializeToString(), feeds, {**values, "layers": layers, "hidden": with_hidden}


@pytest.mark.parametrize("i", range(N_CASES))
def test_whisper_beam_search_matches_onnxruntime(i):
    m, feeds, what = _case(i)
    want = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_array_equal(got[0], want[0], err_msg=f"case {i} {what}")
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-4, err_msg=f"case {i} {what}")


def test_whisper_timestamp_processor_is_refused():
    m, feeds, _ = _case(0)
    import onnx
    proto = onnx.load_from_string(m)
    node = proto.graph.node[0]
    while len(node.input) < 12:
        node.input.append("")
    node.input[11] = "logits_processor"
    proto.graph.input.append(helper.make_tensor_value_info("logits_processor", TP.INT32, [1]))
    feeds = {**feeds, "logits_processor": np.array([1], np.int32)}
    with pytest.raises(Exception, match="logits_processor"):
        ortgpu.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
