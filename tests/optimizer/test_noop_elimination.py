"""NoopElimination: x + 0, x * 1, x - 0, x / 1 with a neutral constant that changes neither
shape nor type leave the graph; everything else stays."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass

X = np.float32([[1.5, -2, 3], [4, -5, 6]])


def _model(op, const, const_first=False, x_shape=(2, 3)):
    ins = ["k", "x"] if const_first else ["x", "k"]
    return model([helper.make_node(op, ins, ["a"]), helper.make_node("Neg", ["a"], ["y"])],
                 [("x", 1, list(x_shape))], [("y", 1, None)], [init("k", const)])


@pytest.mark.parametrize("op,const,first", [
    ("Add", np.float32(0), False), ("Add", np.zeros(3, np.float32), True), ("Sub", np.zeros((1, 3), np.float32), False),
    ("Mul", np.float32([1]), True), ("Mul", np.ones((2, 1), np.float32), False), ("Div", np.float32(1), False),
])
def test_neutral_arithmetic_goes(op, const, first):
    m = _model(op, const, first)
    graph, n = run_pass(m, "NoopElimination")
    assert n == 1 and ops(graph) == ["Neg"]
    check_outputs(m, {"x": X}, "NoopElimination")


@pytest.mark.parametrize("op,const,first", [
    ("Sub", np.float32(0), True),                  # 0 - x
    ("Div", np.float32(1), True),                  # 1 / x
    ("Add", np.zeros((1, 2, 3), np.float32), False),  # grows the rank
    ("Mul", np.ones((4, 1), np.float32), False),   # broadcasts x's single row to 4
    ("Add", np.float32([0, 1e-9, 0]), False),      # not all zero
    ("Mul", np.float32(0), False),                 # 0 is not neutral for Mul
], ids=["zero_minus_x", "one_over_x", "grows_rank", "grows_dim", "not_all_zero", "mul_by_zero"])
def test_other_arithmetic_stays(op, const, first):
    x = X[:1] if const.shape == (4, 1) else X
    m = _model(op, const, first, x.shape)
    graph, n = run_pass(m, "NoopElimination")
    assert n == 0 and ops(graph) == [op, "Neg"]
    check_outputs(m, {"x": x}, "NoopElimination")
