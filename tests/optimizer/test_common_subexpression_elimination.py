"""CommonSubexpressionElimination: a node computing what an earlier node computes goes; nodes
that differ in attributes, random ops and graph outputs stay."""
import numpy as np
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass

X = np.float32([[-1, 2, -3], [4, -5, 6]])


def test_repeated_computation_is_shared_along_a_chain():
    m = model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["b"]),
               helper.make_node("Add", ["a", "k"], ["c"]), helper.make_node("Add", ["b", "k"], ["d"]),
               helper.make_node("Mul", ["c", "d"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, None)], [init("k", np.float32(1.5))])
    graph, n = run_pass(m, "CommonSubexpressionElimination")
    assert n == 2 and ops(graph) == ["Relu", "Add", "Mul"] and graph.nodes[2].inputs == ["c", "c"]
    check_outputs(m, {"x": X}, "CommonSubexpressionElimination")


def test_different_attributes_stay():
    m = model([helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1), helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
               helper.make_node("Constant", [], ["z1"], value_float=0.0),
               helper.make_node("Constant", [], ["z2"], value_float=-0.0),
               helper.make_node("Add", ["a", "z1"], ["c"]), helper.make_node("Add", ["b", "z2"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, None), ("c", 1, None)])
    graph, n = run_pass(m, "CommonSubexpressionElimination")
    assert n == 0  # 0.0 and -0.0 are different constants
    check_outputs(m, {"x": X}, "CommonSubexpressionElimination")


def test_random_ops_stay():
    m = model([helper.make_node("RandomUniformLike", ["x"], ["a"]), helper.make_node("RandomUniformLike", ["x"], ["b"]),
               helper.make_node("Sub", ["a", "b"], ["y"])], [("x", 1, [2, 3])], [("y", 1, None)])
    graph, n = run_pass(m, "CommonSubexpressionElimination")
    assert n == 0 and len(graph.nodes) == 3


def test_duplicate_that_is_a_graph_output_stays():
    m = model([helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])],
              [("x", 1, [2, 3])], [("a", 1, None), ("b", 1, None)])
    graph, n = run_pass(m, "CommonSubexpressionElimination")
    assert n == 0
    check_outputs(m, {"x": X}, "CommonSubexpressionElimination")
