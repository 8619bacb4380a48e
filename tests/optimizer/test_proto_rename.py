"""proto_rename (the value renaming the float16 converter and the QDQ writer share): readers move
to the new name in subgraphs too, unless a subgraph defines the name itself; a definition moves
for a node output or an initializer, and a graph input is refused by name."""
import pytest
from onnx import TensorProto, helper

from ortgpu.optimizer.graph_tools.proto_rename import rename_definition, rename_uses


def _graph():
    reads_outer = helper.make_graph([helper.make_node("Neg", ["v"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, [])])
    shadows = helper.make_graph([helper.make_node("Neg", ["w"], ["v"]), helper.make_node("Abs", ["v"], ["e"])], "else", [],
                                [helper.make_tensor_value_info("v", TensorProto.FLOAT, [])])
    nodes = [helper.make_node("Relu", ["x"], ["v"]), helper.make_node("Sigmoid", ["v"], ["s"]),
             helper.make_node("If", ["c"], ["y"], then_branch=reads_outer, else_branch=shadows)]
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                             [helper.make_tensor(n, TensorProto.FLOAT, [], [1.0]) for n in ("w", "k")])


def test_uses_move_into_subgraphs_but_not_shadowed_ones():
    g = _graph()
    rename_uses(g, {"v": "v2"})
    assert list(g.node[0].output) == ["v"] and list(g.node[1].input) == ["v2"]
    then_b, else_b = g.node[2].attribute[1].g, g.node[2].attribute[0].g   # sorted: else_branch, then_branch
    assert list(then_b.node[0].input) == ["v2"]
    assert list(else_b.node[1].input) == ["v"] and else_b.output[0].name == "v"


def test_definitions_move_and_graph_inputs_are_refused():
    g = _graph()
    rename_definition(g, "v", "v_new")
    rename_definition(g, "k", "k_new")
    assert list(g.node[0].output) == ["v_new"] and "k_new" in {t.name for t in g.initializer}
    with pytest.raises(ValueError, match="'x'"):
        rename_definition(g, "x", "x2")
