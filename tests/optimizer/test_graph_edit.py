"""The shared graph edits: renames reach into subgraphs but respect a subgraph's own values;
a bypassed node whose output is a graph output renames its input's producer instead."""
import numpy as np
from onnx import helper

from ortgpu.optimizer.graph_tools.graph_edit import Rewirer, rename_uses
from support.pass_check import loaded, model


def _if_model(then_defines_a):
    then_nodes = [helper.make_node("Neg", ["a"], ["o"])]
    if then_defines_a:
        then_nodes.insert(0, helper.make_node("Abs", ["x"], ["a"]))
    branch = helper.make_graph(then_nodes, "then", [], [helper.make_tensor_value_info("o", 1, [3])])
    other = helper.make_graph([], "else", [], [helper.make_tensor_value_info("a", 1, [3])])
    return model([helper.make_node("Relu", ["x"], ["a"]),
                  helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)],
                 [("x", 1, [3]), ("c", 9, [])], [("y", 1, [3])])


def test_rename_reaches_subgraph_reads_and_outputs():
    graph, _ = loaded(_if_model(then_defines_a=False))
    rename_uses(graph, {"a": "x"})
    node = graph.nodes[1]
    assert node.attrs["then_branch"].nodes[0].inputs == ["x"]
    assert [v.name for v in node.attrs["else_branch"].outputs] == ["x"]


def test_rename_stops_where_a_subgraph_defines_the_name():
    graph, _ = loaded(_if_model(then_defines_a=True))
    rename_uses(graph, {"a": "x"})
    assert graph.nodes[1].attrs["then_branch"].nodes[1].inputs == ["a"]  # its own a
    assert [v.name for v in graph.nodes[1].attrs["else_branch"].outputs] == ["x"]


def test_bypass_to_a_graph_output_renames_the_producer():
    m = model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["b"]),
               helper.make_node("Identity", ["b"], ["y"]), helper.make_node("Neg", ["a"], ["z"])],
              [("x", 1, [3])], [("y", 1, None), ("z", 1, None)])
    graph, _ = loaded(m)
    rw = Rewirer(graph)
    assert rw.bypass(graph.nodes[1], "a", "b") and rw.bypass(graph.nodes[2], "b", "y")
    assert rw.finish() == 2
    assert [(n.op_type, n.inputs, n.outputs) for n in graph.nodes] == [("Relu", ["x"], ["y"]), ("Neg", ["y"], ["z"])]


def test_bypass_from_an_input_to_an_output_is_refused():
    graph, _ = loaded(model([helper.make_node("Identity", ["x"], ["y"])], [("x", 1, [3])], [("y", 1, None)]))
    rw = Rewirer(graph)
    assert not rw.bypass(graph.nodes[0], "x", "y") and rw.finish() == 0 and len(graph.nodes) == 1
    assert np.array_equal(graph.nodes[0].inputs, ["x"])
