"""ConstantFolding: constant subgraphs and shapes known from the types become initializers;
random ops, overridable initializers, symbolic dims and oversized results stay computed."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.optimizer import constant_folding
from support.pass_check import INT64, check_outputs, init, model, optimized_and_plain, ops, run_pass, step_ops

ort = pytest.importorskip("onnxruntime")


def _fold_model(overridable):
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32([2.0]))),
             helper.make_node("Mul", ["k", "c"], ["kc"]),
             helper.make_node("Add", ["x", "kc"], ["y"]),
             helper.make_node("RandomUniformLike", ["x"], ["r"], seed=1.0),
             helper.make_node("Mul", ["r", "k"], ["rk"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])]
    if overridable:
        inputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [3]))
    g = helper.make_graph(nodes, "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("rk", TensorProto.FLOAT, [3])],
                          [numpy_helper.from_array(np.float32([1, 2, 3]), "c")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_constant_folding_folds_constants_only():
    folded, plain = optimized_and_plain(_fold_model(overridable=False))
    assert step_ops(folded) == ["Add", "RandomUniformLike", "Mul"]  # the random op and its user stay
    assert len(step_ops(plain)) == 5
    x = np.float32([1, 1, 1])
    np.testing.assert_array_equal(folded.run(["y"], {"x": x})[0], plain.run(["y"], {"x": x})[0])


def test_constant_folding_leaves_overridable_initializers_alone():
    sess, _ = optimized_and_plain(_fold_model(overridable=True))
    assert "Mul" in step_ops(sess)[:2]
    y = sess.run(["y"], {"x": np.float32([0, 0, 0]), "c": np.float32([5, 5, 5])})[0]
    np.testing.assert_array_equal(y, [10, 10, 10])


def _shape_model(x_shape, index):
    """y = x reshaped by Gather(Shape(x), index) rows: a shape computed from x's dims."""
    nodes = [helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Gather", ["sh", "i"], ["d"], axis=0),
             helper.make_node("Unsqueeze", ["d", "ax"], ["du"]), helper.make_node("Concat", ["du", "m1"], ["s"], axis=0),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    return model(nodes, [("x", 1, x_shape)], [("y", 1, None)],
                 [init("i", np.int64(index)), init("ax", np.int64([0])), init("m1", np.int64([-1]))])


def test_shapes_of_static_dims_fold_even_from_a_partly_symbolic_shape():
    m = _shape_model(["N", 4, 3], 1)
    graph, n = run_pass(m, "ConstantFolding")
    # Gather, Unsqueeze and Concat fold; the Shape itself (N is symbolic) is left to DeadNodeElimination
    assert n == 3 and ops(graph) == ["Shape", "Reshape"] and list(graph.initializers["s"]) == [4, -1]
    check_outputs(m, {"x": np.arange(24, dtype=np.float32).reshape(2, 4, 3)}, "ConstantFolding")


def test_shape_of_a_symbolic_dim_stays_computed():
    m = _shape_model(["N", 4, 3], 0)
    graph, n = run_pass(m, "ConstantFolding")
    assert n == 0 and ops(graph) == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]
    for rows in (1, 3):
        check_outputs(m, {"x": np.ones((rows, 4, 3), np.float32)}, "ConstantFolding")


def test_a_fold_larger_than_the_limit_stays_a_node(monkeypatch):
    m = model([helper.make_node("Tile", ["c", "r"], ["t"]), helper.make_node("Add", ["x", "t"], ["y"])],
              [("x", 1, [64])], [("y", 1, None)], [init("c", np.float32([1, 2])), init("r", np.int64([32]))])
    monkeypatch.setattr(constant_folding, "FOLD_LIMIT_BYTES", 200)  # the tiled constant has 256 bytes
    graph, n = run_pass(m, "ConstantFolding")
    assert n == 0 and ops(graph) == ["Tile", "Add"]
    monkeypatch.setattr(constant_folding, "FOLD_LIMIT_BYTES", 256)
    graph, n = run_pass(m, "ConstantFolding")
    assert n == 1 and ops(graph) == ["Add"]


def _branch_slice_model(ir_version=8, feed_w=False):
    """y = If(c, Slice(W)[1:3] + x, Neg(x)): the then-branch slices an outer-scope initializer
    W with constant bounds (as exported LSTMs reorder their gate weights inside a branch)."""
    then_g = helper.make_graph(
        [helper.make_node("Slice", ["W", "st", "en"], ["ws"]), helper.make_node("Add", ["ws", "x"], ["t"])],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.int64([1]), "st"), numpy_helper.from_array(np.int64([3]), "en")])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    inputs = [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])]
    if feed_w:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4]))
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
                          inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                          [numpy_helper.from_array(np.float32([1, 2, 3, 4]), "W")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version)


def _branch_ops(sess) -> list[str]:
    return [op for name, op, _ in sess.get_provider_assignment(include_subgraphs=True) if "/then_branch/" in name]


def test_a_slice_of_an_outer_weight_folds_inside_a_branch():
    m = _branch_slice_model()
    folded, plain = optimized_and_plain(m)
    assert _branch_ops(folded) == ["Add"] and _branch_ops(plain) == ["Slice", "Add"]
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for c in (True, False):
        feed = {"c": np.array(c), "x": np.float32([10, 20])}
        np.testing.assert_array_equal(folded.run(None, feed)[0], ref.run(None, feed)[0])


def test_an_overridable_outer_initializer_does_not_fold_inside_a_branch():
    m = _branch_slice_model(feed_w=True)  # W is a graph input with a default: a run may replace it
    sess, _ = optimized_and_plain(m)
    assert _branch_ops(sess) == ["Slice", "Add"]
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"c": np.array(True), "x": np.float32([10, 20]), "W": np.float32([5, 6, 7, 8])}
    got = sess.run(None, feed)[0]
    np.testing.assert_array_equal(got, ref.run(None, feed)[0])
    np.testing.assert_array_equal(got, [16, 27])


def test_a_branch_value_named_like_an_outer_constant_is_not_taken_for_it():
    """A subgraph input (a Loop body's carried value) that has the name of an outer initializer
    is the subgraph's own value: a node reading it does not fold."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Slice", ["W", "st", "en"], ["ws"]), helper.make_node("Add", ["ws", "ws"], ["W_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("W", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("W_out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.int64([1]), "st"), numpy_helper.from_array(np.int64([100]), "en"),
         numpy_helper.from_array(np.float32(1), "one")])
    g = helper.make_graph([helper.make_node("Loop", ["n", "", "x"], ["y"], body=body),
                           helper.make_node("Add", ["W", "z"], ["w"])], "g",  # W stays an initializer
                          [helper.make_tensor_value_info("n", TensorProto.INT64, []),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [5]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("w", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.float32([9, 9]), "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess, _ = optimized_and_plain(m)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"n": np.array(2, np.int64), "x": np.float32([1, 2, 3, 4, 5]), "z": np.float32([1, 1])}
    got = sess.run(None, feed)
    np.testing.assert_array_equal(got[0], [12, 16, 20])  # sliced and doubled twice
    for a, b in zip(got, ref.run(None, feed)):
        np.testing.assert_array_equal(a, b)
