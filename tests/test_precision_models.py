"""Real models in float16 (`-m models`): the ``ortgpu.precision`` switch on ortgpu's CPU provider and
the offline converter in onnxruntime, against the float32 model, by the metric that matters:
the same decoded text (OCR recognizer), the same class (direction classifier), the same text
mask (detector), speech probabilities within 0.01 (VAD, nested If + LSTM)."""
import warnings

import numpy as np
import onnx
import pytest

import ortgpu
from support.model_zoo import model_path, vad_audio_chunks
from ortgpu.precision import convert_float_to_float16

ort = pytest.importorskip("onnxruntime")
PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

pytestmark = pytest.mark.models


def _text_image(text: str, h: int, w: int, angle: int = 0) -> np.ndarray:
    """Dark text on a light background, normalized as PP-OCR's preprocessing does ((x/255-0.5)/0.5)."""
    img = Image.new("RGB", (w, h), (235, 235, 230))
    draw = ImageDraw.Draw(img)
    draw.text((6, h // 2 - 16), text, fill=(20, 20, 30), font=ImageFont.load_default(size=28))
    if angle:
        img = img.rotate(angle)
    a = np.asarray(img, np.float32) / 255.0
    return ((a - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)


def _sessions(name):
    fp32 = ortgpu.InferenceSession(model_path(name), providers=["CPUExecutionProvider"])
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", "fp16")
    fp16 = ortgpu.InferenceSession(model_path(name), so, providers=["CPUExecutionProvider"])
    return fp32, fp16


def _offline(name, feed):
    m = convert_float_to_float16(onnx.load(model_path(name)), keep_io_types=True)
    onnx.checker.check_model(m)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def _ctc_greedy(probs: np.ndarray) -> list[list[int]]:
    """Greedy CTC decoding: argmax per step, repeats collapsed, blanks (class 0) dropped."""
    out = []
    for row in probs.argmax(-1):
        keep = [int(c) for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
        out.append(keep)
    return out


def test_ppocrv4_rec_fp16_decodes_the_same_text():
    fp32, fp16 = _sessions("ppocrv4_rec")
    x = _text_image("Hello, World 2026", 48, 320)
    (r,), (y,) = fp32.run(None, {"x": x}), fp16.run(None, {"x": x})
    ref_text = _ctc_greedy(r)
    assert all(len(t) >= 10 for t in ref_text)  # the image decodes to real text, not blanks
    assert _ctc_greedy(y) == ref_text
    np.testing.assert_allclose(y, r, atol=5e-2)
    assert _ctc_greedy(_offline("ppocrv4_rec", {"x": x})[0]) == ref_text


def test_ppocr_cls_fp16_same_direction():
    fp32, fp16 = _sessions("ppocr_cls")
    x = np.concatenate([_text_image(t, 48, 192, a) for t in ("upright text", "turned text") for a in (0, 180)])
    (r,), (y,) = fp32.run(None, {"x": x}), fp16.run(None, {"x": x})
    np.testing.assert_array_equal(y.argmax(-1), r.argmax(-1))
    np.testing.assert_allclose(y, r, atol=1e-2)
    np.testing.assert_array_equal(_offline("ppocr_cls", {"x": x})[0].argmax(-1), r.argmax(-1))


def test_ppocrv4_det_fp16_same_text_mask():
    fp32, fp16 = _sessions("ppocrv4_det")
    x = _text_image("detect these words in float16", 96, 320)
    (r,), (y,) = fp32.run(None, {"x": x}), fp16.run(None, {"x": x})
    mask = r > 0.3
    assert mask.sum() > 50  # the detector finds the text
    assert np.mean((y > 0.3) == mask) >= 0.995
    assert np.mean(np.abs(y - r)) < 2e-3 and np.abs(y - r).max() < 0.2  # text edges move a little
    assert np.mean((_offline("ppocrv4_det", {"x": x})[0] > 0.3) == mask) >= 0.995


def test_silero_vad_fp16_streaming_probabilities():
    fp32, fp16 = _sessions("silero_vad")
    chunks, sr = vad_audio_chunks()
    s32 = s16 = np.zeros((2, 1, 128), np.float32)
    for chunk in chunks:
        p32, s32 = fp32.run(None, {"input": chunk, "state": s32, "sr": sr})
        p16, s16 = fp16.run(None, {"input": chunk, "state": s16, "sr": sr})
        assert p16.dtype == np.float32 and s16.dtype == np.float32
        np.testing.assert_allclose(p16, p32, atol=1e-2)


@pytest.mark.parametrize("name,shape", [("ppocr_cls", (1, 3, 48, 192)), ("ppocrv4_rec", (1, 3, 48, 320))])
def test_same_as_onnxconverter_common_on_real_weights(name, shape):
    occ = pytest.importorskip("onnxconverter_common.float16")
    from support.model_zoo import image_input
    m = onnx.load(model_path(name))
    ours = convert_float_to_float16(m)
    with warnings.catch_warnings():  # it warns about every clamped weight
        warnings.simplefilter("ignore", UserWarning)
        theirs = occ.convert_float_to_float16(m, min_positive_val=5.96e-08, max_finite_val=65504.0)

    def types(model):
        g = onnx.shape_inference.infer_shapes(model).graph
        return {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.output)}
    names = [o for n in m.graph.node for o in n.output]
    t_ours, t_theirs = types(ours), types(theirs)
    assert [t_ours.get(n) for n in names] == [t_theirs.get(n) for n in names]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    feed = {"x": image_input(shape).astype(np.float16)}
    run = [ort.InferenceSession(x.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
           for x in (ours, theirs)]
    np.testing.assert_array_equal(run[0], run[1])


def test_auto_mixed_precision_on_the_direction_classifier():
    from support.model_zoo import image_input
    from ortgpu.precision import auto_mixed_precision
    m = onnx.load(model_path("ppocr_cls"))
    feeds = {"x": image_input((2, 3, 48, 192))}
    result = auto_mixed_precision(m, feeds, rtol=0.0, atol=1e-2, providers=["CPUExecutionProvider"])
    # float16 everywhere fits 1e-2 on this model: one trial for the whole model, one final check
    assert result.fp32_nodes == {} and result.trials == 2
    assert len(result.fp16_nodes) == len(m.graph.node)
    (ref,) = ortgpu.InferenceSession(model_path("ppocr_cls"), providers=["CPUExecutionProvider"]).run(None, feeds)
    (got,) = ortgpu.InferenceSession(result.model, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(got - ref).max() == pytest.approx(result.max_error) and 0 < result.max_error <= 1e-2
