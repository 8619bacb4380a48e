"""The extended fusions on real models: the same outputs with and without them, and the node
counts before/after printed (run with -s to see them).

`-m models`: the model zoo (PP-OCRv4 det/rec, PP-OCR cls, silero VAD), fetched and cached.
`-m transformers`: BERT-base, GPT-2 decode with its KV cache, ViT, ResNet-50 exported with
torch (tests/transformer_models.py), where the fusions must turn every attention block, GELU
and residual layer norm into one node each.
"""
import numpy as np
import pytest

import ortgpu
from ortgpu.optimizer import EXTENDED_PASSES
from support.pass_check import step_ops

EXPECTED = {   # transformer model: fused node counts (12 layers each)
    "bert_base": {"Attention": 12, "BiasGelu": 12, "SkipLayerNormalization": 25},
    "gpt2_decode": {"Attention": 12, "FastGelu": 12, "SkipLayerNormalization": 25},
    "vit_base": {"Attention": 12, "BiasGelu": 12, "SkipLayerNormalization": 25},
    "resnet50": {"FusedConv": 49},
}


def _pair(path):
    """(with the extended fusions, without them) on the CPU provider."""
    fused = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])
    plain = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(EXTENDED_PASSES))
    return fused, plain


def _compare(name, fused, plain, feed, rtol, atol):
    a, b = fused.run(None, feed), plain.run(None, feed)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)
    print(f"\n{name}: {len(step_ops(plain))} steps without the extended fusions, {len(step_ops(fused))} with them")


@pytest.mark.transformers
@pytest.mark.parametrize("name", list(EXPECTED))
def test_transformer_models_fuse_and_keep_their_outputs(name):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from support import transformer_models as tm
    fused, plain = _pair(tm.export(name))
    counts = {op: step_ops(fused).count(op) for op in EXPECTED[name]}
    assert counts == EXPECTED[name]
    _compare(name, fused, plain, tm.make_inputs(name, batch=2), rtol=1e-4, atol=1e-4)


ZOO = {  # name: (feed builder, rtol, atol)
    "ppocrv4_det": (lambda zoo: {"x": zoo.image_input((1, 3, 256, 320))}, 1e-4, 1e-5),
    "ppocrv4_rec": (lambda zoo: {"x": zoo.image_input((2, 3, 48, 320), seed=1)}, 1e-4, 1e-5),
    "ppocr_cls": (lambda zoo: {"x": zoo.image_input((3, 3, 48, 192), seed=2)}, 1e-4, 1e-5),
}


@pytest.mark.models
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_keep_their_outputs(name):
    from support import model_zoo as zoo
    make_feed, rtol, atol = ZOO[name]
    fused, plain = _pair(zoo.model_path(name))
    assert len(step_ops(fused)) < len(step_ops(plain))
    _compare(name, fused, plain, make_feed(zoo), rtol, atol)
