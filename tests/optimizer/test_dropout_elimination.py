"""EliminateDropout: an inference Dropout whose mask nobody reads leaves the graph."""
import numpy as np
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass

X = np.float32([[1, -2, 3], [4, 5, -6]])


def test_inference_dropout_goes():
    m = model([helper.make_node("Dropout", ["x", "r"], ["d"]), helper.make_node("Relu", ["d"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, [2, 3])], [init("r", np.float32(0.7))], opset=13)
    graph, n = run_pass(m, "EliminateDropout")
    assert n == 1 and ops(graph) == ["Relu"]
    check_outputs(m, {"x": X}, "EliminateDropout")


def test_constant_false_training_mode_goes_and_true_stays():
    def m(flag):
        return model([helper.make_node("Dropout", ["x", "r", "t"], ["d"]), helper.make_node("Neg", ["d"], ["y"])],
                     [("x", 1, [2, 3])], [("y", 1, [2, 3])],
                     [init("r", np.float32(0.5)), init("t", np.bool_(flag))], opset=13)
    assert run_pass(m(False), "EliminateDropout")[1] == 1
    assert run_pass(m(True), "EliminateDropout")[1] == 0


def test_training_mode_from_a_graph_input_stays():
    m = model([helper.make_node("Dropout", ["x", "", "t"], ["d"]), helper.make_node("Neg", ["d"], ["y"])],
              [("x", 1, [2, 3]), ("t", 9, [])],
              [("y", 1, [2, 3])], opset=13)
    assert run_pass(m, "EliminateDropout")[1] == 0


def test_dropout_whose_mask_is_read_stays():
    m = model([helper.make_node("Dropout", ["x"], ["d", "mask"]), helper.make_node("Neg", ["d"], ["y"])],
              [("x", 1, [2, 3])], [("y", 1, [2, 3]), ("mask", 9, [2, 3])], opset=13)
    graph, n = run_pass(m, "EliminateDropout")
    assert n == 0 and ops(graph) == ["Dropout", "Neg"]


def test_old_dropout_goes_only_with_is_test():
    def m(**attrs):
        return model([helper.make_node("Dropout", ["x"], ["y"], **attrs), helper.make_node("Neg", ["y"], ["z"])],
                     [("x", 1, [2, 3])], [("z", 1, [2, 3])], opset=6)
    assert run_pass(m(is_test=1), "EliminateDropout")[1] == 1
    assert run_pass(m(), "EliminateDropout")[1] == 0
