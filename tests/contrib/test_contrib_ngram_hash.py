"""NGramHashMapping (Engram n-gram hash ids, registered by onnxruntime 1.32's CPU provider) against
onnxruntime's CPU kernel over seeded random configurations: int32 / int64 ids (products that
overflow included), n-gram orders, heads per order, past_ids or the pad history, eos_token_id with
and without reset_on_eos (EOS tokens planted in the chunk and the past), segment_ids,
head_offsets, and present_ids.  Integer outputs must be equal."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import ortgpu
import onnxruntime
from ortgpu.dtypes import onnx_code
from support.quant_oracle import MS, rng_for

N_CASES = 24
EOS = 3


def _model(op, order, feeds, consts, attrs, dt) -> bytes:
    """One `op` node over the named inputs `order` (trailing omitted ones dropped): `feeds` as
    graph inputs, `consts` as initializers, hash_ids and present_ids of `dt` as outputs."""
    while order[-1] == "":
        order.pop()
    node = helper.make_node(op, order, ["hash_ids", "present_ids"], domain=MS, **attrs)
    g = helper.make_graph([node], "ngram", [helper.make_tensor_value_info(k, onnx_code(v.dtype), list(v.shape))
                                            for k, v in feeds.items()],
                          [helper.make_tensor_value_info(n, onnx_code(np.dtype(dt)), None)
                           for n in ("hash_ids", "present_ids")],
                          initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)], ir_version=10)
    return m.SerializeToString()


def _case(i):
    rng = rng_for("NGramHashMapping", i)
    dt = np.int64 if i % 2 else np.int32
    maxn, nh = int(rng.integers(2, 5)), int(rng.integers(1, 4))
    b, s = int(rng.integers(1, 4)), int(rng.integers(1, 9))
    big = i % 3 == 0
    hi = 2 ** 30 if big else 50
    ids = rng.integers(0, hi, (b, s)).astype(dt)
    ids[rng.random((b, s)) < 0.2] = EOS
    consts = {"mult": rng.integers(1, 2 ** 20 if big else 100, maxn).astype(dt),
              "vs": rng.integers(7, 5000, (maxn - 1) * nh).astype(dt)}
    feeds = {"ids": ids}
    order = ["ids", "mult", "vs", "", "", "", ""]
    if rng.random() < 0.5:
        past = rng.integers(0, hi, (b, maxn - 1)).astype(dt)
        past[rng.random(past.shape) < 0.2] = EOS
        feeds["past"], order[3] = past, "past"
    if rng.random() < 0.4:
        consts["offsets"], order[4] = rng.integers(0, 10000, (maxn - 1) * nh).astype(dt), "offsets"
    attrs = {"pad_id": int(rng.integers(0, 9)), "n_head_per_ngram": nh, "max_ngram_size": maxn}
    if rng.random() < 0.6:
        consts["eos"], order[5] = np.array(EOS, dt), "eos"
        attrs["reset_on_eos"] = int(rng.integers(0, 2))
    if rng.random() < 0.4:
        feeds["seg"] = np.cumsum(rng.random((b, s)) < 0.3, axis=1).astype(np.int32)
        order[6] = "seg"
    return _model("NGramHashMapping", order, feeds, consts, attrs, dt), feeds, attrs


@pytest.mark.parametrize("i", range(N_CASES))
def test_ngram_hash_mapping_matches_onnxruntime(i):
    m, feeds, attrs = _case(i)
    want = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w, name in zip(got, want, ("hash_ids", "present_ids")):
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=f"case {i} {name} {attrs} {sorted(feeds)}")


def _varlen_case(i):
    rng = rng_for("VarlenNGramHashMapping", i)
    dt = np.int64 if i % 2 else np.int32
    maxn, nh = int(rng.integers(2, 5)), int(rng.integers(1, 4))
    lens = rng.integers(1, 7, int(rng.integers(1, 4)))
    ids = rng.integers(0, 2 ** 30 if i % 3 == 0 else 50, int(lens.sum())).astype(dt)
    ids[rng.random(ids.shape) < 0.2] = EOS
    consts = {"mult": rng.integers(1, 2 ** 20, maxn).astype(dt), "vs": rng.integers(7, 5000, (maxn - 1) * nh).astype(dt),
              "cu": np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)}
    feeds = {"ids": ids}
    order = ["ids", "mult", "vs", "cu", "", "", "", ""]
    if rng.random() < 0.5:
        feeds["past"], order[4] = rng.integers(0, 50, (lens.size, maxn - 1)).astype(dt), "past"
    if rng.random() < 0.4:
        consts["offsets"], order[5] = rng.integers(0, 10000, (maxn - 1) * nh).astype(dt), "offsets"
    attrs = {"pad_id": int(rng.integers(0, 9)), "n_head_per_ngram": nh, "max_ngram_size": maxn}
    if rng.random() < 0.6:
        consts["eos"], order[6] = np.array(EOS, dt), "eos"
        attrs["reset_on_eos"] = int(rng.integers(0, 2))
    if rng.random() < 0.4:
        feeds["seg"] = np.cumsum(rng.random(ids.shape) < 0.3).astype(np.int32)
        order[7] = "seg"
    return _model("VarlenNGramHashMapping", order, feeds, consts, attrs, dt), feeds, attrs


@pytest.mark.parametrize("i", range(16))
def test_varlen_ngram_hash_mapping_matches_onnxruntime(i):
    m, feeds, attrs = _varlen_case(i)
    want = onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w, name in zip(got, want, ("hash_ids", "present_ids")):
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=f"case {i} {name} {attrs} {sorted(feeds)}")
