"""Types inferred again after rewrites: folded constants sharpen shapes, and the -1 of a
Reshape is named when the element counts say which dim it is."""
import numpy as np
from onnx import helper

from ortgpu.graph_query import dims
from ortgpu.optimizer.graph_tools.type_refresh import refresh_types
from support.pass_check import init, loaded, model


def test_reshape_minus_one_gets_the_name_of_the_dim_it_stands_for():
    m = model([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
              [("x", 1, ["batch", 1, 768])], [("y", 1, None)], [init("s", np.int64([-1, 768]))])
    graph, _ = loaded(m)
    assert dims(graph, "y") == [None, 768]  # what onnx infers
    refresh_types(graph)
    assert dims(graph, "r") == ["batch", 768] and dims(graph, "y") == ["batch", 768]


def test_minus_one_over_two_symbols_stays_unknown():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"])], [("x", 1, ["a", "b", 4])], [("y", 1, None)],
              [init("s", np.int64([-1, 4]))])
    graph, _ = loaded(m)
    refresh_types(graph)
    assert dims(graph, "y") == [None, 4]


def test_folded_constant_lets_a_broadcast_keep_its_dim_name():
    m = model([helper.make_node("Add", ["x", "k"], ["y"])], [("x", 1, ["batch", 3]), ("k", 1, None)],
              [("y", 1, None)], [init("k", np.float32([[1, 2, 3]]))], ir_version=3)
    graph, _ = loaded(m)
    assert dims(graph, "y") != ["batch", 3]  # k, a graph input of unknown shape, could broadcast
    graph.inputs = graph.inputs[:1]  # as if k had become a constant of known shape
    refresh_types(graph)
    assert dims(graph, "y") == ["batch", 3]
