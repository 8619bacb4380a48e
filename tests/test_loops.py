"""Loop, Scan and If on the fast paths of issue 18 item 10 (a subgraph's value list reused from
one call to the next, the Loop's scalars read directly, shared read-only condition and
iteration tensors, Identity without a call), each checked against onnxruntime."""
from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.errors import Fail

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _v(name, t=F, shape=None):
    return helper.make_tensor_value_info(name, t, shape)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _both(model: bytes, feeds: dict, runs: int = 2):
    """ortgpu's and onnxruntime's outputs; ortgpu runs `runs` times (the second run reuses
    everything the first built) and must give the same answer each time."""
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = theirs.run(None, feeds)
    outs = [mine.run(None, feeds) for _ in range(runs)]
    for got in outs:
        assert len(got) == len(ref)
        for a, r in zip(got, ref):
            assert a.dtype == r.dtype and a.shape == r.shape, (a.dtype, a.shape, r.dtype, r.shape)
            np.testing.assert_allclose(a, r, rtol=1e-6, atol=1e-6)
    return outs[0], ref


def _counting_body(extra_nodes=(), extra_outputs=()):
    """Body: (i, cond, acc [2], n scalar int64) -> (cond, acc + i, n + 1, scans...)."""
    nodes = [helper.make_node("Identity", ["c_in"], ["c_out"]),
             helper.make_node("Cast", ["i"], ["i_f"], to=F),
             helper.make_node("Add", ["acc_in", "i_f"], ["acc_out"]),
             helper.make_node("Add", ["n_in", "one"], ["n_out"]), *extra_nodes]
    return helper.make_graph(
        nodes, "body", [_v("i", I64, []), _v("c_in", B, []), _v("acc_in", F, [2]), _v("n_in", I64, [])],
        [_v("c_out", B, []), _v("acc_out", F, [2]), _v("n_out", I64, []), *extra_outputs],
        [helper.make_tensor("one", I64, [], [1])])


@pytest.mark.parametrize("trips", [0, 1, 3, 1030])  # 1030 runs past the cached iteration tensors
def test_carried_values_and_scan_outputs_of_the_iteration_number(trips):
    body = _counting_body([helper.make_node("Identity", ["i"], ["i_scan"]),
                           helper.make_node("Mul", ["acc_out", "acc_out"], ["sq"])],
                          [_v("i_scan", I64, []), _v("sq", F, [2])])
    model = _model([helper.make_node("Loop", ["M", "", "acc0", "n0"], ["acc", "n", "is", "sqs"], body=body)],
                   [_v("M", I64, []), _v("acc0", F, [2]), _v("n0", I64, [])],
                   [_v("acc", F, [2]), _v("n", I64, []), _v("is", I64, [None]), _v("sqs", F, [None, 2])])
    feeds = {"M": np.array(trips, np.int64), "acc0": np.array([0.5, -1], np.float32), "n0": np.array(7, np.int64)}
    (acc, n, i_s, sqs), _ = _both(model, feeds)
    assert n == 7 + trips and list(i_s) == list(range(trips))
    i_s[:] = -1  # the caller's own arrays: writable, and the next run is unaffected
    again = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[2]
    assert list(again) == list(range(trips))


def test_a_condition_false_at_the_start_runs_no_iteration():
    body = _counting_body([helper.make_node("Identity", ["acc_out"], ["scan"])], [_v("scan", F, [2])])
    model = _model([helper.make_node("Loop", ["M", "c", "acc0", "n0"], ["acc", "n", "scans"], body=body)],
                   [_v("M", I64, []), _v("c", B, []), _v("acc0", F, [2]), _v("n0", I64, [])],
                   [_v("acc", F, [2]), _v("n", I64, []), _v("scans", F, [None, 2])])
    for cond in (False, True):
        feeds = {"M": np.array(4, np.int64), "c": np.array(cond), "acc0": np.ones(2, np.float32),
                 "n0": np.array(0, np.int64)}
        (acc, n, scans), _ = _both(model, feeds)
        assert n == (4 if cond else 0) and scans.shape == ((4, 2) if cond else (0, 2))


