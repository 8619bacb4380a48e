"""The forward LSTM fast path (rnn.py::_lstm_forward: default activations, no peepholes, clip or
sequence lengths; weights laid out once per session) against onnxruntime over layouts, batch,
steps, optional bias and initial states, float64, and weights fed at run time; near misses take
the general path and agree too."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.providers.kernels import rnn

I, H = 5, 4


def _model(steps, batch, *, layout=0, bias=True, states=True, elem=TensorProto.FLOAT, weights_fed=False,
           attrs=None):
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(steps * 10 + batch + layout)
    w = {"W": rng.standard_normal((1, 4 * H, I)), "R": rng.standard_normal((1, 4 * H, H)),
         "B": rng.standard_normal((1, 8 * H))}
    names = ["x", "W", "R", "B" if bias else "", "", "h0" if states else "", "c0" if states else ""]
    node = helper.make_node("LSTM", names, ["y", "yh", "yc"], hidden_size=H, layout=layout, **(attrs or {}))
    x_shape = [batch, steps, I] if layout else [steps, batch, I]
    s_shape = [batch, 1, H] if layout else [1, batch, H]
    inputs = [helper.make_tensor_value_info("x", elem, x_shape)]
    if states:
        inputs += [helper.make_tensor_value_info(n, elem, s_shape) for n in ("h0", "c0")]
    if weights_fed:
        inputs += [helper.make_tensor_value_info(n, elem, list(w[n].shape)) for n in ("W", "R")]
    inits = [numpy_helper.from_array(w[n].astype(dtype), n) for n in ("W", "R", "B") if n != "B" or bias]
    g = helper.make_graph([node], "lstm", inputs, [helper.make_tensor_value_info(n, elem, None)
                                                   for n in ("y", "yh", "yc")], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8).SerializeToString()
    feed = {"x": rng.standard_normal(x_shape).astype(dtype)}
    if states:
        feed.update(h0=rng.standard_normal(s_shape).astype(dtype), c0=rng.standard_normal(s_shape).astype(dtype))
    return model, feed, w


def _check(model, feed, fast, monkeypatch, rtol=1e-5, general=None):
    """ortgpu's outputs equal onnxruntime's, or where onnxruntime has no kernel (layout 1,
    float64) those of `general`: the same model taking ortgpu's general path."""
    calls = []
    real = rnn._lstm_forward
    monkeypatch.setattr(rnn, "_lstm_forward", lambda *a: calls.append(1) or real(*a))
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    assert bool(calls) == fast
    if general is None:
        want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    else:
        calls.clear()
        want = ortgpu.InferenceSession(general, providers=["CPUExecutionProvider"]).run(None, feed)
        assert not calls
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("steps,batch", [(1, 1), (3, 2), (6, 1)])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("bias,states", [(True, True), (False, True), (True, False)])
def test_fast_path_matches_onnxruntime(steps, batch, layout, bias, states, monkeypatch):
    model, feed, _ = _model(steps, batch, layout=layout, bias=bias, states=states)
    # onnxruntime's LSTM takes layout 0 only; layout 1 is checked against ortgpu's general path
    # (activations named in lower case: the same functions, not the fast path's exact list)
    general = _model(steps, batch, layout=layout, bias=bias, states=states,
                     attrs=dict(activations=["sigmoid", "tanh", "tanh"]))[0] if layout else None
    _check(model, feed, True, monkeypatch, general=general)


def test_float64_and_weights_fed_at_run_time(monkeypatch):
    model, feed, _ = _model(3, 2, elem=TensorProto.DOUBLE)   # onnxruntime's LSTM has no float64
    general = _model(3, 2, elem=TensorProto.DOUBLE, attrs=dict(activations=["sigmoid", "tanh", "tanh"]))[0]
    _check(model, feed, True, monkeypatch, rtol=1e-10, general=general)
    model, feed, w = _model(2, 2, weights_fed=True)
    for scale in (1.0, -0.5):
        feed.update(W=(w["W"] * scale).astype(np.float32), R=(w["R"] * scale).astype(np.float32))
        _check(model, feed, True, monkeypatch)


@pytest.mark.parametrize("attrs", [dict(clip=0.5), dict(activations=["Sigmoid", "Tanh", "Relu"]),
                                   dict(input_forget=1)], ids=["clip", "activations", "input_forget"])
def test_near_misses_take_the_general_path(attrs, monkeypatch):
    model, feed, _ = _model(3, 2, attrs=attrs)
    _check(model, feed, False, monkeypatch)
