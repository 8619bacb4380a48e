"""EliminateIdentity: Identity nodes leave the graph; graph outputs keep their names."""
import numpy as np
from onnx import helper

from support.pass_check import check_outputs, model, ops, run_pass


def test_identity_chain_goes_and_the_graph_output_keeps_its_name():
    m = model([helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
               helper.make_node("Identity", ["r"], ["b"]), helper.make_node("Identity", ["b"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, [2, 3])])
    graph, n = run_pass(m, "EliminateIdentity")
    assert n == 3 and ops(graph) == ["Relu"]
    assert graph.nodes[0].inputs == ["x"] and graph.nodes[0].outputs == ["y"]
    check_outputs(m, {"x": np.float32([[-1, 2, -3], [4, -5, 6]])}, "EliminateIdentity")


def test_identity_from_a_graph_input_to_a_graph_output_stays():
    m = model([helper.make_node("Identity", ["x"], ["y"])], [("x", 1, [2])], [("y", 1, [2])])
    graph, n = run_pass(m, "EliminateIdentity")
    assert n == 0 and ops(graph) == ["Identity"]


def test_identity_between_two_graph_outputs_stays():
    m = model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["b"])],
              [("x", 1, [2])], [("a", 1, [2]), ("b", 1, [2])])
    graph, n = run_pass(m, "EliminateIdentity")
    assert n == 0 and ops(graph) == ["Relu", "Identity"]


def test_identity_read_inside_a_subgraph_is_renamed_there():
    branch = helper.make_graph([helper.make_node("Neg", ["a"], ["o"])], "then", [],
                               [helper.make_tensor_value_info("o", 1, [2])])
    other = helper.make_graph([helper.make_node("Abs", ["a"], ["o2"])], "else", [],
                              [helper.make_tensor_value_info("o2", 1, [2])])
    m = model([helper.make_node("Identity", ["x"], ["a"]),
               helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)],
              [("x", 1, [2]), ("c", 9, [])], [("y", 1, [2])])
    graph, n = run_pass(m, "EliminateIdentity")
    assert n == 1 and ops(graph) == ["If"]
    assert graph.nodes[0].attrs["then_branch"].nodes[0].inputs == ["x"]
    for c in (True, False):
        check_outputs(m, {"x": np.float32([-1, 2]), "c": np.array(c)}, "EliminateIdentity")
