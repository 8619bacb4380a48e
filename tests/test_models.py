"""Real models (`-m models`): ortgpu's CPU provider against onnxruntime on the same inputs."""
import numpy as np
import pytest

import ortgpu
from support.model_zoo import image_input, model_path, vad_audio_chunks

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.models


def _both(name):
    path = model_path(name)
    return (ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"]),
            ort.InferenceSession(path, providers=["CPUExecutionProvider"]))




def _close(a, b, rtol, atol):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_ppocrv4_det_matches_onnxruntime():
    mine, ref = _both("ppocrv4_det")
    x = image_input((1, 3, 256, 320))
    (y,), (r,) = mine.run(None, {"x": x}), ref.run(None, {"x": x})
    assert y.shape == r.shape == (1, 1, 256, 320)
    _close(y, r, rtol=1e-3, atol=1e-4)


def test_ppocrv4_rec_matches_onnxruntime_and_decodes_the_same():
    mine, ref = _both("ppocrv4_rec")
    x = image_input((2, 3, 48, 320), seed=1)
    (y,), (r,) = mine.run(None, {"x": x}), ref.run(None, {"x": x})
    assert y.shape == r.shape
    _close(y, r, rtol=1e-3, atol=1e-5)
    # CTC decoding picks the argmax class per time step: it must be identical.
    np.testing.assert_array_equal(y.argmax(-1), r.argmax(-1))


def test_ppocr_cls_matches_onnxruntime():
    mine, ref = _both("ppocr_cls")
    x = image_input((3, 3, 48, 192), seed=2)
    (y,), (r,) = mine.run(None, {"x": x}), ref.run(None, {"x": x})
    _close(y, r, rtol=1e-3, atol=1e-5)


def test_silero_vad_streaming_matches_onnxruntime():
    """Nested If with an LSTM inside; the state output feeds the next chunk."""
    mine, ref = _both("silero_vad")
    chunks, sr = vad_audio_chunks()
    state_m = state_r = np.zeros((2, 1, 128), np.float32)
    for chunk in chunks:
        out_m, state_m = mine.run(None, {"input": chunk, "state": state_m, "sr": sr})
        out_r, state_r = ref.run(None, {"input": chunk, "state": state_r, "sr": sr})
        _close(out_m, out_r, rtol=1e-4, atol=1e-5)
        _close(state_m, state_r, rtol=1e-4, atol=1e-5)
