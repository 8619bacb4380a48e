"""LSTM, GRU and RNN of the sizes small streaming models run (silero_vad: one step, batch 1,
hidden 128) against onnxruntime (layout 1, which its CPU LSTM refuses, as layout 0 on the
transposed data): one direction (Y and the final states as new axes of the step results, no
stack), two directions, both layouts, with and without clip, the activations the kernel calls
directly (Sigmoid, Tanh) and others through their parameters."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu

F = TensorProto.FLOAT


def _lstm_model(T, B, I, H, D, layout, attrs):
    shape_x = [B, T, I] if layout else [T, B, I]
    shape_s = [B, D, H] if layout else [D, B, H]
    inputs = [helper.make_tensor_value_info("X", F, shape_x), helper.make_tensor_value_info("W", F, [D, 4 * H, I]),
              helper.make_tensor_value_info("R", F, [D, 4 * H, H]), helper.make_tensor_value_info("B", F, [D, 8 * H]),
              helper.make_tensor_value_info("h0", F, shape_s), helper.make_tensor_value_info("c0", F, shape_s)]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=H,
                            layout=layout, direction="bidirectional" if D == 2 else "forward", **attrs)
    outs = [helper.make_tensor_value_info(n, F, None) for n in ("Y", "Y_h", "Y_c")]
    g = helper.make_graph([node], "g", inputs, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()


def _feeds(T, B, I, H, D, layout, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    s = (B, D, H) if layout else (D, B, H)
    return {"X": f(B, T, I) if layout else f(T, B, I), "W": f(D, 4 * H, I), "R": f(D, 4 * H, H),
            "B": f(D, 8 * H), "h0": f(*s), "c0": f(*s)}


@pytest.mark.parametrize("T,B,D", [(1, 1, 1), (3, 2, 1), (1, 1, 2), (4, 3, 2)])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("attrs", [{}, {"clip": 0.4}, {"activations": ["sigmoid", "TANH", "Tanh"] * 2},
                                   {"activations": ["HardSigmoid", "Tanh", "Relu"] * 2,
                                    "activation_alpha": [0.3, 0.3], "activation_beta": [0.4, 0.4]}],
                         ids=["default", "clip", "named", "parametrized"])
def test_lstm_matches_onnxruntime(T, B, D, layout, attrs):
    I, H = 8, 16
    if "activations" in attrs:
        attrs = {**attrs, "activations": attrs["activations"][:3 * D]}
        if "activation_alpha" in attrs:
            attrs["activation_alpha"] = attrs["activation_alpha"][:D]
            attrs["activation_beta"] = attrs["activation_beta"][:D]
    model = _lstm_model(T, B, I, H, D, layout, attrs)
    feeds = _feeds(T, B, I, H, D, layout)
    if layout:  # onnxruntime's CPU LSTM refuses layout 1: it runs layout 0 on the transposed data
        seq_first = {**feeds, "X": feeds["X"].transpose(1, 0, 2), "h0": feeds["h0"].transpose(1, 0, 2),
                     "c0": feeds["c0"].transpose(1, 0, 2)}
        y, y_h, y_c = ort.InferenceSession(_lstm_model(T, B, I, H, D, 0, attrs),
                                           providers=["CPUExecutionProvider"]).run(None, seq_first)
        ref = [y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2)]
    else:
        ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, r in zip(got, ref):
        assert a.dtype == r.dtype and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)
    y, y_h, y_c = got  # three arrays of the caller's own: no output views another
    assert not np.shares_memory(y, y_h) and not np.shares_memory(y_h, y_c)
    assert not any(np.shares_memory(o, v) for o in got for v in feeds.values())


@pytest.mark.parametrize("op,gates", [("GRU", 3), ("RNN", 1)])
@pytest.mark.parametrize("D", [1, 2])
def test_gru_and_rnn_of_one_step_match_onnxruntime(op, gates, D):
    T, B, I, H = 1, 1, 8, 16
    rng = np.random.default_rng(3)
    f = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    feeds = {"X": f(T, B, I), "W": f(D, gates * H, I), "R": f(D, gates * H, H), "B": f(D, 2 * gates * H),
             "h0": f(D, B, H)}
    inputs = [helper.make_tensor_value_info(k, F, list(v.shape)) for k, v in feeds.items()]
    node = helper.make_node(op, ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"], hidden_size=H,
                            direction="bidirectional" if D == 2 else "forward")
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(n, F, None) for n in ("Y", "Y_h")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString()
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, r in zip(got, ref):
        assert a.dtype == r.dtype and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)