def test_a_condition_computed_by_the_body_and_no_trip_count():
    """cond_out = (i + 1 < limit): the body ignores its condition input; no M."""
    body = helper.make_graph(
        [helper.make_node("Add", ["i", "one"], ["i1"]), helper.make_node("Less", ["i1", "limit"], ["c_out"]),
         helper.make_node("Mul", ["v_in", "two"], ["v_out"])],
        "body", [_v("i", I64, []), _v("c_in", B, []), _v("v_in", F, [3])], [_v("c_out", B, []), _v("v_out", F, [3])],
        [helper.make_tensor("one", I64, [], [1]), helper.make_tensor("two", F, [], [2.0])])
    model = _model([helper.make_node("Loop", ["", "c", "v0"], ["v"], body=body)],
                   [_v("c", B, []), _v("v0", F, [3]), _v("limit", I64, [])], [_v("v", F, [3])])
    for limit in (1, 5):
        (v,), _ = _both(model, {"c": np.array(True), "v0": np.arange(3, dtype=np.float32),
                                "limit": np.array(limit, np.int64)})
        np.testing.assert_array_equal(v, np.arange(3) * 2.0 ** limit)


def test_a_body_that_ignores_its_iteration_number_and_reads_the_condition_as_a_value():
    """The condition is carried out as a value (a bool output of the loop): the shared
    read-only tensor must come back as the caller's own writable array."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["c_in"], ["b_out"])],
        "body", [_v("i", I64, []), _v("c_in", B, []), _v("b_in", B, [])], [_v("c_out", B, []), _v("b_out", B, [])])
    model = _model([helper.make_node("Loop", ["M", "", "b0"], ["b"], body=body)],
                   [_v("M", I64, []), _v("b0", B, [])], [_v("b", B, [])])
    (b,), _ = _both(model, {"M": np.array(3, np.int64), "b0": np.array(False)})
    assert b.flags.writeable
    b[...] = False
    (b2,), _ = _both(model, {"M": np.array(3, np.int64), "b0": np.array(False)})
    assert bool(b2) is True


def _nested(depth: int) -> bytes:
    """`depth` nested Loops; each level's body adds an outer-scope value of the top graph
    ("step") and one of its enclosing body ("bias_k", computed there) to the carried value."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c0"], ["c1"]), helper.make_node("Add", ["v_in", "step"], ["s"]),
         helper.make_node("Add", ["s", f"bias{depth - 1}"], ["v_out"])],
        "b0", [_v("i", I64, []), _v("c0", B, []), _v("v_in", F, [2])], [_v("c1", B, []), _v("v_out", F, [2])])
    for d in range(1, depth):
        body = helper.make_graph(
            [helper.make_node("Identity", [f"c0_{d}"], [f"c1_{d}"]),
             helper.make_node("Cast", [f"i{d}"], [f"if{d}"], to=F),
             helper.make_node("Add", [f"if{d}", f"bias{depth - d - 1}"], [f"bias{depth - d}"]),
             helper.make_node("Loop", ["trip", "", f"v_in{d}"], [f"v_out{d}"], body=body)],
            f"b{d}", [_v(f"i{d}", I64, []), _v(f"c0_{d}", B, []), _v(f"v_in{d}", F, [2])],
            [_v(f"c1_{d}", B, []), _v(f"v_out{d}", F, [2])])
    return _model([helper.make_node("Neg", ["step"], ["bias0"]),
                   helper.make_node("Loop", ["trip", "", "v0"], ["v"], body=body)],
                  [_v("trip", I64, []), _v("v0", F, [2]), _v("step", F, [2])], [_v("v", F, [2])])


@pytest.mark.parametrize("depth", [2, 4])
def test_nested_loops_read_outer_scope_values_of_every_level(depth):
    feeds = {"trip": np.array(3, np.int64), "v0": np.array([0, 1], np.float32), "step": np.array([1, 0.25], np.float32)}
    _both(_nested(depth), feeds)


