"""ConvAddActivationFusion (extended level): Conv, a residual Add and an activation (the end
of a ResNet block) become one ``ortgpu::FusedConv`` with the residual as its input Z.

Pattern: ``act(Add(Conv(X, W, B?), Z))`` (Add operands in either order).

Rules: the Conv (ai.onnx, float output) is read only by the Add and the Add only by the
activation, neither a graph output; Z is any tensor other than the Conv's output (the
kernel adds it with broadcasting, as the Add did); the activation is one of
activation_patterns.py; a Clip activation below opset 15 fuses for float32 only (its bounds
in the function body); the provider that would run the Conv has a FusedConv kernel.  Runs
after ConvActivationFusion, which takes the Convs followed directly by an activation.
"""
from __future__ import annotations

from ortgpu.fused_ops import DOMAIN, body_supports
from ortgpu.graph import Graph
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.activation_patterns import activation_of
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite, make_node, provider_runs


def fuse_conv_add_activation(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every Conv + residual Add + activation; returns the number of fusions."""
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    opset = graph.opsets.get("", 1)
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1 or rewrite.claimed(conv):
            continue
        y = conv.outputs[0]
        add = view.only_reader(y)
        if add is None or add.op_type != "Add" or add.domain != "" or not view.is_float(y):
            continue
        z = view.other_input(add, y)
        act_node = view.only_reader(add.outputs[0])
        act = activation_of(view, act_node) if z and act_node is not None else None
        if act is None or act_node.inputs[0] != add.outputs[0] or rewrite.claimed(act_node):
            continue
        name, params = act
        if name == "Clip" and opset >= 11 and not body_supports(elem_type(view.graph, y), opset):
            continue
        inputs = [conv.inputs[0], conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else "", z]
        attrs = dict(conv.attrs, activation=name)
        if params:
            attrs["activation_params"] = params
        fused = make_node("FusedConv", DOMAIN, graph, inputs, act_node.outputs, attrs, conv)
        if not provider_runs(graph, providers, conv, fused):
            continue
        nodes = [conv, add, act_node]
        rewrite.replace(nodes, fused)
    return rewrite.finish(graph)
