"""Regression tests of issue 18 items 1, 3 and 10, whose fixes belong to the executor and the
session (being rewritten elsewhere).  Each is marked xfail(strict=True) and fails today for
the reason its item names; remove the mark when the fix lands."""
from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
from device_double import providers as double_providers
from onnx import TensorProto as T
from onnx import helper as h

import ortgpu
from ortgpu import errors

ort.set_default_logger_severity(4)
CPU = ["CPUExecutionProvider"]


def _F(name, shape, t=T.FLOAT):
    return h.make_tensor_value_info(name, t, shape)


def _long_loop_model() -> bytes:
    """v = Loop(M){ v = Tanh(v @ W) }: M iterations of a small MatMul and Tanh."""
    body = h.make_graph(
        [h.make_node("Identity", ["c_in"], ["c_out"]), h.make_node("MatMul", ["v_in", "W"], ["p"]),
         h.make_node("Tanh", ["p"], ["v_out"])], "body",
        [_F("i", [], T.INT64), _F("c_in", [], T.BOOL), _F("v_in", [8, 8])], [_F("c_out", [], T.BOOL), _F("v_out", [8, 8])])
    g = h.make_graph([h.make_node("Loop", ["M", "", "v0"], ["v"], body=body)], "g",
                     [_F("M", [], T.INT64), _F("v0", [8, 8])], [_F("v", [8, 8])],
                     initializer=[h.make_tensor("W", T.FLOAT, [8, 8], np.eye(8, dtype=np.float32).ravel() * 0.5)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


# iterations: about a second in ortgpu today (CPU), longer than the delay in onnxruntime, which
# stops within milliseconds of the flag
_ITERATIONS = {"cpu": 60_000, "device_double": 10_000, "onnxruntime": 10_000_000}


def _terminated_run(sess, mod, iterations, delay=0.3):
    """Run the long loop with RunOptions.terminate set from another thread after `delay` s;
    returns (exception or None, seconds from setting the flag to the end of the run)."""
    ro = mod.RunOptions()
    result = {}

    def run():
        try:
            sess.run(None, {"M": np.array(iterations), "v0": np.ones((8, 8), np.float32)}, ro)
            result["error"] = None
        except Exception as e:  # noqa: BLE001 - the result
            result["error"] = e
        result["end"] = time.perf_counter()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(delay)
    ro.terminate = True
    t_set = time.perf_counter()
    t.join(60)
    return result.get("error"), result["end"] - t_set


def test_onnxruntime_stops_on_terminate():  # the oracle's behaviour the pending tests ask for
    err, after = _terminated_run(ort.InferenceSession(_long_loop_model(), providers=CPU), ort,
                                 _ITERATIONS["onnxruntime"])
    assert type(err).__name__ == "Fail" and after < 0.5


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue 18 item 1: RunOptions.terminate is read once before a run, never during it")
@pytest.mark.parametrize("where", ["cpu", "device_double"])
def test_terminate_stops_a_run_in_progress(where):
    providers = CPU if where == "cpu" else double_providers()
    sess = ortgpu.InferenceSession(_long_loop_model(), providers=providers)
    err, after = _terminated_run(sess, ortgpu, _ITERATIONS[where])
    assert isinstance(err, errors.Fail), f"the run was not stopped: {err!r}, it ended {after:.2f} s after terminate"
    assert "terminate" in err.message
    assert after < 0.5


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue 18 item 1: terminate on one thread's RunOptions must stop only that run, "
                          "during the run")
def test_terminate_on_one_thread_stops_only_that_run():
    sess = ortgpu.InferenceSession(_long_loop_model(), providers=CPU)
    short = {"M": np.array(3), "v0": np.ones((8, 8), np.float32)}
    want = sess.run(None, short)[0]
    failures = []

    def worker():
        ro = ortgpu.RunOptions()
        for _ in range(200):
            try:
                np.testing.assert_array_equal(sess.run(None, short, ro)[0], want)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(7)]
    for t in threads:
        t.start()
    err, after = _terminated_run(sess, ortgpu, _ITERATIONS["cpu"])
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    assert isinstance(err, errors.Fail) and after < 0.5, f"the long run was not stopped: {err!r}, {after:.2f} s"


# --- item 3: outputs never share memory with feeds, and are writable -------------------------
_VIEW_OPS = {
    "Identity": ([h.make_node("Identity", ["x"], ["y"])], []),
    "Reshape": ([h.make_node("Reshape", ["x", "s"], ["y"])], [h.make_tensor("s", T.INT64, [1], [6])]),
    "Transpose": ([h.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], []),
    "Squeeze": ([h.make_node("Squeeze", ["x", "a"], ["y"])], [h.make_tensor("a", T.INT64, [1], [0])]),
}


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue 18 item 3: outputs that are views of a feed share the caller's memory")
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


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue 18 item 3: outputs backed by initializers are read-only")
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


def _best_time(sess, feeds, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue 18 item 10: Loop iterations cost 3-8x onnxruntime's (per-iteration planning)")
def test_nested_loop_iterations_cost_at_most_twice_onnxruntime():
    m = _nested_loops(14, 2)
    feeds = {"M": np.array(2), "v0": np.zeros(1, np.float32)}
    ref = ort.InferenceSession(m, providers=CPU)
    got = ortgpu.InferenceSession(m, providers=CPU)
    np.testing.assert_array_equal(got.run(None, feeds)[0], ref.run(None, feeds)[0])
    t_ref, t_got = _best_time(ref, feeds), _best_time(got, feeds)
    assert t_got <= 2 * t_ref + 0.02, f"ortgpu {t_got:.3f} s, onnxruntime {t_ref:.3f} s for 16384 inner iterations"