def test_if_inside_a_loop_and_scan_with_an_outer_value():
    then_g = helper.make_graph([helper.make_node("Add", ["v_in", "w"], ["t"])], "then", [], [_v("t", F, [2])])
    else_g = helper.make_graph([helper.make_node("Sub", ["v_in", "w"], ["e"])], "else", [], [_v("e", F, [2])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Mod", ["i", "two"], ["r"]), helper.make_node("Equal", ["r", "zero"], ["even"]),
         helper.make_node("If", ["even"], ["v_out"], then_branch=then_g, else_branch=else_g)],
        "body", [_v("i", I64, []), _v("c_in", B, []), _v("v_in", F, [2])], [_v("c_out", B, []), _v("v_out", F, [2])],
        [helper.make_tensor("two", I64, [], [2]), helper.make_tensor("zero", I64, [], [0])])
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["st_in", "x_t"], ["sum"]), helper.make_node("Mul", ["sum", "w"], ["st_out"]),
         helper.make_node("Identity", ["sum"], ["y_t"])],
        "scan_body", [_v("st_in", F, [2]), _v("x_t", F, [2])], [_v("st_out", F, [2]), _v("y_t", F, [2])])
    model = _model([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body),
                    helper.make_node("Scan", ["v", "xs"], ["st", "ys"], body=scan_body, num_scan_inputs=1)],
                   [_v("M", I64, []), _v("v0", F, [2]), _v("w", F, [2]), _v("xs", F, [4, 2])],
                   [_v("v", F, [2]), _v("st", F, [2]), _v("ys", F, [4, 2])])
    rng = np.random.default_rng(0)
    _both(model, {"M": np.array(5, np.int64), "v0": rng.standard_normal(2).astype(np.float32),
                  "w": np.array([0.5, -0.25], np.float32), "xs": rng.standard_normal((4, 2)).astype(np.float32)})


def test_loops_under_the_profiler_give_the_same_answers():
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = "/tmp/ortgpu_test_loops_profile"
    feeds = {"trip": np.array(2, np.int64), "v0": np.array([0, 1], np.float32), "step": np.array([1, 2], np.float32)}
    model = _nested(3)
    s = ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    got = s.run(None, feeds)[0]
    import os  # noqa: PLC0415
    os.remove(s.end_profiling())
    np.testing.assert_array_equal(got, ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0])


def test_terminate_stops_an_endless_loop_whose_body_has_no_step():
    """Body outputs are its inputs (no node at all), no trip count, condition true: only the
    per-iteration read of the terminate flag can stop it."""
    body = helper.make_graph([], "body", [_v("i", I64, []), _v("c_in", B, []), _v("v_in", F, [1])],
                             [_v("c_in", B, []), _v("v_in", F, [1])])
    model = _model([helper.make_node("Loop", ["", "c", "v0"], ["v"], body=body)],
                   [_v("c", B, []), _v("v0", F, [1])], [_v("v", F, [1])])
    s = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ro = ortgpu.RunOptions()
    timer = threading.Timer(0.3, lambda: setattr(ro, "terminate", True))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(Fail, match="terminate flag"):
        s.run(None, {"c": np.array(True), "v0": np.zeros(1, np.float32)}, ro)
    assert time.perf_counter() - t0 < 5
    timer.join()


