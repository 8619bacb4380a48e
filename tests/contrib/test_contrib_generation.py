"""GreedySearch / BeamSearch over a GPT-2-style decoder subgraph against onnxruntime.

The decoder is built here in onnxruntime's GPT-2 subgraph interface from random weights: token
and position embeddings, per layer a com.microsoft Attention (causal, with past and the
attention mask) and a residual add, then the projection to the vocabulary.  Configurations draw
prompts with left padding, eos / pad ids, minimum lengths, repetition penalties, vocabulary and
prefix masks and no-repeat n-grams.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from support.harness import F32, I32, Case, node, onnx_node, pick, rnd, run_family


def decoder_graph(rng, layers, heads, head_size, vocab, positions=32):
    hidden = heads * head_size
    # two embedding rows more than logits: ids vocab and vocab + 1 can be fed, never picked
    inits = [numpy_helper.from_array(rnd(rng, [vocab + 2, hidden]), "wte"),
             numpy_helper.from_array(rnd(rng, [positions, hidden], scale=0.5), "wpe"),
             numpy_helper.from_array(rnd(rng, [hidden, vocab], scale=1.0), "w_out")]
    nodes = [onnx_node("Gather", ["wte", "input_ids"], ["tok"]),
             onnx_node("Gather", ["wpe", "position_ids"], ["pos"]),
             onnx_node("Add", ["tok", "pos"], ["h0"])]
    ins = [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "seq"]),
           helper.make_tensor_value_info("position_ids", TensorProto.INT32, ["batch", "seq"]),
           helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "total"])]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])]
    for i in range(layers):
        inits += [numpy_helper.from_array(rnd(rng, [hidden, 3 * hidden], scale=0.5), f"w{i}"),
                  numpy_helper.from_array(rnd(rng, [3 * hidden], scale=0.1), f"b{i}")]
        nodes += [node("Attention", [f"h{i}", f"w{i}", f"b{i}", "attention_mask", f"past_{i}"],
                       [f"a{i}", f"present_{i}"], num_heads=heads, unidirectional=1),
                  onnx_node("Add", [f"h{i}", f"a{i}"], [f"h{i + 1}"])]
        ins.append(helper.make_tensor_value_info(f"past_{i}", TensorProto.FLOAT,
                                                 [2, "batch", heads, "past", head_size]))
        outs.append(helper.make_tensor_value_info(f"present_{i}", TensorProto.FLOAT,
                                                  [2, "batch", heads, "total", head_size]))
    nodes.append(onnx_node("MatMul", [f"h{layers}", "w_out"], ["logits"]))
    return helper.make_graph(nodes, "decoder", ins, outs, initializer=inits)


def _prompt(rng, b, s, vocab):
    ids = rng.integers(0, vocab, size=(b, s)).astype(I32)
    mask = np.ones((b, s), I32)
    for r in range(1, b):  # left padding, as batch generation with GPT-2 uses
        pad = int(rng.integers(0, s))
        mask[r, :pad] = 0
    return ids, mask


def _tail_after_end(pad):
    """post: onnxruntime leaves the output after the step where every row ended unwritten;
    with a pad id no step can pick, a row ended at its first pad: zero what follows the last."""
    def post(outs):
        seq = np.array(outs[0])
        is_pad = seq == pad
        ended = np.where(is_pad.any(axis=1), is_pad.argmax(axis=1), seq.shape[1])
        seq[:, int(ended.max()) + 1:] = 0
        return [seq] + list(outs[1:])
    return post


def gen_greedy(rng, op="GreedySearch"):
    """Two kinds: pad inside the vocabulary, padding the prompts on the left, with an eos no step
    can pick (every row runs to max_length); or an eos the steps may pick with a pad id outside
    the vocabulary (rows end early, written as pad)."""
    layers, heads, head_size, vocab = int(rng.integers(1, 3)), int(pick(rng, [1, 2])), 4, int(rng.integers(8, 20))
    b, s = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    ids, mask = _prompt(rng, b, s, vocab)
    early_end = rng.random() < 0.5
    if early_end:
        eos, pad = int(rng.integers(0, vocab)), vocab + 1
    else:
        eos, pad = vocab + 1, int(rng.integers(0, vocab))
        ids[ids == pad] = (pad + 1) % vocab   # the prompt's real tokens are not pad ids
        ids[mask == 0] = pad
    feeds = {"input_ids": ids, "max_length": np.array([s + int(rng.integers(1, 8))], I32)}
    inputs = ["input_ids", "max_length"]
    optional = {}
    if rng.random() < 0.4 and early_end:
        optional["min_length"] = np.array([s + int(rng.integers(0, 4))], I32)
    if rng.random() < 0.4:
        optional["repetition_penalty"] = np.array([rng.uniform(1.0, 2.0)], F32)
    if rng.random() < 0.3:
        vm = (rng.random(vocab) < 0.8).astype(I32)
        vm[min(eos, vocab - 1)] = 1
        optional["vocab_mask"] = vm
    if rng.random() < 0.3:
        pm = (rng.random((b, vocab)) < 0.7).astype(I32)
        pm[:, 0] = 1
        optional["prefix_vocab_mask"] = pm
    if rng.random() < 0.7:
        optional["attention_mask"] = mask
    order = ["min_length", "repetition_penalty", "vocab_mask", "prefix_vocab_mask", "attention_mask"]
    if op == "Sampling":   # a nucleus this small keeps only the best token: sampling is greedy
        attrs_extra = dict(top_p=1e-6, temperature=float(rng.uniform(0.5, 1.5)))
        order.append("presence_mask")
        optional.pop("repetition_penalty", None)
    if op == "BeamSearch":
        feeds["min_length"] = optional.pop("min_length", np.array([0], I32))
        beams = int(rng.integers(1, 4))
        feeds["num_beams"] = np.array([beams], I32)
        feeds["num_return_sequences"] = np.array([int(rng.integers(1, beams + 1))], I32)
        feeds["length_penalty"] = np.array([rng.uniform(0.5, 1.5)], F32)
        inputs += ["min_length", "num_beams", "num_return_sequences", "length_penalty"]
        order = ["repetition_penalty", "vocab_mask", "prefix_vocab_mask", "attention_mask"]
    last = max((order.index(k) for k in optional), default=-1)
    for k in order[:last + 1]:
        inputs.append(k if k in optional else "")
    feeds.update(optional)
    attrs = dict(decoder=decoder_graph(rng, layers, heads, head_size, vocab), eos_token_id=eos,
                 pad_token_id=pad, model_type=0)
    if op == "Sampling":
        attrs.update(attrs_extra)
    # (not for Sampling: once n-grams ban every token, which one onnxruntime's sampler returns
    # from all-zero probabilities is arbitrary)
    if rng.random() < 0.3 and op != "Sampling":
        attrs["no_repeat_ngram_size"] = int(rng.integers(1, 3))
    outputs = ["sequences"]
    out_types = {"sequences": TensorProto.INT32}
    if op == "BeamSearch" and rng.random() < 0.5:
        outputs.append("sequences_scores")
        out_types["sequences_scores"] = TensorProto.FLOAT
    return Case(node(op, inputs, outputs, **attrs), feeds, out_types=out_types,
                rtol=1e-4, atol=1e-4, post=_tail_after_end(pad) if early_end and op != "BeamSearch" else None,
                note=f"early_end {early_end}")


FAMILIES = {"GreedySearch": gen_greedy, "BeamSearch": lambda rng: gen_greedy(rng, "BeamSearch"),
            "Sampling (top_p -> 0)": lambda rng: gen_greedy(rng, "Sampling")}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    run_family(FAMILIES[name], name, count=30, minimum=20)


def test_sampling_draws_from_the_nucleus_distribution():
    """One sampled token for 2,000 copies of a prompt: its frequencies match the decoder's
    softmax(logits / temperature) cut to the top_p nucleus (computed by onnxruntime running the
    decoder alone), within 5 standard errors; onnxruntime's Sampling draws from the same support."""
    import onnxruntime
    import ortgpu
    rng = np.random.default_rng(7)
    vocab, copies, temperature, top_p = 6, 2000, 0.8, 0.7
    graph = decoder_graph(rng, 1, 2, 4, vocab)
    prompt = np.array([[1, 2, 3]], I32)
    dec = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    dec.ir_version = 10
    sess = onnxruntime.InferenceSession(dec.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input_ids": prompt, "position_ids": np.array([[0, 1, 2]], I32),
                             "attention_mask": np.ones((1, 3), I32),
                             "past_0": np.zeros((2, 1, 2, 0, 4), F32)})[0][0, -1] / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[:int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
    want = np.zeros(vocab)
    want[keep] = p[keep] / p[keep].sum()
    case = Case(node("Sampling", ["input_ids", "max_length", "", "", "", "", "", "", "seed"], ["sequences"],
                     decoder=graph, eos_token_id=vocab + 1, pad_token_id=0, model_type=0, top_p=top_p,
                     temperature=temperature),
                {"input_ids": np.repeat(prompt, copies, 0), "max_length": np.array([4], I32),
                 "seed": np.array([123], I32)}, out_types={"sequences": TensorProto.INT32})
    got = ortgpu.InferenceSession(case.model().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, case.feeds)[0][:, -1]
    freq = np.bincount(got, minlength=vocab) / copies
    err = np.sqrt(want * (1 - want) / copies) + 1e-9
    assert np.all(np.abs(freq - want) <= 5 * err + 1e-3), (freq, want)
    theirs = onnxruntime.InferenceSession(case.model().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, case.feeds)[0][:, -1]
    assert set(np.unique(theirs)) <= set(keep.tolist()), (np.unique(theirs), keep)
    assert set(np.unique(got)) == set(np.unique(theirs)) == set(keep.tolist())
