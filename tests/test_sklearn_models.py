"""scikit-learn models converted by skl2onnx (tests/data/sklearn/, made by
scripts/make_sklearn_models.py): ortgpu's CPU provider against onnxruntime and against
scikit-learn's own predictions and probabilities stored beside each model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

import ortgpu

DATA = Path(__file__).parent / "data" / "sklearn"
MODELS = sorted(p.stem for p in DATA.glob("*.onnx"))
CPU = ["CPUExecutionProvider"]


def _load(name):
    z = np.load(DATA / f"{name}.npz", allow_pickle=True)
    feeds = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
    for k in z.files:
        if k.startswith("mapkeys:"):
            n = k[len("mapkeys:"):]
            feeds[n] = {kk.item(): float(v) for kk, v in zip(z[k], z[f"mapvalues:{n}"])}
    answers = {k: z[k] for k in z.files if ":" not in k}
    return feeds, answers


def _as_matrix(out):
    """Probabilities as an [N, classes] array, from a tensor or ZipMap's list of dicts."""
    if isinstance(out, list):
        return np.array([[d[k] for k in sorted(d)] for d in out], dtype=np.float32)
    return np.asarray(out, dtype=np.float32)


def test_models_present():
    assert len(MODELS) >= 15, MODELS


@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime_and_sklearn(name):
    path = str(DATA / f"{name}.onnx")
    feeds, answers = _load(name)
    want = onnxruntime.InferenceSession(path, providers=CPU).run(None, feeds)
    sess = ortgpu.InferenceSession(path, providers=CPU)
    got = sess.run(None, feeds)
    assert [o.name for o in sess.get_outputs()] == [o.name for o in
                                                    onnxruntime.InferenceSession(path, providers=CPU).get_outputs()]
    for g, w in zip(got, want):
        if isinstance(w, list):  # ZipMap: a list of {label: probability}
            assert isinstance(g, list) and len(g) == len(w)
            for dg, dw in zip(g, w):
                assert list(dg) == list(dw)
                np.testing.assert_allclose(list(dg.values()), list(dw.values()), rtol=1e-4, atol=1e-5)
        elif w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        else:
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
            np.testing.assert_array_equal(g, w)
    if "label" in answers:
        np.testing.assert_array_equal(np.asarray(got[0]).reshape(-1), answers["label"].reshape(-1))
    if "proba" in answers:
        np.testing.assert_allclose(_as_matrix(got[1]), answers["proba"], rtol=1e-3, atol=2e-4)
    if "value" in answers:
        np.testing.assert_allclose(np.asarray(got[0]).reshape(-1), answers["value"].reshape(-1),
                                   rtol=1e-4, atol=1e-4)
