"""UnusedInitializerElimination: initializers nobody reads go; overridable ones stay."""
import numpy as np
from onnx import helper

from support.pass_check import init, model, run_pass


def test_unread_initializers_go_but_overridable_ones_stay():
    m = model([helper.make_node("Add", ["x", "k"], ["y"])], [("x", 1, [2]), ("fed", 1, [2])], [("y", 1, None)],
              [init("k", np.float32([1, 2])), init("dead", np.float32([3])), init("fed", np.float32([0, 0]))])
    graph, n = run_pass(m, "UnusedInitializerElimination")
    assert n == 1 and set(graph.initializers) == {"k", "fed"}
