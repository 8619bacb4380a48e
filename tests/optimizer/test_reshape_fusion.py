"""ReshapeFusion: a Reshape of a Reshape, or a Reshape whose shape is computed from Shape nodes,
becomes one Reshape with a constant shape; shapes it cannot express stay computed."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass, session, step_ops


def _chain(second, allowzero=0):
    return model([helper.make_node("Reshape", ["x", "s1"], ["r1"]),
                  helper.make_node("Reshape", ["r1", "s2"], ["r2"], allowzero=allowzero),
                  helper.make_node("Neg", ["r2"], ["y"])],
                 [("x", 1, [2, 12])], [("y", 1, None)], [init("s1", np.int64([6, 4])), init("s2", np.int64(second))],
                 opset=18)


@pytest.mark.parametrize("second", [[4, 6], [-1, 3], [3, 2, 4]])
def test_reshape_of_a_reshape_reads_the_original(second):
    m = _chain(second)
    graph, n = run_pass(m, "ReshapeFusion")
    assert n == 1 and graph.nodes[1].inputs == ["x", "s2"]
    assert step_ops(session(m, ("ReshapeFusion", "DeadNodeElimination"))) == ["Reshape", "Neg"]  # the first went as dead
    check_outputs(m, {"x": np.arange(24, dtype=np.float32).reshape(2, 12)}, "ReshapeFusion")


def test_reshape_chain_with_a_copied_dim_stays():
    m = _chain([0, -1])  # 0 copies the 6 of the inner result, not the 2 of x
    graph, n = run_pass(m, "ReshapeFusion")
    assert n == 0 and graph.nodes[1].inputs == ["r1", "s2"]
    check_outputs(m, {"x": np.arange(24, dtype=np.float32).reshape(2, 12)}, "ReshapeFusion")


def _computed(x_shape, measured="x", measured_shape=None, index=0):
    """Reshape(x, Concat(Unsqueeze(Gather(Shape(measured), index)), [3, 4]))."""
    nodes = [helper.make_node("Shape", [measured], ["sh"]),
             helper.make_node("Gather", ["sh", "i"], ["d"], axis=0),
             helper.make_node("Unsqueeze", ["d", "ax"], ["du"]),
             helper.make_node("Concat", ["du", "rest"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Neg", ["r"], ["y"])]
    inputs = [("x", 1, x_shape)] + ([(measured, 1, measured_shape)] if measured != "x" else [])
    return model(nodes, inputs, [("y", 1, None)],
                 [init("i", np.int64(index)), init("ax", np.int64([0])), init("rest", np.int64([3, 4]))])


def test_computed_shape_of_its_own_dims_becomes_a_constant_with_0():
    m = _computed(["N", 12])
    graph, n = run_pass(m, "ReshapeFusion")
    assert n == 1
    reshape = graph.nodes[4]
    assert list(graph.initializers[reshape.inputs[1]]) == [0, 3, 4]
    assert step_ops(session(m, ("ReshapeFusion", "DeadNodeElimination"))) == ["Reshape", "Neg"]
    for rows in (1, 5):
        check_outputs(m, {"x": np.arange(rows * 12, dtype=np.float32).reshape(rows, 12)}, "ReshapeFusion")


def test_computed_shape_of_a_tensor_with_the_same_dim_name_fuses():
    m = _computed(["N", 12], measured="w", measured_shape=["N", 7])
    graph, n = run_pass(m, "ReshapeFusion")
    assert n == 1
    feeds = {"x": np.ones((2, 12), np.float32), "w": np.ones((2, 7), np.float32)}
    check_outputs(m, feeds, "ReshapeFusion")


@pytest.mark.parametrize("measured_shape,index", [(["M", 7], 0), (["N", "K"], 1)], ids=["other_dim_name", "other_axis"])
def test_computed_shape_it_cannot_express_stays(measured_shape, index):
    m = _computed(["N", 12], measured="w", measured_shape=measured_shape, index=index)
    graph, n = run_pass(m, "ReshapeFusion")
    assert n == 0 and graph.nodes[4].inputs[1] == "shape"
    feeds = {"x": np.ones((2, 12), np.float32), "w": np.ones((2, 7) if index == 0 else (5, 2), np.float32)}
    check_outputs(m, feeds, "ReshapeFusion")
