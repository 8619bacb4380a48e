"""ConstantSharing: equal small constants become one, so CSE can see equal computations."""
import numpy as np
from onnx import helper

from support.pass_check import check_outputs, init, model, run_pass, session, step_ops

X = np.float32([1, 2, 3])


def _model(k1, k2, overridable=False):
    nodes = [helper.make_node("Add", ["x", "k1"], ["a"]), helper.make_node("Add", ["x", "k2"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    inputs = [("x", 1, [3])] + ([("k2", 1, [3])] if overridable else [])
    return model(nodes, inputs, [("y", 1, None)], [init("k1", k1), init("k2", k2)])


def test_equal_constants_are_shared_and_their_uses_merged():
    m = _model(np.float32([1, 2, 3]), np.float32([1, 2, 3]))
    graph, n = run_pass(m, "ConstantSharing")
    assert n == 1 and graph.nodes[1].inputs == ["x", "k1"]
    both = session(m)  # with CommonSubexpressionElimination the second Add goes too
    assert step_ops(both) == ["Add", "Mul"]
    check_outputs(m, {"x": X})


def test_same_bytes_of_another_dtype_or_an_overridable_initializer_are_not_shared():
    # k1 int32 and k2 float32 with the same bytes, each added to an input of its own type
    typed = model([helper.make_node("Add", ["i", "k1"], ["a"]), helper.make_node("Add", ["x", "k2"], ["b"])],
                  [("i", 6, [3]), ("x", 1, [3])], [("a", 6, None), ("b", 1, None)],
                  [init("k1", np.float32([1, 2, 3]).view(np.int32)), init("k2", np.float32([1, 2, 3]))])
    assert run_pass(typed, "ConstantSharing")[1] == 0
    m = _model(np.float32([1, 2, 3]), np.float32([1, 2, 3]), overridable=True)
    assert run_pass(m, "ConstantSharing")[1] == 0
    y = session(m).run(None, {"x": X, "k2": np.float32([0, 0, 0])})[0]
    np.testing.assert_array_equal(y, (X + [1, 2, 3]) * X)
