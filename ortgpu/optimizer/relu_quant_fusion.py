"""ReluQuantFusion (basic level): a Relu whose only reader is a QuantizeLinear with the
quantized type's smallest value as zero point (uint8 zero point 0, int8 -128) leaves the graph;
the QuantizeLinear reads the Relu's input instead.

Why it is exact: such a QuantizeLinear already clamps every negative input to its zero point,
which is also what it makes of 0, so Q(Relu(x)) == Q(x) for every x.  This lets the QDQ
selectors (QDQSelectorActionTransformer) see Conv -> Q or Gemm -> Q where the quantization tool
wrote Conv -> Relu -> Q.

Rules: the Relu (ai.onnx) output is private (one reader, not a graph output); the Q (ai.onnx
or com.microsoft) has a constant per-tensor scale and zero point (graph_tools/qdq_patterns.py).
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.graph_edit import remove, rename_uses
from ortgpu.optimizer.graph_tools.matching import GraphView
from ortgpu.optimizer.graph_tools.qdq_patterns import q_output, type_min


def fuse_relu_quant(graph: Graph, providers, overridable: set[str]) -> int:
    view = GraphView(graph, overridable)
    dead, renames = [], {}
    for node in graph.nodes:
        if node.op_type != "Relu" or node.domain != "" or not node.inputs or not node.inputs[0]:
            continue
        q = q_output(view, node)
        if q is None or not q.per_tensor or type_min(q.qtype) is None \
                or int(q.zp_value.reshape(-1)[0]) != type_min(q.qtype):
            continue
        renames[node.outputs[0]] = node.inputs[0]
        dead.append(node)
    rename_uses(graph, renames)
    remove(graph, dead)
    return len(dead)
