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
