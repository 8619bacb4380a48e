"""BERT and GPT-2 as onnxruntime's transformer optimizer writes them (com.microsoft
EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu, FastGelu), float32 and
float16, run by ortgpu's CPU provider and compared with onnxruntime's CPU provider.

The models are tiny random-weight configs committed under tests/data/contrib/ by
scripts/make_contrib_models.py (torch export + optimize_model).  Tolerances: float32 outputs
absolute 1e-4 plus relative 1e-4 (hidden states of magnitude ~3; observed differences ~1e-6);
the float16 models absolute 2e-2 plus relative 2e-2 (fp16 has 11 mantissa bits and two
runtimes round the residual sums at different points; observed ~4e-3).
"""
import pathlib

import numpy as np
import onnx
import onnxruntime
import pytest

import ortgpu

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "contrib"
MODELS = ["bert_fp32", "bert_fp16", "gpt2_fp32", "gpt2_fp16"]
TOL = {"fp32": (1e-4, 1e-4), "fp16": (2e-2, 2e-2)}


def _feeds(model: onnx.ModelProto, batch: int, seq: int, seed: int):
    rng = np.random.default_rng(seed)
    feeds = {}
    lens = rng.integers(2, seq + 1, size=batch)
    lens[0] = seq
    for inp in model.graph.input:
        if inp.name == "input_ids":
            feeds[inp.name] = rng.integers(0, 96, size=(batch, seq)).astype(np.int64)
        elif inp.name == "attention_mask":
            feeds[inp.name] = (np.arange(seq)[None] < lens[:, None]).astype(np.int64)
        elif inp.name == "token_type_ids":
            feeds[inp.name] = (np.arange(seq)[None] >= seq // 2).astype(np.int64).repeat(batch, 0)
        else:
            raise AssertionError(f"unexpected model input {inp.name}")
    return feeds


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch,seq,seed", [(1, 5, 0), (3, 9, 1)])
def test_optimized_model_matches_onnxruntime(name, batch, seq, seed):
    path = DATA / f"{name}.onnx"
    model = onnx.load(str(path))
    contrib = {n.op_type for n in model.graph.node if n.domain == "com.microsoft"}
    assert contrib, f"{name} has no com.microsoft op: the optimizer fused nothing"
    feeds = _feeds(model, batch, seq, seed)
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = onnxruntime.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    rtol, atol = TOL[name.split("_")[1]]
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref)):
        assert g.dtype == r.dtype and g.shape == r.shape, f"output {i}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=f"{name} output {i} ({sorted(contrib)})")


def test_models_are_small_and_use_the_fused_ops():
    want = {"bert": {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu"},
            "gpt2": {"SkipLayerNormalization", "FastGelu"}}
    for name in MODELS:
        path = DATA / f"{name}.onnx"
        assert path.stat().st_size < 1 << 20
        ops = {n.op_type for n in onnx.load(str(path)).graph.node if n.domain == "com.microsoft"}
        assert want[name.split("_")[0]] <= ops, f"{name}: {sorted(ops)}"


def test_saved_optimized_model_imports_com_microsoft_and_runs_in_onnxruntime(tmp_path):
    """The optimizer's input imports only ai.onnx (onnxruntime implies its own domain); the
    model ortgpu saves imports com.microsoft explicitly and onnxruntime runs it the same."""
    so = ortgpu.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "bert_opt.onnx")
    sess = ortgpu.InferenceSession(str(DATA / "bert_fp32.onnx"), so, providers=["CPUExecutionProvider"])
    saved = onnx.load(so.optimized_model_filepath)
    assert ("com.microsoft", 1) in {(o.domain, o.version) for o in saved.opset_import}
    feeds = _feeds(saved, 2, 6, 3)
    ref = onnxruntime.InferenceSession(so.optimized_model_filepath, providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, r in zip(sess.run(None, feeds), ref):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
