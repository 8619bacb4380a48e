"""ExpandElimination: an Expand that broadcasts nothing leaves the graph; one that grows stays."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass


def _expand_model(shape, x_shape):
    return model([helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("Neg", ["e"], ["y"])],
                 [("x", 1, x_shape)], [("y", 1, None)], [init("s", np.int64(shape))])


@pytest.mark.parametrize("shape,x_shape", [([1, 3], [2, 3]), ([3], [2, 3]), ([1], ["N", 3]), ([2, 1], [2, 3])])
def test_expand_that_broadcasts_nothing_goes(shape, x_shape):
    m = _expand_model(shape, x_shape)
    graph, n = run_pass(m, "ExpandElimination")
    assert n == 1 and ops(graph) == ["Neg"]
    check_outputs(m, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, "ExpandElimination")


@pytest.mark.parametrize("shape,x_shape", [([2, 2, 3], [2, 3]), ([4, 3], [1, 3]), ([2, 3], ["N", 3])],
                         ids=["adds_a_dim", "grows_a_dim", "symbolic_dim"])
def test_expand_that_broadcasts_stays(shape, x_shape):
    m = _expand_model(shape, x_shape)
    graph, n = run_pass(m, "ExpandElimination")
    assert n == 0 and ops(graph) == ["Expand", "Neg"]
    x = np.arange(3 if x_shape[0] == 1 else 6, dtype=np.float32).reshape(-1, 3)
    check_outputs(m, {"x": x}, "ExpandElimination")
