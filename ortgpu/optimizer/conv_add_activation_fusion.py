"""ConvAddActivationFusion (extended level): Conv, a residual Add and an activation (the end
of a ResNet block) become one FusedConv with the residual as its input Z: onnxruntime's
``com.microsoft::FusedConv`` when Z has the result's shape and onnxruntime takes the activation,
else ``ortgpu::FusedConv`` (which broadcasts Z as the Add did and has a function body).

Pattern: ``act(Add(Conv(X, W, B?), Z))`` (Add operands in either order), or the same with a
Sum of exactly those two inputs (Caffe2's ResNet exports write Sum; a two-input Sum is an Add,
broadcasting from opset 8 as Add does, equal shapes before).

Rules: the Conv (ai.onnx, float output) is read only by the Add and the Add only by the
activation, neither a graph output; Z is any tensor other than the Conv's output (the
kernel adds it with broadcasting, as the Add did); the activation is one of
activation_patterns.py; a Clip activation below opset 15 fuses for float32 only (its bounds
in the function body); the provider that would run the Conv has a FusedConv kernel.  Runs
after ConvActivationFusion, which takes the Convs followed directly by an activation.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.activation_patterns import activation_of, fused_activation_node
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite


def fuse_conv_add_activation(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every Conv + residual Add + activation; returns the number of fusions."""
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1 or rewrite.claimed(conv):
            continue
        y = conv.outputs[0]
        add = view.only_reader(y)
        if add is None or add.op_type not in ("Add", "Sum") or add.domain != "" or not view.is_float(y):
            continue
        z = view.other_input(add, y)
        act_node = view.only_reader(add.outputs[0])
        act = activation_of(view, act_node) if z and act_node is not None else None
        if act is None or act_node.inputs[0] != add.outputs[0] or rewrite.claimed(act_node):
            continue
        name, params = act
        inputs = [conv.inputs[0], conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else "", z]
        fused = fused_activation_node(graph, providers, conv, "FusedConv", inputs, act_node.outputs,
                                      conv.attrs, name, params, elem_type(view.graph, y),
                                      ms_ok=view.same_shape(z, y) and elem_type(view.graph, z) == elem_type(view.graph, y))
        if fused is None:
            continue
        nodes = [conv, add, act_node]
        rewrite.replace(nodes, fused)
    return rewrite.finish(graph)
