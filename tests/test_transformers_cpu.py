"""Models exported with torch (`-m transformers`): ortgpu's CPU provider against onnxruntime's CPU
provider on the same deterministic inputs.

Needs torch and transformers (skipped without them); the first run exports each model (about 10 s
and 350-500 MB each, cached, see transformer_models.py).

Tolerances (float32 throughout): absolute 1e-4 plus relative 1e-4 for the transformer outputs,
whose values stay within about +-6 (observed differences: a few 1e-6); ResNet-50's logits, after 50
convolutions, get absolute 2e-4 plus relative 1e-3 (observed: about 3e-5).
"""
import numpy as np
import pytest

import ortgpu
from support import transformer_models as tm

pytest.importorskip("torch")
pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.transformers

TOLERANCES = {  # name: (rtol, atol)
    "bert_base": (1e-4, 1e-4),
    "gpt2_decode": (1e-4, 1e-4),
    "vit_base": (1e-4, 1e-4),
    "resnet50": (1e-3, 2e-4),
}


def _run_both(name, batch):
    path = tm.export(name)
    feed = tm.make_inputs(name, batch=batch)
    mine = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
    return mine, ref


@pytest.mark.parametrize("name", tm.MODELS)
def test_export_matches_onnxruntime(name):
    mine, ref = _run_both(name, batch=2)
    rtol, atol = TOLERANCES[name]
    assert len(mine) == len(ref) == len(tm.output_names(name))
    for out, a, b in zip(tm.output_names(name), mine, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, out
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{name}: output {out}")


def test_gpt2_decode_appends_to_the_cache_and_picks_the_same_token():
    mine, ref = _run_both("gpt2_decode", batch=2)
    layers, heads, dim, vocab = tm._gpt2_dims()
    assert mine[0].shape == (2, 1, vocab)
    np.testing.assert_array_equal(mine[0].argmax(-1), ref[0].argmax(-1))
    feed = tm.make_inputs("gpt2_decode", batch=2)
    for i in range(layers):
        present = mine[1 + 2 * i]
        assert present.shape == (2, heads, tm.PAST_LEN + 1, dim)
        # the cached part is passed through unchanged; the new token's key is appended at the end
        np.testing.assert_array_equal(present[:, :, :tm.PAST_LEN], feed[f"past_key_values.{i}.key"])


def test_batch_one_matches_onnxruntime():
    """The exports have a dynamic batch; batch 1 is the latency case of the benchmark."""
    mine, ref = _run_both("bert_base", batch=1)
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
