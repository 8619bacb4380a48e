"""Models quantized by onnxruntime's own tools (tests/data/quantized/, made by
scripts/make_quantized_models.py): dynamic, static QDQ and QOperator, MatMulNBits weight-only,
and the same after onnxruntime's graph fusions.  ortgpu's CPU provider must match onnxruntime
within one quantization step of each output (the scale of the DequantizeLinear that produces it),
or, for outputs computed in float (dynamic and weight-only quantization), within a relative
tolerance stated per model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from support.quant_oracle import numpy_bodies, run_both

DATA = Path(__file__).resolve().parent.parent / "data" / "quantized"
MODELS = sorted(p.stem for p in DATA.glob("*.onnx"))

# Relative tolerances (of the output's largest magnitude) for outputs computed in float.
FLOAT_TOL = {
    "mlp_nbits4_asym": 2e-2,   # accuracy_level 4: onnxruntime quantizes the activations to int8 per block
    "lstm_dynamic": 2e-2,      # onnxruntime quantizes the input and hidden state at every step
}


def _output_steps(path):
    """output name -> the scale of the DequantizeLinear producing it (one quantization step)."""
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    steps = {}
    for node in m.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[1] in inits:
            for out in node.output:
                steps[out] = float(np.max(inits[node.input[1]]))
    return {o.name: steps.get(o.name) for o in m.graph.output}


def test_models_present():
    assert len(MODELS) >= 15, MODELS


@pytest.mark.parametrize("name", MODELS)
def test_quantized_model_matches_onnxruntime(name):
    path = DATA / f"{name}.onnx"
    feeds = dict(np.load(DATA / f"{name}.npz"))
    got, want = run_both(path.read_bytes(), feeds)
    for (out, step), g, w in zip(_output_steps(path).items(), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (out, g.shape, w.shape, g.dtype, w.dtype)
        if step is not None:
            err = np.abs(g.astype(np.float64) - w.astype(np.float64)).max(initial=0)
            assert err <= step * 1.001, f"{name}:{out} differs by {err / step:.2f} quantization steps"
        else:
            tol = FLOAT_TOL.get(name, 1e-4) * float(np.abs(w).max(initial=0) + 1e-6)
            np.testing.assert_allclose(g, w, rtol=0, atol=tol, err_msg=f"{name}:{out}")


@pytest.mark.parametrize("name", MODELS)
def test_quantized_model_on_device_double(name):
    """The shared kernels are array-module clean: the model runs on the device double (arrays
    that refuse implicit host conversion, tests/support/device_double.py) as on the CPU with the
    same (NumPy) bodies."""
    from support.device_double import FakeDeviceExecutionProvider
    from support.device_double import providers as double_providers

    import ortgpu
    path = DATA / f"{name}.onnx"
    feeds = dict(np.load(DATA / f"{name}.npz"))
    with numpy_bodies():
        cpu = ortgpu.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    sess = ortgpu.InferenceSession(str(path), providers=double_providers())
    placed = {op for _, op, prov in sess.get_provider_assignment() if prov == FakeDeviceExecutionProvider.name}
    m = onnx.load(path)
    sub_byte = {t.name for t in m.graph.initializer if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)}
    # a node with int4 data stays on the CPU: CuPy has no such arrays
    contrib = {n.op_type for n in m.graph.node if n.domain == "com.microsoft" and not sub_byte & set(n.input)}
    assert contrib <= placed, f"not placed on the double: {sorted(contrib - placed)}"
    for g, c in zip(sess.run(None, feeds), cpu):
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-5)
