"""The benchmark's torch-exported all-MiniLM-L6 encoder runs on ortgpu as on onnxruntime.

The model comes from its committed skeleton (benchmarks/models/, written by
scripts/make_minilm_model.py) refilled by benchmarks/minilm.py's seeded rules: no torch needed.
Both of torch's exporters are checked (the dynamo default and the TorchScript one that optimum
and the hub's ONNX files use); the oracle is onnxruntime on the same refilled model.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest

import ortgpu

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def _minilm_module():
    spec = importlib.util.spec_from_file_location("bench_minilm", os.path.join(BENCH, "minilm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


minilm = _minilm_module()


@pytest.fixture(scope="module", params=["minilm_l6", "minilm_l6_torchscript"])
def sessions(request):
    model = minilm.load_minilm(request.param)
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model, mine, theirs


def _agree(mine, theirs, feed):
    got = mine.run(["last_hidden_state"], feed)[0]
    want = theirs.run(["last_hidden_state"], feed)[0]
    assert got.shape == want.shape == feed["input_ids"].shape + (384,)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_benchmark_feed_agrees_with_onnxruntime(sessions):
    """The benchmark's own case: batch 3, 10 tokens, full mask, one segment."""
    model, mine, theirs = sessions
    _agree(mine, theirs, minilm.minilm_feed(model))


def test_padded_batch_of_another_shape_agrees(sessions):
    """Dynamic axes and a padding mask (later tokens masked out, two segments)."""
    model, mine, theirs = sessions
    feed = minilm.minilm_feed(model, batch=2, sequence=7, seed=5)
    feed["attention_mask"][1, 4:] = 0
    feed["token_type_ids"][:, 3:] = 1
    _agree(mine, theirs, feed)


def test_unoptimized_graph_agrees_with_onnxruntime():
    """ortgpu without its fusions computes the exported graph node by node, to the same result."""
    model = minilm.load_minilm("minilm_l6")
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    mine = ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _agree(mine, theirs, minilm.minilm_feed(model, seed=3))


def test_refill_follows_the_table():
    """Stripped tensors come back with their shapes; LayerNorm scales one, biases zero, weights
    drawn with BERT's spread; the skeleton itself carries no weight data."""
    with open(os.path.join(minilm.MODELS, "minilm_l6.refill.json"), encoding="utf-8") as f:
        table = json.load(f)
    model = minilm.load_minilm("minilm_l6")
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for entry in table["tensors"]:
        a = arrays[entry["name"]]
        assert list(a.shape) == entry["shape"]
        if entry["init"] == "ones":
            assert np.all(a == 1)
        elif entry["init"] == "zeros":
            assert np.all(a == 0)
        elif a.size > 10_000:
            assert abs(float(a.std()) - entry["std"]) < 0.1 * entry["std"]
    assert os.path.getsize(os.path.join(minilm.MODELS, "minilm_l6.skeleton.onnx")) < 200_000


def test_stale_refill_table_is_refused(tmp_path, monkeypatch):
    """A table whose shape no longer matches the skeleton names the tensor instead of building
    a wrong model."""
    for suffix in ("skeleton.onnx", "refill.json"):
        shutil.copy(os.path.join(minilm.MODELS, f"minilm_l6.{suffix}"), tmp_path / f"stale.{suffix}")
    table = json.loads((tmp_path / "stale.refill.json").read_text())
    table["tensors"][3]["shape"] = [7, 7]
    (tmp_path / "stale.refill.json").write_text(json.dumps(table))
    monkeypatch.setattr(minilm, "MODELS", str(tmp_path))
    with pytest.raises(ValueError, match=table["tensors"][3]["name"]):
        minilm.load_minilm("stale")


def test_each_attention_block_fuses_into_one_attention(sessions):
    """AttentionFusion takes torch's exports of scaled_dot_product_attention as it takes the
    older exporters' pattern: one Attention per layer.  The dynamo export transposes the keys
    through a 3-D reshape and reads its Reshape targets from the token ids' shape; the
    TorchScript one reshapes the product to its own shape before merging the heads; both scale
    q and k apart and guard the Softmax against NaN."""
    _, mine, _ = sessions
    ops = [n.op_type for n in mine._core.plan.graph.nodes]
    assert ops.count("Attention") == 6 and "Softmax" not in ops


def test_a_fully_masked_sequence_agrees(sessions):
    """A row of the batch with every token masked: the export's NaN guard gives its attention
    zeros, as the fused kernel does (softmax over -inf only)."""
    model, mine, theirs = sessions
    feed = minilm.minilm_feed(model, batch=2, sequence=6, seed=9)
    feed["attention_mask"][1, :] = 0
    _agree(mine, theirs, feed)


def test_the_fused_dynamo_export_saved_runs_in_onnxruntime(tmp_path):
    """The optimized model ortgpu writes (com.microsoft::Attention with its attention bias)
    gives onnxruntime the original model's results."""
    model = minilm.load_minilm("minilm_l6")
    so = ortgpu.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    saved = onnx.load(so.optimized_model_filepath)
    assert [n.op_type for n in saved.graph.node].count("Attention") == 6
    fused = onnxruntime.InferenceSession(saved.SerializeToString(), providers=["CPUExecutionProvider"])
    original = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = minilm.minilm_feed(model, batch=2, sequence=7, seed=4)
    feed["attention_mask"][1, 5:] = 0
    _agree(fused, original, feed)


def test_a_reshape_of_the_product_to_another_shape_stays_unfused():
    """Near miss: the TorchScript export's Reshape of the product to its own shape, changed to
    split the heads otherwise (D 16 instead of 32), is not a same-shape reshape: that layer keeps
    its nodes and the result still agrees with onnxruntime."""
    model = minilm.load_minilm("minilm_l6_torchscript")
    target = next(n for n in model.graph.node if n.op_type == "Reshape" and "layer.0/attention/self/Reshape_3" in n.name)
    concat = next(n for n in model.graph.node if n.output[0] == target.input[1])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([16], np.int64), "sixteen"))
    concat.input[3] = "sixteen"
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in mine._core.plan.graph.nodes]
    assert ops.count("Attention") == 5 and ops.count("Softmax") == 1
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _agree(mine, theirs, minilm.minilm_feed(model, seed=6))
