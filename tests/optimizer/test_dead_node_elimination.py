"""DeadNodeElimination: nodes whose outputs nobody needs go; what a subgraph reads stays."""
import numpy as np
from onnx import helper

from support.pass_check import check_outputs, model, ops, run_pass


def test_unread_nodes_go_and_read_ones_stay():
    m = model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["unused"]),
               helper.make_node("Abs", ["unused"], ["unused2"]), helper.make_node("Sigmoid", ["a"], ["y"])],
              [("x", 1, [3])], [("y", 1, None)])
    graph, n = run_pass(m, "DeadNodeElimination")
    assert n == 2 and ops(graph) == ["Relu", "Sigmoid"]
    check_outputs(m, {"x": np.float32([-1, 0, 2])}, "DeadNodeElimination")


def test_values_read_only_inside_a_subgraph_stay():
    branch = helper.make_graph([helper.make_node("Neg", ["a"], ["o"])], "then", [],
                               [helper.make_tensor_value_info("o", 1, [3])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["o2"])], "else", [],
                              [helper.make_tensor_value_info("o2", 1, [3])])
    m = model([helper.make_node("Relu", ["x"], ["a"]),
               helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)],
              [("x", 1, [3]), ("c", 9, [])], [("y", 1, [3])])
    graph, n = run_pass(m, "DeadNodeElimination")
    assert n == 0 and ops(graph) == ["Relu", "If"]
    check_outputs(m, {"x": np.float32([-1, 0, 2]), "c": np.array(True)}, "DeadNodeElimination")
