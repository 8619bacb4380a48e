"""Transformers and ResNet-50 in float16 (`-m transformers`, needs torch): the ``ortgpu.precision``
switch on ortgpu's CPU provider against the float32 model, by the metric that matters:
sentence-embedding cosine similarity above 0.999 (MiniLM-style and BERT-base, mean pooling),
the same next token (GPT-2 decode), the same top-1 class where float32 has a clear winner
(ResNet-50); the offline converter's models also run in onnxruntime."""
import numpy as np
import onnx
import pytest

import ortgpu
from support import transformer_models as tm
from ortgpu.precision import convert_float_to_float16

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.transformers


def _pair(name, precision="fp16"):
    path = tm.export(name)
    fp32 = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", precision)
    return fp32, ortgpu.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden.astype(np.float64) * m).sum(1) / m.sum(1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", ["minilm", "bert_base"])
def test_sentence_embeddings_cosine_above_0_999(name):
    fp32, fp16 = _pair(name)
    feed = tm.make_inputs(name, batch=2)
    r, y = fp32.run(["last_hidden_state"], feed)[0], fp16.run(["last_hidden_state"], feed)[0]
    assert y.dtype == np.float32
    cos = cosine(mean_pooled(y, feed["attention_mask"]), mean_pooled(r, feed["attention_mask"]))
    assert cos.min() > 0.999, cos
    assert cosine(y, r).min() > 0.999  # per sequence, every token's state
    assert not np.array_equal(y, r)


def test_gpt2_decode_same_next_token():
    fp32, fp16 = _pair("gpt2_decode")
    feed = tm.make_inputs("gpt2_decode", batch=2)
    r, y = fp32.run(["logits"], feed)[0], fp16.run(["logits"], feed)[0]
    np.testing.assert_array_equal(y.argmax(-1), r.argmax(-1))
    assert cosine(y, r).min() > 0.999


def test_resnet50_same_top1():
    fp32, fp16 = _pair("resnet50")
    feed = tm.make_inputs("resnet50", batch=4)
    r, y = fp32.run(None, feed)[0], fp16.run(None, feed)[0]
    err = np.abs(y - r).max()
    top2 = np.sort(r, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * err  # float16 error cannot reorder these rows
    assert clear.any()
    np.testing.assert_array_equal(y.argmax(1)[clear], r.argmax(1)[clear])
    assert cosine(y, r).min() > 0.999


@pytest.mark.parametrize("name", ["minilm", "gpt2_decode"])
def test_offline_converter_output_runs_in_onnxruntime(name):
    m = convert_float_to_float16(onnx.load(tm.export(name)), keep_io_types=True)
    onnx.checker.check_model(m)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    feed = tm.make_inputs(name, batch=2)
    got = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    ref = ort.InferenceSession(tm.export(name), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert cosine(got, ref).min() > 0.999
