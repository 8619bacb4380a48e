"""The optimized BERT and GPT-2 of tests/data/contrib/ after onnxruntime's quantization tool, as
users quantize them (scripts/make_contrib_models.py writes them from the committed float32 files):
quantize_dynamic (QAttention, QEmbedLayerNormalization, DynamicQuantizeLinear + MatMulInteger),
the same after onnxruntime's extended graph fusions (DynamicQuantizeMatMul), quantize_static with
a calibration reader in the QDQ and the QOperator formats (QGemm, QLinearMatMul, QLinearAdd,
QLinearSoftmax, ...), and MatMulNBitsQuantizer's 4-bit weights.  Each runs on ortgpu's CPU
provider (and on the device double) and is compared with onnxruntime's CPU provider at its
default optimization level.

Tolerances.  An output that a DequantizeLinear produces (GPT-2's logits in the QDQ model) may
differ by one quantization step: its scale (observed: exactly one step at a few elements, where
the two runtimes' float sums before the last QuantizeLinear straddle a rounding boundary).  Float
outputs: absolute 1e-3 of the output's largest magnitude (observed <= 3e-7 of it: both runtimes
do the integer products exactly and apply the same scales).
"""
from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from support.quant_oracle import run_both
from test_contrib_models import _feeds

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "contrib"
KINDS = ("bert", "gpt2")
VARIANTS = ("qdynamic", "qdynamic_fused", "qstatic_qdq", "qstatic_qop", "nbits4")
MODELS = [f"{k}_{v}" for k in KINDS for v in VARIANTS]
FLOAT_TOL = 1e-3

# ops each quantized file must hold: the quantizer really rewrote the model
WANT = {
    "bert_qdynamic": {"QAttention", "QEmbedLayerNormalization", "MatMulInteger", "DynamicQuantizeLinear"},
    "bert_qdynamic_fused": {"QAttention", "QEmbedLayerNormalization", "DynamicQuantizeMatMul"},
    "bert_qstatic_qdq": {"QuantizeLinear", "DequantizeLinear", "Attention", "EmbedLayerNormalization"},
    "bert_qstatic_qop": {"QGemm", "QLinearMatMul", "QEmbedLayerNormalization"},
    "bert_nbits4": {"MatMulNBits", "Attention", "EmbedLayerNormalization"},
    "gpt2_qdynamic": {"MatMulInteger", "DynamicQuantizeLinear", "SkipLayerNormalization"},
    "gpt2_qdynamic_fused": {"DynamicQuantizeMatMul", "SkipLayerNormalization"},
    "gpt2_qstatic_qdq": {"QuantizeLinear", "DequantizeLinear", "SkipLayerNormalization"},
    "gpt2_qstatic_qop": {"QGemm", "QLinearMatMul", "QLinearAdd", "QLinearSoftmax"},
    "gpt2_nbits4": {"MatMulNBits", "SkipLayerNormalization", "FastGelu"},
}


def _output_steps(model: onnx.ModelProto) -> dict:
    """graph output -> scale of the DequantizeLinear that produces it (None: a float output)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    steps = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[1] in inits:
            steps[node.output[0]] = float(np.max(inits[node.input[1]]))
    return {o.name: steps.get(o.name) for o in model.graph.output}


def test_quantized_models_are_small_and_quantized():
    for name in MODELS:
        path = DATA / f"{name}.onnx"
        assert path.stat().st_size < 300 << 10, f"{name}: {path.stat().st_size} bytes"
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert WANT[name] <= ops, f"{name} lacks {sorted(WANT[name] - ops)}"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch,seq,seed", [(1, 5, 0), (3, 9, 1), (2, 16, 2)])
def test_quantized_model_matches_onnxruntime(name, batch, seq, seed):
    path = DATA / f"{name}.onnx"
    model = onnx.load(str(path))
    feeds = _feeds(model, batch, seq, seed)
    got, want = run_both(path.read_bytes(), feeds)
    assert len(got) == len(want) == len(model.graph.output)
    for (out, step), g, w in zip(_output_steps(model).items(), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (out, g.shape, w.shape, g.dtype, w.dtype)
        err = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max(initial=0))
        if step is not None:
            assert err <= step * 1.001, f"{name}:{out} differs by {err / step:.2f} quantization steps"
        else:
            tol = FLOAT_TOL * float(np.abs(w).max(initial=0)) + 1e-6
            assert err <= tol, f"{name}:{out} differs by {err:.3g} (allowed {tol:.3g})"
