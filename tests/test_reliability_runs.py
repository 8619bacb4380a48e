"""Runs against onnxruntime: outputs never alias the caller's feeds or the model's constants,
nested Loops give onnxruntime's result (their speed: benchmarks/bench_loops.py).  Stopping a run
with RunOptions.terminate: tests/test_run_core.py."""
from __future__ import annotations


import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortgpu

ort.set_default_logger_severity(4)
CPU = ["CPUExecutionProvider"]


def _F(name, shape, t=T.FLOAT):
    return h.make_tensor_value_info(name, t, shape)


# --- item 3: outputs never share memory with feeds, and are writable -------------------------
_VIEW_OPS = {
    "Identity": ([h.make_node("Identity", ["x"], ["y"])], []),
    "Reshape": ([h.make_node("Reshape", ["x", "s"], ["y"])], [h.make_tensor("s", T.INT64, [1], [6])]),
    "Transpose": ([h.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], []),
    "Squeeze": ([h.make_node("Squeeze", ["x", "a"], ["y"])], [h.make_tensor("a", T.INT64, [1], [0])]),
}


@pytest.mark.parametrize("op", sorted(_VIEW_OPS))
def test_output_does_not_alias_the_feed(op):
    nodes, inits = _VIEW_OPS[op]
    shape = [1, 6] if op == "Squeeze" else [2, 3]
    m = h.make_model(h.make_graph(nodes, "g", [_F("x", shape)], [_F("y", None)], initializer=inits),
                     opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    for mod in (ort, ortgpu):
        x = np.arange(6, dtype=np.float32).reshape(shape)
        y = mod.InferenceSession(m, providers=CPU).run(None, {"x": x})[0]
        assert y.flags.writeable, f"{mod.__name__}: output not writable"
        y[...] = -1
        assert x.ravel()[1] == 1, f"{mod.__name__}: writing the output changed the feed"


def test_output_backed_by_an_initializer_is_writable_and_fresh():
    m = h.make_model(h.make_graph([h.make_node("Identity", ["w"], ["y"])], "g", [], [_F("y", [3])],
                                  initializer=[h.make_tensor("w", T.FLOAT, [3], [1, 2, 3])]),
                     opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    for mod in (ort, ortgpu):
        sess = mod.InferenceSession(m, providers=CPU)
        y = sess.run(None, {})[0]
        assert y.flags.writeable, f"{mod.__name__}: output backed by an initializer is read-only"
        y += 1
        np.testing.assert_array_equal(sess.run(None, {})[0], [1, 2, 3])


# --- item 10: Loop iterations cost about what they cost in onnxruntime -----------------------
def _nested_loops(depth: int, trips: int) -> bytes:
    """`depth` nested Loops of `trips` iterations each around one Add: trips**depth additions."""
    inner = h.make_graph([h.make_node("Identity", ["c0"], ["c1"]), h.make_node("Add", ["v_in", "one"], ["v_out"])], "b0",
                         [_F("i", [], T.INT64), _F("c0", [], T.BOOL), _F("v_in", [1])],
                         [_F("c1", [], T.BOOL), _F("v_out", [1])], initializer=[h.make_tensor("one", T.FLOAT, [1], [1.0])])
    for d in range(1, depth):
        inner = h.make_graph(
            [h.make_node("Identity", [f"c0_{d}"], [f"c1_{d}"]),
             h.make_node("Loop", [f"trip{d}", "", f"v_in{d}"], [f"v_out{d}"], body=inner)], f"b{d}",
            [_F(f"i{d}", [], T.INT64), _F(f"c0_{d}", [], T.BOOL), _F(f"v_in{d}", [1])],
            [_F(f"c1_{d}", [], T.BOOL), _F(f"v_out{d}", [1])], initializer=[h.make_tensor(f"trip{d}", T.INT64, [], [trips])])
    g = h.make_graph([h.make_node("Loop", ["M", "", "v0"], ["v"], body=inner)], "g",
                     [_F("M", [], T.INT64), _F("v0", [1])], [_F("v", [1])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def test_nested_loops_give_onnxruntimes_result():
    m = _nested_loops(8, 2)
    feeds = {"M": np.array(2), "v0": np.zeros(1, np.float32)}
    ref = ort.InferenceSession(m, providers=CPU)
    got = ortgpu.InferenceSession(m, providers=CPU)
    np.testing.assert_array_equal(got.run(None, feeds)[0], ref.run(None, feeds)[0])
