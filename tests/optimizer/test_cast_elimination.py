"""CastElimination: a Cast to the type its input has leaves the graph; one that converts stays."""
import numpy as np
from onnx import TensorProto, helper

from support.pass_check import check_outputs, model, ops, run_pass


def _cast_model(to):
    return model([helper.make_node("Cast", ["x"], ["c"], to=to), helper.make_node("Abs", ["c"], ["y"])],
                 [("x", TensorProto.FLOAT, [3])], [("y", to, [3])])


def test_cast_to_the_same_type_goes():
    graph, n = run_pass(_cast_model(TensorProto.FLOAT), "CastElimination")
    assert n == 1 and ops(graph) == ["Abs"]
    check_outputs(_cast_model(TensorProto.FLOAT), {"x": np.float32([-1.5, 2, 3])}, "CastElimination")


def test_cast_that_changes_the_type_stays():
    graph, n = run_pass(_cast_model(TensorProto.FLOAT16), "CastElimination")
    assert n == 0 and ops(graph) == ["Cast", "Abs"]
    out = check_outputs(_cast_model(TensorProto.FLOAT16), {"x": np.float32([-1.5, 2, 3])}, "CastElimination")
    assert out[0].dtype == np.float16