def test_a_loop_runs_again_after_a_failed_iteration():
    """A body that fails on one run (a Gather index out of range) leaves nothing behind."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Gather", ["table", "i"], ["g"]),
         helper.make_node("Add", ["v_in", "g"], ["v_out"])],
        "body", [_v("i", I64, []), _v("c_in", B, []), _v("v_in", F, [])], [_v("c_out", B, []), _v("v_out", F, [])])
    model = _model([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)],
                   [_v("M", I64, []), _v("v0", F, []), _v("table", F, [4])], [_v("v", F, [])])
    s = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    table = np.array([1, 2, 3, 4], np.float32)
    with pytest.raises(Exception) as info:
        s.run(None, {"M": np.array(6, np.int64), "v0": np.array(0, np.float32), "table": table})
    assert isinstance(info.value, ortgpu.errors._OrtError)
    feeds = {"M": np.array(3, np.int64), "v0": np.array(0, np.float32), "table": table}
    assert s.run(None, feeds)[0] == 6 == ort.InferenceSession(model).run(None, feeds)[0]


def _if_model(cond_shape):
    """y, z = If(c): then (x + w, x * w) reading two outer values; else (Neg(x), Identity(w)):
    one branch output is an outer value handed through."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["t"]), helper.make_node("Mul", ["x", "w"], ["t2"])],
                               "then", [], [_v("t", F, [2]), _v("t2", F, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"]), helper.make_node("Identity", ["w"], ["e2"])],
                               "else", [], [_v("e", F, [2]), _v("e2", F, [2])])
    return _model([helper.make_node("If", ["c"], ["y", "z"], then_branch=then_g, else_branch=else_g)],
                  [_v("c", B, cond_shape), _v("x", F, [2]), _v("w", F, [2])], [_v("y", F, [2]), _v("z", F, [2])])


@pytest.mark.parametrize("cond_shape", [[], [1], [1, 1]])
@pytest.mark.parametrize("cond", [True, False])
def test_if_runs_the_branch_its_condition_picks(cond_shape, cond):
    feeds = {"c": np.full(cond_shape, cond), "x": np.array([1, -2], np.float32), "w": np.array([3, 4], np.float32)}
    got, _ = _both(_if_model(cond_shape), feeds, runs=3)
    # the else-branch hands out the caller's own `w`: a copy, as onnxruntime returns
    assert cond or not np.shares_memory(got[1], feeds["w"])


@pytest.mark.parametrize("cond_shape", [[2], [0], [1, 2]])
def test_if_refuses_a_condition_of_other_than_one_element(cond_shape):
    model = _if_model(None)
    feeds = {"c": np.ones(cond_shape, bool), "x": np.zeros(2, np.float32), "w": np.zeros(2, np.float32)}
    with pytest.raises(Exception, match="exactly one element"):
        ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    with pytest.raises(Fail, match="running If node.*If nodes condition input must have exactly one element"):
        ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_nested_ifs_and_a_failing_branch_name_the_inner_node():
    inner_then = helper.make_graph([helper.make_node("Gather", ["x", "k"], ["g"], name="inner_gather")],
                                   "it", [], [_v("g", F, None)])
    inner_else = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "ie", [], [_v("n", F, None)])
    outer_then = helper.make_graph([helper.make_node("If", ["c2"], ["r"], then_branch=inner_then,
                                                     else_branch=inner_else, name="inner_if")],
                                   "ot", [], [_v("r", F, None)])
    outer_else = helper.make_graph([helper.make_node("Abs", ["x"], ["a"])], "oe", [], [_v("a", F, None)])
    model = _model([helper.make_node("If", ["c1"], ["y"], then_branch=outer_then, else_branch=outer_else)],
                   [_v("c1", B, []), _v("c2", B, []), _v("x", F, [3]), _v("k", I64, [])], [_v("y", F, None)])
    x = np.array([1, -2, 3], np.float32)
    for c1 in (True, False):
        for c2 in (True, False):
            _both(model, {"c1": np.array(c1), "c2": np.array(c2), "x": x, "k": np.array(-1, np.int64)})
    with pytest.raises(ortgpu.errors._OrtError, match="inner_gather"):
        ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
            None, {"c1": np.array(True), "c2": np.array(True), "x": x, "k": np.array(7, np.int64)})


def test_if_with_a_traced_kernel_takes_the_general_path():
    """A kernel swapped in on the step (a tracer wraps it) has no branch selector: the If still
    runs, through the bound-subgraph path, with the same results."""
    s = ortgpu.InferenceSession(_if_model([]), providers=["CPUExecutionProvider"])
    step = s._core.plan.steps[0]
    calls = []
    original = step.fn

    def traced(ctx, *args, **kw):
        calls.append(ctx.op_type)
        return original(ctx, *args, **kw)
    step.fn = traced
    feeds = {"c": np.array(True), "x": np.array([1, -2], np.float32), "w": np.array([3, 4], np.float32)}
    got = s.run(None, feeds)
    assert calls == ["If"]
    for a, r in zip(got, ort.InferenceSession(_if_model([])).run(None, feeds)):
        np.testing.assert_array_equal(a, r)
