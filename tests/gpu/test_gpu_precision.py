"""The ``ortgpu.precision`` switch on CUDA (`-m gpu`): float16 sessions against the float32 CPU
session by the metric that matters (the tests of tests/test_precision_models.py and
test_precision_transformers.py, on the GPU), and their heavy ops placed on the GPU in float16.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpu_support as gs
import ortgpu

pytestmark = gs.gpu_marks()


def _fp16_cuda(path):
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "fp16")
    return gs.cuda_session(path, sess_options=so)


def _cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _model(name):
    from support.model_zoo import model_path  # noqa: PLC0415
    try:
        return model_path(name)
    except Exception as e:  # noqa: BLE001 - no network on the GPU machine
        pytest.skip(f"{name} is not in the model cache ({type(e).__name__})")


def test_ppocr_rec_fp16_on_cuda_decodes_the_same():
    from test_precision_models import _ctc_greedy, _text_image  # noqa: PLC0415
    path = _model("ppocrv4_rec")
    x = np.concatenate([_text_image("ortgpu 2026 fp16", 48, 320), _text_image("Hello, World 42", 48, 320)])
    (r,) = gs.cpu_session(path).run(None, {"x": x})
    sess = _fp16_cuda(path)
    (y,) = sess.run(None, {"x": x})
    assert _ctc_greedy(y) == _ctc_greedy(r)
    on_gpu = [op for _, op, prov in sess.get_provider_assignment() if prov == gs.CUDA]
    assert "MatMul" in on_gpu or "Conv" in on_gpu


@pytest.mark.parametrize("name", ["bert_base", "gpt2_decode", "resnet50"])
def test_transformer_fp16_on_cuda(name):
    pytest.importorskip("torch")
    from support import transformer_models as tm  # noqa: PLC0415
    path = tm.export(name)
    feed = tm.make_inputs(name, batch=4)
    first = tm.output_names(name)[:1]
    (r,) = gs.cpu_session(path).run(first, feed)
    (y,) = _fp16_cuda(path).run(first, feed)
    assert y.dtype == np.float32
    if name == "bert_base":
        m = feed["attention_mask"][..., None]
        pooled = [(v * m).sum(1) / m.sum(1) for v in (y, r)]
        assert _cosine(*pooled).min() > 0.999
    else:
        assert _cosine(y, r).min() > 0.999
        if name == "gpt2_decode":
            np.testing.assert_array_equal(y.reshape(4, -1).argmax(1), r.reshape(4, -1).argmax(1))
