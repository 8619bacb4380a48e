"""UnsqueezeElimination: Unsqueeze of a constant becomes an initializer; Squeeze(Unsqueeze(x))
with the same axes is x; other axes, or a Squeeze without axes, stay."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_unsqueeze_of_a_constant_becomes_an_initializer():
    m = model([helper.make_node("Unsqueeze", ["c", "ax"], ["u"]), helper.make_node("Add", ["x", "u"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, [2, 3])], [init("c", np.float32([1, 2, 3])), init("ax", np.int64([0]))])
    graph, n = run_pass(m, "UnsqueezeElimination")
    assert n == 1 and ops(graph) == ["Add"] and graph.initializers["u"].shape == (1, 3)
    check_outputs(m, {"x": X}, "UnsqueezeElimination")


def _pair(un_axes, sq_axes, x_shape=(2, 3), extra_reader=False, opset=17):
    nodes = [helper.make_node("Unsqueeze", ["x", "ua"], ["u"]), helper.make_node("Squeeze", ["u", "sa"], ["s"]),
             helper.make_node("Neg", ["s"], ["y"])]
    outs = [("y", 1, None)]
    if extra_reader:
        nodes.append(helper.make_node("Abs", ["u"], ["z"]))
        outs.append(("z", 1, None))
    inits = [init("ua", np.int64(un_axes))] + ([init("sa", np.int64(sq_axes))] if sq_axes is not None else [])
    if sq_axes is None:
        nodes[1] = helper.make_node("Squeeze", ["u"], ["s"])
    return model(nodes, [("x", 1, list(x_shape))], outs, inits, opset=opset)


@pytest.mark.parametrize("un_axes,sq_axes", [([1], [1]), ([0, 3], [3, 0]), ([-1], [2]), ([0], [-3])])
def test_squeeze_of_unsqueeze_on_the_same_axes_is_its_input(un_axes, sq_axes):
    m = _pair(un_axes, sq_axes)
    graph, n = run_pass(m, "UnsqueezeElimination")
    assert n == 1 and ops(graph) == ["Unsqueeze", "Neg"] and graph.nodes[1].inputs == ["x"]
    check_outputs(m, {"x": X}, "UnsqueezeElimination")


def test_unsqueeze_read_by_others_stays_while_the_squeeze_goes():
    m = _pair([1], [1], extra_reader=True)
    graph, n = run_pass(m, "UnsqueezeElimination")
    assert n == 1 and ops(graph) == ["Unsqueeze", "Neg", "Abs"]
    check_outputs(m, {"x": X}, "UnsqueezeElimination")


@pytest.mark.parametrize("un_axes,sq_axes,x_shape", [([1], [0], (1, 3)), ([0], None, (2, 1)), ([0, 1], [0], (2, 3))],
                         ids=["other_axis", "no_axes", "fewer_axes"])
def test_squeeze_that_does_not_undo_the_unsqueeze_stays(un_axes, sq_axes, x_shape):
    m = _pair(un_axes, sq_axes, x_shape)
    graph, n = run_pass(m, "UnsqueezeElimination")
    assert n == 0 and ops(graph) == ["Unsqueeze", "Squeeze", "Neg"]
    check_outputs(m, {"x": np.ones(x_shape, np.float32)}, "UnsqueezeElimination")


def test_old_opsets_take_axes_as_attributes():
    m = model([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]), helper.make_node("Squeeze", ["u"], ["s"], axes=[2]),
               helper.make_node("Neg", ["s"], ["y"])], [("x", 1, [2, 3])], [("y", 1, None)], opset=11)
    graph, n = run_pass(m, "UnsqueezeElimination")
    assert n == 1 and ops(graph) == ["Unsqueeze", "Neg"]
    check_outputs(m, {"x": X}, "UnsqueezeElimination")
