"""Real models at ORT_ENABLE_ALL against ORT_DISABLE_ALL, and their saved optimized form.

`-m models`: the model zoo (PP-OCRv4 det/rec/cls, silero_vad).  `-m transformers`: BERT-base,
GPT-2 decode, ViT and ResNet-50 exported with torch (local check, not in CI).

Tolerance: the foldings change rounding only (Conv weights scaled in float64, then stored as
float32), so outputs agree to rtol 1e-4 + atol 1e-4 (observed: exact for the transformers,
about 1e-10 for PP-OCRv4 det).  The saved model must run to the optimized session's outputs
within the same tolerance, in ortgpu and in onnxruntime; atol is 1e-4 because onnxruntime runs
the fused ops' bodies with its own convolution and GEMM summation order (up to 3e-5 apart on
ResNet-50's logits, as far apart as onnxruntime and ortgpu are on the original model).
"""
import numpy as np
import onnx
import pytest

import ortgpu
from support.fusion_cases import check_vocabulary, old_layer_norm
from support.model_zoo import image_input, model_path

ort = pytest.importorskip("onnxruntime")
Level = ortgpu.GraphOptimizationLevel
RTOL, ATOL = 1e-4, 1e-4


def _zoo_feeds(name):
    if name == "silero_vad":
        t = np.arange(512) / 16000.0
        return {"input": (0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32),
                "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, dtype=np.int64)}
    shape = {"ppocrv4_det": (1, 3, 256, 320), "ppocrv4_rec": (2, 3, 48, 320), "ppocr_cls": (3, 3, 48, 192)}[name]
    return {"x": image_input(shape)}


def _session(path, level, saved_to=None):
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    if saved_to:
        so.optimized_model_filepath = saved_to
    return ortgpu.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def check_levels_and_saved_model(path, feeds, tmp_path, onnxruntime_too=True):
    saved = str(tmp_path / "optimized.onnx")
    plain = _session(path, Level.ORT_DISABLE_ALL)
    opt = _session(path, Level.ORT_ENABLE_ALL, saved)
    want = plain.run(None, feeds)
    got = opt.run(None, feeds)
    _close(got, want)
    assert len(opt.get_provider_assignment(True)) <= len(plain.get_provider_assignment(True))
    written = onnx.load(saved)
    check_vocabulary(written)
    if not old_layer_norm(written):  # onnxruntime's pre-17 LayerNormalization: onnx.checker rejects it
        onnx.checker.check_model(saved, full_check=True)
    _close(ortgpu.InferenceSession(saved, providers=["CPUExecutionProvider"]).run(None, feeds), got)
    if onnxruntime_too:
        _close(ort.InferenceSession(saved, providers=["CPUExecutionProvider"]).run(None, feeds), got)


@pytest.mark.models
@pytest.mark.parametrize("name", ["ppocrv4_det", "ppocrv4_rec", "ppocr_cls", "silero_vad"])
def test_zoo_model_gives_the_same_outputs_optimized_and_saved(name, tmp_path):
    check_levels_and_saved_model(model_path(name), _zoo_feeds(name), tmp_path)


@pytest.mark.transformers
@pytest.mark.parametrize("name", ["bert_base", "gpt2_decode", "vit_base", "resnet50"])
def test_exported_model_gives_the_same_outputs_optimized_and_saved(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from support import transformer_models as tm  # noqa: PLC0415
    check_levels_and_saved_model(tm.export(name), tm.make_inputs(name, batch=2), tmp_path)
