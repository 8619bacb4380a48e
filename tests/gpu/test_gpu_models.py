"""Real models on CUDA against ortgpu's CPU provider (`-m gpu`): the models tier (tests/support/model_zoo.py)
and the torch exports of tests/transformer_models.py (BERT-base, GPT-2 decode step with KV cache,
ViT-base, ResNet-50).

CUDA runs with ``use_tf32=0`` (strict float32) except where a test says otherwise. Tolerances are
per model in ``TOLERANCES`` (rtol, atol): GPU reductions and GEMMs sum in another order than the
CPU, so they are looser than the CPU-vs-onnxruntime ones of the models tier, but far below what a
wrong kernel gives. Heavy ops (Conv, MatMul, Gemm, LSTM, ...) must run on the GPU. Placement
counts and the largest differences go to ``gpu_models.json`` under ``$ORTGPU_REPORT_DIR``.

The GPU machine has no network: the models tier needs its cache (``$ORTGPU_MODEL_CACHE``) filled
beforehand (scripts/gpu-check.sh explains how); a model not there is skipped with that reason.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpu_support as gs
from support.model_zoo import image_input

pytestmark = gs.gpu_marks()

HEAVY_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Softmax",
             "LayerNormalization", "Attention"}

TOLERANCES = {  # (rtol, atol), CUDA (no TF32) against the CPU provider
    "ppocrv4_det": (1e-3, 5e-4),
    "ppocrv4_rec": (1e-3, 1e-4),
    "ppocr_cls": (1e-3, 1e-4),
    "silero_vad": (1e-3, 1e-4),
    "bert_base": (1e-3, 1e-3),
    "gpt2_decode": (1e-3, 1e-3),
    "vit_base": (1e-3, 1e-3),
    "resnet50": (1e-3, 1e-3),
}
_report: dict = {}


def _record(name: str, session, outs, refs) -> None:
    _report[name] = {
        "placement": gs.placement_counts(session),
        "max_abs_diff": [float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
                         for a, b in zip(outs, refs)],
        "max_abs_ref": [float(np.max(np.abs(b))) if b.size else 0.0 for b in refs],
    }
    gs.write_report("gpu_models.json", _report)


def _assert_heavy_ops_on_gpu(name: str, session) -> None:
    stayed = sorted({op for _, op, p in gs.assignment(session) if op in HEAVY_OPS and p != gs.CUDA})
    assert not stayed, f"{name}: {stayed} ran on the CPU"


def _compare(name, cuda_sess, cpu_sess, feed, record_as=None):
    outs = cuda_sess.run(None, feed)
    refs = cpu_sess.run(None, feed)
    _record(record_as or name, cuda_sess, outs, refs)
    rtol, atol = TOLERANCES[name]
    out_names = [o.name for o in cpu_sess.get_outputs()]
    for out, a, b in zip(out_names, outs, refs):
        assert isinstance(a, np.ndarray), f"{name}: run() must return NumPy arrays, got {type(a)}"
        assert a.shape == b.shape and a.dtype == b.dtype, f"{name}: output {out}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{name}: output {out}")
    return outs, refs


# --- the models tier --------------------------------------------------------------------------
def _zoo_model(name):
    from support.model_zoo import model_path  # noqa: PLC0415
    try:
        return model_path(name)
    except Exception as e:  # noqa: BLE001 - no network on the GPU machine: say what is missing
        pytest.skip(f"{name} is not in the model cache and could not be fetched ({type(e).__name__}); "
                    f"fill $ORTGPU_MODEL_CACHE first (see scripts/gpu-check.sh)")




@pytest.mark.parametrize("name,shape,seed", [
    ("ppocrv4_det", (1, 3, 256, 320), 0),
    ("ppocrv4_rec", (2, 3, 48, 320), 1),
    ("ppocr_cls", (3, 3, 48, 192), 2),
])
def test_ocr_models_on_cuda_match_the_cpu(name, shape, seed):
    path = _zoo_model(name)
    cuda, cpu = gs.cuda_session(path), gs.cpu_session(path)
    _assert_heavy_ops_on_gpu(name, cuda)
    (y,), (r,) = _compare(name, cuda, cpu, {"x": image_input(shape, seed)})
    if name != "ppocrv4_det":  # classifiers: the decision must not change
        np.testing.assert_array_equal(y.argmax(-1), r.argmax(-1))


def test_silero_vad_streaming_on_cuda_matches_the_cpu():
    """Nested If with an LSTM inside; the state output of each chunk feeds the next one."""
    path = _zoo_model("silero_vad")
    cuda, cpu = gs.cuda_session(path), gs.cpu_session(path)
    _assert_heavy_ops_on_gpu("silero_vad", cuda)  # the LSTM and Convs inside the If bodies too
    rng = np.random.default_rng(3)
    t = np.arange(512 * 6) / 16000.0
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.05) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    sr = np.array(16000, dtype=np.int64)
    state_g = state_c = np.zeros((2, 1, 128), np.float32)
    rtol, atol = TOLERANCES["silero_vad"]
    for k in range(6):
        chunk = audio[None, k * 512:(k + 1) * 512]
        out_g, state_g = cuda.run(None, {"input": chunk, "state": state_g, "sr": sr})
        out_c, state_c = cpu.run(None, {"input": chunk, "state": state_c, "sr": sr})
        np.testing.assert_allclose(out_g, out_c, rtol=rtol, atol=atol, err_msg=f"chunk {k}")
        np.testing.assert_allclose(state_g, state_c, rtol=rtol, atol=atol, err_msg=f"chunk {k}")
    _record("silero_vad", cuda, [out_g, state_g], [out_c, state_c])


# --- torch exports ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tm():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from support import transformer_models  # noqa: PLC0415
    return transformer_models


@pytest.mark.parametrize("name", ["bert_base", "gpt2_decode", "vit_base", "resnet50"])
def test_torch_export_on_cuda_matches_the_cpu(tm, name):
    path = tm.export(name)
    cuda, cpu = gs.cuda_session(path), gs.cpu_session(path)
    _assert_heavy_ops_on_gpu(name, cuda)
    feed = tm.make_inputs(name, batch=2)
    outs, refs = _compare(name, cuda, cpu, feed)
    if name == "gpt2_decode":
        np.testing.assert_array_equal(outs[0].argmax(-1), refs[0].argmax(-1))
        layers = tm._gpt2_dims()[0]
        for i in range(layers):  # the cached part of the KV cache passes through unchanged
            np.testing.assert_array_equal(outs[1 + 2 * i][:, :, :tm.PAST_LEN], feed[f"past_key_values.{i}.key"])


def test_gpt2_decode_batch_32_on_cuda(tm):
    """The benchmark's batch-32 decode step, with the provider's default options (TF32 allowed as
    onnxruntime allows it): looser tolerance, same next token for nearly every row (random weights: the top two
    logits of 5% of the rows are within 0.01 of each other)."""
    import ortgpu  # noqa: PLC0415
    path = tm.export("gpt2_decode")
    cuda = ortgpu.InferenceSession(path, providers=[gs.CUDA, gs.CPU])
    cpu = gs.cpu_session(path)
    feed = tm.make_inputs("gpt2_decode", batch=32, seed=5)
    (lg, *_), (lc, *_) = cuda.run(None, feed), cpu.run(None, feed)
    np.testing.assert_allclose(lg, lc, rtol=5e-2, atol=5e-2)
    agree = float(np.mean(lg.argmax(-1) == lc.argmax(-1)))
    assert agree >= 0.85, f"next token agrees on {100 * agree:.0f}% of the rows"
    _record("gpt2_decode_b32_default_options", cuda, [lg], [lc])
