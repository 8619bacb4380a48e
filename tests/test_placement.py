"""ortgpu.placement: one answer to "which provider runs this node", for the partitioner and
for the fusion passes alike."""
import numpy as np
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from support.device_double import FakeDeviceExecutionProvider
from ortgpu.graph import from_proto
from ortgpu.placement import choose, provider_of
from ortgpu.partition import Placed, partition
from ortgpu.providers.cpu import CPUExecutionProvider


class RefusesFloatOutputs(FakeDeviceExecutionProvider):
    """A device that has the kernels but refuses every node with a float32 output."""
    name = "RefusesFloatOutputs"

    def accepts(self, node, kernel, input_types, output_types=()):
        if any(tp is not None and tp.tensor_type.elem_type == TensorProto.FLOAT for tp in output_types):
            return False
        return super().accepts(node, kernel, input_types, output_types)


class CPUWithoutBiasGelu(CPUExecutionProvider):
    """The CPU, without a kernel for the fused op BiasGelu."""
    name = "CPUWithoutBiasGelu"

    def kernel_for(self, op_type, domain, opset):
        return None if op_type == "BiasGelu" else super().kernel_for(op_type, domain, opset)


def _bias_gelu_model():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "bias"], ["a"], name="add"),
             helper.make_node("Gelu", ["a"], ["y"], name="gelu")]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bias")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def test_a_fusion_is_granted_only_where_the_partitioner_places_its_anchor():
    model = _bias_gelu_model()
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ortgpu.InferenceSession(model.SerializeToString(), so,
                                   providers=[RefusesFloatOutputs(), CPUWithoutBiasGelu()])
    placed = {op: prov for _, op, prov in sess.get_provider_assignment()}
    # The device would have a BiasGelu kernel, but the partitioner puts Gelu (float32 output)
    # on the CPU, which has none: the fusion is not granted, Gelu runs where placement says.
    assert "BiasGelu" not in placed
    assert placed["Gelu"] == "CPUWithoutBiasGelu"
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    want = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


def test_the_fusions_question_and_the_partitioners_answer_agree_on_every_node():
    graph = from_proto(_bias_gelu_model().graph, {"": 20})
    for providers in ([RefusesFloatOutputs(), CPUWithoutBiasGelu()],
                      [FakeDeviceExecutionProvider(), CPUExecutionProvider()]):
        part = partition(graph, providers)
        for item in part.items:
            if isinstance(item, Placed):
                assert provider_of(item.node, graph, providers) is item.provider, item.node.name


def test_no_provider_for_a_node_is_none_and_the_partitioner_names_it():
    graph = from_proto(_bias_gelu_model().graph, {"": 20})
    gelu = graph.nodes[-1]

    class NoGelu(CPUExecutionProvider):
        def kernel_for(self, op_type, domain, opset):
            return None if op_type == "Gelu" else super().kernel_for(op_type, domain, opset)
    assert choose(gelu, [NoGelu()], graph.types) is None
    try:
        partition(graph, [NoGelu()])
    except ortgpu.NotImplemented as e:
        assert "gelu" in str(e) and "Gelu" in str(e)
    else:
        raise AssertionError("partition placed a node no provider runs")
