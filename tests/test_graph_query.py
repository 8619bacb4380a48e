"""The graph-query vocabulary (ortgpu/graph_query.py) against what onnx itself says of a model:
value types written by onnx.helper and inferred by onnx's shape inference, names walked by
onnx's own GraphProto fields."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ortgpu import graph_query as q
from ortgpu.graph import from_proto


def _model() -> onnx.ModelProto:
    body = helper.make_graph([helper.make_node("Add", ["x", "w"], ["inner"])], "then",
                             [], [helper.make_tensor_value_info("inner", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("SequenceConstruct", ["y", "y"], ["seq"]),
             helper.make_node("Shape", ["y"], ["shape"]),
             helper.make_node("If", ["flag"], ["branch"], then_branch=body, else_branch=body)]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 4]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None),
         helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT16, None),
         helper.make_tensor_value_info("shape", TensorProto.INT64, None),
         helper.make_tensor_value_info("branch", TensorProto.FLOAT16, None)],
        [onnx.numpy_helper.from_array(np.ones((4, 3), np.float16), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


@pytest.fixture(scope="module")
def inferred():
    model = _model()
    return model, from_proto(model.graph, {"": 17})


def _onnx_types(model):
    g = model.graph
    return {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)}


def test_element_types_and_dims_are_what_onnx_inferred(inferred):
    model, graph = inferred
    for name, tp in _onnx_types(model).items():
        if tp.WhichOneof("value") == "tensor_type":
            assert q.elem_type(graph, name) == tp.tensor_type.elem_type, name
            want = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in tp.tensor_type.shape.dim] if tp.tensor_type.HasField("shape") else None
            assert q.dims(graph, name) == want, name
            assert q.rank(graph, name) == (None if want is None else len(want))
    assert q.dims(graph, "y") == ["batch", 3]
    assert q.dtype_name(graph, "y") == "float16"


def test_a_sequence_or_an_unknown_value_is_not_a_tensor(inferred):
    model, graph = inferred
    types = _onnx_types(model)
    assert types["seq"].WhichOneof("value") == "sequence_type"
    assert q.tensor_type(types["seq"]) is None and q.tensor_type(None) is None
    assert q.tensor_type(types["x"]) is types["x"].tensor_type
    for name in ("seq", "no_such_value"):
        assert q.elem_type(graph, name) == 0
        assert q.dims(graph, name) is None and q.rank(graph, name) is None
        assert q.dtype_name(graph, name) is None


def test_an_initializer_answers_from_its_array(inferred):
    _, graph = inferred
    assert q.elem_type(graph, "w") == TensorProto.FLOAT16
    assert q.dims(graph, "w") == [4, 3]
    assert q.constants(graph, {"w"}) == {} and set(q.constants(graph, set())) == {"w"}


def test_add_initializer_takes_a_fresh_name_and_records_the_type():
    graph = from_proto(_model().graph, {"": 17})
    taken = {"y", "x", "w"}
    names = [q.add_initializer(graph, base, np.arange(3, dtype=np.int32)) for base in ("y", "x", "w", "y")]
    assert len(set(names)) == 4 and not set(names) & taken
    for name in names:
        assert q.elem_type(graph, name) == TensorProto.INT32 and q.dims(graph, name) == [3]
        assert q.tensor_type(graph.types[name]).elem_type == TensorProto.INT32


def test_readers_and_producers(inferred):
    _, graph = inferred
    readers = q.consumers(graph)
    assert sorted(n.op_type for n in readers["y"]) == ["SequenceConstruct", "SequenceConstruct", "Shape"]  # one per read
    assert [n.op_type for n in readers["x"]] == ["MatMul", "If", "If"]   # each If branch reads x
    assert q.producers(graph)["branch"].op_type == "If"
    assert q.output_names(graph) == {"y", "seq", "shape", "branch"}


def test_proto_walks_reach_into_subgraphs():
    g = _model().graph
    sub = list(q.proto_subgraphs(g.node[3]))
    assert [s.name for s in sub] == ["then", "then"]
    assert {"inner", "x", "w", "flag", "branch"} <= q.proto_names(g, set())
    assert {"x", "w", "inner", "y"} <= q.proto_reads(g, set())
