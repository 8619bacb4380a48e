"""BNActivationFusion (extended level): an inference BatchNormalization followed by an
activation becomes one ``ortgpu::FusedBatchNormalization`` (onnxruntime has no such op; the
function body is the two ops), whose kernel applies a Relu in the same pass over the output.
Where a Conv precedes the BatchNormalization, ConvBNFusion has folded it away first; this
serves the BatchNormalizations no Conv absorbs (DenseNet's, after each Concat).

Rules: the BatchNormalization is an ai.onnx one in inference mode (no training_mode, one
output; the old is_test/spatial attributes carry over) with a float output read only by the
activation and not a graph output; the activation is one of activation_patterns.py; the
provider that would run the BatchNormalization has a FusedBatchNormalization kernel.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.activation_patterns import fuse_with_activation


def _inference(node) -> bool:
    return not node.attrs.get("training_mode", 0) and len(node.inputs) == 5


def fuse_bn_activation(graph: Graph, providers, overridable: set[str]) -> int:
    return fuse_with_activation(graph, providers, overridable, "BatchNormalization", "FusedBatchNormalization",
                                accept=_inference)
